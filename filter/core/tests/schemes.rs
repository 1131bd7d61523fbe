//! Every sender's scheme against the values the sender publishes, plus negative cases, through
//! the same flow the adapter drives (headers, then the complete body with an injected clock).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use common::at;
use webhook_core::config::CompiledConfig;
use webhook_core::flow::{self, HeadersDecision, Rejection, Verified};
use webhook_core::metrics::Outcome;
use webhook_core::scheme;

/// GitHub docs, "Validating webhook deliveries" → "Testing the webhook payload validation":
/// secret `It's a Secret to Everybody`, payload `Hello, World!`.
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_BODY: &[u8] = b"Hello, World!";
const GITHUB_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

/// Slack API docs, "Verifying requests from Slack" (api.slack.com/authentication/
/// verifying-requests-from-slack): the slash-command example.
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: i64 = 1_531_420_618;
const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

/// svix/svix-webhooks library tests (e.g. the Ruby `webhook_spec.rb` "valid signature is
/// valid"; the same values appear in the other languages' tests).
const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SVIX_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SVIX_TS: i64 = 1_614_265_330;
const SVIX_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SVIX_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// stripe/stripe-python tests (`DUMMY_WEBHOOK_SECRET`, `DUMMY_WEBHOOK_PAYLOAD`). Stripe's tests
/// sign at run time, so the tag for `t = 1492774577` was computed independently with
/// `printf '%s' "1492774577.$PAYLOAD" | openssl dgst -sha256 -hmac whsec_test_secret`.
const STRIPE_SECRET: &str = "whsec_test_secret";
const STRIPE_BODY: &[u8] = b"{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
const STRIPE_T: i64 = 1_492_774_577;
const STRIPE_V1: &str = "c2f890decbc5ede7c5060bb9a6d31e0626a4342bacb9aeae2adb1bcea72f9812";

/// Shopify publishes the algorithm (shopify-app-js test helper: `createHmac('sha256',
/// secret).update(body).digest('base64')`), not a fixed value; this one was computed with
/// `printf '%s' '{"foo":"bar"}' | openssl dgst -sha256 -hmac test_secret_key -binary | base64`.
const SHOPIFY_SECRET: &str = "test_secret_key";
const SHOPIFY_BODY: &[u8] = br#"{"foo":"bar"}"#;
const SHOPIFY_SIG: &str = "1kjVjZBASoDr0j4pTeXLurkG6u87OrkQXzf+h707p2w=";

/// The senders' published test secrets are shorter than the default minimum of 32 bytes
/// (Shopify's 15, Stripe's 17, GitHub's 26, Svix's 24 decoded), so these configurations lower
/// `min_secret_bytes` explicitly.
const MIN_SECRET: &str = r#""min_secret_bytes":15"#;

fn config(scheme: &str, schema: &str) -> CompiledConfig {
    let json = format!(
        r#"{{"webhooks":[{{"name":"w","path":"/w","scheme":{scheme},"schema":{schema},{MIN_SECRET},
            "secrets":[{{"env":"OTHER","id":"other"}},{{"env":"SECRET","id":"sender"}}]}}]}}"#
    );
    config_with(&json)
}

