//! A chat request's `messages` and `tools` as an OpenAI-compatible server
//! receives them, read into [`Message`]s and tool schemas for the chat
//! template. Each field is checked, and a bad one is named in the error
//! (`messages[2].tool_calls[0].function.arguments`).
//!
//! What reaches the template is what transformers / vLLM give it: the tools
//! and every argument object in the order the client wrote them, tool-call
//! `arguments` sent as a JSON string (OpenAI's form) parsed to an object
//! (vLLM's `_postprocess_messages`; an empty or null one is `{}`), and a
//! list `content` passed as its parts.

use crate::api::{type_error_kind, ApiError};
use crate::chat_template::{Content, Message, ToolCall};
use crate::ordered_json::Json;

fn type_error(param: &str, expected: &str, got: &Json) -> ApiError {
    type_error_kind(param, expected, got.kind())
}

/// A field that is absent or null is `None`.
fn field<'a>(obj: &'a Json, name: &str) -> Option<&'a Json> {
    obj.get(name).filter(|v| !v.is_null())
}

fn optional_string(obj: &Json, name: &str, param: &str) -> Result<Option<String>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(type_error(&format!("{param}.{name}"), "a string", other)),
    }
}

fn required_string(obj: &Json, name: &str, param: &str) -> Result<String, ApiError> {
    optional_string(obj, name, param)?.ok_or_else(|| {
        let param = format!("{param}.{name}");
        ApiError::invalid(format!("`{param}` is required"), Some(&param))
            .with_code("missing_required_parameter")
    })
}

/// A message's `content`: a string, a list of parts, or null. The model reads
/// text only, so every part must be `{"type": "text", "text": string}`.
fn content(v: Option<&Json>, param: &str) -> Result<Content, ApiError> {
    match v {
        None | Some(Json::Null) => Ok(Content::None),
        Some(Json::String(s)) => Ok(Content::Text(s.clone())),
        Some(Json::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                let pname = format!("{param}[{j}]");
                match (p.get("type").and_then(Json::as_str), p.get("text")) {
                    (Some("text"), Some(Json::String(_))) => {}
                    (Some(other), _) if other != "text" => {
                        return Err(ApiError::invalid(
                            format!("`{pname}`: content parts of type `{other}` are not supported (this model reads text only)"),
                            Some(&pname),
                        ))
                    }
                    _ => {
                        return Err(type_error(
                            &pname,
                            "a {\"type\": \"text\", \"text\": string} part",
                            p,
                        ))
                    }
                }
            }
            Ok(Content::Parts(parts.clone()))
        }
        Some(other) => Err(type_error(param, "a string or a list of text parts", other)),
    }
}

/// `function.arguments`: an object, a JSON string of one, or empty / null (`{}`).
fn arguments(v: Option<&Json>, param: &str) -> Result<Vec<(String, Json)>, ApiError> {
    let parsed;
    let v = match v {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(Json::String(s)) => {
            parsed = Json::parse(s).map_err(|e| {
                ApiError::invalid(
                    format!("`{param}` is a string that is not valid JSON: {e}"),
                    Some(param),
                )
            })?;
            &parsed
        }
        Some(v) => v,
    };
    match v {
        Json::Object(entries) => Ok(entries.clone()),
        other => Err(type_error(
            param,
            "an object (or a JSON string of one)",
            other,
        )),
    }
}

fn tool_call(v: &Json, param: &str) -> Result<ToolCall, ApiError> {
    if !matches!(v, Json::Object(_)) {
        return Err(type_error(param, "an object", v));
    }
    if let Some(kind) = optional_string(v, "type", param)? {
        if kind != "function" {
            let p = format!("{param}.type");
            return Err(ApiError::invalid(
                format!("`{p}` must be \"function\", got {kind:?}"),
                Some(&p),
            ));
        }
    }
    let fparam = format!("{param}.function");
    let function = match field(v, "function") {
        Some(f @ Json::Object(_)) => f,
        Some(other) => return Err(type_error(&fparam, "an object", other)),
        None => {
            return Err(
                ApiError::invalid(format!("`{fparam}` is required"), Some(&fparam))
                    .with_code("missing_required_parameter"),
            )
        }
    };
    Ok(ToolCall {
        id: optional_string(v, "id", param)?,
        name: required_string(function, "name", &fparam)?,
        arguments: arguments(function.get("arguments"), &format!("{fparam}.arguments"))?,
    })
}

