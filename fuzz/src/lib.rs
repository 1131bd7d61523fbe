//! Shared pieces of the fuzz targets: the input framing, the configurations the request is
//! decided against, a driver that calls `webhook_core::flow` exactly as the proxy-wasm adapter
//! does (`filter/wasm/src/lib.rs`), and the properties every decision must hold.
//!
//! # Input framing (`request`, `scheme_headers`)
//! Raw bytes, so seeds are readable and libFuzzer's mutations stay close to real requests:
//! ```text
//! byte 0      selector (which webhook / scheme)
//! byte 1      flags: bit 0 sign correctly (the driver adds the scheme's headers first, so the
//!             fuzzer reaches the body rules), bit 1 end with trailers, bit 2 no body (end of
//!             stream with the headers), bits 4-7 body chunk size = 2^n bytes
//! bytes 2-5   clock: i32 little endian, seconds after the fixtures' timestamp
//! rest        "METHOD PATH\n", then "name: value\n" lines, an empty line, then the body
//! ```
//! Header values stay bytes until looked up, then become text with `from_utf8_lossy`, as in
//! the adapter (Envoy passes obs-text through).
#![forbid(unsafe_code)]
// Fuzz targets report a broken property by panicking: that is how libFuzzer records a crash.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use webhook_core::config::{CompiledConfig, Schema, Webhook};
use webhook_core::flow::{self, HeadersDecision, Rejection};
use webhook_core::scheme::{self, Scheme};
use webhook_core::{event, replay, signature};

/// The fixtures' `timestamp` (2025-06-08T14:30:00+02:00) as unix seconds: the clock is this
/// plus the input's offset, so the fixtures' STARTs are fresh for small offsets.
pub const FIXTURE_TS: i64 = 1_749_385_800;

/// Secrets of the fuzzed configurations (never real values).
pub const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";
/// The second (rotation) secret.
pub const PREVIOUS: &str = "fuzz-previous-9876543210fedcba987654";
/// Standard Webhooks secret: `whsec_` + base64 of 32 bytes.
pub const SVIX_SECRET: &str = "whsec_ZnV6ei1zdml4LXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm";

/// The environment the configurations read their secrets from.
pub fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some(SECRET.into()),
        "PREVIOUS" => Some(PREVIOUS.into()),
        "SVIX" => Some(SVIX_SECRET.into()),
        "SHORT" => Some("shortsecretvalue".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Every secret value the environment holds: none may ever appear in a reply or a
/// configuration message (the adapter logs those).
pub const ALL_SECRETS: [&str; 4] = [SECRET, PREVIOUS, SVIX_SECRET, "shortsecretvalue"];

/// The reservation event JSON Schema of the repository.
pub const RESERVATION_SCHEMA: &str = include_str!("../../schemas/reservation-event.schema.json");

/// One filter guarding a webhook of every kind (paths `/w0` .. `/w8`, and `/webhook` as the
/// deployment's reservation webhook), as the senders' documented configurations write them.
pub fn all_webhooks_config(unmatched: &str) -> String {
    format!(
        r#"{{"unmatched":"{unmatched}","webhooks":[
  {{"preset":"reservation_system",
    "secrets":[{{"env":"SECRET","id":"current"}},{{"env":"PREVIOUS","id":"previous","optional":true}}]}},
  {{"name":"github","path":"/w1","scheme":{{"type":"github"}},"secrets":[{{"env":"SECRET"}}],
    "schema":"json","max_body_bytes":1048576,"replay_cache":{{"ttl_seconds":86400,"max_entries":4}}}},
  {{"name":"stripe","path":"/w2","scheme":{{"type":"stripe","tolerance_seconds":300}},
    "secrets":[{{"env":"SECRET"}}],"schema":"json"}},
  {{"name":"slack","path":"/w3","scheme":{{"type":"slack"}},"secrets":[{{"env":"SECRET"}}],"schema":"none"}},
  {{"name":"svix","path":"/w4","scheme":{{"type":"standard_webhooks"}},"secrets":[{{"env":"SVIX"}}],
    "schema":"json","replay_cache":{{"ttl_seconds":600}}}},
  {{"name":"shopify","path":"/w5","scheme":{{"type":"shopify"}},"secrets":[{{"env":"SECRET"}}],
    "schema":"json","replay_cache":{{}}}},
  {{"name":"custom","path":"/w6","methods":["POST","PUT"],
    "scheme":{{"type":"hmac_sha256_hex","header":"x-sig","prefix":"","delivery_id_header":"x-delivery"}},
    "secrets":[{{"env":"PREVIOUS","id":"p"}},{{"env":"SECRET","id":"s"}}],"max_body_bytes":4096,
    "schema":"reservation_event","replay_window_seconds":600,"max_clock_skew_seconds":0,
    "replay_cache":{{"status":429}}}},
  {{"name":"schema","path":"/w7","scheme":{{"type":"github"}},"secrets":[{{"env":"SECRET"}}],
    "schema":{{"json_schema":{RESERVATION_SCHEMA}}}}},
  {{"name":"unsigned","path":"/w8","allow_unsigned":true,"schema":"reservation_event"}}
]}}"#
    )
}

