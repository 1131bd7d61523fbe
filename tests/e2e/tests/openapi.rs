//! docs/openapi.yaml against the running system: every status of the public API that can be
//! provoked here is documented, every body validates against its documented schema, and the
//! request schema agrees with the filter's validator on valid and invalid events. The 503 of
//! `/webhook` and `/readyz` (API server down) is proven in sidecar/tests/apiserver_down.rs.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use e2e::{Stack, StackOptions, fixture, fresh, post_webhook, sign};
use envoy_harness::http::{self, Response};
use envoy_harness::sample::{REAL_SENDER_FIXTURES, core_fixture};
use kube_harness::{manifest::parse_documents, repo_root};
use serde_json::{Value, json};

fn openapi() -> Value {
    let text = std::fs::read_to_string(repo_root().join("docs/openapi.yaml")).unwrap();
    parse_documents(&text).unwrap().remove(0)
}

/// A validator for `#/components/schemas/<name>`, resolved inside the document.
fn schema(doc: &Value, name: &str) -> jsonschema::Validator {
    let root = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"))
}

/// Schema name of the documented JSON body of `status` on `path`/`method`.
fn response_schema(doc: &Value, path: &str, method: &str, status: u16) -> String {
    let r = &doc["paths"][path][method]["responses"][status.to_string()];
    assert!(
        r.is_object(),
        "{method} {path} answered {status}, which docs/openapi.yaml does not document"
    );
    let reference = r["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {path} {status}: no JSON schema documented"));
    reference.rsplit('/').next().unwrap().to_string()
}

fn check(doc: &Value, path: &str, method: &str, resp: &Response) {
    let name = response_schema(doc, path, method, resp.status);
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
        panic!(
            "{method} {path} {}: body is not JSON ({e}): {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        )
    });
    let v = schema(doc, &name);
    let errors: Vec<String> = v.iter_errors(&body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {}: body does not match {name}: {errors:?}\n{body}",
        resp.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_public_api_is_documented_and_matches_its_schema() {
    let doc = openapi();
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let addr = stack.listener();
    let secret = stack.secret.clone();

    let answers: Vec<(&str, &str, Response)> = tokio::task::spawn_blocking(move || {
        let good = fresh(&fixture("event-start.json").unwrap());
        let sig = sign(&secret, &good);
        let ct = ("content-type", "application/json");
        let mut out = Vec::new();
        let signed = |body: &[u8]| sign(&secret, body);

        out.push((
            "/webhook",
            "post",
            post_webhook(addr, &good, &[ct, ("x-webhook-signature", &sig)]).unwrap(),
        ));
        out.push((
            "/webhook",
            "post",
            post_webhook(addr, &good, &[ct]).unwrap(),
        ));
        let garbage = b"{\"eventType\": ".to_vec();
        out.push((
            "/webhook",
            "post",
            post_webhook(
                addr,
                &garbage,
                &[ct, ("x-webhook-signature", &signed(&garbage))],
            )
            .unwrap(),
        ));
        out.push((
            "/webhook",
            "post",
            post_webhook(
                addr,
                &good,
                &[
                    ("content-type", "text/plain"),
                    ("x-webhook-signature", &sig),
                ],
            )
            .unwrap(),
        ));
        let mut big = good.clone();
        big.splice(1..1, vec![b' '; 70 * 1024]);
        out.push((
            "/webhook",
            "post",
            post_webhook(addr, &big, &[ct, ("x-webhook-signature", &signed(&big))]).unwrap(),
        ));
        // A START without its user (422); and a type nobody acts on (200, nothing to do).
        let bad = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"keycloak-user-id-123\"", "\"\"")
            .into_bytes();
        let nothing = String::from_utf8(good.clone())
            .unwrap()
            .replace("EVENT_START", "EVENT_PAUSE")
            .into_bytes();
        out.push((
            "/webhook",
            "post",
            post_webhook(
                addr,
                &nothing,
                &[ct, ("x-webhook-signature", &signed(&nothing))],
            )
            .unwrap(),
        ));
        out.push((
            "/webhook",
            "post",
            post_webhook(addr, &bad, &[ct, ("x-webhook-signature", &signed(&bad))]).unwrap(),
        ));
        // A wrong method: documented as the 405 of the POST operation.
        out.push(("/webhook", "post", http::get(addr, "/webhook").unwrap()));
        out.push(("/healthz", "get", http::get(addr, "/healthz").unwrap()));
        out.push(("/readyz", "get", http::get(addr, "/readyz").unwrap()));
        out
    })
    .await
    .unwrap();

    let mut seen: BTreeSet<(String, String, u16)> = BTreeSet::new();
    for (path, method, resp) in &answers {
        check(&doc, path, method, resp);
        seen.insert((path.to_string(), method.to_string(), resp.status));
    }
    // Every documented status was provoked, except the API-server-down ones.
    let not_provoked_here: BTreeSet<(String, String, u16)> =
        [("/webhook", "post", 503), ("/readyz", "get", 503)]
            .iter()
            .map(|(p, m, s)| (p.to_string(), m.to_string(), *s))
            .collect();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in op["responses"].as_object().unwrap().keys() {
                let key = (path.clone(), method.clone(), status.parse().unwrap());
                assert!(
                    seen.contains(&key) || not_provoked_here.contains(&key),
                    "documented but never answered: {key:?}"
                );
            }
        }
    }
}

