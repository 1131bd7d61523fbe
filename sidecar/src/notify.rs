//! Notifications: a signed JSON POST to `NOTIFY_URL` when a host is provisioned, released or
//! failed, retried with exponential backoff. The body is built from the host's annotations only
//! (its timestamp is the phase's start), so every retry, from any replica, sends the same bytes,
//! the same `X-Webhook-Signature` and the same `Idempotency-Key`.
//!
//! Each attempt is also signed the Standard Webhooks way (`webhook-id` = the idempotency key,
//! `webhook-timestamp` = the attempt's time, `webhook-signature: v1,<base64>` over
//! `id.timestamp.body`), so a receiver can verify with an off-the-shelf library and refuse a
//! captured notification replayed later; `X-Webhook-Signature` (over the body alone) stays for
//! receivers of the replaced service's scheme.

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

use crate::config::ConfigError;
use crate::error::Result;
use crate::model::{Host, Phase};

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`, as on inbound webhooks.
pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";
/// Header carrying the stable key receivers use to drop repeats.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// One delivery attempt's deadline.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries after the first attempt, in one round.
const RETRIES: usize = 6;
/// Backoff between attempts: doubling from the first to the largest delay, each plus a random
/// jitter of up to the delay itself (backon's `with_jitter`).
const FIRST_DELAY: Duration = Duration::from_millis(200);
const LARGEST_DELAY: Duration = Duration::from_secs(10);

/// The longest one round of delivery attempts can take: every attempt timing out and every
/// backoff at its largest jitter. The notification claim must outlive it, or a second replica
/// could start the same notification while the first still sends it.
pub fn worst_case_round() -> Duration {
    let mut delay = FIRST_DELAY;
    let mut total = ATTEMPT_TIMEOUT;
    for _ in 0..RETRIES {
        total += 2 * delay + ATTEMPT_TIMEOUT;
        delay = (delay * 2).min(LARGEST_DELAY);
    }
    total
}

/// Standard Webhooks headers.
pub const SW_ID_HEADER: &str = "webhook-id";
pub const SW_TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SW_SIGNATURE_HEADER: &str = "webhook-signature";

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
    /// The notification for `phase` of `host`, when the host has a holder: the current phase,
    /// or the earlier one the holder is owed (with that phase's time and detail).
    pub fn for_host(host: &Host, phase: Phase) -> Option<Self> {
        let h = host.holder.as_ref()?;
        let (detail, since) = match host.owed.as_ref().filter(|o| o.outcome == phase) {
            Some(owed) => (&owed.detail, owed.since),
            None => (&host.detail, host.phase_since),
        };
        Some(Notification {
            event_id: h.event_id.clone(),
            resource_id: h.resource_id,
            resource_name: h.resource_name.clone(),
            bmh: host.key(),
            username: h.username.clone(),
            user_id: h.user_id.clone(),
            outcome: phase,
            detail: detail.clone(),
            timestamp: since.map(|t| t.to_string()).unwrap_or_default(),
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

/// The Standard Webhooks secret of `secret`: itself when it is already `whsec_<base64>`, else
/// `whsec_` + the base64 of its bytes (what a receiver configures in its library).
pub fn standard_webhooks_secret(secret: &str) -> String {
    use base64::Engine as _;
    if secret.starts_with("whsec_") {
        return secret.to_owned();
    }
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(secret.as_bytes())
    )
}

/// Why one delivery attempt failed (the reconciler tries again later).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The notification did not serialize (it is plain strings and numbers: not expected).
    #[error("encode: {0}")]
    Encode(#[source] serde_json::Error),
    /// `NOTIFY_SECRET` starts with `whsec_` but the rest is not base64, so the Standard
    /// Webhooks signature cannot be made.
    #[error("NOTIFY_SECRET is not valid whsec_ base64")]
    Secret,
    /// The request could not be built (an invalid header value).
    #[error("{0}")]
    Request(#[source] http::Error),
    /// No answer within the attempt's deadline.
    #[error("timed out")]
    Timeout,
    /// Connecting, TLS or the exchange failed.
    #[error("{0}")]
    Transport(#[source] hyper_util::client::legacy::Error),
    /// The receiver answered with a non-2xx status.
    #[error("receiver answered {0}")]
    Refused(http::StatusCode),
}

/// Sends notifications to one URL.
#[derive(Clone)]
pub struct Notifier {
    url: Option<Uri>,
    secret: Vec<u8>,
    /// `whsec_<base64>` form of the secret, for the Standard Webhooks signature.
    sw_secret: String,
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
            .map_err(ConfigError::NotifyUrl)?;
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
            sw_secret: standard_webhooks_secret(secret),
            client: Client::builder(TokioExecutor::new()).build(https),
            backoff: ExponentialBuilder::default()
                .with_min_delay(FIRST_DELAY)
                .with_max_delay(LARGEST_DELAY)
                .with_max_times(RETRIES)
                .with_jitter(),
            timeout: ATTEMPT_TIMEOUT,
        })
    }

    /// Whether a URL is configured.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Delivers `n`, retrying with exponential backoff a bounded number of times (the
    /// reconciler calls again later until it is delivered).
    pub async fn deliver(&self, n: &Notification) -> Result<(), NotifyError> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let body = Bytes::from(serde_json::to_vec(n).map_err(NotifyError::Encode)?);
        let sig = signature(&self.secret, &body);
        let key = n.idempotency_key();
        let once = || async {
            let ts = jiff::Timestamp::now().as_second();
            let sw_sig =
                webhook_core::scheme::sign_standard_webhooks(&self.sw_secret, &key, ts, &body)
                    .ok_or(NotifyError::Secret)?;
            let req = Request::post(url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &sig)
                .header(IDEMPOTENCY_HEADER, &key)
                .header(SW_ID_HEADER, &key)
                .header(SW_TIMESTAMP_HEADER, ts.to_string())
                .header(SW_SIGNATURE_HEADER, sw_sig)
                .body(Full::new(body.clone()))
                .map_err(NotifyError::Request)?;
            let resp = tokio::time::timeout(self.timeout, self.client.request(req))
                .await
                .map_err(|_| NotifyError::Timeout)?
                .map_err(NotifyError::Transport)?;
            let status = resp.status();
            // Drain the body so the connection can be reused.
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(NotifyError::Refused(status))
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
    fn a_round_of_attempts_is_bounded() {
        // 7 attempts of 5 s, delays 0.2 → 6.4 s each up to doubled by jitter.
        assert_eq!(worst_case_round(), Duration::from_millis(35_000 + 25_200));
    }

    #[test]
    fn standard_webhooks_secret_form() {
        assert_eq!(
            standard_webhooks_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        );
        assert_eq!(standard_webhooks_secret("abc"), "whsec_YWJj");
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
