//! The sidecar against a real kube-apiserver, as the ServiceAccount of k8s/base/rbac.yaml, with the
//! stand-in Metal3 operator and a notification sink: what a reservation system, a user and an
//! operator of the cluster see.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use serde_json::{Value, json};

fn results(a: &Answer) -> &Vec<Value> {
    static EMPTY: Vec<Value> = Vec::new();
    a.body["results"].as_array().unwrap_or(&EMPTY)
}

#[tokio::test]
async fn start_and_end_of_the_sample_event() {
    let mut b = Bench::new("start-end").await;
    b.create_host("node-17", Some(1)).await;
    b.start_sidecar().await;
    let start = sample(START);
    let key = start["sshPublicKey"].as_str().unwrap().to_owned();

    let a = b.post(&start).await;
    // The replaced service's reply: 200, status success, message, resourceName, eventType,
    // timestamp; `results` is the addition.
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["status"], "success");
    assert_eq!(a.body["message"], "1 of 3 resources are being provisioned");
    assert_eq!(a.body["resourceName"], "node-17");
    assert_eq!(a.body["eventType"], "EVENT_START");
    assert!(a.body["timestamp"].is_string());
    let bmh = format!("{}/node-17", b.ns);
    assert_eq!(results(&a).len(), 3);
    assert_eq!(results(&a)[0]["eventId"], "101");
    assert_eq!(results(&a)[0]["resourceId"], 1);
    assert_eq!(results(&a)[0]["resourceName"], "Lab Server A1");
    assert_eq!(results(&a)[0]["bmh"], json!(bmh));
    assert_eq!(results(&a)[0]["result"], "provisioning");
    for (i, id) in [(1, "102"), (2, "103")] {
        assert_eq!(results(&a)[i]["eventId"], id);
        assert_eq!(results(&a)[i]["result"], "skipped");
        assert_eq!(results(&a)[i]["bmh"], Value::Null);
    }

    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "provisioned");
    assert_eq!(n[0]["eventId"], "101");
    assert_eq!(n[0]["resourceId"], 1);
    assert_eq!(n[0]["resourceName"], "Lab Server A1");
    assert_eq!(n[0]["bmh"], json!(bmh));
    assert_eq!(n[0]["username"], "giovanni.mirarchi");
    assert_eq!(n[0]["userId"], "keycloak-user-id-123");
    assert_eq!(n[0]["detail"], "");

    let host = b
        .wait_annotation("node-17", "notified", "provisioned")
        .await;
    assert_eq!(
        host["spec"]["image"],
        json!({"url": IMAGE_URL, "checksum": IMAGE_CHECKSUM, "checksumType": "sha256", "format": "qcow2"})
    );
    assert_eq!(
        host["spec"]["userData"],
        json!({"name": "node-17-userdata", "namespace": b.ns})
    );
    assert_eq!(host["spec"]["online"], true);
    // Taken for the reservation: Cluster API and HostClaims leave the host alone.
    assert_eq!(
        host["spec"]["consumerRef"],
        json!({"apiVersion": "reservations.polito.it/v1", "kind": "Reservation", "name": "101", "namespace": b.ns})
    );
    // Two spec writes: the consumerRef with the intent, then image + userData + online.
    assert_eq!(host["metadata"]["generation"], 3);
    let ann = our_annotations(&host);
    let since = ann["phase-since"].as_str().unwrap().to_owned();
    let event_end = ann["event-end"].as_str().unwrap().to_owned();
    assert_eq!(
        ann,
        json!({
            "event-id": "101",
            "user-id": "keycloak-user-id-123",
            "username": "giovanni.mirarchi",
            "ssh-public-key": key,
            "resource-id": "1",
            "resource-name": "Lab Server A1",
            "event-end": event_end,
            // What Metal3's operationHistory.provision.start was when the spec was written.
            "provision-baseline": "none",
            "phase": "provisioned",
            "phase-since": since,
            "notified": "provisioned",
        })
    );
    assert_eq!(n[0]["timestamp"], json!(since));

    let secret = b.secret("node-17-userdata").await.unwrap();
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "bmh-sidecar"
    );
    assert_eq!(
        user_data(&secret),
        format!(
            "#cloud-config\nusers:\n- name: prognose\n  gecos: keycloak-user-id-123\n  shell: /bin/bash\n  sudo: ALL=(ALL) NOPASSWD:ALL\n  groups: sudo\n  lock_passwd: true\n  ssh_authorized_keys:\n  - {key}\nssh_pwauth: false\n"
        )
    );
    assert_eq!(secret.data.as_ref().unwrap().len(), 1);
    let owners = secret.metadata.owner_references.unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "BareMetalHost");
    assert_eq!(owners[0].api_version, "metal3.io/v1alpha1");
    assert_eq!(owners[0].name, "node-17");
    assert_eq!(
        Some(&owners[0].uid),
        host["metadata"]["uid"].as_str().map(str::to_owned).as_ref()
    );

    // EVENT_END from the holder.
    let end = sample(END);
    let a = b.post(&end).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["eventType"], "EVENT_END");
    assert_eq!(results(&a)[0]["result"], "releasing");
    assert_eq!(results(&a)[1]["result"], "skipped");
    let n = b.notifications(2).await;
    assert_eq!(n[1]["outcome"], "released");
    assert_eq!(n[1]["eventId"], "101");
    let host = b.wait_annotation("node-17", "notified", "released").await;
    assert_eq!(host["status"]["provisioning"]["state"], "available");
    assert!(host["spec"].get("image").is_none(), "{}", host["spec"]);
    assert!(host["spec"].get("userData").is_none(), "{}", host["spec"]);
    // Powered off and free for other Metal3 consumers again.
    assert_eq!(host["spec"]["online"], false);
    assert_eq!(host["status"]["poweredOn"], false);
    assert!(
        host["spec"].get("consumerRef").is_none(),
        "{}",
        host["spec"]
    );
    // Release (image, userData, power), then the consumerRef cleared.
    assert_eq!(host["metadata"]["generation"], 5);
    assert_eq!(
        annotation(&host, &format!("{PREFIX}/phase")),
        Some("released")
    );
    assert!(b.secret("node-17-userdata").await.is_none());
    // A START of the reservation that just ended never provisions it again.
    let a = b.post(&start).await;
    assert_eq!(results(&a)[0]["result"], "expired", "{:?}", a.body);

    // A repeated END changes nothing.
    let rv = host["metadata"]["resourceVersion"].clone();
    let a = b.post(&end).await;
    assert_eq!(results(&a)[0]["result"], "already_done");
    assert_eq!(b.host("node-17").await["metadata"]["resourceVersion"], rv);
    assert_eq!(b.sink.received().len(), 2);
}

