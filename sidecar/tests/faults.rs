//! Faults, end to end on the real API server: the sidecar crashed at every step of provisioning
//! and of release, the notification receiver down for a minute, and one of two replicas killed.
//! After each fault the end state is asserted: the right BMH spec and annotations, the right
//! Secret (or none), exactly one notification per outcome, nothing lost.
//!
//! A crash is SIGKILL of the real binary. Steps the sidecar passes in microseconds (between the
//! intent and the Secret, between the Secret and the spec, between the release write and the
//! Secret's deletion) cannot be hit by a timed kill, so their cluster state is reached exactly:
//! the sidecar is crashed at the next durable state and the later writes are rolled back as
//! admin, which is the state a crash in that gap leaves (Kubernetes is the sidecar's only
//! memory). The crash-mid-provisioning and crash-mid-release scenarios also run against the real
//! baremetal-operator (`bmo::`), whose 10 s fixture steps leave time for a real kill.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube_harness::metal3::OperatorKind;
use kube_harness::wait_for_bmh;
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(90);
const STALL: &str = "standin.test/stall";

fn result(a: &Answer) -> &str {
    a.body["results"][0]["result"].as_str().unwrap_or_default()
}

async fn notified(b: &Bench, n: usize) -> Vec<Value> {
    let got = b.sink.wait_for(n, STEP).await.unwrap();
    got.iter().map(check_notification).collect()
}

async fn wait_host(b: &Bench, what: impl Fn(&Value) -> bool) -> Value {
    wait_for_bmh(&b.admin, &b.ns, "node-1", STEP, what)
        .await
        .unwrap()
}

fn phase(v: &Value) -> Option<&str> {
    annotation(v, &format!("{PREFIX}/phase"))
}

