//! Tool calling and reasoning through the server, end to end on the tiny
//! dense fixture (random weights, CPU backend): requests with `tools`,
//! `tool_choice`, tool-call history and `chat_template_kwargs` are checked
//! and served, and a reply is split into `reasoning_content` and `content`
//! the same way streamed and whole. (The parsing of calls out of a reply is
//! tested on given texts in `src/tool_calls*.rs`: a random-weight model
//! writes a call only when decoding is constrained to one.)

use std::path::Path;

use qwgpu_serve::chat_template::{ChatTemplate, Message, RenderOptions};
use qwgpu_serve::ServeOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Qwen3.5's generation prompt, trimmed: thinking on opens `<think>\n`,
/// `enable_thinking: false` writes a closed empty block.
const THINKING_TEMPLATE: &str = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\n' + (message.content or '') + '<|im_end|>\n' }}{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- else %}{{- '<think>\n' }}{%- endif %}{%- endif %}";

mod support;

use support::*;

/// A server over the fixture with [`THINKING_TEMPLATE`].
async fn server(tweak: impl FnOnce(&mut ServeOptions)) -> Server {
    server_with(Some(THINKING_TEMPLATE), tweak).await
}

/// The raw text the model writes after the chat prompt for `messages`
/// (rendered here, sent as a plain completion: no splitting).
async fn raw_reply(s: &Server, messages: &[Message], enable_thinking: Option<bool>) -> String {
    let template =
        ChatTemplate::from_source(THINKING_TEMPLATE.into(), "test".into()).expect("template");
    let prompt = template
        .render(
            messages,
            &RenderOptions {
                add_generation_prompt: true,
                enable_thinking,
            },
        )
        .expect("renders");
    let v = s
        .ok(
            "/v1/completions",
            &json!({"prompt": prompt, "max_tokens": 12, "temperature": 0}),
        )
        .await;
    v["choices"][0]["text"].as_str().expect("text").to_owned()
}

/// With thinking on (the template opens `<think>` in the prompt) the reply
/// is reasoning up to `</think>`: the random model never closes the block,
/// so all of it is `reasoning_content` and `content` is empty; with
/// `enable_thinking: false` (per request or the server's default) it is all
/// `content`. Streamed deltas give the same parts as the whole reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_split_into_reasoning_and_content() {
    let s = server(|_| {}).await;
    let messages = [Message::new("user", "What is 2 + 2?")];
    let req = json!({"messages": [user("What is 2 + 2?")], "max_tokens": 12, "temperature": 0});

    let raw = raw_reply(&s, &messages, None).await;
    assert!(
        !raw.contains("</think>") && !raw.trim().is_empty(),
        "the test needs a reply that stays in its reasoning: {raw:?}"
    );
    let v = s.ok("/v1/chat/completions", &req).await;
    let m = &v["choices"][0]["message"];
    assert_eq!(m["reasoning_content"], raw.trim_start(), "{v}");
    assert_eq!(m["content"], "", "{v}");
    assert!(m.get("tool_calls").is_none(), "{v}");
    let finish = v["choices"][0]["finish_reason"].as_str().expect("finish");
    let Streamed {
        text: content,
        reasoning,
        calls,
        finish: sfinish,
    } = s.streamed_chat(&req).await;
    assert_eq!(
        (content.as_str(), reasoning.as_str(), sfinish.as_str()),
        ("", raw.trim_start(), finish)
    );
    assert!(calls.is_empty());

    let raw_off = raw_reply(&s, &messages, Some(false)).await;
    let mut off = req.clone();
    off["chat_template_kwargs"] = json!({"enable_thinking": false});
    let v = s.ok("/v1/chat/completions", &off).await;
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], raw_off.as_str(), "{v}");
    assert_eq!(m["reasoning_content"], Value::Null, "{v}");
    let Streamed {
        text: content,
        reasoning,
        ..
    } = s.streamed_chat(&off).await;
    assert_eq!(
        (content.as_str(), reasoning.as_str()),
        (raw_off.as_str(), "")
    );
    let off_tokens = v["usage"]["prompt_tokens"].clone();

    // The server's default applies when the request gives none.
    let s = server(|o| o.default_enable_thinking = Some(false)).await;
    let v = s.ok("/v1/chat/completions", &req).await;
    assert_eq!(v["usage"]["prompt_tokens"], off_tokens, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], raw_off.as_str());
    // ... and the request's own setting wins over it.
    let mut on = req.clone();
    on["chat_template_kwargs"] = json!({"enable_thinking": true});
    let v = s.ok("/v1/chat/completions", &on).await;
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        raw.trim_start()
    );
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                          "required": ["city"]}}})
}

