//! Conformance: the same scenarios against the real Metal3 baremetal-operator (BMO, fixture
//! provisioner, its validating webhook served to the API server) and against the project's
//! stand-in, the operator chosen by a parameter. Hosts are created as a user would (BMC
//! credentials Secret, BMC address, boot MAC) and reach `available` through the operator itself.
//! The sidecar is the real binary running as the ServiceAccount of `k8s/base/rbac.yaml`, under
//! `k8s/base/secret-policy.yaml`.
//!
//! BMO's fixture provisioner keeps one state per process and cannot fail a deployment, so every
//! scenario has its own namespace, operator and host, and the scenarios about failures and
//! retries run on the stand-in only (`stand_in_only!`). Without a BMO build the `bmo::` tests
//! say so loudly and pass (outside CI; under `CI=true` a missing build fails the harness).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::{Duration, Instant};

use common::*;
use kube_harness::metal3::OperatorKind;
use kube_harness::{StandInConfig, wait_for_bmh};
use serde_json::{Value, json};

/// Generous bound for one reservation step under BMO (its fixture requeues every 10 s).
const STEP: Duration = Duration::from_secs(90);

/// One test per operator for each scenario.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod stand_in {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(kube_harness::metal3::OperatorKind::StandIn).await
            })*
        }
        mod bmo {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(kube_harness::metal3::OperatorKind::Bmo).await
            })*
        }
    };
}

conformance!(
    start_provisions_and_end_releases_the_host,
    back_to_back_reservations_on_one_host,
    an_end_releases_only_what_its_reservation_holds,
    hosts_metal3_would_never_provision_are_answered_at_once,
    a_start_without_a_key_provisions_nothing_and_says_why,
    a_deletion_releases_and_an_update_moves_the_end,
);

fn result(a: &Answer) -> (&str, &str) {
    (
        a.body["results"][0]["result"].as_str().unwrap_or_default(),
        a.body["results"][0]["detail"].as_str().unwrap_or_default(),
    )
}

async fn notified(b: &Bench, n: usize) -> Vec<Value> {
    let got = b.sink.wait_for(n, STEP * n as u32).await.unwrap();
    got.iter().map(check_notification).collect()
}

async fn wait_host(b: &Bench, name: &str, what: impl Fn(&Value) -> bool) -> Value {
    wait_for_bmh(&b.admin, &b.ns, name, STEP, what)
        .await
        .unwrap()
}

fn with_user(mut ev: Value, username: &str, key: &str) -> Value {
    ev["username"] = json!(username);
    ev["sshPublicKey"] = json!(key.trim());
    ev
}

async fn start_provisions_and_end_releases_the_host(kind: OperatorKind) {
    let Some(mut b) = Bench::with_operator(kind, "cf-life").await else {
        return;
    };
    b.create_host("node-1", Some(1)).await;
    // A host whose owner switched disk cleaning off: a release must still wipe it.
    let api = kube_harness::bmh_api(&b.admin, &b.ns);
    api.patch(
        "node-1",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"spec": {"automatedCleaningMode": "disabled"}})),
    )
    .await
    .unwrap();
    b.start_sidecar().await;

    let started = Instant::now();
    let a = b.post(&sample(START)).await;
    assert_eq!(
        (a.status, result(&a).0),
        (200, "provisioning"),
        "{:?}",
        a.body
    );
    let n = notified(&b, 1).await;
    let to_provisioned = started.elapsed();
    assert_eq!(n[0]["outcome"], "provisioned", "{}", n[0]);
    eprintln!("{kind}: EVENT_START → provisioned notification in {to_provisioned:.1?}");
    let host = b.host("node-1").await;
    assert_eq!(host["status"]["provisioning"]["state"], "provisioned");
    assert_eq!(host["status"]["provisioning"]["image"]["url"], IMAGE_URL);
    assert_eq!(host["spec"]["online"], true);
    assert_eq!(
        host["spec"]["consumerRef"],
        json!({"apiVersion": "reservations.polito.it/v1", "kind": "Reservation", "name": "101", "namespace": b.ns})
    );
    let secret = b.secret("node-1-userdata").await.unwrap();
    let key = sample(START)["sshPublicKey"].as_str().unwrap().to_owned();
    let doc: Value = serde_saphyr::from_str(&user_data(&secret)).unwrap();
    assert_eq!(
        doc["users"][0]["name"], "prognose",
        "the site's login account"
    );
    assert_eq!(doc["users"][0]["ssh_authorized_keys"], json!([key]));

    let started = Instant::now();
    let a = b.post(&sample(END)).await;
    assert_eq!(result(&a).0, "releasing", "{:?}", a.body);
    let n = notified(&b, 2).await;
    eprintln!(
        "{kind}: EVENT_END → released notification in {:.1?}",
        started.elapsed()
    );
    assert_eq!(n[1]["outcome"], "released", "{}", n[1]);
    let host = b.host("node-1").await;
    assert_eq!(host["status"]["provisioning"]["state"], "available");
    assert_eq!(
        host["status"]["poweredOn"], false,
        "released hosts are powered off"
    );
    assert_eq!(host["spec"]["online"], false);
    assert_eq!(host["spec"]["automatedCleaningMode"], "metadata");
    for gone in ["image", "userData", "consumerRef"] {
        assert!(
            host["spec"].get(gone).is_none_or(Value::is_null),
            "{gone}: {}",
            host["spec"]
        );
    }
    assert!(b.secret("node-1-userdata").await.is_none());
}

