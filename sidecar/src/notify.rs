//! What the reservation system's users and admins see of the sidecar's work: a signed
//! notification when a host is provisioned, released or failed (`NOTIFICATION_ENDPOINT`,
//! reservation-be's `POST /api/notifications/webhook`), and webhook logs
//! (`WEBHOOK_LOG_ENDPOINT`, its `POST /api/webhooks/log`) of each delivery handled and each
//! outcome.
//!
//! ```text
//!  reconciler: Step::Notify(phase) ─▶ Notification::for_host (annotations only: any replica,
//!                                     any retry sends the same bytes)
//!                                       │ NOTIFICATION_FORMAT=reservation-be (default): exactly
//!                                       │   its DTO {webhookId, userId, message, type, eventId,
//!                                       │   resourceId, eventType, metadata}, Base64 signature
//!                                       │ generic: the sidecar's own body, `sha256=<hex>`
//!                                       ▼
//!                                     POST, 5xx / transport errors retried with backoff;
//!                                     a 4xx is final: logged with the answer, counted
//!  webhook handler, reconciler ─▶ WebhookLog ─▶ POST /api/webhooks/log (best effort)
//! ```
//!
//! Every request is signed with `NOTIFY_SECRET` (default `WEBHOOK_SECRET`: reservation-be
//! checks both with the webhook's secret) in `X-Webhook-Signature`, and also the Standard
//! Webhooks way (`webhook-id` = the idempotency key, `webhook-timestamp`, `webhook-signature:
//! v1,<base64>` over `id.timestamp.body`) for receivers with an off-the-shelf library.

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
use serde_json::{Value, json};

use crate::config::{Config, NotificationFormat};
use crate::error::{ConfigError, Result};
use crate::model::{Host, Phase};

/// Header carrying the signature of the body.
pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";
/// Header carrying the stable key receivers use to drop repeats.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Retries after the first attempt, in one round.
const RETRIES: usize = 6;
/// Backoff between attempts: doubling from the first to the largest delay, each plus a random
/// jitter of up to the delay itself (backon's `with_jitter`).
const FIRST_DELAY: Duration = Duration::from_millis(200);
const LARGEST_DELAY: Duration = Duration::from_secs(10);
/// reservation-be stores at most this many characters (UTF-16 units) of a message.
pub const MAX_MESSAGE: usize = 500;
/// ... and of a webhook log's `payload` and `response`.
pub const MAX_LOG_TEXT: usize = 4000;

/// The longest one round of delivery attempts can take, each attempt at most `attempt`: every
/// attempt timing out and every backoff at its largest jitter. The notification claim must
/// outlive it, or a second replica could start the same notification while the first still
/// sends it.
pub fn worst_case_round(attempt: Duration) -> Duration {
    let mut delay = FIRST_DELAY;
    let mut total = attempt;
    for _ in 0..RETRIES {
        total += 2 * delay + attempt;
        delay = (delay * 2).min(LARGEST_DELAY);
    }
    total
}

/// Standard Webhooks headers.
pub const SW_ID_HEADER: &str = "webhook-id";
pub const SW_TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SW_SIGNATURE_HEADER: &str = "webhook-signature";

