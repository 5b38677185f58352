//! A chat reply as the client receives it: the generated text split into
//! reasoning ([`crate::reasoning`]), answer text and tool calls
//! ([`crate::tool_calls_stream`]), in OpenAI's shapes: `delta` objects
//! while streaming, one `message` otherwise, and the finish reason
//! (`tool_calls` when the reply ended by itself after calling).
//!
//! Tool calls are looked for in the answer only, so a call written inside
//! the reasoning is never executed. The same splitter serves the streamed
//! and the whole reply, so both give the same parts.

use serde_json::{json, Value};

use crate::chat_request::ToolChoice;
use crate::reasoning::ReasoningSplitter;
use crate::scheduler::Finish;
use crate::tool_calls::{ParsedCall, ToolSet};
use crate::tool_calls_stream::{Piece, ToolCallParser};

/// What decides how a reply is split.
#[derive(Debug, Clone)]
pub struct ReplySetup {
    /// The prompt ends inside an open thinking block
    /// ([`crate::reasoning::prompt_opens_reasoning`]).
    pub opens_reasoning: bool,
    /// The request's tools (from its `tools`).
    pub tools: ToolSet,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    /// Makes the calls' ids (`call_...`) differ between requests.
    pub id_seed: u64,
}

/// One part of a reply, in reply order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Reasoning(String),
    Content(String),
    /// A call, numbered from 0 in the reply, with its id.
    Call {
        index: usize,
        id: String,
        call: ParsedCall,
    },
}

/// Splits one chat reply as its text arrives.
pub struct ReplySplitter {
    reasoning: ReasoningSplitter,
    /// `None` when the reply's calls are not parsed (no tools, or
    /// `tool_choice: "none"`): the answer is all text.
    tools: Option<ToolCallParser>,
    calls: usize,
    id_seed: u64,
}

/// SplitMix64: a well-mixed 64-bit value from a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl ReplySplitter {
    pub fn new(setup: ReplySetup) -> Self {
        let parse = setup.tool_choice.parses_calls() && !setup.tools.is_empty();
        Self {
            reasoning: ReasoningSplitter::new(setup.opens_reasoning),
            tools: parse.then(|| ToolCallParser::new(setup.tools, setup.parallel_tool_calls)),
            calls: 0,
            id_seed: setup.id_seed,
        }
    }

    /// `call_` and 24 hex digits, like OpenAI's and vLLM's ids.
    fn call_id(&self, index: usize) -> String {
        let a = mix(self.id_seed ^ mix(index as u64));
        let b = mix(a) & 0xffff_ffff;
        format!("call_{a:016x}{b:08x}")
    }

    fn answer(&mut self, text: &str, finish: bool, out: &mut Vec<Part>) {
        let Some(parser) = &mut self.tools else {
            if !text.is_empty() {
                out.push(Part::Content(text.to_owned()));
            }
            return;
        };
        let mut pieces = parser.push(text);
        if finish {
            pieces.extend(parser.finish());
        }
        for piece in pieces {
            match piece {
                Piece::Text(t) if t.is_empty() => {}
                Piece::Text(t) => out.push(Part::Content(t)),
                Piece::Call(call) => {
                    let index = self.calls;
                    self.calls += 1;
                    out.push(Part::Call {
                        index,
                        id: self.call_id(index),
                        call,
                    });
                }
            }
        }
    }

    /// Adds reply text; returns the parts it completes.
    pub fn push(&mut self, text: &str) -> Vec<Part> {
        let split = self.reasoning.push(text);
        let mut out = Vec::new();
        if !split.reasoning.is_empty() {
            out.push(Part::Reasoning(split.reasoning));
        }
        self.answer(&split.content, false, &mut out);
        out
    }

    /// The end of the reply: the parts still held.
    pub fn finish(&mut self) -> Vec<Part> {
        let split = self.reasoning.finish();
        let mut out = Vec::new();
        if !split.reasoning.is_empty() {
            out.push(Part::Reasoning(split.reasoning));
        }
        self.answer(&split.content, true, &mut out);
        out
    }

    /// The reply's finish reason: `tool_calls` when it called a tool and
    /// ended by itself (a reply cut by `max_tokens` says `length`).
    pub fn finish_reason(&self, finish: Finish) -> &'static str {
        match finish {
            Finish::Stop if self.calls > 0 => "tool_calls",
            other => other.as_str(),
        }
    }
}

fn call_json(index: usize, id: &str, call: &ParsedCall) -> Value {
    json!({"index": index, "id": id, "type": "function",
           "function": {"name": call.name, "arguments": call.arguments_json()}})
}

/// A streamed chunk's `delta` for one part.
pub fn delta(part: &Part) -> Value {
    match part {
        Part::Reasoning(r) => json!({"reasoning_content": r}),
        Part::Content(c) => json!({"content": c}),
        Part::Call { index, id, call } => json!({"tool_calls": [call_json(*index, id, call)]}),
    }
}

