//! What `qwgpu serve` is started with.

use std::path::PathBuf;
use std::time::Duration;

use qwgpu_model::engine::LoadOptions;

use crate::ServeError;

/// The default per-step prefill budget: the GPU backend's own prefill step
/// ([`qwgpu_model::engine::DEFAULT_MAX_CHUNK`] tokens), so chunking splits
/// no GPU step and costs prefill no speed, while a stream waits at most one
/// such step per token.
pub const DEFAULT_PREFILL_CHUNK: usize = qwgpu_model::engine::DEFAULT_MAX_CHUNK;

/// Server settings (the CLI's flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The Hugging Face model folder.
    pub model_dir: PathBuf,
    /// The id `/v1/models` reports and requests may name; default: the folder's name.
    pub model_name: String,
    /// Most sequences decoding together.
    pub max_batch: usize,
    /// Most prompt tokens prefilled per scheduler step, between the running
    /// streams' decode steps: a longer prompt takes several steps while the
    /// others keep producing tokens. 0 prefills each prompt whole as its
    /// request joins (every stream waits for it).
    pub prefill_chunk: usize,
    /// Bytes of state snapshots the prefix cache keeps (0: no cache).
    pub cache_mem: u64,
    /// Requests waiting for a batch slot before new ones get 429.
    pub max_queue: usize,
    /// Largest request body accepted (bigger: 413).
    pub max_body_bytes: usize,
    /// Time a client has to send a request's headers; also how long a
    /// keep-alive connection may wait idle for its next request (hyper's
    /// header timer runs from the moment it waits for a request). Past it
    /// the connection is closed.
    pub header_timeout: Duration,
    /// Time a client has to send a request's whole body once its headers
    /// are in (past it: 408 and the connection is closed).
    pub body_timeout: Duration,
    /// Most connections served at once; more wait in the listen backlog
    /// until one closes (stuck clients are closed by the timeouts above).
    pub max_connections: usize,
    /// After SIGINT / SIGTERM, how long running requests may go on before
    /// their streams are ended (an error chunk, then `[DONE]`).
    pub drain_timeout: Duration,
    /// When set, `/v1/*` requests must carry `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Origins allowed by CORS on `/v1/*` (`*`: any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// A chat request's `enable_thinking` when its `chat_template_kwargs`
    /// give none; `None` leaves the template's default (Qwen3.5: thinking on).
    pub default_enable_thinking: Option<bool>,
    pub load: LoadOptions,
}

impl ServeOptions {
    /// Defaults for `dir`: batch 16, prefill chunks of [`DEFAULT_PREFILL_CHUNK`]
    /// tokens, 1 GiB of cache, a queue of 256, 4 MiB bodies, 30 s for a
    /// request's headers (and a keep-alive connection's idle wait), 60 s for
    /// its body, 512 connections, 30 s of drain at shutdown, no API key, no CORS.
    pub fn new(model_dir: PathBuf) -> Self {
        let model_name = model_dir
            .canonicalize()
            .unwrap_or_else(|_| model_dir.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "qwgpu".into());
        Self {
            model_dir,
            model_name,
            max_batch: 16,
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
            cache_mem: 1 << 30,
            max_queue: 256,
            max_body_bytes: 4 << 20,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_connections: 512,
            drain_timeout: Duration::from_secs(30),
            api_key: None,
            cors_origins: Vec::new(),
            default_enable_thinking: None,
            load: LoadOptions::default(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ServeError> {
        if self.max_batch == 0 {
            return Err(ServeError::Options("--max-batch must be at least 1".into()));
        }
        if self.max_queue == 0 {
            return Err(ServeError::Options("--max-queue must be at least 1".into()));
        }
        if self.max_connections == 0 {
            return Err(ServeError::Options(
                "--max-connections must be at least 1".into(),
            ));
        }
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() {
            return Err(ServeError::Options(
                "--header-timeout and --body-timeout must be above 0".into(),
            ));
        }
        if self.api_key.as_deref() == Some("") {
            return Err(ServeError::Options("--api-key must not be empty".into()));
        }
        Ok(())
    }
}

/// `text` as a number and the unit after it (`expected` says what the
/// option takes, for the error).
fn number_and_unit<'a>(text: &'a str, expected: &str) -> Result<(f64, &'a str), String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}`: expected {expected}"))?;
    Ok((value, unit))
}

/// A byte size: `1GiB`, `512MiB`, `64k`, `1.5G`, `0` or plain bytes; units are
/// powers of 1024 (`K`, `M`, `G`, `T`, with or without `i` and `B`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (value, unit) = number_and_unit(text, "a size such as 1GiB, 512MiB or 0")?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit (use K, M, G or T, e.g. 1GiB)"
            ))
        }
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("`{text}`: too large"));
    }
    Ok(bytes as u64)
}

/// A duration: `30s`, `500ms`, `2m`, or plain seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (value, unit) = number_and_unit(text, "a duration such as 30s, 500ms or 2m")?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        _ => return Err(format!("`{text}`: unknown unit (use ms, s or m, e.g. 30s)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}`: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
