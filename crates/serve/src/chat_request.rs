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

/// The 400 for a required field that is absent.
fn missing(param: &str) -> ApiError {
    ApiError::invalid(format!("`{param}` is required"), Some(param))
        .with_code("missing_required_parameter")
}

fn required_string(obj: &Json, name: &str, param: &str) -> Result<String, ApiError> {
    optional_string(obj, name, param)?.ok_or_else(|| missing(&format!("{param}.{name}")))
}

/// `obj.function`, which must be an object (`param`: where `obj` is).
fn function_object<'a>(obj: &'a Json, param: &str) -> Result<&'a Json, ApiError> {
    let fparam = format!("{param}.function");
    match field(obj, "function") {
        Some(f @ Json::Object(_)) => Ok(f),
        Some(other) => Err(type_error(&fparam, "an object", other)),
        None => Err(missing(&fparam)),
    }
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
    let function = function_object(v, param)?;
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
        None => return Err(missing("messages")),
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
        required_string(function_object(t, &param)?, "name", &fparam)?;
    }
    Ok(list.clone())
}

/// `tool_choice`: whether and how the reply may call the request's tools.
/// `Required` and `Function` are kept to by constraining decoding (the
/// grammar the sampler follows); every choice but `None` has the reply's
/// calls parsed into `tool_calls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// No calls: the reply is text, and `<tool_call>` blocks in it stay
    /// text. The tools are still given to the template (as vLLM does), so
    /// the model knows them.
    None,
    /// The model decides (the default when `tools` are given).
    Auto,
    /// At least one call, of any of the tools.
    Required,
    /// A call of this function (`{"type": "function", "function": {"name": ...}}`).
    Function(String),
}

impl ToolChoice {
    /// Whether the reply's `<tool_call>` blocks are read as calls.
    pub fn parses_calls(&self) -> bool {
        !matches!(self, ToolChoice::None)
    }

    /// Whether decoding must produce a call (`required` or a named function).
    pub fn forces_call(&self) -> bool {
        matches!(self, ToolChoice::Required | ToolChoice::Function(_))
    }
}

/// The request's `tool_choice`, checked against its `tools` (already read
/// by [`tools`]): absent, it is `auto` with tools and `none` without.
pub fn tool_choice(body: &Json, tools: &[Json]) -> Result<ToolChoice, ApiError> {
    const PARAM: &str = "tool_choice";
    let names: Vec<&str> = tools
        .iter()
        .filter_map(|t| t.get("function")?.get("name")?.as_str())
        .collect();
    let choice = match field(body, PARAM) {
        None if tools.is_empty() => return Ok(ToolChoice::None),
        None => return Ok(ToolChoice::Auto),
        Some(Json::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    format!("`{PARAM}` must be \"none\", \"auto\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got {other:?}"),
                    Some(PARAM),
                ))
            }
        },
        Some(obj @ Json::Object(_)) => {
            let kind = optional_string(obj, "type", PARAM)?;
            if kind.as_deref() != Some("function") {
                let p = format!("{PARAM}.type");
                let got = kind.map_or("nothing".to_owned(), |k| format!("{k:?}"));
                return Err(ApiError::invalid(
                    format!("`{p}` must be \"function\", got {got}"),
                    Some(&p),
                ));
            }
            let fparam = format!("{PARAM}.function");
            let function = function_object(obj, PARAM)?;
            let name = required_string(function, "name", &fparam)?;
            if !names.contains(&name.as_str()) {
                let offered = names.join(", ");
                return Err(ApiError::invalid(
                    format!("`{PARAM}` names the function {name:?}, which is not in `tools` (offered: {offered})"),
                    Some(PARAM),
                ));
            }
            ToolChoice::Function(name)
        }
        Some(other) => {
            return Err(type_error(
                PARAM,
                "a string or a {\"type\": \"function\", ...} object",
                other,
            ))
        }
    };
    if choice.forces_call() && tools.is_empty() {
        return Err(ApiError::invalid(
            format!("`{PARAM}` asks for a tool call, but the request has no `tools`"),
            Some(PARAM),
        ));
    }
    Ok(choice)
}

/// The request's `parallel_tool_calls` (default true: several calls per reply).
pub fn parallel_tool_calls(body: &Json) -> Result<bool, ApiError> {
    match field(body, "parallel_tool_calls") {
        None => Ok(true),
        Some(Json::Bool(b)) => Ok(*b),
        Some(other) => Err(type_error("parallel_tool_calls", "a boolean", other)),
    }
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

    fn choice(text: &str) -> Result<ToolChoice, ApiError> {
        let body = parse(text);
        let tools = tools(&body).expect("tools");
        tool_choice(&body, &tools)
    }

    const F: &str = r#""tools": [{"type": "function", "function": {"name": "f"}}]"#;

    #[test]
    fn tool_choice_is_read_and_checked_against_the_tools() {
        assert_eq!(choice("{}").expect("ok"), ToolChoice::None);
        assert_eq!(choice(&format!("{{{F}}}")).expect("ok"), ToolChoice::Auto);
        for (text, want) in [
            ("\"none\"", ToolChoice::None),
            ("\"auto\"", ToolChoice::Auto),
            ("\"required\"", ToolChoice::Required),
            (
                r#"{"type": "function", "function": {"name": "f"}}"#,
                ToolChoice::Function("f".into()),
            ),
        ] {
            let body = format!(r#"{{{F}, "tool_choice": {text}}}"#);
            assert_eq!(choice(&body).expect(text), want);
        }
        // `auto` / `none` without tools are fine; forcing a call is not.
        assert_eq!(
            choice(r#"{"tool_choice": "auto"}"#).expect("ok"),
            ToolChoice::Auto
        );
        let param = |text: &str| choice(text).expect_err(text).param;
        assert_eq!(
            param(r#"{"tool_choice": "required"}"#).as_deref(),
            Some("tool_choice")
        );
        for (bad, p) in [
            (r#""sometimes""#, "tool_choice"),
            ("3", "tool_choice"),
            (
                r#"{"type": "function", "function": {"name": "g"}}"#,
                "tool_choice",
            ),
            (r#"{"type": "custom"}"#, "tool_choice.type"),
            (r#"{"type": "function"}"#, "tool_choice.function"),
            (
                r#"{"type": "function", "function": {}}"#,
                "tool_choice.function.name",
            ),
        ] {
            let body = format!(r#"{{{F}, "tool_choice": {bad}}}"#);
            assert_eq!(param(&body).as_deref(), Some(p), "{bad}");
        }
        assert!(parallel_tool_calls(&parse("{}")).expect("default"));
        assert!(!parallel_tool_calls(&parse(r#"{"parallel_tool_calls": false}"#)).expect("ok"));
        assert_eq!(
            parallel_tool_calls(&parse(r#"{"parallel_tool_calls": "no"}"#))
                .expect_err("refused")
                .param
                .as_deref(),
            Some("parallel_tool_calls")
        );
    }
}
