//! Faults at the edge: Envoy killed while a delivery is half sent, then restarted on the same
//! port; the reservation system retries. Nothing of the cut delivery reaches the sidecar, the
//! retry provisions the host once, and one notification is sent.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use e2e::{Stack, StackOptions, fixture, fresh, sign};
use kube_harness::{get_bmh, wait_for_bmh};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_restarted_mid_delivery_loses_nothing_and_doubles_nothing() {
    let mut stack = Stack::start(StackOptions::default()).await.unwrap();
    let admin = stack.admin.clone().unwrap();
    let ns = stack.namespace.clone();
    let body = fresh(&fixture("event-start.json").unwrap());
    let sig = sign(&stack.secret, &body);
    let before = stack.sidecar_webhook_requests();

    // Headers and half the body, then Envoy dies.
    let addr = stack.listener();
    let half = body.len() / 2;
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-webhook-signature: {sig}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body[..half]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.restart_envoy().unwrap();
    // The client sees its connection end without an answer.
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"),
        "a cut delivery was answered as a success"
    );
    assert_eq!(
        stack.sidecar_webhook_requests(),
        before,
        "the half-sent delivery reached the sidecar"
    );
    let host = get_bmh(&admin, &ns, "lab-server-a1").await.unwrap();
    assert!(host["metadata"]["annotations"]["reservations.polito.it/event-id"].is_null());

    // The sender retries the same delivery through the restarted Envoy.
    let resp = stack.send_signed(body.clone()).await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let sink = stack.sink.as_ref().unwrap();
    let got = sink.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].json().unwrap()["metadata"]["outcome"], "provisioned");
    let host = wait_for_bmh(&admin, &ns, "lab-server-a1", WAIT, |b| {
        b["metadata"]["annotations"]["reservations.polito.it/notified"] == "provisioned"
    })
    .await
    .unwrap();
    assert_eq!(
        host["metadata"]["generation"], 3,
        "the spec was written once"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received().len(), 1);
    assert_eq!(stack.sidecar_webhook_requests(), before + 1);
}
