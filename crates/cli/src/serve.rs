//! `qwgpu serve`: the OpenAI-compatible HTTP server of `qwgpu-serve`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use qwgpu_serve::ServeOptions;

use crate::generate::{load_options, Backend, PrecisionFlag};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// Address to listen on.
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

pub fn run(args: &ServeArgs) -> Result<()> {
    let mut opts = ServeOptions::new(args.model.clone());
    if let Some(name) = &args.served_model_name {
        opts.model_name = name.clone();
    }
    opts.max_batch = args.max_batch;
    opts.prefill_chunk = args.prefill_chunk;
    opts.cache_mem = args.cache_mem;
    opts.max_queue = args.max_queue;
    opts.default_enable_thinking = args.default_enable_thinking;
    opts.load = args.precision.apply(load_options(
        args.backend,
        args.adapter.clone(),
        args.strict,
        qwgpu_model::engine::DEFAULT_MAX_CHUNK,
    ));
    eprintln!("loading {} ...", args.model.display());
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
        let app = qwgpu_serve::app::router(state, &opts);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP")
    })
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

/// Resolves on Ctrl-C (the server then finishes the requests in flight). If
/// the handler cannot be registered, the server keeps serving rather than
/// stopping as if Ctrl-C had been pressed: a server that runs is what the
/// user asked for, and only the graceful stop is lost (SIGINT's default
/// action still ends the process), which the error says.
async fn shutdown_signal() {
    wait_for_stop(tokio::signal::ctrl_c()).await;
}

async fn wait_for_stop(signal: impl std::future::Future<Output = std::io::Result<()>>) {
    if let Err(e) = signal.await {
        tracing::error!("{}", ctrl_c_failed_line(&e));
        std::future::pending::<()>().await;
    }
}

fn ctrl_c_failed_line(e: &std::io::Error) -> String {
    format!(
        "cannot listen for Ctrl-C ({e}): serving on, but Ctrl-C will end the process at once, without finishing the requests in flight"
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
            "cannot listen for Ctrl-C (no signals here): serving on, but Ctrl-C will end the process at once, without finishing the requests in flight"
        );
    }
}
