//! The request fields that constrain decoding, read into a [`Spec`]:
//! `response_format` (chat and completions) and, for chat, `tool_choice:
//! "required"` or a named function over `tools` (with
//! `parallel_tool_calls`). A bad field is a 400 naming it.

use crate::api::{type_error_kind, ApiError};
use crate::ordered_json::Json;

/// A function a constrained reply may call: its name and its `parameters`
/// JSON schema, keys in the order the client wrote them (the grammar lists
/// the parameters in that order).
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// `function.parameters` (`Json::Null` when absent: no parameters).
    pub parameters: Json,
    /// Where the tool is in the request (`tools[i]`), for error messages.
    pub index: usize,
}

/// What the reply must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// JSON text valid under `schema` (`{"type": "object"}` for
    /// `json_object`). `strict: false` lets the schema use keywords the
    /// grammar engine does not support (they are then not enforced).
    Json {
        schema: serde_json::Value,
        strict: bool,
    },
    /// One call (or, with `parallel`, one or more) of these functions in
    /// Qwen3-Coder's XML form, and nothing else.
    ToolCalls { tools: Vec<Tool>, parallel: bool },
}

impl Spec {
    /// The request field a grammar error is reported under.
    pub fn param(&self) -> &'static str {
        match self {
            Spec::Json { .. } => "response_format.json_schema.schema",
            Spec::ToolCalls { .. } => "tools",
        }
    }
}

fn type_error(param: &str, expected: &str, got: &Json) -> ApiError {
    type_error_kind(param, expected, got.kind())
}

fn field<'a>(obj: &'a Json, name: &str) -> Option<&'a Json> {
    obj.get(name).filter(|v| !v.is_null())
}

/// `response_format`: absent or `{"type": "text"}` constrains nothing.
fn response_format(body: &Json) -> Result<Option<Spec>, ApiError> {
    const P: &str = "response_format";
    let Some(rf) = field(body, P) else {
        return Ok(None);
    };
    if !matches!(rf, Json::Object(_)) {
        return Err(type_error(P, "an object", rf));
    }
    let kind = match field(rf, "type") {
        Some(Json::String(s)) => s.as_str(),
        Some(other) => return Err(type_error("response_format.type", "a string", other)),
        None => {
            return Err(ApiError::invalid(
                "`response_format.type` is required",
                Some("response_format.type"),
            )
            .with_code("missing_required_parameter"))
        }
    };
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(Spec::Json {
            schema: serde_json::json!({"type": "object"}),
            strict: false,
        })),
        "json_schema" => {
            const JS: &str = "response_format.json_schema";
            let js = match field(rf, "json_schema") {
                Some(js @ Json::Object(_)) => js,
                Some(other) => return Err(type_error(JS, "an object", other)),
                None => {
                    return Err(ApiError::invalid(
                        format!("`{JS}` is required when `response_format.type` is \"json_schema\""),
                        Some(JS),
                    )
                    .with_code("missing_required_parameter"))
                }
            };
            if let Some(name) = field(js, "name") {
                if !matches!(name, Json::String(_)) {
                    return Err(type_error(&format!("{JS}.name"), "a string", name));
                }
            }
            let strict = match field(js, "strict") {
                None => false,
                Some(Json::Bool(b)) => *b,
                Some(other) => return Err(type_error(&format!("{JS}.strict"), "a boolean", other)),
            };
            let sp = format!("{JS}.schema");
            let schema = match field(js, "schema") {
                Some(s @ Json::Object(_)) => s.to_serde(),
                Some(Json::Bool(true)) => serde_json::json!({}),
                Some(Json::Bool(false)) => {
                    return Err(ApiError::invalid(
                        format!("`{sp}` is `false`: no JSON value satisfies it"),
                        Some(&sp),
                    ))
                }
                Some(other) => return Err(type_error(&sp, "a JSON schema object", other)),
                None => {
                    return Err(ApiError::invalid(format!("`{sp}` is required"), Some(&sp))
                        .with_code("missing_required_parameter"))
                }
            };
            Ok(Some(Spec::Json { schema, strict }))
        }
        other => Err(ApiError::invalid(
            format!(
                "`response_format.type` must be \"text\", \"json_object\" or \"json_schema\", got {other:?}"
            ),
            Some("response_format.type"),
        )),
    }
}

