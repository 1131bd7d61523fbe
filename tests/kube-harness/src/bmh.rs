//! BareMetalHost helpers for tests: create a host that is ready to provision, read it back as
//! JSON, write status like the operator does, wait for a condition (bounded).

use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// API group of BareMetalHost.
pub const BMH_GROUP: &str = "metal3.io";
/// API version of BareMetalHost.
pub const BMH_VERSION: &str = "v1alpha1";
/// Kind.
pub const BMH_KIND: &str = "BareMetalHost";
/// Plural resource name.
pub const BMH_PLURAL: &str = "baremetalhosts";

/// The BareMetalHost resource for `Api::namespaced_with`.
pub fn bmh_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(BMH_GROUP, BMH_VERSION, BMH_KIND),
        BMH_PLURAL,
    )
}

/// A dynamic API over the BareMetalHosts of one namespace.
pub fn bmh_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &bmh_resource())
}

/// The status of a host that finished registration and inspection and waits for an image
/// (nothing deployed: BMO writes `provisioning.image` as `{"url": ""}`).
pub fn available_status() -> Value {
    json!({
        "provisioning": {"ID": "", "state": "available", "image": {"url": ""}},
        "operationalStatus": "OK",
        "errorMessage": "",
        "errorCount": 0,
        "provisioningFailCount": 0,
        "poweredOn": false,
    })
}

fn to_value(obj: DynamicObject) -> Result<Value> {
    Ok(serde_json::to_value(obj)?)
}

/// Creates a BareMetalHost `name` (spec.online false, a BMC block, a boot MAC) with `labels`
/// and its BMC credentials Secret `<name>-bmc-secret`, then sets its status through the status
/// subresource to `available` / `OK`, as the operator would after inspection. Returns the host
/// as stored. (To have a real or stand-in operator register a host from scratch, as a user
/// would, use [`crate::Operator::add_host`].)
pub async fn create_bmh(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<Value> {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
        .collect();
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{BMH_GROUP}/{BMH_VERSION}"),
        "kind": BMH_KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "online": false,
            "bootMACAddress": "52:54:00:00:00:01",
            "bmc": {
                "address": format!("redfish+http://192.0.2.1:8000/redfish/v1/Systems/{name}"),
                "credentialsName": crate::bmo::bmc_secret_name(name),
            },
        },
    }))?;
    crate::bmo::ensure_bmc_secret(client, namespace, &crate::bmo::bmc_secret_name(name)).await?;
    let api = bmh_api(client, namespace);
    api.create(&PostParams::default(), &obj).await?;
    set_bmh_status(client, namespace, name, available_status()).await
}

/// Reads a host back as JSON.
pub async fn get_bmh(client: &Client, namespace: &str, name: &str) -> Result<Value> {
    to_value(bmh_api(client, namespace).get(name).await?)
}

/// Merge-patches `status` through the status subresource (what the operator does). `status`
/// is the value of `.status`, e.g. `json!({"operationalStatus": "error"})`.
pub async fn set_bmh_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: Value,
) -> Result<Value> {
    let api = bmh_api(client, namespace);
    let patch = json!({ "status": status });
    to_value(
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?,
    )
}

/// `.status.provisioning.state` of a host as JSON (`""` when unset).
pub fn provisioning_state(bmh: &Value) -> &str {
    bmh.pointer("/status/provisioning/state")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Waits (watch-based, bounded by `timeout`) until `cond` holds for host `name`, and returns
/// the host. Fails with [`Error::Timeout`] naming the last state seen.
pub async fn wait_for_bmh(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let api = bmh_api(client, namespace);
    let check = |o: Option<&DynamicObject>| {
        o.and_then(|o| serde_json::to_value(o).ok())
            .is_some_and(|v| cond(&v))
    };
    match tokio::time::timeout(timeout, await_condition(api, name, check)).await {
        Ok(Ok(Some(obj))) => to_value(obj),
        Ok(Ok(None)) => Err(Error::Unexpected(format!(
            "BareMetalHost {name} was deleted"
        ))),
        Ok(Err(e)) => Err(Error::Unexpected(format!("watching {name}: {e}"))),
        Err(_) => {
            let last = get_bmh(client, namespace, name).await.ok();
            Err(Error::Timeout {
                what: format!(
                    "BareMetalHost {namespace}/{name} (last status: {})",
                    last.as_ref()
                        .and_then(|v| v.get("status"))
                        .map(Value::to_string)
                        .unwrap_or_default()
                ),
                after: timeout,
            })
        }
    }
}

/// Waits until `.status.provisioning.state == state`.
pub async fn wait_for_state(
    client: &Client,
    namespace: &str,
    name: &str,
    state: &str,
    timeout: Duration,
) -> Result<Value> {
    wait_for_bmh(client, namespace, name, timeout, |v| {
        provisioning_state(v) == state
    })
    .await
}
