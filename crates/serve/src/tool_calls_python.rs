//! Python literals as models sometimes write `object` / `array` tool
//! arguments (`{'city': 'Paris', 'metric': True}`), read into JSON as vLLM
//! does with `ast.literal_eval` when `json.loads` fails: dicts, lists and
//! tuples, single- or double-quoted strings (common escapes), integers and
//! floats, `True`, `False`, `None`. Anything else is not a literal.

use crate::ordered_json::Json;

/// Most nesting accepted (a model's argument, not an attack surface, but a
/// reply of 10k `[` must not overflow the stack).
const MAX_DEPTH: usize = 64;

/// `text` read as one Python literal, or `None`.
pub fn python_literal(text: &str) -> Option<Json> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Items up to `close`, separated by commas (a trailing comma allowed).
    fn items(
        &mut self,
        close: u8,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        loop {
            if self.eat(close) {
                return Some(());
            }
            item(self, depth + 1)?;
            if !self.eat(b',') {
                return self.eat(close).then_some(());
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.s.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut entries: Vec<(String, Json)> = Vec::new();
                self.items(b'}', depth, |p, d| {
                    let key = match p.value(d)? {
                        Json::String(k) => k,
                        _ => return None,
                    };
                    if !p.eat(b':') {
                        return None;
                    }
                    let v = p.value(d)?;
                    match entries.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = v,
                        None => entries.push((key, v)),
                    }
                    Some(())
                })?;
                Some(Json::Object(entries))
            }
            open @ (b'[' | b'(') => {
                self.i += 1;
                let close = if open == b'[' { b']' } else { b')' };
                let mut list = Vec::new();
                self.items(close, depth, |p, d| {
                    list.push(p.value(d)?);
                    Some(())
                })?;
                Some(Json::Array(list))
            }
            q @ (b'\'' | b'"') => self.string(q).map(Json::String),
            _ => self.scalar(),
        }
    }

    fn string(&mut self, quote: u8) -> Option<String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.i..];
            let c = rest.chars().next()?;
            self.i += c.len_utf8();
            match c {
                _ if c as u32 == quote as u32 => return Some(out),
                '\\' => {
                    let e = self.text[self.i..].chars().next()?;
                    self.i += e.len_utf8();
                    let unescaped = match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        '\\' | '\'' | '"' => e,
                        // Unknown escapes stay as written, as in Python.
                        other => {
                            out.push('\\');
                            other
                        }
                    };
                    out.push(unescaped);
                }
                '\n' => return None,
                c => out.push(c),
            }
        }
    }

    fn scalar(&mut self) -> Option<Json> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-._".contains(c))
        {
            self.i += 1;
        }
        let word = &self.text[start..self.i];
        match word {
            "True" => Some(Json::Bool(true)),
            "False" => Some(Json::Bool(false)),
            "None" => Some(Json::Null),
            _ => {
                let plain = word.replace('_', "");
                if let Ok(i) = plain.parse::<i64>() {
                    return Some(Json::Number(i.into()));
                }
                let f: f64 = plain.parse().ok()?;
                serde_json::Number::from_f64(f).map(Json::Number)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(text: &str) -> Option<serde_json::Value> {
        python_literal(text).map(|j| j.to_serde())
    }

    #[test]
    fn python_literals_read_as_json() {
        assert_eq!(
            lit(
                "{'city': 'Paris', \"n\": 3, 'ok': True, 'x': None, 't': (1, 2.5,), 'q': 'it\\'s'}"
            ),
            Some(
                serde_json::json!({"city": "Paris", "n": 3, "ok": true, "x": null, "t": [1, 2.5], "q": "it's"})
            )
        );
        assert_eq!(lit("[ ]"), Some(serde_json::json!([])));
        assert_eq!(lit("['é', -1e3]"), Some(serde_json::json!(["é", -1000.0])));
        // Key order is the model's.
        let j = python_literal("{'b': 1, 'a': 2}").expect("dict");
        assert_eq!(serde_json::to_string(&j).expect("json"), r#"{"b":1,"a":2}"#);
    }

    #[test]
    fn anything_else_is_not_a_literal() {
        for bad in [
            "{'a': 1",
            "{'a' 1}",
            "[1, 2] extra",
            "{1: 2}",
            "os.system('x')",
            "'unterminated",
            "",
            "nan_value",
        ] {
            assert_eq!(lit(bad), None, "{bad}");
        }
        assert_eq!(
            lit(&"[".repeat(10_000)),
            None,
            "deep nesting is refused, not a crash"
        );
    }
}
