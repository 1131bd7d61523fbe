//! One filter instance guarding several webhooks inside a real Envoy: the reservation system,
//! GitHub, Stripe, Standard Webhooks, Slack and Shopify, each with the values its sender
//! publishes and negative cases; the replay cache in shared data; the JSON Schema artifact.
//! Every rejection must leave the upstream with zero bytes.
//!
//! Needs `ENVOY_BIN` and `FILTER_WASM` (or runs `tools/envoy-venv.sh` / `filter/build.sh`);
//! the JSON Schema test takes `FILTER_WASM_JSONSCHEMA` or the file next to `FILTER_WASM`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use envoy_harness::http::Response;
use envoy_harness::http::assert_rejected;
use envoy_harness::sample::{REAL_SENDER_FIXTURES, core_fixture};
use serde_json::{Value, json};
use webhook_core::metrics::Outcome;
use webhook_core::scheme;
use webhook_core::signature::signature_header_value;

const GITHUB: &str = "gh-secret-0123456789abcdef0123456789";
const STRIPE: &str = "whsec_stripe-raw-string-key-0123456789";
const STD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn webhook(name: &str, path: &str, scheme: Value, env: &str, schema: Value) -> Value {
    json!({"name": name, "path": path, "scheme": scheme, "schema": schema,
           "secrets": [{"env": env, "id": format!("{name}-current")}]})
}

/// `hook` with `min_secret_bytes` lowered to `min` (for the senders' short published secrets).
fn with_min_secret(mut hook: Value, min: usize) -> Value {
    hook["min_secret_bytes"] = json!(min);
    hook
}

/// Envoy with one filter guarding every webhook in `hooks` (the reservation webhook first).
fn start(hooks: Vec<Value>, env: &[(&str, &str)]) -> Bench {
    let mut cfg: Value = serde_json::from_str(&plugin_config(|_| {})).unwrap();
    let list = cfg["webhooks"].as_array_mut().unwrap();
    list.extend(hooks.iter().cloned());
    let paths: Vec<String> = hooks
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_owned())
        .collect();
    let keys: Vec<String> = env.iter().map(|(k, _)| (*k).to_owned()).collect();
    Bench::start_full(&cfg.to_string(), env, |c| {
        c.extra_paths = paths.clone();
        c.host_env_keys = keys.clone();
    })
}

