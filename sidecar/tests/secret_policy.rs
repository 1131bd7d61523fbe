//! k8s/base/secret-policy.yaml on a real API server: the sidecar's ServiceAccount may create,
//! change and delete only Secrets labelled `app.kubernetes.io/managed-by=bmh-sidecar` (RBAC
//! alone lets it touch every Secret of the namespace, BMC credentials included); other users
//! are not affected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_harness::{ApiServer, client_from_kubeconfig};
use serde_json::{Value, json};

const SA: &str = "bmh-webhook-sidecar";
const LABEL: &str = "app.kubernetes.io/managed-by";

fn secret(name: &str, managed: bool) -> Secret {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"userData": "#cloud-config\n"},
    });
    if managed {
        v["metadata"]["labels"] = json!({LABEL: "bmh-sidecar"});
    }
    serde_json::from_value(v).unwrap()
}

/// `Err(message)` for a 403 from admission, `Ok` when allowed; anything else fails the test.
fn verdict<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(s.message),
        Err(e) => panic!("expected success or 403, got {e:?}"),
    }
}

/// A namespace with the RBAC and the policy; the ServiceAccount's and admin's Secret APIs.
async fn setup() -> (Api<Secret>, Api<Secret>) {
    let server = ApiServer::shared().await.unwrap();
    let admin = server.client().await.unwrap();
    let ns = server.create_namespace("vap").await.unwrap();
    server
        .apply_file("k8s/base/rbac.yaml", &ns, false)
        .await
        .unwrap();
    let applied = server
        .apply_file("k8s/base/secret-policy.yaml", &ns, false)
        .await
        .unwrap();
    let kinds: Vec<_> = applied
        .iter()
        .filter_map(|o| o.types.as_ref().map(|t| t.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    let kc = server.service_account_kubeconfig(&ns, SA).await.unwrap();
    let sa: Client = client_from_kubeconfig(&kc).await.unwrap();
    let sa = Api::namespaced(sa, &ns);
    let admin = Api::namespaced(admin, &ns);
    // The policy takes effect once the API server has loaded it: wait (bounded) until an
    // unlabelled create by the ServiceAccount is refused.
    let probe = secret("probe-unlabelled", false);
    for _ in 0..100 {
        match verdict(sa.create(&PostParams::default(), &probe).await) {
            Err(_) => return (sa, admin),
            Ok(()) => {
                let _ = admin
                    .delete("probe-unlabelled", &DeleteParams::default())
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the ValidatingAdmissionPolicy never took effect");
}

fn merge(v: Value) -> Patch<Value> {
    Patch::Merge(v)
}

#[tokio::test]
async fn the_sidecar_may_write_only_the_secrets_it_labels() {
    let (sa, admin) = setup().await;
    let pp = PatchParams::default();

    // Allowed: its own, labelled Secrets, from create to delete.
    verdict(
        sa.create(&PostParams::default(), &secret("host-1-userdata", true))
            .await,
    )
    .unwrap();
    verdict(
        sa.patch(
            "host-1-userdata",
            &pp,
            &merge(json!({"stringData": {"userData": "#cloud-config\nx: 1\n"}})),
        )
        .await,
    )
    .unwrap();
    verdict(sa.delete("host-1-userdata", &DeleteParams::default()).await).unwrap();

    // Denied: creating an unlabelled Secret.
    let e = verdict(
        sa.create(&PostParams::default(), &secret("host-2-userdata", false))
            .await,
    )
    .unwrap_err();
    assert!(e.contains("may only write Secrets labelled"), "{e}");

    // Denied: changing or deleting a Secret someone else wrote (BMC credentials, say).
    admin
        .create(&PostParams::default(), &secret("host-3-bmc", false))
        .await
        .unwrap();
    let e = verdict(
        sa.patch(
            "host-3-bmc",
            &pp,
            &merge(json!({"stringData": {"password": "x"}})),
        )
        .await,
    )
    .unwrap_err();
    assert!(e.contains("may only"), "{e}");
    let e = verdict(sa.delete("host-3-bmc", &DeleteParams::default()).await).unwrap_err();
    assert!(
        e.contains("may only change or delete Secrets it created"),
        "{e}"
    );
    // ... nor by adding the label to it.
    let e = verdict(
        sa.patch(
            "host-3-bmc",
            &pp,
            &merge(json!({"metadata": {"labels": {LABEL: "bmh-sidecar"}}})),
        )
        .await,
    )
    .unwrap_err();
    assert!(
        e.contains("may only change or delete Secrets it created"),
        "{e}"
    );
    let untouched = admin.get("host-3-bmc").await.unwrap();
    assert!(untouched.metadata.labels.is_none());

    // Denied: removing the label from its own Secret.
    verdict(
        sa.create(&PostParams::default(), &secret("host-4-userdata", true))
            .await,
    )
    .unwrap();
    let e = verdict(
        sa.patch(
            "host-4-userdata",
            &pp,
            &merge(json!({"metadata": {"labels": {LABEL: null}}})),
        )
        .await,
    )
    .unwrap_err();
    assert!(e.contains("may only write Secrets labelled"), "{e}");

    // Other users are not concerned.
    admin
        .create(&PostParams::default(), &secret("admin-made", false))
        .await
        .unwrap();
    admin
        .delete("host-3-bmc", &DeleteParams::default())
        .await
        .unwrap();
}
