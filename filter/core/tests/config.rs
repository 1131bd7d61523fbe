//! Configuration: defaults, refusals at configure time, secrets from the environment.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use webhook_core::Error;
use webhook_core::config::{CompiledConfig, Schema, Unmatched};
use webhook_core::scheme::Scheme;

/// 32 bytes, the default minimum.
const LONG: &str = "0123456789abcdef0123456789abcdef";

fn env(k: &str) -> Option<String> {
    match k {
        "WEBHOOK_SECRET" => Some(LONG.into()),
        "SHORT" => Some("s".repeat(31)),
        "EMPTY" => Some(String::new()),
        // 24 bytes once base64-decoded, as Svix issues them.
        "SVIX" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        _ => None,
    }
}

fn refused(json: &str) -> String {
    match CompiledConfig::from_json(json.as_bytes(), env) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e @ (Error::ConfigSyntax(_) | Error::ConfigInvalid { .. })) => e.to_string(),
        Err(e) => panic!("wrong error kind: {e:?}"),
    }
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"reservations","path":"/webhook","secrets":[{"env":"WEBHOOK_SECRET"}]}]}"#,
        env,
    )
    .unwrap();
    assert_eq!(c.unmatched, Unmatched::Pass);
    let w = &c.webhooks[0];
    assert_eq!(w.methods, ["POST"]);
    assert_eq!(
        w.scheme,
        Scheme::ReservationSystem {
            header: "x-webhook-signature".into(),
        }
    );
    assert_eq!(w.max_body_bytes, 65536);
    assert_eq!(w.replay_window_seconds, 0, "replay window off by default");
    assert_eq!(w.max_clock_skew_seconds, 300);
    assert_eq!(w.schema, Schema::ReservationEvent);
    assert_eq!(w.secrets.len(), 1);
    assert_eq!(w.secrets[0].id(), "WEBHOOK_SECRET");
    assert!(c.warnings.is_empty());
}

