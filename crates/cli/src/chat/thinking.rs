//! How `qwgpu chat` shows a reply's reasoning (the text before `</think>`,
//! split as the server splits `reasoning_content`): dimmed on a terminal,
//! hidden with `--hide-thinking`, and left as the model wrote it when
//! stdout is not a terminal (a script reading the output sees the raw reply).

use qwgpu_serve::reasoning::{text_opens_reasoning, ReasoningSplitter, Split};

/// Terminal escapes around the reasoning: faint, then back to normal.
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// How the reasoning is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingView {
    /// Reasoning dimmed, a blank line, then the answer.
    Dim,
    /// The answer only.
    Hide,
    /// The reply as generated (`</think>` included).
    Raw,
}

impl ThinkingView {
    /// `--hide-thinking` hides; otherwise a terminal dims, a pipe gets the raw text.
    pub fn choose(hide: bool, terminal: bool) -> Self {
        match (hide, terminal) {
            (true, _) => Self::Hide,
            (false, true) => Self::Dim,
            (false, false) => Self::Raw,
        }
    }
}

/// One reply's text as shown.
pub struct ThinkingFilter {
    view: ThinkingView,
    split: ReasoningSplitter,
    /// Some reasoning was shown (the answer then starts after a blank line).
    shown_reasoning: bool,
    /// Some answer text was shown.
    shown_answer: bool,
}

impl ThinkingFilter {
    /// `prompt`: the rendered prompt of the turn (whether it opens a thinking block).
    pub fn new(view: ThinkingView, prompt: &str) -> Self {
        Self {
            view,
            split: ReasoningSplitter::new(text_opens_reasoning(prompt)),
            shown_reasoning: false,
            shown_answer: false,
        }
    }

    fn show(&mut self, split: Split) -> String {
        let mut out = String::new();
        if !split.reasoning.is_empty() && self.view == ThinkingView::Dim {
            let reasoning = &split.reasoning;
            out.push_str(&format!("{DIM}{reasoning}{RESET}"));
            self.shown_reasoning = true;
        }
        if !split.content.is_empty() {
            if self.shown_reasoning && !self.shown_answer {
                out.push_str("\n\n");
            }
            self.shown_answer = true;
            out.push_str(&split.content);
        }
        out
    }

    /// The text to show for a piece of the reply.
    pub fn push(&mut self, piece: &str) -> String {
        if self.view == ThinkingView::Raw {
            return piece.to_owned();
        }
        let split = self.split.push(piece);
        self.show(split)
    }

    /// What is still held at the end of the reply.
    pub fn finish(&mut self) -> String {
        if self.view == ThinkingView::Raw {
            return String::new();
        }
        let split = self.split.finish();
        self.show(split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(view: ThinkingView, prompt: &str, pieces: &[&str]) -> String {
        let mut f = ThinkingFilter::new(view, prompt);
        let mut out: String = pieces.iter().map(|p| f.push(p)).collect();
        out.push_str(&f.finish());
        out
    }

    const OPEN: &str = "<|im_start|>assistant\n<think>\n";
    const REPLY: [&str; 3] = ["Two plus two", " is four.\n</th", "ink>\n\nIt is 4."];

    #[test]
    fn reasoning_is_dimmed_hidden_or_left_raw() {
        assert_eq!(
            shown(ThinkingView::Dim, OPEN, &REPLY),
            "\x1b[2mTwo plus two\x1b[0m\x1b[2m is four.\x1b[0m\n\nIt is 4."
        );
        assert_eq!(shown(ThinkingView::Hide, OPEN, &REPLY), "It is 4.");
        assert_eq!(shown(ThinkingView::Raw, OPEN, &REPLY), REPLY.concat());
        // Thinking off: the prompt closed the block; all of it is the answer.
        let closed = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
        assert_eq!(shown(ThinkingView::Hide, closed, &["Hi."]), "Hi.");
        // A reply cut inside its reasoning shows no answer when hidden.
        assert_eq!(shown(ThinkingView::Hide, OPEN, &["hmm"]), "");
    }

    #[test]
    fn the_view_follows_the_flag_and_the_terminal() {
        assert_eq!(ThinkingView::choose(true, false), ThinkingView::Hide);
        assert_eq!(ThinkingView::choose(false, true), ThinkingView::Dim);
        assert_eq!(ThinkingView::choose(false, false), ThinkingView::Raw);
    }
}
