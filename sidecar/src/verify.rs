//! The second check behind the edge: every delivery is verified again here with the filter's
//! own decision (`webhook_core::flow`: signature, content type, size, event rules), so a pod
//! reached without the filter (an uninjected Istio pod, a selector typo) never provisions.
//! It costs microseconds.

use std::time::SystemTime;

use http::HeaderMap;
use serde_json::json;
use webhook_core::config::CompiledConfig;
use webhook_core::flow::{self, HeadersDecision, Rejection};

use crate::config::{Config, ConfigError};
use crate::error::Result;
use crate::server::MAX_BODY;

/// Environment names the filter reads the secrets from (and so does this configuration).
const SECRET_VARS: [&str; 2] = ["WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS"];

/// The compiled reservation webhook, as the edge filter is configured for it.
#[derive(Debug)]
pub struct Inbound {
    config: CompiledConfig,
}

impl Inbound {
    /// Compiles the reservation webhook with the sidecar's secrets (unsigned mode when
    /// `VERIFY_SIGNATURE=false`).
    pub fn new(cfg: &Config) -> Result<Self> {
        let mut hook = json!({
            "name": "reservations",
            "path": "/webhook",
            "methods": ["POST"],
            "scheme": {"type": "hmac_sha256_hex", "header": "x-webhook-signature", "prefix": "sha256="},
            "secrets": [
                {"env": SECRET_VARS[0], "id": "current"},
                {"env": SECRET_VARS[1], "id": "previous", "optional": true}
            ],
            "max_body_bytes": MAX_BODY,
            "schema": "reservation_event",
            "replay_window_seconds": 0
        });
        if !cfg.verify_signature {
            hook["allow_unsigned"] = json!(true);
            hook["secrets"] = json!([]);
        }
        let doc = json!({ "webhooks": [hook], "unmatched": "pass" });
        let secrets = &cfg.webhook_secrets;
        let config = CompiledConfig::from_json(doc.to_string().as_bytes(), |var| {
            let i = SECRET_VARS.iter().position(|v| *v == var)?;
            secrets.get(i).cloned()
        })
        .map_err(ConfigError::Inbound)?;
        Ok(Inbound { config })
    }

    /// Checks a `POST /webhook` as the filter does: `Err` is the filter's own reply.
    pub fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Rejection> {
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        match flow::on_request_headers(&self.config, "POST", "/webhook", header) {
            HeadersDecision::Pass => Ok(()),
            HeadersDecision::Reject(rejection) => Err(rejection),
            HeadersDecision::Inspect(pending) => {
                pending.finish(&self.config, body, now).map(|_| ())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::config;

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
        let good = webhook_core::signature::signature_header_value(SECRET.as_bytes(), &body);
        assert!(inbound.check(&headers(Some(&good)), &body, now).is_ok());
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