#[tokio::test]
async fn fifty_concurrent_copies_make_one_secret_one_patch_one_notification() {
    let mut b = Bench::new("dup").await;
    b.create_host("lab-server-a1", None).await; // mapped by name
    b.start_sidecar().await;
    let start = sample(START);
    let answers = join_all((0..50).map(|_| b.post(&start))).await;
    for a in &answers {
        assert_eq!(a.status, 200, "{:?}", a.body);
        let r = results(a)[0]["result"].as_str().unwrap();
        assert!(r == "provisioning" || r == "already_done", "{r}");
        assert_eq!(
            results(a)[0]["bmh"],
            json!(format!("{}/lab-server-a1", b.ns))
        );
    }
    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "provisioned");
    b.wait_annotation("lab-server-a1", "notified", "provisioned")
        .await;
    // Settled: Metal3 powers a provisioned host on in a status save of its own, as BMO does.
    let host = kube_harness::wait_for_bmh(&b.admin, &b.ns, "lab-server-a1", WAIT, |v| {
        v["status"]["poweredOn"] == true
            && annotation(v, &format!("{PREFIX}/notified")) == Some("provisioned")
    })
    .await
    .unwrap();
    // Repeats after the fact are answered as done.
    let a = b.post(&start).await;
    assert_eq!(results(&a)[0]["result"], "already_done");
    // Give stray work time to show up, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.sink.received().len(), 1);
    let now = b.host("lab-server-a1").await;
    assert_eq!(now["metadata"]["generation"], 3);
    assert_eq!(
        now["metadata"]["resourceVersion"],
        host["metadata"]["resourceVersion"]
    );
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(b.admin.clone(), &b.ns);
    let list = secrets.list(&Default::default()).await.unwrap();
    let ours: Vec<_> = list
        .items
        .iter()
        .filter(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with("-userdata"))
        })
        .collect();
    assert_eq!(ours.len(), 1);
}

