//! Tool calls in Qwen3.5's format (the Qwen3-Coder XML its template teaches
//! the model), read into OpenAI's `tool_calls`:
//!
//! ```text
//! <tool_call>
//! <function=get_weather>
//! <parameter=city>
//! Paris
//! </parameter>
//! <parameter=days>
//! 3
//! </parameter>
//! </function>
//! </tool_call>
//! ```
//!
//! becomes `{"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"days\":3}"}`:
//! each value is converted to the type the tool's JSON schema declares for
//! that parameter ([`convert`]), as vLLM's `qwen3_coder` parser does. The
//! format is not XML: a value is the text between its tags, verbatim (`<`
//! and `&` included, nothing unescaped), less the one newline after the
//! opening tag and the one before the closing tag.
//!
//! A block naming a function the request did not offer, or malformed, is
//! not a call: the caller keeps its text as the reply's `content`
//! ([`crate::tool_calls_stream`] finds the blocks in a streamed reply).

use crate::ordered_json::Json;
use crate::tool_calls_python::python_literal;

pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";
const FUNCTION_OPEN: &str = "<function=";
const FUNCTION_CLOSE: &str = "</function>";
const PARAM_OPEN: &str = "<parameter=";
const PARAM_CLOSE: &str = "</parameter>";

/// The JSON type a tool's schema declares for a parameter, as the value's
/// text is converted to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// `string` (or no type, an `enum` of strings, a parameter the schema
    /// does not list): the text verbatim.
    String,
    Integer,
    Number,
    Boolean,
    /// `object` or `array`: the text parsed as JSON (or, failing that, as a
    /// Python literal, as vLLM falls back to `ast.literal_eval`).
    Json,
}

impl ParamType {
    /// The type of a parameter schema: its `type` (the first that is not
    /// `null` when it is a list); without one, the first typed `anyOf` /
    /// `oneOf` branch; else a string.
    fn of(schema: &Json) -> Self {
        let from_name = |t: &str| match t {
            "integer" => Some(Self::Integer),
            "number" => Some(Self::Number),
            "boolean" => Some(Self::Boolean),
            "object" | "array" => Some(Self::Json),
            "string" => Some(Self::String),
            _ => None,
        };
        match schema.get("type") {
            Some(Json::String(t)) => return from_name(t).unwrap_or(Self::String),
            Some(Json::Array(types)) => {
                return types
                    .iter()
                    .filter_map(Json::as_str)
                    .find_map(from_name)
                    .unwrap_or(Self::String)
            }
            _ => {}
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Json::Array(branches)) = schema.get(key) {
                let typed = branches
                    .iter()
                    .map(Self::of)
                    .find(|t| *t != Self::String || branches.len() == 1);
                if let Some(t) = typed {
                    return t;
                }
            }
        }
        Self::String
    }
}

/// One function the request offers: its name and its parameters' types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSpec {
    pub name: String,
    /// `parameters.properties`, in the order written.
    pub params: Vec<(String, ParamType)>,
}

impl ToolSpec {
    fn param_type(&self, name: &str) -> ParamType {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map_or(ParamType::String, |(_, t)| *t)
    }
}

/// The functions of a request's `tools`, as the parser needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolSet {
    pub tools: Vec<ToolSpec>,
}

impl ToolSet {
    /// From the request's `tools` (already checked by
    /// [`crate::chat_request::tools`]: each has `function.name`).
    pub fn new(tools: &[Json]) -> Self {
        let tools = tools
            .iter()
            .filter_map(|t| {
                let f = t.get("function")?;
                let name = f.get("name")?.as_str()?.to_owned();
                let params = match f.get("parameters").and_then(|p| p.get("properties")) {
                    Some(Json::Object(props)) => props
                        .iter()
                        .map(|(k, v)| (k.clone(), ParamType::of(v)))
                        .collect(),
                    _ => Vec::new(),
                };
                Some(ToolSpec { name, params })
            })
            .collect();
        Self { tools }
    }

