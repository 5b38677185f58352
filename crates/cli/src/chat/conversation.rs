//! One chat's state: the messages, the token ids the session has run, and
//! snapshots of the session at turn boundaries.
//!
//! Each turn renders the whole conversation with the chat template (as the
//! model was trained to see it) but runs only the tokens the session has not
//! seen. When the new rendering starts with the text the session has seen,
//! its token ids are kept as they are (the reply's ids as generated) and only
//! the new text is tokenized. When the template re-renders the history
//! differently (Qwen3.5 drops earlier turns' thinking blocks), the whole
//! rendering is tokenized and the session restarts from the latest snapshot
//! whose tokens are a prefix of it: a Gated DeltaNet layer's state cannot be
//! rewound token by token, so snapshots are taken where a template is likely
//! to re-render (after the user's turn, before the assistant header; after
//! each reply).

use std::time::Instant;

use anyhow::{bail, Result};
use qwgpu_model::engine::{Model, SamplingParams, Session, Snapshot};
use tokenizers::Tokenizer;

use crate::chat_template::{ChatTemplate, Message, RenderOptions};
use crate::detokenize::Detokenizer;

/// Snapshots kept: the latest ones are the ones a new turn can resume from.
const MAX_MARKS: usize = 8;

/// A snapshot of the session after its first `len` tokens.
struct Mark {
    len: usize,
    snap: Snapshot,
}

/// What stays fixed for a whole chat.
pub struct Setup<'a> {
    pub model: &'a Model,
    pub tokenizer: &'a Tokenizer,
    pub template: &'a ChatTemplate,
    pub render: RenderOptions,
    pub params: SamplingParams,
    pub seed: u64,
    pub eos: Vec<u32>,
    pub max_tokens: usize,
    pub context: Option<usize>,
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An end-of-sequence token.
    Eos,
    /// `--max-tokens` reached.
    Length,
    /// Ctrl-C.
    Interrupted,
    /// The reader of stdout went away.
    Closed,
}

/// The numbers of one turn, for the report on stderr.
pub struct TurnReport {
    /// Tokens run before the first new one was sampled.
    pub prefilled: usize,
    /// Tokens of the conversation up to the assistant's answer.
    pub total: usize,
    /// Where the session resumed from when the template re-rendered the
    /// history (`Some(0)`: from scratch); `None` when it went on from its state.
    pub resumed_at: Option<usize>,
    pub prefill_s: f64,
    /// Tokens sampled (the end-of-sequence token included).
    pub decoded: usize,
    pub decode_steps: usize,
    pub decode_s: f64,
    pub stop: Stop,
}

/// A user turn ready to run: checked, tokenized, nothing run yet.
pub struct Plan {
    messages: Vec<Message>,
    text: String,
    ids: Vec<u32>,
    /// Where the history ends and the generation prompt (assistant header) starts.
    split: usize,
}

impl Plan {
    /// The rendered conversation, ending with the generation prompt.
    pub fn text(&self) -> &str {
        &self.text
    }
}

pub struct Conversation<'a> {
    setup: Setup<'a>,
    /// The messages so far (a system message first when given).
    messages: Vec<Message>,
    session: Session,
    /// The token ids the session has run (its position is their count).
    fed: Vec<u32>,
    /// The last token of the previous reply: sampled, shown, not run yet.
    pending: Option<u32>,
    /// The text that `fed` and `pending` spell.
    text: String,
    marks: Vec<Mark>,
}

impl<'a> Conversation<'a> {
    pub fn new(setup: Setup<'a>, messages: Vec<Message>) -> Result<Self> {
        let mut session = setup.model.new_session()?;
        setup.model.set_seed(&mut session, setup.seed);
        Ok(Self {
            setup,
            messages,
            session,
            fed: Vec::new(),
            pending: None,
            text: String::new(),
            marks: Vec::new(),
        })
    }

    /// The model's vocabulary size.
    pub fn vocab(&self) -> usize {
        self.setup.model.config().vocab_size
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The conversation's token ids, the last reply's final token included.
    pub fn tokens(&self) -> Vec<u32> {
        self.fed.iter().copied().chain(self.pending).collect()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .setup
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizing the conversation: {e}"))?
            .get_ids()
            .to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.setup
            .tokenizer
            .decode(ids, false)
            .map_err(|e| anyhow::anyhow!("detokenizing: {e}"))
    }

    /// Forgets everything but `messages` (the system message), with a fresh session.
    pub fn reset(&mut self, messages: Vec<Message>) -> Result<()> {
        self.session = self.setup.model.new_session()?;
        self.setup
            .model
            .set_seed(&mut self.session, self.setup.seed);
        self.messages = messages;
        self.fed.clear();
        self.pending = None;
        self.text.clear();
        self.marks.clear();
        Ok(())
    }

    /// Replaces the conversation by a saved one and runs its tokens in one
    /// prefill; returns the seconds it took.
    pub fn load(&mut self, messages: Vec<Message>, tokens: Vec<u32>) -> Result<f64> {
        if let Some(limit) = self.setup.context {
            if tokens.len() > limit {
                let n = tokens.len();
                bail!(
                    "the saved conversation has {n} tokens, more than the model's context length of {limit}"
                );
            }
        }
        let text = self.decode(&tokens)?;
        self.reset(messages)?;
        let t0 = Instant::now();
        if !tokens.is_empty() {
            self.setup.model.forward(&mut self.session, &tokens)?;
        }
        self.fed = tokens;
        self.text = text;
        self.mark()?;
        Ok(t0.elapsed().as_secs_f64())
    }

    /// Adds the user's message and tokenizes the conversation, checking it
    /// against the context length; an error leaves the conversation unchanged.
    pub fn plan(&self, user: &str) -> Result<Plan> {
        let mut messages = self.messages.clone();
        messages.push(Message::new("user", user));
        let render = |add_generation_prompt| {
            self.setup.template.render(
                &messages,
                &RenderOptions {
                    add_generation_prompt,
                    ..self.setup.render
                },
            )
        };
        let with = render(true)?;
        let without = render(false)?;
        let (history, header) = match with.strip_prefix(without.as_str()) {
            Some(header) => (without.as_str(), header),
            None => (with.as_str(), ""),
        };
        let mut ids = match history.strip_prefix(self.text.as_str()) {
            // The session's ids stay as they are (the reply as generated);
            // a template's text after a reply starts with a special token
            // (`<|im_end|>`), where tokenizing apart changes nothing.
            Some(rest) => {
                let mut ids = self.tokens();
                ids.extend(self.encode(rest)?);
                ids
            }
            None => self.encode(history)?,
        };
        let split = ids.len();
        ids.extend(self.encode(header)?);
        if ids.is_empty() {
            bail!("the chat template rendered the conversation as no tokens");
        }
        let vocab = self.setup.model.config().vocab_size;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            bail!("the tokenizer gives token id {bad}, outside the model's vocabulary of {vocab}");
        }
        if let Some(limit) = self.setup.context {
            let need = ids.len().saturating_add(self.setup.max_tokens);
            if need > limit {
                let (n, max_tokens) = (ids.len(), self.setup.max_tokens);
                bail!(
                    "the conversation ({n} tokens) + --max-tokens {max_tokens} = {need} tokens exceeds the model's context length of {limit}: /reset (or /save, then start over), or lower --max-tokens"
                );
            }
        }
        Ok(Plan {
            messages,
            text: with,
            ids,
            split,
        })
    }

