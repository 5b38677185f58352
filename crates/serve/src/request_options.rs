//! Request fields beyond the prompt and sampling: `n`, `stop_token_ids`,
//! `ignore_eos`, `user` (accepted, ignored), and the OpenAI fields qwgpu
//! does not implement (or, on completions, the chat-only ones), refused
//! with a 400 naming the field rather than silently ignored (a client
//! relying on `echo` or `logit_bias` must learn that it got something else).

use serde_json::{Map, Value};

use crate::api::{field, integer, ApiError};

/// Most choices one request may ask for (`n`).
pub const MAX_N: usize = 16;

/// What [`read`] takes from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOptions {
    /// Choices to generate for the one prompt (`n`).
    pub n: usize,
    /// Token ids that end the reply as an end-of-sequence token does.
    pub stop_ids: Vec<u32>,
    /// The model's end-of-sequence tokens do not end the reply.
    pub ignore_eos: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            n: 1,
            stop_ids: Vec::new(),
            ignore_eos: false,
        }
    }
}

fn unsupported(name: &str, why: &str) -> ApiError {
    ApiError::invalid(format!("`{name}` is not supported: {why}"), Some(name))
        .with_code("unsupported_parameter")
}

/// Refuses the fields qwgpu does not implement when they ask for something
/// (their neutral values, such as `echo: false`, pass).
fn refuse_unsupported(obj: &Map<String, Value>, chat: bool) -> Result<(), ApiError> {
    let truthy = |name: &str| match field(obj, name) {
        None | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    if truthy("echo") {
        return Err(unsupported(
            "echo",
            "the prompt is not repeated in the reply",
        ));
    }
    if truthy("suffix") {
        return Err(unsupported(
            "suffix",
            "no insertion (fill-in-the-middle) mode",
        ));
    }
    if truthy("logit_bias") {
        return Err(unsupported(
            "logit_bias",
            "logits cannot be biased per token",
        ));
    }
    if truthy("functions") || truthy("function_call") {
        let name = if truthy("functions") {
            "functions"
        } else {
            "function_call"
        };
        return Err(unsupported(
            name,
            "the legacy function-calling fields are replaced by `tools` and `tool_choice`",
        ));
    }
    if truthy("audio") {
        return Err(unsupported("audio", "the model reads and writes text only"));
    }
    if let Some(m) = field(obj, "modalities") {
        let text_only = m
            .as_array()
            .is_some_and(|a| a.iter().all(|v| v.as_str() == Some("text")));
        if !text_only {
            return Err(unsupported("modalities", "the model writes text only"));
        }
    }
    if truthy("prediction") {
        return Err(unsupported("prediction", "no predicted outputs"));
    }
    if truthy("web_search_options") {
        return Err(unsupported("web_search_options", "no web search"));
    }
    if !chat {
        // The chat fields mean nothing to a completion (it has no template
        // and its text is not parsed for calls): a client sending them
        // expects a behaviour it would not get.
        for name in ["tools", "tool_choice", "chat_template_kwargs"] {
            if truthy(name) {
                return Err(unsupported(
                    name,
                    "a chat field: completions have no tools or chat template (use /v1/chat/completions)",
                ));
            }
        }
    }
    if !chat && truthy("prompt_logprobs") {
        return Err(unsupported(
            "prompt_logprobs",
            "no prompt log-probabilities",
        ));
    }
    Ok(())
}

/// Reads the fields of [`RequestOptions`] and refuses the unsupported ones.
pub fn read(obj: &Map<String, Value>, chat: bool) -> Result<RequestOptions, ApiError> {
    refuse_unsupported(obj, chat)?;
    let n = match integer(obj, "n")? {
        None => 1,
        Some(n) if (1..=MAX_N as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                format!("`n` must be between 1 and {MAX_N}, got {n}"),
                Some("n"),
            ))
        }
    };
    if let Some(b) = integer(obj, "best_of")? {
        if b != n as i64 && b != 1 {
            return Err(unsupported(
                "best_of",
                "only `best_of` equal to `n` (every choice is returned)",
            ));
        }
    }
    let stop_ids = match field(obj, "stop_token_ids") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| {
                        crate::api::type_error_kind(
                            "stop_token_ids",
                            "a list of token ids",
                            crate::ordered_json::Json::from(v).kind(),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(crate::api::type_error_kind(
                "stop_token_ids",
                "a list of token ids",
                crate::ordered_json::Json::from(other).kind(),
            ))
        }
    };
    let ignore_eos = match field(obj, "ignore_eos") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(crate::api::type_error_kind(
                "ignore_eos",
                "a boolean",
                crate::ordered_json::Json::from(other).kind(),
            ))
        }
    };
    // `user` identifies the end user for abuse tracking at OpenAI: nothing
    // to do here, but it must be a string.
    if let Some(u) = field(obj, "user") {
        if !u.is_string() {
            return Err(crate::api::type_error_kind(
                "user",
                "a string",
                crate::ordered_json::Json::from(u).kind(),
            ));
        }
    }
    Ok(RequestOptions {
        n,
        stop_ids,
        ignore_eos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value, chat: bool) -> Result<RequestOptions, ApiError> {
        read(v.as_object().expect("object"), chat)
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        for (body, name) in [
            (json!({"echo": true}), "echo"),
            (json!({"suffix": "end"}), "suffix"),
            (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
            (json!({"functions": [{"name": "f"}]}), "functions"),
            (json!({"function_call": "auto"}), "function_call"),
            (json!({"best_of": 3}), "best_of"),
            (json!({"n": 2, "best_of": 3}), "best_of"),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (json!({"n": 0}), "n"),
            (json!({"n": 17}), "n"),
            (json!({"stop_token_ids": [1, -2]}), "stop_token_ids"),
            (json!({"ignore_eos": 1}), "ignore_eos"),
            (json!({"user": 5}), "user"),
        ] {
            let e = opts(body.clone(), false).expect_err("refused");
            assert_eq!(e.param.as_deref(), Some(name), "{body}");
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn chat_fields_are_refused_by_name_on_completions_only() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        for (body, name) in [
            (json!({"tools": tools}), "tools"),
            (json!({"tool_choice": "required"}), "tool_choice"),
            (
                json!({"chat_template_kwargs": {"enable_thinking": false}}),
                "chat_template_kwargs",
            ),
        ] {
            let e = opts(body.clone(), false).expect_err("refused");
            assert_eq!(e.param.as_deref(), Some(name), "{body}");
            opts(body.clone(), true).expect("a chat field on chat");
        }
        opts(json!({"tools": [], "chat_template_kwargs": {}}), false).expect("empty ones pass");
    }

    #[test]
    fn neutral_values_and_implemented_fields_pass() {
        let o = opts(
            json!({"echo": false, "suffix": "", "logit_bias": {}, "best_of": 2, "n": 2,
                   "modalities": ["text"], "user": "u-1", "stop_token_ids": [7, 9],
                   "ignore_eos": true, "logprobs": 2, "tools": [], "response_format": {"type": "text"}}),
            true,
        )
        .expect("accepted");
        assert_eq!(
            o,
            RequestOptions {
                n: 2,
                stop_ids: vec![7, 9],
                ignore_eos: true
            }
        );
        assert_eq!(opts(json!({"n": 3.0}), false).expect("n").n, 3);
        assert_eq!(
            opts(json!({}), false).expect("defaults"),
            RequestOptions::default()
        );
    }
}
