//! The hostile-input corpus through the real Envoy: request smuggling shapes,
//! pipelining, `Expect: 100-continue`, absolute-form and dot-segment targets, exempt-path
//! tricks, odd methods, signatures in trailers, non-UTF-8 header bytes, duplicate headers,
//! content encodings, hostile JSON bodies, and HTTP/2 (h2c) with request trailers.
//!
//! One table, raw sockets (nothing normalised by a client library). For every case:
//! - each response on the connection is the expected one: the filter's JSON error, Envoy's own
//!   answer (its HTTP/1 codec or route table, documented per case), or the upstream's `200`;
//! - the recording upstream received exactly the requests expected to pass (usually none) and
//!   not one byte more: a rejected request sends **zero bytes** upstream;
//! - a valid signed delivery right after is forwarded at once: the VM is still serving.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::time::Duration;

use common::*;
use envoy_harness::http::{self, Response};
use serde_json::{Value, json};
use webhook_core::signature::signature_header_value;

/// What one response on the connection must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The filter's JSON error: status and `error_type`.
    Filter(u16, &'static str),
    /// Envoy's own answer (codec or route table), not the filter's; the upstream sees nothing.
    Envoy(u16),
    /// Forwarded by the filter as verified (`x-webhook-verified: true`): the upstream's 200.
    Verified,
    /// Forwarded unguarded (an exempt path, no `x-webhook-*` header): the upstream's 200.
    Exempt,
    /// The filter's reply to a HEAD request: status, JSON content type, no body.
    Head(u16),
}

use Expect::{Envoy, Exempt, Filter, Head, Verified};

struct Case {
    name: &'static str,
    /// Bytes written, one write each (5 ms apart).
    parts: Vec<Vec<u8>>,
    /// One entry per response on the connection, in order.
    expect: Vec<Expect>,
}

/// The request bytes: request line, `host`, the headers as given (nothing added), a blank
/// line, the body.
fn raw(method: &str, target: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: test\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A POST to `/webhook` as the sender makes it (JSON, content-length, `connection: close`),
/// signed with `sig` when given, plus `extra` headers.
fn post(body: &[u8], sig: Option<&str>, extra: &[(&str, &[u8])]) -> Vec<u8> {
    post_to("/webhook", body, sig, extra)
}

fn post_to(target: &str, body: &[u8], sig: Option<&str>, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let len = body.len().to_string();
    let mut h: Vec<(&str, &[u8])> = vec![
        ("content-type", b"application/json"),
        ("content-length", len.as_bytes()),
        ("connection", b"close"),
    ];
    if let Some(sig) = sig {
        h.push(("x-webhook-signature", sig.as_bytes()));
    }
    h.extend_from_slice(extra);
    raw("POST", target, &h, body)
}

fn sign(body: &[u8]) -> String {
    signature_header_value(NEW.as_bytes(), body)
}

fn one(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        parts: vec![bytes],
        expect: vec![expect],
    }
}

/// A fresh valid START with its own `eventId` (so each forwarded one is told apart), and its
/// signature.
fn valid(tag: &str) -> (Vec<u8>, String) {
    let body = fresh_event(|v| v["events"][0]["eventId"] = json!(format!("hostile-{tag}")));
    let sig = sign(&body);
    (body, sig)
}

/// The pretty-printed fresh START with `from` replaced by `to` in its text (first occurrence).
fn edited(from: &[u8], to: &[u8]) -> Vec<u8> {
    let body = fresh_event(|_| {});
    let at = http::find(&body, from).unwrap_or_else(|| {
        panic!(
            "{} not in the fixture",
            String::from_utf8_lossy(from).into_owned()
        )
    });
    let mut out = body[..at].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&body[at + from.len()..]);
    out
}

