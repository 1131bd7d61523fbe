//! A stand-in for the Metal3 baremetal-operator (BMO). **A simulation**: there is no Ironic, no
//! BMC, no hardware; it only writes `.status` the way BMO does, so the sidecar can be tested
//! where BMO's `fixture` provisioner cannot go (failed provisioning and BMO's retry loop,
//! stalls). Everything else is better tested against the real BMO ([`crate::metal3`]).
//!
//! ```text
//!   watch BareMetalHosts in one namespace (kube-runtime watcher, restarts handled)
//!        │ event for host H
//!        ▼
//!   next_status(H)  ── pure: BMO's next status save for H ──▶ None: nothing to do
//!        │ Some(status)
//!        ▼ after `step_delay`, re-read H, recompute, then
//!   PUT .../baremetalhosts/H/status (the whole status, resourceVersion precondition: what
//!        │                            BMO's saveHostStatus does)
//!        │ the write is itself a watch event → next step
//! ```
//!
//! Each step is one status save of BMO's reconciler, with the fields BMO writes in that save.
//! Paths are in the BMO source tree (`BMO_SRC`, commit 02aa5059e): `host_state_machine.go` and
//! `baremetalhost_controller.go` under `internal/controller/metal3.io/`, `baremetalhost_types.go`
//! under `apis/metal3.io/v1alpha1/`.
//!
//! | behaviour | BMO code it follows |
//! |---|---|
//! | status shape: `operationalStatus`, `errorMessage`, `errorCount`, `provisioningFailCount`, `poweredOn`, `provisioning{ID,state,image}` always present (the CRD requires them); `errorType` omitted when empty; `provisioning.image` is `{"url": ""}` when nothing is deployed; `operationHistory` with `register`/`inspect`/`provision`/`deprovision`, each `{start, end}` (null when unset); `lastUpdated` on every save | `BareMetalHostStatus`, `ProvisionStatus`, `OperationMetric` in `baremetalhost_types.go`; `saveHostStatus` |
//! | a new host: `available` at once (registering, inspecting and preparing are not simulated) | `handleNone` … `handlePreparing` |
//! | `available` + `online` + `spec.image.url`, nothing deployed → `provisioning`, error cleared | `NeedsProvisioning` (types), `actionManageAvailable` |
//! | `spec.image` differs from `status.lastAttemptedImage` → `provisioningFailCount` reset before the check | `actionManageAvailable` |
//! | `provisioningFailCount >= max_provisioning_retries` (> 0) → stays `available` with `operationalStatus: error`, `errorType: provisioning error`, `errorMessage: provisioning failed N times, retry limit (L) reached; change image or reset provisioningFailCount to retry`, `errorCount + 1` | `actionManageAvailable`, `recordActionFailure`, `setErrorMessage` |
//! | entering a state records `operationHistory.<op>.start` (and clears `end`), leaving it records `.end` (RFC 3339, second precision) | `recordStateBegin`, `recordStateEnd`, `updateHostStateFrom` |
//! | a provisioning attempt fails → `operationalStatus: error`, `errorType: provisioning error`, `errorMessage`, `errorCount + 1`, `lastAttemptedImage` = spec image; the state stays `provisioning` | `actionProvisioning`, `recordActionFailure`; the snapshot in `handleProvisioning` |
//! | `provisioning` with an error, or image removed → `deprovisioning`, `provisioningFailCount + 1` if it was an error (the error is kept in that save) | `handleProvisioning` |
//! | a provisioning attempt succeeds → `provisioned`, `provisioning.image` = spec image, `lastAttemptedImage` = spec image, error cleared, `errorCount` and `provisioningFailCount` 0; power unchanged in that save | `actionProvisioning`, `handleProvisioning` |
//! | `provisioned` with the image removed or its URL changed → `deprovisioning` | `handleProvisioned`, `provisioningCancelled` |
//! | `deprovisioning`: the first save clears the error (still `deprovisioning`), the next → `available`, `provisioning.image` = `{"url": ""}`, `errorCount` 0; power unchanged | `actionDeprovisioning`, `handleDeprovisioning` |
//! | back in `available` with the image still set and `online` → provisioning again (the retry loop) | `handleAvailable` |
//! | `available` / `provisioned` / `externally provisioned`: `poweredOn` follows `spec.online`; a power change clears any error | `manageHostPower` (`actionManageSteadyState`, `actionManageAvailable`) |
//! | `available` without an image and `provisioningFailCount > 0` → `provisioningFailCount` 0 and `lastAttemptedImage` removed, **only written with the next save** (a power change); until then the retry-limit error stays on the host | `handleAvailable` (changes in memory), `Reconcile` (saves only dirty results) |
//! | annotation `baremetalhost.metal3.io/paused` → nothing at all | `Reconcile` |
//! | annotation `baremetalhost.metal3.io/detached` on an `available`/`provisioned`/`externally provisioned` host → `operationalStatus: detached` and nothing else; removed → `OK` (or `error` when an error is recorded) | `checkDetachedHost` |
//! | `available` + `spec.externallyProvisioned` → `externally provisioned` | `handleAvailable` |
//!
//! Test switches, per host, as annotations in the test-only domain `standin.test`:
//! - `standin.test/fail: "<message>"`: every provisioning attempt fails with `<message>`, so the
//!   host goes through BMO's retry loop until the retry limit;
//! - `standin.test/fail-attempts: "N"`: only the first N attempts of the current image fail
//!   (attempt = `provisioningFailCount + 1`), later ones succeed;
//! - `standin.test/stall: "true"`: never advance the host.
//!
//! Simplifications: each step is one save (BMO may need several reconciles and requeues, e.g.
//! 10 s per fixture step, minutes with Ironic); at the retry limit the error is written once
//! (BMO re-records it with a growing backoff, so its `errorCount` keeps rising); the power
//! change is one save (BMO: two). Not simulated: registration and its errors (a missing BMC
//! Secret), inspection, preparing, cleaning, power-management errors, `customDeploy`,
//! conditions, Events, finalizers and the delete path, hardware details, reading the userData
//! Secret, the validating webhook.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{DynamicObject, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Map, Value, json};
use tokio::task::{JoinHandle, JoinSet};

