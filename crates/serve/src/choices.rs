//! Requests of several choices (`n` > 1). The engine prefills the prompt
//! once and forks the session for each choice (see the `prefill` module);
//! here each choice's events run through their own [`Reply`] (detokenizer,
//! stop strings) in a task of their own, and the replies are merged: one
//! response with `choices[i]`, or one stream whose chunks carry each
//! choice's `index`. `usage` counts the prompt once and every choice's
//! tokens.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::api::ApiError;
use crate::app::{next_event, sse_json, whole_choice, AppState, Held, Meta, Reply, Step};
use crate::scheduler::Event;

/// One choice's receiver and its stop flag.
pub(crate) type Choice = (UnboundedReceiver<Event>, Arc<AtomicBool>);

/// What a choice's task reports.
enum Out {
    /// A stream chunk, its index set.
    Chunk(Value),
    /// The choice is over (`choice`: its whole-reply value, when not streaming).
    End {
        choice: Option<Value>,
        tokens: usize,
        cached: usize,
    },
    Failed(ApiError),
}

/// `v`'s choice renumbered as `index`.
fn indexed(mut v: Value, index: usize) -> Value {
    v["choices"][0]["index"] = json!(index);
    v
}

/// Runs one choice until its reply ends, the client goes away (`out`
/// closed: dropping `rx` then cancels it in the engine) or the server
/// aborts. Its chunks are the single-choice stream's (reasoning, text and
/// tool-call deltas, log-probabilities on the first chunk that goes out),
/// renumbered.
#[allow(clippy::too_many_arguments)]
async fn run_choice(
    st: AppState,
    meta: Arc<Meta>,
    index: usize,
    prompt: Arc<Vec<u32>>,
    stop: Vec<String>,
    (mut rx, ended): Choice,
    streaming: bool,
    out: UnboundedSender<Out>,
) {
    let mut abort = st.0.abort.subscribe();
    let mut reply = Reply::new(&st.0, &prompt, stop, ended);
    let mut split = meta.splitter();
    let mut text = String::new();
    let send = |mut chunks: Vec<Value>, reply: &mut Reply| {
        if let Some(first) = chunks.first_mut() {
            if meta.logprobs {
                first["choices"][0]["logprobs"] = reply.take_logprobs(&st.0, &meta);
            }
        }
        for c in chunks {
            let _ = out.send(Out::Chunk(indexed(c, index)));
        }
    };
    loop {
        let ev = tokio::select! {
            ev = next_event(&mut rx, &mut abort) => ev,
            () = out.closed() => return,
        };
        match reply.on(ev) {
            None => {}
            Some(Step::Text(t)) => {
                if !streaming {
                    text.push_str(&t);
                } else if !t.is_empty() {
                    send(meta.text_chunks(&mut split, &t), &mut reply);
                }
            }
            Some(Step::End { text: t, finish }) => {
                let choice = if streaming {
                    let mut chunks = meta.text_chunks(&mut split, &t);
                    chunks.extend(meta.end_chunks(&mut split, finish));
                    send(chunks, &mut reply);
                    None
                } else {
                    text.push_str(&t);
                    Some(whole_choice(&st.0, &meta, &mut reply, &text, finish, index))
                };
                let _ = out.send(Out::End {
                    choice,
                    tokens: reply.tokens,
                    cached: reply.cached,
                });
                return;
            }
            Some(Step::Failed(e)) => {
                let _ = out.send(Out::Failed(e));
                return;
            }
        }
    }
}

/// Starts a task per choice; returns the channel they report on.
fn spawn_choices(
    st: &AppState,
    meta: &Arc<Meta>,
    prompt: &Arc<Vec<u32>>,
    stop: &[String],
    choices: Vec<Choice>,
    streaming: bool,
) -> mpsc::UnboundedReceiver<Out> {
    let (tx, rx) = mpsc::unbounded_channel();
    for (index, choice) in choices.into_iter().enumerate() {
        tokio::spawn(run_choice(
            st.clone(),
            meta.clone(),
            index,
            prompt.clone(),
            stop.to_vec(),
            choice,
            streaming,
            tx.clone(),
        ));
    }
    rx
}

/// The streamed reply: each choice's first chunk (chat: the role), then the
/// choices' chunks as they come, then usage (when asked) and `[DONE]`. An
/// error in any choice ends the stream with the error.
pub(crate) fn stream(
    st: AppState,
    meta: Meta,
    prompt: Arc<Vec<u32>>,
    stop: Vec<String>,
    choices: Vec<Choice>,
    held: Held,
) -> Response {
    let n = choices.len();
    let meta = Arc::new(meta);
    let mut rx = spawn_choices(&st, &meta, &prompt, &stop, choices, true);
    let events = async_stream::stream! {
        let _held = held;
        if meta.chat {
            for i in 0..n {
                yield sse_json(&indexed(meta.chunk(None, None, true), i));
            }
        }
        let (mut left, mut tokens, mut cached) = (n, 0, 0);
        while left > 0 {
            match rx.recv().await {
                Some(Out::Chunk(v)) => yield sse_json(&v),
                Some(Out::End { tokens: t, cached: c, .. }) => {
                    left -= 1;
                    tokens += t;
                    cached = c;
                }
                Some(Out::Failed(e)) => {
                    yield sse_json(&e.body());
                    break;
                }
                None => break,
            }
        }
        drop(rx);
        if meta.include_usage {
            let mut u = meta.chunk(None, None, false);
            u["choices"] = json!([]);
            u["usage"] = meta.usage(tokens, cached);
            yield sse_json(&u);
        }
        yield Ok::<_, std::convert::Infallible>(SseEvent::default().data("[DONE]"));
    };
    Sse::new(events).into_response()
}

/// The whole reply once every choice is over.
pub(crate) async fn whole(
    st: AppState,
    meta: Meta,
    prompt: Arc<Vec<u32>>,
    stop: Vec<String>,
    choices: Vec<Choice>,
    held: Held,
) -> Result<Response, ApiError> {
    let _held = held;
    let n = choices.len();
    let meta = Arc::new(meta);
    let mut rx = spawn_choices(&st, &meta, &prompt, &stop, choices, false);
    let mut choices: Vec<Value> = Vec::with_capacity(n);
    let (mut tokens, mut cached) = (0, 0);
    while choices.len() < n {
        match rx.recv().await {
            Some(Out::End {
                choice,
                tokens: t,
                cached: c,
            }) => {
                choices.extend(choice);
                tokens += t;
                cached = c;
            }
            Some(Out::Failed(e)) => return Err(e),
            Some(Out::Chunk(_)) => {}
            None => return Err(ApiError::server("the engine stopped")),
        }
    }
    choices.sort_by_key(|c| c["index"].as_u64());
    Ok(meta.whole_response(choices, meta.usage(tokens, cached)))
}
