//! Finds tool-call blocks in a reply's answer text as it streams.
//!
//! Text that may be the start of `<tool_call>` is held back until the next
//! piece decides, and a block is held whole until its `</tool_call>`: it is
//! then a call ([`crate::tool_calls::parse_block`]) or, when malformed or
//! naming an unknown function, text again. So the raw XML of a call never
//! reaches `content`, and a reply cut inside a block (`max_tokens`) gives
//! that block back as text. The whitespace around calls (the template puts
//! a blank line before the first and a newline between them) is dropped.
//! The whole reply pushed at once splits exactly as pushed piece by piece.

use crate::reasoning::partial_tag_len;
use crate::tool_calls::{parse_block, ParsedCall, ToolSet, CALL_CLOSE, CALL_OPEN};

/// What the parser released, in reply order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Call(ParsedCall),
}

/// An incremental parser of one reply.
#[derive(Debug, Clone)]
pub struct ToolCallParser {
    tools: ToolSet,
    /// `parallel_tool_calls: false`: calls after the first are dropped.
    parallel: bool,
    /// Text not yet looked at to the end (a possible tag, a block).
    buf: String,
    /// Inside a `<tool_call>` block (`buf` starts with it).
    in_block: bool,
    /// How much of the block has been searched for `</tool_call>` (a long
    /// block arriving a token at a time is not searched from its start each time).
    searched: usize,
    /// Whitespace that ended the text so far: dropped if a call follows.
    ws: String,
    /// Just after a call: leading whitespace is dropped.
    after_call: bool,
    calls: usize,
}

/// The `<function=` that must follow `<tool_call>` (after whitespace).
const FUNCTION_OPEN: &str = "<function=";

impl ToolCallParser {
    pub fn new(tools: ToolSet, parallel: bool) -> Self {
        Self {
            tools,
            parallel,
            buf: String::new(),
            in_block: false,
            searched: 0,
            ws: String::new(),
            after_call: false,
            calls: 0,
        }
    }

