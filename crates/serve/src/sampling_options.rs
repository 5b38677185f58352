//! The request fields that reach the sampler beyond temperature / top-p /
//! top-k, and the `logprobs` objects of the replies.
//!
//! Fields (checked here; a bad value is a 400 naming the field):
//! - `presence_penalty`, `frequency_penalty`: OpenAI's, in [-2, 2], over the
//!   tokens generated for this request;
//! - `repetition_penalty` (vLLM / Hugging Face extension): > 0, over prompt
//!   and generated tokens (1 = off);
//! - `min_p` (vLLM extension): in [0, 1];
//! - chat: `logprobs` (boolean) and `top_logprobs` (0..=20, needs `logprobs`);
//!   completions: `logprobs` (an integer 0..=20: that many top entries).
//!
//! Log-probabilities are those of the model's raw next-token distribution
//! (`log_softmax` of the logits, before temperature, penalties and masks, as
//! vLLM reports by default), computed on the GPU for the sampled step; they
//! match `qwgpu score` over the same tokens.
//!
//! Reply shapes (OpenAI's): chat `choices[].logprobs = {"content": [{"token",
//! "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}`;
//! completions `choices[].logprobs = {"tokens", "token_logprobs",
//! "top_logprobs": [{token: logprob}], "text_offset"}`. Streamed chunks carry
//! the entries of the tokens they add.

use qwgpu_model::engine::{Sampled, SamplingParams, MAX_TOP_LOGPROBS};
use serde_json::{json, Map, Value};
use tokenizers::Tokenizer;

use crate::api::{type_error_kind, ApiError};

/// What a request asks of the sampler besides temperature, top-p and top-k.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SamplingOptions {
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub repetition_penalty: f32,
    pub min_p: f32,
    /// `Some(n)`: report each token's log-probability and the `n` most likely.
    pub top_logprobs: Option<usize>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn present<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn number(obj: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match present(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| type_error_kind(name, "a number", kind(v))),
    }
}

/// An integral number (`5` or `5.0`, as OpenAI accepts).
fn integer(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match present(obj, name) {
        None => Ok(None),
        Some(v) => match (v.as_i64(), v.as_f64()) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(Some(f as i64)),
            _ => Err(type_error_kind(name, "an integer", kind(v))),
        },
    }
}

fn range_error(name: &str, what: &str, got: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("`{name}` must be {what}, got {got}"), Some(name))
}

fn top_count(name: &str, n: i64) -> Result<usize, ApiError> {
    if !(0..=MAX_TOP_LOGPROBS as i64).contains(&n) {
        return Err(range_error(
            name,
            &format!("an integer from 0 to {MAX_TOP_LOGPROBS}"),
            n,
        ));
    }
    Ok(n as usize)
}

impl SamplingOptions {
    /// Reads the fields of the module docs from a request body.
    pub fn parse(obj: &Map<String, Value>, chat: bool) -> Result<Self, ApiError> {
        let mut o = Self {
            repetition_penalty: 1.0,
            ..Self::default()
        };
        for (name, slot) in [
            ("presence_penalty", &mut o.presence_penalty),
            ("frequency_penalty", &mut o.frequency_penalty),
        ] {
            if let Some(v) = number(obj, name)? {
                if !(-2.0..=2.0).contains(&v) {
                    return Err(range_error(name, "between -2 and 2", v));
                }
                *slot = v as f32;
            }
        }
        if let Some(v) = number(obj, "repetition_penalty")? {
            let f = v as f32;
            if !(f.is_finite() && f > 0.0 && (1.0 / f).is_finite()) {
                return Err(range_error("repetition_penalty", "a number above 0", v));
            }
            o.repetition_penalty = f;
        }
        if let Some(v) = number(obj, "min_p")? {
            if !(0.0..=1.0).contains(&v) {
                return Err(range_error("min_p", "between 0 and 1", v));
            }
            o.min_p = v as f32;
        }
        if chat {
            let on = match present(obj, "logprobs") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => return Err(type_error_kind("logprobs", "a boolean", kind(v))),
            };
            let top = integer(obj, "top_logprobs")?
                .map(|n| top_count("top_logprobs", n))
                .transpose()?;
            if top.is_some() && !on {
                return Err(ApiError::invalid(
                    "`top_logprobs` needs `logprobs: true`",
                    Some("top_logprobs"),
                ));
            }
            o.top_logprobs = on.then(|| top.unwrap_or(0));
        } else {
            o.top_logprobs = integer(obj, "logprobs")?
                .map(|n| top_count("logprobs", n))
                .transpose()?;
        }
        Ok(o)
    }

    /// `params` with these penalties and min-p.
    pub fn apply(&self, params: SamplingParams) -> SamplingParams {
        SamplingParams {
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repetition_penalty: self.repetition_penalty,
            min_p: self.min_p,
            ..params
        }
    }
}