/// What happened to one reservation's host, built from the host's annotations only (its
/// timestamp is the phase's start).
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
    /// reservation-be's webhook id the reservation's START came through.
    #[serde(skip)]
    pub webhook_id: Option<String>,
    /// The reservation's key could not be put on a server (a `failed` the user can fix).
    #[serde(skip)]
    pub key_problem: bool,
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
            webhook_id: h.webhook_id.clone(),
            key_problem: phase == Phase::Failed && h.key_problem().is_some(),
        })
    }

    /// `<eventId>:<namespace>/<bmh>:<outcome>`.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.event_id, self.bmh, self.outcome)
    }

    /// What the user reads: what happened, the host, how to log in or why it failed; at most
    /// [`MAX_MESSAGE`] characters as reservation-be counts them.
    pub fn message(&self, login_user: &str) -> String {
        let name = &self.resource_name;
        let text = match self.outcome {
            Phase::Provisioned => format!(
                "Your reserved server {name} has been provisioned and will be reachable in a few minutes, once it has booted. Log in with SSH as '{login_user}' with your SSH key, at the address in the resource's specification."
            ),
            Phase::Failed if self.key_problem => format!(
                "Your reserved server {name} was not provisioned: {}. Store a valid SSH public key (ssh-ed25519, ecdsa, or ssh-rsa of at least 2048 bits) in your profile before your next reservation.",
                self.detail
            ),
            Phase::Failed => format!(
                "Your reserved server {name} could not be provisioned: {}. Please contact the lab's administrators.",
                self.detail
            ),
            _ => format!(
                "Your reservation of {name} has ended: the server has been released and your SSH key removed from it."
            ),
        };
        truncate_utf16(&text, MAX_MESSAGE)
    }

    /// reservation-be's `type` of the notification.
    fn kind(&self) -> &'static str {
        match self.outcome {
            Phase::Provisioned => "SUCCESS",
            Phase::Failed => "ERROR",
            _ => "INFO",
        }
    }

    /// The `eventType` of the notification (the replaced service's names).
    fn event_type(&self) -> &'static str {
        match self.outcome {
            Phase::Provisioned => "PROVISIONING_COMPLETED",
            Phase::Failed => "PROVISIONING_FAILED",
            _ => "DEPROVISIONING_COMPLETED",
        }
    }

    /// reservation-be's `WebhookNotificationRequestDTO`, and no other member (it refuses
    /// unknown ones): `webhookId` from the delivery, else `fallback`.
    pub fn reservation_be_body(&self, login_user: &str, webhook_id: &str) -> Value {
        json!({
            "webhookId": webhook_id,
            "userId": self.user_id,
            "message": self.message(login_user),
            "type": self.kind(),
            "eventId": self.event_id,
            "resourceId": self.resource_id.to_string(),
            "eventType": self.event_type(),
            "metadata": {
                "outcome": self.outcome,
                "resourceName": self.resource_name,
                "bareMetalHost": self.bmh,
                "username": self.username,
                "detail": self.detail,
                "timestamp": self.timestamp,
            },
        })
    }
}

/// `text` cut to at most `max` UTF-16 units (Java's `String.length()`), ending in `…` when cut.
pub fn truncate_utf16(text: &str, max: usize) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut units = 0;
    for c in text.chars() {
        if units + c.len_utf16() > max.saturating_sub(1) {
            break;
        }
        units += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// One entry of reservation-be's webhook log, as its `WebhookLogRequestDTO` takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookLog {
    pub webhook_id: String,
    /// One of reservation-be's event type names.
    pub event_type: &'static str,
    /// At most [`MAX_LOG_TEXT`] characters.
    pub payload: String,
    pub status_code: u16,
    pub response: String,
    pub success: bool,
    pub retry_count: u32,
    /// reservation-be's id of the resource (it must exist there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<i64>,
    pub metadata: Value,
}