    /// Calls found so far (those dropped by `parallel_tool_calls: false` included).
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Answer text, which may hold whitespace back (it is released before
    /// the next text, or dropped if a call comes first).
    fn text(&mut self, text: &str, out: &mut Vec<Piece>) {
        let text = if self.after_call {
            let t = text.trim_start();
            if t.is_empty() {
                return;
            }
            self.after_call = false;
            t
        } else {
            text
        };
        let body = text.trim_end();
        if !body.is_empty() {
            let mut s = std::mem::take(&mut self.ws);
            s.push_str(body);
            match out.last_mut() {
                Some(Piece::Text(t)) => t.push_str(&s),
                _ => out.push(Piece::Text(s)),
            }
        }
        self.ws.push_str(&text[body.len()..]);
    }

    /// Text that is not a call after all: released whole, held whitespace first.
    fn literal(&mut self, text: &str, out: &mut Vec<Piece>) {
        self.after_call = false;
        let mut s = std::mem::take(&mut self.ws);
        s.push_str(text);
        self.text(&s, out);
    }

    /// Adds answer text; returns the text and calls it completes.
    pub fn push(&mut self, piece: &str) -> Vec<Piece> {
        self.buf.push_str(piece);
        let mut out = Vec::new();
        loop {
            if !self.in_block {
                match self.buf.find(CALL_OPEN) {
                    Some(at) => {
                        let before: String = self.buf.drain(..at).collect();
                        self.text(&before, &mut out);
                        self.in_block = true;
                        self.searched = 0;
                    }
                    None => {
                        let keep = partial_tag_len(&self.buf, CALL_OPEN);
                        let cut = self.buf.len() - keep;
                        let before: String = self.buf.drain(..cut).collect();
                        self.text(&before, &mut out);
                        return out;
                    }
                }
            }
            // The close tag may straddle what was searched and what is new.
            let mut from = self.searched.saturating_sub(CALL_CLOSE.len());
            while !self.buf.is_char_boundary(from) {
                from -= 1;
            }
            self.searched = self.buf.len();
            if let Some(at) = self.buf[from..].find(CALL_CLOSE).map(|i| from + i) {
                let block: String = self.buf.drain(..at + CALL_CLOSE.len()).collect();
                self.in_block = false;
                match parse_block(&block, &self.tools) {
                    Some(call) => {
                        self.ws.clear();
                        self.after_call = true;
                        self.calls += 1;
                        if self.parallel || self.calls == 1 {
                            out.push(Piece::Call(call));
                        }
                    }
                    None => self.literal(&block, &mut out),
                }
                continue;
            }
            // Not a call if what follows `<tool_call>` cannot become `<function=`.
            let after = self.buf[CALL_OPEN.len()..].trim_start();
            if FUNCTION_OPEN.starts_with(after) || after.starts_with(FUNCTION_OPEN) {
                return out;
            }
            let tag: String = self.buf.drain(..CALL_OPEN.len()).collect();
            self.in_block = false;
            self.literal(&tag, &mut out);
        }
    }

    /// The end of the reply: held text is released; an unfinished block
    /// (cut by `max_tokens`) is text.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        // `buf` holds a start of `<tool_call>` or a block: never whitespace
        // first, so what follows a call is not given back by mistake.
        let rest = std::mem::take(&mut self.buf);
        self.in_block = false;
        if !rest.is_empty() {
            self.literal(&rest, &mut out);
        }
        // What is left is trailing whitespace: kept unless after a call.
        let ws = std::mem::take(&mut self.ws);
        if !ws.is_empty() && !self.after_call {
            match out.last_mut() {
                Some(Piece::Text(t)) => t.push_str(&ws),
                _ => out.push(Piece::Text(ws)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ordered_json::Json;
    use crate::tool_calls::tests::weather_tools;

    /// Pieces of a streamed reply, merged (adjacent texts joined), checked
    /// equal to the reply pushed whole and one character at a time.
    fn parse(parallel: bool, pieces: &[&str]) -> Vec<Piece> {
        let run = |pieces: &mut dyn Iterator<Item = String>| {
            let mut p = ToolCallParser::new(weather_tools(), parallel);
            let mut out: Vec<Piece> = Vec::new();
            let mut add = |v: Vec<Piece>| {
                for piece in v {
                    match (out.last_mut(), piece) {
                        (Some(Piece::Text(t)), Piece::Text(s)) => t.push_str(&s),
                        (_, piece) => out.push(piece),
                    }
                }
            };
            for piece in pieces {
                add(p.push(&piece));
            }
            add(p.finish());
            out
        };
        let streamed = run(&mut pieces.iter().map(|p| p.to_string()));
        let whole = pieces.concat();
        assert_eq!(run(&mut std::iter::once(whole.clone())), streamed);
        assert_eq!(run(&mut whole.chars().map(String::from)), streamed);
        streamed
    }

    fn text(s: &str) -> Piece {
        Piece::Text(s.into())
    }

    fn call(name: &str, args: &str) -> Piece {
        Piece::Call(ParsedCall {
            name: name.into(),
            arguments: Json::parse(args).expect("json"),
        })
    }

    const PARIS: &str = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>";
    const ROME: &str = "<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>";

    #[test]
    fn calls_after_text_leave_no_xml_in_the_text() {
        let reply = format!("Let me check.\n\n{PARIS}\n{ROME}");
        assert_eq!(
            parse(true, &[&reply]),
            [
                text("Let me check."),
                call("get_weather", r#"{"city": "Paris"}"#),
                call("get_weather", r#"{"city": "Rome", "days": 2}"#),
            ]
        );
        // Split anywhere, even inside the tags.
        let (a, b) = reply.split_at(20);
        let (b, c) = b.split_at(30);
        assert_eq!(parse(true, &[a, b, c]).len(), 3);
        // Only calls: no text at all.
        assert_eq!(
            parse(true, &[PARIS]),
            [call("get_weather", r#"{"city": "Paris"}"#)]
        );
    }

    #[test]
    fn parallel_tool_calls_false_keeps_the_first_call() {
        let reply = format!("{PARIS}\n{ROME}\n");
        assert_eq!(
            parse(false, &[&reply]),
            [call("get_weather", r#"{"city": "Paris"}"#)]
        );
    }

    #[test]
    fn an_unknown_function_is_text_not_a_call() {
        let bad = "<tool_call>\n<function=launch_missiles>\n</function>\n</tool_call>";
        let reply = format!("Sure.\n\n{bad}\n{PARIS}");
        assert_eq!(
            parse(true, &[&reply]),
            [
                text(&format!("Sure.\n\n{bad}")),
                call("get_weather", r#"{"city": "Paris"}"#),
            ]
        );
    }

    #[test]
    fn a_block_cut_by_max_tokens_is_text() {
        let cut = &PARIS[..PARIS.len() - 5];
        let reply = format!("Checking.\n{cut}");
        assert_eq!(parse(true, &[&reply]), [text(&reply)]);
        assert_eq!(parse(true, &["a <tool_c"]), [text("a <tool_c")]);
    }

    #[test]
    fn plain_text_passes_unchanged() {
        for reply in [
            "Hello!\n\n  ",
            "a < b && <tool> or <tool_call> mentioned",
            "<tool_call> is the tag",
            "",
        ] {
            let got = parse(true, &[reply]);
            let expected = if reply.is_empty() {
                vec![]
            } else {
                vec![text(reply)]
            };
            assert_eq!(got, expected, "{reply:?}");
        }
    }

    #[test]
    fn text_between_and_after_calls_is_kept() {
        let reply = format!("{PARIS}\nand then\n{ROME}\nDone.\n");
        assert_eq!(
            parse(true, &[&reply]),
            [
                call("get_weather", r#"{"city": "Paris"}"#),
                text("and then"),
                call("get_weather", r#"{"city": "Rome", "days": 2}"#),
                text("Done.\n"),
            ]
        );
    }
}