fn chunked_with_trailers(body: &[u8], trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = http::chunked(body, 700);
    out.truncate(out.len() - 2); // "0\r\n\r\n" -> "0\r\n", then the trailers
    for (k, v) in trailers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn gzip_stored(data: &[u8]) -> Vec<u8> {
    // A valid gzip member with one stored (uncompressed) deflate block: what a sender that
    // compresses would send, without a compression library.
    let len = u16::try_from(data.len()).unwrap();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255, 1];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&u32::from(len).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn cases() -> Vec<Case> {
    let mut c = Vec::new();
    let (good, good_sig) = valid("x");
    let goods = good_sig.as_str();
    let len = good.len().to_string();
    let lenb = len.as_bytes();

    // --- Request smuggling shapes: Envoy's HTTP/1 codec refuses them before any filter runs.
    c.push(one(
        "content-length and transfer-encoding together",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", lenb),
                ("transfer-encoding", b"chunked"),
                ("x-webhook-signature", goods.as_bytes()),
            ],
            &http::chunked(&good, 500),
        ),
        Envoy(400),
    ));
    c.push(one(
        "transfer-encoding then content-length (unsigned)",
        raw(
            "POST",
            "/webhook",
            &[
                ("transfer-encoding", b"chunked"),
                ("content-length", b"4"),
                ("content-type", b"application/json"),
            ],
            b"2\r\n{}\r\n0\r\n\r\n",
        ),
        Envoy(400),
    ));
    c.push(one(
        "two differing content-length headers",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", lenb),
                ("content-length", b"5"),
                ("x-webhook-signature", goods.as_bytes()),
            ],
            &good,
        ),
        Envoy(400),
    ));
    c.push(one(
        "content-length list with differing values",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", format!("{len}, 5").as_bytes()),
                ("x-webhook-signature", goods.as_bytes()),
            ],
            &good,
        ),
        Envoy(400),
    ));
    c.push(one(
        "negative content-length",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", b"-1"),
            ],
            b"{}",
        ),
        Envoy(400),
    ));
    c.push(one(
        "content-length beyond u64",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", b"99999999999999999999999"),
            ],
            b"{}",
        ),
        Envoy(400),
    ));
    c.push(one(
        "transfer-encoding gzip, chunked",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("transfer-encoding", b"gzip, chunked"),
                ("x-webhook-signature", goods.as_bytes()),
            ],
            &http::chunked(&good, 500),
        ),
        Envoy(501),
    ));
    c.push(one(
        "transfer-encoding xchunked",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("transfer-encoding", b"xchunked"),
                ("x-webhook-signature", goods.as_bytes()),
            ],
            &http::chunked(&good, 500),
        ),
        Envoy(501),
    ));
    c.push(one(
        "obs-fold continuation of the signature header (Envoy unfolds it with spaces)",
        obs_fold(&good, goods),
        Filter(401, "MalformedSignature"),
    ));
    c.push(one(
        "obs-fold in an unrelated header of a signed request (unfolded, forwarded)",
        {
            let mut r = format!(
                "POST /webhook HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                 content-length: {len}\r\nx-webhook-signature: {goods}\r\nx-note: a\r\n  b\r\n\
                 connection: close\r\n\r\n"
            )
            .into_bytes();
            r.extend_from_slice(&good);
            r
        },
        Verified,
    ));
    c.push(one(
        "space between header name and colon",
        {
            let mut r = format!(
                "POST /webhook HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                 content-length: {len}\r\nx-webhook-signature : {goods}\r\n\r\n"
            )
            .into_bytes();
            r.extend_from_slice(&good);
            r
        },
        Envoy(400),
    ));
    c.push(one(
        "bare LF line endings",
        {
            let mut r = format!(
                "POST /webhook HTTP/1.1\nhost: test\ncontent-type: application/json\n\
                 content-length: {len}\nconnection: close\n\n"
            )
            .into_bytes();
            r.extend_from_slice(&good);
            r
        },
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "NUL byte in a header value",
        post(&good, Some(goods), &[("x-note", b"a\x00b")]),
        Envoy(400),
    ));
    c.push(one(
        "header name with a non-token character",
        post(&good, Some(goods), &[("x-no(te)", b"1")]),
        Envoy(400),
    ));
    c.push(one(
        "no host header",
        {
            let mut r = format!(
                "POST /webhook HTTP/1.1\r\ncontent-type: application/json\r\n\
                 content-length: {len}\r\nx-webhook-signature: {goods}\r\nconnection: close\r\n\r\n"
            )
            .into_bytes();
            r.extend_from_slice(&good);
            r
        },
        Envoy(400),
    ));
    c.push(one(
        "chunk size beyond u64",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("transfer-encoding", b"chunked"),
                ("x-webhook-signature", goods.as_bytes()),
            ],
            b"fffffffffffffffffff1\r\n{}\r\n0\r\n\r\n",
        ),
        Envoy(400),
    ));
    c.push(one(
        "HTTP/1.0 request (refused: 426)",
        {
            let mut r = format!(
                "POST /webhook HTTP/1.0\r\nhost: test\r\ncontent-type: application/json\r\n\
                 transfer-encoding: chunked\r\nx-webhook-signature: {goods}\r\n\r\n"
            )
            .into_bytes();
            r.extend_from_slice(&http::chunked(&good, 500));
            r
        },
        Envoy(426),
    ));

    // --- Pipelining: a valid delivery, then unsigned or tampered ones on the same connection.
    {
        let (first, first_sig) = valid("pipe-1");
        let mut keep = raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", first.len().to_string().as_bytes()),
                ("x-webhook-signature", first_sig.as_bytes()),
            ],
            &first,
        );
        let unsigned = post(&good, None, &[]);
        let mut both = keep.clone();
        both.extend_from_slice(&unsigned);
        c.push(Case {
            name: "pipelined valid then unsigned, one write",
            parts: vec![both],
            expect: vec![Verified, Filter(401, "MissingSignature")],
        });
        c.push(Case {
            name: "pipelined valid then unsigned, two writes",
            parts: vec![keep.clone(), unsigned.clone()],
            expect: vec![Verified, Filter(401, "MissingSignature")],
        });
        let (second, _) = valid("pipe-2");
        let tampered = post(&second, Some(&first_sig), &[]);
        keep.extend_from_slice(&tampered);
        c.push(Case {
            name: "pipelined valid then a body signed for another",
            parts: vec![keep],
            expect: vec![Verified, Filter(401, "InvalidSignature")],
        });
        let bad_first = raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", lenb),
                ("x-webhook-signature", sign(b"other").as_bytes()),
            ],
            &good,
        );
        let (third, third_sig) = valid("pipe-3");
        let mut both = bad_first;
        both.extend_from_slice(&post(&third, Some(&third_sig), &[]));
        c.push(Case {
            name: "pipelined wrong signature then valid",
            parts: vec![both],
            expect: vec![Filter(401, "InvalidSignature"), Verified],
        });
        let mut smuggle = raw("POST", "/healthz", &[("content-length", b"0")], b"");
        smuggle.extend_from_slice(&post(&good, None, &[]));
        c.push(Case {
            name: "pipelined exempt request then unsigned webhook",
            parts: vec![smuggle],
            expect: vec![Exempt, Filter(401, "MissingSignature")],
        });
    }

    // --- Expect: 100-continue.
    {
        let (b, s) = valid("expect");
        let head = raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", b.len().to_string().as_bytes()),
                ("x-webhook-signature", s.as_bytes()),
                ("expect", b"100-continue"),
                ("connection", b"close"),
            ],
            b"",
        );
        c.push(Case {
            name: "expect 100-continue, signed",
            parts: vec![head, b],
            expect: vec![Verified],
        });
        let head = raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", lenb),
                ("expect", b"100-continue"),
                ("connection", b"close"),
            ],
            b"",
        );
        c.push(Case {
            name: "expect 100-continue, unsigned",
            parts: vec![head, good.clone()],
            expect: vec![Filter(401, "MissingSignature")],
        });
        let head = raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", b"70000"),
                ("x-webhook-signature", goods.as_bytes()),
                ("expect", b"100-continue"),
                ("connection", b"close"),
            ],
            b"",
        );
        c.push(Case {
            name: "expect 100-continue, declared over the cap",
            parts: vec![head],
            expect: vec![Filter(413, "PayloadTooLarge")],
        });
    }

    // --- Request targets: absolute form, dot segments, encoded slashes, exempt paths.
    {
        let (b, s) = valid("absolute");
        c.push(one(
            "absolute-form URI, signed",
            post_to("http://test/webhook", &b, Some(&s), &[]),
            Verified,
        ));
    }
    c.push(one(
        "absolute-form URI, unsigned",
        post_to("http://test/webhook", &good, None, &[]),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "absolute-form URI with another host, unsigned",
        post_to("http://evil.example:8080/webhook", &good, None, &[]),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "absolute-form URI of the exempt path with a webhook query",
        raw(
            "GET",
            "http://test/healthz?/../webhook",
            &[("connection", b"close")],
            b"",
        ),
        Exempt,
    ));
    c.push(one(
        "dot segments from the exempt path",
        post_to("/healthz/../webhook", &good, None, &[]),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "percent-encoded dot segments from the exempt path",
        post_to("/healthz/%2e%2e/webhook", &good, None, &[]),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "encoded slash from the exempt path",
        post_to("/healthz%2F..%2Fwebhook", &good, None, &[]),
        Envoy(400),
    ));
    c.push(one(
        "encoded slash, lower case",
        post_to("/healthz%2f..%2fwebhook", &good, None, &[]),
        Envoy(400),
    ));
    c.push(one(
        "encoded backslash from the exempt path",
        post_to("/healthz%5C..%5Cwebhook", &good, None, &[]),
        Envoy(400),
    ));
    c.push(one(
        "backslash dot segments (normalised to /webhook)",
        post_to("/healthz\\..\\webhook", &good, None, &[]),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "double slash before the webhook path",
        post_to("//webhook", &good, None, &[]),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "percent-encoded letter in the webhook path",
        post_to("/%77ebhook", &good, None, &[]),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "webhook path with a query string",
        post_to("/webhook?x=1&y=/healthz", &good, None, &[]),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "webhook path with a fragment",
        post_to("/webhook#frag", &good, None, &[]),
        Envoy(400),
    ));
    c.push(one(
        "webhook path with a trailing slash",
        post_to("/webhook/", &good, None, &[]),
        Envoy(404),
    ));
    c.push(one(
        "webhook path in upper case",
        post_to("/WEBHOOK", &good, None, &[]),
        Envoy(404),
    ));
    c.push(one(
        "webhook path with a matrix parameter",
        post_to("/webhook;v=1", &good, None, &[]),
        Envoy(404),
    ));
    c.push(one(
        "relative path without a leading slash",
        post_to("webhook", &good, None, &[]),
        Envoy(400),
    ));
    c.push(one(
        "asterisk-form target",
        raw("OPTIONS", "*", &[("connection", b"close")], b""),
        Envoy(404),
    ));

    // --- Methods.
    c.push(one(
        "lower-case post (refused by the codec)",
        raw(
            "post",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", lenb),
                ("x-webhook-signature", goods.as_bytes()),
                ("connection", b"close"),
            ],
            &good,
        ),
        Envoy(400),
    ));
    c.push(one(
        "mixed-case Post (refused by the codec)",
        raw(
            "Post",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", lenb),
                ("x-webhook-signature", goods.as_bytes()),
                ("connection", b"close"),
            ],
            &good,
        ),
        Envoy(400),
    ));
    c.push(one(
        "PUT with a signed body",
        raw(
            "PUT",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("content-length", lenb),
                ("x-webhook-signature", goods.as_bytes()),
                ("connection", b"close"),
            ],
            &good,
        ),
        Filter(405, "MethodNotAllowed"),
    ));
    c.push(one(
        "HEAD of the webhook (the filter's 405, without a body)",
        raw("HEAD", "/webhook", &[("connection", b"close")], b""),
        Head(405),
    ));
    c.push(one(
        "TRACE of the webhook",
        raw("TRACE", "/webhook", &[("connection", b"close")], b""),
        Filter(405, "MethodNotAllowed"),
    ));
    c.push(Case {
        name: "CONNECT to the listener (no route: Envoy holds the stream, no reply, nothing upstream)",
        parts: vec![raw("CONNECT", "test:443", &[("connection", b"close")], b"")],
        expect: vec![],
    });

    // --- Signature headers: trailers, bytes, duplicates, spelling.
    c.push(one(
        "signature only in a chunked trailer",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("transfer-encoding", b"chunked"),
                ("trailer", b"x-webhook-signature"),
                ("connection", b"close"),
            ],
            &chunked_with_trailers(&good, &[("x-webhook-signature", goods)]),
        ),
        Filter(401, "MissingSignature"),
    ));
    {
        let (b, s) = valid("trailer-extra");
        c.push(one(
            "signed chunked body with an unrelated trailer",
            raw(
                "POST",
                "/webhook",
                &[
                    ("content-type", b"application/json"),
                    ("transfer-encoding", b"chunked"),
                    ("x-webhook-signature", s.as_bytes()),
                    ("connection", b"close"),
                ],
                &chunked_with_trailers(&b, &[("x-checksum", "abc")]),
            ),
            Verified,
        ));
    }
    {
        let (b, s) = valid("trailer-owned-headers");
        c.push(one(
            "signed chunked body with spoofed verification headers in the trailers",
            raw(
                "POST",
                "/webhook",
                &[
                    ("content-type", b"application/json"),
                    ("transfer-encoding", b"chunked"),
                    ("x-webhook-signature", s.as_bytes()),
                    ("connection", b"close"),
                ],
                &chunked_with_trailers(
                    &b,
                    &[
                        ("x-webhook-verified", "spoof"),
                        ("x-webhook-secret-id", "spoof"),
                        ("x-webhook-name", "spoof"),
                    ],
                ),
            ),
            Verified,
        ));
    }
    c.push(one(
        "a wrong signature header, the right one in a trailer",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("transfer-encoding", b"chunked"),
                ("x-webhook-signature", sign(b"other").as_bytes()),
                ("connection", b"close"),
            ],
            &chunked_with_trailers(&good, &[("x-webhook-signature", goods)]),
        ),
        Filter(401, "InvalidSignature"),
    ));
    {
        let mut v = goods.as_bytes().to_vec();
        let n = v.len();
        v[n - 1] = 0xff;
        c.push(one(
            "non-UTF-8 byte in the signature",
            post(&good, None, &[("x-webhook-signature", &v)]),
            Filter(401, "MalformedSignature"),
        ));
    }
    c.push(one(
        "Latin-1 signature header",
        post(&good, None, &[("x-webhook-signature", b"sha256\xe9\xe8")]),
        Filter(401, "MalformedSignature"),
    ));
    {
        let (b, s) = valid("obs-text");
        c.push(one(
            "non-UTF-8 bytes in other headers of a signed request",
            post(
                &b,
                Some(&s),
                &[("x-junk", b"caf\xe9 \xff\xfe"), ("user-agent", b"\x80\x81")],
            ),
            Verified,
        ));
    }
    c.push(one(
        "non-UTF-8 byte in the content type",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json\xff"),
                ("content-length", lenb),
                ("x-webhook-signature", goods.as_bytes()),
                ("connection", b"close"),
            ],
            &good,
        ),
        Filter(415, "UnsupportedMediaType"),
    ));
    {
        let (b, s) = valid("dup-sig-1");
        c.push(one(
            "duplicate signature headers, valid first",
            post(
                &b,
                Some(&s),
                &[("x-webhook-signature", sign(b"other").as_bytes())],
            ),
            Verified,
        ));
    }
    c.push(one(
        "duplicate signature headers, valid second",
        post(
            &good,
            Some(&sign(b"other")),
            &[("x-webhook-signature", goods.as_bytes())],
        ),
        Filter(401, "InvalidSignature"),
    ));
    c.push(one(
        "duplicate signature headers, malformed first",
        post(
            &good,
            Some("sha256=zz"),
            &[("x-webhook-signature", goods.as_bytes())],
        ),
        Filter(401, "MalformedSignature"),
    ));
    {
        let (b, s) = valid("upper");
        let upper = s.to_ascii_uppercase();
        c.push(one(
            "signature in upper case, prefix included",
            post(&b, None, &[("X-Webhook-Signature", upper.as_bytes())]),
            Verified,
        ));
    }
    c.push(one(
        "signature with a space inside",
        post(&good, Some(&goods.replacen('=', "= ", 1)), &[]),
        Filter(401, "MalformedSignature"),
    ));
    c.push(one(
        "signature truncated by one digit",
        post(&good, Some(&goods[..goods.len() - 1]), &[]),
        Filter(401, "MalformedSignature"),
    ));
    c.push(one(
        "signature header with an underscore name",
        post(&good, None, &[("x_webhook_signature", goods.as_bytes())]),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "spoofed verified headers, unsigned",
        post(
            &good,
            None,
            &[
                ("x-webhook-verified", b"true"),
                ("x-webhook-secret-id", b"current"),
                ("x-webhook-name", b"reservations"),
            ],
        ),
        Filter(401, "MissingSignature"),
    ));

    // --- Content types and encodings.
    c.push(one(
        "duplicate content types, text first",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"text/plain"),
                ("content-type", b"application/json"),
                ("content-length", lenb),
                ("x-webhook-signature", goods.as_bytes()),
                ("connection", b"close"),
            ],
            &good,
        ),
        Filter(415, "UnsupportedMediaType"),
    ));
    c.push(one(
        "content type application/+json",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/+json"),
                ("content-length", lenb),
                ("x-webhook-signature", goods.as_bytes()),
                ("connection", b"close"),
            ],
            &good,
        ),
        Filter(415, "UnsupportedMediaType"),
    ));
    {
        let zipped = gzip_stored(&good);
        let s = sign(&zipped);
        c.push(one(
            "gzip-encoded body, signed as sent",
            post(&zipped, Some(&s), &[("content-encoding", b"gzip")]),
            Filter(400, "MalformedJson"),
        ));
    }
    {
        let (b, s) = valid("identity-labelled-gzip");
        c.push(one(
            "plain body labelled gzip, signed",
            post(&b, Some(&s), &[("content-encoding", b"gzip")]),
            Verified,
        ));
    }
    {
        let utf16: Vec<u8> = String::from_utf8_lossy(&good)
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let s = sign(&utf16);
        c.push(one(
            "UTF-16 body declared as such",
            raw(
                "POST",
                "/webhook",
                &[
                    ("content-type", b"application/json; charset=utf-16le"),
                    ("content-length", utf16.len().to_string().as_bytes()),
                    ("x-webhook-signature", s.as_bytes()),
                    ("connection", b"close"),
                ],
                &utf16,
            ),
            Filter(400, "MalformedJson"),
        ));
    }

    // --- Hostile JSON bodies, all correctly signed: the signature passes, the body does not.
    let signed_body = |b: Vec<u8>| {
        let s = sign(&b);
        post(&b, Some(&s), &[])
    };
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&good);
    c.push(one(
        "UTF-8 BOM before the JSON",
        signed_body(bom),
        Filter(400, "MalformedJson"),
    ));
    c.push(one(
        "invalid UTF-8 inside a string",
        signed_body(edited(b"giovanni.mirarchi@", b"giovanni\xff\xfemirarchi@")),
        Filter(400, "MalformedJson"),
    ));
    c.push(one(
        "escaped lone surrogate in a string",
        signed_body(edited(b"\"eventTitle\": \"", b"\"eventTitle\": \"\\ud800")),
        Filter(400, "MalformedJson"),
    ));
    c.push(one(
        "CESU-8 encoded surrogate bytes in a string",
        signed_body(edited(
            b"\"eventTitle\": \"",
            b"\"eventTitle\": \"\xed\xa0\x80",
        )),
        Filter(400, "MalformedJson"),
    ));
    c.push(one(
        "duplicate eventType keys",
        signed_body(edited(
            b"\"eventType\": \"EVENT_START\"",
            b"\"eventType\": \"EVENT_START\", \"eventType\": \"EVENT_END\"",
        )),
        Filter(422, "ValidationError"),
    ));
    c.push(one(
        "duplicate username keys",
        signed_body(edited(
            b"\"username\": \"giovanni.mirarchi\"",
            b"\"username\": \"giovanni.mirarchi\", \"username\": \"root\"",
        )),
        Filter(422, "ValidationError"),
    ));
    c.push(one(
        "resourceId with 400 digits (out of range: not JSON to the parser)",
        signed_body(edited(
            b"\"resourceId\": 1",
            format!("\"resourceId\": 1{}", "0".repeat(400)).as_bytes(),
        )),
        Filter(400, "MalformedJson"),
    ));
    c.push(one(
        "resourceId 1e400",
        signed_body(edited(b"\"resourceId\": 1", b"\"resourceId\": 1e400")),
        Filter(400, "MalformedJson"),
    ));
    c.push(one(
        "eventCount 2^64",
        signed_body(edited(
            b"\"eventCount\": 3",
            b"\"eventCount\": 18446744073709551616",
        )),
        Filter(422, "ValidationError"),
    ));
    // JSON, but not an object: refused before any struct is read from it (skipped without
    // recursion, so no stack is used).
    c.push(one(
        "array nested 10000 deep (not a message object)",
        signed_body([vec![b'['; 10_000], vec![b']'; 10_000]].concat()),
        Filter(422, "ValidationError"),
    ));
    c.push(one(
        "nesting 10000 deep in an ignored extra field (skipped without recursion: valid)",
        signed_body(edited(
            b"\"eventType\"",
            &[
                b"\"extra\": ".as_slice(),
                &vec![b'['; 10_000],
                &vec![b']'; 10_000],
                b", \"eventType\"",
            ]
            .concat(),
        )),
        Verified,
    ));
    c.push(one(
        "NUL byte inside a string",
        signed_body(edited(b"Lab Server A1", b"Lab\\u0000Server A1")),
        Filter(422, "ValidationError"),
    ));
    // Whether a key is usable is the sidecar's judgement (the reservation fails and the user
    // is told why); whatever it holds, the cloud-config is written by a YAML serializer.
    c.push(one(
        "SSH key with an escaped newline and YAML",
        signed_body(edited(
            b"\"sshPublicKey\": \"ssh-ed25519",
            b"\"sshPublicKey\": \"\\nruncmd: [reboot]\\nssh-ed25519",
        )),
        Verified,
    ));
    c.push(one(
        "trailing garbage after the JSON",
        signed_body([good.clone(), b"\n{}".to_vec()].concat()),
        Filter(400, "MalformedJson"),
    ));
    c.push(one(
        "signed empty body",
        signed_body(Vec::new()),
        Filter(400, "MalformedJson"),
    ));

    // --- Size and header limits.
    c.push(one(
        "chunked body over the cap",
        raw(
            "POST",
            "/webhook",
            &[
                ("content-type", b"application/json"),
                ("transfer-encoding", b"chunked"),
                ("x-webhook-signature", goods.as_bytes()),
                ("connection", b"close"),
            ],
            &http::chunked(&vec![b' '; 70_000], 8192),
        ),
        Filter(413, "PayloadTooLarge"),
    ));
    c.push(one(
        "101 headers",
        post(
            &good,
            Some(goods),
            &(0..101)
                .map(|_| ("x-many", b"1".as_slice()))
                .collect::<Vec<_>>(),
        ),
        Envoy(431),
    ));
    c.push(one(
        "request target of 20 KB",
        post_to(
            &format!("/webhook?{}", "a".repeat(20_000)),
            &good,
            Some(goods),
            &[],
        ),
        Envoy(431),
    ));

    // --- Protocol switches on HTTP/1.1.
    c.push(one(
        "upgrade to h2c on the webhook, unsigned",
        post(
            &good,
            None,
            &[
                ("upgrade", b"h2c"),
                ("http2-settings", b"AAMAAABkAARAAAAAAAIAAAAA"),
            ],
        ),
        Filter(401, "MissingSignature"),
    ));
    c.push(one(
        "websocket upgrade of the webhook",
        raw(
            "GET",
            "/webhook",
            &[
                ("connection", b"upgrade"),
                ("upgrade", b"websocket"),
                ("sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-version", b"13"),
            ],
            b"",
        ),
        Envoy(403),
    ));
    c
}