#[track_caller]
fn ok(r: &Response) {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn one_filter_guards_the_reservation_github_stripe_and_standard_webhooks_at_once() {
    let b = start(
        vec![
            {
                let mut g = webhook(
                    "github",
                    "/github",
                    json!({"type": "github"}),
                    "GITHUB_SECRET",
                    json!("json"),
                );
                g["replay_cache"] = json!({"ttl_seconds": 3600, "max_entries": 100});
                g
            },
            webhook(
                "stripe",
                "/stripe",
                json!({"type": "stripe"}),
                "STRIPE_SECRET",
                json!("json"),
            ),
            webhook(
                "std",
                "/std",
                json!({"type": "standard_webhooks"}),
                "STD_SECRET",
                json!("json"),
            ),
        ],
        &[
            ("WEBHOOK_SECRET", NEW),
            ("GITHUB_SECRET", GITHUB),
            ("STRIPE_SECRET", STRIPE),
            ("STD_SECRET", STD),
        ],
    );
    let t = now();
    let gh_body = br#"{"action":"opened","number":1}"#;
    let st_body = br#"{"id":"evt_1","object":"event","type":"invoice.paid"}"#;
    let sw_body = br#"{"type":"user.created","data":{"id":"u1"}}"#;
    let res_body = fresh_event(|_| {});
    let gh_sig = scheme::sign_github(GITHUB, gh_body);
    let st_sig = scheme::sign_stripe(STRIPE, t, st_body);
    let sw_sig = scheme::sign_standard_webhooks(STD, "msg_1", t, sw_body).unwrap();
    let ts = t.to_string();

    // ---- rejections first: none of them may reach the upstream ----
    // Each sender's signature on another sender's path: the scheme is the path's, not a guess.
    assert_rejected(
        &b.post(&res_body, &[("x-hub-signature-256", &gh_sig)]),
        401,
        "MissingSignature",
    );
    assert_rejected(
        &b.post_to(
            "/github",
            gh_body,
            &[
                (
                    "x-webhook-signature",
                    &signature_header_value(GITHUB.as_bytes(), gh_body),
                ),
                ("x-github-delivery", "d-0"),
            ],
        ),
        401,
        "MissingSignature",
    );
    // Wrong secret / tampered body.
    let wrong = scheme::sign_github("guess", gh_body);
    assert_rejected(
        &b.post_to(
            "/github",
            gh_body,
            &[
                ("x-hub-signature-256", &wrong),
                ("x-github-delivery", "d-0"),
            ],
        ),
        401,
        "InvalidSignature",
    );
    assert_rejected(
        &b.post_to(
            "/stripe",
            br#"{"id":"evt_2"}"#,
            &[("stripe-signature", &st_sig)],
        ),
        401,
        "InvalidSignature",
    );
    let sw_wrong = scheme::sign_standard_webhooks("whsec_b3RoZXI=", "msg_1", t, sw_body).unwrap();
    assert_rejected(
        &b.post_to(
            "/std",
            sw_body,
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &sw_wrong),
            ],
        ),
        401,
        "InvalidSignature",
    );
    // Timestamps outside the tolerance (Stripe: old only; Standard Webhooks: both ways).
    let old = t - 301;
    let st_old = scheme::sign_stripe(STRIPE, old, st_body);
    assert_rejected(
        &b.post_to("/stripe", st_body, &[("stripe-signature", &st_old)]),
        401,
        "StaleTimestamp",
    );
    for skewed in [t - 400, t + 400] {
        let sig = scheme::sign_standard_webhooks(STD, "msg_1", skewed, sw_body).unwrap();
        let sts = skewed.to_string();
        assert_rejected(
            &b.post_to(
                "/std",
                sw_body,
                &[
                    ("webhook-id", "msg_1"),
                    ("webhook-timestamp", &sts),
                    ("webhook-signature", &sig),
                ],
            ),
            401,
            "StaleTimestamp",
        );
    }
    // GitHub without a delivery id while the replay cache is on.
    assert_rejected(
        &b.post_to("/github", gh_body, &[("x-hub-signature-256", &gh_sig)]),
        400,
        "MissingDeliveryId",
    );
    // Spoofed delivery id header on the reservation path is stripped (no id there).
    assert!(
        b.upstream.requests().is_empty(),
        "a rejected request reached the upstream"
    );
    assert_eq!(b.upstream.total_bytes(), 0, "stray bytes upstream");

    // ---- one valid delivery per webhook ----
    ok(&b.post(
        &res_body,
        &[
            (
                "x-webhook-signature",
                &signature_header_value(NEW.as_bytes(), &res_body),
            ),
            ("x-webhook-delivery-id", "spoofed"),
        ],
    ));
    ok(&b.post_to(
        "/github",
        gh_body,
        &[
            ("x-hub-signature-256", &gh_sig),
            ("x-github-delivery", "d-1"),
        ],
    ));
    ok(&b.post_to("/stripe", st_body, &[("stripe-signature", &st_sig)]));
    ok(&b.post_to(
        "/std",
        sw_body,
        &[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &sw_sig),
        ],
    ));
    // The same GitHub delivery again: the replay cache answers 409.
    assert_rejected(
        &b.post_to(
            "/github",
            gh_body,
            &[
                ("x-hub-signature-256", &gh_sig),
                ("x-github-delivery", "d-1"),
            ],
        ),
        409,
        "ReplayedDelivery",
    );

    let reqs = b.upstream.requests();
    let seen: Vec<(String, String, String, Vec<String>)> = reqs
        .iter()
        .map(|r| {
            (
                r.request_line().to_owned(),
                r.header_values("x-webhook-name").join(","),
                r.header_values("x-webhook-secret-id").join(","),
                r.header_values("x-webhook-delivery-id")
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            )
        })
        .collect();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        seen,
        vec![
            (
                s("POST /webhook HTTP/1.1"),
                s("reservations"),
                s("current"),
                vec![]
            ),
            (
                s("POST /github HTTP/1.1"),
                s("github"),
                s("github-current"),
                vec![s("d-1")]
            ),
            (
                s("POST /stripe HTTP/1.1"),
                s("stripe"),
                s("stripe-current"),
                vec![]
            ),
            (
                s("POST /std HTTP/1.1"),
                s("std"),
                s("std-current"),
                vec![s("msg_1")]
            ),
        ]
    );
    assert_eq!(reqs[1].body, gh_body);
    assert_eq!(reqs[2].body, st_body);
    assert_eq!(reqs[3].body, sw_body);
    let all: usize = b.upstream.connections().iter().map(Vec::len).sum();
    let accepted: usize = reqs.iter().map(|r| r.head.len() + 4 + r.body.len()).sum();
    assert_eq!(all, accepted, "stray bytes upstream");

    // One counter family: per webhook, and summed over webhooks with PromQL's `sum by (outcome)`.
    let text = b.envoy.prometheus().unwrap();
    let metric = "webhook_filter_requests_total";
    let total = |outcome: Outcome| {
        envoy_harness::envoy::sum_samples(&text, metric, &[("outcome", outcome.label())])
    };
    assert_eq!(total(Outcome::Accepted), 4);
    assert_eq!(total(Outcome::StaleTimestamp), 3);
    assert_eq!(total(Outcome::ReplayedDelivery), 1);
    for (hook, outcome, n) in [
        ("github", Outcome::Accepted, 1),
        ("github", Outcome::BadSignature, 1),
        ("github", Outcome::MissingSignature, 1),
        ("github", Outcome::MissingDeliveryId, 1),
        ("github", Outcome::ReplayedDelivery, 1),
        ("stripe", Outcome::Accepted, 1),
        ("stripe", Outcome::StaleTimestamp, 1),
        ("std", Outcome::StaleTimestamp, 2),
        ("reservations", Outcome::MissingSignature, 1),
        ("reservations", Outcome::Accepted, 1),
    ] {
        let labels = [("webhook", hook), ("outcome", outcome.label())];
        assert_eq!(
            envoy_harness::envoy::parse_sample(&text, metric, &labels),
            Some(n),
            "{hook} {outcome:?}\n{text}"
        );
    }
}

