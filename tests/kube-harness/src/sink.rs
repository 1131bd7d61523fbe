//! A notification receiver for tests: records every request, answers a configurable status
//! (200 by default), and can really go away and come back on the same port.
//!
//! ```text
//!   sidecar ──POST──▶ 127.0.0.1:<port>  accept loop (owns the listener and every connection)
//!                          │ record method, path, headers, body; bump the counter
//!                          ▼
//!                     answer `status` (200)       tests: received(), wait_for(n, timeout)
//! ```
//! `go_down()` aborts the accept loop: the listener and all open (keep-alive) connections are
//! dropped, so new connections are refused. `come_up()` binds the same port again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, Result};

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method (`POST`).
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Bytes,
}

impl Recorded {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

struct Shared {
    received: Mutex<Vec<Recorded>>,
    count: watch::Sender<usize>,
    status: AtomicU16,
}

/// The running sink. Stops when dropped.
pub struct NotificationSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl NotificationSink {
    /// Binds 127.0.0.1 on a free port and starts serving on the current tokio runtime.
    pub async fn start() -> Result<NotificationSink> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("binding the notification sink", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the sink address", e))?;
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
            status: AtomicU16::new(200),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Ok(NotificationSink {
            addr,
            shared,
            server: Mutex::new(Some(server)),
        })
    }

    /// `http://127.0.0.1:<port>/notify` (any path is accepted and recorded).
    pub fn url(&self) -> String {
        format!("http://{}/notify", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything received so far, in arrival order (also requests answered with a non-2xx).
    pub fn received(&self) -> Vec<Recorded> {
        self.shared
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `n` requests have arrived (bounded by `timeout`) and returns all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Recorded>> {
        let mut rx = self.shared.count.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await {
            Ok(Ok(_)) => Ok(self.received()),
            _ => Err(Error::Timeout {
                what: format!("{n} notification(s); received {}", self.received().len()),
                after: timeout,
            }),
        }
    }

    /// Answer every following request with `status` (e.g. 500 to test retries). Default 200.
    pub fn respond_with(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Stops accepting: drops the listener and closes every open connection. Idempotent.
    pub fn go_down(&self) {
        if let Ok(mut s) = self.server.lock()
            && let Some(task) = s.take()
        {
            task.abort();
        }
    }

    /// Binds the same port again and serves. Waits (bounded, 5 s) until the previous listener
    /// is really gone.
    pub async fn come_up(&self) -> Result<()> {
        let old = self.server.lock().ok().and_then(|mut s| s.take());
        if let Some(task) = old {
            task.abort();
            let _ = task.await;
        }
        let mut last_err = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    let task = tokio::spawn(serve(listener, self.shared.clone()));
                    if let Ok(mut s) = self.server.lock() {
                        *s = Some(task);
                    }
                    return Ok(());
                }
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::io(
            format!("re-binding the sink on {}", self.addr),
            last_err.unwrap_or_else(|| std::io::Error::other("bind failed")),
        ))
    }
}

impl Drop for NotificationSink {
    fn drop(&mut self) {
        self.go_down();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    serve_http1(
        listener,
        move |req| handle(req, shared.clone()),
        std::future::pending(),
    )
    .await;
}

/// Serves HTTP/1.1 on `listener`, each request through `handle`, until `shutdown` resolves. The
/// loop owns every connection (a `JoinSet`), so ending or aborting it closes them all. The
/// test servers of the harnesses (this sink, the reservation tier's Keycloak stub) use it.
pub async fn serve_http1<H, F>(
    listener: TcpListener,
    handle: H,
    shutdown: impl std::future::Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = std::result::Result<Response<Full<Bytes>>, hyper::Error>>
        + Send
        + 'static,
{
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let handle = handle.clone();
                conns.spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(handle))
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> std::result::Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    if let Ok(mut r) = shared.received.lock() {
        r.push(rec);
        let n = r.len();
        shared.count.send_replace(n);
    }
    let status =
        StatusCode::from_u16(shared.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
    *resp.status_mut() = status;
    Ok(resp)
}
