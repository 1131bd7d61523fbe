//! The security review's sidecar findings, each against the real API server: deliveries that
//! skipped the edge, STARTs of reservations that already ended, Secrets the sidecar did not
//! write, and notifications a receiver can verify (and refuse to replay) with an off-the-shelf
//! Standard Webhooks library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde_json::{Value, json};

fn result(a: &Answer) -> &str {
    a.body["results"][0]["result"].as_str().unwrap_or_default()
}

/// Finding 4: under Istio the sidecar listens on the pod IP; a request that reaches it without
/// the mesh's filter (an uninjected pod, a selector typo) must not provision anything.
#[tokio::test]
async fn a_delivery_that_bypassed_the_filter_is_refused_and_changes_nothing() {
    let mut b = Bench::new("bypass").await;
    b.create_host("node-20", Some(1)).await;
    b.start_sidecar().await;
    let addr = b.sidecar.as_ref().unwrap().addr;
    let body = serde_json::to_vec(&sample(START)).unwrap();
    let json_ct = ("content-type", "application/json".to_owned());

    let unsigned = b
        .send_to(
            addr,
            "POST",
            "/webhook",
            std::slice::from_ref(&json_ct),
            &body,
        )
        .await
        .unwrap();
    assert_eq!(unsigned.status, 401, "{:?}", unsigned.body);
    assert_eq!(unsigned.body["error_type"], "MissingSignature");
    let forged = sign("a-guessed-secret-that-is-long-enough", &body);
    let forged = b
        .send_to(
            addr,
            "POST",
            "/webhook",
            &[json_ct, ("x-webhook-signature", forged)],
            &body,
        )
        .await
        .unwrap();
    assert_eq!(forged.status, 401, "{:?}", forged.body);
    assert_eq!(forged.body["error_type"], "InvalidSignature");
    assert!(forged.body["detail"].is_string() && forged.body["timestamp"].is_string());

    let host = b.host("node-20").await;
    assert_eq!(our_annotations(&host), json!({}));
    assert!(host["spec"].get("image").is_none());
    assert!(b.secret("node-20-userdata").await.is_none());
    // The same body, signed, is accepted.
    assert_eq!(b.post(&sample(START)).await.status, 200);
}

