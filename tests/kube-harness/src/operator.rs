//! A stand-in for the Metal3 baremetal-operator. **A simulation**: there is no Ironic, no BMC,
//! no hardware; it only moves `.status` the way the real operator does, so the sidecar can be
//! tested against the state sequence it will see on a real cluster.
//!
//! ```text
//!   watch BareMetalHosts in one namespace (kube-runtime watcher, restarts handled)
//!        │ event for host H
//!        ▼
//!   next_status(H)  ── pure: what would BMO write next? ──▶ None: nothing to do
//!        │ Some(patch)
//!        ▼ after `step_delay`, re-read H, recompute, then
//!   merge patch on .../baremetalhosts/H/status  (resourceVersion precondition)
//!        │ the write is itself a watch event → next step
//! ```
//!
//! Sequence simulated (as in BMO's host state machine):
//! - no state → `available` (registration and inspection are skipped);
//! - `available` + `spec.image.url` set + `spec.online` true → `provisioning`;
//! - `provisioning` → `provisioned` with `status.provisioning.image` = `spec.image`,
//!   `operationalStatus: OK`, errors cleared, `poweredOn` = `spec.online`;
//! - `provisioning` with the image removed → `deprovisioning` (cancelled provisioning);
//! - `provisioned` with the image removed or its URL changed → `deprovisioning`;
//!   `provisioned` with `online` changed → `poweredOn` follows;
//! - `deprovisioning` → `available` with `status.provisioning.image` cleared, powered off.
//!
//! Test switches, per host, as annotations in the test-only domain `standin.test`:
//! - `standin.test/fail: "<message>"`: while `provisioning`, set `operationalStatus: error`,
//!   `errorType: provisioning error`, `errorMessage: <message>`, `errorCount + 1`,
//!   `provisioningFailCount + 1`, and stay in `provisioning` (Metal3 has no error state). Removing
//!   the annotation lets provisioning finish.
//! - `standin.test/stall: "true"`: never advance the host.
//!
//! Not simulated: registration/inspection/cleaning, the retry loop after a failure (real BMO
//! deprovisions and retries, up to `--max-provisioning-retries`), power management errors,
//! `customDeploy`, conditions, Events, finalizers, reading the userData Secret.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::task::{JoinHandle, JoinSet};

use crate::bmh::{bmh_api, provisioning_state};

/// Annotation: make provisioning fail with this message.
pub const FAIL_ANNOTATION: &str = "standin.test/fail";
/// Annotation: `"true"` stops the host from advancing.
pub const STALL_ANNOTATION: &str = "standin.test/stall";
/// BMO's default `--max-provisioning-retries`.
pub const DEFAULT_MAX_PROVISIONING_RETRIES: u32 = 5;
/// Default delay before each status step.
pub const DEFAULT_STEP_DELAY: Duration = Duration::from_millis(200);