#[test]
fn the_reservation_system_preset_is_the_whole_webhook() {
    let env = |k: &str| match k {
        "WEBHOOK_SECRET" => Some(LONG.to_owned()),
        "WEBHOOK_SECRET_PREVIOUS" => Some(LONG.replace('0', "9")),
        _ => None,
    };
    let c = CompiledConfig::from_json(br#"{"webhooks":[{"preset":"reservation_system"}]}"#, env)
        .unwrap();
    let w = &c.webhooks[0];
    assert_eq!(
        (w.name.as_str(), w.path.as_str()),
        ("reservations", "/webhook")
    );
    assert_eq!(w.methods, ["POST"]);
    assert_eq!(
        w.scheme,
        Scheme::ReservationSystem {
            header: "x-webhook-signature".into()
        }
    );
    let ids: Vec<&str> = w.secrets.iter().map(|s| s.id()).collect();
    assert_eq!(ids, ["current", "previous"]);
    assert_eq!(w.max_body_bytes, 65536);
    assert_eq!(w.schema, Schema::ReservationEvent);
    assert_eq!(
        (w.replay_window_seconds, w.max_clock_skew_seconds),
        (0, 300)
    );
    assert!(c.warnings.is_empty());
    // Every field written beside the preset overrides it; the rest stays.
    let c = CompiledConfig::from_json(
        br#"{"webhooks":[{"preset":"reservation_system","path":"/hooks/prognose","max_body_bytes":4096}]}"#,
        env,
    )
    .unwrap();
    let w = &c.webhooks[0];
    assert_eq!(
        (w.path.as_str(), w.max_body_bytes),
        ("/hooks/prognose", 4096)
    );
    assert_eq!(w.name, "reservations");
    assert_eq!(w.secrets.len(), 2);
    // Its secret is required like any other.
    let e = CompiledConfig::from_json(br#"{"webhooks":[{"preset":"reservation_system"}]}"#, |_| {
        None
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("WEBHOOK_SECRET is not set"), "{e}");
    assert!(refused(r#"{"webhooks":[{"preset":"github"}]}"#).contains("unknown variant"));
}

#[test]
fn without_a_preset_name_and_path_are_required() {
    let e = refused(r#"{"webhooks":[{"path":"/webhook","secrets":[{"env":"WEBHOOK_SECRET"}]}]}"#);
    assert!(e.contains("webhooks[0].name is required"), "{e}");
    let e = refused(r#"{"webhooks":[{"name":"r","secrets":[{"env":"WEBHOOK_SECRET"}]}]}"#);
    assert!(e.contains("webhooks[0].path is required"), "{e}");
}

#[test]
fn full_config_is_honoured() {
    let c = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"r","path":"/hook","methods":["post","PUT"],
            "scheme":{"type":"hmac_sha256_hex","header":"X-Sig","prefix":""},
            "secrets":[{"env":"WEBHOOK_SECRET","id":"2025-06"},{"env":"WEBHOOK_SECRET_PREVIOUS","optional":true}],
            "max_body_bytes":100,"schema":"reservation_event","replay_window_seconds":60,"max_clock_skew_seconds":1}],
            "unmatched":"reject"}"#,
        env,
    )
    .unwrap();
    let w = &c.webhooks[0];
    assert_eq!(w.methods, ["POST", "PUT"]);
    assert_eq!(w.allow, "POST, PUT");
    assert_eq!(w.scheme.header(), "x-sig");
    assert_eq!(w.secrets[0].id(), "2025-06");
    assert_eq!(w.secrets.len(), 1, "unset optional secret skipped");
    assert_eq!((w.replay_window_seconds, w.max_clock_skew_seconds), (60, 1));
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("WEBHOOK_SECRET_PREVIOUS"));
    assert_eq!(c.unmatched, Unmatched::Reject);
    assert_eq!(c.route("/hook?x=1").map(|(i, _)| i), Some(0));
    assert!(c.route("/hook/").is_none());
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    for json in [
        r#"{"webhooks":[],"extra":1}"#,
        r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"WEBHOOK_SECRET"}],"max_body":1}]}"#,
        r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"WEBHOOK_SECRET","value":"x"}]}]}"#,
        r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"WEBHOOK_SECRET"}],"scheme":{"type":"hmac_sha256_hex","headr":"x"}}]}"#,
    ] {
        let msg = refused(json);
        assert!(msg.contains("unknown field"), "{json}: {msg}");
    }
    assert!(
        refused(r#"{"webhooks":[{"name":"r","path":"/w","scheme":{"type":"rot13"}}]}"#)
            .contains("unknown variant")
    );
}

#[test]
fn no_usable_secret_is_refused_unless_unsigned() {
    let msg = refused(r#"{"webhooks":[{"name":"r","path":"/w"}]}"#);
    assert!(msg.contains("no usable secret"), "{msg}");
    let msg = refused(r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"MISSING"}]}]}"#);
    assert!(msg.contains("MISSING") && msg.contains("not set"), "{msg}");
    let msg = refused(r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"EMPTY"}]}]}"#);
    assert!(msg.contains("EMPTY"), "{msg}");
    let msg = refused(
        r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"MISSING","optional":true}]}]}"#,
    );
    assert!(msg.contains("no usable secret"), "{msg}");

    let c = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"r","path":"/w","allow_unsigned":true}]}"#,
        env,
    )
    .unwrap();
    assert!(c.webhooks[0].allow_unsigned);
    assert!(c.warnings.iter().any(|w| w.contains("NOT checked")));
}

#[test]
fn error_messages_never_contain_the_secret() {
    let msg = refused(
        r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"WEBHOOK_SECRET"},{"env":"MISSING"}]}]}"#,
    );
    assert!(!msg.contains(LONG));
    let msg = refused(r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"SHORT"}]}]}"#);
    assert!(!msg.contains(&"s".repeat(31)), "{msg}");
}

