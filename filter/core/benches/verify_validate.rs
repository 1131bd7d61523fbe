//! Criterion benchmark: signature verification plus event validation of the ~2 KB sample, the
//! work the filter does per accepted request (`cargo bench -p webhook-core`).

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::time::{Duration, SystemTime};

    use criterion::{Criterion, black_box};
    use webhook_core::config::CompiledConfig;
    use webhook_core::flow::{self, HeadersDecision};
    use webhook_core::signature;

    /// The ~2 KB sample (ed25519 key) and the same event with a 4096-bit RSA key (~2.6 KB).
    const BODY: &[u8] = include_bytes!("../tests/fixtures/event-start.json");
    const BODY_RSA: &[u8] = include_bytes!("../tests/fixtures/event-start-rsa.json");
    const CONFIG: &str = r#"{"webhooks":[{"name":"reservations","path":"/webhook",
        "secrets":[{"env":"OLD"},{"env":"NEW"}],"replay_window_seconds":0}]}"#;

    pub fn bench(c: &mut Criterion) {
        let env = |k: &str| Some(format!("secret-{k}"));
        let Ok(cfg) = CompiledConfig::from_json(CONFIG.as_bytes(), env) else {
            return;
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        // OLD is the first secret (the common case: one HMAC); NEW the second (rotation: two).
        for (name, body, secret) in [
            ("decide 2KB ed25519, 1st secret", BODY, &b"secret-OLD"[..]),
            ("decide 2KB ed25519, 2nd secret", BODY, b"secret-NEW"),
            ("decide 2.6KB rsa4096, 1st secret", BODY_RSA, b"secret-OLD"),
        ] {
            let sig = signature::signature_header_value(secret, body);
            c.bench_function(name, |b| {
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
                    p.finish(&cfg, black_box(body), now).is_ok()
                })
            });
        }
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
