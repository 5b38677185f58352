//! `qwgpu serve`: the OpenAI-compatible HTTP server of `qwgpu-serve`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use qwgpu_serve::ServeOptions;

use crate::generate::{load_options, Backend};

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
    /// Memory for prefix-cache snapshots of the model state (e.g. 1GiB, 512MiB; 0 turns the cache off).
    #[arg(long, default_value = "1GiB", value_parser = qwgpu_serve::parse_size)]
    cache_mem: u64,
    /// Requests that may wait for a batch slot; more get HTTP 429.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// The model id clients name (default: the folder's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// GPU adapter: an index from `qwgpu devices` or a name substring (also `QWGPU_ADAPTER`).
    #[arg(long)]
    adapter: Option<String>,
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
    opts.cache_mem = args.cache_mem;
    opts.max_queue = args.max_queue;
    opts.load = load_options(
        args.backend,
        args.adapter.clone(),
        args.strict,
        qwgpu_model::engine::DEFAULT_MAX_CHUNK,
    );
    eprintln!("loading {} ...", args.model.display());
    let state = qwgpu_serve::start(&opts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "serving `{}` on http://{addr}/v1 ({}; batch {}, prefix cache {} MiB)",
            opts.model_name,
            state.backend(),
            opts.max_batch,
            opts.cache_mem >> 20
        );
        let app = qwgpu_serve::app::router(state, &opts);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving HTTP")
    })
}