#[tokio::test]
async fn end_from_another_reservation_is_a_conflict_and_changes_nothing_and_the_holders_releases() {
    let mut b = Bench::new("conflict").await;
    b.create_host("node-1", Some(1)).await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    b.notifications(1).await;
    let before = b.wait_annotation("node-1", "notified", "provisioned").await;

    let a = b.post(&event(END, "999", "keycloak-user-id-123")).await;
    assert_eq!(a.status, 200);
    assert_eq!(results(&a)[0]["result"], "conflict", "{:?}", a.body);
    assert_eq!(results(&a)[0]["bmh"], json!(format!("{}/node-1", b.ns)));
    // A different START for a held host is queued; a third one is a conflict.
    let a = b.post(&event(START, "555", "user-b")).await;
    assert_eq!(results(&a)[0]["result"], "provisioning");
    assert!(
        results(&a)[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("queued")
    );
    let a = b.post(&event(START, "666", "user-c")).await;
    assert_eq!(results(&a)[0]["result"], "conflict");
    let after = b.host("node-1").await;
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(our_annotations(&after)["event-id"], "101");
    assert_eq!(our_annotations(&after)["phase"], "provisioned");
    assert!(b.secret("node-1-userdata").await.is_some());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(b.sink.received().len(), 1);
    // The owner of a reservation can change between its START and END: the END of the same
    // reservation releases, whatever user it carries now; the queued start then gets the host.
    let a = b.post(&event(END, "101", "someone-else")).await;
    assert_eq!(results(&a)[0]["result"], "releasing", "{:?}", a.body);
    let n = b.notifications(3).await;
    assert_eq!(
        (n[1]["outcome"].as_str(), n[1]["eventId"].as_str()),
        (Some("released"), Some("101"))
    );
    assert_eq!(n[2]["eventId"], "555");
}

#[tokio::test]
async fn start_while_deprovisioning_is_queued_then_carried_out() {
    let mut b = Bench::new("queued").await;
    b.create_host("node-2", Some(1)).await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    b.notifications(1).await;
    b.wait_annotation("node-2", "notified", "provisioned").await;

    // Hold the host in deprovisioning while the next reservation arrives.
    b.annotate("node-2", "standin.test/stall", Some("true"))
        .await;
    let a = b.post(&sample(END)).await;
    assert_eq!(results(&a)[0]["result"], "releasing");
    let mut next = event(START, "202", "user-b");
    next["username"] = json!("bob");
    next["sshPublicKey"] = json!(include_str!("fixtures/bob.pub").trim());
    let a = b.post(&next).await;
    assert_eq!(results(&a)[0]["result"], "provisioning", "{:?}", a.body);
    assert!(
        results(&a)[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("queued")
    );
    let host = b.host("node-2").await;
    let pending: Value =
        serde_json::from_str(annotation(&host, &format!("{PREFIX}/pending-start")).unwrap())
            .unwrap();
    assert_eq!(pending["eventId"], "202");
    assert_eq!(our_annotations(&host)["event-id"], "101");
    // A repeat of the queued start changes nothing; another reservation is refused.
    assert_eq!(results(&b.post(&next).await)[0]["result"], "provisioning");
    assert_eq!(
        results(&b.post(&event(START, "303", "user-c")).await)[0]["result"],
        "conflict"
    );

    b.annotate("node-2", "standin.test/stall", None).await;
    let n = b.notifications(3).await;
    assert_eq!(
        (n[1]["outcome"].as_str(), n[1]["eventId"].as_str()),
        (Some("released"), Some("101"))
    );
    assert_eq!(
        (n[2]["outcome"].as_str(), n[2]["eventId"].as_str()),
        (Some("provisioned"), Some("202"))
    );
    assert_eq!(n[2]["username"], "bob");
    let host = b.wait_annotation("node-2", "notified", "provisioned").await;
    assert_eq!(our_annotations(&host)["event-id"], "202");
    assert!(our_annotations(&host).get("pending-start").is_none());
    let s = b.secret("node-2-userdata").await.unwrap();
    // Bob's key on the site's login account; nothing of the previous user's.
    assert!(user_data(&s).contains("name: prognose"));
    assert!(user_data(&s).contains("bob@lab"));
    assert!(!user_data(&s).contains("giovanni"));
}

#[tokio::test]
async fn metal3_giving_up_fails_the_reservation_and_stops_it() {
    let mut b = Bench::new("operr").await;
    b.create_host("node-3", Some(1)).await;
    // Every attempt fails: the stand-in, like BMO, retries up to its limit, then gives up.
    b.annotate("node-3", "standin.test/fail", Some("disk on fire"))
        .await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "failed");
    let detail = n[0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Metal3 gave up provisioning: provisioning error: provisioning failed"),
        "{detail}"
    );
    let host = b.wait_annotation("node-3", "notified", "failed").await;
    assert_eq!(our_annotations(&host)["phase"], "failed");
    // Metal3 no longer has the user's deployment to retry: no image, no userData, no Secret.
    assert!(host["spec"].get("image").is_none(), "{}", host["spec"]);
    assert!(host["spec"].get("userData").is_none(), "{}", host["spec"]);
    assert_eq!(host["spec"]["online"], false);
    assert!(b.secret("node-3-userdata").await.is_none());
    // A repeat reports the failure without acting; the holder can still release the host.
    let a = b.post(&sample(START)).await;
    assert_eq!(results(&a)[0]["result"], "already_done");
    b.annotate("node-3", "standin.test/fail", None).await;
    let a = b.post(&sample(END)).await;
    assert_eq!(results(&a)[0]["result"], "releasing");
    let n = b.notifications(2).await;
    assert_eq!(n[1]["outcome"], "released");
}

#[tokio::test]
async fn no_progress_within_the_timeout_fails_with_a_notification() {
    let mut b = Bench::new("timeout")
        .await
        .env("PROVISION_TIMEOUT_SECONDS", "2");
    b.create_host("node-4", Some(1)).await;
    b.annotate("node-4", "standin.test/stall", Some("true"))
        .await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "failed");
    assert_eq!(
        n[0]["detail"],
        "not provisioned within 2s (Metal3 state: available)"
    );
}