/// A change that makes a message invalid.
type Mutation = Box<dyn Fn(&mut Value)>;

/// The documented request schema is schemas/reservation-event.schema.json (one schema in one
/// place), and it agrees with the filter's validator on every real shape and on invalid
/// messages a schema can express.
#[test]
fn request_schema_agrees_with_the_filter_validator() {
    let doc = openapi();
    assert_eq!(
        doc["paths"]["/webhook"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "../schemas/reservation-event.schema.json"
    );
    let standalone: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("schemas/reservation-event.schema.json"))
            .unwrap(),
    )
    .unwrap();
    let file = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&standalone)
        .unwrap();
    let mut bodies: Vec<(String, Vec<u8>)> = ["event-start.json", "event-end.json"]
        .iter()
        .map(|n| ((*n).to_owned(), fixture(n).unwrap()))
        .collect();
    for n in REAL_SENDER_FIXTURES {
        bodies.push((n.to_owned(), core_fixture(n).unwrap()));
    }
    for (name, body) in &bodies {
        let value: Value = serde_json::from_slice(body).unwrap();
        assert!(
            file.is_valid(&value),
            "{name} fails schemas/reservation-event.schema.json"
        );
        webhook_core::event::validate(body)
            .unwrap_or_else(|e| panic!("{name} fails the filter validator: {e}"));
    }
    let good: Value = serde_json::from_slice(&fixture("event-start.json").unwrap()).unwrap();
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "eventType not a string",
            Box::new(|e| e["eventType"] = json!(1)),
        ),
        (
            "START without its user",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("userId");
            }),
        ),
        (
            "START without an end",
            Box::new(|e| {
                e["events"][0].as_object_mut().unwrap().remove("eventEnd");
            }),
        ),
        (
            "username with a newline",
            Box::new(|e| e["username"] = json!("root\nruncmd")),
        ),
        (
            "resourceId not a number",
            Box::new(|e| e["events"][0]["resourceId"] = json!("1")),
        ),
        (
            "timestamp not a date",
            Box::new(|e| e["timestamp"] = json!("yesterday")),
        ),
        (
            "negative resourceId",
            Box::new(|e| e["events"][0]["resourceId"] = json!(-1)),
        ),
        (
            "not a reservation of a known resource",
            Box::new(|e| {
                e["events"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("resourceType");
            }),
        ),
    ];
    for (what, mutate) in mutations {
        let mut event = good.clone();
        mutate(&mut event);
        assert!(!file.is_valid(&event), "schema file accepts: {what}");
        let body = serde_json::to_vec(&event).unwrap();
        assert!(
            webhook_core::event::validate(&body).is_err(),
            "filter validator accepts: {what}"
        );
    }
}
