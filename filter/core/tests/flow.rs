//! The request decision: every status, the reply body shape, headers for the upstream.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use common::*;
use serde_json::Value;
use webhook_core::config::CompiledConfig;
use webhook_core::flow::{self, HeadersDecision, Pending, Rejection, Verified};
use webhook_core::metrics::Outcome;
use webhook_core::signature::signature_header_value;

const CONFIG: &str = r#"{"webhooks":[{"name":"reservations","path":"/webhook",
    "secrets":[{"env":"WEBHOOK_SECRET","id":"current"},{"env":"WEBHOOK_SECRET_PREVIOUS","id":"previous","optional":true}],
    "max_body_bytes":4096}]}"#;

/// The current and previous secrets (32 bytes or more, as configuration requires).
const NEW: &[u8] = b"new-secret-0123456789abcdef012345";
const OLD: &[u8] = b"old-secret-0123456789abcdef012345";

fn cfg() -> CompiledConfig {
    CompiledConfig::from_json(CONFIG.as_bytes(), |k| match k {
        "WEBHOOK_SECRET" => Some(String::from_utf8_lossy(NEW).into_owned()),
        "WEBHOOK_SECRET_PREVIOUS" => Some(String::from_utf8_lossy(OLD).into_owned()),
        _ => None,
    })
    .unwrap()
}

fn now() -> std::time::SystemTime {
    at(FIXTURE_TS + 60)
}

fn headers<'a>(list: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        list.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

fn signed(secret: &[u8], body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("content-length", body.len().to_string()),
        ("x-webhook-signature", signature_header_value(secret, body)),
    ]
}

fn pending(cfg: &CompiledConfig, h: &[(&str, String)]) -> Pending {
    match flow::on_request_headers(cfg, "POST", "/webhook", headers(h)) {
        HeadersDecision::Inspect(p) => p,
        other => panic!("expected Inspect, got {other:?}"),
    }
}

fn headers_reject(
    cfg: &CompiledConfig,
    method: &str,
    path: &str,
    h: &[(&str, String)],
) -> Rejection {
    match flow::on_request_headers(cfg, method, path, headers(h)) {
        HeadersDecision::Reject(r) => r,
        other => panic!("expected Reject, got {other:?}"),
    }
}

fn run(secret: &[u8], body: &[u8]) -> Result<Verified, Rejection> {
    let c = cfg();
    pending(&c, &signed(secret, body)).finish(&c, body, now())
}

fn reply(r: &Rejection) -> Value {
    serde_json::from_slice(&r.body(now())).unwrap()
}

#[test]
fn valid_event_is_accepted_with_upstream_headers() {
    let c = cfg();
    let p = pending(&c, &signed(NEW, START));
    assert_eq!(
        p.upstream_headers(&c),
        vec![
            ("x-webhook-name", "reservations".to_owned()),
            ("x-webhook-verified", "true".to_owned()),
        ]
    );
    assert_eq!(
        run(NEW, START).unwrap().secret_id.as_deref(),
        Some("current")
    );
    assert_eq!(
        run(OLD, END).unwrap().secret_id.as_deref(),
        Some("previous")
    );
    // Two secrets: the match is known only now, so it travels as filter state.
    assert_eq!(
        run(OLD, END).unwrap().secret_id_for_filter_state(),
        Some("previous")
    );
}

#[test]
fn wrong_secret_and_tampered_body_get_the_same_401() {
    let wrong = run(b"guess", START).unwrap_err();
    let c = cfg();
    let mut tampered = START.to_vec();
    tampered[20] ^= 1;
    let tampered = pending(&c, &signed(NEW, START))
        .finish(&c, &tampered, now())
        .unwrap_err();
    for r in [&wrong, &tampered] {
        assert_eq!(r.status(), 401);
        assert_eq!(r.outcome(), Outcome::BadSignature);
    }
    assert_eq!(reply(&wrong), reply(&tampered));
    let body = reply(&wrong);
    assert_eq!(body["error_type"], "InvalidSignature");
    assert_eq!(body["detail"], "invalid signature");
}