/// The whole reply's `message`: `content` (null when the reply only
/// called tools), `reasoning_content` (null without reasoning) and
/// `tool_calls` (only when there are calls).
pub fn message(parts: &[Part]) -> Value {
    let (mut reasoning, mut content, mut calls) = (String::new(), String::new(), Vec::new());
    for part in parts {
        match part {
            Part::Reasoning(r) => reasoning.push_str(r),
            Part::Content(c) => content.push_str(c),
            Part::Call { index, id, call } => {
                let mut c = call_json(*index, id, call);
                if let Some(o) = c.as_object_mut() {
                    o.remove("index");
                }
                calls.push(c);
            }
        }
    }
    let mut m = json!({
        "role": "assistant",
        "content": if content.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(content) },
        "reasoning_content": if reasoning.is_empty() { Value::Null } else { Value::String(reasoning) },
    });
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool_calls::tests::weather_tools;

    fn setup(opens_reasoning: bool, tool_choice: ToolChoice) -> ReplySetup {
        ReplySetup {
            opens_reasoning,
            tools: weather_tools(),
            tool_choice,
            parallel_tool_calls: true,
            id_seed: 7,
        }
    }

    /// The reply's message from its text pushed in `pieces`, and the finish
    /// reason for `finish`; the streamed deltas, put together, must agree.
    fn reply(setup: ReplySetup, pieces: &[&str], finish: Finish) -> (Value, String) {
        let mut s = ReplySplitter::new(setup.clone());
        let mut parts = Vec::new();
        for p in pieces {
            parts.extend(s.push(p));
        }
        parts.extend(s.finish());
        let mut whole = ReplySplitter::new(setup);
        let mut once = whole.push(&pieces.concat());
        once.extend(whole.finish());
        let m = message(&parts);
        assert_eq!(message(&once), m, "streamed and whole replies differ");
        // What a streaming client accumulates from the deltas.
        let (mut content, mut reasoning, mut calls) = (String::new(), String::new(), vec![]);
        for p in &parts {
            let d = delta(p);
            content.push_str(d["content"].as_str().unwrap_or(""));
            reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
            if let Some(c) = d["tool_calls"].as_array() {
                calls.extend(c.iter().cloned());
            }
        }
        assert_eq!(content, m["content"].as_str().unwrap_or(""));
        assert_eq!(reasoning, m["reasoning_content"].as_str().unwrap_or(""));
        assert_eq!(calls.len(), m["tool_calls"].as_array().map_or(0, Vec::len));
        (m, s.finish_reason(finish).to_owned())
    }

    const PARIS: &str = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>";

    #[test]
    fn reasoning_then_a_call_gives_openai_tool_calls() {
        let (m, finish) = reply(
            setup(true, ToolChoice::Auto),
            &[
                "The user wants weather.\n</think>\n\n",
                "Checking.\n\n",
                PARIS,
            ],
            Finish::Stop,
        );
        assert_eq!(finish, "tool_calls");
        assert_eq!(m["reasoning_content"], "The user wants weather.");
        assert_eq!(m["content"], "Checking.");
        let call = &m["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("string"))
                .expect("arguments are JSON");
        assert_eq!(args, json!({"city": "Paris", "days": 3}));
        let id = call["id"].as_str().expect("id");
        assert!(id.starts_with("call_") && id.len() == 29, "{id}");
    }

    #[test]
    fn a_call_inside_the_reasoning_is_not_executed() {
        let (m, finish) = reply(
            setup(true, ToolChoice::Auto),
            &["Maybe ", PARIS, " no.\n</think>\n\nIt is sunny."],
            Finish::Stop,
        );
        assert_eq!(finish, "stop");
        assert!(m.get("tool_calls").is_none(), "{m}");
        assert_eq!(m["content"], "It is sunny.");
        assert!(m["reasoning_content"]
            .as_str()
            .is_some_and(|r| r.contains("<function=get_weather>")));
        // Cut before `</think>`: all reasoning, no call, no content.
        let (m, finish) = reply(
            setup(true, ToolChoice::Auto),
            &["x ", PARIS],
            Finish::Length,
        );
        assert_eq!(finish, "length");
        assert_eq!(m["content"], "");
        assert!(m.get("tool_calls").is_none());
    }

    #[test]
    fn only_calls_give_null_content_and_ids_differ() {
        let (m, finish) = reply(
            setup(false, ToolChoice::Required),
            &[PARIS, "\n", PARIS],
            Finish::Stop,
        );
        assert_eq!(finish, "tool_calls");
        assert_eq!(m["content"], Value::Null);
        assert_eq!(m["reasoning_content"], Value::Null);
        let calls = m["tool_calls"].as_array().expect("calls");
        assert_eq!(calls.len(), 2);
        assert_ne!(calls[0]["id"], calls[1]["id"]);
    }

    #[test]
    fn tool_choice_none_leaves_the_xml_as_text() {
        let (m, finish) = reply(setup(false, ToolChoice::None), &[PARIS], Finish::Stop);
        assert_eq!(finish, "stop");
        assert_eq!(m["content"], PARIS);
        assert!(m.get("tool_calls").is_none());
    }

    #[test]
    fn a_call_cut_by_max_tokens_is_text_with_finish_length() {
        let cut = &PARIS[..60];
        let (m, finish) = reply(
            setup(false, ToolChoice::Auto),
            &["On it.\n", cut],
            Finish::Length,
        );
        assert_eq!(finish, "length");
        assert_eq!(m["content"], format!("On it.\n{cut}"));
        assert!(m.get("tool_calls").is_none());
    }

    #[test]
    fn streamed_call_deltas_carry_index_id_name_and_arguments() {
        let mut s = ReplySplitter::new(setup(false, ToolChoice::Auto));
        let mut parts = s.push(&PARIS[..40]);
        assert!(
            parts.is_empty(),
            "nothing is sent before the call is whole: {parts:?}"
        );
        parts.extend(s.push(&PARIS[40..]));
        parts.extend(s.finish());
        assert_eq!(parts.len(), 1);
        let d = delta(&parts[0]);
        let c = &d["tool_calls"][0];
        assert_eq!(c["index"], 0);
        assert_eq!(c["function"]["name"], "get_weather");
        assert!(c["id"].as_str().is_some_and(|id| id.starts_with("call_")));
        assert!(d.get("content").is_none());
    }
}
