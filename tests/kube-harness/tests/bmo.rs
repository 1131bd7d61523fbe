//! The BMO tier: the REAL Metal3 baremetal-operator (fixture provisioner) on the harness's API
//! server, one BMO per test namespace. These tests pin down what BMO writes and refuses, which
//! the sidecar and the stand-in rely on. Skipped with a loud message when BMO cannot be built
//! here; under `CI=true` that is a failure instead.
//!
//! Timings are printed (`--nocapture`); they come from BMO's and the fixture's requeue delays.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_harness::bmo::{BMH_WEBHOOK_PATH, user_host, webhook_configuration};
use kube_harness::{
    ApiServer, Operator, OperatorKind, bmh_api, bmo_build, get_bmh, metal3_server,
    provisioning_state, wait_for_bmh, wait_for_state,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const CHECKSUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The shared server and an admin client, or None (skip) when BMO is unavailable.
async fn bench() -> Option<(&'static ApiServer, Client)> {
    if bmo_build().unwrap().is_none() {
        eprintln!("SKIPPED: the real baremetal-operator is not available (see above)");
        return None;
    }
    let server = metal3_server().await.unwrap();
    Some((server, server.client().await.unwrap()))
}

/// The image a START writes (as the sidecar's defaults for `make run`).
fn image() -> Value {
    json!({"url": "http://images.example.org/ubuntu-24.04.qcow2", "checksum": CHECKSUM,
           "checksumType": "sha256", "format": "qcow2"})
}

async fn merge(client: &Client, ns: &str, name: &str, patch: &Value) -> kube::Result<()> {
    bmh_api(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

fn time(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

#[test]
fn the_webhook_configuration_points_at_loopback_and_guards_one_namespace() {
    let Some(build) = bmo_build().unwrap() else {
        eprintln!("SKIPPED: no baremetal-operator source");
        return;
    };
    let vwc = webhook_configuration(&build.src, "bmo-webhook-ns1", "ns1", 4443, b"PEM").unwrap();
    assert_eq!(vwc.metadata.name.as_deref(), Some("bmo-webhook-ns1"));
    let hooks = vwc.webhooks.unwrap();
    let bmh = hooks
        .iter()
        .find(|w| w.name == "baremetalhost.metal3.io")
        .unwrap();
    assert_eq!(
        bmh.client_config.url.as_deref(),
        Some(format!("https://127.0.0.1:4443{BMH_WEBHOOK_PATH}").as_str())
    );
    assert!(bmh.client_config.service.is_none());
    assert_eq!(bmh.client_config.ca_bundle.as_ref().unwrap().0, b"PEM");
    assert_eq!(bmh.failure_policy.as_deref(), Some("Fail"));
    let rule = &bmh.rules.as_ref().unwrap()[0];
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["baremetalhosts".to_string()][..])
    );
    assert_eq!(
        rule.operations.as_deref(),
        Some(&["CREATE".to_string(), "UPDATE".to_string()][..])
    );
    for w in &hooks {
        let sel = w.namespace_selector.as_ref().unwrap();
        assert_eq!(
            sel.match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
            "ns1",
            "{}",
            w.name
        );
    }
}

#[tokio::test]
async fn a_host_created_as_a_user_would_becomes_available_through_registration() {
    let Some((server, client)) = bench().await else {
        return;
    };
    let ns = server.create_namespace("bmo-register").await.unwrap();
    let t = Instant::now();
    let op = Operator::start(OperatorKind::Bmo, server, &ns)
        .await
        .unwrap();
    eprintln!("TIMING BMO start -> webhook effective: {:?}", t.elapsed());
    assert!(
        op.describe().starts_with("baremetal-operator 02aa5059e"),
        "{}",
        op.describe()
    );

    let t = Instant::now();
    let h = op
        .add_host(&client, "host-a", &[("rack", "r1")])
        .await
        .unwrap();
    eprintln!("TIMING host created -> available: {:?}", t.elapsed());
    let s = &h["status"];
    assert_eq!(s["operationalStatus"], "OK");
    assert_eq!(s["errorMessage"], "");
    assert_eq!(s["errorCount"], 0);
    assert_eq!(s["provisioningFailCount"], 0);
    assert_eq!(s["poweredOn"], false);
    assert_eq!(s["provisioning"]["image"], json!({"url": ""}));
    assert_eq!(s["provisioning"]["ID"], "temporary-fake-id");
    assert!(s.get("lastAttemptedImage").is_none(), "{s}");
    // BMO's own registration and inspection, recorded in its operation history.
    for op_name in ["register", "inspect"] {
        let m = &s["operationHistory"][op_name];
        assert!(time(&m["end"]) >= time(&m["start"]), "{op_name}: {m}");
    }
    assert_eq!(
        s["operationHistory"]["provision"],
        json!({"start": null, "end": null})
    );
    assert_eq!(
        h["metadata"]["finalizers"],
        json!(["baremetalhost.metal3.io"])
    );
    assert_eq!(h["metadata"]["labels"]["rack"], "r1");
    // BMO claims the credentials Secret it read.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let bmc = secrets.get("host-a-bmc-secret").await.unwrap();
    assert_eq!(
        bmc.metadata.labels.unwrap()["environment.metal3.io"],
        "baremetal"
    );
    op.stop().await.unwrap();
}

#[tokio::test]
async fn a_start_like_write_provisions_and_removing_the_image_releases() {
    let Some((server, client)) = bench().await else {
        return;
    };
    let ns = server.create_namespace("bmo-cycle").await.unwrap();
    let op = Operator::start(OperatorKind::Bmo, server, &ns)
        .await
        .unwrap();
    op.add_host(&client, "host-a", &[]).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let ud: Secret = serde_json::from_value(json!({
        "metadata": {"name": "host-a-userdata"},
        "stringData": {"userData": "#cloud-config\nusers: [{name: alice}]\n"},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &ud).await.unwrap();

    // START: image + checksum + userData + online in one merge patch, as the sidecar writes.
    let written = Timestamp::now();
    let t = Instant::now();
    merge(
        &client,
        &ns,
        "host-a",
        &json!({"spec": {"online": true, "image": image(),
                         "userData": {"name": "host-a-userdata", "namespace": ns}}}),
    )
    .await
    .unwrap();
    let h = wait_for_state(&client, &ns, "host-a", "provisioning", WAIT)
        .await
        .unwrap();
    eprintln!("TIMING START write -> provisioning: {:?}", t.elapsed());
    let s = &h["status"];
    let started = time(&s["operationHistory"]["provision"]["start"]);
    assert!(started.as_second() >= written.as_second(), "{s}");
    assert!(s["operationHistory"]["provision"]["end"].is_null(), "{s}");
    // Not yet: BMO saves lastAttemptedImage with the attempt's result, not at its start.
    assert!(s.get("lastAttemptedImage").is_none(), "{s}");
    assert_eq!(s["provisioning"]["image"], json!({"url": ""}));

    let h = wait_for_state(&client, &ns, "host-a", "provisioned", WAIT)
        .await
        .unwrap();
    eprintln!("TIMING START write -> provisioned: {:?}", t.elapsed());
    let s = &h["status"];
    assert_eq!(s["provisioning"]["image"], image());
    assert_eq!(s["lastAttemptedImage"], image());
    assert_eq!(time(&s["operationHistory"]["provision"]["start"]), started);
    assert!(time(&s["operationHistory"]["provision"]["end"]) >= started);
    assert_eq!(s["operationalStatus"], "OK");
    assert_eq!(s["errorCount"], 0);
    assert_eq!(s["provisioningFailCount"], 0);
    let h = wait_for_bmh(&client, &ns, "host-a", WAIT, |h| {
        h["status"]["poweredOn"] == true
    })
    .await
    .unwrap();
    eprintln!(
        "TIMING START write -> provisioned and poweredOn: {:?}",
        t.elapsed()
    );
    assert_eq!(provisioning_state(&h), "provisioned");
    // (The fixture provisioner never reads the userData Secret, so unlike with Ironic BMO does
    // not label it here.)

    // END: image and userData removed, powered off.
    let t = Instant::now();
    merge(
        &client,
        &ns,
        "host-a",
        &json!({"spec": {"online": false, "image": null, "userData": null}}),
    )
    .await
    .unwrap();
    let h = wait_for_state(&client, &ns, "host-a", "deprovisioning", WAIT)
        .await
        .unwrap();
    assert!(h["status"]["operationHistory"]["deprovision"]["end"].is_null());
    let h = wait_for_state(&client, &ns, "host-a", "available", WAIT)
        .await
        .unwrap();
    eprintln!("TIMING image removed -> available: {:?}", t.elapsed());
    let s = &h["status"];
    assert_eq!(s["provisioning"]["image"], json!({"url": ""}));
    let dep = &s["operationHistory"]["deprovision"];
    assert!(time(&dep["end"]) >= time(&dep["start"]), "{dep}");
    // lastAttemptedImage stays after a release.
    assert_eq!(s["lastAttemptedImage"], image());
    wait_for_bmh(&client, &ns, "host-a", WAIT, |h| {
        h["status"]["poweredOn"] == false
    })
    .await
    .unwrap();
    eprintln!(
        "TIMING image removed -> available and powered off: {:?}",
        t.elapsed()
    );
    op.stop().await.unwrap();
}

/// Exactly what the API server answers when BMO's webhook refuses a BareMetalHost write.
fn rejection(r: kube::Result<()>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn the_webhook_rejects_bad_images_in_its_namespace_only() {
    let Some((server, client)) = bench().await else {
        return;
    };
    let ns = server.create_namespace("bmo-webhook").await.unwrap();
    // A host that breaks BMO's rules, created before BMO's webhook exists.
    let mut bad: Value = user_host(&ns, "host-old", &[]);
    bad["spec"]["image"] = json!({"url": "http://images.example.org/x.qcow2"});
    bmh_api(&client, &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await
        .unwrap();
    let op = Operator::start(OperatorKind::Bmo, server, &ns)
        .await
        .unwrap();
    op.add_host(&client, "host-a", &[]).await.unwrap();

    let cases = [
        (
            json!({"url": "file:///images/x.qcow2", "checksum": CHECKSUM}),
            "admission webhook \"baremetalhost.metal3.io\" denied the request: image URL file:///images/x.qcow2 is invalid: invalid scheme in URL, \"file\" not allowed",
        ),
        (
            json!({"url": "http://images.example.org/x.qcow2", "format": "qcow2"}),
            "admission webhook \"baremetalhost.metal3.io\" denied the request: checksum is required for normal images",
        ),
        (
            json!({"url": "default-provision-image-url"}),
            // The replaced service's default PROVISION_IMAGE: both errors, aggregated.
            "admission webhook \"baremetalhost.metal3.io\" denied the request: [image URL default-provision-image-url is invalid: parse \"default-provision-image-url\": invalid URI for request, checksum is required for normal images]",
        ),
        (
            json!({"url": "oci://registry.example.org/os:1", "checksum": CHECKSUM}),
            "admission webhook \"baremetalhost.metal3.io\" denied the request: spec.image.checksum must be empty for OCI images (oci:// images have embedded checksums)",
        ),
    ];
    for (img, message) in cases {
        let got = rejection(merge(&client, &ns, "host-a", &json!({"spec": {"image": img}})).await);
        assert_eq!(got, (403, "Forbidden".into(), message.into()), "{img}");
    }
    // Accepted: what BMO allows (so the rejections above are BMO's, not everything's). Each
    // replaces the previous image (a merge patch would keep its other fields).
    for img in [
        image(),
        json!({"url": "https://images.example.org/x.iso", "format": "live-iso"}),
        json!({"url": "oci://registry.example.org/os:1"}),
    ] {
        merge(&client, &ns, "host-a", &json!({"spec": {"image": null}}))
            .await
            .unwrap();
        merge(&client, &ns, "host-a", &json!({"spec": {"image": img}}))
            .await
            .unwrap_or_else(|e| panic!("{img} refused: {e}"));
    }
    merge(&client, &ns, "host-a", &json!({"spec": {"image": null}}))
        .await
        .unwrap();
    // The webhook validates the whole object: a host that breaks the rules cannot even be
    // annotated until its image is fixed.
    let got = rejection(
        merge(
            &client,
            &ns,
            "host-old",
            &json!({"metadata": {"annotations": {"example.org/note": "x"}}}),
        )
        .await,
    );
    assert_eq!(
        got,
        (
            403,
            "Forbidden".into(),
            "admission webhook \"baremetalhost.metal3.io\" denied the request: checksum is required for normal images".into()
        )
    );
    // Other namespaces are not guarded by this BMO.
    let other = server.create_namespace("bmo-webhook-other").await.unwrap();
    let mut h = user_host(&other, "free", &[]);
    h["spec"]["image"] = json!({"url": "file:///x"});
    let obj: DynamicObject = serde_json::from_value(h).unwrap();
    bmh_api(&client, &other)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    op.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_bmc_secret_is_a_registration_error_until_it_exists() {
    let Some((server, client)) = bench().await else {
        return;
    };
    let ns = server.create_namespace("bmo-nosecret").await.unwrap();
    let op = Operator::start(OperatorKind::Bmo, server, &ns)
        .await
        .unwrap();
    let obj: DynamicObject = serde_json::from_value(user_host(&ns, "host-a", &[])).unwrap();
    bmh_api(&client, &ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    let h = wait_for_bmh(&client, &ns, "host-a", WAIT, |h| {
        h["status"]["operationalStatus"] == "error"
    })
    .await
    .unwrap();
    let s = &h["status"];
    assert_eq!(provisioning_state(&h), "registering");
    assert_eq!(s["errorType"], "registration error");
    assert_eq!(
        s["errorMessage"],
        format!(
            "BMC CredentialsName secret doesn't exist The BMC secret {ns}/host-a-bmc-secret does not exist"
        )
    );
    assert_eq!(s["errorCount"], 1);
    kube_harness::bmo::ensure_bmc_secret(&client, &ns, "host-a-bmc-secret")
        .await
        .unwrap();
    let t = Instant::now();
    let h = wait_for_state(&client, &ns, "host-a", "available", WAIT)
        .await
        .unwrap();
    eprintln!("TIMING BMC Secret created -> available: {:?}", t.elapsed());
    assert_eq!(h["status"]["operationalStatus"], "OK");
    assert!(h["status"].get("errorType").is_none());
    op.stop().await.unwrap();
}

#[tokio::test]
async fn a_paused_host_is_left_alone_and_a_detached_one_says_so() {
    let Some((server, client)) = bench().await else {
        return;
    };
    let ns = server.create_namespace("bmo-paused").await.unwrap();
    let op = Operator::start(OperatorKind::Bmo, server, &ns)
        .await
        .unwrap();
    op.add_host(&client, "host-a", &[]).await.unwrap();
    merge(
        &client,
        &ns,
        "host-a",
        &json!({"metadata": {"annotations": {"baremetalhost.metal3.io/paused": ""}},
                "spec": {"online": true, "image": image()}}),
    )
    .await
    .unwrap();
    // Longer than BMO needs to start provisioning an unpaused host (well under a second).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let h = get_bmh(&client, &ns, "host-a").await.unwrap();
    assert_eq!(provisioning_state(&h), "available", "{}", h["status"]);
    assert_eq!(h["status"]["poweredOn"], false);
    merge(
        &client,
        &ns,
        "host-a",
        &json!({"metadata": {"annotations": {"baremetalhost.metal3.io/paused": null}}}),
    )
    .await
    .unwrap();
    wait_for_state(&client, &ns, "host-a", "provisioned", WAIT)
        .await
        .unwrap();

    merge(
        &client,
        &ns,
        "host-a",
        &json!({"metadata": {"annotations": {"baremetalhost.metal3.io/detached": ""}}}),
    )
    .await
    .unwrap();
    let h = wait_for_bmh(&client, &ns, "host-a", WAIT, |h| {
        h["status"]["operationalStatus"] == "detached"
    })
    .await
    .unwrap();
    assert_eq!(provisioning_state(&h), "provisioned");
    merge(
        &client,
        &ns,
        "host-a",
        &json!({"metadata": {"annotations": {"baremetalhost.metal3.io/detached": null}}}),
    )
    .await
    .unwrap();
    wait_for_bmh(&client, &ns, "host-a", WAIT, |h| {
        h["status"]["operationalStatus"] == "OK"
    })
    .await
    .unwrap();
    op.stop().await.unwrap();
}

#[tokio::test]
async fn stop_deletes_the_hosts_then_stops_bmo_and_removes_its_webhook() {
    let Some((server, client)) = bench().await else {
        return;
    };
    let ns = server.create_namespace("bmo-stop").await.unwrap();
    let op = Operator::start(OperatorKind::Bmo, server, &ns)
        .await
        .unwrap();
    op.add_host(&client, "host-a", &[]).await.unwrap();
    let bmo = op.bmo().unwrap();
    let (pid, vwc_name, dir) = (
        bmo.pid(),
        bmo.webhook_configuration_name().to_string(),
        bmo.dir().to_path_buf(),
    );
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    assert!(vwcs.get_opt(&vwc_name).await.unwrap().is_some());
    let t = Instant::now();
    op.stop().await.unwrap();
    eprintln!(
        "TIMING stop (host deleted through BMO's finalizer): {:?}",
        t.elapsed()
    );
    assert!(
        bmh_api(&client, &ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(vwcs.get_opt(&vwc_name).await.unwrap().is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "BMO still runs"
    );
    assert!(!dir.exists());
    // Unguarded now: a host BMO would refuse is accepted.
    let mut h = user_host(&ns, "after", &[]);
    h["spec"]["image"] = json!({"url": "file:///x"});
    let obj: DynamicObject = serde_json::from_value(h).unwrap();
    bmh_api(&client, &ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
}