/// A signed request whose signature header is split by an obs-fold continuation line.
fn obs_fold(body: &[u8], sig: &str) -> Vec<u8> {
    let (a, b) = sig.split_at(20);
    let mut r = format!(
        "POST /webhook HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nx-webhook-signature: {a}\r\n {b}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The bytes each upstream connection received since `before` (its lengths then).
fn new_bytes(now: &[Vec<u8>], before: &[usize]) -> Vec<Vec<u8>> {
    now.iter()
        .enumerate()
        .map(|(i, c)| c[before.get(i).copied().unwrap_or(0).min(c.len())..].to_vec())
        .filter(|c| !c.is_empty())
        .collect()
}

/// How many complete requests `raw` holds, if it is exactly that (no stray byte before,
/// between or after them). Envoy forwards with `content-length` (the buffer filter).
fn whole_requests(raw: &[u8]) -> Option<usize> {
    let mut rest = raw;
    let mut n = 0;
    while !rest.is_empty() {
        let end = http::find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(Some(0), |v| v.trim().parse().ok())?;
        rest = rest.get(end + 4 + len..)?;
        n += 1;
    }
    Some(n)
}

/// A filter error: the JSON shape of the replaced service.
fn check_filter(r: &Response, status: u16, error_type: &str) -> Result<(), String> {
    let body: Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&r.body)))?;
    if r.status != status || body["error_type"] != error_type {
        return Err(format!("got {} {body}", r.status));
    }
    let shaped = body["detail"].as_str().is_some_and(|d| !d.is_empty())
        && body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z'))
        && r.header("content-type") == Some("application/json");
    if !shaped {
        return Err(format!("not the error shape: {body}"));
    }
    Ok(())
}

