//! Typed, bounded access to fields of a parsed JSON object, with errors that name
//! the file and the dotted field path (`text_config.hidden_size`).

use std::path::Path;

use serde_json::{Map, Value};

use crate::CheckpointError;

/// A JSON object together with where it came from, for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub obj: &'a Map<String, Value>,
    /// Dotted path of this object inside the file; empty for the top level.
    pub prefix: &'a str,
    pub path: &'a Path,
}

impl<'a> Fields<'a> {
    pub fn new(obj: &'a Map<String, Value>, prefix: &'a str, path: &'a Path) -> Self {
        Self { obj, prefix, path }
    }

    /// The dotted name of `key` inside this object.
    pub fn field_name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}", prefix = self.prefix)
        }
    }

    pub fn err(&self, key: &str, detail: impl Into<String>) -> CheckpointError {
        CheckpointError::Config {
            path: self.path.to_path_buf(),
            field: self.field_name(key),
            detail: detail.into(),
        }
    }

    /// The value, treating JSON `null` as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A required non-negative integer in `1..=max`.
    pub fn size(&self, key: &str, max: u64) -> Result<usize, CheckpointError> {
        match self.get(key) {
            None => Err(self.err(key, "missing (required)")),
            Some(v) => self.size_value(key, v, max),
        }
    }

    /// An optional non-negative integer in `1..=max`.
    pub fn opt_size(&self, key: &str, max: u64) -> Result<Option<usize>, CheckpointError> {
        self.get(key)
            .map(|v| self.size_value(key, v, max))
            .transpose()
    }

    fn size_value(&self, key: &str, v: &Value, max: u64) -> Result<usize, CheckpointError> {
        let n = v.as_u64().ok_or_else(|| {
            self.err(
                key,
                format!("expected a non-negative integer, got {}", short(v)),
            )
        })?;
        if n == 0 {
            return Err(self.err(key, "must be > 0, got 0"));
        }
        if n > max {
            return Err(self.err(key, format!("{n} exceeds the sanity bound {max}")));
        }
        usize::try_from(n).map_err(|_| self.err(key, format!("{n} does not fit in usize")))
    }

    /// An optional finite number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, CheckpointError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(self.err(key, format!("expected a finite number, got {}", short(v)))),
            },
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, CheckpointError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(key, format!("expected true or false, got {}", short(v)))),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, CheckpointError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.err(key, format!("expected a string, got {}", short(v)))),
        }
    }

    pub fn str(&self, key: &str) -> Result<&'a str, CheckpointError> {
        self.opt_str(key)?
            .ok_or_else(|| self.err(key, "missing (required)"))
    }

    pub fn opt_object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, CheckpointError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(self.err(key, format!("expected an object, got {}", short(v)))),
        }
    }

    /// An optional list of strings (at most `max` entries).
    pub fn opt_str_list(
        &self,
        key: &str,
        max: usize,
    ) -> Result<Option<Vec<String>>, CheckpointError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                if items.len() > max {
                    return Err(self.err(
                        key,
                        format!(
                            "{items_len} entries exceed the sanity bound {max}",
                            items_len = items.len()
                        ),
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(self.err(
                            key,
                            format!(
                                "entry {i}: expected a string, got {short_other}",
                                short_other = short(other)
                            ),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
            Some(v) => Err(self.err(key, format!("expected a list of strings, got {}", short(v)))),
        }
    }
}

/// A short rendering of a JSON value for error messages (never the whole document).
pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        let head: String = s.chars().take(40).collect();
        format!("{head}…")
    } else {
        s
    }
}
