//! `schema: {"json_schema": ...}` with the project's own schema of the reservation event
//! (`schemas/reservation-event.schema.json`): the fixtures pass, the invalid events of the
//! OpenAPI agreement test (tests/e2e/tests/openapi.rs) and a few more are refused with 422 and
//! the JSON path. Needs the `json-schema` feature (on by default in this crate).
#![cfg(feature = "json-schema")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use common::*;
use serde_json::{Value, json};
use webhook_core::config::CompiledConfig;
use webhook_core::flow::{self, HeadersDecision, Rejection};
use webhook_core::metrics::Outcome;

const SCHEMA: &str = include_str!("../../../schemas/reservation-event.schema.json");

fn config(schema: &str) -> CompiledConfig {
    let json = format!(
        r#"{{"webhooks":[{{"name":"r","path":"/webhook","allow_unsigned":true,
            "schema":{{"json_schema":{schema}}}}}]}}"#
    );
    CompiledConfig::from_json(json.as_bytes(), |_| None).unwrap_or_else(|e| panic!("{e}"))
}

fn check(cfg: &CompiledConfig, body: &[u8]) -> Result<(), Rejection> {
    let h = |n: &str| (n == "content-type").then(|| "application/json".to_owned());
    match flow::on_request_headers(cfg, "POST", "/webhook", h) {
        HeadersDecision::Inspect(p) => p.finish(cfg, body, at(FIXTURE_TS)).map(|_| ()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_reservation_schema_accepts_every_real_shape() {
    let c = config(SCHEMA);
    for body in [
        START,
        END,
        START_RSA,
        FLAT_START,
        BATCH_0115,
        DELETED,
        UPDATED,
        TEST_WEBHOOK,
        RESOURCE_CREATED,
    ] {
        check(&c, body).unwrap_or_else(|r| panic!("{:?}", r.error));
        webhook_core::event::validate(body).unwrap();
    }
    // What the senders omit, and a username or key comment of any pattern.
    let mut flat: Value = serde_json::from_slice(FLAT_START).unwrap();
    flat["username"] = json!("Root Admin (2)");
    flat["sshPublicKey"] = json!("ssh-ed25519 AAAA o'brien #1");
    check(&c, &serde_json::to_vec(&flat).unwrap()).unwrap();
    for k in ["username", "email", "sshPublicKey", "webhookId"] {
        flat.as_object_mut().unwrap().remove(k);
    }
    check(&c, &serde_json::to_vec(&flat).unwrap()).unwrap();
}

type Mutation = (
    &'static str,
    &'static [u8],
    &'static str,
    Box<dyn Fn(&mut Value)>,
);

#[test]
fn the_reservation_schema_refuses_what_the_validator_refuses() {
    let c = config(SCHEMA);
    let mutations: Vec<Mutation> = vec![
        // The list of tests/e2e/tests/openapi.rs `request_schema_agrees_with_the_filter_validator`.
        (
            "eventType not a string",
            START,
            "$.eventType",
            Box::new(|e| e["eventType"] = json!(1)),
        ),
        (
            "START without its user",
            START,
            "$",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("userId");
            }),
        ),
        (
            "START without an end",
            FLAT_START,
            "$",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("eventEnd");
            }),
        ),
        (
            "flat event without its resource",
            FLAT_START,
            "$",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("resourceId");
            }),
        ),
        (
            "DELETED without data",
            DELETED,
            "$",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("data");
            }),
        ),
        (
            "DELETED without the resource type",
            DELETED,
            "$.data.resource.type",
            Box::new(|e| {
                e["data"]["resource"]["type"]
                    .as_object_mut()
                    .unwrap()
                    .remove("name");
            }),
        ),
        (
            "UPDATED whose end is no date",
            UPDATED,
            "$.data.end",
            Box::new(|e| e["data"]["end"] = json!("later")),
        ),
        (
            "resourceId not a number",
            START,
            "$.events[0].resourceId",
            Box::new(|e| e["events"][0]["resourceId"] = json!("1")),
        ),
        (
            "timestamp not a date",
            START,
            "$.timestamp",
            Box::new(|e| e["timestamp"] = json!("yesterday")),
        ),
        (
            "negative resourceId",
            START,
            "$.events[0].resourceId",
            Box::new(|e| e["events"][0]["resourceId"] = json!(-1)),
        ),
        // More rules the schema can state.
        (
            "username with a newline",
            START,
            "$.username",
            Box::new(|e| e["username"] = json!("root\nruncmd")),
        ),
        (
            "control character in a name",
            START,
            "$.events[1].resourceName",
            Box::new(|e| e["events"][1]["resourceName"] = json!("A\u{7}")),
        ),
        (
            "empty eventId",
            START,
            "$.events[2].eventId",
            Box::new(|e| e["events"][2]["eventId"] = json!("")),
        ),
        (
            "key longer than an annotation should hold",
            START,
            "$.sshPublicKey",
            Box::new(|e| e["sshPublicKey"] = json!("A".repeat(8193))),
        ),
    ];
    for (what, base, path, mutate) in mutations {
        let mut event: Value = serde_json::from_slice(base).unwrap();
        mutate(&mut event);
        let body = serde_json::to_vec(&event).unwrap();
        let r = check(&c, &body)
            .err()
            .unwrap_or_else(|| panic!("schema accepts: {what}"));
        assert_eq!(
            (r.status(), r.outcome()),
            (422, Outcome::InvalidEvent),
            "{what}"
        );
        let reply: Value = serde_json::from_slice(&r.body(at(0))).unwrap();
        assert_eq!(reply["error_type"], "ValidationError", "{what}");
        assert_eq!(reply["field"], path, "{what}: {reply}");
        // The filter's own validator agrees.
        assert!(
            webhook_core::event::validate(&body).is_err(),
            "validator accepts: {what}"
        );
    }
}

#[test]
fn json_schema_bodies_must_be_json_and_the_schema_must_compile() {
    let c = config(SCHEMA);
    let r = check(&c, b"{\"eventType\":").unwrap_err();
    assert_eq!((r.status(), r.outcome()), (400, Outcome::MalformedJson));
    let e = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"r","path":"/w","allow_unsigned":true,"schema":{"json_schema":{"type":"nope"}}}]}"#,
        |_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("json_schema does not compile"), "{e}");
    // A small inline schema, for the docs' example.
    let c = config(
        r#"{"type":"object","required":["action"],"properties":{"action":{"type":"string"}}}"#,
    );
    assert!(check(&c, br#"{"action":"opened"}"#).is_ok());
    let r = check(&c, br#"{"action":1}"#).unwrap_err();
    assert_eq!(r.error.field(), Some("$.action"));
}
