//! A small async JSON client over hyper (the workspace's HTTP stack) for the services' REST APIs.
//!
//! No connection pool: every request opens its own connection on the calling runtime, so one
//! client (inside a shared, `static` reservation system) works from any test's runtime. Every
//! exchange is bounded ([`TIMEOUT`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::error::{Error, Result};

/// Bound on one exchange (reservation-be answers a Test button press only after its own POST to
/// the webhook, which it bounds at 5 s connect + 10 s read).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: status and body (JSON when it parses, else a string value).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body as JSON; a non-JSON body is a JSON string; an empty one `null`.
    pub body: Value,
    /// The raw body.
    pub text: String,
}

impl Answer {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The client (cheap to clone).
#[derive(Clone)]
pub struct JsonClient {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for JsonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonClient")
            .field("base", &self.base)
            .finish()
    }
}

impl JsonClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8080/api`); paths are appended to it.
    pub fn new(base: impl Into<String>) -> JsonClient {
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        JsonClient {
            base: base.into(),
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method base+path` with an optional JSON body; any status is an [`Answer`], transport
    /// failures and timeouts are errors.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
        let err = |message: String| Error::Http {
            method: method.to_string(),
            url: url.clone(),
            message,
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("accept", "application/json");
        let bytes = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes)).map_err(|e| err(e.to_string()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| err(format!("{e:?}")))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| err(e.to_string()))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| err(format!("no answer within {TIMEOUT:?}")))??;
        let text = String::from_utf8_lossy(&body).into_owned();
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        Ok(Answer {
            status,
            body: json,
            text,
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Answer> {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Answer> {
        self.request(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Answer> {
        self.request(Method::DELETE, path, None).await
    }

    /// Like [`JsonClient::request`], but a non-2xx answer is an [`Error::Refused`] naming
    /// `what`; returns the JSON body.
    pub async fn expect_ok(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let a = self.request(method, path, body).await?;
        if a.is_success() {
            Ok(a.body)
        } else {
            Err(Error::Refused {
                what: what.to_string(),
                status: a.status,
                body: a.text,
            })
        }
    }
}
