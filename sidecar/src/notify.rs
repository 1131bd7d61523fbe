//! Notifications: a signed JSON POST to `NOTIFY_URL` when a host is provisioned, released or
//! failed, retried with exponential backoff. The body is built from the host's annotations only
//! (its timestamp is the phase's start), so every retry, from any replica, sends the same bytes,
//! the same signature and the same `Idempotency-Key`.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Host, Phase};

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`, as on inbound webhooks.
pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";
/// Header carrying the stable key receivers use to drop repeats.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The notification body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub event_id: String,
    pub resource_id: i64,
    pub resource_name: String,
    /// `<namespace>/<name>` of the BMH.
    pub bmh: String,
    pub username: String,
    pub user_id: String,
    /// `provisioned`, `released` or `failed`.
    pub outcome: Phase,
    pub detail: String,
    /// When the phase began (RFC 3339).
    pub timestamp: String,
}

impl Notification {
    /// The notification for `phase` of `host`, when the host has a holder.
    pub fn for_host(host: &Host, phase: Phase) -> Option<Self> {
        let h = host.holder.as_ref()?;
        Some(Notification {
            event_id: h.event_id.clone(),
            resource_id: h.resource_id,
            resource_name: h.resource_name.clone(),
            bmh: host.key(),
            username: h.username.clone(),
            user_id: h.user_id.clone(),
            outcome: phase,
            detail: host.detail.clone(),
            timestamp: host.phase_since.map(|t| t.to_string()).unwrap_or_default(),
        })
    }

    /// `<eventId>:<namespace>/<bmh>:<outcome>`.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.event_id, self.bmh, self.outcome)
    }
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`, exactly as inbound webhooks are signed.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    webhook_core::signature::signature_header_value(secret, body)
}

/// Sends notifications to one URL.
#[derive(Clone)]
pub struct Notifier {
    url: Option<Uri>,
    secret: Vec<u8>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    backoff: ExponentialBuilder,
    timeout: Duration,
}

impl Notifier {
    /// A notifier for `url` (None: notifications are off) signing with `secret`.
    pub fn new(url: Option<&str>, secret: &str) -> Result<Self> {
        let url = url
            .map(|u| u.parse::<Uri>())
            .transpose()
            .map_err(|e| Error::Config(format!("NOTIFY_URL: {e}")))?;
        // The system's CA bundle when there is one (private CAs work), else the compiled-in
        // Mozilla roots, so a minimal image without a bundle still starts.
        let roots = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "no system CA bundle; using the built-in roots");
                hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots()
            }
        };
        let https = roots.https_or_http().enable_http1().build();
        Ok(Notifier {
            url,
            secret: secret.as_bytes().to_vec(),
            client: Client::builder(TokioExecutor::new()).build(https),
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(6)
                .with_jitter(),
            timeout: Duration::from_secs(5),
        })
    }

    /// Whether a URL is configured.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Delivers `n`, retrying with exponential backoff a bounded number of times (the
    /// reconciler calls again later until it is delivered).
    pub async fn deliver(&self, n: &Notification) -> Result<()> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let body =
            Bytes::from(serde_json::to_vec(n).map_err(|e| Error::Notify(format!("encode: {e}")))?);
        let sig = signature(&self.secret, &body);
        let key = n.idempotency_key();
        let once = || async {
            let req = Request::post(url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &sig)
                .header(IDEMPOTENCY_HEADER, &key)
                .body(Full::new(body.clone()))
                .map_err(|e| Error::Notify(e.to_string()))?;
            let resp = tokio::time::timeout(self.timeout, self.client.request(req))
                .await
                .map_err(|_| Error::Notify("timed out".into()))?
                .map_err(|e| Error::Notify(e.to_string()))?;
            let status = resp.status();
            // Drain the body so the connection can be reused.
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(Error::Notify(format!("receiver answered {status}")))
            }
        };
        once.retry(self.backoff)
            .notify(|e, after| tracing::warn!(error = %e, retry_in = ?after, key, "notification failed"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{holder, host};

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn notification_is_built_from_annotations() {
        let mut h = host().held(&holder("101", "u1"), Phase::Failed);
        h.detail = "boom".into();
        let n = Notification::for_host(&h, Phase::Failed).unwrap();
        assert_eq!(n.idempotency_key(), "101:ns/lab-server-a1:failed");
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "eventId": "101", "resourceId": 1, "resourceName": "Lab Server A1",
                "bmh": "ns/lab-server-a1", "username": "u1-name", "userId": "u1",
                "outcome": "failed", "detail": "boom", "timestamp": "1970-01-01T00:00:00Z"
            })
        );
        assert!(Notification::for_host(&host(), Phase::Failed).is_none());
    }
}
