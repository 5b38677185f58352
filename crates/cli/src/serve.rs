//! `qwgpu serve`: the OpenAI-compatible HTTP server of `qwgpu-serve`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use qwgpu_serve::ServeOptions;

use crate::bundled;
use crate::generate::{load_options, Backend, PrecisionFlag};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    /// Without it, the bundled tiny random-weight test model is served.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Address to listen on: the default, 127.0.0.1, accepts this machine only
    /// (0.0.0.0: every interface; set --api-key then).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Most sequences decoding together (continuous batching).
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Most prompt tokens prefilled per scheduler step: a longer prompt is prefilled in chunks
    /// between the decode steps of the running streams, which keep producing tokens meanwhile
    /// (0: each prompt whole as its request joins, stalling every stream for its prefill).
    #[arg(long, default_value_t = qwgpu_serve::DEFAULT_PREFILL_CHUNK)]
    prefill_chunk: usize,
    /// Memory for prefix-cache snapshots of the model state (e.g. 1GiB, 512MiB; 0 turns the cache off).
    #[arg(long, default_value = "1GiB", value_parser = qwgpu_serve::parse_size)]
    cache_mem: u64,
    /// Requests that may wait for a batch slot; more get HTTP 429.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Require `Authorization: Bearer KEY` on /v1/* (401 otherwise; /health and /metrics
    /// stay open). Also read from QWGPU_API_KEY, which keeps the key out of `ps`.
    #[arg(long)]
    api_key: Option<String>,
    /// Allow browser pages of this origin (e.g. http://localhost:3000; `*`: any) to call
    /// /v1/* (CORS headers, preflights answered). Repeat for several origins.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Time a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = qwgpu_serve::parse_duration)]
    header_timeout: Duration,
    /// Time a client has to send a request's body once its headers are in (past it: 408).
    #[arg(long, default_value = "60s", value_parser = qwgpu_serve::parse_duration)]
    body_timeout: Duration,
    /// Most connections open at once; more wait until one closes.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Largest request body (e.g. 4MiB); bigger ones get 413.
    #[arg(long, default_value = "4MiB", value_parser = qwgpu_serve::parse_size)]
    max_body: u64,
    /// On Ctrl-C or SIGTERM, how long running requests may take to finish before their
    /// streams are ended (an error chunk, then `[DONE]`).
    #[arg(long, default_value = "30s", value_parser = qwgpu_serve::parse_duration)]
    drain_timeout: Duration,
    /// The model id clients name (default: the folder's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// The chat template's `enable_thinking` for requests whose `chat_template_kwargs` give
    /// none (Qwen3.5: `false` answers without a reasoning block); unset keeps the template's
    /// default (Qwen3.5: thinking on).
    #[arg(long)]
    default_enable_thinking: Option<bool>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// GPU adapter: an index from `qwgpu devices` or a name substring (also `QWGPU_ADAPTER`).
    #[arg(long)]
    adapter: Option<String>,
    #[command(flatten)]
    precision: PrecisionFlag,
    /// Refuse checkpoints with tensors qwgpu does not know.
    #[arg(long)]
    strict: bool,
}

/// The API key: `--api-key`, else `QWGPU_API_KEY` (unset or empty: none).
fn api_key(flag: Option<&str>, env: Option<String>) -> Option<String> {
    flag.map(str::to_owned).or(env.filter(|k| !k.is_empty()))
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let model = bundled::model_or_bundled(args.model.as_deref())?;
    let mut opts = ServeOptions::new(model.clone());
    if let Some(name) = &args.served_model_name {
        opts.model_name = name.clone();
    }
    opts.max_batch = args.max_batch;
    opts.prefill_chunk = args.prefill_chunk;
    opts.cache_mem = args.cache_mem;
    opts.max_queue = args.max_queue;
    opts.api_key = api_key(args.api_key.as_deref(), std::env::var("QWGPU_API_KEY").ok());
    opts.cors_origins = args.cors_origins.clone();
    opts.header_timeout = args.header_timeout;
    opts.body_timeout = args.body_timeout;
    opts.max_connections = args.max_connections;
    opts.max_body_bytes = usize::try_from(args.max_body).unwrap_or(usize::MAX);
    opts.drain_timeout = args.drain_timeout;
    opts.default_enable_thinking = args.default_enable_thinking;
    opts.load = args.precision.apply(load_options(
        args.backend,
        args.adapter.clone(),
        args.strict,
        qwgpu_model::engine::DEFAULT_MAX_CHUNK,
    ));
    eprintln!("loading {} ...", model.display());
    let state = qwgpu_serve::start(&opts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| {
                let (host, port) = (&args.host, args.port);
                format!("listening on {host}:{port}")
            })?;
        let addr = listener.local_addr()?;
        eprintln!("{}", serving_line(&opts, addr, state.backend()));
        eprintln!("{}", access_line(&opts, addr));
        qwgpu_serve::serve(listener, state, &opts, shutdown_signal())
            .await
            .context("serving HTTP")
    })
}

