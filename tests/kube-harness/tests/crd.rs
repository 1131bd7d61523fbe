//! The project's BareMetalHost CRD, as the real API server enforces it: the fields the project
//! uses are validated like upstream Metal3, and status is a subresource.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube_harness::{ApiServer, bmh_api, create_bmh, get_bmh, provisioning_state};
use serde_json::{Value, json};

fn host(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn invalid<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) if s.code == 422 => s.message,
        other => panic!("expected 422 Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn rejects_what_upstream_rejects() {
    let server = ApiServer::shared().await.unwrap();
    let api = bmh_api(
        &server.client().await.unwrap(),
        &server.create_namespace("crd").await.unwrap(),
    );
    let pp = PostParams::default();

    // (name, spec, the field the 422 message names)
    for (name, spec, field) in [
        ("no-online", json!({}), "spec.online"),
        (
            "no-url",
            json!({"online": true, "image": {"checksum": "x"}}),
            "spec.image.url",
        ),
        (
            "bad-type",
            json!({"online": true, "image": {"url": "http://i", "checksumType": "crc32"}}),
            "checksumType",
        ),
        (
            "bad-format",
            json!({"online": true, "image": {"url": "http://i", "format": "iso"}}),
            "format",
        ),
        (
            "bad-mac",
            json!({"online": true, "bootMACAddress": "nope"}),
            "bootMACAddress",
        ),
    ] {
        let msg = invalid(api.create(&pp, &host(name, spec)).await);
        assert!(msg.contains(field), "{name}: {msg}");
    }

    // Every value the project uses is accepted.
    for (i, (ct, f)) in [
        ("md5", "raw"),
        ("sha256", "qcow2"),
        ("sha512", "vdi"),
        ("auto", "vmdk"),
        ("auto", "live-iso"),
    ]
    .into_iter()
    .enumerate()
    {
        api.create(
            &pp,
            &host(
                &format!("ok-{i}"),
                json!({"online": true,
            "image": {"url": "http://i", "checksum": "c", "checksumType": ct, "format": f},
            "userData": {"name": "ud", "namespace": "x"},
            "consumerRef": {"apiVersion": "v1", "kind": "Secret", "name": "c", "namespace": "x"},
            "automatedCleaningMode": "disabled"}),
            ),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn status_is_a_subresource_with_upstream_enums() {
    let server = ApiServer::shared().await.unwrap();
    let client = server.client().await.unwrap();
    let ns = server.create_namespace("crd-status").await.unwrap();
    create_bmh(&client, &ns, "h", &[]).await.unwrap();
    let api = bmh_api(&client, &ns);

    // A status change sent to the main resource is ignored (only /status writes status).
    api.patch(
        "h",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"provisioning": {"state": "provisioned"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        provisioning_state(&get_bmh(&client, &ns, "h").await.unwrap()),
        "available"
    );

    // The state is a plain string; operationalStatus and errorType are enums.
    let st = |s: Value| Patch::Merge(json!({"status": s}));
    api.patch_status(
        "h",
        &PatchParams::default(),
        &st(json!({"provisioning": {"state": "inspecting"}})),
    )
    .await
    .unwrap();
    let msg = invalid(
        api.patch_status(
            "h",
            &PatchParams::default(),
            &st(json!({"operationalStatus": "broken"})),
        )
        .await,
    );
    assert!(msg.contains("operationalStatus"), "{msg}");
    let msg = invalid(
        api.patch_status(
            "h",
            &PatchParams::default(),
            &st(json!({"errorType": "detach error"})),
        )
        .await,
    );
    assert!(msg.contains("errorType"), "{msg}");
}

#[tokio::test]
async fn dry_run_apply_validates_but_stores_nothing() {
    let server = ApiServer::shared().await.unwrap();
    let ns = server.create_namespace("dry").await.unwrap();
    let out = server
        .apply_file("k8s/base/rbac.yaml", &ns, true)
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    let sas: Api<ServiceAccount> = Api::namespaced(server.client().await.unwrap(), &ns);
    assert!(sas.get_opt("bmh-webhook-sidecar").await.unwrap().is_none());

    // A typo (unknown field) fails, as does an invalid value: a dry run catches both.
    let typo = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r}\nrules: [{verbs: [get], resources: [pods], apiGroups: [''], verb: [list]}]\n";
    let err = server
        .apply_yaml(typo, &ns, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("verb"), "{err}");
    let bad_name = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_A_Name}\n";
    let err = server
        .apply_yaml(bad_name, &ns, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Not_A_Name"), "{err}");
    let good = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\ndata: {a: b}\n";
    let out = server.apply_yaml(good, &ns, true).await.unwrap();
    assert_eq!(out[0].metadata.namespace.as_deref(), Some(ns.as_str()));
}
