//! Envoy's edge settings (docs/filter.md, "Envoy at the edge") through the real Envoy, with the
//! deployment layout and, where a timeout is under test, a shorter value of it: header names
//! with underscores never reach the upstream; clients' Envoy control headers are not obeyed;
//! slow-loris clients (headers dribbled byte by byte, a body that never finishes, a connection
//! that never says anything) are cut off within the configured time, send the upstream zero
//! bytes and leave no stream or connection behind; Envoy's own replies to them are JSON.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use envoy_harness::http::assert_rejected;
use envoy_harness::http::json_body;
use envoy_harness::{EnvoyConfig, http};
use serde_json::Value;
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

/// What a dribbling client saw.
struct Dripped {
    /// From the first byte written to Envoy's first reply byte (or the close, if no reply).
    cut_after: Option<Duration>,
    /// Everything Envoy sent back.
    reply: Vec<u8>,
    /// Envoy closed (or reset) the connection.
    closed: bool,
    /// Bytes written before Envoy stopped the client.
    written: usize,
}

/// Connects, writes `head` at once, then `drip` one byte every `every` until Envoy answers or
/// closes, or `drip` is exhausted (bounded: at most `drip.len()` writes); then waits up to 5 s
/// for Envoy to close the connection.
fn dribble(addr: SocketAddr, head: &[u8], drip: &[u8], every: Duration) -> Dripped {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let start = Instant::now();
    let mut reply = Vec::new();
    let mut cut_after = None;
    let mut closed = false;
    let mut written = 0;
    let mut buf = [0u8; 4096];
    let mut read_some = |s: &mut TcpStream, reply: &mut Vec<u8>| -> bool {
        match s.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                false
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(_) => true,
        }
    };
    if s.write_all(head).is_ok() {
        written += head.len();
        for byte in drip {
            std::thread::sleep(every);
            closed = read_some(&mut s, &mut reply);
            if closed || !reply.is_empty() {
                cut_after = Some(start.elapsed());
                break;
            }
            if s.write_all(std::slice::from_ref(byte)).is_err() {
                cut_after = Some(start.elapsed());
                closed = true;
                break;
            }
            written += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !closed && Instant::now() < deadline {
        let before = reply.len();
        closed = read_some(&mut s, &mut reply);
        if cut_after.is_none() && (closed || reply.len() > before) {
            cut_after = Some(start.elapsed());
        }
    }
    Dripped {
        cut_after,
        reply,
        closed,
        written,
    }
}

/// Asserts Envoy's 408 in the project's JSON error shape, and returns its body.
#[track_caller]
fn assert_json_408(d: &Dripped) -> Value {
    let text = String::from_utf8_lossy(&d.reply).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no reply: {text:?}"));
    assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(body["error_type"], "RequestTimeout", "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    body
}

/// Nothing left behind: no open request stream and no open downstream connection.
#[track_caller]
fn assert_nothing_held(b: &Bench) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let rq = b.envoy.stat("http.webhook.downstream_rq_active").unwrap();
        let cx = b.envoy.stat("http.webhook.downstream_cx_active").unwrap();
        if rq == Some(0) && cx == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Envoy still holds streams {rq:?} / connections {cx:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_dribbling_its_headers_is_cut_off_at_the_request_headers_timeout() {
    let timeout = Duration::from_secs(1);
    let b = bench(|c| c.edge.request_headers_timeout = timeout);
    let every = Duration::from_millis(100);
    // A header that never ends: 100 bytes at 100 ms would take 10 s.
    let d = dribble(
        b.envoy.listener(),
        b"POST /webhook HTTP/1.1\r\nhost: x\r\nx-pad: ",
        &[b'a'; 100],
        every,
    );
    let cut = d.cut_after.unwrap_or_else(|| {
        panic!(
            "not cut off: {} bytes written over {:?}",
            d.written,
            every * 100
        )
    });
    assert!(
        cut >= timeout - every && cut <= timeout + Duration::from_millis(1500),
        "cut after {cut:?}, timeout {timeout:?}"
    );
    assert!(d.closed, "connection left open");
    assert_eq!(assert_json_408(&d)["detail"], "request header timeout");
    assert_eq!(b.upstream.total_bytes(), 0, "bytes reached the upstream");
    assert_eq!(
        b.envoy
            .stat("http.webhook.downstream_rq_header_timeout")
            .unwrap(),
        Some(1)
    );
    assert_nothing_held(&b);
}

#[test]
fn a_body_that_never_finishes_is_cut_off_at_the_request_timeout_and_never_forwarded() {
    let timeout = Duration::from_secs(2);
    let b = bench(|c| c.edge.request_timeout = timeout);
    // A correctly signed delivery whose body trickles in too slowly (a byte every 200 ms,
    // so no idle timeout fires) and would never complete: the declared length is 64 KiB.
    let body = fresh_event(|_| {});
    let sig = signature_header_value(NEW.as_bytes(), &body);
    let head = http::head(
        "POST",
        "/webhook",
        &[
            ("content-type", "application/json"),
            ("content-length", "65536"),
            ("x-webhook-signature", &sig),
        ],
    );
    let mut first = head.into_bytes();
    first.extend_from_slice(&body[..1024]);
    let every = Duration::from_millis(200);
    let d = dribble(b.envoy.listener(), &first, &body[1024..1074], every);
    let cut = d
        .cut_after
        .unwrap_or_else(|| panic!("not cut off: {} bytes written", d.written));
    assert!(
        cut >= timeout - every && cut <= timeout + Duration::from_millis(1500),
        "cut after {cut:?}, timeout {timeout:?}"
    );
    assert!(d.closed, "connection left open");
    assert_eq!(assert_json_408(&d)["detail"], "request timeout");
    // The buffer filter held the headers back, and the partial body was dropped with the
    // stream: the upstream never saw a byte, and Envoy holds nothing afterwards.
    assert_eq!(b.upstream.total_bytes(), 0, "bytes reached the upstream");
    assert_eq!(
        b.envoy.stat("http.webhook.downstream_rq_timeout").unwrap(),
        Some(1)
    );
    assert_nothing_held(&b);
    // A delivery right after is forwarded: the edge limits cut the slow client, not others.
    let r = b.post_signed(NEW, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn a_connection_that_never_sends_a_byte_is_closed_at_the_idle_timeout() {
    let timeout = Duration::from_secs(1);
    let b = bench(|c| c.edge.idle_timeout = timeout);
    let d = dribble(b.envoy.listener(), b"", &[], Duration::ZERO);
    let cut = d.cut_after.expect("connection never closed");
    assert!(d.closed && d.reply.is_empty(), "{:?}", d.reply);
    assert!(
        cut <= timeout + Duration::from_millis(1500),
        "closed after {cut:?}"
    );
    assert_nothing_held(&b);
}

/// The deployment's limits leave room for the largest body the default webhook accepts: the
/// 32 KiB per-connection buffer does not cap bodies (the buffer filter holds up to 1 MiB).
#[test]
fn a_body_at_the_cap_passes_the_deployment_buffer_limits() {
    let b = bench(|_| {});
    let mut body = fresh_event(|_| {});
    body.resize(65_536, b' ');
    let r = b.post_signed(NEW, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(b.upstream.requests()[0].body, body);
}

#[test]
fn oversized_request_headers_get_431_in_the_json_error_shape() {
    let b = bench(|_| {});
    let big = "a".repeat(20 * 1024);
    let r = b.send(&[http::head("GET", "/healthz", &[("x-big", &big)]).as_bytes()]);
    assert_eq!(r.status, 431, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = json_body(&r);
    assert_eq!(body["error_type"], "RequestHeaderFieldsTooLarge", "{body}");
    assert_eq!(b.upstream.total_bytes(), 0);
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
    assert_eq!(b.requests(Outcome::Accepted), 1);
    assert_eq!(
        b.envoy
            .stat("http1.dropped_headers_with_underscores")
            .unwrap(),
        Some(12)
    );
}

/// With `use_remote_address`, Envoy takes the client's address from the connection, not from
/// what the client claims: it appends the peer to `x-forwarded-for` (no proxy in front is
/// trusted, `xff_num_trusted_hops: 0`) and names it in `x-envoy-external-address`. Every client
/// is external, so its `x-envoy-*` control headers (route timeout, retries) are removed and not
/// obeyed; Envoy 1.40 already did that without `use_remote_address` (no address is internal by
/// default), kept here as a guard.
#[test]
fn envoy_records_the_peer_and_ignores_the_clients_forwarding_claims() {
    let b = bench(|_| {});
    let r = b.send(&[http::head(
        "GET",
        "/healthz",
        &[
            ("x-envoy-upstream-rq-timeout-ms", "1"),
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-internal", "true"),
            ("x-forwarded-for", "10.1.2.3"),
        ],
    )
    .as_bytes()]);
    assert_eq!(r.status, 200);
    let req = &b.upstream.requests()[0];
    let xff = req.header_values("x-forwarded-for");
    let hops: Vec<&str> = xff
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    assert!(
        hops.len() == 2 && hops[0] == "10.1.2.3",
        "the peer is appended to the client's claim: {}",
        req.head
    );
    assert_eq!(
        req.header_values("x-envoy-external-address").len(),
        1,
        "{}",
        req.head
    );
    for name in [
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-retry-on",
        "x-envoy-internal",
    ] {
        assert!(
            req.header_values(name).is_empty(),
            "{name} forwarded:\n{}",
            req.head
        );
    }
    // The route's own timeout (5 s on /healthz) is what Envoy applied, not the client's 1 ms.
    assert_eq!(
        req.header_values("x-envoy-expected-rq-timeout-ms"),
        ["5000"],
        "{}",
        req.head
    );
}