/// The two compiled configurations (`unmatched` pass and reject), built once.
pub fn configs() -> &'static [CompiledConfig; 2] {
    static CONFIGS: std::sync::OnceLock<[CompiledConfig; 2]> = std::sync::OnceLock::new();
    CONFIGS.get_or_init(|| {
        let compile =
            |u: &str| match CompiledConfig::from_json(all_webhooks_config(u).as_bytes(), env) {
                Ok(c) => c,
                Err(e) => panic!("the fuzz configuration must compile: {e}"),
            };
        [compile("pass"), compile("reject")]
    })
}

/// A decoded input.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Selector byte.
    pub selector: u8,
    /// Add a correct signature.
    pub sign: bool,
    /// End the request with trailers (the adapter decides in the trailers callback).
    pub trailers: bool,
    /// End of stream with the headers.
    pub no_body: bool,
    /// Body chunk size.
    pub chunk: usize,
    /// Seconds after [`FIXTURE_TS`].
    pub offset: i32,
    /// Request method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Headers as sent: lowercase names, raw value bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body.
    pub body: &'a [u8],
}

/// Decodes the framing described in the crate docs; `None` when too short.
pub fn parse(data: &[u8]) -> Option<Input<'_>> {
    let (&selector, rest) = data.split_first()?;
    let (&flags, rest) = rest.split_first()?;
    let clock: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let mut rest = rest.get(4..)?;
    let line = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let end = rest.iter().position(|&b| b == b'\n')?;
        let mut l = rest[..end].to_vec();
        *rest = &rest[end + 1..];
        if l.last() == Some(&b'\r') {
            l.pop();
        }
        Some(l)
    };
    let request_line = line(&mut rest).unwrap_or_default();
    let request_line = String::from_utf8_lossy(&request_line).into_owned();
    let (method, path) = request_line
        .split_once(' ')
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .unwrap_or((request_line.clone(), String::new()));
    let mut headers = Vec::new();
    while let Some(l) = line(&mut rest) {
        if l.is_empty() {
            break;
        }
        let colon = l.iter().position(|&b| b == b':').unwrap_or(l.len());
        let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
        let mut value = l.get(colon + 1..).unwrap_or_default();
        while let Some((b' ' | b'\t', v)) = value.split_first() {
            value = v;
        }
        headers.push((name, value.to_vec()));
    }
    Some(Input {
        selector,
        sign: flags & 1 != 0,
        trailers: flags & 2 != 0,
        no_body: flags & 4 != 0,
        chunk: 1usize << (flags >> 4),
        offset: i32::from_le_bytes(clock),
        method,
        path,
        headers,
        body: rest,
    })
}

/// The proxy clock of an input: the fixtures' time plus the offset, never before 1970 (a
/// proxy's clock is not, and no sender signs a negative unix time).
pub fn clock(offset: i32) -> (SystemTime, i64) {
    let unix = (FIXTURE_TS + i64::from(offset)).max(0);
    let secs = u64::try_from(unix).unwrap_or(0);
    (SystemTime::UNIX_EPOCH + Duration::from_secs(secs), unix)
}