fn config_with(json: &str) -> CompiledConfig {
    CompiledConfig::from_json(json.as_bytes(), |k| match k {
        "SECRET" => Some(SECRET.with(|s| s.borrow().clone())),
        "OTHER" => Some("whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==".into()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// What the flow answered, with the headers it would set upstream.
type RunResult = Result<(Verified, Vec<(&'static str, String)>), Rejection>;

thread_local! {
    static SECRET: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn with_secret(secret: &str) {
    SECRET.with(|s| *s.borrow_mut() = secret.to_owned());
}

/// Runs one request through the flow: headers (content type added), then body at `now`.
fn run(cfg: &CompiledConfig, headers: &[(&str, &str)], body: &[u8], now: i64) -> RunResult {
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| (*v).to_owned())
    };
    match flow::on_request_headers(cfg, "POST", "/w", lookup) {
        HeadersDecision::Inspect(p) => {
            let up = p.upstream_headers(cfg);
            p.finish(cfg, body, at(now)).map(|a| (a, up))
        }
        HeadersDecision::Reject(r) => Err(r),
        HeadersDecision::Pass => panic!("not guarded"),
    }
}

#[track_caller]
fn rejected(r: RunResult, outcome: Outcome) {
    match r {
        Ok(_) => panic!("accepted, expected {outcome:?}"),
        Err(r) => assert_eq!(r.outcome(), outcome, "{:?}", r.error),
    }
}

#[track_caller]
fn accepted(r: RunResult) -> Vec<(&'static str, String)> {
    match r {
        Ok((a, up)) => {
            assert_eq!(
                a.secret_id.as_deref(),
                Some("sender"),
                "second secret matched"
            );
            up
        }
        Err(r) => panic!("rejected: {:?}", r.error),
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn github_published_example() {
    with_secret(GITHUB_SECRET);
    let c = config(r#"{"type":"github"}"#, r#""none""#);
    let up = accepted(run(
        &c,
        &[
            ("X-Hub-Signature-256", GITHUB_SIG),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ],
        GITHUB_BODY,
        0,
    ));
    assert!(up.contains(&(
        "x-webhook-delivery-id",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned()
    )));
    assert_eq!(scheme::sign_github(GITHUB_SECRET, GITHUB_BODY), GITHUB_SIG);
    // Negative: altered body, wrong prefix, legacy sha1 header only, no header.
    rejected(
        run(
            &c,
            &[("x-hub-signature-256", GITHUB_SIG)],
            b"Hello, World?",
            0,
        ),
        Outcome::BadSignature,
    );
    let sha1 = GITHUB_SIG.replace("sha256=", "sha1=");
    rejected(
        run(&c, &[("x-hub-signature-256", &sha1)], GITHUB_BODY, 0),
        Outcome::MalformedSignature,
    );
    rejected(
        run(&c, &[("x-hub-signature", "sha1=01234")], GITHUB_BODY, 0),
        Outcome::MissingSignature,
    );
    with_secret("It's a Secret to Everybody!");
    let c = config(r#"{"type":"github"}"#, r#""none""#);
    rejected(
        run(&c, &[("x-hub-signature-256", GITHUB_SIG)], GITHUB_BODY, 0),
        Outcome::BadSignature,
    );
}

#[test]
fn slack_published_example_and_tolerance() {
    with_secret(SLACK_SECRET);
    let c = config(r#"{"type":"slack"}"#, r#""none""#);
    let ts = SLACK_TS.to_string();
    let h = [
        ("X-Slack-Signature", SLACK_SIG),
        ("X-Slack-Request-Timestamp", ts.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    accepted(run(&c, &h, SLACK_BODY, SLACK_TS));
    assert_eq!(
        scheme::sign_slack(SLACK_SECRET, SLACK_TS, SLACK_BODY),
        SLACK_SIG
    );
    // 300 s either way is inside, 301 is outside, in both directions.
    accepted(run(&c, &h, SLACK_BODY, SLACK_TS + 300));
    accepted(run(&c, &h, SLACK_BODY, SLACK_TS - 300));
    rejected(
        run(&c, &h, SLACK_BODY, SLACK_TS + 301),
        Outcome::StaleTimestamp,
    );
    rejected(
        run(&c, &h, SLACK_BODY, SLACK_TS - 301),
        Outcome::StaleTimestamp,
    );
    // The timestamp is signed: moving it breaks the signature.
    let moved = (SLACK_TS + 1).to_string();
    rejected(
        run(
            &c,
            &[
                ("x-slack-signature", SLACK_SIG),
                ("x-slack-request-timestamp", &moved),
            ],
            SLACK_BODY,
            SLACK_TS,
        ),
        Outcome::BadSignature,
    );
    rejected(
        run(
            &c,
            &[("x-slack-signature", SLACK_SIG)],
            SLACK_BODY,
            SLACK_TS,
        ),
        Outcome::MissingSignature,
    );
    for bad_ts in ["-1", "1531420618.5", "soon", ""] {
        rejected(
            run(
                &c,
                &[
                    ("x-slack-signature", SLACK_SIG),
                    ("x-slack-request-timestamp", bad_ts),
                ],
                SLACK_BODY,
                SLACK_TS,
            ),
            Outcome::MalformedSignature,
        );
    }
    let v1 = SLACK_SIG.replace("v0=", "v1=");
    rejected(
        run(
            &c,
            &[
                ("x-slack-signature", &v1),
                ("x-slack-request-timestamp", &ts),
            ],
            SLACK_BODY,
            SLACK_TS,
        ),
        Outcome::MalformedSignature,
    );
    // tolerance 0 turns the check off.
    let off = config(r#"{"type":"slack","tolerance_seconds":0}"#, r#""none""#);
    accepted(run(&off, &h, SLACK_BODY, SLACK_TS + 86_400 * 365));
}

#[test]
fn standard_webhooks_published_example_both_header_families() {
    with_secret(SVIX_SECRET);
    let c = config(r#"{"type":"standard_webhooks"}"#, r#""json""#);
    let ts = SVIX_TS.to_string();
    for family in ["webhook", "svix"] {
        let (id_h, ts_h, sig_h) = (
            format!("{family}-id"),
            format!("{family}-timestamp"),
            format!("{family}-signature"),
        );
        let h = [
            JSON,
            (id_h.as_str(), SVIX_ID),
            (ts_h.as_str(), ts.as_str()),
            (sig_h.as_str(), SVIX_SIG),
        ];
        let up = accepted(run(&c, &h, SVIX_BODY, SVIX_TS));
        assert!(up.contains(&("x-webhook-delivery-id", SVIX_ID.to_owned())));
        // Tolerance both ways.
        rejected(
            run(&c, &h, SVIX_BODY, SVIX_TS + 301),
            Outcome::StaleTimestamp,
        );
        rejected(
            run(&c, &h, SVIX_BODY, SVIX_TS - 301),
            Outcome::StaleTimestamp,
        );
        accepted(run(&c, &h, SVIX_BODY, SVIX_TS - 300));
    }
    assert_eq!(
        scheme::sign_standard_webhooks(SVIX_SECRET, SVIX_ID, SVIX_TS, SVIX_BODY).as_deref(),
        Some(SVIX_SIG)
    );
    let base = |sig: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("content-type", "application/json".into()),
            ("webhook-id", SVIX_ID.into()),
            ("webhook-timestamp", SVIX_TS.to_string()),
            ("webhook-signature", sig.into()),
        ]
    };
    let go = |h: &[(&'static str, String)], body: &[u8]| {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(&c, &h, body, SVIX_TS)
    };
    // Several signatures (rotation), other versions skipped: any v1 may match.
    let rotated = format!(
        "v1a,AAAA v1,{} {SVIX_SIG}",
        "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="
    );
    let mut h = base("");
    h[3].1 = rotated;
    accepted(go(&h, SVIX_BODY));
    // Negative: tampered body, wrong id (signed), only v1a, missing id / timestamp / signature.
    rejected(
        go(&base(SVIX_SIG), br#"{"test": 2432232315}"#),
        Outcome::BadSignature,
    );
    let mut h = base(SVIX_SIG);
    h[1].1 = "msg_other".into();
    rejected(go(&h, SVIX_BODY), Outcome::BadSignature);
    rejected(
        go(&base("v1a,AAAA"), SVIX_BODY),
        Outcome::MalformedSignature,
    );
    rejected(
        go(&base("v1,not-base64!"), SVIX_BODY),
        Outcome::MalformedSignature,
    );
    for missing in 1..=3 {
        let mut h = base(SVIX_SIG);
        h.remove(missing);
        rejected(go(&h, SVIX_BODY), Outcome::MissingSignature);
    }
}

#[test]
fn standard_webhooks_secret_is_base64_decoded_after_whsec() {
    // Without the prefix and without padding, the same key.
    with_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let c = config(r#"{"type":"standard_webhooks"}"#, r#""json""#);
    let ts = SVIX_TS.to_string();
    let h = [
        JSON,
        ("webhook-id", SVIX_ID),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", SVIX_SIG),
    ];
    accepted(run(&c, &h, SVIX_BODY, SVIX_TS));
    // A secret that is not base64 stops the configuration.
    with_secret("whsec_***");
    let e = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"w","path":"/w","scheme":{"type":"standard_webhooks"},"secrets":[{"env":"SECRET"}]}]}"#,
        |k| (k == "SECRET").then(|| "whsec_***".to_owned()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("base64") && !e.contains("***"), "{e}");
}

#[test]
fn stripe_library_test_values_multiple_v1_and_old_only_tolerance() {
    with_secret(STRIPE_SECRET);
    let c = config(r#"{"type":"stripe"}"#, r#""json""#);
    let header = format!("t={STRIPE_T},v1={STRIPE_V1}");
    assert_eq!(
        scheme::sign_stripe(STRIPE_SECRET, STRIPE_T, STRIPE_BODY),
        header
    );
    fn h(v: &str) -> Vec<(&str, &str)> {
        vec![JSON, ("Stripe-Signature", v)]
    }
    let up = accepted(run(&c, &h(&header), STRIPE_BODY, STRIPE_T));
    assert!(up.iter().all(|(k, _)| *k != "x-webhook-delivery-id"));
    // Only old timestamps are refused: 300 s old passes, 301 s fails, any future passes.
    accepted(run(&c, &h(&header), STRIPE_BODY, STRIPE_T + 300));
    rejected(
        run(&c, &h(&header), STRIPE_BODY, STRIPE_T + 301),
        Outcome::StaleTimestamp,
    );
    accepted(run(&c, &h(&header), STRIPE_BODY, STRIPE_T - 86_400));
    // Several v1 (rotation), v0 and unknown keys ignored, order free.
    let several = format!(
        "v0=00,v1={},t={STRIPE_T},x=y,v1={STRIPE_V1}",
        "ab".repeat(32)
    );
    accepted(run(&c, &h(&several), STRIPE_BODY, STRIPE_T));
    // Negative.
    rejected(
        run(
            &c,
            &h(&format!("t={STRIPE_T},v0={STRIPE_V1}")),
            STRIPE_BODY,
            STRIPE_T,
        ),
        Outcome::MalformedSignature,
    );
    rejected(
        run(&c, &h(&format!("v1={STRIPE_V1}")), STRIPE_BODY, STRIPE_T),
        Outcome::MalformedSignature,
    );
    rejected(
        run(
            &c,
            &h(&format!("t={},v1={STRIPE_V1}", STRIPE_T + 1)),
            STRIPE_BODY,
            STRIPE_T,
        ),
        Outcome::BadSignature,
    );
    let mut body = STRIPE_BODY.to_vec();
    body.push(b' ');
    rejected(run(&c, &h(&header), &body, STRIPE_T), Outcome::BadSignature);
    rejected(
        run(&c, &[JSON], STRIPE_BODY, STRIPE_T),
        Outcome::MissingSignature,
    );
    // tolerance 0: no age limit.
    let off = config(r#"{"type":"stripe","tolerance_seconds":0}"#, r#""json""#);
    accepted(run(&off, &h(&header), STRIPE_BODY, STRIPE_T + 86_400 * 365));
}

#[test]
fn whsec_secrets_are_keyed_differently_by_stripe_and_standard_webhooks() {
    // The same `whsec_` string: Stripe keys with the string itself, Standard Webhooks with the
    // base64-decoded bytes. A filter that guessed from the prefix would accept a wrong one.
    use base64::Engine as _;
    use webhook_core::signature::SecretKey;
    with_secret(SVIX_SECRET);
    let raw = SecretKey::new("raw", SVIX_SECRET.as_bytes());
    let decoded_bytes = base64::engine::general_purpose::STANDARD
        .decode(SVIX_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let decoded = SecretKey::new("decoded", &decoded_bytes);

    let stripe = config(r#"{"type":"stripe"}"#, r#""json""#);
    let stripe_hdr =
        |k: &SecretKey| format!("t=1,v1={}", hex::encode(k.tag_with_prefix(b"1.", b"{}")));
    accepted(run(
        &stripe,
        &[JSON, ("stripe-signature", &stripe_hdr(&raw))],
        b"{}",
        1,
    ));
    rejected(
        run(
            &stripe,
            &[JSON, ("stripe-signature", &stripe_hdr(&decoded))],
            b"{}",
            1,
        ),
        Outcome::BadSignature,
    );

    let std = config(r#"{"type":"standard_webhooks"}"#, r#""json""#);
    let std_sig = |k: &SecretKey| {
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(k.tag_with_prefix(b"x.1.", b"{}"))
        )
    };
    let go = |sig: &str| {
        run(
            &std,
            &[
                JSON,
                ("webhook-id", "x"),
                ("webhook-timestamp", "1"),
                ("webhook-signature", sig),
            ],
            b"{}",
            1,
        )
    };
    accepted(go(&std_sig(&decoded)));
    rejected(go(&std_sig(&raw)), Outcome::BadSignature);
}

#[test]
fn shopify_base64_signature() {
    with_secret(SHOPIFY_SECRET);
    let c = config(r#"{"type":"shopify"}"#, r#""json""#);
    assert_eq!(
        scheme::sign_shopify(SHOPIFY_SECRET, SHOPIFY_BODY),
        SHOPIFY_SIG
    );
    for header in ["X-Shopify-Hmac-Sha256", "shopify-hmac-sha256"] {
        let up = accepted(run(
            &c,
            &[
                JSON,
                (header, SHOPIFY_SIG),
                (
                    "X-Shopify-Webhook-Id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
            ],
            SHOPIFY_BODY,
            0,
        ));
        assert!(up.contains(&(
            "x-webhook-delivery-id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".to_owned()
        )));
    }
    rejected(
        run(
            &c,
            &[JSON, ("x-shopify-hmac-sha256", SHOPIFY_SIG)],
            br#"{"foo":"baz"}"#,
            0,
        ),
        Outcome::BadSignature,
    );
    // Hex instead of base64, truncated base64.
    let hex = scheme::sign_github(SHOPIFY_SECRET, SHOPIFY_BODY).replace("sha256=", "");
    rejected(
        run(
            &c,
            &[JSON, ("x-shopify-hmac-sha256", &hex)],
            SHOPIFY_BODY,
            0,
        ),
        Outcome::MalformedSignature,
    );
    rejected(
        run(
            &c,
            &[JSON, ("x-shopify-hmac-sha256", &SHOPIFY_SIG[..20])],
            SHOPIFY_BODY,
            0,
        ),
        Outcome::MalformedSignature,
    );
}

#[test]
fn replay_cache_needs_a_delivery_id() {
    with_secret(GITHUB_SECRET);
    let c = config_with(&format!(
        r#"{{"webhooks":[{{"name":"w","path":"/w","scheme":{{"type":"github"}},"schema":"none",{MIN_SECRET},
            "secrets":[{{"env":"SECRET","id":"sender"}}],"replay_cache":{{"ttl_seconds":60}}}}]}}"#
    ));
    let r = run(&c, &[("x-hub-signature-256", GITHUB_SIG)], GITHUB_BODY, 0);
    rejected(r, Outcome::MissingDeliveryId);
    let (a, _) = run(
        &c,
        &[
            ("x-hub-signature-256", GITHUB_SIG),
            ("x-github-delivery", "d-1"),
        ],
        GITHUB_BODY,
        0,
    )
    .unwrap();
    let delivery = a.replay.as_ref().unwrap();
    assert_eq!(delivery.id, "d-1");
    assert_eq!(delivery.key, "webhook_filter.replay.w");
    assert_eq!(delivery.cache.ttl_seconds, 60);
    // One secret: its id went upstream with the headers, no filter state needed.
    assert_eq!(a.secret_id.as_deref(), Some("sender"));
    assert_eq!(a.secret_id_for_filter_state(), None);
    // Stripe has no delivery id header: a replay cache there is a configuration error.
    let e = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"w","path":"/w","scheme":{"type":"stripe"},"secrets":[{"env":"S"}],"replay_cache":{}}]}"#,
        |_| Some("x".into()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("delivery id"), "{e}");
}