#[test]
fn reply_body_has_the_replaced_service_shape() {
    let r = run(NEW, &edited(|v| v["userId"] = "".into())).unwrap_err();
    assert_eq!(r.status(), 422);
    let body = reply(&r);
    assert_eq!(body["error_type"], "ValidationError");
    assert_eq!(body["field"], "$.userId");
    assert!(body["detail"].as_str().unwrap().starts_with("$.userId: "));
    assert_eq!(body["timestamp"], "2025-06-08T12:31:00Z");
    assert_eq!(
        r.headers(),
        vec![("content-type", "application/json".to_owned())]
    );
}

#[test]
fn malformed_json_is_400_after_a_valid_signature() {
    let r = run(NEW, b"{not json").unwrap_err();
    assert_eq!((r.status(), r.outcome()), (400, Outcome::MalformedJson));
    assert_eq!(reply(&r)["field"], "$");
}

#[test]
fn a_start_after_its_reservation_ended_is_422_stale_event_at_events() {
    let c = cfg();
    // The fixture's last eventEnd is 2025-06-08T16:00:00Z; the skew (300 s) is tolerated.
    let last_end = FIXTURE_TS + 3 * 3600 + 1800;
    let p = pending(&c, &signed(NEW, START));
    assert!(p.finish(&c, START, at(last_end + 300)).is_ok());
    let r = p.finish(&c, START, at(last_end + 301)).unwrap_err();
    assert_eq!((r.status(), r.outcome()), (422, Outcome::StaleEvent));
    let body = reply(&r);
    assert_eq!(body["error_type"], "StaleEvent");
    assert_eq!(body["field"], "$.events");
    assert_eq!(
        body["detail"],
        "$.events: every reserved resource's eventEnd has passed"
    );
    // The END of the same reservation is honoured a year later.
    let p = pending(&c, &signed(NEW, END));
    assert!(p.finish(&c, END, at(last_end + 365 * 86_400)).is_ok());
}

#[test]
fn a_set_replay_window_refuses_an_old_start_at_timestamp() {
    let c = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"r","path":"/webhook","allow_unsigned":true,"replay_window_seconds":3600}]}"#,
        |_| None,
    )
    .unwrap();
    let h = vec![("content-type", "application/json".to_owned())];
    let r = pending(&c, &h)
        .finish(&c, START, at(FIXTURE_TS + 3601))
        .unwrap_err();
    assert_eq!((r.status(), r.outcome()), (422, Outcome::StaleEvent));
    assert_eq!(reply(&r)["field"], "$.timestamp");
}

#[test]
fn header_phase_rejections() {
    let c = cfg();
    let good = signed(NEW, START);

    let r = headers_reject(&c, "GET", "/webhook", &good);
    assert_eq!((r.status(), r.outcome()), (405, Outcome::MethodNotAllowed));
    assert!(r.headers().contains(&("allow", "POST".to_owned())));

    let mut h = good.clone();
    h[0].1 = "text/plain".into();
    assert_eq!(headers_reject(&c, "POST", "/webhook", &h).status(), 415);
    let no_ct: Vec<_> = good
        .iter()
        .filter(|(k, _)| *k != "content-type")
        .cloned()
        .collect();
    assert_eq!(headers_reject(&c, "POST", "/webhook", &no_ct).status(), 415);

    let mut h = good.clone();
    h[1].1 = "4097".into();
    let r = headers_reject(&c, "POST", "/webhook", &h);
    assert_eq!((r.status(), r.outcome()), (413, Outcome::BodyTooLarge));

    let no_sig: Vec<_> = good
        .iter()
        .filter(|(k, _)| *k != "x-webhook-signature")
        .cloned()
        .collect();
    let r = headers_reject(&c, "POST", "/webhook", &no_sig);
    assert_eq!((r.status(), r.outcome()), (401, Outcome::MissingSignature));

    let mut h = good.clone();
    h[2].1 = "md5=abc".into();
    let r = headers_reject(&c, "POST", "/webhook", &h);
    assert_eq!(
        (r.status(), r.outcome()),
        (401, Outcome::MalformedSignature)
    );
}