/// Finding 2: once a host has passed to another reservation, a late or replayed START of the
/// earlier one used to be queued and carried out at the next release: the old user got the
/// host back, and no END would ever come for it.
#[tokio::test]
async fn a_start_replayed_after_its_reservation_ended_never_provisions_again() {
    let mut b = Bench::new("replay").await;
    b.create_host("node-21", Some(1)).await;
    b.start_sidecar().await;
    let first = sample(START);
    b.post(&first).await;
    b.notifications(1).await;
    b.post(&sample(END)).await;
    b.notifications(2).await;
    b.wait_annotation("node-21", "notified", "released").await;

    let mut second = event(START, "202", "user-b");
    second["username"] = json!("bob");
    second["sshPublicKey"] = json!(include_str!("fixtures/bob.pub").trim());
    assert_eq!(result(&b.post(&second).await), "provisioning");
    let n = b.notifications(3).await;
    assert_eq!(
        (n[2]["outcome"].as_str(), n[2]["eventId"].as_str()),
        (Some("provisioned"), Some("202"))
    );

    // The first reservation's START again (a sender's retry, or a replay): refused.
    let a = b.post(&first).await;
    assert_eq!(result(&a), "expired", "{:?}", a.body);
    let host = b.host("node-21").await;
    assert!(
        our_annotations(&host).get("pending-start").is_none(),
        "{host}"
    );

    // The second reservation ends: the host is released and stays free.
    let mut second_end = second.clone();
    second_end["eventType"] = json!("EVENT_END");
    assert_eq!(result(&b.post(&second_end).await), "releasing");
    let n = b.notifications(4).await;
    assert_eq!(
        (n[3]["outcome"].as_str(), n[3]["eventId"].as_str()),
        (Some("released"), Some("202"))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let host = b.host("node-21").await;
    assert_eq!(our_annotations(&host)["phase"], "released");
    assert!(host["spec"].get("image").is_none(), "{}", host["spec"]);
    assert!(b.secret("node-21-userdata").await.is_none());
    assert_eq!(b.sink.received().len(), 4);
}

/// Finding 2, the other cases: a START whose eventEnd has passed never provisions; an END is
/// honoured at any age; an END that came before its START makes that START expired.
#[tokio::test]
async fn reservation_times_decide_starts_and_ends_are_honoured_at_any_age() {
    let mut b = Bench::new("ages").await;
    b.create_host("node-22", Some(1)).await;
    b.create_host("node-23", Some(2)).await;
    b.start_sidecar().await;

    let mut over = sample(START);
    over["events"][0]["eventEnd"] = json!("2025-06-08T17:00:00.000+02:00");
    over["events"][0]["eventStart"] = json!("2025-06-08T15:00:00.000+02:00");
    let a = b.post(&over).await;
    assert_eq!(result(&a), "expired", "{:?}", a.body);
    assert!(
        a.body["results"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("ended")
    );
    assert_eq!(our_annotations(&b.host("node-22").await), json!({}));

    // Provisioned, then the END arrives long after the reservation (and its body) expired.
    let start = sample(START);
    b.post(&start).await;
    b.wait_annotation("node-22", "notified", "provisioned")
        .await;
    let mut late_end = sample(END);
    late_end["timestamp"] = json!("2025-06-08T14:30:00.000+02:00");
    late_end["events"][0]["eventStart"] = json!("2025-06-08T15:00:00.000+02:00");
    late_end["events"][0]["eventEnd"] = json!("2025-06-08T17:00:00.000+02:00");
    assert_eq!(result(&b.post(&late_end).await), "releasing");
    b.wait_annotation("node-22", "notified", "released").await;

    // An END that overtook its START (resource 2).
    let mut end2 = event(END, "707", "user-c");
    end2["events"][0]["resourceId"] = json!(2);
    end2["events"][0]["resourceName"] = json!("node-23");
    let a = b.post(&end2).await;
    assert_eq!(result(&a), "already_done", "{:?}", a.body);
    let mut start2 = end2.clone();
    start2["eventType"] = json!("EVENT_START");
    let a = b.post(&start2).await;
    assert_eq!(result(&a), "expired", "{:?}", a.body);
    let host = b.host("node-23").await;
    assert!(our_annotations(&host).get("event-id").is_none(), "{host}");
    assert!(host["spec"].get("image").is_none());
}

/// Finding 5: a `<bmh>-userdata` Secret the sidecar did not write is neither overwritten nor
/// deleted; the reservation fails and says why.
#[tokio::test]
async fn a_secret_the_sidecar_did_not_write_is_never_overwritten_or_deleted() {
    let mut b = Bench::new("foreign").await;
    b.create_host("node-24", Some(1)).await;
    let secrets: Api<Secret> = Api::namespaced(b.admin.clone(), &b.ns);
    let mine = Secret {
        metadata: ObjectMeta {
            name: Some("node-24-userdata".into()),
            ..ObjectMeta::default()
        },
        string_data: Some([("userData".to_owned(), "#cloud-config\n{}\n".to_owned())].into()),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &mine).await.unwrap();
    b.start_sidecar().await;
    assert_eq!(result(&b.post(&sample(START)).await), "provisioning");
    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "failed");
    assert_eq!(
        n[0]["detail"],
        "Secret node-24-userdata exists and is not managed by bmh-sidecar; refusing to overwrite it"
    );
    let s = b.secret("node-24-userdata").await.unwrap();
    assert_eq!(user_data(&s), "#cloud-config\n{}\n");
    // The holder's END releases the host and leaves the Secret where it is.
    assert_eq!(result(&b.post(&sample(END)).await), "releasing");
    b.wait_annotation("node-24", "notified", "released").await;
    let s = b.secret("node-24-userdata").await.unwrap();
    assert_eq!(user_data(&s), "#cloud-config\n{}\n");
}

/// Verifies `r` with the Standard Webhooks reference library (PyPI `standardwebhooks`), as a
/// receiver would; `Err` with the library's message when it refuses.
fn verify_with_library(secret: &str, r: &kube_harness::Recorded) -> Result<Value, String> {
    let headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let input = json!({
        "secret": secret,
        "headers": headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&r.body),
    });
    let script = "import base64, json, sys\n\
                  from standardwebhooks.webhooks import Webhook\n\
                  i = json.load(sys.stdin)\n\
                  try:\n\
                  \x20   out = Webhook(i['secret']).verify(base64.b64decode(i['body']), i['headers'])\n\
                  except Exception as e:\n\
                  \x20   print(type(e).__name__ + ': ' + str(e)); sys.exit(3)\n\
                  json.dump(out, sys.stdout)\n";
    let out = venv_python(script, &input);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => Ok(serde_json::from_str(&text).unwrap()),
        Some(3) => Err(text),
        _ => panic!("python failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Finding 9: notifications carry Standard Webhooks headers that an off-the-shelf library
/// verifies; a captured one replayed later (or altered) is refused by the same library.
#[tokio::test]
async fn notifications_verify_with_the_standard_webhooks_library_and_replays_are_refused() {
    let mut b = Bench::new("stdwh").await;
    b.create_host("node-25", Some(1)).await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    b.notifications(1).await;
    let r = b.sink.received()[0].clone();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(NOTIFY_SECRET)
    );
    let body = verify_with_library(&secret, &r).unwrap();
    assert_eq!(body["outcome"], "provisioned");
    assert_eq!(r.header("webhook-id"), r.header("idempotency-key"));

    // The same bytes an hour later: too old.
    let mut replayed = r.clone();
    let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    for (k, v) in replayed.headers.iter_mut() {
        if k == "webhook-timestamp" {
            *v = (ts - 3600).to_string();
        }
    }
    let e = verify_with_library(&secret, &replayed).unwrap_err();
    assert!(e.contains("too old"), "{e}");
    // Another body under the captured signature: refused.
    let mut altered = r.clone();
    altered.body =
        bytes::Bytes::from(String::from_utf8_lossy(&r.body).replace("provisioned", "failed"));
    let e = verify_with_library(&secret, &altered).unwrap_err();
    assert!(e.contains("No matching signature"), "{e}");
    // The wrong secret: refused.
    let e = verify_with_library("whsec_d3Jvbmc=", &r).unwrap_err();
    assert!(e.contains("No matching signature"), "{e}");
}
