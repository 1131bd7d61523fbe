//! The second check behind the edge: every delivery is verified again here with the filter's
//! own decision (`webhook_core::flow`: signature, content type, size, message rules) and the
//! filter's own preset of the reservation webhook, so a pod reached without the filter (an
//! uninjected Istio pod, a selector typo) never provisions. The check hands the handler the
//! message it validated: the body is read once. It costs microseconds.

use std::time::SystemTime;

use http::HeaderMap;
use webhook_core::config::{
    CompiledConfig, FilterConfig, Preset, RESERVATION_PREVIOUS_SECRET_ENV, RESERVATION_SECRET_ENV,
    Unmatched, WebhookConfig,
};
use webhook_core::event::ReservationMessage;
use webhook_core::flow::{self, HeadersDecision, Rejection};

use crate::config::Config;
use crate::error::{ConfigError, Result};
use crate::server::MAX_BODY;

/// The compiled reservation webhook, as the edge filter is configured for it: the core's
/// `reservation_system` preset, with the sidecar's secrets, body cap and unsigned switch.
#[derive(Debug)]
pub struct Inbound {
    config: CompiledConfig,
}

impl Inbound {
    /// Compiles the reservation webhook with the sidecar's secrets (unsigned mode when
    /// `VERIFY_SIGNATURE=false`).
    pub fn new(cfg: &Config) -> Result<Self> {
        let mut hook = WebhookConfig {
            preset: Some(Preset::ReservationSystem),
            max_body_bytes: u64::try_from(MAX_BODY).ok(),
            min_secret_bytes: Some(cfg.min_secret_bytes),
            ..WebhookConfig::default()
        };
        if !cfg.verify_signature {
            hook.allow_unsigned = Some(true);
            hook.secrets = Some(Vec::new());
        }
        let raw = FilterConfig {
            webhooks: vec![hook],
            unmatched: Unmatched::Pass,
        };
        let secrets = &cfg.webhook_secrets;
        let config = CompiledConfig::compile(raw, |var| {
            let i = [RESERVATION_SECRET_ENV, RESERVATION_PREVIOUS_SECRET_ENV]
                .iter()
                .position(|v| *v == var)?;
            secrets.get(i).cloned()
        })
        .map_err(ConfigError::Inbound)?;
        Ok(Inbound { config })
    }

    /// Checks a `POST /webhook` as the filter does, and hands over the message it validated:
    /// `Err` is the filter's own reply.
    pub fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<ReservationMessage<'static>, Rejection> {
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let pending = match flow::on_request_headers(&self.config, "POST", "/webhook", header) {
            HeadersDecision::Inspect(pending) => pending,
            HeadersDecision::Reject(rejection) => return Err(rejection),
            // The preset guards `/webhook`: never passed unchecked.
            HeadersDecision::Pass => {
                return Err(Rejection::from(webhook_core::Error::NotFound));
            }
        };
        let (_, message) = pending.finish_message(&self.config, body, now)?;
        message
            .map(ReservationMessage::into_owned)
            .ok_or_else(|| Rejection::from(webhook_core::Error::NotFound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::config;
    use serde_json::json;

    const SECRET: &str = "a-webhook-secret-of-at-least-32-bytes";

    /// The sample EVENT_START, its reservations ending in an hour.
    fn body() -> Vec<u8> {
        let mut v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/event-start.json")).unwrap();
        let end = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
        for e in v["events"].as_array_mut().unwrap() {
            e["eventStart"] = json!("2025-06-08T15:00:00Z");
            e["eventEnd"] = json!(end);
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn headers(sig: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        if let Some(s) = sig {
            h.insert("x-webhook-signature", s.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_delivery_that_skipped_the_filter_is_refused_like_the_filter_would() {
        let inbound = Inbound::new(&config(&[]).unwrap()).unwrap();
        let now = SystemTime::now();
        let body = body();
        // The real senders' Base64 and the README's hex form of the same MAC.
        let good = webhook_core::scheme::sign_reservation_system(SECRET, &body);
        let message = inbound.check(&headers(Some(&good)), &body, now).unwrap();
        assert_eq!(message.reservations.len(), 3);
        let hex = webhook_core::signature::signature_header_value(SECRET.as_bytes(), &body);
        assert!(inbound.check(&headers(Some(&hex)), &body, now).is_ok());
        let r = inbound.check(&headers(None), &body, now).unwrap_err();
        assert_eq!(
            (r.status(), r.error.error_type()),
            (401, "MissingSignature")
        );
        let wrong = webhook_core::signature::signature_header_value(b"guessed", &body);
        let r = inbound
            .check(&headers(Some(&wrong)), &body, now)
            .unwrap_err();
        assert_eq!(
            (r.status(), r.error.error_type()),
            (401, "InvalidSignature")
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body(now)).unwrap();
        assert!(body["detail"].is_string() && body["timestamp"].is_string());
    }

    #[test]
    fn the_previous_secret_verifies_during_a_rotation() {
        let old = "the-previous-secret-also-32-bytes-long";
        let cfg = config(&["--webhook-secret-previous", old]).unwrap();
        let inbound = Inbound::new(&cfg).unwrap();
        let body = body();
        let sig = webhook_core::signature::signature_header_value(old.as_bytes(), &body);
        assert!(
            inbound
                .check(&headers(Some(&sig)), &body, SystemTime::now())
                .is_ok()
        );
    }
}