#[test]
fn json_content_type_variants() {
    for ok in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/cloudevents+json",
    ] {
        assert!(flow::is_json_content_type(ok), "{ok}");
    }
    for bad in ["text/json", "application/jsonx", "multipart/form-data", ""] {
        assert!(!flow::is_json_content_type(bad), "{bad}");
    }
}

#[test]
fn body_cap_boundary() {
    let c = cfg();
    let p = pending(&c, &signed(NEW, START));
    assert!(p.check_size(&c, 4096).is_ok());
    let r = p.check_size(&c, 4097).unwrap_err();
    assert_eq!(r.status(), 413);
    assert_eq!(reply(&r)["error_type"], "PayloadTooLarge");
    // A body that grew past the cap without a content-length is refused at finish too.
    let big = vec![b' '; 4097];
    assert_eq!(p.finish(&c, &big, now()).unwrap_err().status(), 413);
}

#[test]
fn unguarded_paths_pass_or_404() {
    let c = cfg();
    assert!(matches!(
        flow::on_request_headers(&c, "GET", "/healthz", headers(&[])),
        HeadersDecision::Pass
    ));
    let strict = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"r","path":"/webhook","allow_unsigned":true}],"unmatched":"reject"}"#,
        |_| None,
    )
    .unwrap();
    let r = headers_reject(&strict, "GET", "/healthz", &[]);
    assert_eq!((r.status(), r.outcome()), (404, Outcome::NotFound));
}

#[test]
fn unsigned_mode_skips_the_signature_but_still_validates() {
    let c = CompiledConfig::from_json(br#"{"webhooks":[{"name":"r","path":"/webhook","allow_unsigned":true,"replay_window_seconds":0}]}"#, |_| None).unwrap();
    let h = vec![("content-type", "application/json".to_owned())];
    let p = pending(&c, &h);
    assert!(
        p.upstream_headers(&c)
            .contains(&("x-webhook-verified", "unsigned".to_owned()))
    );
    assert_eq!(p.finish(&c, START, now()).unwrap().secret_id, None);
    assert_eq!(p.finish(&c, b"[]", now()).unwrap_err().status(), 422);
}

#[test]
fn every_counted_outcome_has_a_distinct_snake_case_label() {
    let labels: std::collections::BTreeSet<_> =
        Outcome::COUNTED.iter().map(|o| o.label()).collect();
    assert_eq!(labels.len(), Outcome::COUNTED.len());
    for l in labels {
        assert!(
            !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{l}"
        );
    }
}

#[test]
fn counter_names_carry_the_labels_in_istios_encoding() {
    use webhook_core::metrics::{REQUESTS_METRIC, STATS_TAGS, requests_metric};
    assert_eq!(REQUESTS_METRIC, "webhook_filter_requests_total");
    assert_eq!(
        requests_metric(Some("GitHub.App-1"), Outcome::BadSignature),
        "webhook=.=GitHub.App-1;.;outcome=.=invalid_signature;.;webhook_filter_requests_total"
    );
    assert_eq!(
        requests_metric(None, Outcome::Passed),
        "outcome=.=passed;.;webhook_filter_requests_total"
    );
    // The regexes Istio's `extraStatTags` generates for these tag names.
    for (tag, regex) in STATS_TAGS {
        assert_eq!(regex, format!(r"({tag}=\.=(.*?);\.;)"));
    }
}

#[test]
fn error_types_are_pascal_case_like_the_sidecar() {
    for o in Outcome::COUNTED {
        let t = o.error_type();
        assert!(
            t.starts_with(|c: char| c.is_ascii_uppercase())
                && t.bytes().all(|b| b.is_ascii_alphabetic()),
            "{t}"
        );
    }
    assert_eq!(Outcome::BodyTooLarge.error_type(), "PayloadTooLarge");
    assert_eq!(Outcome::ReplayedDelivery.error_type(), "ReplayedDelivery");
}

/// The reservation system's preset, keyed with the 44-character secret reservation-be
/// generates.
fn preset() -> CompiledConfig {
    CompiledConfig::from_json(br#"{"webhooks":[{"preset":"reservation_system"}]}"#, |k| {
        (k == "WEBHOOK_SECRET").then(|| REAL_SECRET.to_owned())
    })
    .unwrap()
}