use crate::bmh::{bmh_api, provisioning_state};

/// Annotation: every provisioning attempt fails with this message.
pub const FAIL_ANNOTATION: &str = "standin.test/fail";
/// Annotation: only the first N provisioning attempts of the current image fail.
pub const FAIL_ATTEMPTS_ANNOTATION: &str = "standin.test/fail-attempts";
/// Annotation: `"true"` stops the host from advancing.
pub const STALL_ANNOTATION: &str = "standin.test/stall";
/// BMO's annotation that stops all reconciling of a host (any value).
pub const PAUSED_ANNOTATION: &str = "baremetalhost.metal3.io/paused";
/// BMO's annotation that detaches a host from its provisioner (any value).
pub const DETACHED_ANNOTATION: &str = "baremetalhost.metal3.io/detached";
/// `errorType` of provisioning failures.
pub const PROVISIONING_ERROR: &str = "provisioning error";
/// BMO's default `--max-provisioning-retries`.
pub const DEFAULT_MAX_PROVISIONING_RETRIES: u32 = 5;
/// Default delay before each status step.
pub const DEFAULT_STEP_DELAY: Duration = Duration::from_millis(200);

/// BMO's message once the retry limit is reached (`actionManageAvailable`).
pub fn retry_limit_message(fail_count: u64, limit: u32) -> String {
    format!(
        "provisioning failed {fail_count} times, retry limit ({limit}) reached; change image or reset provisioningFailCount to retry"
    )
}

/// The message of an attempt failed by `standin.test/fail-attempts`.
pub fn fail_attempts_message(attempt: u64, failing: u64) -> String {
    format!("stand-in: provisioning attempt {attempt} failed (the first {failing} fail)")
}

/// Now, as Kubernetes (and BMO's `metav1.Time`) writes a time: RFC 3339, UTC, seconds.
pub fn now_rfc3339() -> String {
    let t =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn annotation<'a>(host: &'a Value, key: &str) -> Option<&'a str> {
    host.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// An image as BMO writes it into status (its Go struct): `url` always, the other fields only
/// when non-empty. None when there is no image or its URL is empty.
pub fn bmo_image(image: Option<&Value>) -> Option<Value> {
    let image = image?.as_object()?;
    let url = image
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())?;
    let mut out = Map::new();
    out.insert("url".into(), Value::String(url.to_string()));
    for (k, v) in image {
        let empty = v.is_null() || v.as_str() == Some("");
        if k != "url" && !empty {
            out.insert(k.clone(), v.clone());
        }
    }
    Some(Value::Object(out))
}

