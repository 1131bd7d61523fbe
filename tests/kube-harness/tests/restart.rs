//! A private API server can lose kube-apiserver (etcd stays) and get it back on the same URL
//! with every object intact: the basis of the sidecar's "API server stopped during a request"
//! test.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube_harness::{
    ApiServer, StandInOperator, bmh_api, create_bmh, get_bmh, provisioning_state, wait_for_state,
};
use serde_json::json;

#[tokio::test]
async fn apiserver_stops_and_comes_back_with_the_same_data() {
    let mut server = ApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let ns = server.create_namespace("restart").await.unwrap();
    create_bmh(&client, &ns, "host-r", &[]).await.unwrap();
    let url = server.url().to_string();

    server.stop_apiserver();
    assert!(!server.apiserver_running());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "during-outage"}})).unwrap();
    let during = cms.create(&PostParams::default(), &cm).await;
    assert!(
        matches!(
            during,
            Err(kube::Error::HyperError(_) | kube::Error::Service(_))
        ),
        "{during:?}"
    );

    server.start_apiserver().await.unwrap();
    assert!(server.apiserver_running());
    assert_eq!(server.url(), url);
    // The same client (same URL, CA and token) works again and sees the old data.
    let h = get_bmh(&client, &ns, "host-r").await.unwrap();
    assert_eq!(provisioning_state(&h), "available");
    assert!(cms.get_opt("during-outage").await.unwrap().is_none());
}

#[tokio::test]
async fn stand_in_operator_resumes_after_an_apiserver_outage() {
    let mut server = ApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let ns = server.create_namespace("restart-op").await.unwrap();
    create_bmh(&client, &ns, "host-o", &[]).await.unwrap();
    let _op = StandInOperator::start(client.clone(), &ns);

    server.stop_apiserver();
    server.start_apiserver().await.unwrap();

    // Written after the outage: only a re-established watch sees it.
    bmh_api(&client, &ns)
        .patch(
            "host-o",
            &PatchParams::default(),
            &Patch::Merge(json!({
                    "spec": {"online": true, "image": {"url": "http://i/img.raw", "checksum": "c"}},
            })),
        )
        .await
        .unwrap();
    let h = wait_for_state(
        &client,
        &ns,
        "host-o",
        "provisioned",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(
        h["status"]["provisioning"]["image"]["url"],
        "http://i/img.raw"
    );
}