impl WebhookLog {
    /// The log of an outcome of `n` (after its notification): provisioned and failed as
    /// EVENT_START, released as EVENT_END. The delivery was handled, so the entry is a success
    /// whatever the outcome (a failed provisioning is not a failed delivery; reservation-be
    /// would list it among them); the outcome is in `payload` and `response`.
    pub fn for_outcome(n: &Notification, webhook_id: &str, login_user: &str) -> Self {
        let payload = json!({
            "outcome": n.outcome,
            "eventId": n.event_id,
            "bareMetalHost": n.bmh,
            "detail": n.detail,
            "timestamp": n.timestamp,
        });
        WebhookLog {
            webhook_id: webhook_id.to_owned(),
            event_type: match n.outcome {
                Phase::Released | Phase::Deprovisioning => "EVENT_END",
                _ => "EVENT_START",
            },
            payload: truncate_utf16(&payload.to_string(), MAX_LOG_TEXT),
            status_code: 200,
            response: truncate_utf16(&n.message(login_user), MAX_LOG_TEXT),
            success: true,
            retry_count: 0,
            resource_id: Some(n.resource_id),
            metadata: json!({"resourceType": "BareMetalHost", "resourceName": n.resource_name,
                             "userId": n.user_id, "eventId": n.event_id}),
        }
    }
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

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The notification did not serialize (it is plain strings and numbers: not expected).
    #[error("encode: {0}")]
    Encode(#[source] serde_json::Error),
    /// `NOTIFY_SECRET` starts with `whsec_` but the rest is not base64, so the Standard
    /// Webhooks signature cannot be made.
    #[error("NOTIFY_SECRET is not valid whsec_ base64")]
    Secret,
    /// Neither the delivery nor `WEBHOOK_ID` gives the webhook id reservation-be requires.
    #[error("no webhook id: the START carried none and WEBHOOK_ID is not set")]
    NoWebhookId,
    /// The request could not be built (an invalid header value).
    #[error("{0}")]
    Request(#[source] http::Error),
    /// No answer within the attempt's deadline.
    #[error("timed out")]
    Timeout,
    /// Connecting, TLS or the exchange failed.
    #[error("{0}")]
    Transport(#[source] hyper_util::client::legacy::Error),
    /// The receiver answered 5xx (or another non-2xx it may not repeat): tried again.
    #[error("receiver answered {0}")]
    Unavailable(http::StatusCode),
    /// The receiver refused it with a 4xx: trying again cannot help (a 401 from
    /// reservation-be means a wrong secret or webhook id).
    #[error("receiver refused it with {status}: {answer}")]
    Refused {
        status: http::StatusCode,
        /// The start of the receiver's answer.
        answer: String,
    },
}

impl NotifyError {
    /// Whether sending again may succeed (5xx, timeouts, transport errors).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            NotifyError::Timeout | NotifyError::Transport(_) | NotifyError::Unavailable(_)
        )
    }
}

/// One endpoint and its attempt deadline.
#[derive(Clone)]
struct Endpoint {
    url: Uri,
    timeout: Duration,
}

/// Sends notifications and webhook logs.
#[derive(Clone)]
pub struct Notifier {
    notifications: Option<Endpoint>,
    logs: Option<Endpoint>,
    format: NotificationFormat,
    login_user: String,
    fallback_webhook_id: Option<String>,
    secret: String,
    /// `whsec_<base64>` form of the secret, for the Standard Webhooks signature.
    sw_secret: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    backoff: ExponentialBuilder,
}

impl Notifier {
    /// The notifier of `cfg` (no `NOTIFICATION_ENDPOINT`: notifications are off; no
    /// `WEBHOOK_LOG_ENDPOINT`: no logs).
    pub fn new(cfg: &Config) -> Result<Self> {
        let endpoint = |url: &Option<String>, timeout| {
            url.as_deref()
                .map(|u| u.parse::<Uri>().map(|url| Endpoint { url, timeout }))
                .transpose()
        };
        let notifications =
            endpoint(&cfg.notify_url, cfg.notification_timeout).map_err(ConfigError::NotifyUrl)?;
        let logs = endpoint(&cfg.webhook_log_url, cfg.webhook_log_timeout)
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
            notifications,
            logs,
            format: cfg.notification_format,
            login_user: cfg.login_user.clone(),
            fallback_webhook_id: cfg.webhook_id.clone(),
            secret: cfg.notify_secret.clone(),
            sw_secret: standard_webhooks_secret(&cfg.notify_secret),
            client: Client::builder(TokioExecutor::new()).build(https),
            backoff: ExponentialBuilder::default()
                .with_min_delay(FIRST_DELAY)
                .with_max_delay(LARGEST_DELAY)
                .with_max_times(RETRIES)
                .with_jitter(),
        })
    }

    /// Whether notifications are sent.
    pub fn enabled(&self) -> bool {
        self.notifications.is_some()
    }

    /// The longest one notification takes: a round of attempts ([`worst_case_round`]), and
    /// one of its outcome's webhook log when logs are on.
    pub fn worst_case_round(&self) -> Duration {
        [&self.notifications, &self.logs]
            .into_iter()
            .flatten()
            .map(|e| worst_case_round(e.timeout))
            .sum()
    }

    /// The webhook id a notification or log of this reservation quotes back.
    fn webhook_id<'a>(&'a self, from_delivery: Option<&'a str>) -> Option<&'a str> {
        from_delivery.or(self.fallback_webhook_id.as_deref())
    }

    /// The notification's body and signature in the configured format.
    pub fn render(&self, n: &Notification) -> Result<(Bytes, String), NotifyError> {
        match self.format {
            NotificationFormat::ReservationBe => {
                let id = self
                    .webhook_id(n.webhook_id.as_deref())
                    .ok_or(NotifyError::NoWebhookId)?;
                let body = serde_json::to_vec(&n.reservation_be_body(&self.login_user, id))
                    .map_err(NotifyError::Encode)?;
                let sig = base64_signature(&self.secret, &body);
                Ok((Bytes::from(body), sig))
            }
            NotificationFormat::Generic => {
                let body = serde_json::to_vec(n).map_err(NotifyError::Encode)?;
                let sig =
                    webhook_core::signature::signature_header_value(self.secret.as_bytes(), &body);
                Ok((Bytes::from(body), sig))
            }
        }
    }

    /// Delivers `n`, retrying 5xx and transport errors with exponential backoff a bounded
    /// number of times (the reconciler calls again later until it is delivered or refused).
    pub async fn deliver(&self, n: &Notification) -> Result<(), NotifyError> {
        let Some(endpoint) = &self.notifications else {
            return Ok(());
        };
        let (body, sig) = self.render(n)?;
        self.post(endpoint, body, &sig, &n.idempotency_key()).await
    }

    /// Posts the log of `n`'s outcome, when logs are on (best effort: failures are logged).
    pub async fn log_outcome(&self, n: &Notification) -> Option<Result<(), NotifyError>> {
        let id = self.webhook_id(n.webhook_id.as_deref())?.to_owned();
        let entry = WebhookLog::for_outcome(n, &id, &self.login_user);
        self.log(&entry, &format!("{}:log", n.idempotency_key()))
            .await
    }

    /// Posts `entry`, when logs are on; `key` is its idempotency key.
    pub async fn log(&self, entry: &WebhookLog, key: &str) -> Option<Result<(), NotifyError>> {
        let endpoint = self.logs.as_ref()?;
        let body = match serde_json::to_vec(entry) {
            Ok(b) => Bytes::from(b),
            Err(e) => return Some(Err(NotifyError::Encode(e))),
        };
        let sig = match self.format {
            NotificationFormat::ReservationBe => base64_signature(&self.secret, &body),
            NotificationFormat::Generic => {
                webhook_core::signature::signature_header_value(self.secret.as_bytes(), &body)
            }
        };
        Some(self.post(endpoint, body, &sig, key).await)
    }

    /// The webhook id for logs of a delivery (its own, else `WEBHOOK_ID`).
    pub fn log_webhook_id(&self, from_delivery: Option<&str>) -> Option<String> {
        self.logs.as_ref()?;
        self.webhook_id(from_delivery).map(str::to_owned)
    }

    async fn post(
        &self,
        endpoint: &Endpoint,
        body: Bytes,
        sig: &str,
        key: &str,
    ) -> Result<(), NotifyError> {
        let once = || async {
            let ts = jiff::Timestamp::now().as_second();
            let sw_sig =
                webhook_core::scheme::sign_standard_webhooks(&self.sw_secret, key, ts, &body)
                    .ok_or(NotifyError::Secret)?;
            let req = Request::post(endpoint.url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, sig)
                .header(IDEMPOTENCY_HEADER, key)
                .header(SW_ID_HEADER, key)
                .header(SW_TIMESTAMP_HEADER, ts.to_string())
                .header(SW_SIGNATURE_HEADER, sw_sig)
                .body(Full::new(body.clone()))
                .map_err(NotifyError::Request)?;
            let resp = tokio::time::timeout(endpoint.timeout, self.client.request(req))
                .await
                .map_err(|_| NotifyError::Timeout)?
                .map_err(NotifyError::Transport)?;
            let status = resp.status();
            // Read the answer (bounded by the deadline) so the connection can be reused and a
            // refusal can be reported.
            let answer = tokio::time::timeout(endpoint.timeout, resp.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else if status.is_client_error() {
                Err(NotifyError::Refused {
                    status,
                    answer: truncate_utf16(&String::from_utf8_lossy(&answer), 300),
                })
            } else {
                Err(NotifyError::Unavailable(status))
            }
        };
        once.retry(self.backoff)
            .when(NotifyError::retryable)
            .notify(|e, after| tracing::warn!(error = %e, retry_in = ?after, key, "notification failed"))
            .await
    }
}

