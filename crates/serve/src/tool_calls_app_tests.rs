//! The chat chunks the server streams for a given reply text (the model's
//! output injected: a random-weight model writes no call unless decoding is
//! constrained): reasoning, text and tool-call deltas in order, no raw XML
//! as `content`, the finish reason last, and the same parts as the whole
//! reply's `message`.

use serde_json::{json, Value};

use super::Meta;
use crate::chat_request::ToolChoice;
use crate::ordered_json::Json;
use crate::scheduler::Finish;
use crate::tool_calls::ToolSet;
use crate::tool_calls_reply::{message, ReplySetup};

fn meta(tool_choice: ToolChoice) -> Meta {
    let tools = Json::parse(
        r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]"#,
    )
    .expect("json");
    let Json::Array(tools) = tools else {
        unreachable!()
    };
    Meta {
        id: "chatcmpl-1".into(),
        created: 0,
        model: "m".into(),
        chat: true,
        prompt_tokens: 3,
        include_usage: false,
        reply: Some(ReplySetup {
            opens_reasoning: true,
            tools: ToolSet::new(&tools),
            tool_choice,
            parallel_tool_calls: true,
            id_seed: 1,
        }),
        logprobs: false,
    }
}

const REPLY: &str = "The user asks for weather.\n</think>\n\nLet me check.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSão Paulo & <Rio>\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>";

/// The reply streamed in pieces of `size` bytes (on character boundaries).
fn stream(meta: &Meta, size: usize, finish: Finish) -> Vec<Value> {
    let mut split = meta.splitter();
    let mut chunks = Vec::new();
    let mut rest = REPLY;
    while !rest.is_empty() {
        let mut at = size.min(rest.len());
        while !rest.is_char_boundary(at) {
            at += 1;
        }
        let (piece, tail) = rest.split_at(at);
        chunks.extend(meta.text_chunks(&mut split, piece));
        rest = tail;
    }
    chunks.extend(meta.end_chunks(&mut split, finish));
    chunks
}

#[test]
fn streamed_chunks_carry_reasoning_text_and_calls_never_the_xml() {
    let meta = meta(ToolChoice::Auto);
    let mut whole = meta.splitter().expect("chat");
    let mut parts = whole.push(REPLY);
    parts.extend(whole.finish());
    let expected = message(&parts);
    assert_eq!(expected["tool_calls"][0]["function"]["name"], "get_weather");
    for size in [1, 3, 7, 64, REPLY.len()] {
        let chunks = stream(&meta, size, Finish::Stop);
        let (mut reasoning, mut content, mut calls) = (String::new(), String::new(), vec![]);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c["object"], "chat.completion.chunk");
            let choice = &c["choices"][0];
            let last = i + 1 == chunks.len();
            assert_eq!(choice["finish_reason"].is_null(), !last, "{c}");
            let d = &choice["delta"];
            reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
            let text = d["content"].as_str().unwrap_or("");
            assert!(!text.contains('<'), "XML as content: {c}");
            content.push_str(text);
            if let Some(list) = d["tool_calls"].as_array() {
                calls.extend(list.iter().cloned());
            }
        }
        assert_eq!(
            chunks.last().expect("chunks")["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(reasoning, expected["reasoning_content"], "pieces of {size}");
        assert_eq!(content, expected["content"], "pieces of {size}");
        assert_eq!(calls.len(), 1);
        let call = &calls[0];
        assert_eq!(call["index"], 0);
        assert_eq!(call["id"], expected["tool_calls"][0]["id"]);
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("str"))
                .expect("arguments are JSON");
        assert_eq!(args, json!({"city": "São Paulo & <Rio>", "days": 2}));
    }
    // Cut by max_tokens after the call: the call stands, the reason is `length`.
    let chunks = stream(&meta, 5, Finish::Length);
    assert_eq!(
        chunks.last().expect("chunks")["choices"][0]["finish_reason"],
        "length"
    );
}

#[test]
fn tool_choice_none_streams_the_xml_as_text() {
    let chunks = stream(&meta(ToolChoice::None), 4, Finish::Stop);
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(content.starts_with("Let me check.") && content.ends_with("</tool_call>"));
    assert_eq!(
        chunks.last().expect("chunks")["choices"][0]["finish_reason"],
        "stop"
    );
}