fn annotation<'a>(host: &'a Value, key: &str) -> Option<&'a str> {
    host.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn image_url(v: Option<&Value>) -> Option<&str> {
    v.and_then(|i| i.get("url"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
}

fn counter(host: &Value, field: &str) -> i64 {
    host.pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// What the operator would write next to `.status` of `host` (a BareMetalHost as JSON), as the
/// value of a JSON merge patch on the status subresource; `None` when the host is settled.
pub fn next_status(host: &Value) -> Option<Value> {
    if annotation(host, STALL_ANNOTATION) == Some("true") {
        return None;
    }
    let spec_image = host.pointer("/spec/image");
    let wanted_url = image_url(spec_image);
    let online = host
        .pointer("/spec/online")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let powered = host
        .pointer("/status/poweredOn")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let id = host
        .pointer("/status/provisioning/ID")
        .and_then(Value::as_str)
        .unwrap_or("");
    match provisioning_state(host) {
        "" => Some(json!({
            "provisioning": {"ID": id, "state": "available"},
            "operationalStatus": "OK",
            "errorMessage": "",
            "errorCount": 0,
            "provisioningFailCount": 0,
            "poweredOn": false,
        })),
        "available" | "ready" if wanted_url.is_some() && online => Some(json!({
            "provisioning": {"ID": id, "state": "provisioning"},
        })),
        "provisioning" if wanted_url.is_none() => Some(json!({
            "provisioning": {"ID": id, "state": "deprovisioning"},
        })),
        "provisioning" => match annotation(host, FAIL_ANNOTATION) {
            Some(msg) => {
                let already = host
                    .pointer("/status/operationalStatus")
                    .and_then(Value::as_str)
                    == Some("error")
                    && host.pointer("/status/errorMessage").and_then(Value::as_str) == Some(msg);
                (!already).then(|| {
                    json!({
                        "operationalStatus": "error",
                        "errorType": "provisioning error",
                        "errorMessage": msg,
                        "errorCount": counter(host, "errorCount") + 1,
                        "provisioningFailCount": counter(host, "provisioningFailCount") + 1,
                    })
                })
            }
            None => Some(json!({
                "provisioning": {"ID": id, "state": "provisioned", "image": spec_image},
                "operationalStatus": "OK",
                "errorType": null,
                "errorMessage": "",
                "errorCount": 0,
                "provisioningFailCount": 0,
                "poweredOn": online,
            })),
        },
        "provisioned" => {
            let have_url = image_url(host.pointer("/status/provisioning/image"));
            if wanted_url.is_none() || wanted_url != have_url {
                Some(json!({"provisioning": {"ID": id, "state": "deprovisioning"}}))
            } else if powered != online {
                Some(json!({"poweredOn": online}))
            } else {
                None
            }
        }
        "deprovisioning" => Some(json!({
            "provisioning": {"ID": id, "state": "available", "image": null},
            "operationalStatus": "OK",
            "errorType": null,
            "errorMessage": "",
            "errorCount": 0,
            "poweredOn": false,
        })),
        _ => None,
    }
}

/// Settings of the stand-in.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// Delay before each status step (simulated work). Default 200 ms.
    pub step_delay: Duration,
    /// Failed provisioning attempts of one image before giving up, like BMO's
    /// `--max-provisioning-retries` (default 5; 0 = no limit). Passed to the real BMO by
    /// [`crate::Operator`]; the stand-in does not retry yet.
    pub max_provisioning_retries: u32,
}

impl Default for StandInConfig {
    fn default() -> Self {
        StandInConfig {
            step_delay: DEFAULT_STEP_DELAY,
            max_provisioning_retries: DEFAULT_MAX_PROVISIONING_RETRIES,
        }
    }
}

/// The running stand-in operator (a background task). Stops when dropped.
pub struct StandInOperator {
    task: JoinHandle<()>,
}

impl StandInOperator {
    /// Starts the stand-in over the BareMetalHosts of `namespace`, with default settings, on
    /// the current tokio runtime. `client` needs list/watch on baremetalhosts and patch on
    /// baremetalhosts/status (the admin client does).
    pub fn start(client: Client, namespace: &str) -> StandInOperator {
        Self::start_with(client, namespace, StandInConfig::default())
    }

    /// Starts the stand-in with explicit settings.
    pub fn start_with(client: Client, namespace: &str, config: StandInConfig) -> StandInOperator {
        let api = bmh_api(&client, namespace);
        StandInOperator {
            task: tokio::spawn(run(api, config)),
        }
    }

    /// Stops the stand-in (also done on drop).
    pub fn stop(self) {}
}

impl Drop for StandInOperator {
    fn drop(&mut self) {
        // Aborting the main task drops its JoinSet, which aborts every step in flight.
        self.task.abort();
    }
}

/// Per host: a step task is running, and whether an event arrived meanwhile.
struct InFlight {
    dirty: bool,
}

async fn run(api: Api<DynamicObject>, config: StandInConfig) {
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut latest: HashMap<String, Value> = HashMap::new();
    let mut in_flight: HashMap<String, InFlight> = HashMap::new();
    let mut steps: JoinSet<(String, bool)> = JoinSet::new();
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        let Some(name) = o.metadata.name.clone() else { continue };
                        let Ok(v) = serde_json::to_value(&o) else { continue };
                        let wants = next_status(&v).is_some();
                        latest.insert(name.clone(), v);
                        if let Some(f) = in_flight.get_mut(&name) {
                            f.dirty = true;
                        } else if wants {
                            in_flight.insert(name.clone(), InFlight { dirty: false });
                            steps.spawn(step(api.clone(), name, config.step_delay));
                        }
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        if let Some(name) = o.metadata.name { latest.remove(&name); }
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                    // The watcher re-lists/re-watches by itself (with backoff).
                    Err(e) => tracing::debug!(error = %e, "stand-in operator: watch error"),
                }
            }
            Some(done) = steps.join_next(), if !steps.is_empty() => {
                let Ok((name, ok)) = done else { continue };
                let dirty = in_flight.remove(&name).is_some_and(|f| f.dirty);
                // Another step when something changed meanwhile, or the write failed (conflict,
                // API server down): the step re-reads the host, so a stale trigger is harmless.
                let wants = latest.get(&name).is_some_and(|v| next_status(v).is_some());
                if (dirty || !ok) && wants {
                    in_flight.insert(name.clone(), InFlight { dirty: false });
                    steps.spawn(step(api.clone(), name, config.step_delay));
                }
            }
        }
    }
}