/// The `operationHistory` key of a state (`OperationMetricForState`).
fn metric_key(state: &str) -> Option<&'static str> {
    match state {
        "registering" => Some("register"),
        "inspecting" => Some("inspect"),
        "provisioning" => Some("provision"),
        "deprovisioning" => Some("deprovision"),
        _ => None,
    }
}

/// A host's status, being changed the way one BMO reconcile changes it. `provisioning` and
/// `operationHistory` are held apart (always objects) and put back by [`Status::into_value`].
struct Status {
    v: Map<String, Value>,
    provisioning: Map<String, Value>,
    history: Map<String, Value>,
}

fn take_object(v: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match v.remove(key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

impl Status {
    fn of(host: &Value) -> Status {
        let mut v = host
            .get("status")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        // The fields BMO's Go struct always writes (the CRD requires most of them).
        for (k, d) in [
            ("operationalStatus", json!("")),
            ("errorMessage", json!("")),
            ("errorCount", json!(0)),
            ("provisioningFailCount", json!(0)),
            ("poweredOn", json!(false)),
        ] {
            v.entry(k).or_insert(d);
        }
        let mut provisioning = take_object(&mut v, "provisioning");
        provisioning.entry("ID").or_insert(json!(""));
        provisioning.entry("state").or_insert(json!(""));
        provisioning.entry("image").or_insert(json!({"url": ""}));
        let mut history = take_object(&mut v, "operationHistory");
        for op in ["register", "inspect", "provision", "deprovision"] {
            let mut m = take_object(&mut history, op);
            m.entry("start").or_insert(Value::Null);
            m.entry("end").or_insert(Value::Null);
            history.insert(op.into(), Value::Object(m));
        }
        Status {
            v,
            provisioning,
            history,
        }
    }

    fn int(&self, key: &str) -> u64 {
        self.v.get(key).and_then(Value::as_u64).unwrap_or(0)
    }

    fn str(&self, key: &str) -> &str {
        self.v.get(key).and_then(Value::as_str).unwrap_or("")
    }

    fn has_error(&self) -> bool {
        !self.str("errorType").is_empty()
    }

    /// `updateHostStateFrom`: `recordStateEnd(from)`, `recordStateBegin(to)`, the new state.
    fn set_state(&mut self, from: &str, to: &str, now: &str) {
        if let Some(m) = metric_key(from).and_then(|k| self.history.get_mut(k))
            && !m["start"].is_null()
            && m["end"].is_null()
        {
            m["end"] = json!(now);
        }
        if let Some(m) = metric_key(to).and_then(|k| self.history.get_mut(k))
            && (m["start"].is_null() || !m["end"].is_null())
        {
            *m = json!({"start": now, "end": null});
        }
        self.provisioning.insert("state".into(), json!(to));
    }

    /// `clearError`: `operationalStatus: OK`, no `errorType`, empty `errorMessage`.
    fn clear_error(&mut self) {
        self.v.insert("operationalStatus".into(), json!("OK"));
        self.v.remove("errorType");
        self.v.insert("errorMessage".into(), json!(""));
    }

    /// `setErrorMessage`.
    fn set_error(&mut self, error_type: &str, message: &str) {
        let count = self.int("errorCount") + 1;
        self.v.insert("operationalStatus".into(), json!("error"));
        self.v.insert("errorType".into(), json!(error_type));
        self.v.insert("errorMessage".into(), json!(message));
        self.v.insert("errorCount".into(), json!(count));
    }

    fn into_value(self) -> Value {
        let mut v = self.v;
        v.insert("provisioning".into(), Value::Object(self.provisioning));
        v.insert("operationHistory".into(), Value::Object(self.history));
        Value::Object(v)
    }
}

/// Why a provisioning attempt of `host` fails, if it does (the test switches).
fn attempt_failure(host: &Value, fail_count: u64) -> Option<String> {
    if let Some(msg) = annotation(host, FAIL_ANNOTATION) {
        return Some(msg.to_string());
    }
    let failing: u64 = annotation(host, FAIL_ATTEMPTS_ANNOTATION)?
        .trim()
        .parse()
        .ok()?;
    (fail_count < failing).then(|| fail_attempts_message(fail_count + 1, failing))
}

/// What BMO would save next as `.status` of `host` (a BareMetalHost as JSON): the whole new
/// status, or `None` when the host is settled. Defaults: retry limit 5, the current time.
pub fn next_status(host: &Value) -> Option<Value> {
    next_status_with(host, DEFAULT_MAX_PROVISIONING_RETRIES, &now_rfc3339())
}

/// [`next_status`] with BMO's `--max-provisioning-retries` (0: no limit) and the time to record
/// in `operationHistory` and `lastUpdated`. Pure; the table in the module docs says what it
/// follows.
pub fn next_status_with(host: &Value, max_retries: u32, now: &str) -> Option<Value> {
    if annotation(host, PAUSED_ANNOTATION).is_some()
        || annotation(host, STALL_ANNOTATION) == Some("true")
    {
        return None;
    }
    let before = Status::of(host).into_value();
    let mut st = Status::of(host);
    let state = provisioning_state(host).to_string();
    let online = host
        .pointer("/spec/online")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let spec_image = bmo_image(host.pointer("/spec/image"));
    let deployed_url = host
        .pointer("/status/provisioning/image/url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let detached = annotation(host, DETACHED_ANNOTATION).is_some();

    // checkDetachedHost, before any state handler.
    let detachable = matches!(
        state.as_str(),
        "available" | "ready" | "provisioned" | "externally provisioned"
    );
    if detached && detachable {
        if st.str("operationalStatus") != "detached" {
            st.v.insert("operationalStatus".into(), json!("detached"));
        }
        return finish(st, &before, now);
    }
    if !detached && st.str("operationalStatus") == "detached" {
        let back = if st.has_error() { "error" } else { "OK" };
        st.v.insert("operationalStatus".into(), json!(back));
        return finish(st, &before, now);
    }

    let power = |st: &mut Status| {
        if st.v.get("poweredOn").and_then(Value::as_bool) != Some(online) {
            st.v.insert("poweredOn".into(), json!(online));
            st.clear_error();
            true
        } else {
            false
        }
    };

    match state.as_str() {
        "" => {
            // Registration, inspection and preparing in one save.
            let id = host
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            st.clear_error();
            st.provisioning.insert("ID".into(), json!(id));
            st.provisioning.insert("bootMode".into(), json!("UEFI"));
            for op in ["register", "inspect"] {
                st.history
                    .insert(op.into(), json!({"start": now, "end": now}));
            }
            st.set_state("", "available", now);
        }
        "registering" | "inspecting" | "preparing" | "match profile" => {
            st.set_state(&state, "available", now);
        }
        "available" | "ready" => {
            if host
                .pointer("/spec/externallyProvisioned")
                .and_then(Value::as_bool)
                == Some(true)
            {
                st.set_state(&state, "externally provisioned", now);
                return finish(st, &before, now);
            }
            let reset_pending = spec_image.is_none() && st.int("provisioningFailCount") > 0;
            let needs_provisioning = online && spec_image.is_some() && deployed_url.is_empty();
            if needs_provisioning {
                let last = bmo_image(st.v.get("lastAttemptedImage"));
                if spec_image != last {
                    st.v.insert("provisioningFailCount".into(), json!(0));
                }
                let fails = st.int("provisioningFailCount");
                if max_retries > 0 && fails >= u64::from(max_retries) {
                    let msg = retry_limit_message(fails, max_retries);
                    let recorded = st.str("operationalStatus") == "error"
                        && st.str("errorType") == PROVISIONING_ERROR
                        && st.str("errorMessage") == msg;
                    if !recorded {
                        st.set_error(PROVISIONING_ERROR, &msg);
                    }
                } else {
                    st.clear_error();
                    st.set_state(&state, "provisioning", now);
                }
            } else if power(&mut st) && reset_pending {
                st.v.insert("provisioningFailCount".into(), json!(0));
                st.v.remove("lastAttemptedImage");
            }
        }
        "provisioning" => {
            if st.has_error() || spec_image.is_none() {
                if st.has_error() {
                    let n = st.int("provisioningFailCount") + 1;
                    st.v.insert("provisioningFailCount".into(), json!(n));
                }
                st.set_state("provisioning", "deprovisioning", now);
            } else if let Some(image) = spec_image {
                st.v.insert("lastAttemptedImage".into(), image.clone());
                match attempt_failure(host, st.int("provisioningFailCount")) {
                    Some(msg) => st.set_error(PROVISIONING_ERROR, &msg),
                    None => {
                        st.provisioning.insert("image".into(), image);
                        st.clear_error();
                        st.v.insert("errorCount".into(), json!(0));
                        st.v.insert("provisioningFailCount".into(), json!(0));
                        st.set_state("provisioning", "provisioned", now);
                    }
                }
            }
        }
        "provisioned" => {
            let cancelled = spec_image
                .as_ref()
                .and_then(|i| i.get("url"))
                .and_then(Value::as_str)
                .is_none_or(|u| u != deployed_url);
            if cancelled {
                st.set_state("provisioned", "deprovisioning", now);
            } else {
                power(&mut st);
            }
        }
        "externally provisioned" => {
            let still = host
                .pointer("/spec/externallyProvisioned")
                .and_then(Value::as_bool)
                == Some(true);
            if still {
                power(&mut st);
            } else {
                if let Some(image) = spec_image {
                    st.provisioning.insert("image".into(), image);
                }
                st.set_state(&state, "provisioned", now);
            }
        }
        "deprovisioning" => {
            if st.has_error() || st.str("operationalStatus") == "error" {
                st.clear_error();
            } else {
                st.provisioning.insert("image".into(), json!({"url": ""}));
                st.v.insert("errorCount".into(), json!(0));
                st.set_state("deprovisioning", "available", now);
            }
        }
        _ => {}
    }
    finish(st, &before, now)
}

/// `Some(status + lastUpdated)` when the reconcile changed something (BMO saves only then).
fn finish(st: Status, before: &Value, now: &str) -> Option<Value> {
    let mut after = st.into_value();
    if &after == before {
        return None;
    }
    after["lastUpdated"] = json!(now);
    Some(after)
}

/// Settings of the stand-in.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// Delay before each status step (simulated work). Default 200 ms.
    pub step_delay: Duration,
    /// Failed provisioning attempts of one image before giving up, like BMO's
    /// `--max-provisioning-retries` (default 5; 0 = no limit).
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
    /// the current tokio runtime. `client` needs list/watch on baremetalhosts and update on
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
    let wants =
        |v: &Value| next_status_with(v, config.max_provisioning_retries, &now_rfc3339()).is_some();
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
                        let want = wants(&v);
                        latest.insert(name.clone(), v);
                        if let Some(f) = in_flight.get_mut(&name) {
                            f.dirty = true;
                        } else if want {
                            in_flight.insert(name.clone(), InFlight { dirty: false });
                            steps.spawn(step(api.clone(), name, config.clone()));
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
                let want = latest.get(&name).is_some_and(wants);
                if (dirty || !ok) && want {
                    in_flight.insert(name.clone(), InFlight { dirty: false });
                    steps.spawn(step(api.clone(), name, config.clone()));
                }
            }
        }
    }
}