fn message(m: &Json, param: &str) -> Result<Message, ApiError> {
    if !matches!(m, Json::Object(_)) {
        return Err(type_error(param, "an object", m));
    }
    let tool_calls = match field(m, "tool_calls") {
        None => Vec::new(),
        Some(Json::Array(calls)) => calls
            .iter()
            .enumerate()
            .map(|(j, c)| tool_call(c, &format!("{param}.tool_calls[{j}]")))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(type_error(
                &format!("{param}.tool_calls"),
                "an array of tool calls",
                other,
            ))
        }
    };
    Ok(Message {
        role: required_string(m, "role", param)?,
        content: content(m.get("content"), &format!("{param}.content"))?,
        reasoning_content: optional_string(m, "reasoning_content", param)?,
        tool_calls,
        tool_call_id: optional_string(m, "tool_call_id", param)?,
        name: optional_string(m, "name", param)?,
    })
}

/// The request's `messages` (required, not empty).
pub fn messages(body: &Json) -> Result<Vec<Message>, ApiError> {
    let list = match field(body, "messages") {
        None => {
            return Err(
                ApiError::invalid("`messages` is required", Some("messages"))
                    .with_code("missing_required_parameter"),
            )
        }
        Some(Json::Array(a)) => a,
        Some(other) => return Err(type_error("messages", "an array of messages", other)),
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "`messages` must not be empty",
            Some("messages"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| message(m, &format!("messages[{i}]")))
        .collect()
}

/// The request's `tools`: function schemas `{"type": "function", "function":
/// {"name", "description", "parameters"}}`, passed to the template as given.
pub fn tools(body: &Json) -> Result<Vec<Json>, ApiError> {
    let list = match field(body, "tools") {
        None => return Ok(Vec::new()),
        Some(Json::Array(a)) => a,
        Some(other) => return Err(type_error("tools", "an array of tools", other)),
    };
    for (i, t) in list.iter().enumerate() {
        let param = format!("tools[{i}]");
        if !matches!(t, Json::Object(_)) {
            return Err(type_error(&param, "an object", t));
        }
        let kind = required_string(t, "type", &param)?;
        if kind != "function" {
            let p = format!("{param}.type");
            return Err(ApiError::invalid(
                format!("`{p}` must be \"function\", got {kind:?}"),
                Some(&p),
            ));
        }
        let fparam = format!("{param}.function");
        match field(t, "function") {
            Some(f @ Json::Object(_)) => {
                required_string(f, "name", &fparam)?;
            }
            Some(other) => return Err(type_error(&fparam, "an object", other)),
            None => {
                return Err(
                    ApiError::invalid(format!("`{fparam}` is required"), Some(&fparam))
                        .with_code("missing_required_parameter"),
                )
            }
        }
    }
    Ok(list.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json {
        Json::parse(text).expect("json")
    }

    #[test]
    fn string_arguments_are_parsed_like_vllm_and_keep_their_order() {
        let body = parse(
            r#"{"messages": [{"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"z\": 1, \"a\": [true]}"}},
                {"function": {"name": "g", "arguments": {"y": "s", "b": null}}},
                {"function": {"name": "h", "arguments": ""}},
                {"function": {"name": "k"}}]},
               {"role": "tool", "content": "ok", "tool_call_id": "c1", "name": "f"}]}"#,
        );
        let m = messages(&body).expect("valid");
        assert_eq!(m[0].content, Content::None);
        let calls = &m[0].tool_calls;
        assert_eq!(calls[0].id.as_deref(), Some("c1"));
        let keys = |c: &ToolCall| {
            c.arguments
                .iter()
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&calls[0]), ["z", "a"]);
        assert_eq!(keys(&calls[1]), ["y", "b"]);
        assert!(calls[2].arguments.is_empty() && calls[3].arguments.is_empty());
        assert_eq!(m[1].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(m[1].name.as_deref(), Some("f"));
    }

    #[test]
    fn bad_fields_are_named() {
        let param = |text: &str| messages(&parse(text)).expect_err("refused").param;
        assert_eq!(
            param(r#"{"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]}"#).as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
        assert_eq!(
            param(r#"{"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]}"#).as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
        assert_eq!(
            param(r#"{"messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]}"#)
                .as_deref(),
            Some("messages[0].tool_calls[0].function.name")
        );
        assert_eq!(
            param(r#"{"messages": [{"role": "assistant", "reasoning_content": 3}]}"#).as_deref(),
            Some("messages[0].reasoning_content")
        );
        assert_eq!(
            param(r#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#).as_deref(),
            Some("messages[0].content[0]")
        );
        let tools_param = |text: &str| tools(&parse(text)).expect_err("refused").param;
        assert_eq!(
            tools_param(r#"{"tools": [{"type": "function", "function": {"description": "d"}}]}"#)
                .as_deref(),
            Some("tools[0].function.name")
        );
        assert_eq!(
            tools_param(r#"{"tools": {"type": "function"}}"#).as_deref(),
            Some("tools")
        );
    }
}