#[tokio::test]
async fn killed_mid_provisioning_then_restarted_sends_exactly_one_notification() {
    let mut b = Bench::new("restart").await;
    b.create_host("node-5", Some(1)).await;
    b.annotate("node-5", "standin.test/stall", Some("true"))
        .await;
    b.start_sidecar().await;
    let a = b.post(&sample(START)).await;
    assert_eq!(results(&a)[0]["result"], "provisioning");
    kube_harness::wait_for_bmh(&b.admin, &b.ns, "node-5", WAIT, |v| {
        v.pointer("/spec/image/url").is_some()
    })
    .await
    .unwrap();
    b.sidecar.as_mut().unwrap().kill();
    b.annotate("node-5", "standin.test/stall", None).await;
    kube_harness::wait_for_state(&b.admin, &b.ns, "node-5", "provisioned", WAIT)
        .await
        .unwrap();
    assert!(b.sink.received().is_empty());
    b.start_sidecar().await;
    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "provisioned");
    b.wait_annotation("node-5", "notified", "provisioned").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.sink.received().len(), 1);
    assert_eq!(b.host("node-5").await["metadata"]["generation"], 3);
}

#[tokio::test]
async fn notification_sink_down_then_up_is_delivered() {
    let mut b = Bench::new("sink").await;
    b.create_host("node-6", Some(1)).await;
    b.start_sidecar().await;
    b.sink.go_down();
    b.post(&sample(START)).await;
    b.wait_annotation("node-6", "phase", "provisioned").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let host = b.host("node-6").await;
    assert!(our_annotations(&host).get("notified").is_none());
    b.sink.come_up().await.unwrap();
    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "provisioned");
    b.wait_annotation("node-6", "notified", "provisioned").await;
}