    pub fn get(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.iter().find(|t| t.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// A call read from the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    pub name: String,
    /// An object: the parameters in the order the model wrote them.
    pub arguments: Json,
}

impl ParsedCall {
    /// `function.arguments` as OpenAI sends it: a JSON string.
    pub fn arguments_json(&self) -> String {
        serde_json::to_string(&self.arguments).unwrap_or_else(|_| "{}".into())
    }
}

/// A value's text converted to `ty`. Text that is not a valid value of the
/// type stays a string (the client sees what the model wrote, rather than
/// a guess); `null` is null for every type but a string.
pub fn convert(text: &str, ty: ParamType) -> Json {
    let t = text.trim();
    if ty != ParamType::String && t == "null" {
        return Json::Null;
    }
    let keep = || Json::String(text.to_owned());
    match ty {
        ParamType::String => keep(),
        ParamType::Integer => {
            if let Ok(i) = t.parse::<i64>() {
                return Json::Number(i.into());
            }
            // `3.0` is the integer 3; `3.5` is not an integer.
            match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Json::Number((f as i64).into()),
                _ => keep(),
            }
        }
        ParamType::Number => match Json::parse(t) {
            Ok(n @ Json::Number(_)) => n,
            _ => t
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(keep, Json::Number),
        },
        ParamType::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => keep(),
        },
        ParamType::Json => Json::parse(t)
            .ok()
            .or_else(|| python_literal(t))
            .unwrap_or_else(keep),
    }
}

/// A name between `=` and `>`: not empty, on one line, no tag inside.
fn name(text: &str) -> Option<&str> {
    let n = text.trim();
    (!n.is_empty() && !n.contains(['<', '>', '\n'])).then_some(n)
}

