//! The reasoning split of a chat reply (vLLM's and sglang's `qwen3`
//! reasoning parser, llama-server's `--reasoning-format deepseek`): the text
//! a thinking model writes before `</think>` is its reasoning
//! (`reasoning_content`), the rest its answer (`content`).
//!
//! Qwen3.5's template opens the thinking block in the generation prompt
//! (`<|im_start|>assistant\n<think>\n`), so the model's output starts inside
//! it and only `</think>` appears in the reply; with `enable_thinking: false`
//! the prompt ends with a closed, empty block and the whole reply is the
//! answer. Whether a reply starts in reasoning is read from the prompt
//! itself ([`prompt_opens_reasoning`]), so any template that opens a block
//! works. Older templates let the model write `<think>` itself: a reply that
//! starts with it (after whitespace) enters reasoning too.
//!
//! Text is split as it streams: a tail that may be the start of `</think>`
//! (or, at the reply's start, of `<think>`) is held until the next piece
//! decides, so a streamed reply splits exactly as the whole one. The
//! whitespace around `</think>` belongs to neither part (the template drops
//! it too when it renders the turn back), and a tool call written inside
//! the reasoning stays reasoning: it is never executed.

use tokenizers::Tokenizer;

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Whether the prompt ends inside an open thinking block (its last `<think>`
/// is followed by whitespace only), so that the reply starts as reasoning.
/// Reads the text of the prompt's last few tokens.
pub fn prompt_opens_reasoning(tokenizer: &Tokenizer, prompt: &[u32]) -> bool {
    // Enough tokens to spell "<think>\n" even where it is not one token.
    let tail = &prompt[prompt.len().saturating_sub(16)..];
    tokenizer
        .decode(tail, false)
        .is_ok_and(|text| text_opens_reasoning(&text))
}

/// [`prompt_opens_reasoning`] on text: ends with `<think>` and whitespace.
pub fn text_opens_reasoning(text: &str) -> bool {
    text.trim_end().ends_with(OPEN)
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag`
/// (on a character boundary): text that may still become `tag`.
pub(crate) fn partial_tag_len(text: &str, tag: &str) -> usize {
    let max = text.len().min(tag.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// Where the splitter is in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the reply's start, not in reasoning: a `<think>` here opens it.
    Start,
    Reasoning,
    /// Just after `</think>`: leading whitespace is dropped.
    AfterReasoning,
    Content,
}

/// What one piece of text released: reasoning, then answer text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Split {
    pub reasoning: String,
    pub content: String,
}

/// Splits a reply's text into reasoning and answer as it streams.
#[derive(Debug, Clone)]
pub struct ReasoningSplitter {
    state: State,
    /// Text not yet released (a possible tag, or reasoning's trailing whitespace).
    held: String,
    /// Some reasoning text was released: its leading whitespace is behind.
    reasoning_started: bool,
}

impl ReasoningSplitter {
    /// `in_reasoning`: the prompt opened a thinking block ([`prompt_opens_reasoning`]).
    pub fn new(in_reasoning: bool) -> Self {
        Self {
            state: if in_reasoning {
                State::Reasoning
            } else {
                State::Start
            },
            held: String::new(),
            reasoning_started: false,
        }
    }

    /// Whether the reply is (still) in its reasoning.
    pub fn in_reasoning(&self) -> bool {
        self.state == State::Reasoning
    }

    /// Adds reply text; returns what is certainly reasoning or answer.
    pub fn push(&mut self, piece: &str) -> Split {
        self.held.push_str(piece);
        let mut out = Split::default();
        loop {
            match self.state {
                State::Start => {
                    let rest = self.held.trim_start();
                    if let Some(after) = rest.strip_prefix(OPEN) {
                        self.held = after.to_owned();
                        self.state = State::Reasoning;
                    } else if OPEN.starts_with(rest) {
                        // Empty, whitespace or a start of `<think>`: wait.
                        return out;
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Reasoning if !self.reasoning_started => {
                    let rest = self.held.trim_start();
                    if rest.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = rest.to_owned();
                    self.reasoning_started = true;
                }
                State::Reasoning => match self.held.find(CLOSE) {
                    Some(at) => {
                        out.reasoning.push_str(self.held[..at].trim_end());
                        self.held.drain(..at + CLOSE.len());
                        self.state = State::AfterReasoning;
                    }
                    None => {
                        // Hold a possible `</think>` and the trailing
                        // whitespace (dropped if `</think>` follows).
                        let tag = partial_tag_len(&self.held, CLOSE);
                        let body = self.held[..self.held.len() - tag].trim_end().len();
                        out.reasoning.push_str(&self.held[..body]);
                        self.held.drain(..body);
                        return out;
                    }
                },
                State::AfterReasoning => {
                    let rest = self.held.trim_start();
                    if rest.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = rest.to_owned();
                    self.state = State::Content;
                }
                State::Content => {
                    out.content.push_str(&self.held);
                    self.held.clear();
                    return out;
                }
            }
        }
    }

    /// The end of the reply: what is held is released (a reply cut inside
    /// its reasoning is all reasoning, as in vLLM).
    pub fn finish(&mut self) -> Split {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Reasoning => Split {
                reasoning: held,
                content: String::new(),
            },
            State::AfterReasoning => Split::default(),
            State::Start | State::Content => Split {
                reasoning: String::new(),
                content: held,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split of `pieces` streamed, checked equal to the split of their
    /// concatenation pushed at once and of it pushed one character at a time.
    fn split(in_reasoning: bool, pieces: &[&str]) -> (String, String) {
        let run = |pieces: &mut dyn Iterator<Item = String>| {
            let mut s = ReasoningSplitter::new(in_reasoning);
            let mut all = Split::default();
            for p in pieces {
                let r = s.push(&p);
                all.reasoning.push_str(&r.reasoning);
                all.content.push_str(&r.content);
            }
            let r = s.finish();
            all.reasoning.push_str(&r.reasoning);
            all.content.push_str(&r.content);
            (all.reasoning, all.content)
        };
        let streamed = run(&mut pieces.iter().map(|p| p.to_string()));
        let whole = pieces.concat();
        assert_eq!(run(&mut std::iter::once(whole.clone())), streamed);
        assert_eq!(run(&mut whole.chars().map(String::from)), streamed);
        streamed
    }

    fn pair(r: &str, c: &str) -> (String, String) {
        (r.into(), c.into())
    }

    #[test]
    fn the_prompt_decides_whether_the_reply_starts_as_reasoning() {
        assert!(text_opens_reasoning("<|im_start|>assistant\n<think>\n"));
        assert!(!text_opens_reasoning(
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert!(!text_opens_reasoning("<|im_start|>assistant\n"));
    }

    #[test]
    fn reasoning_ends_at_think_close_even_split_over_pieces() {
        assert_eq!(
            split(
                true,
                &["Let me see.\n", "</th", "ink>\n\nThe answer", " is 4."]
            ),
            pair("Let me see.", "The answer is 4.")
        );
        // Cut inside the reasoning: all of it is reasoning.
        assert_eq!(
            split(true, &["still thinking </thi"]),
            pair("still thinking </thi", "")
        );
        // Thinking off (or a template without it): all answer.
        assert_eq!(
            split(false, &["plain ", "answer </think> kept"]),
            pair("", "plain answer </think> kept")
        );
        // An older template: the model opens the block itself.
        assert_eq!(
            split(false, &["\n<thi", "nk>\nhmm\n</think>\n\nok"]),
            pair("hmm", "ok")
        );
        // Whitespace only, or `<think` never completed, is answer text.
        assert_eq!(split(false, &["<thin"]), pair("", "<thin"));
        assert_eq!(split(false, &["<thing>"]), pair("", "<thing>"));
        // Nothing after the reasoning: no answer.
        assert_eq!(split(true, &["a</think>\n\n"]), pair("a", ""));
    }

    #[test]
    fn a_tool_call_inside_the_reasoning_stays_reasoning() {
        let call = "<tool_call>\n<function=f>\n</function>\n</tool_call>";
        assert_eq!(
            split(true, &["maybe ", call, "\nno.</think>done"]),
            pair(&format!("maybe {call}\nno."), "done")
        );
    }

    #[test]
    fn partial_tags_are_held_on_character_boundaries() {
        assert_eq!(partial_tag_len("abc</th", CLOSE), 4);
        assert_eq!(partial_tag_len("abc", CLOSE), 0);
        assert_eq!(
            partial_tag_len("</think>", CLOSE),
            0,
            "a whole tag is not partial"
        );
        assert_eq!(partial_tag_len("é<", CLOSE), 1);
    }
}