async fn back_to_back_reservations_on_one_host(kind: OperatorKind) {
    let Some(mut b) = Bench::with_operator(kind, "cf-b2b").await else {
        return;
    };
    b.create_host("node-2", Some(1)).await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    assert_eq!(notified(&b, 1).await[0]["outcome"], "provisioned");
    // The next reservation arrives with the END of the first: queued, then carried out.
    assert_eq!(result(&b.post(&sample(END)).await).0, "releasing");
    let next = with_user(
        event(START, "202", "user-b"),
        "bob",
        include_str!("fixtures/bob.pub"),
    );
    let a = b.post(&next).await;
    assert_eq!(result(&a).0, "provisioning", "{:?}", a.body);
    let n = notified(&b, 3).await;
    let seen: Vec<(&str, &str)> = n
        .iter()
        .map(|v| {
            (
                v["eventId"].as_str().unwrap(),
                v["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("101", "provisioned"),
            ("101", "released"),
            ("202", "provisioned")
        ]
    );
    let host = wait_host(&b, "node-2", |v| {
        annotation(v, &format!("{PREFIX}/notified")) == Some("provisioned")
    })
    .await;
    assert_eq!(host["spec"]["consumerRef"]["name"], "202");
    assert_eq!(host["status"]["provisioning"]["state"], "provisioned");
    // The next user's key on the site's login account, never the previous user's.
    let s = b.secret("node-2-userdata").await.unwrap();
    let doc = user_data(&s);
    let bob_blob = include_str!("fixtures/bob.pub")
        .split_whitespace()
        .nth(1)
        .unwrap();
    let first_blob = sample(START)["sshPublicKey"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        doc.contains("name: prognose") && doc.contains(bob_blob),
        "{doc}"
    );
    assert!(!doc.contains(&first_blob), "{doc}");
}

async fn an_end_releases_only_what_its_reservation_holds(kind: OperatorKind) {
    let Some(mut b) = Bench::with_operator(kind, "cf-nonholder").await else {
        return;
    };
    b.create_host("node-3", Some(1)).await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    notified(&b, 1).await;
    let before = wait_host(&b, "node-3", |v| {
        annotation(v, &format!("{PREFIX}/notified")) == Some("provisioned")
    })
    .await;
    let a = b.post(&event(END, "999", "keycloak-user-id-123")).await;
    assert_eq!(result(&a).0, "conflict", "{:?}", a.body);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = b.host("node-3").await;
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["status"]["provisioning"]["state"], "provisioned");
    assert_eq!(our_annotations(&after)["phase"], "provisioned");
    assert_eq!(our_annotations(&after)["event-id"], "101");
    assert!(b.secret("node-3-userdata").await.is_some());
    assert_eq!(b.sink.received().len(), 1);
    // The owner of a reservation can change between its START and its END (an admin edits
    // it): the END of the same reservation releases the host, whatever user it names.
    let a = b.post(&event(END, "101", "someone-else")).await;
    assert_eq!(result(&a).0, "releasing", "{:?}", a.body);
    let released = wait_host(&b, "node-3", |v| {
        annotation(v, &format!("{PREFIX}/phase")) == Some("released")
    })
    .await;
    assert!(released["spec"].get("image").is_none_or(Value::is_null));
    assert!(b.secret("node-3-userdata").await.is_none());
}

async fn hosts_metal3_would_never_provision_are_answered_at_once(kind: OperatorKind) {
    let Some(mut b) = Bench::with_operator(kind, "cf-unusable").await else {
        return;
    };
    b.create_host("node-4", Some(1)).await;
    b.start_sidecar().await;
    for (annotation_key, why) in [
        ("baremetalhost.metal3.io/paused", "paused"),
        ("baremetalhost.metal3.io/detached", "detached"),
    ] {
        b.annotate("node-4", annotation_key, Some("")).await;
        let started = Instant::now();
        let a = b.post(&sample(START)).await;
        let (res, detail) = result(&a);
        assert_eq!(res, "unavailable", "{:?}", a.body);
        assert!(detail.contains(why), "{detail}");
        assert!(started.elapsed() < Duration::from_secs(5));
        b.annotate("node-4", annotation_key, None).await;
    }
    let host = b.host("node-4").await;
    assert_eq!(our_annotations(&host), json!({}));
    assert!(host["spec"].get("consumerRef").is_none_or(Value::is_null));
    assert!(host["spec"].get("image").is_none_or(Value::is_null));
    // Someone else's consumer (Cluster API's Metal3Machine) holds the host: a conflict.
    let api = kube_harness::bmh_api(&b.admin, &b.ns);
    let capi = json!({"spec": {"consumerRef": {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
                                               "kind": "Metal3Machine", "name": "md-0-abc", "namespace": b.ns}}});
    api.patch(
        "node-4",
        &Default::default(),
        &kube::api::Patch::Merge(capi),
    )
    .await
    .unwrap();
    let a = b.post(&sample(START)).await;
    let (res, detail) = result(&a);
    assert_eq!(res, "conflict", "{:?}", a.body);
    assert!(detail.contains("Metal3Machine/md-0-abc"), "{detail}");
    assert!(b.sink.received().is_empty());
}

/// Scenarios the fixture provisioner cannot play (it never fails a deployment, and errors
/// cannot be planted in its status): the stand-in, which models BMO there.
macro_rules! stand_in_only {
    ($($scenario:ident),* $(,)?) => {
        mod stand_in_only {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario().await
            })*
        }
    };
}

