//! The HTTP side: axum routes, request checks, token streams (SSE) and the
//! OpenAI response shapes. Handlers never touch the model: they tokenize,
//! queue a [`Job`] for the engine thread and turn its events into text.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use qwgpu_model::engine::SamplingParams;
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, error::TrySendError, UnboundedReceiver};
use tokio::sync::watch;

use crate::api::{ApiError, GenRequest, Input};
use crate::chat_template::{RenderOptions, TemplateError};
use crate::detokenize::Detokenizer;
use crate::guard::{self, Guard};
use crate::metrics::Metrics;
use crate::model_files::ModelFiles;
use crate::reasoning::prompt_opens_reasoning;
use crate::sampling_options::{self, TokenLogprobs};
use crate::scheduler::{self, EngineStatus, Event, Finish, Fork, Job, JobOptions};
use crate::stop::StopMatcher;
use crate::tokenize::{max_token_bytes, BoundedTokenizer, EncodeError};
use crate::tool_calls::ToolSet;
use crate::tool_calls_reply::{self, ReplySetup, ReplySplitter};
use crate::{ServeError, ServeOptions};

pub(crate) struct Shared {
    files: ModelFiles,
    name: String,
    created: u64,
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    engine: Arc<EngineStatus>,
    backend: String,
    /// The GPU GEMMs' precision (`exact` / `fast`), as `/health` reports it.
    precision: &'static str,
    /// Seeds requests that give none (and ids), distinct per request.
    counter: AtomicU64,
    /// `--default-enable-thinking`: a chat request's `enable_thinking` when it gives none.
    default_enable_thinking: Option<bool>,
    /// The grammar engine of constrained requests (built on the first).
    grammars: crate::constrain::hook::LazyGrammars,
    /// Requests accepted and not yet over (queued, prefilling or decoding).
    held: AtomicUsize,
    /// The most requests held at once: `--max-queue` + `--max-batch`.
    capacity: usize,
    /// The longest vocabulary entry, bytes: bounds a prompt's tokenization.
    max_token_bytes: usize,
    /// Set at the drain deadline: running requests end (see [`crate::listen`]).
    pub(crate) abort: watch::Sender<bool>,
}

/// What every handler shares: the model's files, the engine's queue, metrics.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

