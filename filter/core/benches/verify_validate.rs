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
        "secrets":[{"env":"OLD"},{"env":"NEW"}]}]}"#;

    pub fn bench(c: &mut Criterion) {
        // 32-byte secrets: configuration refuses shorter ones.
        let env = |k: &str| Some(format!("secret-{k}-0123456789abcdef0123456"));
        let Ok(cfg) = CompiledConfig::from_json(CONFIG.as_bytes(), env) else {
            return;
        };
        // A minute after the fixtures' timestamp, inside their reservations (a START after its
        // last eventEnd is refused, which would measure the rejection path).
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_749_385_860);
        // OLD is the first secret (the common case: one HMAC); NEW the second (rotation: two).
        for (name, body, secret) in [
            (
                "decide 2KB ed25519, 1st secret",
                BODY,
                &b"secret-OLD-0123456789abcdef0123456"[..],
            ),
            (
                "decide 2KB ed25519, 2nd secret",
                BODY,
                b"secret-NEW-0123456789abcdef0123456",
            ),
            (
                "decide 2.6KB rsa4096, 1st secret",
                BODY_RSA,
                b"secret-OLD-0123456789abcdef0123456",
            ),
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
        // The same body through `schema: {"json_schema": <schemas/reservation-event.schema.json>}`
        // (unsigned, so only the body check differs from "decide ... 1st secret" minus HMAC).
        #[cfg(feature = "json-schema")]
        {
            let schema = include_str!("../../../schemas/reservation-event.schema.json");
            for (name, schema_json) in [
                (
                    "body check 2KB reservation_event (Rust rules)",
                    "\"reservation_event\"".to_owned(),
                ),
                (
                    "body check 2KB json_schema (reservation schema)",
                    format!("{{\"json_schema\":{schema}}}"),
                ),
            ] {
                let json = format!(
                    r#"{{"webhooks":[{{"name":"r","path":"/webhook","allow_unsigned":true,
                        "schema":{schema_json}}}]}}"#
                );
                let Ok(cfg) = CompiledConfig::from_json(json.as_bytes(), |_| None) else {
                    return;
                };
                c.bench_function(name, |b| {
                    b.iter(|| {
                        let header = |name: &str| {
                            (name == "content-type").then(|| "application/json".to_owned())
                        };
                        let HeadersDecision::Inspect(p) =
                            flow::on_request_headers(&cfg, "POST", "/webhook", header)
                        else {
                            return false;
                        };
                        p.finish(&cfg, black_box(BODY), now).is_ok()
                    })
                });
            }
        }
        // Other schemes' header parsing + HMAC over the same 2 KB body (schema "json").
        for (name, scheme, secret) in [
            (
                "scheme stripe 2KB",
                r#"{"type":"stripe","tolerance_seconds":0}"#,
                "whsec_abc",
            ),
            (
                "scheme standard_webhooks 2KB",
                r#"{"type":"standard_webhooks","tolerance_seconds":0}"#,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ] {
            let json = format!(
                r#"{{"webhooks":[{{"name":"s","path":"/s","scheme":{scheme},"schema":"json",
                    "min_secret_bytes":1,"secrets":[{{"env":"S"}}]}}]}}"#
            );
            let Ok(cfg) = CompiledConfig::from_json(json.as_bytes(), |_| Some(secret.to_owned()))
            else {
                return;
            };
            let stripe = webhook_core::scheme::sign_stripe(secret, 1, BODY);
            let std = webhook_core::scheme::sign_standard_webhooks(secret, "m", 1, BODY)
                .unwrap_or_default();
            c.bench_function(name, |b| {
                b.iter(|| {
                    let header = |n: &str| match n {
                        "content-type" => Some("application/json".to_owned()),
                        "stripe-signature" => Some(stripe.clone()),
                        "webhook-signature" => Some(std.clone()),
                        "webhook-id" => Some("m".to_owned()),
                        "webhook-timestamp" => Some("1".to_owned()),
                        _ => None,
                    };
                    let HeadersDecision::Inspect(p) =
                        flow::on_request_headers(&cfg, "POST", "/s", header)
                    else {
                        return false;
                    };
                    p.finish(&cfg, black_box(BODY), now).is_ok()
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