/// The request's functions (`tools[i].function`), checked enough to build
/// a grammar: a string `name`, an object `parameters` if any.
fn tools(body: &Json) -> Result<Vec<Tool>, ApiError> {
    let list = match field(body, "tools") {
        None => return Ok(Vec::new()),
        Some(Json::Array(a)) => a,
        Some(other) => return Err(type_error("tools", "an array of tools", other)),
    };
    let mut out = Vec::with_capacity(list.len());
    for (index, t) in list.iter().enumerate() {
        let fp = format!("tools[{index}].function");
        let f = field(t, "function").ok_or_else(|| {
            ApiError::invalid(format!("`{fp}` is required"), Some(&fp))
                .with_code("missing_required_parameter")
        })?;
        let name = match field(f, "name") {
            Some(Json::String(s)) => s.clone(),
            Some(other) => return Err(type_error(&format!("{fp}.name"), "a string", other)),
            None => {
                let p = format!("{fp}.name");
                return Err(ApiError::invalid(format!("`{p}` is required"), Some(&p))
                    .with_code("missing_required_parameter"));
            }
        };
        let parameters = match field(f, "parameters") {
            None => Json::Null,
            Some(p @ Json::Object(_)) => p.clone(),
            Some(other) => return Err(type_error(&format!("{fp}.parameters"), "an object", other)),
        };
        out.push(Tool {
            name,
            parameters,
            index,
        });
    }
    Ok(out)
}

/// `tool_choice`: `"required"` (any of the tools) or a named function
/// constrain the reply; absent, `"auto"` and `"none"` do not.
fn tool_choice(body: &Json) -> Result<Option<Spec>, ApiError> {
    const P: &str = "tool_choice";
    let Some(choice) = field(body, P) else {
        return Ok(None);
    };
    let parallel = match field(body, "parallel_tool_calls") {
        None => true,
        Some(Json::Bool(b)) => *b,
        Some(other) => return Err(type_error("parallel_tool_calls", "a boolean", other)),
    };
    let all = tools(body)?;
    let chosen = match choice {
        Json::String(s) => match s.as_str() {
            "auto" | "none" => return Ok(None),
            "required" => all,
            other => {
                return Err(ApiError::invalid(
                    format!(
                        "`tool_choice` must be \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got {other:?}"
                    ),
                    Some(P),
                ))
            }
        },
        Json::Object(_) => {
            match field(choice, "type") {
                Some(Json::String(t)) if t == "function" => {}
                Some(other) => {
                    return Err(ApiError::invalid(
                        format!("`tool_choice.type` must be \"function\", got {other:?}"),
                        Some("tool_choice.type"),
                    ))
                }
                None => {
                    return Err(ApiError::invalid(
                        "`tool_choice.type` is required",
                        Some("tool_choice.type"),
                    )
                    .with_code("missing_required_parameter"))
                }
            }
            const NP: &str = "tool_choice.function.name";
            let name = match field(choice, "function").and_then(|f| field(f, "name")) {
                Some(Json::String(s)) => s.clone(),
                Some(other) => return Err(type_error(NP, "a string", other)),
                None => {
                    return Err(ApiError::invalid(format!("`{NP}` is required"), Some(NP))
                        .with_code("missing_required_parameter"))
                }
            };
            let named: Vec<Tool> = all.into_iter().filter(|t| t.name == name).collect();
            if named.is_empty() {
                return Err(ApiError::invalid(
                    format!("`{NP}`: no tool named {name:?} is in `tools`"),
                    Some(NP),
                ));
            }
            // A named function is one call (OpenAI's semantics).
            return Ok(Some(Spec::ToolCalls {
                tools: named[..1].to_vec(),
                parallel: false,
            }));
        }
        other => {
            return Err(type_error(
                P,
                "a string or an object naming a function",
                other,
            ))
        }
    };
    if chosen.is_empty() {
        return Err(ApiError::invalid(
            "`tool_choice` is \"required\" but the request has no `tools`",
            Some(P),
        ));
    }
    Ok(Some(Spec::ToolCalls {
        tools: chosen,
        parallel,
    }))
}