impl AppState {
    /// `gpu: ...` or `cpu reference`.
    pub fn backend(&self) -> &str {
        &self.0.backend
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Ends every running request now: streams get an error chunk and
    /// `[DONE]`, waiting replies a 503 (the drain deadline of a shutdown).
    pub fn abort_requests(&self) {
        let _ = self.0.abort.send(true);
    }

    /// Queues a job as the handlers do, without their checks (tests reach
    /// the engine with what no handler would send).
    #[cfg(test)]
    pub(crate) fn queue(&self, job: Job) {
        Metrics::add(&self.0.metrics.queue_depth, 1);
        self.0.jobs.try_send(job).expect("the queue takes the job");
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks the folder's files, starts the engine thread and waits until the
/// model is loaded (blocking: call it before serving).
pub fn start(opts: &ServeOptions) -> Result<AppState, ServeError> {
    opts.validate()?;
    let files = ModelFiles::open(&opts.model_dir)?;
    let metrics = Arc::new(Metrics::default());
    // The HTTP side admits at most queue + batch requests (`held`): the
    // channel never refuses one of them.
    let capacity = opts.max_queue + opts.max_batch;
    let (jobs, rx) = mpsc::channel(capacity);
    let engine = Arc::new(EngineStatus::default());
    let setup = scheduler::EngineSetup {
        dir: opts.model_dir.clone(),
        load: opts.load.clone(),
        eos: files.eos.clone(),
        cache_mem: opts.cache_mem,
        max_batch: opts.max_batch,
        prefill_chunk: opts.prefill_chunk,
    };
    let ready =
        scheduler::spawn(setup, rx, metrics.clone(), engine.clone()).map_err(ServeError::Thread)?;
    let backend = ready.recv().map_err(|_| ServeError::EngineGone)??;
    let seed0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let max_token_bytes = max_token_bytes(&files.tokenizer);
    Ok(AppState(Arc::new(Shared {
        max_token_bytes,
        held: AtomicUsize::new(0),
        capacity,
        abort: watch::channel(false).0,
        files,
        name: opts.model_name.clone(),
        created: now_secs(),
        jobs,
        metrics,
        engine,
        backend,
        precision: qwgpu_model::precision_name(opts.load.gpu.precision),
        counter: AtomicU64::new(seed0),
        default_enable_thinking: opts.default_enable_thinking,
        grammars: Default::default(),
    })))
}

/// The routes, with the layers of [`crate::guard`] set from `opts` (body
/// size and time limits, API key, CORS, error counts). Serve them with
/// [`crate::listen::serve`], which adds the connection limits.
pub fn router(state: AppState, opts: &ServeOptions) -> Router {
    let guard = Arc::new(Guard {
        api_key: opts.api_key.clone(),
        cors_origins: opts.cors_origins.clone(),
        body_timeout: opts.body_timeout,
        max_body_bytes: opts.max_body_bytes,
        metrics: state.0.metrics.clone(),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(from_fn_with_state(guard.clone(), guard::read_body))
        .layer(from_fn_with_state(guard.clone(), guard::auth))
        .layer(from_fn_with_state(guard.clone(), guard::cors))
        .layer(from_fn_with_state(guard, guard::count))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::invalid("no such route", None)
        .status(StatusCode::NOT_FOUND)
        .with_code("not_found")
}

async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::invalid(
        format!("method {method} is not allowed on this route"),
        None,
    )
    .status(StatusCode::METHOD_NOT_ALLOWED)
    .with_code("method_not_allowed")
}

/// 200 while the engine thread serves; 503 with the reason once it has
/// stopped (every generation request then gets 503 too). Says which GEMM
/// precision the model runs (`--precision`; the CPU reference is f32 either way).
async fn health(State(st): State<AppState>) -> Response {
    match st.0.engine.stopped() {
        None => Json(json!({"status": "ok", "precision": st.0.precision})).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "reason": why})),
        )
            .into_response(),
    }
}

/// The served model as `/v1/models` lists it: `max_model_len` (vLLM's
/// name) and `context_length` (llama-server's, OpenRouter's) give the context.
fn model_card(st: &Shared) -> Value {
    json!({
        "id": st.name,
        "object": "model",
        "created": st.created,
        "owned_by": "qwgpu",
        "max_model_len": st.files.context,
        "context_length": st.files.context,
    })
}

async fn models(State(st): State<AppState>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_card(&st.0)]}))
}

/// `GET /v1/models/{id}` (`client.models.retrieve`); ids may hold slashes.
async fn model(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    if id == st.0.name {
        return Json(model_card(&st.0)).into_response();
    }
    let served = &st.0.name;
    ApiError::invalid(
        format!("the model `{id}` does not exist; this server serves `{served}`"),
        Some("model"),
    )
    .status(StatusCode::NOT_FOUND)
    .with_code("model_not_found")
    .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.0.metrics.render(),
    )
        .into_response()
}

async fn chat_completions(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    generate(st, body, true)
        .await
        .unwrap_or_else(error_response)
}

async fn completions(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    generate(st, body, false)
        .await
        .unwrap_or_else(error_response)
}