/// Who can reach the server: loopback only or every interface, and whether
/// a key is required.
fn access_line(opts: &ServeOptions, addr: std::net::SocketAddr) -> String {
    let reach = if addr.ip().is_loopback() {
        let ip = addr.ip();
        format!("listening on {ip} only: other machines cannot connect (--host 0.0.0.0 opens it)")
    } else {
        let ip = addr.ip();
        format!("listening on {ip}: reachable from other machines")
    };
    let key = if opts.api_key.is_some() {
        "; /v1/* requires the API key"
    } else if addr.ip().is_loopback() {
        ""
    } else {
        "; no API key: anyone who can connect may use it (--api-key or QWGPU_API_KEY)"
    };
    format!("{reach}{key}")
}

/// `serving `tiny` on http://127.0.0.1:8080/v1 (cpu reference; batch 16, prefill chunk 512, prefix cache 1024 MiB)`.
fn serving_line(opts: &ServeOptions, addr: std::net::SocketAddr, backend: &str) -> String {
    let name = &opts.model_name;
    let batch = opts.max_batch;
    let chunk = match opts.prefill_chunk {
        0 => "whole prompts".to_string(),
        n => format!("prefill chunk {n}"),
    };
    let cache_mib = opts.cache_mem >> 20;
    format!("serving `{name}` on http://{addr}/v1 ({backend}; batch {batch}, {chunk}, prefix cache {cache_mib} MiB)")
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop`, systemd and
/// Kubernetes send): the server then drains, finishing the requests in
/// flight. If a handler cannot be registered, the server keeps serving
/// rather than stopping as if the signal had come: a server that runs is
/// what the user asked for, and only the graceful stop is lost (the
/// signal's default action still ends the process), which the error says.
async fn shutdown_signal() {
    let ctrl_c = wait_for_stop(tokio::signal::ctrl_c());
    #[cfg(unix)]
    {
        let term = wait_for_stop(async {
            let mut s = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            s.recv().await;
            Ok(())
        });
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

async fn wait_for_stop(signal: impl std::future::Future<Output = std::io::Result<()>>) {
    if let Err(e) = signal.await {
        tracing::error!("{}", ctrl_c_failed_line(&e));
        std::future::pending::<()>().await;
    }
}

fn ctrl_c_failed_line(e: &std::io::Error) -> String {
    format!(
        "cannot listen for Ctrl-C or SIGTERM ({e}): serving on, but the signal will end the process at once, without finishing the requests in flight"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_serving_line() {
        let mut opts = ServeOptions::new("/m/tiny".into());
        opts.model_name = "tiny".into();
        opts.max_batch = 4;
        opts.prefill_chunk = 256;
        opts.cache_mem = 512 << 20;
        let addr: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(
            serving_line(&opts, addr, "cpu reference"),
            "serving `tiny` on http://127.0.0.1:8080/v1 (cpu reference; batch 4, prefill chunk 256, prefix cache 512 MiB)"
        );
        opts.prefill_chunk = 0;
        assert_eq!(
            serving_line(&opts, addr, "cpu reference"),
            "serving `tiny` on http://127.0.0.1:8080/v1 (cpu reference; batch 4, whole prompts, prefix cache 512 MiB)"
        );
    }

    #[test]
    fn a_ctrl_c_handler_that_fails_to_register_does_not_stop_the_server() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let failed = wait_for_stop(async { Err(std::io::Error::other("no signals here")) });
            let stopped = tokio::time::timeout(Duration::from_millis(200), failed).await;
            assert!(
                stopped.is_err(),
                "the shutdown future resolved: the server would stop"
            );
            // A real Ctrl-C does stop it.
            let pressed = wait_for_stop(async { Ok(()) });
            tokio::time::timeout(Duration::from_millis(200), pressed)
                .await
                .expect("Ctrl-C stops the server");
        });
        assert_eq!(
            ctrl_c_failed_line(&std::io::Error::other("no signals here")),
            "cannot listen for Ctrl-C or SIGTERM (no signals here): serving on, but the signal will end the process at once, without finishing the requests in flight"
        );
    }

    #[test]
    fn the_access_line_says_who_can_connect() {
        let mut opts = ServeOptions::new("/m/tiny".into());
        let local: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let open: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        assert_eq!(
            access_line(&opts, local),
            "listening on 127.0.0.1 only: other machines cannot connect (--host 0.0.0.0 opens it)"
        );
        assert_eq!(
            access_line(&opts, open),
            "listening on 0.0.0.0: reachable from other machines; no API key: anyone who can connect may use it (--api-key or QWGPU_API_KEY)"
        );
        opts.api_key = Some("k".into());
        assert_eq!(
            access_line(&opts, open),
            "listening on 0.0.0.0: reachable from other machines; /v1/* requires the API key"
        );
    }

    #[test]
    fn the_api_key_comes_from_the_flag_then_the_environment() {
        assert_eq!(api_key(Some("a"), Some("b".into())).as_deref(), Some("a"));
        assert_eq!(api_key(None, Some("b".into())).as_deref(), Some("b"));
        assert_eq!(api_key(None, Some(String::new())), None);
        assert_eq!(api_key(None, None), None);
    }
}
