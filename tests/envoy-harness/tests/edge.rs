//! Envoy's edge settings (docs/filter.md, "Envoy at the edge") through the real Envoy: header
//! names with underscores never reach the upstream.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::*;
use envoy_harness::{EnvoyConfig, http};
use webhook_core::metrics::Outcome;
use webhook_core::signature::signature_header_value;

/// Starts the default bench with `edit` applied to the Envoy configuration.
fn bench(edit: impl Fn(&mut EnvoyConfig)) -> Bench {
    Bench::start_full(
        &plugin_config(|_| {}),
        &[("WEBHOOK_SECRET", NEW), ("WEBHOOK_SECRET_PREVIOUS", OLD)],
        edit,
    )
}

/// `x_webhook_verified: true` is `X-Webhook-Verified: true` to an upstream that treats `_` and
/// `-` alike (CGI, WSGI, many frameworks): such names are dropped at the edge, on guarded and
/// unguarded paths alike, and the request itself is served.
#[test]
fn header_names_with_underscores_never_reach_the_upstream() {
    let b = bench(|_| {});
    let spoofed = [
        ("x_webhook_verified", "true"),
        ("X_Webhook_Secret_Id", "current"),
        ("x_webhook_name", "reservations"),
        ("x_webhook_delivery_id", "forged"),
    ];
    let body = fresh_event(|_| {});
    let sig = signature_header_value(NEW.as_bytes(), &body);
    let mut signed = vec![("x-webhook-signature", sig.as_str())];
    signed.extend_from_slice(&spoofed);
    let r = b.post(&body, &signed);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = b.send(&[http::head("GET", "/healthz", &spoofed).as_bytes()]);
    assert_eq!(r.status, 200);
    // Without a signature the spoofed names change nothing either.
    assert_rejected(&b.post(&body, &spoofed), 401, "MissingSignature");

    let reqs = b.upstream.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for req in &reqs {
        for line in req.head.lines().skip(1) {
            let name = line.split(':').next().unwrap_or_default();
            assert!(
                !name.contains('_'),
                "{name:?} reached the upstream:\n{}",
                req.head
            );
        }
    }
    // The signed delivery still carries the filter's own headers, set by the filter.
    assert_eq!(reqs[0].header_values("x-webhook-verified"), ["true"]);
    assert_eq!(reqs[0].header_values("x-webhook-secret-id"), ["current"]);
    assert!(reqs[0].header_values("x-webhook-delivery-id").is_empty());
    assert_eq!(b.counter(Outcome::Accepted.metric_name()), 1);
    assert_eq!(
        b.envoy
            .stat("http1.dropped_headers_with_underscores")
            .unwrap(),
        Some(12)
    );
}