/// An error reply; a 429 says when to retry (`Retry-After`, seconds: a
/// slot frees as soon as any running reply ends).
fn error_response(e: ApiError) -> Response {
    let busy = e.status == StatusCode::TOO_MANY_REQUESTS;
    let mut res = e.into_response();
    if busy {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// A request's claim on the server's capacity (`--max-queue` +
/// `--max-batch` requests at once), released when its reply is over.
pub(crate) struct Held(AppState);

impl Held {
    fn take(st: &AppState) -> Result<Self, ApiError> {
        let cap = st.0.capacity;
        st.0.held
            .fetch_update(Relaxed, Relaxed, |n| (n < cap).then_some(n + 1))
            .map_err(|_| {
                Metrics::add(&st.0.metrics.requests_rejected, 1);
                ApiError::invalid("too many requests are waiting; retry later", None)
                    .status(StatusCode::TOO_MANY_REQUESTS)
                    .with_code("rate_limit_exceeded")
            })?;
        Ok(Self(st.clone()))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0 .0.held.fetch_sub(1, Relaxed);
    }
}

/// The engine's next event for a reply, or an error once the server's
/// drain deadline has passed ([`AppState::abort_requests`]).
pub(crate) async fn next_event(
    rx: &mut UnboundedReceiver<Event>,
    abort: &mut watch::Receiver<bool>,
) -> Option<Event> {
    tokio::select! {
        ev = rx.recv() => ev,
        Ok(_) = abort.wait_for(|a| *a) => Some(Event::Error("the server is shutting down".into())),
    }
}

fn body_error(r: BytesRejection) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::invalid("the request body is too large", None)
            .status(status)
            .with_code("request_too_large")
    } else {
        ApiError::invalid(format!("reading the request body: {}", r.body_text()), None)
            .status(status)
    }
}

/// `text`'s ids, refused (without tokenizing it whole) when it has more
/// tokens than the context holds.
fn encode(st: &Shared, text: &str, param: &str) -> Result<Vec<u32>, ApiError> {
    let ctx = st.files.context;
    BoundedTokenizer::new(&st.files.tokenizer, st.max_token_bytes)
        .encode(text, ctx)
        .map_err(|e| match e {
            EncodeError::TooLong { at_least } => context_error(
                format!("the prompt has at least {at_least} tokens; the model's context is {ctx} tokens"),
                Some(param),
            ),
            EncodeError::Tokenizer(e) => ApiError::server(format!("tokenizing the prompt: {e}")),
        })
}

/// Where the generation prompt begins in a chat prompt's `ids`: the length
/// of the conversation rendered without it, when that is a prefix of `ids`.
fn generation_boundary(st: &Shared, input: &Input, ids: &[u32]) -> Option<usize> {
    let Input::Messages {
        messages,
        tools,
        enable_thinking,
    } = input
    else {
        return None;
    };
    let text = st
        .files
        .template
        .as_ref()
        .ok()?
        .render_with_tools(
            messages,
            tools,
            &RenderOptions {
                add_generation_prompt: false,
                enable_thinking: *enable_thinking,
            },
        )
        .ok()?;
    let head = encode(st, &text, "messages").ok()?;
    (ids.starts_with(&head) && head.len() < ids.len()).then_some(head.len())
}

/// The prompt's token ids: the chat template's rendering, or the text, or ids.
fn prompt_ids(st: &Shared, input: &Input) -> Result<Vec<u32>, ApiError> {
    let param = match input {
        Input::Messages { .. } => "messages",
        _ => "prompt",
    };
    let text = match input {
        Input::Ids(ids) => {
            let vocab = st.files.text.vocab_size;
            if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                return Err(ApiError::invalid(
                    format!("token id {bad} is outside the vocabulary of {vocab} tokens"),
                    Some("prompt"),
                ));
            }
            return Ok(ids.clone());
        }
        Input::Text(t) => t.clone(),
        Input::Messages {
            messages,
            tools,
            enable_thinking,
        } => {
            let template = st.files.template.as_ref().map_err(template_error)?;
            template
                .render_with_tools(
                    messages,
                    tools,
                    &RenderOptions {
                        add_generation_prompt: true,
                        enable_thinking: *enable_thinking,
                    },
                )
                .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?
        }
    };
    encode(st, &text, param)
}

