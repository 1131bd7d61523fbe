//! The stand-in operator: first its pure decisions (`next_status_with`, BMO's next status save
//! for a host), then the running stand-in on the real API server, writing status only through
//! the status subresource. One test runs on BMO's own CRDs (when BMO's source is available) to
//! prove every status the stand-in writes passes the real operator's schema.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube_harness::operator::{
    DETACHED_ANNOTATION, FAIL_ANNOTATION, FAIL_ATTEMPTS_ANNOTATION, PAUSED_ANNOTATION,
    STALL_ANNOTATION, StandInConfig, bmo_image, fail_attempts_message, next_status_with,
    now_rfc3339, retry_limit_message,
};
use kube_harness::{
    ApiServer, Operator, OperatorKind, StandInOperator, bmh_api, create_bmh, get_bmh,
    metal3_server, provisioning_state, wait_for_bmh, wait_for_state,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:00:07Z";
const IMAGE_URL: &str = "http://images.example/ubuntu.qcow2";

fn image() -> Value {
    json!({"url": IMAGE_URL, "checksum": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
           "checksumType": "sha256", "format": "qcow2"})
}

// === pure: next_status_with ===

/// A host as stored, with the stand-in's own first status (so every test starts from what the
/// stand-in really writes).
fn available_host() -> Value {
    let mut h = json!({
        "metadata": {"name": "h", "uid": "uid-1", "annotations": {}},
        "spec": {"online": false},
    });
    let s = next_status_with(&h, 5, T0).unwrap();
    h["status"] = s;
    h
}

/// Applies `next_status_with` until the host settles (None) or `max_steps` saves were made;
/// returns every saved status.
fn run(host: &mut Value, limit: u32, max_steps: usize) -> Vec<Value> {
    let mut saves = Vec::new();
    while saves.len() < max_steps {
        match next_status_with(host, limit, T1) {
            Some(s) => {
                host["status"] = s.clone();
                saves.push(s);
            }
            None => break,
        }
    }
    saves
}

fn states(saves: &[Value]) -> Vec<String> {
    saves
        .iter()
        .map(|s| s["provisioning"]["state"].as_str().unwrap().to_string())
        .collect()
}

fn attempts(saves: &[Value]) -> usize {
    let st = states(saves);
    st.windows(2)
        .filter(|w| w[0] != "provisioning" && w[1] == "provisioning")
        .count()
        + usize::from(st.first().is_some_and(|s| s == "provisioning"))
}

fn start(host: &mut Value) {
    host["spec"]["online"] = json!(true);
    host["spec"]["image"] = image();
}

#[test]
fn a_new_host_gets_every_field_bmo_writes_and_is_available() {
    let s = available_host()["status"].clone();
    assert_eq!(s["provisioning"]["state"], "available");
    assert_eq!(s["provisioning"]["ID"], "uid-1");
    assert_eq!(s["provisioning"]["image"], json!({"url": ""}));
    assert_eq!(s["operationalStatus"], "OK");
    assert_eq!(s["errorMessage"], "");
    assert!(s.get("errorType").is_none());
    assert_eq!(s["errorCount"], 0);
    assert_eq!(s["provisioningFailCount"], 0);
    assert_eq!(s["poweredOn"], false);
    assert_eq!(s["lastUpdated"], T0);
    assert_eq!(
        s["operationHistory"],
        json!({
            "register": {"start": T0, "end": T0}, "inspect": {"start": T0, "end": T0},
            "provision": {"start": null, "end": null}, "deprovision": {"start": null, "end": null},
        })
    );
    // Settled: nothing more to save.
    assert_eq!(next_status_with(&available_host(), 5, T1), None);
}

#[test]
fn provisioning_starts_only_with_an_image_and_online() {
    let mut h = available_host();
    h["spec"]["image"] = image();
    assert_eq!(next_status_with(&h, 5, T1), None, "offline: nothing");
    let mut h = available_host();
    h["spec"]["online"] = json!(true);
    let s = next_status_with(&h, 5, T1).unwrap();
    assert_eq!(
        s["provisioning"]["state"], "available",
        "online alone powers on"
    );
    assert_eq!(s["poweredOn"], true);

    let mut h = available_host();
    start(&mut h);
    let s = next_status_with(&h, 5, T1).unwrap();
    assert_eq!(s["provisioning"]["state"], "provisioning");
    assert_eq!(
        s["operationHistory"]["provision"],
        json!({"start": T1, "end": null})
    );
    // BMO writes lastAttemptedImage only with the attempt's result, not when it starts.
    assert!(s.get("lastAttemptedImage").is_none(), "{s}");
    assert_eq!(s["poweredOn"], false);
}

#[test]
fn a_successful_attempt_records_the_image_then_power_follows_online() {
    let mut h = available_host();
    start(&mut h);
    let saves = run(&mut h, 5, 20);
    assert_eq!(
        states(&saves),
        ["provisioning", "provisioned", "provisioned"]
    );
    let done = &saves[1];
    let written = bmo_image(Some(&image())).unwrap();
    assert_eq!(done["provisioning"]["image"], written);
    assert_eq!(done["lastAttemptedImage"], written);
    assert_eq!(
        done["operationHistory"]["provision"],
        json!({"start": T1, "end": T1})
    );
    assert_eq!(
        done["poweredOn"], false,
        "the provisioning save leaves power alone"
    );
    assert_eq!(saves[2]["poweredOn"], true);
    assert_eq!(saves[2]["operationalStatus"], "OK");
}

#[test]
fn a_failing_image_goes_through_bmo_retry_loop_up_to_the_limit() {
    let mut h = available_host();
    h["metadata"]["annotations"][FAIL_ANNOTATION] = json!("disk on fire");
    start(&mut h);
    let saves = run(&mut h, 5, 200);
    assert_eq!(attempts(&saves), 5);
    // One attempt: provisioning, error (still provisioning), deprovisioning with the count,
    // error cleared, available.
    assert_eq!(
        states(&saves)[..5],
        [
            "provisioning",
            "provisioning",
            "deprovisioning",
            "deprovisioning",
            "available"
        ]
    );
    assert_eq!(saves[1]["operationalStatus"], "error");
    assert_eq!(saves[1]["errorType"], "provisioning error");
    assert_eq!(saves[1]["errorMessage"], "disk on fire");
    assert_eq!(saves[1]["errorCount"], 1);
    assert_eq!(
        saves[1]["lastAttemptedImage"],
        bmo_image(Some(&image())).unwrap()
    );
    assert_eq!(saves[1]["provisioningFailCount"], 0);
    assert_eq!(saves[2]["provisioningFailCount"], 1);
    assert_eq!(
        saves[2]["operationalStatus"], "error",
        "kept when deprovisioning starts"
    );
    assert_eq!(saves[2]["operationHistory"]["provision"]["end"], T1);
    assert_eq!(
        saves[2]["operationHistory"]["deprovision"],
        json!({"start": T1, "end": null})
    );
    assert_eq!(saves[3]["operationalStatus"], "OK");
    assert!(saves[3].get("errorType").is_none());
    assert_eq!(saves[4]["provisioning"]["image"], json!({"url": ""}));

    // At the limit: available, BMO's message, nothing more to do.
    let last = saves.last().unwrap();
    assert_eq!(last["provisioning"]["state"], "available");
    assert_eq!(last["operationalStatus"], "error");
    assert_eq!(last["errorType"], "provisioning error");
    assert_eq!(
        last["errorMessage"],
        "provisioning failed 5 times, retry limit (5) reached; change image or reset provisioningFailCount to retry"
    );
    assert_eq!(last["provisioningFailCount"], 5);
    assert_eq!(next_status_with(&h, 5, T1), None);
}

#[test]
fn the_retry_limit_is_configurable_and_zero_means_none() {
    let mut h = available_host();
    h["metadata"]["annotations"][FAIL_ANNOTATION] = json!("x");
    start(&mut h);
    let saves = run(&mut h, 2, 200);
    assert_eq!(attempts(&saves), 2);
    assert_eq!(h["status"]["errorMessage"], retry_limit_message(2, 2));

    let mut h = available_host();
    h["metadata"]["annotations"][FAIL_ANNOTATION] = json!("x");
    start(&mut h);
    let saves = run(&mut h, 0, 200);
    assert_eq!(saves.len(), 200, "never settles");
    assert!(attempts(&saves) > 30, "{}", attempts(&saves));
    assert!(h["status"]["provisioningFailCount"].as_u64().unwrap() > 30);
}

#[test]
fn fail_attempts_fails_only_the_first_attempts() {
    let mut h = available_host();
    h["metadata"]["annotations"][FAIL_ATTEMPTS_ANNOTATION] = json!("2");
    start(&mut h);
    let saves = run(&mut h, 5, 200);
    assert_eq!(attempts(&saves), 3);
    let errors: Vec<&Value> = saves
        .iter()
        .filter(|s| {
            s["operationalStatus"] == "error" && s["provisioning"]["state"] == "provisioning"
        })
        .map(|s| &s["errorMessage"])
        .collect();
    assert_eq!(
        errors,
        [
            &json!(fail_attempts_message(1, 2)),
            &json!(fail_attempts_message(2, 2))
        ]
    );
    let s = &h["status"];
    assert_eq!(s["provisioning"]["state"], "provisioned");
    assert_eq!(s["provisioningFailCount"], 0);
    assert_eq!(s["errorCount"], 0);
    assert_eq!(s["operationalStatus"], "OK");
    assert_eq!(s["poweredOn"], true);
}

/// A host that hit the retry limit with `image()`.
fn host_at_the_limit() -> Value {
    let mut h = available_host();
    h["metadata"]["annotations"][FAIL_ANNOTATION] = json!("x");
    start(&mut h);
    run(&mut h, 5, 200);
    assert_eq!(h["status"]["provisioningFailCount"], 5);
    h["metadata"]["annotations"] = json!({});
    h
}

#[test]
fn a_changed_image_resets_the_count_and_provisions_again() {
    let mut h = host_at_the_limit();
    h["spec"]["image"]["url"] = json!("http://images.example/other.qcow2");
    let s = next_status_with(&h, 5, T1).unwrap();
    assert_eq!(s["provisioning"]["state"], "provisioning");
    assert_eq!(s["provisioningFailCount"], 0);
    assert_eq!(s["operationalStatus"], "OK");
}

#[test]
fn the_same_image_again_is_refused_until_a_save_resets_the_count() {
    // Release: image removed, powered off (it already is). BMO resets the count in memory but
    // has nothing to save, so the error and the count stay on the host.
    let mut h = host_at_the_limit();
    h["spec"]["image"] = Value::Null;
    h["spec"]["online"] = json!(false);
    assert_eq!(h["status"]["poweredOn"], false);
    assert_eq!(next_status_with(&h, 5, T1), None);
    // The same image again: still at the limit, the error stays (not re-recorded).
    start(&mut h);
    assert_eq!(next_status_with(&h, 5, T1), None);
    // A save while the image is absent (a power change) carries the reset.
    h["spec"]["image"] = Value::Null;
    h["spec"]["online"] = json!(true);
    let s = next_status_with(&h, 5, T1).unwrap();
    assert_eq!(s["poweredOn"], true);
    assert_eq!(s["provisioningFailCount"], 0);
    assert!(s.get("lastAttemptedImage").is_none(), "{s}");
    assert_eq!(s["operationalStatus"], "OK");
    h["status"] = s;
    h["spec"]["image"] = image();
    let s = next_status_with(&h, 5, T1).unwrap();
    assert_eq!(s["provisioning"]["state"], "provisioning");
}

#[test]
fn removing_the_image_deprovisions_and_leaves_power_to_online() {
    let mut h = available_host();
    start(&mut h);
    run(&mut h, 5, 20);
    h["spec"]["image"] = Value::Null;
    let saves = run(&mut h, 5, 20);
    assert_eq!(states(&saves), ["deprovisioning", "available"]);
    assert_eq!(
        saves[0]["operationHistory"]["deprovision"],
        json!({"start": T1, "end": null})
    );
    assert_eq!(
        saves[1]["operationHistory"]["deprovision"],
        json!({"start": T1, "end": T1})
    );
    assert_eq!(saves[1]["provisioning"]["image"], json!({"url": ""}));
    assert_eq!(
        saves[1]["poweredOn"], true,
        "online is still true: BMO keeps it on"
    );
    h["spec"]["online"] = json!(false);
    let s = next_status_with(&h, 5, T1).unwrap();
    assert_eq!(s["poweredOn"], false);
}

#[test]
fn a_changed_url_on_a_provisioned_host_deprovisions_then_provisions_it() {
    let mut h = available_host();
    start(&mut h);
    run(&mut h, 5, 20);
    h["spec"]["image"]["url"] = json!("http://images.example/next.qcow2");
    let saves = run(&mut h, 5, 20);
    assert_eq!(
        states(&saves),
        ["deprovisioning", "available", "provisioning", "provisioned"]
    );
    assert_eq!(
        h["status"]["provisioning"]["image"]["url"],
        "http://images.example/next.qcow2"
    );
}

#[test]
fn paused_and_stalled_hosts_are_left_alone_in_every_state() {
    for (key, value) in [(PAUSED_ANNOTATION, ""), (STALL_ANNOTATION, "true")] {
        let mut fresh = json!({"metadata": {"name": "h", "annotations": {key: value}}, "spec": {"online": false}});
        assert_eq!(next_status_with(&fresh, 5, T1), None, "{key}: new host");
        let mut h = available_host();
        start(&mut h);
        h["metadata"]["annotations"][key] = json!(value);
        assert_eq!(next_status_with(&h, 5, T1), None, "{key}: available");
        h["metadata"]["annotations"] = json!({});
        run(&mut h, 5, 1);
        h["metadata"]["annotations"][key] = json!(value);
        assert_eq!(next_status_with(&h, 5, T1), None, "{key}: provisioning");
        fresh["metadata"]["annotations"] = json!({});
        assert!(next_status_with(&fresh, 5, T1).is_some(), "{key}: lifted");
    }
}

#[test]
fn a_detached_host_only_shows_it() {
    let mut h = available_host();
    start(&mut h);
    run(&mut h, 5, 20);
    h["metadata"]["annotations"][DETACHED_ANNOTATION] = json!("");
    h["spec"]["image"] = Value::Null;
    let saves = run(&mut h, 5, 20);
    assert_eq!(saves.len(), 1);
    assert_eq!(saves[0]["operationalStatus"], "detached");
    assert_eq!(saves[0]["provisioning"]["state"], "provisioned");
    h["metadata"]["annotations"] = json!({});
    let s = next_status_with(&h, 5, T1).unwrap();
    assert_eq!(s["operationalStatus"], "OK");
    assert_eq!(s["provisioning"]["state"], "provisioned");
}

#[test]
fn times_are_written_like_kubernetes_writes_them() {
    let t = now_rfc3339();
    assert_eq!(t.len(), "2026-01-01T00:00:00Z".len(), "{t}");
    assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
}

#[test]
fn images_are_written_as_bmo_serialises_them() {
    assert_eq!(
        bmo_image(Some(
            &json!({"url": "http://i", "checksum": "", "format": null, "checksumType": "sha256"})
        )),
        Some(json!({"url": "http://i", "checksumType": "sha256"}))
    );
    assert_eq!(bmo_image(Some(&json!({"url": ""}))), None);
    assert_eq!(bmo_image(None), None);
}

// === on the real API server ===

fn provision_patch() -> Value {
    json!({"spec": {"online": true, "image": image(), "userData": {"name": "user-data"}}})
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
    assert_eq!(h["status"]["provisioning"]["image"], json!({"url": ""}));
    assert_eq!(h["spec"]["online"], false);
    assert_eq!(h["metadata"]["labels"]["resourceId"], "server-1");
    // Defaulted by the CRD like upstream.
    assert_eq!(h["spec"]["automatedCleaningMode"], "metadata");
    // The BMC Secret the host names exists, as it must for a real BMO to register it.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), &ns);
    let bmc = secrets
        .get(h["spec"]["bmc"]["credentialsName"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        bmc.data.unwrap().keys().collect::<Vec<_>>(),
        ["password", "username"]
    );
}

#[tokio::test]
async fn provisions_and_deprovisions_through_the_real_sequence() {
    let server = ApiServer::shared().await.unwrap();
    let client = server.client().await.unwrap();
    let ns = server.create_namespace("op-cycle").await.unwrap();
    create_bmh(&client, &ns, "host-a", &[]).await.unwrap();
    let _op = StandInOperator::start(client.clone(), &ns);

    merge(&client, &ns, "host-a", provision_patch()).await;
    let h = wait_for_state(&client, &ns, "host-a", "provisioning", WAIT)
        .await
        .unwrap();
    assert!(
        h["status"]["operationHistory"]["provision"]["start"].is_string(),
        "{h}"
    );
    let h = wait_for_state(&client, &ns, "host-a", "provisioned", WAIT)
        .await
        .unwrap();
    let written = bmo_image(Some(&image())).unwrap();
    assert_eq!(h["status"]["provisioning"]["image"], written);
    assert_eq!(h["status"]["lastAttemptedImage"], written);
    assert_eq!(h["status"]["operationalStatus"], "OK");
    // The spec the client wrote is untouched by the status writes.
    assert_eq!(h["spec"]["userData"]["name"], "user-data");
    wait_for_bmh(&client, &ns, "host-a", WAIT, |h| {
        h["status"]["poweredOn"] == true
    })
    .await
    .unwrap();

    merge(
        &client,
        &ns,
        "host-a",
        json!({"spec": {"image": null, "userData": null, "online": false}}),
    )
    .await;
    wait_for_state(&client, &ns, "host-a", "deprovisioning", WAIT)
        .await
        .unwrap();
    let h = wait_for_bmh(&client, &ns, "host-a", WAIT, |h| {
        provisioning_state(h) == "available" && h["status"]["poweredOn"] == false
    })
    .await
    .unwrap();
    assert_eq!(h["status"]["provisioning"]["image"], json!({"url": ""}));
    assert!(
        h["status"]["operationHistory"]["deprovision"]["end"].is_string(),
        "{h}"
    );
}

#[tokio::test]
async fn failure_switch_runs_the_retry_loop_to_the_limit() {
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
    let _op = StandInOperator::start_with(
        client.clone(),
        &ns,
        StandInConfig {
            step_delay: Duration::from_millis(50),
            max_provisioning_retries: 3,
        },
    );
    merge(&client, &ns, "host-f", provision_patch()).await;

    let h = wait_for_bmh(&client, &ns, "host-f", WAIT, |h| {
        h["status"]["operationalStatus"] == "error"
    })
    .await
    .unwrap();
    assert_eq!(provisioning_state(&h), "provisioning");
    assert_eq!(h["status"]["errorType"], "provisioning error");
    assert_eq!(h["status"]["errorMessage"], "image checksum mismatch");

    let h = wait_for_bmh(&client, &ns, "host-f", WAIT, |h| {
        h["status"]["errorMessage"] == retry_limit_message(3, 3)
    })
    .await
    .unwrap();
    assert_eq!(provisioning_state(&h), "available");
    assert_eq!(h["status"]["operationalStatus"], "error");
    assert_eq!(h["status"]["provisioningFailCount"], 3);
    assert_eq!(h["status"]["errorCount"], 1);
    assert_eq!(
        h["spec"]["image"]["url"], IMAGE_URL,
        "BMO never touches spec"
    );
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

/// On the conformance tier's server (BMO's own CRDs when its source is here): a host created as
/// a user would, a retry that succeeds, a release. Every status save must pass BMO's schema,
/// or the stand-in's PUT fails and the host never gets there.
#[tokio::test]
async fn stand_in_statuses_pass_bmo_schema_and_retries_can_succeed() {
    let server = metal3_server().await.unwrap();
    let client = server.client().await.unwrap();
    let ns = server.create_namespace("op-bmo-schema").await.unwrap();
    let op = Operator::start_with(
        OperatorKind::StandIn,
        server,
        &ns,
        &StandInConfig {
            step_delay: Duration::from_millis(50),
            ..StandInConfig::default()
        },
    )
    .await
    .unwrap();
    let h = op
        .add_host(&client, "host-r", &[("rack", "r1")])
        .await
        .unwrap();
    assert_eq!(h["status"]["operationalStatus"], "OK");
    merge(
        &client,
        &ns,
        "host-r",
        json!({"metadata": {"annotations": {FAIL_ATTEMPTS_ANNOTATION: "2"}}}),
    )
    .await;
    merge(&client, &ns, "host-r", provision_patch()).await;
    let h = wait_for_bmh(&client, &ns, "host-r", WAIT, |h| {
        h["status"]["provisioningFailCount"] == 2
    })
    .await
    .unwrap();
    assert_eq!(h["status"]["lastAttemptedImage"]["url"], IMAGE_URL);
    let h = wait_for_bmh(&client, &ns, "host-r", WAIT, |h| {
        provisioning_state(h) == "provisioned" && h["status"]["poweredOn"] == true
    })
    .await
    .unwrap();
    assert_eq!(h["status"]["provisioningFailCount"], 0);
    assert_eq!(h["status"]["operationalStatus"], "OK");
    merge(
        &client,
        &ns,
        "host-r",
        json!({"spec": {"image": null, "online": false}}),
    )
    .await;
    wait_for_bmh(&client, &ns, "host-r", WAIT, |h| {
        provisioning_state(h) == "available" && h["status"]["poweredOn"] == false
    })
    .await
    .unwrap();
    op.stop().await.unwrap();
}
