//! Criterion benchmark: signature verification plus event validation of the ~2 KB sample, the
//! work the filter does per accepted request (`cargo bench -p webhook-core`).

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::time::{Duration, SystemTime};

    use criterion::{Criterion, black_box};
    use webhook_core::config::CompiledConfig;
    use webhook_core::flow::{self, HeadersDecision};
    use webhook_core::signature;

    const BODY: &[u8] = include_bytes!("../tests/fixtures/event-start-rsa.json");
    const CONFIG: &str = r#"{"webhooks":[{"name":"reservations","path":"/webhook",
        "secrets":[{"env":"OLD"},{"env":"NEW"}],"replay_window_seconds":0}]}"#;

    pub fn bench(c: &mut Criterion) {
        let env = |k: &str| Some(format!("secret-{k}"));
        let Ok(cfg) = CompiledConfig::from_json(CONFIG.as_bytes(), env) else {
            return;
        };
        // Signed with the second secret: the worst case, both secrets are tried.
        let sig = signature::signature_header_value(b"secret-NEW", BODY);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        c.bench_function("headers+verify+validate 2KB (2 secrets)", |b| {
            b.iter(|| {
                let header = |name: &str| match name {
                    "content-type" => Some("application/json".to_owned()),
                    "x-webhook-signature" => Some(sig.clone()),
                    _ => None,
                };
                let HeadersDecision::Inspect(p) =
                    flow::on_request_headers(&cfg, "POST", "/webhook", header)
                else {
                    return false;
                };
                p.finish(&cfg, black_box(BODY), now).is_ok()
            })
        });
        c.bench_function("event::validate 2KB", |b| {
            b.iter(|| webhook_core::event::validate(black_box(BODY)).is_ok())
        });
        c.bench_function("hmac-sha256 2KB", |b| {
            b.iter(|| signature::sign_hex(b"secret", black_box(BODY)))
        });
    }
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_group! {
    name = benches;
    config = criterion::Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = native::bench
}
#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(benches);

#[cfg(target_arch = "wasm32")]
fn main() {}