/// The headers a correct sender of `scheme` would add for `body` at `unix`, with delivery id
/// `id` where the scheme carries one. `None` for a scheme with no usable secret here.
pub fn signed_headers(
    scheme: &Scheme,
    secret: &str,
    body: &[u8],
    unix: i64,
    id: &str,
) -> Option<Vec<(String, String)>> {
    let h = |k: &str, v: String| (k.to_owned(), v);
    Some(match scheme {
        // The real senders' Base64 for odd body lengths, the README's hex for even ones.
        Scheme::ReservationSystem { header } if body.len() % 2 == 1 => {
            vec![h(header, scheme::sign_reservation_system(secret, body))]
        }
        Scheme::ReservationSystem { header } => vec![h(
            header,
            signature::signature_header_value(secret.as_bytes(), body),
        )],
        Scheme::HmacSha256Hex {
            header,
            prefix,
            delivery_id_header,
        } => {
            let mut v = vec![h(
                header,
                format!("{prefix}{}", signature::sign_hex(secret.as_bytes(), body)),
            )];
            if let Some(d) = delivery_id_header {
                v.push(h(d, id.to_owned()));
            }
            v
        }
        Scheme::Github { header } => vec![
            h(header, scheme::sign_github(secret, body)),
            h("x-github-delivery", id.to_owned()),
        ],
        Scheme::Stripe { header, .. } => vec![h(header, scheme::sign_stripe(secret, unix, body))],
        Scheme::Slack {
            signature_header,
            timestamp_header,
            ..
        } => vec![
            h(signature_header, scheme::sign_slack(secret, unix, body)),
            h(timestamp_header, unix.to_string()),
        ],
        Scheme::StandardWebhooks { .. } => vec![
            h(
                "webhook-signature",
                scheme::sign_standard_webhooks(secret, id, unix, body)?,
            ),
            h("webhook-id", id.to_owned()),
            h("webhook-timestamp", unix.to_string()),
        ],
        Scheme::Shopify { header } => vec![
            h(header, scheme::sign_shopify(secret, body)),
            h("x-shopify-webhook-id", id.to_owned()),
        ],
    })
}

/// The secret a webhook of the fuzz configuration is keyed with (the last one listed).
pub fn secret_of(hook: &Webhook) -> &'static str {
    match hook.scheme {
        Scheme::StandardWebhooks { .. } => SVIX_SECRET,
        _ => SECRET,
    }
}

/// What the driver saw.
#[derive(Debug)]
pub enum Verdict {
    /// Unguarded: forwarded untouched.
    Passed,
    /// Forwarded after every check.
    Accepted,
    /// Answered by the filter.
    Rejected(u16),
}

/// Decides `input` against `cfg` exactly as the adapter drives the core, and asserts the
/// properties of every decision (see [`check_rejection`] and the accepted-request checks).
pub fn drive(cfg: &CompiledConfig, input: &Input<'_>) -> Verdict {
    let (now, unix) = clock(input.offset);
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), input.method.clone().into_bytes()),
        (":path".into(), input.path.clone().into_bytes()),
    ];
    if input.sign
        && let Some((_, hook)) = cfg.route(&input.path)
        && let Some(extra) = signed_headers(
            &hook.scheme,
            secret_of(hook),
            input.body,
            unix,
            "delivery-1",
        )
    {
        headers.extend(extra.into_iter().map(|(k, v)| (k, v.into_bytes())));
    }
    headers.extend(input.headers.iter().cloned());
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let method = lookup(":method").unwrap_or_default();
    let path = lookup(":path").unwrap_or_default();
    let pending = match flow::on_request_headers(cfg, &method, &path, lookup) {
        HeadersDecision::Pass => return Verdict::Passed,
        HeadersDecision::Reject(r) => return rejected(cfg, &r, now),
        HeadersDecision::Inspect(p) => p,
    };
    let upstream = pending.upstream_headers(cfg);
    assert!(
        upstream.iter().all(|(k, _)| k.starts_with("x-webhook-")),
        "{upstream:?}"
    );
    let body: &[u8] = if input.no_body { &[] } else { input.body };
    let mut buffered = 0usize;
    for chunk in body.chunks(input.chunk.max(1)) {
        buffered += chunk.len();
        if let Err(r) = pending.check_size(cfg, buffered) {
            assert_eq!(r.status(), 413);
            return rejected(cfg, &r, now);
        }
    }
    let _ = input.trailers; // The adapter decides the same way at trailers as at end of stream.
    match pending.finish(cfg, body, now) {
        Ok(verified) => {
            let hook = pending
                .webhook(cfg)
                .expect("an inspected request has a webhook");
            check_accepted(hook, &lookup, body, unix, verified.secret_id.as_deref());
            match (&verified.replay, &hook.replay_cache) {
                (Some(d), Some(rc)) => {
                    assert!(replay::valid_id(&d.id));
                    assert_eq!(d.key, replay::shared_data_key(&hook.name));
                    assert_eq!(d.cache, *rc);
                    let mut cache = replay::ReplayCache::default();
                    let (ttl, max) = (rc.ttl_seconds, rc.max_entries);
                    assert!(cache.insert(&d.id, unix, ttl, max).is_ok(), "a new id");
                    let stored = replay::ReplayCache::decode(&cache.encode());
                    assert_eq!(stored, cache, "an id survives storage");
                    assert!(cache.insert(&d.id, unix, ttl, max).is_err(), "a replay");
                    assert!(cache.remove(&d.id));
                }
                (None, None) => {}
                (d, rc) => panic!("delivery {d:?} to admit into cache {rc:?}"),
            }
            Verdict::Accepted
        }
        Err(r) => rejected(cfg, &r, now),
    }
}