#[test]
fn inconsistent_configs_are_refused() {
    let s = r#""secrets":[{"env":"WEBHOOK_SECRET"}]"#;
    for (json, needle) in [
        (r#"{"webhooks":[]}"#.to_owned(), "at least one"),
        (
            format!(
                r#"{{"webhooks":[{{"name":"a","path":"/w",{s}}},{{"name":"b","path":"/w",{s}}}]}}"#
            ),
            "duplicate",
        ),
        (
            format!(r#"{{"webhooks":[{{"name":"a","path":"w",{s}}}]}}"#),
            "path",
        ),
        (
            format!(r#"{{"webhooks":[{{"name":"","path":"/w",{s}}}]}}"#),
            "name",
        ),
        (
            format!(r#"{{"webhooks":[{{"name":"a","path":"/w","methods":[],{s}}}]}}"#),
            "methods",
        ),
        (
            format!(r#"{{"webhooks":[{{"name":"a","path":"/w","max_body_bytes":0,{s}}}]}}"#),
            "max_body_bytes",
        ),
        (
            format!(r#"{{"webhooks":[{{"name":"a","path":"/w","max_body_bytes":2000000,{s}}}]}}"#),
            "max_body_bytes",
        ),
        ("not json".to_owned(), "invalid plugin configuration"),
    ] {
        let msg = refused(&json);
        assert!(msg.contains(needle), "{json}: {msg}");
    }
}

#[test]
fn secrets_shorter_than_32_bytes_are_refused_even_optional_ones() {
    let msg = refused(r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"SHORT"}]}]}"#);
    assert!(
        msg.contains("webhooks[0].secrets[0]")
            && msg.contains("SHORT")
            && msg.contains("min_secret_bytes"),
        "{msg}"
    );
    // An optional secret that is set but too short is a mistake too, not something to skip.
    let msg = refused(
        r#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"WEBHOOK_SECRET"},{"env":"SHORT","optional":true}]}]}"#,
    );
    assert!(msg.contains("webhooks[0].secrets[1]"), "{msg}");
    // 32 bytes pass.
    let c = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"r","path":"/w","secrets":[{"env":"WEBHOOK_SECRET"}]}]}"#,
        env,
    )
    .unwrap();
    assert_eq!(c.webhooks[0].min_secret_bytes, 32);
}

#[test]
fn the_secret_minimum_is_configurable_per_webhook() {
    let c = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"r","path":"/w","min_secret_bytes":31,"secrets":[{"env":"SHORT"}]}]}"#,
        env,
    )
    .unwrap();
    assert_eq!(c.webhooks[0].secrets.len(), 1);
    assert!(
        c.warnings.iter().any(|w| w.contains("min_secret_bytes")),
        "a lowered minimum is worth a warning: {:?}",
        c.warnings
    );
    let msg = refused(
        r#"{"webhooks":[{"name":"r","path":"/w","min_secret_bytes":33,"secrets":[{"env":"WEBHOOK_SECRET"}]}]}"#,
    );
    assert!(msg.contains("min_secret_bytes"), "{msg}");
    let msg = refused(
        r#"{"webhooks":[{"name":"r","path":"/w","min_secret_bytes":0,"secrets":[{"env":"WEBHOOK_SECRET"}]}]}"#,
    );
    assert!(msg.contains("min_secret_bytes"), "{msg}");
    // Standard Webhooks keys are measured decoded; the spec's (and Svix's) 24 bytes pass by
    // default, fewer do not.
    let c = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"s","path":"/s","scheme":{"type":"standard_webhooks"},"schema":"json","secrets":[{"env":"SVIX"}]}]}"#,
        env,
    )
    .unwrap();
    assert_eq!(c.webhooks[0].min_secret_bytes, 24);
    let msg = refused(
        r#"{"webhooks":[{"name":"s","path":"/s","scheme":{"type":"standard_webhooks"},"schema":"json","min_secret_bytes":25,"secrets":[{"env":"SVIX"}]}]}"#,
    );
    assert!(msg.contains("min_secret_bytes"), "{msg}");
}

#[test]
fn replay_fields_on_a_schema_without_a_body_timestamp_are_refused() {
    let s = r#""secrets":[{"env":"WEBHOOK_SECRET"}]"#;
    for schema in [
        r#""json""#,
        r#""none""#,
        r#"{"json_schema":{"type":"object"}}"#,
    ] {
        for field in ["replay_window_seconds", "max_clock_skew_seconds"] {
            let msg = refused(&format!(
                r#"{{"webhooks":[{{"name":"a","path":"/w","schema":{schema},"{field}":60,{s}}}]}}"#
            ));
            assert!(
                msg.contains(&format!("webhooks[0].{field}")) && msg.contains("reservation_event"),
                "{schema} {field}: {msg}"
            );
        }
    }
}