fn check(r: &Response, e: Expect) -> Result<(), String> {
    match e {
        Filter(status, error_type) => check_filter(r, status, error_type),
        Envoy(status) => {
            // Not the filter's reply: the filter always answers with its error shape.
            let from_filter = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .is_some_and(|v| v.get("error_type").is_some() && v.get("timestamp").is_some());
            if r.status != status || (from_filter && status != 431 && status != 408) {
                return Err(format!(
                    "got {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            Ok(())
        }
        Head(status) => {
            if r.status != status || r.header("content-type") != Some("application/json") {
                return Err(format!("got {} {:?}", r.status, r.headers));
            }
            Ok(())
        }
        Verified | Exempt => {
            if r.status != 200 || r.body != envoy_harness::upstream::REPLY_BODY {
                return Err(format!(
                    "got {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            Ok(())
        }
    }
}

/// Runs the table on one Envoy, collecting every mismatch, then fails with all of them.
#[test]
fn the_hostile_corpus_is_refused_without_a_byte_upstream_and_the_vm_keeps_serving() {
    let b = Bench::default_started();
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let before_reqs = b.upstream.requests().len();
        let before_conns: Vec<usize> = b.upstream.connections().iter().map(Vec::len).collect();
        let started = std::time::Instant::now();
        let parts: Vec<&[u8]> = case.parts.iter().map(Vec::as_slice).collect();
        // A case expecting no reply at all only waits for a second of silence.
        let quiet = if case.expect.is_empty() {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        let wanted = case.expect.len();
        let raw = http::send_raw_until(b.envoy.listener(), &parts, quiet, |raw| {
            wanted > 0 && http::complete_responses(raw) >= wanted
        })
        .unwrap();
        let responses = http::parse_responses(&raw);
        let mut problems = Vec::new();
        if responses.len() != case.expect.len() {
            problems.push(format!(
                "{} responses, expected {}: {:?}",
                responses.len(),
                case.expect.len(),
                String::from_utf8_lossy(&raw[..raw.len().min(600)])
            ));
        }
        for (r, e) in responses.iter().zip(&case.expect) {
            if let Err(p) = check(r, *e) {
                problems.push(format!("expected {e:?}, {p}"));
            }
        }
        // Exactly the expected requests upstream, and not one byte besides them.
        let reqs = b.upstream.requests();
        let new = &reqs[before_reqs.min(reqs.len())..];
        let forwarded: Vec<Expect> = case
            .expect
            .iter()
            .copied()
            .filter(|e| matches!(e, Verified | Exempt))
            .collect();
        if new.len() != forwarded.len() {
            let heads: Vec<&str> = new.iter().map(|r| r.head.as_str()).collect();
            problems.push(format!(
                "upstream received {} requests: {heads:#?}",
                new.len()
            ));
        }
        for (req, e) in new.iter().zip(&forwarded) {
            let verified = req.header_values("x-webhook-verified");
            match e {
                Verified
                    if verified != ["true"]
                        || req.header_values("x-webhook-secret-id") != ["current"]
                        || req.header_values("x-webhook-name") != ["reservations"] =>
                {
                    problems.push(format!("forwarded without verification: {}", req.head));
                }
                Exempt if !verified.is_empty() || !req.request_line().contains(" /healthz") => {
                    problems.push(format!("exempt request forwarded as: {}", req.head));
                }
                _ => {}
            }
        }
        let sent_upstream = new_bytes(&b.upstream.connections(), &before_conns);
        if let Some(c) = sent_upstream
            .iter()
            .find(|c| http::find(c, b"spoof").is_some())
        {
            let at = http::find(c, b"spoof").unwrap_or(0);
            let head_end = http::find(c, b"\r\n\r\n").unwrap_or(c.len());
            problems.push(format!(
                "a spoofed value reached the upstream, {}: {:?}",
                if at < head_end {
                    "in the head"
                } else {
                    "after the head"
                },
                String::from_utf8_lossy(&c[at.saturating_sub(300)..(at + 100).min(c.len())])
            ));
        }
        let whole = sent_upstream
            .iter()
            .map(|c| whole_requests(c))
            .sum::<Option<usize>>();
        if whole != Some(forwarded.len()) {
            problems.push(format!(
                "{} bytes upstream are not exactly the {} forwarded requests",
                sent_upstream.iter().map(Vec::len).sum::<usize>(),
                forwarded.len()
            ));
        }
        if started.elapsed() > Duration::from_secs(8) {
            problems.push(format!("took {:?}", started.elapsed()));
        }
        // The VM still serves: a valid delivery passes at once.
        let (next, next_sig) = valid(&format!("after-{i}"));
        let r = http::send(b.envoy.listener(), &[&post(&next, Some(&next_sig), &[])]).unwrap();
        if r.status != 200 {
            problems.push(format!(
                "the next valid delivery got {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        eprintln!("[{i}] {:?} {}", started.elapsed(), case.name);
        if !problems.is_empty() {
            failures.push(format!(
                "[{i}] {}:\n    {}",
                case.name,
                problems.join("\n    ")
            ));
        }
    }
    let log = b.envoy.log();
    assert!(!log.contains("panicked"), "the filter panicked:\n{log}");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Nothing but the valid deliveries reached the upstream (one after each case, plus the
    // cases that forward).
    std::thread::sleep(Duration::from_millis(50));
    assert!(b.upstream.requests().len() >= cases.len());
}

/// One h2c request: headers, then body frames, then trailers (or end of stream), as the case
/// says. Returns the status and the body, or `None` when Envoy reset the stream.
struct H2Case {
    name: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    data: Vec<Vec<u8>>,
    trailers: Vec<(&'static str, String)>,
    expect: Option<Expect>,
}

async fn h2_send(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    case: &H2Case,
) -> Result<Option<Response>, String> {
    let mut req = ::http::Request::builder()
        .method("POST")
        .uri(format!("http://test{}", case.path));
    for (k, v) in &case.headers {
        req = req.header(
            *k,
            ::http::HeaderValue::from_bytes(v).map_err(|e| e.to_string())?,
        );
    }
    let req = req.body(()).map_err(|e| e.to_string())?;
    let no_body = case.data.is_empty() && case.trailers.is_empty();
    let mut client = client.clone().ready().await.map_err(|e| e.to_string())?;
    let (resp, mut stream) = client
        .send_request(req, no_body)
        .map_err(|e| e.to_string())?;
    for (i, d) in case.data.iter().enumerate() {
        let last = i + 1 == case.data.len() && case.trailers.is_empty();
        stream
            .send_data(bytes::Bytes::from(d.clone()), last)
            .map_err(|e| e.to_string())?;
    }
    if !case.trailers.is_empty() {
        let mut t = ::http::HeaderMap::new();
        for (k, v) in &case.trailers {
            t.append(
                ::http::HeaderName::from_static(k),
                ::http::HeaderValue::from_str(v).map_err(|e| e.to_string())?,
            );
        }
        stream.send_trailers(t).map_err(|e| e.to_string())?;
    }
    let resp = match tokio::time::timeout(Duration::from_secs(10), resp).await {
        Err(_) => return Err("no response in 10 s".into()),
        Ok(Err(e)) if e.is_reset() || e.is_remote() => return Ok(None),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(r)) => r,
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok(Some(Response {
        status,
        headers,
        body: data,
    }))
}

fn h2_cases() -> Vec<H2Case> {
    let json = || ("content-type", b"application/json".to_vec());
    let (a, a_sig) = valid("h2-a");
    let (b, _) = valid("h2-b");
    let (c, c_sig) = valid("h2-c");
    let b_sig_elsewhere = sign(b"other");
    let halves = |v: &[u8]| {
        let (x, y) = v.split_at(v.len() / 2);
        vec![x.to_vec(), y.to_vec()]
    };
    vec![
        H2Case {
            name: "h2c signed, body in two frames, then trailers",
            path: "/webhook",
            headers: vec![json(), ("x-webhook-signature", a_sig.clone().into_bytes())],
            data: halves(&a),
            trailers: vec![("x-checksum", "abc".into())],
            expect: Some(Verified),
        },
        H2Case {
            name: "h2c signed, spoofed verification headers in the trailers",
            path: "/webhook",
            headers: vec![json(), ("x-webhook-signature", c_sig.clone().into_bytes())],
            data: halves(&c),
            trailers: vec![
                ("x-webhook-verified", "spoof".into()),
                ("x-webhook-secret-id", "spoof".into()),
            ],
            expect: Some(Verified),
        },
        H2Case {
            name: "h2c signature only in the trailers",
            path: "/webhook",
            headers: vec![json()],
            data: halves(&b),
            trailers: vec![("x-webhook-signature", sign(&b))],
            expect: Some(Filter(401, "MissingSignature")),
        },
        H2Case {
            name: "h2c wrong signature in the headers, right one in the trailers",
            path: "/webhook",
            headers: vec![
                json(),
                ("x-webhook-signature", b_sig_elsewhere.into_bytes()),
            ],
            data: halves(&b),
            trailers: vec![("x-webhook-signature", sign(&b))],
            expect: Some(Filter(401, "InvalidSignature")),
        },
        H2Case {
            name: "h2c unsigned, no body",
            path: "/webhook",
            headers: vec![json()],
            data: vec![],
            trailers: vec![],
            expect: Some(Filter(401, "MissingSignature")),
        },
        H2Case {
            name: "h2c body over the cap in frames, no content-length",
            path: "/webhook",
            headers: vec![json(), ("x-webhook-signature", sign(&b).into_bytes())],
            data: vec![vec![b' '; 16_000]; 5],
            trailers: vec![],
            expect: Some(Filter(413, "PayloadTooLarge")),
        },
        H2Case {
            name: "h2c content-length smaller than the data",
            path: "/webhook",
            headers: vec![
                json(),
                ("x-webhook-signature", sign(&b).into_bytes()),
                ("content-length", b"10".to_vec()),
            ],
            data: vec![b.clone()],
            trailers: vec![],
            expect: None,
        },
        H2Case {
            name: "h2c dot segments from the exempt path",
            path: "/healthz/../webhook",
            headers: vec![json()],
            data: vec![b.clone()],
            trailers: vec![],
            expect: Some(Filter(401, "MissingSignature")),
        },
        H2Case {
            name: "h2c non-UTF-8 signature value",
            path: "/webhook",
            headers: vec![json(), ("x-webhook-signature", b"sha256=\xff\xfe".to_vec())],
            data: vec![b.clone()],
            trailers: vec![],
            expect: Some(Filter(401, "MalformedSignature")),
        },
        H2Case {
            name: "h2c signed body with a BOM",
            path: "/webhook",
            headers: vec![
                json(),
                ("x-webhook-signature", {
                    let mut bom = b"\xef\xbb\xbf".to_vec();
                    bom.extend_from_slice(&b);
                    sign(&bom).into_bytes()
                }),
            ],
            data: vec![[b"\xef\xbb\xbf".as_slice(), &b].concat()],
            trailers: vec![],
            expect: Some(Filter(400, "MalformedJson")),
        },
    ]
}

/// HTTP/2 without TLS (prior knowledge, the listener's codec is `AUTO`), with request
/// trailers: decided as HTTP/1.1 is; rejected streams send zero bytes upstream; the VM keeps
/// serving; and several streams on one connection are decided each on its own.
#[test]
fn h2c_requests_with_trailers_are_decided_like_http1_and_send_nothing_upstream_when_refused() {
    let b = Bench::default_started();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = b.envoy.listener();
    let mut failures = Vec::new();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client;
        let cases = h2_cases();
        for (i, case) in cases.iter().enumerate() {
            let before_reqs = b.upstream.requests().len();
            let before_conns: Vec<usize> = b.upstream.connections().iter().map(Vec::len).collect();
            let mut problems = Vec::new();
            match (h2_send(&mut client, case).await, case.expect) {
                (Err(e), _) => problems.push(format!("client error: {e}")),
                (Ok(None), None) => {}
                (Ok(None), Some(e)) => problems.push(format!("stream reset, expected {e:?}")),
                (Ok(Some(r)), None) => problems.push(format!(
                    "expected a reset, got {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                )),
                (Ok(Some(r)), Some(e)) => {
                    if let Err(p) = check(&r, e) {
                        problems.push(format!("expected {e:?}, {p}"));
                    }
                }
            }
            let reqs = b.upstream.requests();
            let new = &reqs[before_reqs.min(reqs.len())..];
            let want = usize::from(case.expect == Some(Verified));
            let sent_upstream = new_bytes(&b.upstream.connections(), &before_conns);
            let whole = sent_upstream
                .iter()
                .map(|c| whole_requests(c))
                .sum::<Option<usize>>();
            if new.len() != want || whole != Some(want) {
                let heads: Vec<&str> = new.iter().map(|r| r.head.as_str()).collect();
                problems.push(format!("upstream received: {heads:#?}"));
            }
            if sent_upstream
                .iter()
                .any(|c| http::find(c, b"spoof").is_some())
            {
                problems.push("a spoofed value reached the upstream".into());
            }
            if want == 1
                && new.iter().any(|r| {
                    r.header_values("x-webhook-verified") != ["true"]
                        || r.header_values("x-webhook-secret-id") != ["current"]
                })
            {
                problems.push("forwarded without verification".into());
            }
            let (next, next_sig) = valid(&format!("h2-after-{i}"));
            let payload = post(&next, Some(&next_sig), &[]);
            let r = tokio::task::spawn_blocking(move || http::send(addr, &[&payload]))
                .await
                .unwrap();
            if !matches!(&r, Ok(r) if r.status == 200) {
                problems.push(format!("the next valid delivery got {r:?}"));
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "[{i}] {}:\n    {}",
                    case.name,
                    problems.join("\n    ")
                ));
            }
        }

        // Two streams at once on one connection: the valid one forwarded, the unsigned one not.
        let before = b.upstream.requests().len();
        let (x, x_sig) = valid("h2-concurrent");
        let good = H2Case {
            name: "concurrent valid",
            path: "/webhook",
            headers: vec![
                ("content-type", b"application/json".to_vec()),
                ("x-webhook-signature", x_sig.into_bytes()),
            ],
            data: vec![x.clone()],
            trailers: vec![],
            expect: Some(Verified),
        };
        let bad = H2Case {
            name: "concurrent unsigned",
            path: "/webhook",
            headers: vec![("content-type", b"application/json".to_vec())],
            data: vec![x.clone()],
            trailers: vec![],
            expect: Some(Filter(401, "MissingSignature")),
        };
        let (mut c1, mut c2) = (client.clone(), client.clone());
        let (r1, r2) = tokio::join!(h2_send(&mut c1, &good), h2_send(&mut c2, &bad));
        let statuses = (
            r1.ok().flatten().map(|r| r.status),
            r2.ok().flatten().map(|r| r.status),
        );
        if statuses != (Some(200), Some(401)) {
            failures.push(format!("concurrent streams answered {statuses:?}"));
        }
        let reqs = b.upstream.requests();
        if reqs.len() != before + 1 || reqs.last().map(|r| r.body.clone()) != Some(x) {
            failures.push("concurrent streams: upstream did not get exactly the valid one".into());
        }
    });
    assert!(!b.envoy.log().contains("panicked"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