/// The constraint a request asks for, if any. `chat`: `tool_choice` is a
/// chat field; completions read `response_format` only.
pub fn parse(body: &Json, chat: bool) -> Result<Option<Spec>, ApiError> {
    let format = response_format(body)?;
    let tools = if chat { tool_choice(body)? } else { None };
    match (format, tools) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "`response_format` cannot be combined with a `tool_choice` that forces a tool call (\"required\" or a named function)",
            Some("response_format"),
        )),
        (f, t) => Ok(f.or(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(body: serde_json::Value, chat: bool) -> Result<Option<Spec>, ApiError> {
        parse(&Json::from(&body), chat)
    }

    fn param(body: serde_json::Value) -> String {
        spec(body, true)
            .expect_err("refused")
            .param
            .unwrap_or_default()
    }

    #[test]
    fn response_format_kinds() {
        assert_eq!(spec(json!({}), true).expect("ok"), None);
        assert_eq!(
            spec(json!({"response_format": {"type": "text"}}), false).expect("ok"),
            None
        );
        assert_eq!(
            spec(json!({"response_format": {"type": "json_object"}}), false).expect("ok"),
            Some(Spec::Json {
                schema: json!({"type": "object"}),
                strict: false
            })
        );
        let s = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        assert_eq!(
            spec(
                json!({"response_format": {"type": "json_schema",
                    "json_schema": {"name": "x", "schema": s, "strict": true}}}),
                true
            )
            .expect("ok"),
            Some(Spec::Json {
                schema: s,
                strict: true
            })
        );
    }

    #[test]
    fn bad_response_formats_name_the_field() {
        assert_eq!(param(json!({"response_format": "json"})), "response_format");
        assert_eq!(
            param(json!({"response_format": {}})),
            "response_format.type"
        );
        assert_eq!(
            param(json!({"response_format": {"type": "xml"}})),
            "response_format.type"
        );
        assert_eq!(
            param(json!({"response_format": {"type": "json_schema"}})),
            "response_format.json_schema"
        );
        assert_eq!(
            param(
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "n"}}})
            ),
            "response_format.json_schema.schema"
        );
        assert_eq!(
            param(
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": []}}})
            ),
            "response_format.json_schema.schema"
        );
        assert_eq!(
            param(
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}, "strict": 1}}})
            ),
            "response_format.json_schema.strict"
        );
    }

    fn weather() -> serde_json::Value {
        json!([
            {"type": "function", "function": {"name": "get_weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "now"}}
        ])
    }

    #[test]
    fn tool_choice_kinds() {
        let t = weather();
        for choice in [json!("auto"), json!("none")] {
            assert_eq!(
                spec(json!({"tools": t, "tool_choice": choice}), true).expect("ok"),
                None
            );
        }
        match spec(json!({"tools": t, "tool_choice": "required"}), true).expect("ok") {
            Some(Spec::ToolCalls { tools, parallel }) => {
                assert!(parallel);
                assert_eq!(
                    tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                    ["get_weather", "now"]
                );
                assert_eq!(tools[1].parameters, Json::Null);
            }
            other => panic!("{other:?}"),
        }
        match spec(
            json!({"tools": t, "parallel_tool_calls": true,
                   "tool_choice": {"type": "function", "function": {"name": "now"}}}),
            true,
        )
        .expect("ok")
        {
            Some(Spec::ToolCalls { tools, parallel }) => {
                assert!(!parallel);
                assert_eq!(tools.len(), 1);
                assert_eq!((tools[0].name.as_str(), tools[0].index), ("now", 1));
            }
            other => panic!("{other:?}"),
        }
        // Completions have no tools.
        assert_eq!(
            spec(json!({"tools": t, "tool_choice": "required"}), false).expect("ok"),
            None
        );
    }

    #[test]
    fn bad_tool_choices_name_the_field() {
        let t = weather();
        assert_eq!(param(json!({"tool_choice": "required"})), "tool_choice");
        assert_eq!(
            param(json!({"tools": t, "tool_choice": "always"})),
            "tool_choice"
        );
        assert_eq!(param(json!({"tools": t, "tool_choice": 3})), "tool_choice");
        assert_eq!(
            param(
                json!({"tools": t, "tool_choice": {"type": "function", "function": {"name": "nope"}}})
            ),
            "tool_choice.function.name"
        );
        assert_eq!(
            param(json!({"tools": t, "tool_choice": {"type": "function"}})),
            "tool_choice.function.name"
        );
        assert_eq!(
            param(json!({"tools": t, "tool_choice": {"type": "x", "function": {"name": "now"}}})),
            "tool_choice.type"
        );
        assert_eq!(
            param(json!({"tools": t, "tool_choice": "required", "parallel_tool_calls": "no"})),
            "parallel_tool_calls"
        );
        assert_eq!(
            param(
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": 1}}],
                         "tool_choice": "required"})
            ),
            "tools[0].function.parameters"
        );
        assert_eq!(
            param(json!({"tools": t, "tool_choice": "required",
                         "response_format": {"type": "json_object"}})),
            "response_format"
        );
    }
}
