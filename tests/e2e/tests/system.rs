//! End to end: real Envoy with the filter → sidecar (as its ServiceAccount) → real
//! kube-apiserver with the BMH CRD and sample hosts → stand-in Metal3 operator → notification
//! sink. Asserts what the reservation system and an operator see: HTTP answers, the BMH and its
//! userData Secret, the notifications, and that rejected requests never reach the sidecar.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::{Stack, StackOptions, fixture, fresh, post_webhook, sign};
use envoy_harness::http;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube_harness::{get_bmh, wait_for_bmh, wait_for_state};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// Runs a blocking request off the async runtime's worker.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_sample_event_provisions_the_host_and_notifies_then_end_releases_it() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let admin = stack.admin.clone().unwrap();
    let ns = stack.namespace.clone();
    let sink = stack.sink.as_ref().unwrap();

    // EVENT_START through Envoy: the replaced service's 200 "success", one result per resource.
    let start = fresh(&fixture("event-start.json").unwrap());
    let resp = stack.send_signed(start.clone()).await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let answer = json(&resp.body);
    assert_eq!(answer["status"], "success");
    assert_eq!(answer["resourceName"], "lab-server-a1");
    assert_eq!(answer["eventType"], "EVENT_START");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["resourceName"], "Lab Server A1");
    assert_eq!(results[0]["result"], "provisioning");
    assert_eq!(results[0]["bmh"], format!("{ns}/lab-server-a1"));
    assert_eq!(results[1]["result"], "skipped", "a database is not a BMH");
    assert_eq!(results[2]["result"], "skipped", "a router is not a BMH");

    // The stand-in operator provisions the host; the sidecar notifies once.
    wait_for_state(&admin, &ns, "lab-server-a1", "provisioned", WAIT)
        .await
        .unwrap();
    let got = sink.wait_for(1, WAIT).await.unwrap();
    // reservation-be's notification DTO, and nothing else.
    let note = got[0].json().unwrap();
    let mut members: Vec<&str> = note
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "eventId",
            "eventType",
            "message",
            "metadata",
            "resourceId",
            "type",
            "userId",
            "webhookId"
        ]
    );
    assert_eq!(note["type"], "SUCCESS");
    assert_eq!(note["eventId"], "101");
    assert_eq!(note["userId"], "keycloak-user-id-123");
    assert_eq!(note["webhookId"], e2e::SAMPLE_WEBHOOK_ID);
    assert_eq!(note["metadata"]["outcome"], "provisioned");
    assert_eq!(note["metadata"]["username"], "giovanni.mirarchi");
    let message = note["message"].as_str().unwrap();
    assert!(
        message.contains("Lab Server A1") && message.contains("'prognose'"),
        "{message}"
    );
    let body = got[0].body.clone();
    assert_eq!(
        got[0].header("x-webhook-signature"),
        Some(sign(&stack.secret, &body).as_str()),
        "notifications are signed as reservation-be checks them"
    );
    assert!(got[0].header("idempotency-key").is_some());

    // The host: image, userData Secret reference, power on.
    let bmh = get_bmh(&admin, &ns, "lab-server-a1").await.unwrap();
    assert_eq!(
        bmh["spec"]["image"]["url"],
        "http://images.example.org/ubuntu-24.04.qcow2"
    );
    assert_eq!(bmh["spec"]["image"]["checksumType"], "sha256");
    assert_eq!(bmh["spec"]["image"]["format"], "qcow2");
    assert_eq!(bmh["spec"]["online"], true);
    let secret_name = bmh["spec"]["userData"]["name"]
        .as_str()
        .unwrap()
        .to_string();

    // The Secret: a cloud-config putting the key from the event on the site's login account.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let secret = secrets.get(&secret_name).await.unwrap();
    let user_data = secret.data.unwrap()["userData"].0.clone();
    let cloud_config = String::from_utf8(user_data).unwrap();
    assert!(cloud_config.starts_with("#cloud-config"), "{cloud_config}");
    assert!(cloud_config.contains("name: prognose"), "{cloud_config}");
    let event = json(&start);
    let key = event["sshPublicKey"].as_str().unwrap();
    assert!(cloud_config.contains(key), "{cloud_config}");

    // EVENT_END from the same reservation: image removed, Secret deleted, host available.
    let end = fresh(&fixture("event-end.json").unwrap());
    let resp = stack.send_signed(end).await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(json(&resp.body)["results"][0]["result"], "releasing");
    let got = sink.wait_for(2, WAIT).await.unwrap();
    assert_eq!(got[1].json().unwrap()["metadata"]["outcome"], "released");
    assert_eq!(got[1].json().unwrap()["type"], "INFO");
    let bmh = get_bmh(&admin, &ns, "lab-server-a1").await.unwrap();
    assert_eq!(kube_harness::provisioning_state(&bmh), "available");
    assert!(bmh["spec"]["image"].is_null(), "image removed: {bmh}");
    assert!(bmh["spec"]["userData"].is_null(), "userData removed: {bmh}");
    let gone = secrets.get_opt(&secret_name).await.unwrap();
    assert!(gone.is_none(), "userData Secret deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_rejected_at_the_edge_never_reach_the_sidecar() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let admin = stack.admin.clone().unwrap();
    let addr = stack.listener();
    let secret = stack.secret.clone();
    let before = stack.sidecar_webhook_requests();
    let bmh_before = get_bmh(&admin, &stack.namespace, "lab-server-a1")
        .await
        .unwrap();

    let answers = blocking(move || {
        let good = fresh(&fixture("event-start.json").unwrap());
        let sig = sign(&secret, &good);
        let json_ct = ("content-type", "application/json");
        let mut out = Vec::new();

        // Tampered: signed, then one byte changed.
        let mut tampered = good.clone();
        let at = tampered.iter().position(|b| *b == b'1').unwrap();
        tampered[at] = b'2';
        out.push((
            "tampered",
            post_webhook(
                addr,
                &tampered,
                &[json_ct, ("x-webhook-signature", sig.as_str())],
            )
            .unwrap(),
        ));
        // Unsigned.
        out.push(("unsigned", post_webhook(addr, &good, &[json_ct]).unwrap()));
        // Signed with another secret.
        let wrong = sign("not-the-secret", &good);
        out.push((
            "wrong secret",
            post_webhook(
                addr,
                &good,
                &[json_ct, ("x-webhook-signature", wrong.as_str())],
            )
            .unwrap(),
        ));
        // Oversized (over the 64 KiB cap), correctly signed.
        let mut big = good.clone();
        let pad = vec![b' '; 70 * 1024];
        big.splice(1..1, pad);
        let big_sig = sign(&secret, &big);
        out.push((
            "oversized",
            post_webhook(
                addr,
                &big,
                &[json_ct, ("x-webhook-signature", big_sig.as_str())],
            )
            .unwrap(),
        ));
        // Rule violation, correctly signed: a START without its user.
        let evil = String::from_utf8(good.clone())
            .unwrap()
            .replace("\"keycloak-user-id-123\"", "\"\"")
            .into_bytes();
        let evil_sig = sign(&secret, &evil);
        out.push((
            "schema",
            post_webhook(
                addr,
                &evil,
                &[json_ct, ("x-webhook-signature", evil_sig.as_str())],
            )
            .unwrap(),
        ));
        out
    })
    .await;

    let expect = [
        ("tampered", 401),
        ("unsigned", 401),
        ("wrong secret", 401),
        ("oversized", 413),
        ("schema", 422),
    ];
    for ((name, resp), (want_name, want_status)) in answers.iter().zip(expect) {
        assert_eq!(*name, want_name);
        assert_eq!(
            resp.status,
            want_status,
            "{name}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let body = json(&resp.body);
        assert!(body["detail"].is_string(), "{name}: error shape {body}");
        assert!(body["error_type"].is_string(), "{name}: error shape {body}");
        assert!(body["timestamp"].is_string(), "{name}: error shape {body}");
    }
    // Tampered and wrong-secret answers are indistinguishable.
    assert_eq!(
        json(&answers[0].1.body)["detail"],
        json(&answers[2].1.body)["detail"]
    );

    assert_eq!(
        stack.sidecar_webhook_requests(),
        before,
        "the sidecar received a rejected request"
    );
    let bmh_after = get_bmh(&admin, &stack.namespace, "lab-server-a1")
        .await
        .unwrap();
    assert_eq!(
        bmh_before["metadata"]["resourceVersion"], bmh_after["metadata"]["resourceVersion"],
        "a rejected request changed the host"
    );
    assert!(stack.sink.as_ref().unwrap().received().is_empty());

    // Control: the counter does see a request that passes the filter.
    let good = fresh(&fixture("event-start.json").unwrap());
    let ok = stack.send_signed(good).await.unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(stack.sidecar_webhook_requests(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_work_through_envoy_without_a_signature() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let addr = stack.listener();
    let (health, ready) = blocking(move || {
        (
            http::get(addr, "/healthz").unwrap(),
            http::get(addr, "/readyz").unwrap(),
        )
    })
    .await;
    assert_eq!(health.status, 200);
    let body = json(&health.body);
    assert_eq!(body["status"], "ok");
    assert!(body["timestamp"].is_string());
    assert_eq!(ready.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_delivery_through_envoy_changes_nothing() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let admin = stack.admin.clone().unwrap();
    let ns = stack.namespace.clone();
    let body = fresh(&fixture("event-start.json").unwrap());

    let first = stack.send_signed(body.clone()).await.unwrap();
    assert_eq!(first.status, 200);
    wait_for_state(&admin, &ns, "lab-server-a1", "provisioned", WAIT)
        .await
        .unwrap();
    stack
        .sink
        .as_ref()
        .unwrap()
        .wait_for(1, WAIT)
        .await
        .unwrap();
    // Settled: the delivery of the notification is recorded on the host, and Metal3 has
    // powered it on (a status save of its own, after `provisioned`, as BMO does).
    let before = wait_for_bmh(&admin, &ns, "lab-server-a1", WAIT, |b| {
        b["metadata"]["annotations"]["reservations.polito.it/notified"] == "provisioned"
            && b["status"]["poweredOn"] == true
    })
    .await
    .unwrap();

    let again = stack.send_signed(body).await.unwrap();
    assert_eq!(again.status, 200, "a redelivery is a success");
    assert_eq!(json(&again.body)["results"][0]["result"], "already_done");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = get_bmh(&admin, &ns, "lab-server-a1").await.unwrap();
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
    assert_eq!(stack.sink.as_ref().unwrap().received().len(), 1);
}