#[tokio::test]
async fn unknown_hosts_and_bad_requests() {
    let mut b = Bench::new("http").await;
    b.start_sidecar().await;
    // A Server with no BMH: not_found, nothing else fails.
    let a = b.post(&sample(START)).await;
    assert_eq!(a.status, 200);
    assert_eq!(results(&a)[0]["result"], "not_found");
    assert_eq!(results(&a)[0]["bmh"], Value::Null);
    assert_eq!(results(&a)[1]["result"], "skipped");
    assert_eq!(a.body["resourceName"], "Lab Server A1");

    // Signed but not an event: the filter's own answers, from behind the edge.
    let a = b.request("POST", "/webhook", b"{not json").await.unwrap();
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error_type"], "MalformedJson");
    assert!(a.body["detail"].is_string() && a.body["timestamp"].is_string());
    let a = b
        .request("POST", "/webhook", br#"{"eventType":"EVENT_START"}"#)
        .await
        .unwrap();
    assert_eq!(a.status, 422);
    assert_eq!(a.body["error_type"], "ValidationError");
    let a = b.request("GET", "/webhook", b"").await.unwrap();
    assert_eq!(a.status, 405);
    assert_eq!(a.body["error_type"], "MethodNotAllowed");
    let a = b.get("/nope").await.unwrap();
    assert_eq!(a.status, 404);
    let a = b.get("/healthz").await.unwrap();
    assert_eq!((a.status, a.body["status"].as_str()), (200, Some("ok")));
    let a = b.get("/readyz").await.unwrap();
    assert_eq!(a.status, 200);
    let a = b.get("/metrics").await.unwrap();
    assert_eq!(a.status, 200);
    let text = a.body.as_str().unwrap();
    assert!(
        text.contains(
            "bmh_sidecar_webhook_results_total{event_type=\"EVENT_START\",result=\"not_found\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "bmh_sidecar_http_request_duration_seconds_count{path=\"/webhook\",code=\"400\"} 1"
        ),
        "{text}"
    );

    // SIGTERM: a clean exit.
    let status = b.sidecar.as_mut().unwrap().terminate().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn host_created_after_start_and_end_right_after_start() {
    let mut b = Bench::new("fresh").await;
    b.start_sidecar().await;
    // The host appears after the sidecar started: found even if the watch has not seen it.
    b.create_host("node-7", Some(1)).await;
    b.annotate("node-7", "standin.test/stall", Some("true"))
        .await;
    let a = b.post(&sample(START)).await;
    assert_eq!(results(&a)[0]["result"], "provisioning", "{:?}", a.body);
    // The END that follows at once is the holder's, whatever the watch has seen so far.
    let a = b.post(&sample(END)).await;
    assert_eq!(results(&a)[0]["result"], "releasing", "{:?}", a.body);
    b.annotate("node-7", "standin.test/stall", None).await;
    let host = b.wait_annotation("node-7", "phase", "released").await;
    assert!(host["spec"].get("image").is_none(), "{}", host["spec"]);
    assert!(b.secret("node-7-userdata").await.is_none());
    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "released");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(b.sink.received().len(), 1);
}

#[tokio::test]
async fn two_replicas_never_both_act() {
    let mut b = Bench::new("replicas").await;
    b.create_host("node-8", Some(1)).await;
    b.start_sidecar().await;
    let second = b.start_replica().await;
    let first = b.sidecar.as_ref().unwrap().addr;
    let start = sample(START);
    let answers = join_all((0..40).map(|i| {
        let to = if i % 2 == 0 { first } else { second };
        b.post_to(to, &start)
    }))
    .await;
    for a in &answers {
        assert_eq!(a.status, 200, "{:?}", a.body);
        let r = results(a)[0]["result"].as_str().unwrap();
        assert!(r == "provisioning" || r == "already_done", "{r}");
    }
    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "provisioned");
    b.wait_annotation("node-8", "notified", "provisioned").await;
    let a = b.post_to(second, &sample(END)).await;
    assert_eq!(results(&a)[0]["result"], "releasing");
    let n = b.notifications(2).await;
    assert_eq!(n[1]["outcome"], "released");
    let host = b.wait_annotation("node-8", "notified", "released").await;
    assert!(our_annotations(&host).get("notify-claim").is_none());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.sink.received().len(), 2);
    assert_eq!(b.host("node-8").await["metadata"]["generation"], 5);
    assert!(b.secret("node-8-userdata").await.is_none());
}