/// One generated token's log-probabilities, as the engine sends them.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

impl TokenLogprobs {
    /// From a sampled step that carries log-probabilities.
    pub fn from_sampled(s: &Sampled) -> Option<Self> {
        s.logprob.map(|logprob| Self {
            token: s.token,
            logprob,
            top: s.top.clone(),
        })
    }
}

/// GPT-2's byte-level alphabet, inverted: the byte each printable character
/// of a byte-level BPE token stands for.
fn byte_of(c: char) -> Option<u8> {
    let c = c as u32;
    let direct =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    if c < 256 && direct(c) {
        return Some(c as u8);
    }
    // The other bytes map, in order, to 256, 257, ...
    let mut n = 256;
    for b in 0u32..256 {
        if !direct(b) {
            if n == c {
                return Some(b as u8);
            }
            n += 1;
        }
    }
    None
}

/// The bytes token `id` stands for: a byte-level BPE token mapped back to
/// its bytes, otherwise (special and added tokens, other tokenizers) its
/// decoded text.
pub fn token_bytes(tokenizer: &Tokenizer, id: u32) -> Vec<u8> {
    if let Some(piece) = tokenizer.id_to_token(id) {
        let special = tokenizer
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special);
        if !special {
            if let Some(bytes) = piece.chars().map(byte_of).collect::<Option<Vec<u8>>>() {
                return bytes;
            }
        }
    }
    tokenizer
        .decode(&[id], false)
        .map(String::into_bytes)
        .unwrap_or_default()
}

/// A finite JSON number, or `-9999.0` (what OpenAI reports for a token it
/// considers impossible) where the log-probability is −∞ or NaN.
fn lp_json(v: f32) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!(-9999.0)
    }
}

fn token_entry(tokenizer: &Tokenizer, id: u32, logprob: f32) -> Map<String, Value> {
    let bytes = token_bytes(tokenizer, id);
    let mut m = Map::new();
    m.insert(
        "token".into(),
        Value::String(String::from_utf8_lossy(&bytes).into_owned()),
    );
    m.insert("logprob".into(), lp_json(logprob));
    m.insert("bytes".into(), json!(bytes));
    m
}

/// Chat: the `content` list of a `logprobs` object.
pub fn chat_content(tokenizer: &Tokenizer, tokens: &[TokenLogprobs]) -> Value {
    Value::Array(
        tokens
            .iter()
            .map(|t| {
                let mut m = token_entry(tokenizer, t.token, t.logprob);
                let top: Vec<Value> = t
                    .top
                    .iter()
                    .map(|&(id, lp)| Value::Object(token_entry(tokenizer, id, lp)))
                    .collect();
                m.insert("top_logprobs".into(), Value::Array(top));
                Value::Object(m)
            })
            .collect(),
    )
}

/// Chat: a choice's `logprobs` object.
pub fn chat_logprobs(tokenizer: &Tokenizer, tokens: &[TokenLogprobs]) -> Value {
    json!({"content": chat_content(tokenizer, tokens), "refusal": null})
}