/// Each sender's published example (old timestamps, so these webhooks turn the tolerance off:
/// configuration alone), accepted through Envoy; the same with one byte changed, refused.
#[test]
fn senders_published_examples_pass_inside_envoy_and_altered_copies_do_not() {
    // Values and their sources: filter/core/tests/schemes.rs.
    let slack_body: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let stripe_body: &[u8] = b"{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
    let b = start(
        vec![
            // The senders' published test secrets are short (GitHub's docs secret is 26 bytes,
            // Stripe's 17, Shopify's 15): these webhooks lower the minimum explicitly.
            with_min_secret(
                webhook(
                    "github",
                    "/github",
                    json!({"type": "github"}),
                    "GH",
                    json!("none"),
                ),
                26,
            ),
            webhook(
                "slack",
                "/slack",
                json!({"type": "slack", "tolerance_seconds": 0}),
                "SLACK",
                json!("none"),
            ),
            webhook(
                "svix",
                "/svix",
                json!({"type": "standard_webhooks", "tolerance_seconds": 0}),
                "SVIX",
                json!("json"),
            ),
            with_min_secret(
                webhook(
                    "stripe",
                    "/stripe",
                    json!({"type": "stripe", "tolerance_seconds": 0}),
                    "STRIPE",
                    json!("json"),
                ),
                17,
            ),
            with_min_secret(
                webhook(
                    "shopify",
                    "/shopify",
                    json!({"type": "shopify"}),
                    "SHOPIFY",
                    json!("json"),
                ),
                15,
            ),
        ],
        &[
            ("WEBHOOK_SECRET", NEW),
            ("GH", "It's a Secret to Everybody"),
            ("SLACK", "8f742231b10e8888abcd99yyyzzz85a5"),
            ("SVIX", STD),
            ("STRIPE", "whsec_test_secret"),
            ("SHOPIFY", "test_secret_key"),
        ],
    );
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>);
    let form = ("content-type", "application/x-www-form-urlencoded");
    let cases: Vec<Case<'_>> = vec![
        (
            "/github",
            b"Hello, World!".to_vec(),
            vec![
                ("content-type", "text/plain"),
                (
                    "x-hub-signature-256",
                    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                ),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ],
        ),
        (
            "/slack",
            slack_body.to_vec(),
            vec![
                form,
                ("x-slack-request-timestamp", "1531420618"),
                (
                    "x-slack-signature",
                    "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                ),
            ],
        ),
        (
            "/svix",
            br#"{"test": 2432232314}"#.to_vec(),
            vec![
                ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("svix-timestamp", "1614265330"),
                (
                    "svix-signature",
                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
            ],
        ),
        (
            "/stripe",
            stripe_body.to_vec(),
            vec![(
                "stripe-signature",
                "t=1492774577,v1=c2f890decbc5ede7c5060bb9a6d31e0626a4342bacb9aeae2adb1bcea72f9812",
            )],
        ),
        (
            "/shopify",
            br#"{"foo":"bar"}"#.to_vec(),
            vec![
                (
                    "x-shopify-hmac-sha256",
                    "1kjVjZBASoDr0j4pTeXLurkG6u87OrkQXzf+h707p2w=",
                ),
                (
                    "x-shopify-webhook-id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
            ],
        ),
    ];
    // Altered copies first (last byte changed, still the same shape): all 401, nothing upstream.
    for (path, body, headers) in &cases {
        let mut altered = body.clone();
        let last = altered.len() - 2;
        altered[last] ^= 0x01;
        assert_rejected(&b.post_to(path, &altered, headers), 401, "InvalidSignature");
    }
    assert_eq!(
        b.upstream.total_bytes(),
        0,
        "a rejected request reached the upstream"
    );
    for (path, body, headers) in &cases {
        ok(&b.post_to(path, body, headers));
    }
    let reqs = b.upstream.requests();
    assert_eq!(reqs.len(), cases.len());
    for (r, (path, body, _)) in reqs.iter().zip(&cases) {
        assert_eq!(r.request_line(), format!("POST {path} HTTP/1.1"));
        assert_eq!(&r.body, body, "{path}: body changed");
        assert_eq!(r.header_values("x-webhook-verified"), ["true"]);
    }
    assert_eq!(
        reqs[0].header_values("x-webhook-delivery-id"),
        ["72d3162e-cc78-11e3-81ab-4c9367dc0958"]
    );
    assert_eq!(
        reqs[2].header_values("x-webhook-delivery-id"),
        ["msg_p5jXN8AQM9LWM0D4loKWxJek"]
    );
    assert_eq!(
        reqs[4].header_values("x-webhook-delivery-id"),
        ["b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"]
    );
}

/// A delivery the upstream did not take (here: no upstream at all, Envoy answers 503) is
/// forgotten by the replay cache, so the sender's retry is forwarded again instead of 409.
#[test]
fn replay_cache_forgets_a_delivery_the_upstream_did_not_take() {
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], envoy_harness::free_port().unwrap()));
    let mut cfg: Value = serde_json::from_str(&plugin_config(|_| {})).unwrap();
    let mut g = webhook(
        "github",
        "/github",
        json!({"type": "github"}),
        "GH",
        json!("json"),
    );
    g["replay_cache"] = json!({"status": 429});
    cfg["webhooks"].as_array_mut().unwrap().push(g);
    let b = Bench::start_full(
        &cfg.to_string(),
        &[("WEBHOOK_SECRET", NEW), ("GH", GITHUB)],
        |c| {
            c.extra_paths = vec!["/github".into()];
            c.host_env_keys = vec!["WEBHOOK_SECRET".into(), "GH".into()];
            c.upstream = dead;
        },
    );
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let sig = scheme::sign_github(GITHUB, body);
    let h = [
        ("x-hub-signature-256", sig.as_str()),
        ("x-github-delivery", "retry-me"),
    ];
    for _ in 0..2 {
        let r = b.post_to("/github", body, &h);
        assert_eq!(
            r.status,
            503,
            "upstream is down: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(b.webhook_requests("github", Outcome::ReplayedDelivery), 0);
    assert_eq!(b.webhook_requests("github", Outcome::Accepted), 2);
}

/// The second artifact validates a JSON Schema given in the configuration; the default one
/// refuses such a configuration (Envoy does not start) and says which artifact to use.
#[test]
fn json_schema_artifact_validates_the_reservation_schema_and_the_default_refuses_it() {
    let schema: Value = serde_json::from_str(include_str!(
        "../../../schemas/reservation-event.schema.json"
    ))
    .unwrap();
    let config = plugin_config(|w| {
        w["schema"] = json!({"json_schema": schema});
        // The body-timestamp rules belong to `reservation_event` only (refused elsewhere).
        w.as_object_mut().unwrap().remove("max_clock_skew_seconds");
    });
    let wasm = envoy_harness::filter_wasm_jsonschema().unwrap_or_else(|e| panic!("{e}"));
    let b = Bench::start_full(&config, &[("WEBHOOK_SECRET", NEW)], |c| {
        c.wasm_path = Some(wasm.clone())
    });
    let no_user = fresh_event(|v| v["userId"] = json!(""));
    let body = assert_rejected(&b.post_signed(NEW, &no_user), 422, "ValidationError");
    assert_eq!(body["field"], "$.userId");
    let no_id = fresh_event(|v| v["events"][0]["resourceId"] = json!("1"));
    let body = assert_rejected(&b.post_signed(NEW, &no_id), 422, "ValidationError");
    assert_eq!(body["field"], "$.events[0].resourceId");
    assert_eq!(b.upstream.total_bytes(), 0);
    let good = fresh_event(|_| {});
    ok(&b.post_signed(NEW, &good));
    assert_eq!(b.upstream.requests()[0].body, good);
    drop(b);

    let upstream = envoy_harness::RecordingUpstream::start().unwrap();
    let cfg = envoy_harness::EnvoyConfig::for_test(
        envoy_harness::free_port().unwrap(),
        envoy_harness::free_port().unwrap(),
        upstream.addr(),
        Some(envoy_harness::filter_wasm().unwrap()),
        &config,
    );
    match envoy_harness::Envoy::start(&cfg, &[("WEBHOOK_SECRET", NEW)]) {
        Ok(e) => panic!("default artifact accepted a JSON Schema:\n{}", e.log_tail()),
        Err(envoy_harness::Error::NotReady(log)) => {
            assert!(log.contains("webhook_filter_jsonschema.wasm"), "{log}")
        }
        Err(e) => panic!("{e}"),
    }
}

/// A fixture of the core's real-sender shapes with its times moved to now (`timestamp` now,
/// every start an hour ago, every end in two hours), leaving its shape as the sender wrote it.
fn real_shape(fixture: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(fixture).unwrap();
    envoy_harness::sample::at_now(
        &mut v,
        SystemTime::now(),
        std::time::Duration::from_secs(7200),
    );
    serde_json::to_vec(&v).unwrap()
}

/// Every message the real reservation system sends, signed as it signs (standard Base64 of
/// HMAC-SHA256, no prefix, keyed with the 44-character secret reservation-be generates), passes
/// the shipped configuration inside Envoy and reaches the upstream byte for byte; the README's
/// `sha256=<hex>` of the same MAC too; anything else in the header is 401 with zero bytes up.
#[test]
fn the_real_reservation_systems_messages_pass_the_shipped_configuration() {
    const SECRET: &str = "Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1zZWNyZXQ=";
    let b = Bench::start(&plugin_config(|_| {}), &[("WEBHOOK_SECRET", SECRET)]);
    let mut bodies: Vec<(String, Vec<u8>)> = REAL_SENDER_FIXTURES
        .iter()
        .map(|n| ((*n).to_owned(), real_shape(&core_fixture(n).unwrap())))
        .collect();
    // What reservation-be accepts and the replaced rules refused: a Keycloak username of any
    // pattern, a user without key, name or e-mail, a key comment with `#` and quotes.
    let mut flat: Value = serde_json::from_slice(&bodies[0].1).unwrap();
    flat["username"] = json!("Root Admin");
    let key = flat["sshPublicKey"].as_str().unwrap().to_owned();
    flat["sshPublicKey"] = json!(format!("{key} o'brien #lab (2)"));
    bodies.push((
        "any username, any comment".into(),
        serde_json::to_vec(&flat).unwrap(),
    ));
    for k in ["username", "email", "sshPublicKey"] {
        flat.as_object_mut().unwrap().remove(k);
    }
    bodies.push((
        "no key, name or e-mail".into(),
        serde_json::to_vec(&flat).unwrap(),
    ));
    for (i, (name, body)) in bodies.iter().enumerate() {
        let sig = scheme::sign_reservation_system(SECRET, body);
        assert_eq!(sig.len(), 44, "Base64 of 32 bytes, padded");
        let r = b.post(body, &[("x-webhook-signature", &sig)]);
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let got = &b.upstream.requests()[i];
        assert_eq!(&got.body, body, "{name}");
        assert_eq!(got.header_values("x-webhook-verified"), ["true"], "{name}");
    }
    let n = bodies.len();
    let (_, first) = &bodies[0];
    ok(&b.post_signed(SECRET, first));
    let b64 = scheme::sign_reservation_system(SECRET, first);
    for bad in [
        b64.trim_end_matches('=').to_owned(),
        format!("sha256={b64}"),
        scheme::sign_reservation_system("another-secret-of-44-characters-0123456789=", first),
    ] {
        let r = b.post(first, &[("x-webhook-signature", &bad)]);
        assert_eq!(r.status, 401, "{bad}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(b.upstream.requests().len(), n + 1);
}