stand_in_only!(
    metal3_retrying_a_failed_deployment_is_followed_to_success,
    an_error_left_on_an_available_host_does_not_fail_the_next_reservation,
    a_host_at_the_retry_limit_for_our_image_fails_at_once,
);

async fn metal3_retrying_a_failed_deployment_is_followed_to_success() {
    let mut b = Bench::with_operator(OperatorKind::StandIn, "cf-retry")
        .await
        .unwrap();
    b.create_host("node-5", Some(1)).await;
    // The first two attempts fail; BMO (and the stand-in) deprovision and try again.
    b.annotate("node-5", "standin.test/fail-attempts", Some("2"))
        .await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    // The reservation follows the retries: no `failed` on the first error.
    let host = wait_host(&b, "node-5", |v| {
        v["status"]["provisioningFailCount"].as_i64() >= Some(1)
    })
    .await;
    assert_eq!(our_annotations(&host)["phase"], "provisioning");
    let n = notified(&b, 1).await;
    assert_eq!(n[0]["outcome"], "provisioned", "{}", n[0]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(b.sink.received().len(), 1);
}

async fn an_error_left_on_an_available_host_does_not_fail_the_next_reservation() {
    let mut b = Bench::with_operator(OperatorKind::StandIn, "cf-olderr")
        .await
        .unwrap();
    b.create_host("node-6", Some(1)).await;
    // What BMO leaves on a host after an earlier failure: the host is available, with the error.
    let mut status = b.host("node-6").await["status"].clone();
    status["operationalStatus"] = json!("error");
    status["errorType"] = json!("provisioning error");
    status["errorMessage"] = json!(
        "provisioning failed 5 times, retry limit (5) reached; change image or reset provisioningFailCount to retry"
    );
    status["errorCount"] = json!(6);
    status["lastAttemptedImage"] =
        json!({"url": "http://images.example.test/older.qcow2", "checksum": "abc"});
    kube_harness::set_bmh_status(&b.admin, &b.ns, "node-6", status)
        .await
        .unwrap();
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    let n = notified(&b, 1).await;
    assert_eq!(n[0]["outcome"], "provisioned", "{}", n[0]);
}

async fn a_host_at_the_retry_limit_for_our_image_fails_at_once() {
    let mut b = Bench::with_operator_config(
        OperatorKind::StandIn,
        "cf-limit",
        &StandInConfig {
            max_provisioning_retries: 2,
            ..StandInConfig::default()
        },
    )
    .await
    .unwrap();
    b.create_host("node-7", Some(1)).await;
    b.annotate("node-7", "standin.test/fail", Some("firmware"))
        .await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    let n = notified(&b, 1).await;
    assert_eq!(n[0]["outcome"], "failed");
    assert!(
        n[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("Metal3 gave up provisioning"),
        "{}",
        n[0]
    );
    b.annotate("node-7", "standin.test/fail", None).await;
    assert_eq!(result(&b.post(&sample(END)).await).0, "releasing");
    assert_eq!(notified(&b, 2).await[1]["outcome"], "released");
    // The next reservation asks for the same image: BMO keeps refusing it until someone resets
    // provisioningFailCount (removing the image from a powered-off host saves nothing). The
    // reservation fails at once with BMO's message instead of waiting for the timeout.
    let host = b.host("node-7").await;
    if host["status"]["provisioningFailCount"].as_i64() > Some(0) {
        let started = Instant::now();
        let next = with_user(
            event(START, "202", "user-b"),
            "bob",
            include_str!("fixtures/bob.pub"),
        );
        assert_eq!(result(&b.post(&next).await).0, "provisioning");
        let n = notified(&b, 3).await;
        assert_eq!(n[2]["outcome"], "failed", "{}", n[2]);
        assert!(
            n[2]["detail"]
                .as_str()
                .unwrap()
                .starts_with("Metal3 refuses to deploy this image on this host again"),
            "{}",
            n[2]
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    } else {
        panic!("the stand-in reset provisioningFailCount on release, unlike BMO: {host}");
    }
}

/// Images Metal3's webhook would refuse stop the sidecar at start, with a message saying why,
/// instead of a reservation retrying a refused write for ever.
#[tokio::test]
async fn images_metal3_would_refuse_stop_the_sidecar_at_start() {
    for (env, says) in [
        (
            vec![("PROVISION_IMAGE", "http://img/u.qcow2")],
            "PROVISION_CHECKSUM is required",
        ),
        (
            vec![
                ("PROVISION_IMAGE", "file:///img/u.qcow2"),
                ("PROVISION_CHECKSUM", "abc"),
            ],
            "not an absolute URL with scheme http, https, ftp, gopher, oci",
        ),
        (
            vec![("PROVISION_IMAGE", "default-provision-image-url")],
            "not an absolute URL",
        ),
        (
            vec![
                ("PROVISION_IMAGE", "http://img/u.iso"),
                ("PROVISION_IMAGE_FORMAT", "live-iso"),
            ],
            "live-iso",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bmh-sidecar"))
            .env_clear()
            .env("WEBHOOK_SECRET", INBOUND_SECRET)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(says), "{env:?}: {stderr}");
    }
}

/// reservation-be's envelope for the first reservation of the START sample: `eventType`
/// `EVENT_DELETED` or `EVENT_UPDATED`, ending at `end`.
fn envelope(event_type: &str, end: &str, updated_at: &str) -> Value {
    let start = sample(START);
    let r = &start["events"][0];
    json!({
        "eventType": event_type, "timestamp": jiff::Timestamp::now().to_string(), "webhookId": "5",
        "data": {"id": 101, "title": "t", "start": r["eventStart"], "end": end, "updatedAt": updated_at,
                 "resource": {"id": r["resourceId"], "name": r["resourceName"], "status": "ACTIVE",
                              "type": {"id": 1, "name": "Server"}},
                 "keycloakId": start["userId"]}
    })
}

async fn a_start_without_a_key_provisions_nothing_and_says_why(kind: OperatorKind) {
    let Some(mut b) = Bench::with_operator(kind, "cf-nokey").await else {
        return;
    };
    b.create_host("node-4", Some(1)).await;
    b.start_sidecar().await;
    let mut start = sample(START);
    start.as_object_mut().unwrap().remove("sshPublicKey");
    let a = b.post(&start).await;
    assert_eq!((a.status, result(&a).0), (200, "failed"), "{:?}", a.body);
    assert!(result(&a).1.contains("no SSH public key"), "{:?}", a.body);
    let n = notified(&b, 1).await;
    assert_eq!(n[0]["outcome"], "failed", "{}", n[0]);
    assert!(
        n[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no SSH public key")
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let host = b.host("node-4").await;
    assert!(
        host["spec"].get("image").is_none_or(Value::is_null),
        "{}",
        host["spec"]
    );
    assert!(host["spec"].get("userData").is_none_or(Value::is_null));
    assert_eq!(host["status"]["provisioning"]["state"], "available");
    assert!(b.secret("node-4-userdata").await.is_none());
    // Its END has nothing to undo and no second notification.
    let a = b.post(&sample(END)).await;
    assert_eq!(result(&a).0, "releasing", "{:?}", a.body);
    wait_host(&b, "node-4", |v| {
        annotation(v, &format!("{PREFIX}/phase")) == Some("released")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.sink.received().len(), 1);
}

async fn a_deletion_releases_and_an_update_moves_the_end(kind: OperatorKind) {
    let Some(mut b) = Bench::with_operator(kind, "cf-deleted").await else {
        return;
    };
    b.create_host("node-5", Some(1)).await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    assert_eq!(notified(&b, 1).await[0]["outcome"], "provisioned");
    // EVENT_UPDATED: the reservation now ends in two days; an older update changes nothing.
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48)).to_string();
    let a = b
        .post(&envelope("EVENT_UPDATED", &later, "2030-01-02T00:00:00Z"))
        .await;
    assert_eq!((a.status, result(&a).0), (200, "updated"), "{:?}", a.body);
    let a = b
        .post(&envelope(
            "EVENT_UPDATED",
            "2031-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
        ))
        .await;
    assert_eq!(result(&a).0, "already_done", "{:?}", a.body);
    let host = b.host("node-5").await;
    let end: jiff::Timestamp = our_annotations(&host)["event-end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(end, later.parse::<jiff::Timestamp>().unwrap());
    // EVENT_DELETED while active: released as an END would (no END ever follows a deletion).
    let a = b
        .post(&envelope("EVENT_DELETED", &later, "2030-01-03T00:00:00Z"))
        .await;
    assert_eq!((a.status, result(&a).0), (200, "releasing"), "{:?}", a.body);
    let n = notified(&b, 2).await;
    assert_eq!(n[1]["outcome"], "released", "{}", n[1]);
    let host = b.host("node-5").await;
    assert_eq!(host["status"]["provisioning"]["state"], "available");
    assert!(host["spec"].get("image").is_none_or(Value::is_null));
    assert!(b.secret("node-5-userdata").await.is_none());
    // Messages nobody acts on: 200, nothing to do.
    for ty in ["EVENT_CREATED", "RESOURCE_UPDATED", "ALL"] {
        let a = b.post(&envelope(ty, &later, "2030-01-04T00:00:00Z")).await;
        assert_eq!(a.status, 200, "{ty}: {:?}", a.body);
        assert_eq!(a.body["message"], format!("{ty}: nothing to do"));
        assert_eq!(a.body["results"], json!([]));
    }
}