/// Waits `delay`, re-reads the host and writes its next status. Returns (name, success).
async fn step(api: Api<DynamicObject>, name: String, delay: Duration) -> (String, bool) {
    tokio::time::sleep(delay).await;
    let host = match api.get_opt(&name).await {
        Ok(Some(h)) => h,
        Ok(None) => return (name, true),
        Err(e) => {
            tracing::debug!(host = %name, error = %e, "stand-in operator: read failed");
            return (name, false);
        }
    };
    let rv = host.metadata.resource_version.clone();
    let Ok(v) = serde_json::to_value(&host) else {
        return (name, false);
    };
    let Some(status) = next_status(&v) else {
        return (name, true);
    };
    let patch = json!({"metadata": {"resourceVersion": rv}, "status": status});
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(host = %name, status = %patch["status"], "stand-in operator: status written");
            (name, true)
        }
        Err(e) => {
            tracing::debug!(host = %name, error = %e, "stand-in operator: status write failed");
            (name, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(state: &str, online: bool, image: Option<&str>) -> Value {
        let mut h = json!({
            "metadata": {"name": "h", "annotations": {}},
            "spec": {"online": online},
            "status": {"provisioning": {"ID": "", "state": state}, "operationalStatus": "OK",
                       "errorMessage": "", "errorCount": 0, "poweredOn": false},
        });
        if let Some(u) = image {
            h["spec"]["image"] = json!({"url": u, "checksum": "abc", "checksumType": "sha256"});
        }
        h
    }

    #[test]
    fn available_host_waits_for_image_and_online() {
        assert_eq!(
            next_status(&host("available", false, Some("http://i"))),
            None
        );
        assert_eq!(next_status(&host("available", true, None)), None);
        let s = next_status(&host("available", true, Some("http://i"))).unwrap();
        assert_eq!(s["provisioning"]["state"], "provisioning");
    }

    #[test]
    fn provisioning_finishes_with_image_recorded() {
        let s = next_status(&host("provisioning", true, Some("http://i"))).unwrap();
        assert_eq!(s["provisioning"]["state"], "provisioned");
        assert_eq!(s["provisioning"]["image"]["url"], "http://i");
        assert_eq!(s["operationalStatus"], "OK");
        assert_eq!(s["poweredOn"], true);
    }

    #[test]
    fn failure_sets_error_once_and_stays_provisioning() {
        let mut h = host("provisioning", true, Some("http://i"));
        h["metadata"]["annotations"][FAIL_ANNOTATION] = json!("disk on fire");
        let s = next_status(&h).unwrap();
        assert_eq!(s["operationalStatus"], "error");
        assert_eq!(s["errorType"], "provisioning error");
        assert_eq!(s["errorMessage"], "disk on fire");
        assert_eq!(s["errorCount"], 1);
        assert!(s.get("provisioning").is_none());
        h["status"]["operationalStatus"] = json!("error");
        h["status"]["errorMessage"] = json!("disk on fire");
        assert_eq!(next_status(&h), None);
    }

    #[test]
    fn stall_never_advances() {
        let mut h = host("provisioning", true, Some("http://i"));
        h["metadata"]["annotations"][STALL_ANNOTATION] = json!("true");
        assert_eq!(next_status(&h), None);
    }

    #[test]
    fn removing_the_image_deprovisions_then_clears_it() {
        let mut h = host("provisioned", true, None);
        h["status"]["provisioning"]["image"] = json!({"url": "http://i"});
        let s = next_status(&h).unwrap();
        assert_eq!(s["provisioning"]["state"], "deprovisioning");
        let s = next_status(&host("deprovisioning", true, None)).unwrap();
        assert_eq!(s["provisioning"]["state"], "available");
        assert!(s["provisioning"]["image"].is_null());
    }

    #[test]
    fn settled_provisioned_host_needs_nothing() {
        let mut h = host("provisioned", true, Some("http://i"));
        h["status"]["provisioning"]["image"] = json!({"url": "http://i"});
        h["status"]["poweredOn"] = json!(true);
        assert_eq!(next_status(&h), None);
    }
}