/// The prompt's ids and generation boundary, computed on the blocking pool:
/// templates and tokenizers take milliseconds to seconds of CPU, which the
/// async threads must not spend (they answer `/health` and the streams).
async fn tokenize(
    st: &AppState,
    input: Input,
) -> Result<(Input, Vec<u32>, Option<usize>), ApiError> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || {
        let prompt = prompt_ids(&st.0, &input)?;
        let boundary = generation_boundary(&st.0, &input, &prompt);
        Ok((input, prompt, boundary))
    })
    .await
    .map_err(|e| ApiError::server(format!("tokenizing the prompt: {e}")))?
}

/// Why chat requests cannot be served: the folder has no template (the
/// client should use completions), or its files are broken (the server's
/// fault: the reason, as logged at start).
fn template_error(e: &TemplateError) -> ApiError {
    match e {
        TemplateError::Missing { .. } => ApiError::invalid(
            "this model folder has no chat template: use /v1/completions",
            None,
        ),
        other => ApiError::server(format!(
            "the model folder's chat template cannot be used: {other}"
        )),
    }
}

fn context_error(message: String, param: Option<&str>) -> ApiError {
    ApiError::invalid(message, param).with_code("context_length_exceeded")
}

/// `max_tokens` checked against the context: default for chat the rest of
/// the context, for completions 16 (OpenAI's default).
fn max_tokens(
    st: &Shared,
    req: &GenRequest,
    prompt_len: usize,
    chat: bool,
) -> Result<usize, ApiError> {
    let ctx = st.files.context;
    if prompt_len == 0 {
        return Err(ApiError::invalid(
            "the prompt is empty",
            Some(if chat { "messages" } else { "prompt" }),
        ));
    }
    if prompt_len >= ctx {
        return Err(context_error(
            format!("the prompt has {prompt_len} tokens; the model's context is {ctx} tokens"),
            Some(if chat { "messages" } else { "prompt" }),
        ));
    }
    let name = "max_tokens";
    match req.max_tokens {
        Some(n) if n > ctx as u64 => Err(context_error(
            format!("`max_tokens` {n} exceeds the model's context of {ctx} tokens"),
            Some(name),
        )),
        Some(n) if prompt_len as u64 + n > ctx as u64 => Err(context_error(
            format!(
                "the prompt ({prompt_len} tokens) + max_tokens {n} exceeds the model's context of {ctx} tokens"
            ),
            Some(name),
        )),
        Some(n) => Ok(n as usize),
        None if chat => Ok(ctx - prompt_len),
        None => Ok(16.min(ctx - prompt_len)),
    }
}

/// A request's body read as a [`GenRequest`] and its prompt tokenized, on
/// the blocking pool (see [`tokenize`]); the model it names checked.
async fn read_request(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
    chat: bool,
) -> Result<(GenRequest, Vec<u32>, Option<usize>), ApiError> {
    let bytes = body.map_err(body_error)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::invalid(format!("the request body is not valid UTF-8: {e}"), None)
    })?;
    let mut req = GenRequest::parse_text(text, chat)?;
    if let Input::Messages {
        enable_thinking, ..
    } = &mut req.input
    {
        *enable_thinking = enable_thinking.or(st.0.default_enable_thinking);
    }
    drop(bytes);
    if let Some(m) = &req.model {
        if *m != st.0.name {
            let served = &st.0.name;
            return Err(ApiError::invalid(
                format!("the model `{m}` does not exist; this server serves `{served}`"),
                Some("model"),
            )
            .status(StatusCode::NOT_FOUND)
            .with_code("model_not_found"));
        }
    }
    let vocab = st.0.files.text.vocab_size;
    if let Some(bad) = req.options.stop_ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(ApiError::invalid(
            format!("token id {bad} is outside the vocabulary of {vocab} tokens"),
            Some("stop_token_ids"),
        ));
    }
    let input = std::mem::replace(&mut req.input, Input::Ids(Vec::new()));
    let (input, prompt, boundary) = tokenize(st, input).await?;
    req.input = input;
    Ok((req, prompt, boundary))
}

