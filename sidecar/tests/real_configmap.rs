//! The real deployment's ConfigMap (the replaced service's `webhook-client-config`, key for
//! key, value for value) starts the sidecar unchanged: applied to the real API server, read
//! back, and given to the sidecar as its whole environment (only the namespace and the two
//! endpoints point at this test's namespace and receiver, and the webhook's secret comes from
//! its Secret). Its image, checksum and timeout are what the sidecar uses; its notification
//! endpoint receives reservation-be's notification.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

/// The replaced deployment's ConfigMap data (its `k8s/configmap.yaml`), endpoints aside.
fn real_configmap(namespace: &str, sink: &str) -> BTreeMap<String, String> {
    [
        ("K8S_NAMESPACE", namespace),
        ("BMH_API_GROUP", "metal3.io"),
        ("BMH_API_VERSION", "v1alpha1"),
        ("BMH_PLURAL", "baremetalhosts"),
        (
            "PROVISION_IMAGE",
            "http://192.168.11.23/images/noble-server-cloudimg-amd64.img",
        ),
        (
            "PROVISION_CHECKSUM",
            "http://192.168.11.23/images/noble-server-cloudimg-amd64.img.sha256sum",
        ),
        ("PROVISION_CHECKSUM_TYPE", "sha256"),
        ("DEPROVISION_IMAGE", ""),
        ("LOG_LEVEL", "INFO"),
        ("DISABLE_HEALTHZ_LOGS", "true"),
        ("NETWORK_CONFIG_ENABLED", "true"),
        ("SWITCH_HOST", "192.168.24.67"),
        ("PROVISIONING_TIMEOUT", "2700"),
        ("NOTIFICATION_ENDPOINT", sink),
        ("NOTIFICATION_TIMEOUT", "30"),
        ("WEBHOOK_LOG_ENDPOINT", sink),
        ("WEBHOOK_LOG_TIMEOUT", "30"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[tokio::test]
async fn the_real_deployments_configmap_starts_the_sidecar_unchanged() {
    let b = Bench::new("real-cm").await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "webhook-client-config"},
        "data": real_configmap(&b.ns, &b.sink.url()),
    }))
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(b.admin.clone(), &b.ns);
    api.create(&PostParams::default(), &cm).await.unwrap();
    let data = api
        .get("webhook-client-config")
        .await
        .unwrap()
        .data
        .unwrap();
    let mut b = b.with_only_its_env();
    for (k, v) in &data {
        b = b.env(k, v);
    }
    let mut b = b
        .env("WEBHOOK_SECRET", INBOUND_SECRET)
        .env("WEBHOOK_ID", "5");
    b.create_host("srv-01", Some(1)).await;
    b.start_sidecar().await;

    let a = b.post(&sample(START)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        a.body["results"][0]["result"], "provisioning",
        "{:?}",
        a.body
    );
    let host = b.wait_annotation("srv-01", "notified", "provisioned").await;
    let image = &host["spec"]["image"];
    assert_eq!(image["url"], data["PROVISION_IMAGE"].as_str());
    assert_eq!(image["checksum"], data["PROVISION_CHECKSUM"].as_str());
    assert_eq!(image["checksumType"], "sha256");
    // The timeouts it runs with.
    let log = b.sidecar.as_ref().unwrap().log_text();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "configuration")
        .unwrap_or_else(|| panic!("no configuration line:\n{log}"));
    assert_eq!(
        line["fields"]["provisioning_timeout_seconds"], 2700,
        "{line}"
    );
    assert_eq!(line["fields"]["notification_timeout_seconds"], 30, "{line}");
    // reservation-be's notification at NOTIFICATION_ENDPOINT, signed with the webhook's secret
    // as reservation-be checks it, and a webhook log beside it at WEBHOOK_LOG_ENDPOINT.
    let got = b.sink.wait_for(2, WAIT).await.unwrap();
    let note = got
        .iter()
        .find(|r| r.json().is_ok_and(|v| v.get("message").is_some()))
        .expect("a notification");
    let body = note.json().unwrap();
    assert_eq!(body["type"], "SUCCESS", "{body}");
    assert_eq!(body["webhookId"], "5");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(INBOUND_SECRET.as_bytes()).unwrap();
    mac.update(&note.body);
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(note.header("x-webhook-signature"), Some(want.as_str()));
    assert!(
        got.iter().any(|r| r
            .json()
            .is_ok_and(|v| v["eventType"] == "EVENT_START" && v["success"] == true)),
        "a webhook log: {:?}",
        got.iter().map(|r| r.json().ok()).collect::<Vec<_>>()
    );
}
