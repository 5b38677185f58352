//! The accept loop: hyper connections with the limits a public server needs
//! (axum's own `serve` has none: a client that sends half a request holds
//! its connection, and a file descriptor, for ever).
//!
//! - at most [`ServeOptions::max_connections`] connections are served; the
//!   next ones wait in the kernel's listen backlog until one closes, so a
//!   flood of stuck sockets cannot exhaust the process's descriptors and
//!   starve `/health`;
//! - a request's headers must arrive within [`ServeOptions::header_timeout`]
//!   (hyper's header timer, which also runs while a keep-alive connection
//!   waits for its next request: it is the idle timeout too); its body
//!   within [`ServeOptions::body_timeout`] (408, see [`crate::app`]);
//! - shutdown drains: no new connections, each open one finishes its
//!   request in flight, streams included; past
//!   [`ServeOptions::drain_timeout`] the streams still running are ended
//!   with an error chunk and `[DONE]` rather than cut.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::{AppState, ServeOptions};

/// How long ended streams get to write their last chunks after the drain
/// deadline before the server stops regardless.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// Serves `state`'s routes on `listener` until `shutdown` resolves, then
/// drains (see the module's documentation) and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    opts: &ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = crate::app::router(state.clone(), opts);
    let max = opts.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of descriptors (EMFILE) and the like: wait rather
                    // than spin; a connection's end frees one.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            let stopping = async {
                // The guard `wait_for` returns must not live across an await.
                let _ = stop.wait_for(|s| *s).await.map(|_| ());
            };
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stopping => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(opts.drain_timeout, slots.acquire_many(all)).await;
    if drained.is_err() {
        let open = max - slots.available_permits();
        tracing::warn!(
            "{open} connections still busy after the drain timeout: ending their streams"
        );
        state.abort_requests();
        let _ = tokio::time::timeout(ABORT_GRACE, slots.acquire_many(all)).await;
    }
    Ok(())
}