/// Reads one whole `<tool_call>...</tool_call>` block; `None` when it is
/// malformed or names a function `tools` does not have.
pub fn parse_block(block: &str, tools: &ToolSet) -> Option<ParsedCall> {
    let inner = block.strip_prefix(CALL_OPEN)?.strip_suffix(CALL_CLOSE)?;
    let rest = inner.trim().strip_prefix(FUNCTION_OPEN)?;
    let (fname, rest) = rest.split_once('>')?;
    let spec = tools.get(name(fname)?)?;
    let mut body = rest.strip_suffix(FUNCTION_CLOSE)?;
    let mut args: Vec<(String, Json)> = Vec::new();
    loop {
        body = body.trim_start();
        if body.is_empty() {
            break;
        }
        let (pname, after) = body.strip_prefix(PARAM_OPEN)?.split_once('>')?;
        let pname = name(pname)?;
        // A value ends at its closing tag, or (written without one) where
        // the next parameter starts.
        let close = after.find(PARAM_CLOSE);
        let next = after.find(&format!("\n{PARAM_OPEN}"));
        let (end, skip) = match (close, next) {
            (Some(c), Some(n)) if n < c => (n, 0),
            (Some(c), _) => (c, PARAM_CLOSE.len()),
            (None, Some(n)) => (n, 0),
            (None, None) => (after.len(), 0),
        };
        let raw = &after[..end];
        let raw = raw.strip_prefix('\n').unwrap_or(raw);
        let raw = raw.strip_suffix('\n').unwrap_or(raw);
        let value = convert(raw, spec.param_type(pname));
        // A repeated parameter keeps its first place and its last value.
        match args.iter_mut().find(|(k, _)| k == pname) {
            Some(slot) => slot.1 = value,
            None => args.push((pname.to_owned(), value)),
        }
        body = &after[end + skip..];
    }
    Some(ParsedCall {
        name: spec.name.clone(),
        arguments: Json::Object(args),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn weather_tools() -> ToolSet {
        let tools = Json::parse(
            r#"[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "days": {"type": "integer"}, "scale": {"type": "number"},
                "metric": {"type": "boolean"}, "opts": {"type": "object"}, "tags": {"type": ["array", "null"]},
                "note": {"anyOf": [{"type": "string"}, {"type": "integer"}]}, "code": {"enum": ["a", "b"]}}}}},
               {"type": "function", "function": {"name": "noop"}}]"#,
        )
        .expect("json");
        match tools {
            Json::Array(list) => ToolSet::new(&list),
            _ => unreachable!(),
        }
    }

    fn args(block: &str) -> serde_json::Value {
        let call = parse_block(block, &weather_tools()).expect("a call");
        serde_json::from_str(&call.arguments_json()).expect("arguments are JSON")
    }

    #[test]
    fn schema_types_are_read() {
        let t = weather_tools();
        let spec = t.get("get_weather").expect("tool");
        let ty = |n: &str| spec.param_type(n);
        assert_eq!(ty("city"), ParamType::String);
        assert_eq!(ty("days"), ParamType::Integer);
        assert_eq!(ty("scale"), ParamType::Number);
        assert_eq!(ty("metric"), ParamType::Boolean);
        assert_eq!(ty("opts"), ParamType::Json);
        assert_eq!(ty("tags"), ParamType::Json);
        assert_eq!(ty("note"), ParamType::Integer);
        assert_eq!(ty("code"), ParamType::String);
        assert_eq!(ty("unlisted"), ParamType::String);
        assert_eq!(t.get("noop").expect("tool").params, vec![]);
    }

    #[test]
    fn values_take_the_declared_types() {
        let block = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=scale>\n2.5\n</parameter>\n<parameter=metric>\nTrue\n</parameter>\n<parameter=opts>\n{\"a\": [1, null]}\n</parameter>\n<parameter=tags>\n[\"x\"]\n</parameter>\n<parameter=extra>\n42\n</parameter>\n</function>\n</tool_call>";
        assert_eq!(
            args(block),
            serde_json::json!({"city": "Paris", "days": 3, "scale": 2.5, "metric": true,
                               "opts": {"a": [1, null]}, "tags": ["x"], "extra": "42"})
        );
        // The model's order is kept in the JSON string.
        let call = parse_block(block, &weather_tools()).expect("call");
        assert!(call
            .arguments_json()
            .starts_with(r#"{"city":"Paris","days":3,"#));
    }

    #[test]
    fn values_that_do_not_fit_their_type_stay_strings() {
        assert_eq!(convert("3.0", ParamType::Integer), Json::Number(3.into()));
        assert_eq!(
            convert("three", ParamType::Integer),
            Json::String("three".into())
        );
        assert_eq!(
            convert("1e3", ParamType::Number),
            Json::parse("1e3").unwrap()
        );
        assert_eq!(
            convert("maybe", ParamType::Boolean),
            Json::String("maybe".into())
        );
        assert_eq!(
            convert("{oops", ParamType::Json),
            Json::String("{oops".into())
        );
        // A Python literal, as vLLM's `ast.literal_eval` fallback reads it.
        assert_eq!(
            convert("{'a': True, 'b': None}", ParamType::Json),
            Json::parse(r#"{"a": true, "b": null}"#).unwrap()
        );
        assert_eq!(convert("null", ParamType::Integer), Json::Null);
        assert_eq!(
            convert("null", ParamType::String),
            Json::String("null".into())
        );
    }

    #[test]
    fn values_are_verbatim_multi_line_with_lt_and_amp() {
        let block = "<tool_call>\n<function=get_weather>\n<parameter=city>\nline 1\n  if a < b && c > d: <b>bold</b> &amp;\n\nline 4\n</parameter>\n</function>\n</tool_call>";
        assert_eq!(
            args(block)["city"],
            "line 1\n  if a < b && c > d: <b>bold</b> &amp;\n\nline 4"
        );
    }

    #[test]
    fn lenient_forms_are_read_and_malformed_ones_are_not_calls() {
        // No `</parameter>`: the value ends where the next parameter starts.
        assert_eq!(
            args("<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>"),
            serde_json::json!({"city": "Rome", "days": 2})
        );
        assert_eq!(
            args("<tool_call><function=noop></function></tool_call>"),
            serde_json::json!({})
        );
        let tools = weather_tools();
        for bad in [
            "<tool_call>\n<function=unknown>\n</function>\n</tool_call>",
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nx\n</parameter>\n</tool_call>",
            "<tool_call>\n<function=>\n</function>\n</tool_call>",
            "<tool_call>\nget_weather\n</tool_call>",
            "<tool_call>\n<function=get_weather>\nstray text\n</function>\n</tool_call>",
        ] {
            assert_eq!(parse_block(bad, &tools), None, "{bad}");
        }
    }
}