#[tokio::test]
async fn deprovision_image_is_provisioned_on_release_then_replaced_for_the_next_user() {
    const WIPE: &str = "http://images.example.test/wipe.iso";
    let mut b = Bench::new("wipe")
        .await
        .env("DEPROVISION_IMAGE", WIPE)
        .env("DEPROVISION_IMAGE_FORMAT", "live-iso");
    b.create_host("node-10", Some(1)).await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    b.notifications(1).await;
    b.wait_annotation("node-10", "notified", "provisioned")
        .await;

    let a = b.post(&sample(END)).await;
    assert_eq!(results(&a)[0]["result"], "releasing");
    let n = b.notifications(2).await;
    assert_eq!(n[1]["outcome"], "released");
    let host = b.wait_annotation("node-10", "notified", "released").await;
    assert_eq!(
        host["spec"]["image"],
        json!({"url": WIPE, "format": "live-iso"})
    );
    assert!(host["spec"].get("userData").is_none(), "{}", host["spec"]);
    assert_eq!(host["status"]["provisioning"]["state"], "provisioned");
    assert_eq!(host["status"]["provisioning"]["image"]["url"], WIPE);
    assert!(b.secret("node-10-userdata").await.is_none());

    // The next reservation gets its own image, with none of the wipe image's fields left.
    let mut next = event(START, "202", "user-b");
    next["username"] = json!("bob");
    next["sshPublicKey"] = json!(include_str!("fixtures/bob.pub").trim());
    let a = b.post(&next).await;
    assert_eq!(results(&a)[0]["result"], "provisioning", "{:?}", a.body);
    let n = b.notifications(3).await;
    assert_eq!(
        (n[2]["outcome"].as_str(), n[2]["eventId"].as_str()),
        (Some("provisioned"), Some("202"))
    );
    let host = b
        .wait_annotation("node-10", "notified", "provisioned")
        .await;
    assert_eq!(
        host["spec"]["image"],
        json!({"url": IMAGE_URL, "checksum": IMAGE_CHECKSUM, "checksumType": "sha256", "format": "qcow2"})
    );
    assert_eq!(host["status"]["provisioning"]["image"]["url"], IMAGE_URL);
}

#[tokio::test]
async fn a_release_that_does_not_finish_in_time_fails_with_a_notification() {
    let mut b = Bench::new("reltimeout")
        .await
        .env("RELEASE_TIMEOUT_SECONDS", "2");
    b.create_host("node-11", Some(1)).await;
    b.start_sidecar().await;
    b.post(&sample(START)).await;
    b.notifications(1).await;
    b.wait_annotation("node-11", "notified", "provisioned")
        .await;
    b.annotate("node-11", "standin.test/stall", Some("true"))
        .await;
    let a = b.post(&sample(END)).await;
    assert_eq!(results(&a)[0]["result"], "releasing");
    let n = b.notifications(2).await;
    assert_eq!(n[1]["outcome"], "failed");
    assert_eq!(
        n[1]["detail"],
        "not released within 2s (Metal3 state: provisioned)"
    );
    // The holder keeps the host; its END, repeated once Metal3 works again, releases it.
    b.annotate("node-11", "standin.test/stall", None).await;
    let a = b.post(&sample(END)).await;
    assert_eq!(results(&a)[0]["result"], "releasing");
    let n = b.notifications(3).await;
    assert_eq!(n[2]["outcome"], "released");
}

/// Requests the API server has served for baremetalhosts with `verb`, from its own metrics.
async fn apiserver_bmh_requests(client: &kube::Client, verb: &str) -> u64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("resource=\"baremetalhosts\"")
                && l.contains(&format!("verb=\"{verb}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A sender naming a resource no host maps to used to cost two API round trips (a label LIST
/// and a GET) on every delivery; the synced watch cache is now trusted for misses.
#[tokio::test]
async fn unknown_resources_cost_one_api_lookup_not_one_per_delivery() {
    // A private API server: its request counters see this test only.
    let server = kube_harness::ApiServer::start().await.unwrap();
    let mut b = Bench::on(&server, "misses").await;
    b.start_sidecar().await;
    // Let the watch cache sync (the first delivery may find it unsynced and ask the API).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ghost = sample(START);
    ghost["events"][0]["resourceId"] = json!(4242);
    ghost["events"][0]["resourceName"] = json!("No Such Host");
    let lists = apiserver_bmh_requests(&b.admin, "LIST").await;
    let gets = apiserver_bmh_requests(&b.admin, "GET").await;
    for _ in 0..20 {
        let a = b.post(&ghost).await;
        assert_eq!(results(&a)[0]["result"], "not_found", "{:?}", a.body);
    }
    let lists = apiserver_bmh_requests(&b.admin, "LIST").await - lists;
    let gets = apiserver_bmh_requests(&b.admin, "GET").await - gets;
    assert!(
        lists <= 1 && gets <= 1,
        "20 deliveries naming an unknown host cost {lists} LISTs and {gets} GETs"
    );
    // A host created after that is still found at once (the watch delivers it).
    b.create_host("no-such-host", Some(4242)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = b.post(&ghost).await;
    assert_eq!(results(&a)[0]["result"], "provisioning", "{:?}", a.body);
    drop(b);
    drop(server);
}
