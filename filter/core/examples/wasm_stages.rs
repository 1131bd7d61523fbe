//! The core's per-request work, stage by stage, compiled to wasm and timed inside V8 (Node),
//! the engine Envoy runs the filter in: `bench/cpu/wasm-stages.sh` builds this for
//! `wasm32-wasip1` with the filter's release profile and runs it under Node's WASI. Natively
//! (`cargo run --release -p webhook-core --example wasm_stages`) it prints the same rows for
//! comparison.
//!
//! Rows: header checks (`flow::on_request_headers`), HMAC-SHA256 of the 2.6 KB body, the body
//! rules (`event::check_body`), and the whole decision (`Pending::finish`), each as the median
//! of ROUNDS rounds of ITERS calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark, not a path

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use webhook_core::config::CompiledConfig;
use webhook_core::flow::{self, HeadersDecision};
use webhook_core::{event, signature};

const BODY: &[u8] = include_bytes!("../tests/fixtures/event-start-rsa.json");
const CONFIG: &str = r#"{"webhooks":[{"name":"reservations","path":"/webhook",
    "secrets":[{"env":"WEBHOOK_SECRET"}]}]}"#;
const SECRET: &str = "bench-secret-0123456789abcdef0123456789";
const ITERS: u32 = 2000;
const ROUNDS: usize = 7;

fn time(name: &str, mut f: impl FnMut() -> bool) {
    let mut per_call = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..ITERS {
            assert!(black_box(f()), "{name} failed");
        }
        per_call.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(ITERS));
    }
    per_call.sort_by(f64::total_cmp);
    println!("{name:<44} {:>8.2} µs", per_call[ROUNDS / 2]);
}

fn main() {
    let cfg = CompiledConfig::from_json(CONFIG.as_bytes(), |_| Some(SECRET.to_owned())).unwrap();
    // A minute after the fixture's timestamp, inside its reservations.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_749_385_860);
    let unix = flow::unix_seconds(now);
    let sig = signature::signature_header_value(SECRET.as_bytes(), BODY);
    let header = |name: &str| match name {
        "content-type" => Some("application/json".to_owned()),
        "content-length" => Some(BODY.len().to_string()),
        "x-webhook-signature" => Some(sig.clone()),
        _ => None,
    };
    let pending = || match flow::on_request_headers(&cfg, "POST", "/webhook", header) {
        HeadersDecision::Inspect(p) => p,
        other => panic!("{other:?}"),
    };
    let p = pending();
    println!(
        "body {} B, {ITERS} calls x {ROUNDS} rounds, median per call",
        BODY.len()
    );
    time("header checks (on_request_headers)", || {
        matches!(
            flow::on_request_headers(&cfg, "POST", "/webhook", header),
            HeadersDecision::Inspect(_)
        )
    });
    let key = signature::SecretKey::new("k", SECRET.as_bytes());
    time("HMAC-SHA256 of the body", || {
        black_box(key.tag_with_prefix(&[], black_box(BODY))).len() == 32
    });
    time("body rules (event::check_body)", || {
        event::check_body(black_box(BODY), unix, 0, 300).is_ok()
    });
    time("whole decision (Pending::finish)", || {
        p.finish(&cfg, black_box(BODY), now).is_ok()
    });
    time("reply body of a 401 (Rejection::body)", || {
        let r = webhook_core::flow::Rejection::from(webhook_core::Error::BadSignature);
        !r.body(now).is_empty()
    });
}