/// A tool-calling conversation as an agent sends it (tools, an assistant
/// turn with `tool_calls` and reasoning, the `tool` answer) is served, with
/// every `tool_choice` form a request may use; bad ones get a 400 naming
/// the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_requests_are_checked_and_served() {
    let s = server(|_| {}).await;
    let history = json!([
        user("Weather in Paris?"),
        {"role": "assistant", "content": null, "reasoning_content": "I should look it up.",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]);
    for choice in [
        json!("auto"),
        json!("none"),
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ] {
        let req = json!({"messages": history, "tools": [weather_tool()], "tool_choice": choice,
                         "parallel_tool_calls": false, "max_tokens": 6, "temperature": 0,
                         "chat_template_kwargs": {"enable_thinking": false}});
        let v = s.ok("/v1/chat/completions", &req).await;
        let c = &v["choices"][0];
        let finish = c["finish_reason"].as_str().expect("finish");
        assert!(
            ["stop", "length", "tool_calls"].contains(&finish),
            "{choice}: {v}"
        );
        // What the random model wrote is text (it wrote no call).
        if c["message"].get("tool_calls").is_none() {
            let Streamed {
                text: content,
                calls,
                finish: sfinish,
                ..
            } = s.streamed_chat(&req).await;
            assert_eq!(c["message"]["content"], content.as_str(), "{choice}");
            assert!(calls.is_empty());
            assert_eq!(sfinish, finish);
        }
    }
    let bad = |field: &str, value: Value| {
        let mut req = json!({"messages": history, "tools": [weather_tool()], "max_tokens": 2});
        req[field] = value;
        req
    };
    for (req, param) in [
        (bad("tool_choice", json!("always")), "tool_choice"),
        (
            bad(
                "tool_choice",
                json!({"type": "function", "function": {"name": "launch"}}),
            ),
            "tool_choice",
        ),
        (
            bad("parallel_tool_calls", json!("yes")),
            "parallel_tool_calls",
        ),
        (
            json!({"messages": [user("hi")], "tool_choice": "required"}),
            "tool_choice",
        ),
        (
            bad("tools", json!([{"type": "function"}])),
            "tools[0].function",
        ),
    ] {
        let (status, v) = s.post("/v1/chat/completions", &req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{req}: {v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
}

/// Transformers' renderings of the released Qwen3.5 template (the expected
/// texts of `tests/data/released_template`): a generation prompt with
/// thinking on or unset opens the block, with thinking off it is closed, and
/// without a generation prompt nothing is open. The server reads this from
/// the prompt's token ids, checked here with the fixture's tokenizer.
#[test]
fn the_released_templates_generation_prompt_opens_reasoning_unless_thinking_is_off() {
    use qwgpu_serve::reasoning::{prompt_opens_reasoning, text_opens_reasoning};
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/released_template");
    let tokenizer = tokenizers::Tokenizer::from_file(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/dense-bf16-text/tokenizer.json"),
    )
    .expect("tokenizer");
    let mut checked = 0;
    for entry in std::fs::read_dir(&data).expect("data dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let Some(stem) = name.strip_suffix(".txt") else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("rendering");
        let opens = stem.ends_with("_gen") && !stem.contains("thinking_off");
        assert_eq!(text_opens_reasoning(&text), opens, "{name}");
        let ids = tokenizer
            .encode(text.as_str(), false)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(prompt_opens_reasoning(&tokenizer, &ids), opens, "{name}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} renderings");
}