    /// Snapshots the session at its current position.
    fn mark(&mut self) -> Result<()> {
        let len = self.fed.len();
        self.marks.retain(|m| m.len < len);
        if self.marks.len() == MAX_MARKS {
            self.marks.remove(0);
        }
        let snap = self.setup.model.snapshot(&self.session)?;
        self.marks.push(Mark { len, snap });
        Ok(())
    }

    /// Moves the session to the longest state whose tokens start `ids` (and
    /// leave at least one token to run); returns where it resumed from when
    /// that was not simply its current state.
    fn resume(&mut self, ids: &[u32]) -> Result<Option<usize>> {
        let fed = &self.fed;
        let usable = |len: usize| len < ids.len() && len <= fed.len() && fed[..len] == ids[..len];
        if usable(fed.len()) {
            return Ok(None);
        }
        while self.marks.last().is_some_and(|m| !usable(m.len)) {
            self.marks.pop();
        }
        match self.marks.last() {
            Some(m) => {
                self.setup.model.restore(&mut self.session, &m.snap)?;
                self.fed.truncate(m.len);
            }
            None => {
                self.session = self.setup.model.new_session()?;
                self.setup
                    .model
                    .set_seed(&mut self.session, self.setup.seed);
                self.fed.clear();
            }
        }
        Ok(Some(self.fed.len()))
    }

    /// Runs the turn: prefills what the session has not seen, then samples
    /// the reply, giving each piece of text to `sink` (which returns false
    /// once nobody reads) and checking `stopped` between steps.
    pub fn run(
        &mut self,
        plan: Plan,
        sink: &mut dyn FnMut(&str) -> Result<bool>,
        stopped: &dyn Fn() -> bool,
    ) -> Result<TurnReport> {
        let model = self.setup.model;
        let params = self.setup.params;
        let Plan {
            messages,
            text,
            ids,
            split,
        } = plan;
        let t0 = Instant::now();
        let resumed_at = self.resume(&ids)?;
        let start = self.fed.len();
        // Prefill the history and the assistant header apart, with a
        // snapshot between them: the next turn's rendering keeps the history
        // but may render this turn's header differently (a thinking block).
        if start < split && split < ids.len() {
            model.forward(&mut self.session, &ids[start..split])?;
            self.fed.extend_from_slice(&ids[start..split]);
            self.mark()?;
        }
        let mut next = model.sample_next(&mut self.session, &ids[self.fed.len()..], &params)?;
        let total = ids.len();
        self.fed = ids;
        self.mark()?;
        let prefill_s = t0.elapsed().as_secs_f64();
        self.messages = messages;
        self.text = text;
        self.pending = None;

        let mut reply: Vec<u32> = Vec::new();
        let mut detok = Detokenizer::new(self.setup.tokenizer, &self.fed);
        let (mut decode_steps, mut decode_s) = (0usize, 0.0f64);
        let stop = loop {
            reply.push(next);
            if self.setup.eos.contains(&next) {
                break Stop::Eos;
            }
            if !sink(&detok.push(next)?)? {
                break Stop::Closed;
            }
            if reply.len() >= self.setup.max_tokens {
                break Stop::Length;
            }
            if stopped() {
                break Stop::Interrupted;
            }
            let t = Instant::now();
            next = model.sample_next(&mut self.session, &[next], &params)?;
            self.fed.push(reply[reply.len() - 1]);
            decode_s += t.elapsed().as_secs_f64();
            decode_steps += 1;
        };
        if stop != Stop::Closed {
            sink(&detok.finish()?)?;
        }
        let shown = if stop == Stop::Eos {
            &reply[..reply.len() - 1]
        } else {
            &reply[..]
        };
        let content = self.decode(shown)?;
        self.text.push_str(&self.decode(&reply)?);
        self.pending = reply.last().copied();
        self.messages.push(Message::new("assistant", &content));
        self.mark()?;
        Ok(TurnReport {
            prefilled: total - start,
            total,
            resumed_at,
            prefill_s,
            decoded: reply.len(),
            decode_steps,
            decode_s,
            stop,
        })
    }
}
