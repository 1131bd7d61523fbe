//! The stand-in operator drives hosts through the real Metal3 state sequence, on the real API
//! server, writing status only through the status subresource.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube_harness::operator::{FAIL_ANNOTATION, STALL_ANNOTATION};
use kube_harness::{
    ApiServer, StandInOperator, bmh_api, create_bmh, get_bmh, provisioning_state, wait_for_bmh,
    wait_for_state,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn provision_patch() -> Value {
    json!({"spec": {
        "online": true,
        "image": {"url": "http://images.example/ubuntu.raw", "checksum": "0123abcd",
                  "checksumType": "sha256", "format": "raw"},
        "userData": {"name": "user-data"},
    }})
}

async fn merge(client: &kube::Client, ns: &str, name: &str, patch: Value) {
    bmh_api(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn created_host_is_available_and_ready_to_provision() {
    let server = ApiServer::shared().await.unwrap();
    let client = server.client().await.unwrap();
    let ns = server.create_namespace("op-create").await.unwrap();
    let h = create_bmh(&client, &ns, "host-a", &[("resourceId", "server-1")])
        .await
        .unwrap();
    assert_eq!(provisioning_state(&h), "available");
    assert_eq!(h["status"]["operationalStatus"], "OK");
    assert_eq!(h["spec"]["online"], false);
    assert_eq!(h["metadata"]["labels"]["resourceId"], "server-1");
    // Defaulted by the CRD like upstream.
    assert_eq!(h["spec"]["automatedCleaningMode"], "metadata");
}

#[tokio::test]
async fn provisions_and_deprovisions_through_the_real_sequence() {
    let server = ApiServer::shared().await.unwrap();
    let client = server.client().await.unwrap();
    let ns = server.create_namespace("op-cycle").await.unwrap();
    create_bmh(&client, &ns, "host-a", &[]).await.unwrap();
    let _op = StandInOperator::start(client.clone(), &ns);

    merge(&client, &ns, "host-a", provision_patch()).await;
    wait_for_state(&client, &ns, "host-a", "provisioning", WAIT)
        .await
        .unwrap();
    let h = wait_for_state(&client, &ns, "host-a", "provisioned", WAIT)
        .await
        .unwrap();
    assert_eq!(
        h["status"]["provisioning"]["image"]["url"],
        "http://images.example/ubuntu.raw"
    );
    assert_eq!(
        h["status"]["provisioning"]["image"]["checksumType"],
        "sha256"
    );
    assert_eq!(h["status"]["operationalStatus"], "OK");
    assert_eq!(h["status"]["poweredOn"], true);
    // The spec the client wrote is untouched by the status writes.
    assert_eq!(h["spec"]["userData"]["name"], "user-data");

    merge(
        &client,
        &ns,
        "host-a",
        json!({"spec": {"image": null, "userData": null}}),
    )
    .await;
    wait_for_state(&client, &ns, "host-a", "deprovisioning", WAIT)
        .await
        .unwrap();
    let h = wait_for_state(&client, &ns, "host-a", "available", WAIT)
        .await
        .unwrap();
    assert!(h["status"]["provisioning"].get("image").is_none(), "{h}");
    assert_eq!(h["status"]["poweredOn"], false);
}

#[tokio::test]
async fn failure_switch_reports_error_and_stays_provisioning() {
    let server = ApiServer::shared().await.unwrap();
    let client = server.client().await.unwrap();
    let ns = server.create_namespace("op-fail").await.unwrap();
    create_bmh(&client, &ns, "host-f", &[]).await.unwrap();
    merge(
        &client,
        &ns,
        "host-f",
        json!({"metadata": {"annotations": {FAIL_ANNOTATION: "image checksum mismatch"}}}),
    )
    .await;
    let _op = StandInOperator::start(client.clone(), &ns);
    merge(&client, &ns, "host-f", provision_patch()).await;

    let h = wait_for_bmh(&client, &ns, "host-f", WAIT, |h| {
        h["status"]["operationalStatus"] == "error"
    })
    .await
    .unwrap();
    assert_eq!(provisioning_state(&h), "provisioning");
    assert_eq!(h["status"]["errorType"], "provisioning error");
    assert_eq!(h["status"]["errorMessage"], "image checksum mismatch");
    assert_eq!(h["status"]["errorCount"], 1);

    // Lifting the switch lets provisioning finish and clears the error, like a successful retry.
    merge(
        &client,
        &ns,
        "host-f",
        json!({"metadata": {"annotations": {FAIL_ANNOTATION: null}}}),
    )
    .await;
    let h = wait_for_state(&client, &ns, "host-f", "provisioned", WAIT)
        .await
        .unwrap();
    assert_eq!(h["status"]["operationalStatus"], "OK");
    assert!(h["status"].get("errorType").is_none(), "{h}");
    assert_eq!(h["status"]["errorMessage"], "");
}

#[tokio::test]
async fn stall_switch_keeps_the_host_where_it_is() {
    let server = ApiServer::shared().await.unwrap();
    let client = server.client().await.unwrap();
    let ns = server.create_namespace("op-stall").await.unwrap();
    create_bmh(&client, &ns, "host-s", &[]).await.unwrap();
    create_bmh(&client, &ns, "host-ok", &[]).await.unwrap();
    merge(
        &client,
        &ns,
        "host-s",
        json!({"metadata": {"annotations": {STALL_ANNOTATION: "true"}}}),
    )
    .await;
    let _op = StandInOperator::start(client.clone(), &ns);
    merge(&client, &ns, "host-s", provision_patch()).await;
    merge(&client, &ns, "host-ok", provision_patch()).await;

    // The unstalled host in the same namespace going all the way proves the operator ran over
    // the stalled one too (no timing assumption).
    wait_for_state(&client, &ns, "host-ok", "provisioned", WAIT)
        .await
        .unwrap();
    let h = get_bmh(&client, &ns, "host-s").await.unwrap();
    assert_eq!(provisioning_state(&h), "available");

    merge(
        &client,
        &ns,
        "host-s",
        json!({"metadata": {"annotations": {STALL_ANNOTATION: null}}}),
    )
    .await;
    wait_for_state(&client, &ns, "host-s", "provisioned", WAIT)
        .await
        .unwrap();
}
