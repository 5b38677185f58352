//! The OpenAI request fields qwgpu reads, checked one by one so that a bad
//! request gets an OpenAI-style error naming the field (`param`), and the
//! error type every handler returns.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::chat_request::{self, ToolChoice};
use crate::chat_template::Message;
use crate::ordered_json::Json;

/// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_owned),
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// What a request asks for, before tokenization.
#[derive(Debug, Clone)]
pub enum Input {
    Messages {
        messages: Vec<Message>,
        /// The request's function schemas, for the template (empty: none).
        tools: Vec<Json>,
        enable_thinking: Option<bool>,
    },
    Text(String),
    Ids(Vec<u32>),
}

/// The fields of a (chat) completion request qwgpu uses.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub model: Option<String>,
    pub input: Input,
    pub max_tokens: Option<u64>,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// `n`, `stop_token_ids`, `ignore_eos` (and the unsupported fields refused).
    pub options: crate::request_options::RequestOptions,
    /// Chat: whether and which tools the reply may call (`tool_choice`);
    /// completions: `None`.
    pub tool_choice: ToolChoice,
    /// `parallel_tool_calls` (default true): false keeps only a reply's first call.
    pub parallel_tool_calls: bool,
    /// Penalties, min-p and log-probabilities (`sampling_options`).
    pub sampling: crate::sampling_options::SamplingOptions,
    /// `response_format` / a forcing `tool_choice`: what the reply must be.
    pub constraint: Option<crate::constrain::Spec>,
}

fn type_error(param: &str, expected: &str, got: &Value) -> ApiError {
    type_error_kind(param, expected, Json::from(got).kind())
}

/// "`param` must be `expected`, got `got`" (`got`: "a string", "null", ...).
pub(crate) fn type_error_kind(param: &str, expected: &str, got: &str) -> ApiError {
    ApiError::invalid(
        format!("`{param}` must be {expected}, got {got}"),
        Some(param),
    )
    .with_code("invalid_type")
}

/// A field that is absent or null is `None`.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn number(obj: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| type_error(name, "a number", v)),
    }
}

/// An integer; an integral number such as `5.0` counts (OpenAI takes it).
pub(crate) fn integer(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => match (v.as_i64(), v.as_u64(), v.as_f64()) {
            (Some(n), _, _) => Ok(Some(n)),
            (None, Some(_), _) => Ok(Some(i64::MAX)),
            (None, None, Some(f)) if f.fract() == 0.0 && f.is_finite() => {
                // Saturates beyond i64, like the u64 case above.
                Ok(Some(f as i64))
            }
            _ => Err(type_error(name, "an integer", v)),
        },
    }
}

fn boolean(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| type_error(name, "a boolean", v)),
    }
}

/// `prompt`: a string, a list of one string, or a list of token ids.
fn prompt(obj: &Map<String, Value>) -> Result<Input, ApiError> {
    match obj.get("prompt") {
        None | Some(Value::Null) => Err(ApiError::invalid("`prompt` is required", Some("prompt"))
            .with_code("missing_required_parameter")),
        Some(Value::String(s)) => Ok(Input::Text(s.clone())),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            Ok(Input::Text(a[0].as_str().unwrap_or_default().to_owned()))
        }
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_u64) => Ok(Input::Ids(
            a.iter()
                .map(|v| {
                    v.as_u64()
                        .map_or(u32::MAX, |n| n.min(u32::MAX as u64) as u32)
                })
                .collect(),
        )),
        Some(Value::Array(a)) if a.len() > 1 && a.iter().all(Value::is_string) => Err(
            ApiError::invalid("only one prompt per request is supported", Some("prompt")),
        ),
        Some(other) => Err(type_error(
            "prompt",
            "a string or a list of token ids",
            other,
        )),
    }
}

fn stop(obj: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    match field(obj, "stop") {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => {
            if a.len() > 16 {
                return Err(ApiError::invalid(
                    "`stop` has more than 16 strings",
                    Some("stop"),
                ));
            }
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| type_error("stop", "a string or a list of strings", v))
                })
                .collect()
        }
        Some(other) => Err(type_error("stop", "a string or a list of strings", other)),
    }
}

impl GenRequest {
    /// Reads a request body already parsed as JSON; `chat` picks `messages`
    /// over `prompt`. Objects in a `serde_json::Value` have lost the order
    /// the client wrote their keys in, which templates print (tool schemas,
    /// call arguments): the server reads bodies with [`GenRequest::parse_text`].
    pub fn parse(body: &Value, chat: bool) -> Result<Self, ApiError> {
        Self::parse_ordered(&Json::from(body), chat)
    }

    /// Reads a request body's text.
    pub fn parse_text(text: &str, chat: bool) -> Result<Self, ApiError> {
        let json = Json::parse(text).map_err(|e| {
            ApiError::invalid(format!("malformed JSON in the request body: {e}"), None)
        })?;
        Self::parse_ordered(&json, chat)
    }

