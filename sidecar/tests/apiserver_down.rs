//! The API server goes away under a running sidecar: deliveries answer 503 with Retry-After
//! (the sender retries), nothing is left half-done, and once the API server is back the same
//! delivery is accepted and the host is provisioned exactly once.

mod common;

use std::time::Duration;

use common::*;
use kube_harness::ApiServer;
use serde_json::Value;

#[tokio::test]
async fn apiserver_stopped_mid_reservation_answers_503_then_recovers() {
    let mut server = ApiServer::start().await.unwrap();
    let mut b = Bench::on(&server, "down").await;
    b.create_host("node-9", Some(1)).await;
    b.annotate("node-9", "standin.test/stall", Some("true"))
        .await;
    b.start_sidecar().await;
    let start: Value = serde_json::from_str(START).unwrap();

    // Intent recorded; the host is still on its way when the API server dies.
    let a = b.post(&start).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["results"][0]["result"], "provisioning");
    server.stop_apiserver();

    let a = b.post(&start).await;
    assert_eq!(a.status, 503, "{:?}", a.body);
    assert_eq!(a.body["error_type"], "KubernetesUnavailable");
    assert!(a.body["detail"].is_string() && a.body["timestamp"].is_string());
    assert_eq!(
        a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let r = b.get("/readyz").await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(b.get("/healthz").await.unwrap().status, 200);

    server.start_apiserver().await.unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if b.get("/readyz").await.map(|r| r.status) == Ok(200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "sidecar not ready after the API server came back");

    // The sender's retry is answered with the work in progress; nothing was done twice.
    let a = b.post(&start).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["results"][0]["result"], "provisioning");
    b.annotate("node-9", "standin.test/stall", None).await;
    let n = b.notifications(1).await;
    assert_eq!(n[0]["outcome"], "provisioned");
    let host = b.wait_annotation("node-9", "notified", "provisioned").await;
    assert_eq!(host["metadata"]["generation"], 2);
    assert!(b.secret("node-9-userdata").await.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.sink.received().len(), 1);
    drop(b);
    drop(server);
}
