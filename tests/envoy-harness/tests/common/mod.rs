//! Shared set-up of the Envoy tests: a recording upstream, Envoy with the filter in front of
//! it, signed fixture bodies with a fresh timestamp.
#![allow(dead_code, clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, SystemTime};

use envoy_harness::http::{self, Response};
use envoy_harness::{Envoy, EnvoyConfig, RecordingUpstream, filter_wasm, free_port};
use serde_json::Value;
use webhook_core::metrics::Outcome;
use webhook_core::signature::signature_header_value;

/// The current and previous secrets: 32 bytes or more, as the filter requires by default.
pub const NEW: &str = "new-secret-0123456789abcdef0123456789";
pub const OLD: &str = "old-secret-9876543210fedcba9876543210";

/// The EVENT_START fixture of the core crate (real ed25519 key, ~2 KB).
pub const START: &[u8] = include_bytes!("../../../../filter/core/tests/fixtures/event-start.json");
/// The EVENT_END fixture (same reservations, its June 2025 timestamp).
pub const END: &[u8] = include_bytes!("../../../../filter/core/tests/fixtures/event-end.json");

/// Plugin configuration of most tests: the deployment one with `edit` applied to the webhook.
pub fn plugin_config(edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(envoy_harness::config::DEFAULT_PLUGIN_CONFIG).unwrap();
    edit(&mut v["webhooks"][0]);
    v.to_string()
}

pub struct Bench {
    // Field order = drop order: Envoy first, then the upstream.
    pub envoy: Envoy,
    pub upstream: RecordingUpstream,
}

impl Bench {
    /// Upstream + Envoy with the filter, the given plugin config and secret environment.
    pub fn start(plugin_config: &str, env: &[(&str, &str)]) -> Bench {
        Self::start_with(plugin_config, env, true)
    }

    pub fn start_with(plugin_config: &str, env: &[(&str, &str)], buffer: bool) -> Bench {
        Self::start_full(plugin_config, env, |cfg| cfg.buffer_after_filter = buffer)
    }

    /// Like [`Bench::start`], with `edit` applied to the Envoy configuration (extra paths,
    /// environment keys, another artifact, another upstream address).
    pub fn start_full(
        plugin_config: &str,
        env: &[(&str, &str)],
        edit: impl Fn(&mut EnvoyConfig),
    ) -> Bench {
        let upstream = RecordingUpstream::start().unwrap();
        let wasm = filter_wasm().unwrap_or_else(|e| panic!("{e}"));
        // A port found free can be taken by someone else before Envoy binds it: retry with new
        // ports (at most 3 attempts) on that error only.
        let mut last = String::new();
        for _ in 0..3 {
            let mut cfg = EnvoyConfig::for_test(
                free_port().unwrap(),
                free_port().unwrap(),
                upstream.addr(),
                Some(wasm.clone()),
                plugin_config,
            );
            edit(&mut cfg);
            match Envoy::start(&cfg, env) {
                Ok(envoy) => return Bench { envoy, upstream },
                Err(e) => {
                    last = e.to_string();
                    if !last.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("{last}")
    }

    /// Default config, both secrets set.
    pub fn default_started() -> Bench {
        Self::start(
            &plugin_config(|_| {}),
            &[("WEBHOOK_SECRET", NEW), ("WEBHOOK_SECRET_PREVIOUS", OLD)],
        )
    }

    pub fn send(&self, parts: &[&[u8]]) -> Response {
        http::send(self.envoy.listener(), parts).unwrap()
    }

    /// POST /webhook with JSON content type, content-length, and the given extra headers.
    pub fn post(&self, body: &[u8], extra: &[(&str, &str)]) -> Response {
        self.post_to("/webhook", body, extra)
    }

    /// POST `path` with JSON content type (unless `extra` has one), content-length, and the
    /// given extra headers.
    pub fn post_to(&self, path: &str, body: &[u8], extra: &[(&str, &str)]) -> Response {
        let len = body.len().to_string();
        let mut headers = vec![("content-length", len.as_str())];
        if !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type", "application/json"));
        }
        headers.extend_from_slice(extra);
        let head = http::head("POST", path, &headers);
        self.send(&[head.as_bytes(), body])
    }

    /// POST /webhook signed with `secret`.
    pub fn post_signed(&self, secret: &str, body: &[u8]) -> Response {
        let sig = signature_header_value(secret.as_bytes(), body);
        self.post(body, &[("x-webhook-signature", &sig)])
    }

    /// `webhook_filter_requests_total{webhook="reservations",outcome=...}` (0 if absent).
    pub fn requests(&self, outcome: Outcome) -> u64 {
        self.webhook_requests("reservations", outcome)
    }

    /// `webhook_filter_requests_total{webhook=<webhook>,outcome=...}` (0 if absent).
    pub fn webhook_requests(&self, webhook: &str, outcome: Outcome) -> u64 {
        self.envoy
            .filter_requests(Some(webhook), outcome.label())
            .unwrap()
            .unwrap_or(0)
    }
}

/// The START fixture as sent now (`envoy_harness::sample::at_now`: `timestamp` now, every
/// reservation begun an hour ago and ending in two hours), then `edit` applied.
pub fn fresh_event(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(START).unwrap();
    envoy_harness::sample::at_now(&mut v, SystemTime::now(), Duration::from_secs(7200));
    edit(&mut v);
    serde_json::to_vec_pretty(&v).unwrap()
}

/// RFC 3339 in UTC, as the sender writes it.
pub fn rfc3339(t: SystemTime) -> String {
    webhook_core::flow::rfc3339_utc(t)
}