    fn parse_ordered(ordered: &Json, chat: bool) -> Result<Self, ApiError> {
        let body = &ordered.to_serde();
        let Value::Object(obj) = body else {
            return Err(ApiError::invalid(
                "the request body must be a JSON object",
                None,
            ));
        };
        let model = match field(obj, "model") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(type_error("model", "a string", other)),
        };
        let (mut tool_choice, mut parallel_tool_calls) = (ToolChoice::None, true);
        let input = if chat {
            let enable_thinking = match field(obj, "chat_template_kwargs") {
                None => None,
                Some(Value::Object(kw)) => boolean(kw, "enable_thinking").map_err(|_| {
                    type_error(
                        "chat_template_kwargs.enable_thinking",
                        "a boolean",
                        &kw["enable_thinking"],
                    )
                })?,
                Some(other) => return Err(type_error("chat_template_kwargs", "an object", other)),
            };
            let tools = chat_request::tools(ordered)?;
            tool_choice = chat_request::tool_choice(ordered, &tools)?;
            parallel_tool_calls = chat_request::parallel_tool_calls(ordered)?;
            Input::Messages {
                messages: chat_request::messages(ordered)?,
                tools,
                enable_thinking,
            }
        } else {
            prompt(obj)?
        };
        let options = crate::request_options::read(obj, chat)?;
        let max_tokens = match integer(obj, "max_completion_tokens")? {
            Some(n) => Some((n, "max_completion_tokens")),
            None => integer(obj, "max_tokens")?.map(|n| (n, "max_tokens")),
        };
        let max_tokens = match max_tokens {
            None => None,
            Some((n, name)) if n <= 0 => {
                return Err(ApiError::invalid(
                    format!("`{name}` must be at least 1, got {n}"),
                    Some(name),
                ))
            }
            Some((n, _)) => Some(n as u64),
        };
        let temperature = number(obj, "temperature")?.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(
                format!("`temperature` must be between 0 and 2, got {temperature}"),
                Some("temperature"),
            ));
        }
        let top_p = number(obj, "top_p")?.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                format!("`top_p` must be in (0, 1], got {top_p}"),
                Some("top_p"),
            ));
        }
        // vLLM's extension: -1 (or 0) is off.
        let top_k = match integer(obj, "top_k")? {
            None | Some(-1) | Some(0) => 0,
            Some(k) if k > 0 => k.min(u32::MAX as i64) as u32,
            Some(k) => {
                return Err(ApiError::invalid(
                    format!("`top_k` must be -1, 0 or positive, got {k}"),
                    Some("top_k"),
                ))
            }
        };
        let seed = integer(obj, "seed")?.map(|s| s as u64);
        let stream = boolean(obj, "stream")?.unwrap_or(false);
        let include_usage = match field(obj, "stream_options") {
            None => false,
            Some(Value::Object(o)) => boolean(o, "include_usage")?.unwrap_or(false),
            Some(other) => return Err(type_error("stream_options", "an object", other)),
        };
        let sampling = crate::sampling_options::SamplingOptions::parse(obj, chat)?;
        Ok(Self {
            sampling,
            model,
            input,
            max_tokens,
            temperature: temperature as f32,
            top_p: top_p as f32,
            top_k,
            seed,
            stop: stop(obj)?,
            stream,
            include_usage,
            options,
            tool_choice,
            parallel_tool_calls,
            constraint: crate::constrain::request::parse(ordered, chat)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: Value, chat: bool) -> ApiError {
        GenRequest::parse(&body, chat).expect_err("refused")
    }

    #[test]
    fn fields_are_checked_and_named() {
        let m = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            err(json!({"messages": m, "max_tokens": "5"}), true)
                .param
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            err(json!({"messages": m, "max_tokens": 0}), true)
                .param
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            err(json!({"messages": m, "n": 0}), true).param.as_deref(),
            Some("n")
        );
        assert_eq!(
            err(json!({"messages": m, "max_tokens": 5.5}), true)
                .param
                .as_deref(),
            Some("max_tokens")
        );
        let integral = GenRequest::parse(&json!({"messages": m, "max_tokens": 5.0}), true)
            .expect("5.0 is an integer");
        assert_eq!(integral.max_tokens, Some(5));
        assert_eq!(
            err(json!({"messages": m, "temperature": 3}), true)
                .param
                .as_deref(),
            Some("temperature")
        );
        assert_eq!(
            err(json!({"messages": m, "stop": [1]}), true)
                .param
                .as_deref(),
            Some("stop")
        );
        assert_eq!(
            err(json!({"messages": [{"content": "x"}]}), true)
                .param
                .as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            err(json!({"model": "m"}), true).param.as_deref(),
            Some("messages")
        );
        assert_eq!(
            err(json!({"prompt": 5}), false).param.as_deref(),
            Some("prompt")
        );
        assert_eq!(err(json!([1]), false).param, None);
        let ok = GenRequest::parse(
            &json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                    "max_completion_tokens": 3, "stop": "x", "seed": 7, "top_k": -1,
                    "stream": true, "stream_options": {"include_usage": true}}),
            true,
        )
        .expect("valid");
        assert_eq!(ok.max_tokens, Some(3));
        assert_eq!(ok.stop, vec!["x".to_string()]);
        assert!(ok.stream && ok.include_usage && ok.top_k == 0 && ok.seed == Some(7));
        match ok.input {
            Input::Messages { messages, .. } => assert_eq!(
                messages[0].content,
                crate::chat_template::Content::Parts(vec![
                    Json::from(&json!({"type": "text", "text": "a"})),
                    Json::from(&json!({"type": "text", "text": "b"})),
                ])
            ),
            other => panic!("{other:?}"),
        }
    }
}
