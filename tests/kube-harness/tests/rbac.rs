//! k8s/base/rbac.yaml, applied into a namespace, lets the sidecar's ServiceAccount do its job there
//! and nothing else. Asserts what a user of that token sees: allowed calls succeed, the rest
//! answer 403.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, Client};
use kube_harness::{ApiServer, bmh_api, client_from_kubeconfig, create_bmh};
use serde_json::json;

const SA: &str = "bmh-webhook-sidecar";

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> bool {
    match r {
        Err(kube::Error::Api(s)) => s.code == 403,
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

fn secret(name: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"userData": "#cloud-config\n"},
    }))
    .unwrap()
}

async fn setup(prefix: &str) -> (&'static ApiServer, Client, Client, String) {
    let server = ApiServer::shared().await.unwrap();
    let admin = server.client().await.unwrap();
    let ns = server.create_namespace(prefix).await.unwrap();
    let applied = server
        .apply_file("k8s/base/rbac.yaml", &ns, false)
        .await
        .unwrap();
    let kinds: Vec<_> = applied
        .iter()
        .filter_map(|o| o.types.as_ref().map(|t| t.kind.clone()))
        .collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding"]);
    let kc = server.service_account_kubeconfig(&ns, SA).await.unwrap();
    let sa = client_from_kubeconfig(&kc).await.unwrap();
    (server, admin, sa, ns)
}

#[tokio::test]
async fn service_account_can_do_its_job_in_its_namespace() {
    let (_server, admin, sa, ns) = setup("rbac-allow").await;
    create_bmh(&admin, &ns, "host-1", &[("resourceId", "r1")])
        .await
        .unwrap();
    let bmhs = bmh_api(&sa, &ns);

    let h = bmhs.get("host-1").await.unwrap();
    assert_eq!(h.metadata.name.as_deref(), Some("host-1"));
    let list = bmhs
        .list(&ListParams::default().labels("resourceId=r1"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);

    // watch: the first event of a watch from resourceVersion 0 is the existing host.
    let mut w = bmhs
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Ok(WatchEvent::Added(_)))), "{first:?}");

    let patched = bmhs
        .patch(
            "host-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.org/owner": "r1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.annotations.unwrap()["example.org/owner"],
        "r1"
    );
    // status readable through the subresource
    let st = bmhs.get_status("host-1").await.unwrap();
    assert!(st.data.get("status").is_some());

    let secrets: Api<Secret> = Api::namespaced(sa.clone(), &ns);
    secrets
        .create(&PostParams::default(), &secret("host-1-user-data"))
        .await
        .unwrap();
    let got = secrets.get("host-1-user-data").await.unwrap();
    assert!(got.data.unwrap().contains_key("userData"));
    secrets
        .delete("host-1-user-data", &DeleteParams::default())
        .await
        .unwrap();
    assert!(secrets.get_opt("host-1-user-data").await.unwrap().is_none());
}

#[tokio::test]
async fn service_account_is_denied_everything_else() {
    let (server, admin, sa, ns) = setup("rbac-deny").await;
    create_bmh(&admin, &ns, "host-1", &[]).await.unwrap();
    let other = server.create_namespace("rbac-other").await.unwrap();
    create_bmh(&admin, &other, "host-x", &[]).await.unwrap();

    // Secrets of another namespace: neither create nor read.
    let foreign: Api<Secret> = Api::namespaced(sa.clone(), &other);
    assert!(forbidden(
        foreign.create(&PostParams::default(), &secret("s")).await
    ));
    assert!(forbidden(foreign.get("s").await));
    // Listing its own Secrets is not granted either (it knows every name it uses).
    let own: Api<Secret> = Api::namespaced(sa.clone(), &ns);
    assert!(forbidden(own.list(&ListParams::default()).await));

    // BMHs of another namespace.
    assert!(forbidden(bmh_api(&sa, &other).get("host-x").await));

    let bmhs = bmh_api(&sa, &ns);
    // No BMH deletion.
    assert!(forbidden(
        bmhs.delete("host-1", &DeleteParams::default()).await
    ));
    // No status writes, neither merge patch nor replace.
    let status_patch = Patch::Merge(json!({"status": {"provisioning": {"state": "provisioned"}}}));
    assert!(forbidden(
        bmhs.patch_status("host-1", &PatchParams::default(), &status_patch)
            .await
    ));
    let current = bmhs.get("host-1").await.unwrap();
    assert!(forbidden(
        bmhs.replace_status("host-1", &PostParams::default(), &current)
            .await
    ));
    // No BMH creation.
    let mut new = current.clone();
    new.metadata = kube::api::ObjectMeta {
        name: Some("host-2".into()),
        ..Default::default()
    };
    assert!(forbidden(bmhs.create(&PostParams::default(), &new).await));

    // Nothing changed as seen by the admin.
    let h = bmh_api(&admin, &ns).get("host-1").await.unwrap();
    assert_eq!(h.data["status"]["provisioning"]["state"], "available");
}