async fn merge(b: &Bench, patch: Value) {
    kube_harness::bmh_api(&b.admin, &b.ns)
        .patch("node-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn secrets(b: &Bench) -> Api<Secret> {
    Api::namespaced(b.admin.clone(), &b.ns)
}

/// The end state of a completed reservation 101 on node-1, with exactly the notifications
/// `outcomes` delivered once each.
async fn assert_provisioned(b: &Bench, outcomes: &[&str]) {
    let host = wait_host(b, |v| {
        annotation(v, &format!("{PREFIX}/notified")) == Some("provisioned")
    })
    .await;
    assert_eq!(host["status"]["provisioning"]["state"], "provisioned");
    assert_eq!(host["spec"]["image"]["url"], IMAGE_URL);
    assert_eq!(host["spec"]["online"], true);
    assert_eq!(host["spec"]["consumerRef"]["name"], "101");
    let s = b
        .secret("node-1-userdata")
        .await
        .expect("the userData Secret");
    assert!(user_data(&s).contains("giovanni.mirarchi"));
    assert_once(b, outcomes).await;
}

async fn assert_released(b: &Bench, outcomes: &[&str]) {
    let host = wait_host(b, |v| {
        annotation(v, &format!("{PREFIX}/notified")) == Some("released")
    })
    .await;
    assert_eq!(host["status"]["provisioning"]["state"], "available");
    for gone in ["image", "userData", "consumerRef"] {
        assert!(
            host["spec"].get(gone).is_none_or(Value::is_null),
            "{gone}: {}",
            host["spec"]
        );
    }
    assert_eq!(host["spec"]["online"], false);
    assert!(
        b.secret("node-1-userdata").await.is_none(),
        "Secret left behind"
    );
    assert_once(b, outcomes).await;
}

/// Exactly these notifications, in this order, each once (after a pause for strays).
async fn assert_once(b: &Bench, outcomes: &[&str]) {
    let n = notified(b, outcomes.len()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got: Vec<String> = b
        .sink
        .received()
        .iter()
        .map(|r| {
            check_notification(r)["outcome"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(got, outcomes, "{n:?}");
}

/// A stand-in bench with node-1 available and the sidecar running.
async fn bench(prefix: &str) -> Bench {
    let mut b = Bench::new(prefix).await;
    b.create_host("node-1", Some(1)).await;
    b.start_sidecar().await;
    b
}

/// Provisioning, crashed with Metal3 stalled after the spec write; `rollback` then undoes what
/// the sidecar wrote after the step under test; restarted, it must finish with one notification.
async fn crash_while_provisioning(prefix: &str, rollback: impl AsyncFnOnce(&Bench)) {
    let mut b = bench(prefix).await;
    b.annotate("node-1", STALL, Some("true")).await;
    assert_eq!(result(&b.post(&sample(START)).await), "provisioning");
    wait_host(&b, |v| v.pointer("/spec/image/url").is_some()).await;
    b.crash();
    rollback(&b).await;
    b.restart().await;
    b.annotate("node-1", STALL, None).await;
    assert_provisioned(&b, &["provisioned"]).await;
}

#[tokio::test]
async fn crashed_after_the_intent_before_the_secret() {
    crash_while_provisioning("crash-p0", async |b| {
        merge(
            b,
            json!({"spec": {"image": null, "userData": null, "online": false}}),
        )
        .await;
        secrets(b)
            .delete("node-1-userdata", &DeleteParams::default())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn crashed_after_the_secret_before_the_spec() {
    crash_while_provisioning("crash-p1", async |b| {
        merge(
            b,
            json!({"spec": {"image": null, "userData": null, "online": false}}),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn crashed_after_the_spec_while_metal3_provisions() {
    crash_while_provisioning("crash-p2", async |_| {}).await;
}

#[tokio::test]
async fn crashed_when_metal3_finished_before_the_phase_was_written() {
    let mut b = bench("crash-p3").await;
    assert_eq!(result(&b.post(&sample(START)).await), "provisioning");
    b.sink.go_down();
    wait_host(&b, |v| phase(v) == Some("provisioned")).await;
    b.crash();
    // Metal3 finished; roll the phase back to what a crash just before writing it leaves.
    merge(
        &b,
        json!({"metadata": {"annotations": {format!("{PREFIX}/phase"): "provisioning",
                                                   format!("{PREFIX}/notify-claim"): null}}}),
    )
    .await;
    b.sink.come_up().await.unwrap();
    b.restart().await;
    assert_provisioned(&b, &["provisioned"]).await;
}

#[tokio::test]
async fn crashed_while_sending_the_notification() {
    let mut b = bench("crash-p4").await;
    // The receiver is down: the sidecar holds the notification claim and retries when it dies.
    b.sink.go_down();
    assert_eq!(result(&b.post(&sample(START)).await), "provisioning");
    wait_host(&b, |v| {
        phase(v) == Some("provisioned")
            && annotation(v, &format!("{PREFIX}/notify-claim")).is_some()
    })
    .await;
    b.crash();
    b.sink.come_up().await.unwrap();
    // The restarted container (same pod, same replica id) takes its own claim over at once.
    b.restart().await;
    assert_provisioned(&b, &["provisioned"]).await;
}

/// Provisioned, then END with Metal3 stalled; crashed after the release write; `rollback`
/// undoes what came after the step under test; restarted, the release must finish once.
async fn crash_while_releasing(prefix: &str, rollback: impl AsyncFnOnce(&Bench)) {
    let mut b = bench(prefix).await;
    b.post(&sample(START)).await;
    notified(&b, 1).await;
    wait_host(&b, |v| {
        annotation(v, &format!("{PREFIX}/notified")) == Some("provisioned")
    })
    .await;
    b.annotate("node-1", STALL, Some("true")).await;
    assert_eq!(result(&b.post(&sample(END)).await), "releasing");
    wait_host(&b, |v| v.pointer("/spec/image").is_none_or(Value::is_null)).await;
    // The Secret goes right after the release write.
    for _ in 0..100 {
        if b.secret("node-1-userdata").await.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.crash();
    rollback(&b).await;
    b.restart().await;
    b.annotate("node-1", STALL, None).await;
    assert_released(&b, &["provisioned", "released"]).await;
}

#[tokio::test]
async fn crashed_after_the_end_before_the_release_write() {
    crash_while_releasing("crash-r0", async |b| {
        // The spec as it was before the release write, and the Secret still there.
        merge(
            b,
            json!({"spec": {"image": {"url": IMAGE_URL, "checksum": IMAGE_CHECKSUM,
                                           "checksumType": "sha256", "format": "qcow2"},
                                 "userData": {"name": "node-1-userdata", "namespace": b.ns},
                                 "online": true}}),
        )
        .await;
        restore_secret(b).await;
    })
    .await;
}

#[tokio::test]
async fn crashed_after_the_release_write_before_the_secret_was_deleted() {
    crash_while_releasing("crash-r1", async |b| restore_secret(b).await).await;
}

#[tokio::test]
async fn crashed_while_metal3_deprovisions() {
    crash_while_releasing("crash-r2", async |_| {}).await;
}

/// The userData Secret as the sidecar writes it (labelled, annotated, owned by the host).
async fn restore_secret(b: &Bench) {
    let host = b.host("node-1").await;
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": "node-1-userdata",
            "labels": {"app.kubernetes.io/managed-by": "bmh-sidecar"},
            "annotations": {format!("{PREFIX}/event-id"): "101"},
            "ownerReferences": [{"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
                                 "name": "node-1", "uid": host["metadata"]["uid"]}]
        },
        "stringData": {"userData": "#cloud-config\n"}
    }))
    .unwrap();
    secrets(b)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

#[tokio::test]
async fn crashed_when_metal3_finished_the_release_before_the_phase_was_written() {
    let mut b = bench("crash-r3").await;
    b.post(&sample(START)).await;
    notified(&b, 1).await;
    b.sink.go_down();
    assert_eq!(result(&b.post(&sample(END)).await), "releasing");
    wait_host(&b, |v| phase(v) == Some("released")).await;
    b.crash();
    merge(
        &b,
        json!({"metadata": {"annotations": {format!("{PREFIX}/phase"): "deprovisioning",
                                                   format!("{PREFIX}/notify-claim"): null}}}),
    )
    .await;
    b.sink.come_up().await.unwrap();
    b.restart().await;
    assert_released(&b, &["provisioned", "released"]).await;
}

/// The receiver is down for a minute while a reservation completes and is released: both
/// notifications arrive once it is back, once each, in order.
#[tokio::test]
async fn the_receiver_down_for_a_minute_loses_nothing() {
    let b = bench("sink-minute").await;
    b.sink.go_down();
    b.post(&sample(START)).await;
    wait_host(&b, |v| phase(v) == Some("provisioned")).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    b.post(&sample(END)).await;
    wait_host(&b, |v| phase(v) == Some("released")).await;
    // Released is not notified before provisioned was: the order holds.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(b.sink.received().is_empty());
    b.sink.come_up().await.unwrap();
    assert_released(&b, &["provisioned", "released"]).await;
}

/// Two replicas; the one sending the notification is killed while the receiver is down; the
/// other takes over once the claim expires (90 s), and the notification arrives once.
#[tokio::test]
async fn one_of_two_replicas_killed_mid_reservation_loses_nothing() {
    let mut b = bench("replica-kill").await;
    let second = b.start_replica().await;
    b.sink.go_down();
    let a = b.post(&sample(START)).await;
    assert_eq!(result(&a), "provisioning");
    let host = wait_host(&b, |v| {
        annotation(v, &format!("{PREFIX}/notify-claim")).is_some()
    })
    .await;
    let claim = annotation(&host, &format!("{PREFIX}/notify-claim"))
        .unwrap()
        .to_owned();
    // Kill whichever replica holds the claim.
    let holder_is_first = claim.starts_with(&b.sidecar.as_ref().unwrap().replica);
    if holder_is_first {
        b.sidecar.as_mut().unwrap().kill();
    } else {
        b.replicas[0].kill();
    }
    b.sink.come_up().await.unwrap();
    // The survivor sends it once the dead replica's claim has expired (claim_ttl(): 90 s).
    wait_for_bmh(&b.admin, &b.ns, "node-1", Duration::from_secs(180), |v| {
        annotation(v, &format!("{PREFIX}/notified")) == Some("provisioned")
    })
    .await
    .unwrap();
    assert_provisioned(&b, &["provisioned"]).await;
    // The survivor carries on with the release.
    let end = serde_json::to_vec(&sample(END)).unwrap();
    let survivor = if holder_is_first {
        second
    } else {
        b.sidecar.as_ref().unwrap().addr
    };
    let a = b
        .request_to(survivor, "POST", "/webhook", &end)
        .await
        .unwrap();
    assert_eq!(result(&a), "releasing");
    assert_released(&b, &["provisioned", "released"]).await;
}

/// The same faults with the real baremetal-operator: a real kill while BMO provisions (its
/// fixture takes 10 s) and while it deprovisions.
mod bmo {
    use super::*;

    async fn bench_bmo(prefix: &str) -> Option<Bench> {
        let mut b = Bench::with_operator(OperatorKind::Bmo, prefix).await?;
        b.create_host("node-1", Some(1)).await;
        b.start_sidecar().await;
        Some(b)
    }

    #[tokio::test]
    async fn crashed_while_metal3_provisions_then_while_it_deprovisions() {
        let Some(mut b) = bench_bmo("bmo-crash").await else {
            return;
        };
        assert_eq!(result(&b.post(&sample(START)).await), "provisioning");
        wait_host(&b, |v| {
            v["status"]["provisioning"]["state"] == "provisioning"
        })
        .await;
        b.crash_and_restart().await;
        assert_provisioned(&b, &["provisioned"]).await;
        assert_eq!(result(&b.post(&sample(END)).await), "releasing");
        wait_host(&b, |v| {
            v["status"]["provisioning"]["state"] == "deprovisioning"
        })
        .await;
        b.crash_and_restart().await;
        assert_released(&b, &["provisioned", "released"]).await;
    }
}

/// No END ever comes (the processor lost it, or was down across the end): with two replicas,
/// the host is released once its end plus RELEASE_GRACE_SECONDS has passed, by exactly one of
/// them, and the user is told once. A late END then changes nothing.
#[tokio::test]
async fn a_lost_end_is_made_up_for_once_by_one_of_two_replicas() {
    let mut b = Bench::new("lost-end")
        .await
        .env("RELEASE_GRACE_SECONDS", "3");
    b.create_host("node-1", Some(1)).await;
    b.start_sidecar().await;
    b.start_replica().await;
    let mut start = sample(START);
    let end = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(12)).to_string();
    for e in start["events"].as_array_mut().unwrap() {
        e["eventEnd"] = json!(end);
    }
    assert_eq!(result(&b.post(&start).await), "provisioning");
    assert_provisioned(&b, &["provisioned"]).await;
    let host = wait_host(&b, |v| phase(v) == Some("released")).await;
    let ended: jiff::Timestamp = end.parse().unwrap();
    let detail = annotation(&host, &format!("{PREFIX}/detail")).unwrap_or_default();
    assert!(detail.contains("no EVENT_END or EVENT_DELETED"), "{detail}");
    assert!(jiff::Timestamp::now() >= ended + jiff::SignedDuration::from_secs(3));
    assert_released(&b, &["provisioned", "released"]).await;
    let mut late = sample(END);
    for e in late["events"].as_array_mut().unwrap() {
        e["eventEnd"] = json!(end);
    }
    assert_eq!(result(&b.post(&late).await), "already_done");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.sink.received().len(), 2);
}