async fn generate(
    st: AppState,
    body: Result<Bytes, BytesRejection>,
    chat: bool,
) -> Result<Response, ApiError> {
    let accepted = Instant::now();
    let (req, prompt, boundary) = read_request(&st, body, chat).await?;
    let max_tokens = max_tokens(&st.0, &req, prompt.len(), chat)?;
    let params = req.sampling.apply(SamplingParams {
        temperature: req.temperature,
        top_k: req.top_k,
        top_p: req.top_p,
        ..SamplingParams::GREEDY
    });
    let constraint = match req.constraint.clone() {
        Some(spec) => Some(constrained(&st, spec, prompt.clone()).await?),
        None => None,
    };
    let n = st.0.counter.fetch_add(1, Relaxed);
    let seed = req.seed.unwrap_or(n);
    let held = Held::take(&st)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let ended = Arc::new(AtomicBool::new(false));
    // Choices 1.. of `n`: their own channels and seeds (seed + index).
    let (forks, fork_ends): (Vec<Fork>, Vec<_>) = (1..req.options.n as u64)
        .map(|i| {
            let (events, rx) = mpsc::unbounded_channel();
            let ended = Arc::new(AtomicBool::new(false));
            let fork = Fork {
                seed: seed.wrapping_add(i),
                events,
                ended: ended.clone(),
            };
            (fork, (rx, ended))
        })
        .unzip();
    let job = Job {
        boundary,
        prompt: prompt.clone(),
        max_tokens,
        params,
        seed,
        top_logprobs: req.sampling.top_logprobs,
        events: tx,
        constraint,
        opts: JobOptions {
            stop_ids: req.options.stop_ids.clone(),
            ignore_eos: req.options.ignore_eos,
            accepted,
            ended: ended.clone(),
            forks,
        },
    };
    let m = &st.0.metrics;
    Metrics::add(&m.queue_depth, 1);
    match st.0.jobs.try_send(job) {
        Ok(()) => Metrics::add(&m.requests_total, 1),
        Err(e) => {
            Metrics::sub(&m.queue_depth, 1);
            return Err(match e {
                TrySendError::Full(_) => {
                    Metrics::add(&m.requests_rejected, 1);
                    ApiError::invalid("too many requests are waiting; retry later", None)
                        .status(StatusCode::TOO_MANY_REQUESTS)
                        .with_code("rate_limit_exceeded")
                }
                TrySendError::Closed(_) => {
                    let why = st.0.engine.stopped().unwrap_or("the engine has stopped");
                    ApiError::server(why).status(StatusCode::SERVICE_UNAVAILABLE)
                }
            });
        }
    }
    let meta = Meta {
        id: {
            let kind = if chat { "chatcmpl" } else { "cmpl" };
            format!("{kind}-{n:016x}")
        },
        created: now_secs(),
        model: st.0.name.clone(),
        chat,
        prompt_tokens: prompt.len(),
        include_usage: req.include_usage,
        reply: reply_setup(&st.0, &req, &prompt, n),
        logprobs: req.sampling.top_logprobs.is_some(),
    };
    if !fork_ends.is_empty() {
        let choices = std::iter::once((rx, ended)).chain(fork_ends).collect();
        let prompt = Arc::new(prompt);
        return Ok(if req.stream {
            crate::choices::stream(st, meta, prompt, req.stop, choices, held)
        } else {
            crate::choices::whole(st, meta, prompt, req.stop, choices, held).await?
        });
    }
    let end = ReplyEnd { held, ended };
    if req.stream {
        Ok(stream(st, meta, prompt, req.stop, rx, end))
    } else {
        whole(st, meta, prompt, req.stop, rx, end).await
    }
}

/// What a reply holds until it is over: its capacity claim, and the flag
/// telling the engine that a stop string (not the client) ended it.
struct ReplyEnd {
    held: Held,
    ended: Arc<AtomicBool>,
}

