//! A [`Spec`] as an llguidance Lark grammar.
//!
//! - JSON: `%json { schema }` in llguidance's compact layout (`", "` and
//!   `": "` separators, no free whitespace): a model cannot pad a reply with
//!   endless whitespace, and random-weight models end their replies.
//! - Tool calls, Qwen3-Coder's XML as the Qwen3.5 template renders them:
//!   `<tool_call>\n<function=NAME>\n<parameter=ARG>\nVALUE\n</parameter>\n...
//!   </function>\n</tool_call>`, calls separated by `\n`. Each tool's
//!   parameters come in the order its schema lists them, the required ones
//!   always, the others optionally; a value follows its declared type (a
//!   nullable one, `["T", "null"]`, as `T` or, for JSON kinds, `null`)
//!   (integer / number / boolean / null as JSON scalars, object / array as
//!   compact JSON under the parameter's schema, an `enum` as one of its
//!   values), and a string (or anything else) is free text that never
//!   contains the format's own tags (so every parser finds the same end),
//!   within the string's `minLength` / `maxLength` and matching its
//!   `pattern` when the schema gives them.
//! - With the generation prompt's `<think>` still open, the reply first
//!   runs free up to the first `</think>` and one or two newlines (as the
//!   template writes it); the constraint holds after them.

use serde_json::{json, Map, Value};

use super::request::{Spec, Tool};
use crate::ordered_json::Json;

/// What ends a parameter value; part of the value's lexeme so that the
/// value's free text stops exactly there.
const VALUE_END: &str = "\n</parameter>\n";

/// Tags free text in a parameter value must not contain.
const TAGS: &str = r"<\/parameter>|<parameter=|<\/function>|<function=|<\/tool_call>|<tool_call>";

