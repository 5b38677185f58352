//! `tojson` as HF chat templates expect it: Python's `json.dumps` output
//! (`", "` / `": "` separators, keys in insertion order, non-ASCII kept unless
//! `ensure_ascii`, Python float spelling), not minijinja's compact,
//! HTML-escaped JSON. Templates print tool schemas and call arguments with it,
//! and the model was trained on exactly that text.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// How `json.dumps` lays the text out.
struct Style {
    indent: Option<String>,
    ensure_ascii: bool,
    sort_keys: bool,
    item_sep: String,
    key_sep: String,
}

/// The `tojson` filter of HF's template environment:
/// `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
pub fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_i64() {
            Some(n) => " ".repeat(n.max(0) as usize),
            None => v.as_str().map(str::to_owned).ok_or_else(|| {
                Error::new(ErrorKind::InvalidOperation, "tojson: indent must be an int")
            })?,
        }),
    };
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    // Python's defaults: no trailing space after ',' once lines are indented.
    let (mut item_sep, mut key_sep) = if indent.is_some() {
        (",".to_owned(), ": ".to_owned())
    } else {
        (", ".to_owned(), ": ".to_owned())
    };
    if let Some(seps) = separators.filter(|s| !s.is_none()) {
        let parts: Vec<Value> = seps.try_iter()?.collect();
        match parts.as_slice() {
            [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                item_sep = a.as_str().unwrap_or_default().to_owned();
                key_sep = b.as_str().unwrap_or_default().to_owned();
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be a pair of strings",
                ))
            }
        }
    }
    kwargs.assert_all_used()?;
    let style = Style {
        indent,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
        item_sep,
        key_sep,
    };
    let mut out = String::new();
    write_value(&mut out, value, &style, 0)?;
    Ok(Value::from_safe_string(out))
}

/// Jinja's `string` filter as it runs in Python: `str(x)` (Qwen's template
/// prints scalar tool-call arguments with it). minijinja already spells
/// `True` and `None` like Python, but not floats: `str(1e-05)` is `1e-05`,
/// minijinja's `0.00001`. Containers print as minijinja does (templates
/// `tojson` them).
pub fn python_str(value: &Value) -> Value {
    match value.kind() {
        ValueKind::Bool => Value::from(if value.is_true() { "True" } else { "False" }),
        ValueKind::None | ValueKind::Undefined if !value.is_undefined() => Value::from("None"),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => Value::from(python_float(f)),
            Err(_) => Value::from(value.to_string()),
        },
        // A safe string stays safe, as in Jinja's `soft_str`.
        ValueKind::String => value.clone(),
        _ => Value::from(value.to_string()),
    }
}

fn newline(out: &mut String, style: &Style, level: usize) {
    if let Some(ind) = &style.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(ind);
        }
    }
}

fn write_value(out: &mut String, v: &Value, style: &Style, level: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else {
                let f = f64::try_from(v.clone())?;
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => write_str(out, v.as_str().unwrap_or_default(), style.ensure_ascii),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if style.sort_keys {
                keys.sort_by_key(key_text);
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(out, style, level + 1);
                write_str(out, &key_text(k), style.ensure_ascii);
                out.push_str(&style.key_sep);
                write_value(out, &v.get_item(k)?, style, level + 1)?;
            }
            newline(out, style, level);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(out, style, level + 1);
                write_value(out, item, style, level + 1)?;
            }
            newline(out, style, level);
            out.push(']');
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: {} values are not JSON serializable", v.kind()),
            ))
        }
    }
    Ok(())
}

/// A key as `json.dumps` spells a non-string key (`1`, `true`, `null`).
fn key_text(k: &Value) -> String {
    match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_owned(),
        ValueKind::None | ValueKind::Undefined => "null".into(),
        ValueKind::Bool => if k.is_true() { "true" } else { "false" }.into(),
        _ => k.to_string(),
    }
}

fn write_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest round-trip digits, positional for
/// exponents in [-4, 16), else `d.ddde±XX`; `NaN` / `Infinity` like `json.dumps`.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-5".
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let s = if point <= 0 {
            let zeros = "0".repeat((-point) as usize);
            format!("0.{zeros}{digits}")
        } else if point as usize >= digits.len() {
            let zeros = "0".repeat(point as usize - digits.len());
            format!("{digits}{zeros}.0")
        } else {
            let (whole, frac) = digits.split_at(point as usize);
            format!("{whole}.{frac}")
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 {
            let (first, rest) = digits.split_at(1);
            format!("{first}.{rest}")
        } else {
            digits
        };
        let esign = if exp < 0 { '-' } else { '+' };
        let exp = exp.abs();
        format!("{sign}{m}e{esign}{exp:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_spelled_like_python_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(python_float(f), want, "{f}");
        }
    }

    #[test]
    fn string_is_pythons_str() {
        let mut env = minijinja::Environment::new();
        env.add_filter("string", python_str);
        let out = env
            .render_str(
                "{{ t|string }} {{ f|string }} {{ n|string }} {{ x|string }} {{ i|string }} {{ s|string }} [{{ u|string }}] {{ e|string }} {{ g|string }}",
                minijinja::context! { t => true, f => false, n => (), x => 2.0, i => 3, s => "a", e => 1e-5, g => 1e16 },
            )
            .expect("renders");
        // Python: str(True), str(False), str(None), str(2.0), str(3), str('a'),
        // undefined is '', str(1e-05), str(1e16).
        assert_eq!(out, "True False None 2.0 3 a [] 1e-05 1e+16");
    }

    #[test]
    fn dumps_like_python() {
        let mut env = minijinja::Environment::new();
        env.add_filter("tojson", tojson);
        let render = |src: &str| {
            env.render_str(src, minijinja::context! {})
                .expect("renders")
        };
        assert_eq!(
            render(r#"{{ {"b": 1, "a": [1, 2.5, "é<>\n"], "c": none, "d": {}} | tojson }}"#),
            r#"{"b": 1, "a": [1, 2.5, "é<>\n"], "c": null, "d": {}}"#
        );
        assert_eq!(
            render(r#"{{ {"b": 1, "a": true} | tojson(indent=2, sort_keys=true) }}"#),
            "{\n  \"a\": true,\n  \"b\": 1\n}"
        );
        assert_eq!(
            render(r#"{{ "é\u0001" | tojson(ensure_ascii=true) }}"#),
            r#""\u00e9\u0001""#
        );
    }
}