/// How a chat reply is split into reasoning, text and tool calls
/// ([`tool_calls_reply`]); `None` for completions.
fn reply_setup(st: &Shared, req: &GenRequest, prompt: &[u32], seed: u64) -> Option<ReplySetup> {
    let Input::Messages { tools, .. } = &req.input else {
        return None;
    };
    Some(ReplySetup {
        opens_reasoning: prompt_opens_reasoning(&st.files.tokenizer, prompt),
        tools: ToolSet::new(tools),
        tool_choice: req.tool_choice.clone(),
        parallel_tool_calls: req.parallel_tool_calls,
        id_seed: seed,
    })
}

#[cfg(test)]
#[path = "tool_calls_app_tests.rs"]
mod tool_calls_app_tests;

/// A request's grammar constraint, compiled off the async runtime's threads
/// (the first one also builds the grammar engine over the vocabulary).
async fn constrained(
    st: &AppState,
    spec: crate::constrain::Spec,
    prompt: Vec<u32>,
) -> Result<crate::constrain::Constraint, ApiError> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || {
        crate::constrain::hook::for_prompt(&st.0.grammars, &st.0.files, &spec, &prompt)
    })
    .await
    .map_err(|e| ApiError::server(format!("compiling the grammar: {e}")))?
}

/// What the response chunks repeat.
pub(crate) struct Meta {
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) chat: bool,
    pub(crate) prompt_tokens: usize,
    pub(crate) include_usage: bool,
    /// Chat: how the reply is split.
    pub(crate) reply: Option<ReplySetup>,
    /// The request asked for log-probabilities.
    pub(crate) logprobs: bool,
}

impl Meta {
    /// A non-streaming response of `choices` (each with its `index`).
    pub(crate) fn whole_response(&self, choices: Vec<Value>, usage: Value) -> Response {
        let object = if self.chat {
            "chat.completion"
        } else {
            "text_completion"
        };
        Json(json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model,
            "choices": choices, "usage": usage,
        }))
        .into_response()
    }

    pub(crate) fn usage(&self, completion: usize, cached: usize) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        })
    }

    /// A choice's `logprobs` value for `tokens` (`offset`: completions'
    /// characters of reply text before them); null when not asked for.
    fn logprobs(&self, st: &Shared, tokens: &[TokenLogprobs], offset: usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        let tk = &st.files.tokenizer;
        if self.chat {
            sampling_options::chat_logprobs(tk, tokens)
        } else {
            sampling_options::completion_logprobs(tk, tokens, offset)
        }
    }

    /// One streamed chunk with `text` (chat: a delta) and maybe a finish reason.
    pub(crate) fn chunk(&self, text: Option<&str>, finish: Option<&str>, first: bool) -> Value {
        let mut v = if self.chat {
            let delta = match (first, text) {
                (true, _) => json!({"role": "assistant", "content": ""}),
                (false, Some(t)) => json!({"content": t}),
                (false, None) => json!({}),
            };
            self.delta_chunk(delta, finish)
        } else {
            json!({"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                   "choices": [{"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish}]})
        };
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// A chat chunk with this `delta`.
    fn delta_chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        let mut v = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    pub(crate) fn splitter(&self) -> Option<ReplySplitter> {
        self.reply.clone().map(ReplySplitter::new)
    }

    /// The chunks of a piece of reply text (chat: its reasoning, text and
    /// tool-call deltas as they complete).
    pub(crate) fn text_chunks(&self, split: &mut Option<ReplySplitter>, text: &str) -> Vec<Value> {
        match split {
            Some(s) => s
                .push(text)
                .iter()
                .map(|p| self.delta_chunk(tool_calls_reply::delta(p), None))
                .collect(),
            None if text.is_empty() => Vec::new(),
            None => vec![self.chunk(Some(text), None, false)],
        }
    }

    /// The last chunks: what the splitter held, then the finish reason.
    pub(crate) fn end_chunks(
        &self,
        split: &mut Option<ReplySplitter>,
        finish: Finish,
    ) -> Vec<Value> {
        let mut v: Vec<Value> = match split {
            Some(s) => s
                .finish()
                .iter()
                .map(|p| self.delta_chunk(tool_calls_reply::delta(p), None))
                .collect(),
            None => Vec::new(),
        };
        let reason = split
            .as_ref()
            .map_or(finish.as_str(), |s| s.finish_reason(finish));
        v.push(self.chunk(None, Some(reason), false));
        v
    }
}