/// reservation-be's `X-Webhook-Signature`: Base64 HMAC-SHA256 of the body with the secret.
fn base64_signature(secret: &str, body: &[u8]) -> String {
    webhook_core::scheme::sign_reservation_system(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{holder, host};

    #[test]
    fn a_round_of_attempts_is_bounded() {
        // 7 attempts of 5 s, delays 0.2 → 6.4 s each up to doubled by jitter.
        assert_eq!(
            worst_case_round(Duration::from_secs(5)),
            Duration::from_millis(35_000 + 25_200)
        );
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
    fn the_generic_body_is_built_from_annotations() {
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

    #[test]
    fn the_reservation_be_body_has_its_dto_members_only() {
        let n = Notification::for_host(
            &host().held(&holder("101", "u1"), Phase::Provisioned),
            Phase::Provisioned,
        )
        .unwrap();
        let v = n.reservation_be_body("prognose", "5");
        let members: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = [
            "webhookId",
            "userId",
            "message",
            "type",
            "eventId",
            "resourceId",
            "eventType",
            "metadata",
        ];
        want.sort_unstable();
        assert_eq!(members, want);
        assert_eq!(
            (&v["webhookId"], &v["type"], &v["resourceId"]),
            (&json!("5"), &json!("SUCCESS"), &json!("1"))
        );
        assert!(v["message"].as_str().unwrap().contains("as 'prognose'"));
        assert!(v["message"].as_str().unwrap().contains("Lab Server A1"));
    }

    #[test]
    fn messages_say_what_happened_and_fit_reservation_be() {
        let mut h = host().held(&holder("101", "u1"), Phase::Failed);
        h.holder.as_mut().unwrap().ssh_public_key = String::new();
        h.detail = webhook_core::event::KeyProblem::Missing.to_string();
        let n = Notification::for_host(&h, Phase::Failed).unwrap();
        let m = n.message("prognose");
        assert!(m.contains("was not provisioned: no SSH public key"), "{m}");
        assert_eq!(n.reservation_be_body("prognose", "5")["type"], "ERROR");
        h.detail = "é".repeat(2000);
        let m = Notification::for_host(&h, Phase::Failed)
            .unwrap()
            .message("p");
        assert!(m.encode_utf16().count() <= MAX_MESSAGE && m.ends_with('…'));
        assert_eq!(truncate_utf16("😀😀😀", 5), "😀😀…");
        assert_eq!(truncate_utf16("short", 5), "short");
    }
}
