//! Header values that are not UTF-8 (obs-text, legal in HTTP/1.1) must never take the filter's
//! VM down. proxy-wasm 0.2.5's `get_http_request_headers()` unwraps `String::from_utf8` on every
//! value, so one `X-Junk: \xff` used to abort the VM: that request and the ones after it got
//! 503 until Envoy reloaded the VM. Raw sockets, so no client library cleans the bytes up.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::*;
use envoy_harness::http;
use envoy_harness::http::assert_rejected;
use webhook_core::signature::signature_header_value;

/// `GET /healthz` with a non-UTF-8 header value, then a signed delivery on a new connection.
#[test]
fn a_non_utf8_header_value_neither_crashes_the_vm_nor_delays_the_next_delivery() {
    let b = Bench::default_started();

    let junk = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-junk: caf\xe9 \xff\xfe\r\n\r\n";
    let r = b.send(&[junk]);
    assert_eq!(
        r.status,
        200,
        "an unguarded request with obs-text must pass: {}",
        String::from_utf8_lossy(&r.body)
    );

    // The same bytes in a guarded request's signature header: a clear 401, not a crash.
    let body = fresh_event(|_| {});
    let len = body.len().to_string();
    let mut head = format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n"
    )
    .into_bytes();
    head.extend_from_slice(
        b"x-webhook-signature: sha256=\xff\xfe\xfd\r\nx-other: \x80\x81\r\n\r\n",
    );
    let r = b.send(&[&head, &body]);
    assert_rejected(&r, 401, "MalformedSignature");

    // A valid delivery right after is forwarded at once (no VM reload in between).
    let sig = signature_header_value(NEW.as_bytes(), &body);
    let mut head = format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nx-webhook-signature: {sig}\r\n"
    )
    .into_bytes();
    head.extend_from_slice(b"x-trace: \xc3\x28\r\n\r\n");
    let r = b.send(&[&head, &body]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let forwarded = b.upstream.requests();
    let last = forwarded
        .last()
        .expect("the signed delivery reached the upstream");
    assert_eq!(last.body, body);
    // Headers the filter does not own pass unchanged, bytes included.
    let raw = b.upstream.connections().concat();
    assert!(
        http::find(&raw, b"x-trace: \xc3\x28").is_some(),
        "non-UTF-8 header value altered on the way upstream"
    );

    let log = b.envoy.log();
    assert!(
        !log.contains("panicked"),
        "the filter panicked:\n{}",
        b.envoy.log_tail()
    );
}