/// Turns a request's events into reply text: detokenization, stop strings.
pub(crate) struct Reply<'t> {
    detok: Detokenizer<'t>,
    stop: StopMatcher,
    pub(crate) tokens: usize,
    pub(crate) cached: usize,
    /// Log-probabilities of tokens not yet sent (streaming) or of all (whole).
    logprobs: Vec<TokenLogprobs>,
    /// Completions: characters of reply text the sent log-probabilities cover.
    lp_offset: usize,
    /// Set when a stop string ends the reply (see [`JobOptions::ended`]).
    ended: Arc<AtomicBool>,
}

/// One step of a reply as the client sees it.
pub(crate) enum Step {
    Text(String),
    End { text: String, finish: Finish },
    Failed(ApiError),
}

impl<'t> Reply<'t> {
    pub(crate) fn new(
        st: &'t Shared,
        prompt: &[u32],
        stop: Vec<String>,
        ended: Arc<AtomicBool>,
    ) -> Self {
        Self {
            detok: Detokenizer::new(&st.files.tokenizer, prompt),
            stop: StopMatcher::new(stop),
            tokens: 0,
            cached: 0,
            logprobs: Vec::new(),
            lp_offset: 0,
            ended,
        }
    }

    /// The log-probabilities gathered since the last call, as a chunk's value.
    pub(crate) fn take_logprobs(&mut self, st: &Shared, meta: &Meta) -> Value {
        let tokens = std::mem::take(&mut self.logprobs);
        let v = meta.logprobs(st, &tokens, self.lp_offset);
        self.lp_offset += sampling_options::text_chars(&st.files.tokenizer, &tokens);
        v
    }

    pub(crate) fn on(&mut self, ev: Option<Event>) -> Option<Step> {
        match ev {
            Some(Event::Admitted { cached }) => {
                self.cached = cached;
                None
            }
            Some(Event::Logprobs(lp)) => {
                self.logprobs.push(lp);
                None
            }
            Some(Event::Token(t)) => {
                self.tokens += 1;
                let piece = match self.detok.push(t) {
                    Ok(p) => p,
                    Err(e) => return Some(Step::Failed(ApiError::server(e.to_string()))),
                };
                let r = self.stop.push(&piece);
                self.ended.store(r.stopped, Relaxed);
                Some(if r.stopped {
                    Step::End {
                        text: r.text,
                        finish: Finish::Stop,
                    }
                } else {
                    Step::Text(r.text)
                })
            }
            Some(Event::Done { finish, .. }) => {
                let tail = match self.detok.finish() {
                    Ok(t) => t,
                    Err(e) => return Some(Step::Failed(ApiError::server(e.to_string()))),
                };
                let r = self.stop.push(&tail);
                let text = if r.stopped {
                    r.text
                } else {
                    r.text + &self.stop.finish()
                };
                let finish = if r.stopped { Finish::Stop } else { finish };
                Some(Step::End { text, finish })
            }
            Some(Event::Error(msg)) => Some(Step::Failed(ApiError::server(msg))),
            None => Some(Step::Failed(ApiError::server("the engine stopped"))),
        }
    }
}

pub(crate) fn sse_json(v: &Value) -> Result<SseEvent, std::convert::Infallible> {
    Ok(SseEvent::default().data(v.to_string()))
}