fn with_signature(body: &[u8], value: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("content-length", body.len().to_string()),
        ("x-webhook-signature", value.to_owned()),
    ]
}

/// During the flat fixture's reservation (2026-03-02T10:00:00Z).
fn during_flat() -> std::time::SystemTime {
    at(1_772_445_600)
}

#[test]
fn the_real_senders_base64_and_the_readmes_hex_verify_the_same_mac() {
    let c = preset();
    for value in [
        FLAT_START_SIGNATURE_B64,
        FLAT_START_SIGNATURE_HEX,
        &FLAT_START_SIGNATURE_HEX.replacen("sha256=", "SHA256=", 1),
        &format!(" {FLAT_START_SIGNATURE_B64} "),
    ] {
        let p = pending(&c, &with_signature(FLAT_START, value));
        let v = p.finish(&c, FLAT_START, during_flat());
        assert!(v.is_ok(), "{value}: {v:?}");
    }
    assert_eq!(
        webhook_core::scheme::sign_reservation_system(REAL_SECRET, FLAT_START),
        FLAT_START_SIGNATURE_B64
    );
}

#[test]
fn anything_else_in_the_reservation_header_is_401() {
    let c = preset();
    let b64 = FLAT_START_SIGNATURE_B64;
    let malformed = [
        b64.trim_end_matches('='),                            // unpadded
        &b64[..40],                                           // truncated
        "sha256=",                                            // prefix only
        &FLAT_START_SIGNATURE_HEX[..70],                      // short hex
        &FLAT_START_SIGNATURE_HEX.replacen("sha256=", "", 1), // hex without the prefix
        "sha1=0123",
        "",
    ];
    for value in malformed {
        let r = match flow::on_request_headers(
            &c,
            "POST",
            "/webhook",
            headers(&with_signature(FLAT_START, value)),
        ) {
            HeadersDecision::Reject(r) => r,
            other => panic!("{value:?}: {other:?}"),
        };
        assert_eq!(
            (r.status(), r.outcome()),
            (401, Outcome::MalformedSignature),
            "{value:?}"
        );
    }
    // Well formed, another MAC: the body was altered, or the secret differs.
    let mut tampered = FLAT_START.to_vec();
    tampered[20] ^= 1;
    let p = pending(&c, &with_signature(&tampered, b64));
    let r = p.finish(&c, &tampered, during_flat()).unwrap_err();
    assert_eq!((r.status(), r.outcome()), (401, Outcome::BadSignature));
    let other = webhook_core::scheme::sign_reservation_system("another-secret", FLAT_START);
    let p = pending(&c, &with_signature(FLAT_START, &other));
    let r = p.finish(&c, FLAT_START, during_flat()).unwrap_err();
    assert_eq!(r.outcome(), Outcome::BadSignature);
}

#[test]
fn finish_message_hands_over_the_message_it_validated() {
    let c = preset();
    let p = pending(&c, &with_signature(FLAT_START, FLAT_START_SIGNATURE_B64));
    let (verified, message) = p.finish_message(&c, FLAT_START, during_flat()).unwrap();
    assert_eq!(verified.secret_id.as_deref(), Some("current"));
    let message = message.unwrap();
    assert_eq!(message, webhook_core::event::validate(FLAT_START).unwrap());
}