/// Waits the step delay, re-reads the host and saves its next status (a PUT of the status
/// subresource carrying the resourceVersion read, like BMO's `Status().Update`). Returns
/// (name, success).
async fn step(api: Api<DynamicObject>, name: String, config: StandInConfig) -> (String, bool) {
    tokio::time::sleep(config.step_delay).await;
    let mut host = match api.get_opt(&name).await {
        Ok(Some(h)) => h,
        Ok(None) => return (name, true),
        Err(e) => {
            tracing::debug!(host = %name, error = %e, "stand-in operator: read failed");
            return (name, false);
        }
    };
    let Ok(v) = serde_json::to_value(&host) else {
        return (name, false);
    };
    let Some(status) = next_status_with(&v, config.max_provisioning_retries, &now_rfc3339()) else {
        return (name, true);
    };
    host.data["status"] = status;
    match api
        .replace_status(&name, &PostParams::default(), &host)
        .await
    {
        Ok(_) => {
            tracing::info!(
                host = %name,
                state = %host.data["status"]["provisioning"]["state"],
                operational = %host.data["status"]["operationalStatus"],
                "stand-in operator: status saved"
            );
            (name, true)
        }
        Err(e) => {
            tracing::debug!(host = %name, error = %e, "stand-in operator: status write failed");
            (name, false)
        }
    }
}