/// `data: {...}` chunks, then `data: [DONE]`. Dropping the response (the
/// client went away) drops `rx`, which the engine sees as a cancel.
fn stream(
    st: AppState,
    meta: Meta,
    prompt: Vec<u32>,
    stop: Vec<String>,
    mut rx: UnboundedReceiver<Event>,
    end: ReplyEnd,
) -> Response {
    let events = async_stream::stream! {
        let _held = end.held;
        let mut abort = st.0.abort.subscribe();
        let mut reply = Reply::new(&st.0, &prompt, stop, end.ended);
        let mut split = meta.splitter();
        if meta.chat {
            yield sse_json(&meta.chunk(None, None, true));
        }
        loop {
            let ev = next_event(&mut rx, &mut abort).await;
            match reply.on(ev) {
                Some(Step::Text(t)) if !t.is_empty() => {
                    let mut chunks = meta.text_chunks(&mut split, &t);
                    // Log-probabilities ride on the next chunk that goes out
                    // (the splitter may hold text back: partial tags, calls).
                    if let Some(first) = chunks.first_mut() {
                        if meta.logprobs {
                            first["choices"][0]["logprobs"] = reply.take_logprobs(&st.0, &meta);
                        }
                    }
                    for c in chunks {
                        yield sse_json(&c);
                    }
                }
                None | Some(Step::Text(_)) => {}
                Some(Step::End { text, finish }) => {
                    let mut chunks = meta.text_chunks(&mut split, &text);
                    chunks.extend(meta.end_chunks(&mut split, finish));
                    if let Some(first) = chunks.first_mut() {
                        if meta.logprobs {
                            first["choices"][0]["logprobs"] = reply.take_logprobs(&st.0, &meta);
                        }
                    }
                    for c in chunks {
                        yield sse_json(&c);
                    }
                    break;
                }
                Some(Step::Failed(e)) => {
                    yield sse_json(&e.body());
                    break;
                }
            }
        }
        drop(rx);
        if meta.include_usage {
            let mut u = meta.chunk(None, None, false);
            u["choices"] = json!([]);
            u["usage"] = meta.usage(reply.tokens, reply.cached);
            yield sse_json(&u);
        }
        yield Ok(SseEvent::default().data("[DONE]"));
    };
    Sse::new(events).into_response()
}

/// Choice `index` of a whole reply: chat, its message (reasoning, text and
/// tool calls split); completions, its text; with its log-probabilities.
pub(crate) fn whole_choice(
    st: &Shared,
    meta: &Meta,
    reply: &mut Reply,
    text: &str,
    finish: Finish,
    index: usize,
) -> Value {
    let logprobs = reply.take_logprobs(st, meta);
    if let Some(mut split) = meta.splitter() {
        let mut parts = split.push(text);
        parts.extend(split.finish());
        json!({"index": index, "message": tool_calls_reply::message(&parts), "logprobs": logprobs,
               "finish_reason": split.finish_reason(finish)})
    } else {
        json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish.as_str()})
    }
}

/// A non-streaming reply: the whole text once it is over.
async fn whole(
    st: AppState,
    meta: Meta,
    prompt: Vec<u32>,
    stop: Vec<String>,
    mut rx: UnboundedReceiver<Event>,
    end: ReplyEnd,
) -> Result<Response, ApiError> {
    let _held = end.held;
    let mut abort = st.0.abort.subscribe();
    let mut reply = Reply::new(&st.0, &prompt, stop, end.ended);
    let mut text = String::new();
    let finish = loop {
        match reply.on(next_event(&mut rx, &mut abort).await) {
            None => {}
            Some(Step::Text(t)) => text.push_str(&t),
            Some(Step::End { text: t, finish }) => {
                text.push_str(&t);
                break finish;
            }
            Some(Step::Failed(e)) => return Err(e),
        }
    };
    drop(rx);
    let usage = meta.usage(reply.tokens, reply.cached);
    let choice = whole_choice(&st.0, &meta, &mut reply, &text, finish, 0);
    Ok(meta.whole_response(vec![choice], usage))
}