fn rejected(cfg: &CompiledConfig, r: &Rejection, now: SystemTime) -> Verdict {
    check_rejection(cfg, r, now);
    Verdict::Rejected(r.status())
}

/// A rejection: a documented status, a JSON body in the replaced service's shape, no secret.
pub fn check_rejection(cfg: &CompiledConfig, r: &Rejection, now: SystemTime) {
    let status = r.status();
    let replay_statuses: Vec<u16> = cfg
        .webhooks
        .iter()
        .filter_map(|w| w.replay_cache.map(|c| c.status))
        .collect();
    assert!(
        [400, 401, 404, 405, 413, 415, 422].contains(&status) || replay_statuses.contains(&status),
        "undocumented status {status}: {r:?}"
    );
    let body = r.body(now);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "reply is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    assert!(
        v["error_type"].as_str().is_some_and(|d| !d.is_empty()),
        "{v}"
    );
    assert!(
        v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
    if v.get("field").is_some() {
        assert!([400, 422].contains(&status), "field on a {status}: {v}");
    }
    let headers = r.headers();
    assert!(headers.contains(&("content-type", "application/json".to_owned())));
    if status == 405 {
        assert!(
            headers.iter().any(|(k, _)| *k == "allow"),
            "405 without allow"
        );
    }
    let text = String::from_utf8_lossy(&body);
    for s in ALL_SECRETS {
        assert!(!text.contains(s), "a secret in a reply: {text}");
    }
}

/// An accepted request: within the cap; signed by a configured secret (checked independently
/// for the hex schemes); a reservation event the sidecar accepts too.
fn check_accepted(
    hook: &Webhook,
    lookup: &impl Fn(&str) -> Option<String>,
    body: &[u8],
    unix: i64,
    secret_id: Option<&str>,
) {
    assert!(u64::try_from(body.len()).is_ok_and(|n| n <= hook.max_body_bytes));
    if hook.allow_unsigned {
        assert_eq!(secret_id, None);
    } else {
        assert!(secret_id.is_some(), "accepted without a matching secret");
    }
    if let Scheme::HmacSha256Hex { header, prefix, .. } = &hook.scheme
        && !hook.allow_unsigned
    {
        let value = lookup(header).expect("accepted without its signature header");
        let tag = signature::parse_hex_signature(&value, prefix).expect("accepted, so parsable");
        let ours = [SECRET, PREVIOUS].map(|s| signature::sign_hex(s.as_bytes(), body));
        assert!(
            ours.contains(&hex(&tag)),
            "accepted a signature of no configured secret"
        );
    }
    if let Scheme::ReservationSystem { header } = &hook.scheme
        && !hook.allow_unsigned
    {
        let value = lookup(header).expect("accepted without its signature header");
        let value = value.trim();
        let ours = [SECRET, PREVIOUS].map(|s| {
            [
                scheme::sign_reservation_system(s, body),
                signature::sign_hex(s.as_bytes(), body),
            ]
        });
        let hex_part = value
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("sha256="))
            .map(|_| value[7..].to_ascii_lowercase());
        let matched = ours.iter().any(|[b64, hex]| match &hex_part {
            Some(h) => h == hex,
            None => value == b64,
        });
        assert!(matched, "accepted a signature of no configured secret");
    }
    if hook.schema == Schema::ReservationEvent {
        // The sidecar validates again with `event::validate` + `check_freshness`: whatever the
        // filter forwards, the sidecar must accept too (or it answers 4xx to a valid sender).
        let ev = event::validate(body)
            .unwrap_or_else(|e| panic!("filter accepted, sidecar refuses: {e:?}"));
        event::check_freshness(
            &ev,
            unix,
            hook.replay_window_seconds,
            hook.max_clock_skew_seconds,
        )
        .unwrap_or_else(|e| panic!("filter accepted, sidecar finds it stale: {e:?}"));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