/// A Lark string literal (JSON escapes, which llguidance's Lark reads).
fn lit(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `schema` with llguidance's layout options (a copy; the client's schema
/// is untouched). `lenient`: keywords llguidance does not support are
/// ignored instead of refused.
fn with_layout(schema: &Value, lenient: bool) -> Value {
    let mut s = match schema {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    s.insert(
        "x-guidance".into(),
        json!({
            "whitespace_flexible": false,
            "item_separator": ", ",
            "key_separator": ": ",
            "lenient": lenient,
        }),
    );
    Value::Object(s)
}

/// The rules before the constrained part when `<think>` is open.
const THINK_RULES: &str = "think[lazy]: /(?s:.*)<\\/think>/\nTHINK_NL: /\\n{1,2}/\n";

fn start(body: &str, thinking: bool) -> String {
    // The newlines are not optional: where a `%json` reply could also start,
    // llguidance commits to the JSON's lexemes and refuses the newline.
    if thinking {
        format!("start: think THINK_NL {body}\n{THINK_RULES}")
    } else {
        format!("start: {body}\n")
    }
}

/// The grammar of `spec`; `thinking`: the prompt leaves `<think>` open.
pub(crate) fn lark(spec: &Spec, thinking: bool) -> String {
    match spec {
        Spec::Json { schema, strict } => {
            let schema = with_layout(schema, !strict);
            let head = start("reply", thinking);
            format!("{head}reply: %json {schema}\n")
        }
        Spec::ToolCalls { tools, parallel } => {
            let mut g = start(
                if *parallel {
                    "call (\"\\n\" call)*"
                } else {
                    "call"
                },
                thinking,
            );
            let calls: Vec<String> = (0..tools.len()).map(|i| format!("call_{i}")).collect();
            g.push_str(&format!("call: {}\n", calls.join(" | ")));
            // A free value and its end are one lexeme: as two, the lexer
            // (greedy) would take `\n</parameter` into the value.
            g.push_str(&format!(
                "FREE_BODY: /(?s:.*)/ & ~/(?s:.*)({TAGS})(?s:.*)/\nEND: {end}\nFREE: FREE_BODY END\n",
                end = lit(VALUE_END)
            ));
            for (i, tool) in tools.iter().enumerate() {
                tool_rules(&mut g, i, tool);
            }
            g
        }
    }
}

/// `call_i` and its parameters' rules.
fn tool_rules(g: &mut String, i: usize, tool: &Tool) {
    let head = lit(&format!("<tool_call>\n<function={}>\n", tool.name));
    let tail = lit("</function>\n</tool_call>");
    let props: &[(String, Json)] = match tool.parameters.get("properties") {
        Some(Json::Object(p)) => p,
        _ => &[],
    };
    let required: Vec<&str> = match tool.parameters.get("required") {
        Some(Json::Array(r)) => r.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    let mut parts = vec![head];
    let mut params: Vec<(&str, Option<&Json>)> =
        props.iter().map(|(k, v)| (k.as_str(), Some(v))).collect();
    // A required name the schema does not describe is still a parameter.
    for r in &required {
        if !props.iter().any(|(k, _)| k == r) {
            params.push((r, None));
        }
    }
    for (j, (name, schema)) in params.into_iter().enumerate() {
        let rule = format!("p_{i}_{j}");
        let value = value_rule(g, &format!("{i}_{j}"), schema.map(Json::to_serde).as_ref());
        g.push_str(&format!(
            "{rule}: {open} {value}\n",
            open = lit(&format!("<parameter={name}>\n"))
        ));
        parts.push(if required.contains(&name) {
            rule
        } else {
            format!("[{rule}]")
        });
    }
    parts.push(tail);
    g.push_str(&format!("call_{i}: {body}\n", body = parts.join(" ")));
}

/// The JSON types a schema declares (`type` as a string or a list).
fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The rule (name or inline expression) of a parameter's value, its end
/// included; may add rules to `g`.
fn value_rule(g: &mut String, id: &str, schema: Option<&Value>) -> String {
    let Some(schema) = schema else {
        return "FREE".into();
    };
    let json_value = |g: &mut String| {
        let s = with_layout(schema, true);
        g.push_str(&format!("v_{id}: %json {s}\n"));
        format!("v_{id} END")
    };
    if let Some(Value::Array(values)) = schema.get("enum") {
        if !values.is_empty() && values.iter().all(Value::is_string) {
            let alts: Vec<String> = values.iter().filter_map(Value::as_str).map(lit).collect();
            return format!("({}) END", alts.join(" | "));
        }
        return json_value(g);
    }
    if let Some(Value::String(c)) = schema.get("const") {
        return format!("{} END", lit(c));
    }
    let declared = types(schema);
    // A nullable type (`["string", "null"]`) is written as its other type:
    // the call format has no null string (the parser keeps `null` as text),
    // while JSON values may be `null` under the schema.
    let non_null: Vec<&str> = declared.iter().copied().filter(|&t| t != "null").collect();
    let json_kinds = ["integer", "number", "boolean", "object", "array"];
    match non_null.as_slice() {
        ["string"] => {
            let min = schema.get("minLength").and_then(Value::as_u64);
            let max = schema.get("maxLength").and_then(Value::as_u64);
            let pattern = schema.get("pattern").and_then(Value::as_str);
            if min.is_none() && max.is_none() && pattern.is_none() {
                return "FREE".into();
            }
            let mut body = Vec::new();
            if min.is_some() || max.is_some() {
                let (lo, hi) = (
                    min.unwrap_or(0),
                    max.map(|m| m.to_string()).unwrap_or_default(),
                );
                body.push(format!("/(?s:.){{{lo},{hi}}}/"));
            }
            if let Some(p) = pattern {
                body.push(format!("/{}/", search_regex(p)));
            }
            body.push(format!("~/(?s:.*)({TAGS})(?s:.*)/"));
            let body = body.join(" & ");
            g.push_str(&format!("V_{id}_BODY: {body}\nV_{id}: V_{id}_BODY END\n"));
            format!("V_{id}")
        }
        [] if declared == ["null"] => json_value(g),
        kinds if !kinds.is_empty() && kinds.iter().all(|k| json_kinds.contains(k)) => json_value(g),
        // No type, several, or unknown: what the model writes is kept as text.
        _ => "FREE".into(),
    }
}

/// Any text, newlines included: what a pattern leaves free around its match.
const ANY: &str = "(?s:.*)";

/// A JSON-schema `pattern` as a regex the whole value must match. A schema
/// pattern matches anywhere in the string (ECMA-262 `search`), so each
/// top-level alternative is padded with free text on the sides its own `^` /
/// `$` leaves open; `\d` / `\w` keep their ASCII meaning (llguidance's own
/// rewrite, as its JSON schemas read `pattern`). Anchors elsewhere (inside a
/// group) are left to llguidance, which refuses them: a 400 naming `tools`.
fn search_regex(pattern: &str) -> String {
    let rx = llguidance::regex_to_lark(pattern, "dw");
    top_level_alternatives(&rx)
        .into_iter()
        .map(|alt| {
            let (open_start, alt) = match alt.strip_prefix('^') {
                Some(rest) => ("", rest),
                None => (ANY, alt),
            };
            let (open_end, alt) = match alt.strip_suffix('$') {
                Some(rest) if !ends_escaped(rest) => ("", rest),
                _ => (ANY, alt),
            };
            format!("{open_start}(?:{alt}){open_end}")
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Whether `s` ends in an odd number of backslashes (its next char is escaped).
fn ends_escaped(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// `rx` split at the `|`s outside groups, classes and escapes.
fn top_level_alternatives(rx: &str) -> Vec<&str> {
    let (mut parts, mut from) = (Vec::new(), 0);
    let (mut depth, mut class, mut escaped) = (0usize, 0usize, false);
    for (i, c) in rx.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' => class += 1,
            ']' if class > 0 => class -= 1,
            '(' if class == 0 => depth += 1,
            ')' if class == 0 => depth = depth.saturating_sub(1),
            '|' if class == 0 && depth == 0 => {
                parts.push(&rx[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&rx[from..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_json_strings() {
        assert_eq!(lit("a\"b\n<c>"), r#""a\"b\n<c>""#);
    }

    #[test]
    fn the_think_prefix_only_when_thinking() {
        let spec = Spec::Json {
            schema: json!({"type": "object"}),
            strict: true,
        };
        assert!(!lark(&spec, false).contains("think"));
        assert!(lark(&spec, true).starts_with("start: think THINK_NL reply"));
        let g = lark(&spec, false);
        assert!(g.contains(r#""lenient":false"#), "{g}");
    }

    #[test]
    fn patterns_match_anywhere_unless_anchored() {
        assert_eq!(search_regex("^[0-9]{5}$"), "(?:[0-9]{5})");
        assert_eq!(search_regex("ab"), "(?s:.*)(?:ab)(?s:.*)");
        assert_eq!(search_regex("^a|b$"), "(?:a)(?s:.*)|(?s:.*)(?:b)");
        assert_eq!(search_regex(r"^a\$"), r"(?:a\$)(?s:.*)");
        assert_eq!(search_regex("^(a|b)[|]$"), "(?:(a|b)[|])");
        assert_eq!(search_regex(r"^\d/x$"), r"(?:[0-9]\/x)");
    }
}