/// Completions: a choice's `logprobs` object; `offset`: characters of reply
/// text before the first of `tokens` (streamed chunks continue the count).
pub fn completion_logprobs(
    tokenizer: &Tokenizer,
    tokens: &[TokenLogprobs],
    offset: usize,
) -> Value {
    let mut texts = Vec::new();
    let mut lps = Vec::new();
    let mut tops = Vec::new();
    let mut offsets = Vec::new();
    let mut at = offset;
    for t in tokens {
        let text = String::from_utf8_lossy(&token_bytes(tokenizer, t.token)).into_owned();
        offsets.push(at);
        at += text.chars().count();
        texts.push(Value::String(text));
        lps.push(lp_json(t.logprob));
        let mut top = Map::new();
        for &(id, lp) in &t.top {
            let text = String::from_utf8_lossy(&token_bytes(tokenizer, id)).into_owned();
            top.entry(text).or_insert_with(|| lp_json(lp));
        }
        tops.push(Value::Object(top));
    }
    json!({"tokens": texts, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

/// Characters the completion `logprobs` of `tokens` cover (the next chunk's offset).
pub fn text_chars(tokenizer: &Tokenizer, tokens: &[TokenLogprobs]) -> usize {
    tokens
        .iter()
        .map(|t| {
            String::from_utf8_lossy(&token_bytes(tokenizer, t.token))
                .chars()
                .count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value, chat: bool) -> Result<SamplingOptions, ApiError> {
        SamplingOptions::parse(body.as_object().expect("object"), chat)
    }

    fn param(body: Value, chat: bool) -> Option<String> {
        parse(body, chat).expect_err("refused").param
    }

    #[test]
    fn fields_are_read_and_checked_by_name() {
        let o = parse(
            json!({"presence_penalty": 0.5, "frequency_penalty": -1, "repetition_penalty": 1.2,
                   "min_p": 0.05, "logprobs": true, "top_logprobs": 3}),
            true,
        )
        .unwrap();
        assert_eq!(o.top_logprobs, Some(3));
        assert_eq!(o.presence_penalty, 0.5);
        assert_eq!(o.frequency_penalty, -1.0);
        let p = o.apply(SamplingParams::GREEDY);
        assert_eq!((p.repetition_penalty, p.min_p), (1.2, 0.05));
        assert!(p.validate().is_ok());
        assert_eq!(
            parse(json!({}), true)
                .unwrap()
                .apply(SamplingParams::GREEDY),
            SamplingParams::GREEDY
        );
        assert_eq!(
            parse(json!({"logprobs": true}), true).unwrap().top_logprobs,
            Some(0)
        );
        assert_eq!(
            parse(json!({"logprobs": false}), true)
                .unwrap()
                .top_logprobs,
            None
        );
        assert_eq!(
            parse(json!({"logprobs": 2}), false).unwrap().top_logprobs,
            Some(2)
        );
        assert_eq!(
            parse(json!({"logprobs": 2.0}), false).unwrap().top_logprobs,
            Some(2)
        );
        for (body, chat, name) in [
            (json!({"presence_penalty": 2.5}), true, "presence_penalty"),
            (json!({"frequency_penalty": "x"}), true, "frequency_penalty"),
            (json!({"repetition_penalty": 0}), true, "repetition_penalty"),
            (
                json!({"repetition_penalty": -1}),
                false,
                "repetition_penalty",
            ),
            (json!({"min_p": 1.5}), true, "min_p"),
            (json!({"logprobs": 1}), true, "logprobs"),
            (
                json!({"logprobs": true, "top_logprobs": 21}),
                true,
                "top_logprobs",
            ),
            (json!({"top_logprobs": 2}), true, "top_logprobs"),
            (json!({"logprobs": 21}), false, "logprobs"),
            (json!({"logprobs": -1}), false, "logprobs"),
            (json!({"logprobs": true}), false, "logprobs"),
        ] {
            assert_eq!(param(body.clone(), chat).as_deref(), Some(name), "{body}");
        }
    }

    #[test]
    fn the_byte_level_alphabet_maps_back_to_bytes() {
        assert_eq!(byte_of('a'), Some(b'a'));
        assert_eq!(byte_of('Ġ'), Some(b' '));
        assert_eq!(byte_of('Ċ'), Some(b'\n'));
        assert_eq!(byte_of('ā'), Some(1));
        assert_eq!(byte_of('\u{2581}'), None);
        // A bijection onto 0..=255.
        let mut seen = [false; 256];
        for c in (0u32..400).filter_map(char::from_u32) {
            if let Some(b) = byte_of(c) {
                assert!(!seen[b as usize], "{c:?}");
                seen[b as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn impossible_tokens_get_a_finite_number() {
        assert_eq!(lp_json(f32::NEG_INFINITY), json!(-9999.0));
        assert_eq!(lp_json(-0.5), json!(-0.5));
    }
}
