//! The HTTP layers every route passes through, outermost first:
//! - [`count`]: error responses counted by status in `/metrics`;
//! - [`cors`]: `--cors-origin`: CORS headers on `/v1/*`, preflights answered;
//! - [`auth`]: `--api-key`: `Authorization: Bearer KEY` on `/v1/*`;
//! - [`read_body`]: the body read whole within `--body-timeout` (408) and
//!   `max_body_bytes` (413) before any handler runs.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::api::ApiError;
use crate::metrics::Metrics;

/// What the layers need, from [`crate::ServeOptions`].
pub struct Guard {
    pub api_key: Option<String>,
    pub cors_origins: Vec<String>,
    pub body_timeout: Duration,
    pub max_body_bytes: usize,
    pub metrics: Arc<Metrics>,
}

fn is_api(req: &Request) -> bool {
    req.uri().path().starts_with("/v1/")
}

/// Counts every 4xx / 5xx response by status (`/metrics`).
pub async fn count(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    g.metrics.http_status(res.status().as_u16());
    res
}

/// Equal bytes, compared in a time that depends on the lengths only.
fn same_key(given: &[u8], key: &[u8]) -> bool {
    given.len() == key.len() && given.iter().zip(key).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// `/v1/*` requires the API key when one is set; `/health` and `/metrics`
/// stay open (probes carry no key); preflights carry none either.
pub async fn auth(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let Some(key) = &g.api_key else {
        return next.run(req).await;
    };
    if !is_api(&req) || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        Some(k) if same_key(k.as_bytes(), key.as_bytes()) => next.run(req).await,
        Some(_) => unauthorized("the API key is not valid"),
        None => {
            unauthorized("an API key is required: send it in an `Authorization: Bearer KEY` header")
        }
    }
}

fn unauthorized(message: &str) -> Response {
    let mut res = ApiError::invalid(message, None)
        .status(StatusCode::UNAUTHORIZED)
        .with_code("invalid_api_key")
        .into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// The origin to echo for `origin`, when allowed.
fn allowed(g: &Guard, origin: &str) -> Option<HeaderValue> {
    if g.cors_origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    g.cors_origins
        .iter()
        .any(|o| o.trim_end_matches('/') == origin)
        .then(|| HeaderValue::from_str(origin).ok())
        .flatten()
}

/// CORS on `/v1/*` for the configured origins: preflights (`OPTIONS`) are
/// answered here, other responses get `Access-Control-Allow-Origin`.
pub async fn cors(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allow = match (&origin, is_api(&req)) {
        (Some(o), true) => allowed(&g, o),
        _ => None,
    };
    if req.method() == Method::OPTIONS && is_api(&req) {
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        if let Some(a) = allow {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, a);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
            h.insert(header::VARY, HeaderValue::from_static("origin"));
        }
        return res;
    }
    let mut res = next.run(req).await;
    if let Some(a) = allow {
        res.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, a);
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("origin"));
    }
    res
}

/// Reads the body whole before the handler runs: within the body timeout
/// (a client announcing more than it sends gets 408 and the connection is
/// closed) and the size limit (413, found without reading past it).
pub async fn read_body(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, g.max_body_bytes);
    let bytes = match tokio::time::timeout(g.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return closing(
                ApiError::invalid("the request body is too large", None)
                    .status(StatusCode::PAYLOAD_TOO_LARGE)
                    .with_code("request_too_large"),
            )
        }
        Ok(Err(e)) => {
            return closing(ApiError::invalid(
                format!("reading the request body: {e}"),
                None,
            ))
        }
        Err(_) => {
            let secs = g.body_timeout.as_secs_f64();
            return closing(
                ApiError::invalid(
                    format!("the request body did not arrive within {secs} s"),
                    None,
                )
                .status(StatusCode::REQUEST_TIMEOUT)
                .with_code("request_timeout"),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// An error after which the connection cannot be reused (the rest of the
/// body may still be on its way).
fn closing(e: ApiError) -> Response {
    let mut res = e.into_response();
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        assert!(same_key(b"sk-123", b"sk-123"));
        assert!(!same_key(b"sk-124", b"sk-123"));
        assert!(!same_key(b"sk-12", b"sk-123"));
        assert!(!same_key(b"", b"sk-123"));
    }
}
