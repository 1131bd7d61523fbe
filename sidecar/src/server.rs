//! The HTTP layer (hyper 1, HTTP/1.1): routing, body limits, JSON answers. Thin on purpose:
//! handlers never return `Err` for bad input, they answer 4xx/5xx JSON.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use jiff::Timestamp;
use serde_json::json;
use tokio::net::TcpListener;
use webhook_core::error::ErrorBody;

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::webhook;

/// Largest accepted webhook body.
pub const MAX_BODY: usize = 1024 * 1024;

/// How long in-flight requests may take to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(15);

/// Serves HTTP on `listener` until `shutdown` completes, then drains open connections.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve(listener, state, shutdown, Surface::Public).await
}

/// Serves the admin listener (`ADMIN_ADDR`): `/healthz`, `/readyz` and `/metrics` only, never
/// `/webhook`, so the kubelet and Prometheus reach the sidecar on the pod IP while deliveries
/// only ever come through the filter.
pub async fn run_admin(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve(listener, state, shutdown, Surface::Admin).await
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// `SIDECAR_ADDR`: behind the filter. Serves `/metrics` only when there is no admin listener.
    Public,
    /// `ADMIN_ADDR`: probes and metrics.
    Admin,
}

async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
    surface: Surface,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let st = state.clone();
                let svc = service_fn(move |req| {
                    let st = st.clone();
                    async move {
                        let resp = route(&st, req, surface).await;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(?surface, "shutting down: draining connections");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {}s; closing", DRAIN.as_secs());
    }
    Ok(())
}

/// Routes one request that came in on `surface`: `/webhook` only on the public listener,
/// `/metrics` on the admin listener when there is one (never through the public Service),
/// else on the public one; probes on both.
async fn route(
    state: &AppState,
    req: Request<Incoming>,
    surface: Surface,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let webhook_here = surface == Surface::Public;
    let metrics_here = surface == Surface::Admin || state.config.admin_addr.is_none();
    let resp = match (path.as_str(), &method) {
        ("/webhook", &Method::POST) if webhook_here => post_webhook(state, req).await,
        ("/healthz", &Method::GET) => healthz(),
        ("/readyz", &Method::GET) => readyz(state).await,
        ("/metrics", &Method::GET) if metrics_here => metrics(state),
        ("/metrics", _) if !metrics_here => plain_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "metrics are served on the admin port (ADMIN_ADDR)",
        ),
        ("/webhook" | "/healthz" | "/readyz" | "/metrics", _)
            if webhook_here || path != "/webhook" =>
        {
            plain_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("method {method} not allowed on {path}"),
            )
        }
        _ => {
            let on = match surface {
                Surface::Public => "",
                Surface::Admin => " on the admin port",
            };
            plain_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no route for {path}{on}"),
            )
        }
    };
    // The histogram's `_count` is the request counter.
    state
        .metrics
        .observe_request(&path, resp.status().as_u16(), started.elapsed());
    resp
}

/// The process is up and serving (the kubelet's liveness and readiness probes).
fn healthz() -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &json!({"status": "ok", "timestamp": Timestamp::now().to_string()}),
    )
}

/// Whether the API server answers (for people and monitoring; see docs/deploy.md for why the
/// kubelet's readiness probe does not use it).
async fn readyz(state: &AppState) -> Response<Full<Bytes>> {
    match state.kube.ping().await {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"status": "ready", "timestamp": Timestamp::now().to_string()}),
        ),
        // Any answer but a version is "not ready": a refusal too.
        Err(Error::Kube { source, .. }) => error_response(&Error::ApiUnavailable { source }),
        Err(e) => error_response(&e),
    }
}

fn metrics(state: &AppState) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(state.metrics.render())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

async fn post_webhook(state: &AppState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let err = if e.is::<http_body_util::LengthLimitError>() {
                Error::BodyTooLarge { limit: MAX_BODY }
            } else {
                Error::UnreadableBody(e)
            };
            return error_response(&err);
        }
    };
    let now = std::time::SystemTime::now();
    let message = match state.inbound.check(&parts.headers, &body, now) {
        Ok(message) => message,
        Err(rejection) => {
            tracing::warn!(
                status = rejection.status(),
                error_type = rejection.error.error_type(),
                "delivery refused behind the edge (did it bypass the filter?)"
            );
            return rejection_response(&rejection, now);
        }
    };
    match webhook::handle(state, &message).await {
        Ok(accepted) => {
            let status =
                StatusCode::from_u16(state.config.success_status).unwrap_or(StatusCode::OK);
            json_response(status, &accepted)
        }
        Err(e) => {
            tracing::warn!(error = %e, event_type = %message.event_name, "webhook not processed");
            error_response(&e)
        }
    }
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn plain_error(status: StatusCode, error_type: &str, detail: &str) -> Response<Full<Bytes>> {
    let body = ErrorBody::new(detail.to_owned(), error_type, Timestamp::now().to_string());
    json_response(status, &body)
}

/// The filter's own reply to a refused delivery (same status, headers and body).
fn rejection_response(
    rejection: &webhook_core::flow::Rejection,
    now: std::time::SystemTime,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(rejection.body(now))));
    *r.status_mut() = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST);
    for (name, value) in rejection.headers() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

/// The JSON error body of `e`, with `Retry-After` on 503.
pub fn error_response(e: &Error) -> Response<Full<Bytes>> {
    let mut r = json_response(e.status(), &e.body(Timestamp::now().to_string()));
    if let Some(secs) = e.retry_after() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}
