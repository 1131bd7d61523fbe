//! Pure decisions: what a webhook delivery does to a host ([`decide_start`], [`decide_end`]),
//! what the reconciler does next for a host ([`next_step`]), and the BMH spec patches.
//!
//! Every function here takes a [`Host`] snapshot and returns a plan; the I/O modules carry the
//! plan out with the snapshot's resourceVersion as precondition, so a plan made on a stale
//! snapshot fails with 409 and is made again.
//!
//! How Metal3 is judged (the baremetal-operator's behaviour these rules rest on, paths in its
//! repository):
//! - a failed deployment is not an end state: BMO records the error, counts
//!   `provisioningFailCount`, deprovisions and provisions again, up to
//!   `--max-provisioning-retries`; only then the error stays, on an `available` host
//!   (`internal/controller/metal3.io/host_state_machine.go` `handleProvisioning`,
//!   `baremetalhost_controller.go` `actionManageAvailable`). So a reservation is `failed` only
//!   when BMO gave up, when it refused our spec, or at the timeout; never on the first error;
//! - errors stay on `available` hosts from earlier attempts, so an error counts only once BMO
//!   has acted on our spec: `status.operationHistory.provision.start` is not older than the
//!   phase (BMO's `recordStateBegin`, second precision);
//! - a failed reservation's image and userData are removed at once, so BMO stops redeploying
//!   the host with the user's key;
//! - a host taken by a reservation carries `spec.consumerRef`, so Cluster API and HostClaims
//!   leave it alone; it is cleared when the host is released.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Config, ImageConfig};
use crate::model::{
    AnnotationPatch, Claim, ConsumerRef, Holder, Host, Keys, Owed, PROVISIONING_ERROR, Phase,
    ProvisioningState, with_ended,
};

/// What planning needs from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Annotation prefix: also the group of the reservation's `spec.consumerRef`.
    pub prefix: String,
    /// The image a reservation provisions.
    pub image: ImageConfig,
    /// The image a release provisions instead of removing the image, if any.
    pub deprovision_image: Option<ImageConfig>,
    pub provision_timeout: Duration,
    pub release_timeout: Duration,
    /// Longest wait before a host with unfinished work is looked at again.
    pub resync: Duration,
    /// A release sets `automatedCleaningMode: metadata` on hosts where it is `disabled`.
    pub release_cleaning: bool,
    /// Notifications are sent (a release is handed over only once notified).
    pub notify_enabled: bool,
}

impl Policy {
    /// The policy of `cfg`.
    pub fn new(cfg: &Config, notify_enabled: bool) -> Self {
        Policy {
            prefix: cfg.annotation_prefix.clone(),
            image: cfg.image.clone(),
            deprovision_image: cfg.deprovision_image.clone(),
            provision_timeout: cfg.provision_timeout,
            release_timeout: cfg.release_timeout,
            resync: cfg.resync,
            release_cleaning: cfg.release_cleaning,
            notify_enabled,
        }
    }

    /// The consumerRef reservation `h` writes on `host`.
    fn consumer(&self, host: &Host, h: &Holder) -> ConsumerRef {
        ConsumerRef::reservation(&self.prefix, &host.namespace, &h.event_id)
    }
}

/// Per-resource outcome reported in the reply body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The start is being carried out (or queued until the host is released).
    Provisioning,
    /// The end is being carried out.
    Releasing,
    /// Not a BareMetalHost resource type.
    Skipped,
    /// The host is held by another reservation or another Metal3 consumer; nothing changed.
    Conflict,
    /// No BMH maps to the resource.
    NotFound,
    /// A repeated delivery: the work was already done.
    AlreadyDone,
    /// A START of a reservation that has ended (its eventEnd passed, or its END was received):
    /// it never provisions.
    Expired,
    /// Metal3 would never provision the host (paused, detached, externally provisioned, no
    /// BMC, custom deploy), or the API server refused the write.
    Unavailable,
}

impl Outcome {
    /// The wire name (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Provisioning => "provisioning",
            Outcome::Releasing => "releasing",
            Outcome::Skipped => "skipped",
            Outcome::Conflict => "conflict",
            Outcome::NotFound => "not_found",
            Outcome::AlreadyDone => "already_done",
            Outcome::Expired => "expired",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// What a delivery does to one host: the answer, and the merge patch to write first (with a
/// resourceVersion precondition) when it changes the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    pub detail: String,
    pub patch: Option<Value>,
}

impl Decision {
    fn answer(outcome: Outcome, detail: impl Into<String>) -> Self {
        Decision {
            outcome,
            detail: detail.into(),
            patch: None,
        }
    }

    fn write(outcome: Outcome, detail: impl Into<String>, patch: Value) -> Self {
        Decision {
            outcome,
            detail: detail.into(),
            patch: Some(patch),
        }
    }
}

const QUEUED: &str = "queued: the host is released from an earlier reservation first";

/// Whether a START may take `host` now, must wait for it, or may not have it at all.
enum Availability {
    /// Free (never reserved, released and notified, or failed and past its reservation).
    Free,
    /// Held or being released by another reservation: the START waits (queued).
    Busy,
}

fn availability(policy: &Policy, host: &Host, now: Timestamp) -> Availability {
    let (Some(holder), Some(phase)) = (&host.holder, host.phase) else {
        return Availability::Free;
    };
    let notified = |p: Phase| !policy.notify_enabled || host.notified == Some(p);
    match phase {
        Phase::Released if notified(Phase::Released) => Availability::Free,
        // A failed reservation whose time is over frees the host once its image is gone and
        // Metal3 has it `available` again (its END may never come).
        Phase::Failed
            if holder.has_ended(now)
                && notified(Phase::Failed)
                && !needs_stop(policy, host)
                && host.status.state == ProvisioningState::Available =>
        {
            Availability::Free
        }
        _ => Availability::Busy,
    }
}

/// Why `host` may not be taken by anyone through this sidecar, if so.
fn refusal(policy: &Policy, host: &Host) -> Option<Decision> {
    if let Some(why) = host.unprovisionable() {
        return Some(Decision::answer(
            Outcome::Unavailable,
            format!("Metal3 would never provision this host: {why}"),
        ));
    }
    if let Some(c) = &host.spec.consumer_ref
        && !c.is_reservation(&policy.prefix)
    {
        return Some(Decision::answer(
            Outcome::Conflict,
            format!(
                "the host is in use by {} (spec.consumerRef); nothing changed",
                c.describe()
            ),
        ));
    }
    let deprovision_url = policy.deprovision_image.as_ref().map(|i| i.url.as_str());
    if let Some(url) = &host.spec.image_url
        && Some(url.as_str()) != deprovision_url
    {
        return Some(Decision::answer(
            Outcome::Conflict,
            "the host is in use outside the reservation system (spec.image is set); nothing changed",
        ));
    }
    None
}

/// EVENT_START of reservation `req` on `host`.
pub fn decide_start(
    keys: &Keys,
    policy: &Policy,
    host: &Host,
    req: &Holder,
    now: Timestamp,
) -> Decision {
    let rv = &host.resource_version;
    if let Some(end) = req.event_end.filter(|_| req.has_ended(now)) {
        return Decision::answer(
            Outcome::Expired,
            format!("the reservation ended at {end}; nothing changed"),
        );
    }
    if host.has_ended(&req.event_id) {
        return Decision::answer(
            Outcome::Expired,
            "this reservation's EVENT_END was already received; nothing changed",
        );
    }
    if let (Some(holder), Some(phase)) = (&host.holder, host.phase)
        && holder.event_id == req.event_id
    {
        if holder.user_id != req.user_id {
            return Decision::answer(
                Outcome::Conflict,
                "this event id holds the host for another user",
            );
        }
        return match phase {
            Phase::Provisioning => {
                Decision::answer(Outcome::Provisioning, "provisioning in progress")
            }
            Phase::Provisioned => Decision::answer(Outcome::AlreadyDone, "provisioned"),
            Phase::Failed => Decision::answer(
                Outcome::AlreadyDone,
                format!("provisioning failed: {}", host.detail),
            ),
            Phase::Deprovisioning | Phase::Released => {
                Decision::answer(Outcome::Expired, "this reservation has already ended")
            }
        };
    }
    let take = || {
        Decision::write(
            Outcome::Provisioning,
            "provisioning started",
            AnnotationPatch::on(keys, rv)
                .holder(req)
                .phase(Phase::Provisioning, now, "")
                .notified(None)
                .pending(None)
                .consumer_ref(Some(&policy.consumer(host, req)))
                .build(),
        )
    };
    match availability(policy, host, now) {
        Availability::Free => {
            let waiting_other = host
                .pending
                .as_ref()
                .is_some_and(|p| !p.same_reservation(req) && !pending_dropped(host, p, now));
            if waiting_other {
                // The queued start comes first; the reconciler hands the host over to it.
                return queue(keys, host, req, now);
            }
            refusal(policy, host).unwrap_or_else(take)
        }
        Availability::Busy => queue(keys, host, req, now),
    }
}

/// A queued start that will never run: its reservation's eventEnd passed, or its END came.
fn pending_dropped(host: &Host, p: &Holder, now: Timestamp) -> bool {
    p.has_ended(now) || host.has_ended(&p.event_id)
}

fn queue(keys: &Keys, host: &Host, req: &Holder, now: Timestamp) -> Decision {
    let rv = &host.resource_version;
    match &host.pending {
        Some(p) if p.same_reservation(req) => Decision::answer(Outcome::Provisioning, QUEUED),
        Some(p) if !pending_dropped(host, p, now) => Decision::answer(
            Outcome::Conflict,
            format!(
                "another reservation (event {}) is already waiting for this host",
                p.event_id
            ),
        ),
        // Nothing queued, or what is queued will never run: queue this one.
        _ => Decision::write(
            Outcome::Provisioning,
            QUEUED,
            AnnotationPatch::on(keys, rv).pending(Some(req)).build(),
        ),
    }
}

/// EVENT_END of reservation `req` on `host`. Honoured at any age: it only ever frees what
/// this reservation holds, and it is remembered so a late START of it never provisions. An
/// outcome (`provisioned`, `failed`) not yet notified stays owed and is delivered before
/// `released`.
pub fn decide_end(
    keys: &Keys,
    policy: &Policy,
    host: &Host,
    req: &Holder,
    now: Timestamp,
) -> Decision {
    let rv = &host.resource_version;
    let ended = with_ended(&host.ended, &req.event_id, req.event_end, now);
    if let (Some(holder), Some(phase)) = (&host.holder, host.phase)
        && holder.event_id == req.event_id
    {
        if holder.user_id != req.user_id {
            return Decision::answer(
                Outcome::Conflict,
                "this event id holds the host for another user",
            );
        }
        return match phase {
            Phase::Provisioning | Phase::Provisioned | Phase::Failed => {
                let owed = (policy.notify_enabled
                    && phase != Phase::Provisioning
                    && host.notified != Some(phase))
                .then(|| Owed {
                    outcome: phase,
                    since: host.phase_since,
                    detail: host.detail.clone(),
                });
                let mut patch = AnnotationPatch::on(keys, rv)
                    .phase(Phase::Deprovisioning, now, "")
                    .ended(&ended);
                if owed.is_some() {
                    patch = patch.owed(owed.as_ref());
                }
                Decision::write(Outcome::Releasing, "release started", patch.build())
            }
            Phase::Deprovisioning => Decision::answer(Outcome::Releasing, "release in progress"),
            Phase::Released => Decision::answer(Outcome::AlreadyDone, "released"),
        };
    }
    if host
        .pending
        .as_ref()
        .is_some_and(|p| p.same_reservation(req))
    {
        return Decision::write(
            Outcome::Releasing,
            "the queued start of this reservation was cancelled",
            AnnotationPatch::on(keys, rv)
                .pending(None)
                .ended(&ended)
                .build(),
        );
    }
    let (outcome, detail) = match &host.holder {
        Some(_) => (
            Outcome::Conflict,
            "the host is held by another reservation; nothing released",
        ),
        None => (
            Outcome::AlreadyDone,
            "the host is not held by this reservation; nothing released",
        ),
    };
    if host.has_ended(&req.event_id) {
        return Decision::answer(outcome, detail);
    }
    // Remembered, so that a START of this reservation arriving late is refused.
    Decision::write(
        outcome,
        detail,
        AnnotationPatch::on(keys, rv).ended(&ended).build(),
    )
}

/// A phase change the reconciler writes, with what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub to: Phase,
    pub detail: String,
    /// The annotation patch (with resourceVersion precondition).
    pub patch: Value,
}

/// The next thing the reconciler does for a host.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Write the userData Secret, then this spec patch (with precondition).
    Provision(Value),
    /// Write this spec patch (with precondition), then delete the Secret.
    Release(Value),
    /// A failed reservation: remove its image and userData and power the host off with this
    /// spec patch, so Metal3 stops deploying it, then delete the Secret.
    Stop(Value),
    /// Delete the Secret, then enter `released`.
    FinishRelease(Transition),
    /// Enter a phase.
    Transition(Transition),
    /// Deliver the notification for this phase, then record it.
    Notify(Phase),
    /// Nothing to do until the host changes or this much time passes.
    Wait(Duration),
    /// Nothing to do until the host changes.
    Idle,
}

/// `spec.image` for `img`. Unset fields are explicit nulls: a merge patch merges into the
/// image already there, and a checksum left from another image must not survive.
fn image_value(img: &ImageConfig) -> Value {
    json!({
        "url": img.url,
        "checksum": img.checksum,
        "checksumType": img.checksum_type,
        "format": img.format,
    })
}

/// `metadata` of a spec patch: the resourceVersion precondition, and `phase-since` moved to
/// now, so the phase's timeout counts Metal3's time from the write Metal3 acts on (a sidecar
/// that was down longer than the timeout still gives Metal3 its whole time).
fn spec_write_metadata(keys: &Keys, host: &Host, now: Timestamp) -> Value {
    json!({
        "resourceVersion": host.resource_version,
        "annotations": { keys.phase_since.as_str(): now.to_string() },
    })
}

/// The spec patch that provisions `host` for its holder `h`.
pub fn provision_patch(
    keys: &Keys,
    policy: &Policy,
    host: &Host,
    h: &Holder,
    now: Timestamp,
) -> Value {
    let mut metadata = spec_write_metadata(keys, host, now);
    // The resourceVersion precondition makes this the status as it is at the write.
    metadata["annotations"][keys.provision_baseline.as_str()] =
        json!(host.status.provision_baseline());
    json!({
        "metadata": metadata,
        "spec": {
            "image": image_value(&policy.image),
            "userData": { "name": host.secret_name(), "namespace": host.namespace },
            "online": true,
            "consumerRef": policy.consumer(host, h),
        }
    })
}

/// The spec patch that releases `host`: image and userData removed and the host powered off
/// (or the deprovision image provisioned, which needs the power on), with Metal3's disk
/// cleaning on when the policy asks for it.
pub fn release_patch(keys: &Keys, policy: &Policy, host: &Host, now: Timestamp) -> Value {
    let (image, online) = match &policy.deprovision_image {
        Some(img) => (image_value(img), true),
        None => (Value::Null, false),
    };
    let mut spec = json!({ "image": image, "userData": null, "online": online });
    if needs_cleaning(policy, host) {
        spec["automatedCleaningMode"] = json!("metadata");
    }
    json!({ "metadata": spec_write_metadata(keys, host, now), "spec": spec })
}

/// The spec patch that stops Metal3 from deploying a failed reservation.
pub fn stop_patch(host: &Host) -> Value {
    json!({
        "metadata": { "resourceVersion": host.resource_version },
        "spec": { "image": null, "userData": null, "online": false }
    })
}

fn needs_cleaning(policy: &Policy, host: &Host) -> bool {
    policy.release_cleaning && host.spec.automated_cleaning_mode == "disabled"
}

/// The spec of a failed reservation still asks Metal3 for the user's deployment.
fn needs_stop(policy: &Policy, host: &Host) -> bool {
    host.spec.image_url.as_deref() == Some(policy.image.url.as_str())
        || host.spec.user_data.as_deref() == Some(host.secret_name().as_str())
}

fn elapsed(host: &Host, now: Timestamp) -> Duration {
    host.phase_since
        .and_then(|t| now.duration_since(t).try_into().ok())
        .unwrap_or(Duration::ZERO)
}

/// The owed notification to deliver, when notifications are on.
fn owed_now(policy: &Policy, host: &Host) -> Option<Phase> {
    host.owed
        .as_ref()
        .filter(|_| policy.notify_enabled)
        .map(|o| o.outcome)
}

/// BMO has started a provisioning attempt since our spec was written, so what its status
/// says is about our spec and not left over from before: `operationHistory.provision.start`
/// differs from the baseline recorded with the spec write. (Without a baseline, written by an
/// older sidecar: not older than the phase, in BMO's whole seconds.)
fn operator_acted(host: &Host) -> bool {
    if let Some(baseline) = &host.provision_baseline {
        return host.status.provision_started.is_some()
            && host.status.provision_baseline() != baseline;
    }
    let (Some(started), Some(since)) = (host.status.provision_started, host.phase_since) else {
        return false;
    };
    started.as_second() >= since.as_second()
}

/// BMO refuses to deploy our image on this host at all: the last attempt was this same image
/// and it reached the retry limit, a count BMO resets only when the image changes or someone
/// resets `provisioningFailCount` (`actionManageAvailable`). It re-records the limit error
/// without starting an attempt, so [`operator_acted`] never sees one.
fn operator_refuses_image(policy: &Policy, host: &Host) -> bool {
    let status = &host.status;
    status.state == ProvisioningState::Available
        && status.has_error()
        && status.error_type == PROVISIONING_ERROR
        && status.provisioning_fail_count > 0
        && status.last_attempted_image_url.as_deref() == Some(policy.image.url.as_str())
        && status.error_message.contains("retry limit")
}

/// The transition into `to` with `detail`, on the host's resourceVersion.
pub fn transition(keys: &Keys, host: &Host, to: Phase, detail: &str, now: Timestamp) -> Transition {
    Transition {
        to,
        detail: detail.to_owned(),
        patch: AnnotationPatch::on(keys, &host.resource_version)
            .phase(to, now, detail)
            .build(),
    }
}

/// What the reconciler does next for `host`.
pub fn next_step(keys: &Keys, policy: &Policy, host: &Host, now: Timestamp) -> Step {
    let Some(phase) = host.phase else {
        return Step::Idle;
    };
    let fail =
        |detail: String| Step::Transition(transition(keys, host, Phase::Failed, &detail, now));
    // Fails once `timeout` has passed since the phase began; else looks again at the next
    // resync or when the timeout falls due, whichever comes first.
    let timed_out = |timeout: Duration, goal: &str| {
        (elapsed(host, now) >= timeout).then(|| {
            fail(format!(
                "not {goal} within {}s (Metal3 state: {}{})",
                timeout.as_secs(),
                host.status.state,
                if host.status.has_error() {
                    format!(", {}", host.status.error())
                } else {
                    String::new()
                }
            ))
        })
    };
    let wait = |timeout: Duration| {
        Step::Wait(
            policy
                .resync
                .min(timeout.saturating_sub(elapsed(host, now)))
                .max(Duration::from_millis(200)),
        )
    };
    match phase {
        // In both waiting phases: success first (a sidecar back from an outage finds work
        // Metal3 finished meanwhile); a spec write restarts the phase's clock, so the timeout
        // measures Metal3's time after it.
        Phase::Provisioning => {
            let Some(holder) = &host.holder else {
                return Step::Idle;
            };
            let spec = &host.spec;
            let spec_done = spec.image_url.as_deref() == Some(policy.image.url.as_str())
                && spec.user_data.as_deref() == Some(host.secret_name().as_str())
                && spec.online
                && spec.consumer_ref.as_ref() == Some(&policy.consumer(host, holder));
            let status = &host.status;
            // The operator reports the image it provisioned; when it does, it must be ours
            // (a host re-provisioned from another image still shows the old `provisioned`).
            let ours = status
                .image_url
                .as_deref()
                .is_none_or(|u| u == policy.image.url);
            if spec_done && status.state == ProvisioningState::Provisioned && ours {
                return Step::Transition(transition(keys, host, Phase::Provisioned, "", now));
            }
            // While BMO retries (error while provisioning, deprovisioning between attempts)
            // the reservation waits; it fails when BMO gives up: an `available` host with a
            // provisioning error after an attempt on our spec.
            if spec_done
                && operator_acted(host)
                && status.state == ProvisioningState::Available
                && status.has_error()
                && status.error_type == PROVISIONING_ERROR
            {
                return fail(format!("Metal3 gave up provisioning: {}", status.error()));
            }
            if spec_done && operator_refuses_image(policy, host) {
                return fail(format!(
                    "Metal3 refuses to deploy this image on this host again until its provisioningFailCount is reset: {}",
                    status.error()
                ));
            }
            if let Some(failed) = timed_out(policy.provision_timeout, "provisioned") {
                return failed;
            }
            if !spec_done {
                return Step::Provision(provision_patch(keys, policy, host, holder, now));
            }
            wait(policy.provision_timeout)
        }
        Phase::Deprovisioning => {
            let spec = &host.spec;
            let cleaning_done = !needs_cleaning(policy, host);
            let spec_done = cleaning_done
                && spec.user_data.is_none()
                && match &policy.deprovision_image {
                    None => spec.image_url.is_none() && !spec.online,
                    Some(img) => spec.image_url.as_deref() == Some(img.url.as_str()) && spec.online,
                };
            // No fail-fast on `operationalStatus: error` here: the error a failed provisioning
            // left behind stays on the host while Metal3 deprovisions it. The timeout decides.
            let status = &host.status;
            let done = spec_done
                && match &policy.deprovision_image {
                    None => status.state == ProvisioningState::Available && !status.powered_on,
                    Some(img) => {
                        status.state == ProvisioningState::Provisioned
                            && status.image_url.as_deref() == Some(img.url.as_str())
                    }
                };
            if !done {
                // Removing the user's image is always right, so the release write has no
                // deadline of its own (a refusal fails the release); Metal3's part does.
                if !spec_done {
                    return Step::Release(release_patch(keys, policy, host, now));
                }
                if let Some(failed) = timed_out(policy.release_timeout, "released") {
                    return failed;
                }
                // Nothing to write meanwhile: deliver what the holder is still owed.
                if let Some(owed) = owed_now(policy, host) {
                    return Step::Notify(owed);
                }
                return wait(policy.release_timeout);
            }
            let queued = host
                .pending
                .as_ref()
                .is_some_and(|p| !pending_dropped(host, p, now));
            let mut patch =
                AnnotationPatch::on(keys, &host.resource_version).phase(Phase::Released, now, "");
            if !queued {
                // Free for any Metal3 consumer again.
                patch = patch.consumer_ref(None);
            }
            Step::FinishRelease(Transition {
                to: Phase::Released,
                detail: String::new(),
                patch: patch.build(),
            })
        }
        Phase::Failed if needs_stop(policy, host) => Step::Stop(stop_patch(host)),
        Phase::Provisioned | Phase::Failed | Phase::Released => {
            // The holder's earlier outcome first, so notifications arrive in order.
            if let Some(owed) = owed_now(policy, host) {
                return Step::Notify(owed);
            }
            if policy.notify_enabled && host.notified != Some(phase) {
                return Step::Notify(phase);
            }
            match (&host.pending, phase) {
                (Some(p), Phase::Released) if pending_dropped(host, p, now) => {
                    Step::Transition(Transition {
                        to: Phase::Released,
                        detail: format!(
                            "the queued start of event {} was dropped: its reservation has ended",
                            p.event_id
                        ),
                        patch: AnnotationPatch::on(keys, &host.resource_version)
                            .pending(None)
                            .consumer_ref(None)
                            .build(),
                    })
                }
                (Some(p), Phase::Released) => Step::Transition(Transition {
                    to: Phase::Provisioning,
                    detail: "started from the queue".into(),
                    patch: AnnotationPatch::on(keys, &host.resource_version)
                        .holder(p)
                        .phase(Phase::Provisioning, now, "started from the queue")
                        .notified(None)
                        .pending(None)
                        .consumer_ref(Some(&policy.consumer(host, p)))
                        .build(),
                }),
                _ => Step::Idle,
            }
        }
    }
}

/// A spec write for `host` that the API server refused (Metal3's validating webhook, RBAC):
/// retrying cannot help, so the reservation fails with the refusal.
pub fn refused(keys: &Keys, host: &Host, what: &str, message: &str, now: Timestamp) -> Transition {
    transition(
        keys,
        host,
        Phase::Failed,
        &format!("the API server refused the {what}: {message}"),
        now,
    )
}

/// What is known of an existing `<bmh>-userdata` Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingSecret {
    /// Carries the sidecar's managed-by label.
    pub managed: bool,
    /// The reservation (eventId) it was written for.
    pub written_for: Option<String>,
    /// Its userData and owner are what the holder's would be.
    pub up_to_date: bool,
}

/// What writing the userData Secret for the holder of a host snapshot does with an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretAction {
    /// None exists: create it, after a fresh read of the host shows the snapshot is current
    /// (a stale replica must not leave a released reservation's key behind).
    CreateIfCurrent,
    /// It is the holder's and up to date.
    Keep,
    /// It is the holder's (same reservation) but differs: bring it up to date.
    Repair,
    /// It was written for another reservation: an older one's leftover, or, if this snapshot is
    /// stale, the NEXT holder's. Overwrite only after a fresh read of the host shows the
    /// snapshot is current (same resourceVersion); otherwise leave it and look again.
    OverwriteIfCurrent,
    /// Someone else's Secret: never touched.
    Foreign,
}

/// Decides [`SecretAction`] for the holder `event_id` of a snapshot.
pub fn secret_action(event_id: &str, existing: Option<&ExistingSecret>) -> SecretAction {
    match existing {
        None => SecretAction::CreateIfCurrent,
        Some(s) if !s.managed => SecretAction::Foreign,
        Some(s) if s.written_for.as_deref() == Some(event_id) => {
            if s.up_to_date {
                SecretAction::Keep
            } else {
                SecretAction::Repair
            }
        }
        Some(_) => SecretAction::OverwriteIfCurrent,
    }
}

/// After the notification of `phase` for reservation `event_id` was delivered: the patch
/// (with precondition) that clears the owed record it satisfies on `host_now`. An END decided
/// while the delivery was in flight records that very notification as owed; without this it
/// would be sent a second time after the release.
pub fn owed_satisfied(keys: &Keys, host_now: &Host, phase: Phase, event_id: &str) -> Option<Value> {
    let owed = host_now.owed.as_ref()?;
    let same_holder = host_now
        .holder
        .as_ref()
        .is_some_and(|h| h.event_id == event_id);
    (owed.outcome == phase && same_holder).then(|| {
        AnnotationPatch::on(keys, &host_now.resource_version)
            .owed(None)
            .build()
    })
}

/// Whether this replica may send a host's notification now.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCheck {
    /// Free, expired or already ours: write this claim (with precondition), then send.
    Take(Value),
    /// Another replica holds a live claim: look again after this long.
    Wait(Duration),
}

/// Decides the notification claim of `host` for replica `me`.
pub fn claim_notification(
    keys: &Keys,
    host: &Host,
    me: &str,
    ttl: Duration,
    now: Timestamp,
) -> ClaimCheck {
    if let Some(c) = &host.notify_claim
        && c.replica != me
        && c.until > now
    {
        let left: Duration = now.duration_until(c.until).try_into().unwrap_or(ttl);
        return ClaimCheck::Wait(left.max(Duration::from_millis(200)));
    }
    let until = now
        .checked_add(jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::ZERO))
        .unwrap_or(now);
    let claim = Claim {
        replica: me.to_owned(),
        until,
    };
    ClaimCheck::Take(
        AnnotationPatch::on(keys, &host.resource_version)
            .claim(Some(&claim))
            .build(),
    )
}

/// The DNS-1123 form of a resource name: "Lab Server A1" → "lab-server-a1".
pub fn dns1123(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches(|c| c == '-' || c == '.');
    trimmed
        .chars()
        .take(253)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::*;
    use crate::model::{ProvisioningState as S, Status};

    fn policy() -> Policy {
        let mut c = crate::config::fixtures::config(&[]).unwrap();
        c.image.checksum_type = Some("sha256".into());
        c.provision_timeout = Duration::from_secs(100);
        c.release_timeout = Duration::from_secs(100);
        c.resync = Duration::from_secs(30);
        Policy::new(&c, true)
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(secs)
    }

    fn now() -> Timestamp {
        at(10)
    }

    fn ann<'a>(p: &'a Value, key: &str) -> &'a Value {
        &p["metadata"]["annotations"][format!("{PREFIX}/{key}")]
    }

    fn start(host: &Host, req: &Holder) -> Decision {
        decide_start(&keys(), &policy(), host, req, now())
    }

    /// A host whose spec our provisioning has written.
    fn provisioning(h: &Holder) -> Host {
        let p = policy();
        let mut host = host().held(h, Phase::Provisioning);
        host.spec.image_url = Some(p.image.url.clone());
        host.spec.user_data = Some(host.secret_name());
        host.spec.online = true;
        host
    }

    #[test]
    fn dns1123_names() {
        assert_eq!(dns1123("Lab Server A1"), "lab-server-a1");
        assert_eq!(dns1123("  GPU_node #3 "), "gpu-node-3");
        assert_eq!(dns1123("a--b"), "a-b");
        assert_eq!(dns1123("---"), "");
    }

    #[test]
    fn start_on_a_free_host_takes_it_with_a_consumer_ref() {
        let h = holder("101", "u1");
        let d = start(&host(), &h);
        assert_eq!(d.outcome, Outcome::Provisioning);
        let p = d.patch.unwrap();
        assert_eq!(p["metadata"]["resourceVersion"], "10");
        assert_eq!(ann(&p, "event-id"), "101");
        assert_eq!(ann(&p, "phase"), "provisioning");
        assert_eq!(ann(&p, "event-end"), "1970-01-02T00:00:00Z");
        assert_eq!(ann(&p, "pending-start"), &Value::Null);
        assert_eq!(
            p["spec"]["consumerRef"],
            json!({"apiVersion": "reservations.polito.it/v1", "kind": "Reservation",
                   "name": "101", "namespace": "ns"})
        );
    }

    #[test]
    fn repeated_start_changes_nothing() {
        let h = holder("101", "u1");
        for (phase, want) in [
            (Phase::Provisioning, Outcome::Provisioning),
            (Phase::Provisioned, Outcome::AlreadyDone),
            (Phase::Failed, Outcome::AlreadyDone),
            (Phase::Deprovisioning, Outcome::Expired),
            (Phase::Released, Outcome::Expired),
        ] {
            let d = start(&host().held(&h, phase), &h);
            assert_eq!((d.outcome, d.patch), (want, None), "{phase}");
        }
    }

    #[test]
    fn a_start_of_an_ended_reservation_never_provisions() {
        let a = holder("101", "u1");
        // Its eventEnd has passed.
        let mut late = a.clone();
        late.event_end = Some(at(5));
        let d = start(&host(), &late);
        assert_eq!((d.outcome, d.patch.is_none()), (Outcome::Expired, true));
        // Its END was received before, and the host went on to another reservation.
        let b = holder("202", "u2");
        let mut h = host().held(&b, Phase::Provisioned);
        h.ended = [("101".to_owned(), at(1000))].into();
        let d = start(&h, &a);
        assert_eq!(
            (d.outcome, d.patch.is_none()),
            (Outcome::Expired, true),
            "{d:?}"
        );
        // ... also on a free host.
        let mut free = host();
        free.ended = h.ended.clone();
        assert_eq!(start(&free, &a).outcome, Outcome::Expired);
    }

    #[test]
    fn an_end_is_remembered_so_a_late_start_is_refused() {
        let k = keys();
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        // END of a reservation that never got the host (its START was lost or is late).
        let held = host().held(&b, Phase::Provisioned);
        let d = decide_end(&k, &policy(), &held, &a, now());
        assert_eq!(d.outcome, Outcome::Conflict);
        let p = d.patch.unwrap();
        assert_eq!(ann(&p, "phase"), &Value::Null, "the holder is untouched");
        let ended: std::collections::BTreeMap<String, Timestamp> =
            serde_json::from_str(ann(&p, "ended").as_str().unwrap()).unwrap();
        assert!(ended.contains_key("101"));
        // The holder's own END records itself too.
        let d = decide_end(
            &k,
            &policy(),
            &host().held(&a, Phase::Provisioned),
            &a,
            now(),
        );
        assert!(
            ann(d.patch.as_ref().unwrap(), "ended")
                .as_str()
                .unwrap()
                .contains("\"101\"")
        );
        // A repeated END of a reservation already remembered writes nothing.
        let mut remembered = host();
        remembered.ended = ended;
        let d = decide_end(&k, &policy(), &remembered, &a, now());
        assert_eq!((d.outcome, d.patch), (Outcome::AlreadyDone, None));
    }

    #[test]
    fn start_on_a_held_host_is_queued_once() {
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        let c = holder("303", "u3");
        let held = host().held(&a, Phase::Provisioned);
        let d = start(&held, &b);
        assert_eq!(d.outcome, Outcome::Provisioning);
        assert!(
            ann(d.patch.as_ref().unwrap(), "pending-start")
                .as_str()
                .unwrap()
                .contains("\"eventId\":\"202\"")
        );
        let queued = held.clone().with_pending(&b);
        assert_eq!(
            start(&queued, &b),
            Decision::answer(Outcome::Provisioning, QUEUED)
        );
        assert_eq!(start(&queued, &c).outcome, Outcome::Conflict);
        // A queued start whose reservation has ended gives its place up.
        let mut gone = b.clone();
        gone.event_end = Some(at(5));
        let d = start(&held.clone().with_pending(&gone), &c);
        assert_eq!(d.outcome, Outcome::Provisioning);
        assert!(d.patch.is_some());
    }

    #[test]
    fn start_on_a_released_host_waits_for_the_release_notification() {
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        let mut released = host().held(&a, Phase::Released);
        released.spec.consumer_ref = None;
        let d = start(&released, &b);
        assert_eq!(d.detail, QUEUED);
        let mut no_notify = policy();
        no_notify.notify_enabled = false;
        let d = decide_start(&keys(), &no_notify, &released, &b, now());
        assert_eq!(d.detail, "provisioning started");
        released.notified = Some(Phase::Released);
        assert_eq!(start(&released, &b).detail, "provisioning started");
    }

    #[test]
    fn hosts_used_elsewhere_or_unprovisionable_are_refused_at_once() {
        let req = holder("1", "u");
        let mut image = host();
        image.spec.image_url = Some("http://other".into());
        assert_eq!(start(&image, &req).outcome, Outcome::Conflict);
        let mut capi = host();
        capi.spec.consumer_ref = Some(ConsumerRef {
            api_version: "infrastructure.cluster.x-k8s.io/v1beta1".into(),
            kind: "Metal3Machine".into(),
            name: "m-0".into(),
            namespace: "ns".into(),
        });
        let d = start(&capi, &req);
        assert_eq!(d.outcome, Outcome::Conflict);
        assert!(d.detail.contains("Metal3Machine/m-0"), "{}", d.detail);
        let mut paused = host();
        paused.paused = true;
        let d = start(&paused, &req);
        assert_eq!((d.outcome, d.patch), (Outcome::Unavailable, None));
        // A released host is checked again before it is taken.
        let mut released = host().held(&holder("9", "v"), Phase::Released);
        released.notified = Some(Phase::Released);
        released.spec.consumer_ref = capi.spec.consumer_ref.clone();
        assert_eq!(start(&released, &req).outcome, Outcome::Conflict);
        released.spec.consumer_ref = None;
        released.spec.custom_deploy = true;
        assert_eq!(start(&released, &req).outcome, Outcome::Unavailable);
    }

    #[test]
    fn a_failed_host_past_its_reservation_is_free_again() {
        let mut a = holder("101", "u1");
        a.event_end = Some(at(5));
        let b = holder("202", "u2");
        let mut failed = host().held(&a, Phase::Failed);
        failed.notified = Some(Phase::Failed);
        assert_eq!(start(&failed, &b).detail, "provisioning started");
        // Not while Metal3 still has its image.
        failed.spec.image_url = Some(policy().image.url);
        assert_eq!(start(&failed, &b).detail, QUEUED);
    }

    #[test]
    fn end_only_from_the_holder() {
        let k = keys();
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        let held = host().held(&a, Phase::Provisioned);
        assert_eq!(
            decide_end(&k, &policy(), &held, &b, now()).outcome,
            Outcome::Conflict
        );
        assert_eq!(
            decide_end(&k, &policy(), &host(), &b, now()).outcome,
            Outcome::AlreadyDone
        );
        let mut wrong_user = a.clone();
        wrong_user.user_id = "mallory".into();
        assert_eq!(
            decide_end(&k, &policy(), &held, &wrong_user, now()).outcome,
            Outcome::Conflict
        );
        let d = decide_end(&k, &policy(), &held, &a, now());
        assert_eq!(d.outcome, Outcome::Releasing);
        assert_eq!(ann(d.patch.as_ref().unwrap(), "phase"), "deprovisioning");
        let end = |p| decide_end(&k, &policy(), &host().held(&a, p), &a, now()).outcome;
        assert_eq!(end(Phase::Deprovisioning), Outcome::Releasing);
        assert_eq!(end(Phase::Released), Outcome::AlreadyDone);
        // An END long after its reservation is still honoured.
        let mut late = a.clone();
        late.event_end = Some(at(1));
        assert_eq!(
            decide_end(&k, &policy(), &held, &late, at(1_000_000)).outcome,
            Outcome::Releasing
        );
        // The end of a queued reservation cancels its queued start.
        let queued = held.with_pending(&b);
        let d = decide_end(&k, &policy(), &queued, &b, now());
        assert_eq!(d.outcome, Outcome::Releasing);
        assert_eq!(
            ann(d.patch.as_ref().unwrap(), "pending-start"),
            &Value::Null
        );
    }

    #[test]
    fn provisioning_writes_the_spec_then_waits_for_metal3() {
        let (k, p) = (keys(), policy());
        let a = holder("101", "u1");
        let mut h = host().held(&a, Phase::Provisioning);
        let Step::Provision(patch) = next_step(&k, &p, &h, now()) else {
            panic!()
        };
        assert_eq!(
            patch,
            json!({
                "metadata": {"resourceVersion": "10",
                             "annotations": {"reservations.polito.it/phase-since": "1970-01-01T00:00:10Z",
                                             "reservations.polito.it/provision-baseline": "none"}},
                "spec": {
                    "image": {"url": "http://img/ubuntu.qcow2", "checksum": "http://img/ubuntu.qcow2.sha256",
                              "checksumType": "sha256", "format": "qcow2"},
                    "userData": {"name": "lab-server-a1-userdata", "namespace": "ns"},
                    "online": true,
                    "consumerRef": {"apiVersion": "reservations.polito.it/v1", "kind": "Reservation",
                                    "name": "101", "namespace": "ns"}
                }
            })
        );
        h = provisioning(&a);
        assert_eq!(
            next_step(&k, &p, &h, now()),
            Step::Wait(Duration::from_secs(30))
        );
        h.status.state = S::Provisioned;
        let Step::Transition(t) = next_step(&k, &p, &h, now()) else {
            panic!()
        };
        assert_eq!(
            (t.to, ann(&t.patch, "phase")),
            (Phase::Provisioned, &json!("provisioned"))
        );
        // A provisioned status that names another image is not ours yet.
        h.status.image_url = Some("http://img/other".into());
        assert!(matches!(next_step(&k, &p, &h, now()), Step::Wait(_)));
    }

    #[test]
    fn metal3_retrying_a_failed_deployment_is_followed_not_reported() {
        let (k, p) = (keys(), policy());
        let mut h = provisioning(&holder("101", "u1"));
        h.status = Status {
            state: S::Provisioning,
            operational_status: "error".into(),
            error_type: PROVISIONING_ERROR.into(),
            error_message: "deploy failed".into(),
            provision_started: Some(at(3)),
            ..Status::default()
        };
        assert!(
            matches!(next_step(&k, &p, &h, now()), Step::Wait(_)),
            "error while provisioning: BMO retries"
        );
        h.status.state = S::Deprovisioning;
        h.status.provisioning_fail_count = 1;
        assert!(matches!(next_step(&k, &p, &h, now()), Step::Wait(_)));
        // BMO gave up: the host is available with the retry-limit error.
        h.status.state = S::Available;
        h.status.provisioning_fail_count = 5;
        h.status.error_message = "provisioning failed 5 times, retry limit (5) reached; change image or reset provisioningFailCount to retry".into();
        let Step::Transition(t) = next_step(&k, &p, &h, now()) else {
            panic!()
        };
        assert_eq!(t.to, Phase::Failed);
        assert!(
            t.detail.starts_with(
                "Metal3 gave up provisioning: provisioning error: provisioning failed 5 times"
            ),
            "{}",
            t.detail
        );
    }

    #[test]
    fn an_error_left_from_before_does_not_fail_a_new_reservation() {
        let (k, p) = (keys(), policy());
        let mut h = provisioning(&holder("101", "u1"));
        h.phase_since = Some(at(100));
        h.status.operational_status = "error".into();
        h.status.error_type = PROVISIONING_ERROR.into();
        h.status.error_message = "provisioning failed 5 times, retry limit (5) reached".into();
        // The attempt that failed started before this reservation's phase.
        h.status.provision_started = Some(at(40));
        assert!(matches!(next_step(&k, &p, &h, at(101)), Step::Wait(_)));
        h.status.provision_started = None;
        assert!(matches!(next_step(&k, &p, &h, at(101)), Step::Wait(_)));
        // BMO's second-precision start in the same second as the phase counts as ours.
        h.phase_since = Some(at(100) + jiff::SignedDuration::from_millis(700));
        h.status.provision_started = Some(at(100));
        assert!(matches!(
            next_step(&k, &p, &h, at(101)),
            Step::Transition(_)
        ));
    }

    #[test]
    fn metal3_acting_is_judged_against_the_baseline_written_with_the_spec() {
        let (k, p) = (keys(), policy());
        let mut h = provisioning(&holder("101", "u1"));
        h.status.state = S::Available;
        h.status.operational_status = "error".into();
        h.status.error_type = PROVISIONING_ERROR.into();
        h.status.error_message = "provisioning failed 5 times, retry limit (5) reached".into();
        h.status.provision_started = Some(at(40));
        h.status.provision_started_raw = Some("1970-01-01T00:00:40Z".into());
        // The spec write recorded this very start: Metal3 has not acted since.
        h.provision_baseline = Some("1970-01-01T00:00:40Z".into());
        assert!(matches!(next_step(&k, &p, &h, at(50)), Step::Wait(_)));
        // A later attempt (whatever the clocks say) is an attempt on our spec.
        h.status.provision_started = Some(at(30));
        h.status.provision_started_raw = Some("1970-01-01T00:00:30Z".into());
        let Step::Transition(t) = next_step(&k, &p, &h, at(50)) else {
            panic!()
        };
        assert!(
            t.detail.starts_with("Metal3 gave up provisioning"),
            "{}",
            t.detail
        );
    }

    #[test]
    fn metal3_refusing_our_image_again_fails_at_once() {
        let (k, p) = (keys(), policy());
        let mut h = provisioning(&holder("101", "u1"));
        h.provision_baseline = Some("1970-01-01T00:00:40Z".into());
        h.status = Status {
            state: S::Available,
            operational_status: "error".into(),
            error_type: PROVISIONING_ERROR.into(),
            error_message: "provisioning failed 5 times, retry limit (5) reached; change image or reset provisioningFailCount to retry".into(),
            provisioning_fail_count: 5,
            provision_started: Some(at(40)),
            provision_started_raw: Some("1970-01-01T00:00:40Z".into()),
            last_attempted_image_url: Some(p.image.url.clone()),
            ..Status::default()
        };
        let Step::Transition(t) = next_step(&k, &p, &h, at(50)) else {
            panic!()
        };
        assert!(
            t.detail
                .starts_with("Metal3 refuses to deploy this image on this host again"),
            "{}",
            t.detail
        );
        // Another image was the last attempt: BMO resets the count and tries ours.
        h.status.last_attempted_image_url = Some("http://img/other".into());
        assert!(matches!(next_step(&k, &p, &h, at(50)), Step::Wait(_)));
    }

    #[test]
    fn a_failed_reservation_stops_metal3_then_notifies() {
        let (k, p) = (keys(), policy());
        let mut h = provisioning(&holder("101", "u1"));
        h.phase = Some(Phase::Failed);
        assert_eq!(
            next_step(&k, &p, &h, now()),
            Step::Stop(json!({"metadata": {"resourceVersion": "10"},
                              "spec": {"image": null, "userData": null, "online": false}}))
        );
        h.spec.image_url = None;
        h.spec.user_data = None;
        h.spec.online = false;
        assert_eq!(next_step(&k, &p, &h, now()), Step::Notify(Phase::Failed));
    }

    #[test]
    fn steps_are_inside_the_timeout() {
        let (k, p) = (keys(), policy());
        // The spec was never written (every write failed): the timeout still fails it.
        let h = host().held(&holder("1", "u"), Phase::Provisioning);
        let Step::Transition(t) = next_step(&k, &p, &h, at(100)) else {
            panic!()
        };
        assert_eq!(t.to, Phase::Failed);
        let mut h = provisioning(&holder("1", "u"));
        assert_eq!(
            next_step(&k, &p, &h, at(95)),
            Step::Wait(Duration::from_secs(5))
        );
        h.status.state = S::Provisioning;
        let Step::Transition(t) = next_step(&k, &p, &h, at(100)) else {
            panic!()
        };
        assert_eq!(
            t.detail,
            "not provisioned within 100s (Metal3 state: provisioning)"
        );
        let mut d = host().held(&holder("1", "u"), Phase::Deprovisioning);
        // The release is written even late (removing the image is always right) ...
        d.spec.image_url = Some(p.image.url.clone());
        assert!(matches!(next_step(&k, &p, &d, at(100)), Step::Release(_)));
        // ... and Metal3 then has its time; past it, the release fails.
        d.spec.image_url = None;
        d.status.state = S::Deprovisioning;
        let Step::Transition(t) = next_step(&k, &p, &d, at(100)) else {
            panic!()
        };
        assert!(
            t.detail.starts_with("not released within 100s"),
            "{}",
            t.detail
        );
    }

    #[test]
    fn work_metal3_finished_during_an_outage_is_success_not_a_timeout() {
        let (k, p) = (keys(), policy());
        let mut h = provisioning(&holder("1", "u"));
        h.status.state = S::Provisioned;
        let Step::Transition(t) = next_step(&k, &p, &h, at(10_000)) else {
            panic!()
        };
        assert_eq!(t.to, Phase::Provisioned);
        // Released while the sidecar was away (or never provisioned at all).
        let d = host().held(&holder("1", "u"), Phase::Deprovisioning);
        assert!(matches!(
            next_step(&k, &p, &d, at(10_000)),
            Step::FinishRelease(_)
        ));
    }

    #[test]
    fn a_spec_write_restarts_the_phase_clock() {
        let (k, p) = (keys(), policy());
        let h = host().held(&holder("1", "u"), Phase::Provisioning);
        let Step::Provision(patch) = next_step(&k, &p, &h, at(50)) else {
            panic!()
        };
        assert_eq!(ann(&patch, "phase-since"), "1970-01-01T00:00:50Z");
    }

    #[test]
    fn release_powers_off_cleans_and_frees_the_host() {
        let (k, p) = (keys(), policy());
        let mut h = provisioning(&holder("1", "u")).with_state("provisioned");
        h.phase = Some(Phase::Deprovisioning);
        h.spec.automated_cleaning_mode = "disabled".into();
        let Step::Release(patch) = next_step(&k, &p, &h, now()) else {
            panic!()
        };
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "10",
                                "annotations": {"reservations.polito.it/phase-since": "1970-01-01T00:00:10Z"}},
                   "spec": {"image": null, "userData": null, "online": false,
                            "automatedCleaningMode": "metadata"}})
        );
        h.spec.image_url = None;
        h.spec.user_data = None;
        h.spec.online = false;
        h.spec.automated_cleaning_mode = "metadata".into();
        assert!(matches!(next_step(&k, &p, &h, now()), Step::Wait(_)));
        h.status.state = S::Available;
        h.status.powered_on = true;
        assert!(
            matches!(next_step(&k, &p, &h, now()), Step::Wait(_)),
            "still powered on"
        );
        h.status.powered_on = false;
        let Step::FinishRelease(t) = next_step(&k, &p, &h, now()) else {
            panic!()
        };
        assert_eq!(ann(&t.patch, "phase"), "released");
        assert_eq!(t.patch["spec"]["consumerRef"], Value::Null);
        // With `keep`, the host's cleaning setting is left alone.
        let mut keep = p.clone();
        keep.release_cleaning = false;
        h.spec.automated_cleaning_mode = "disabled".into();
        assert!(matches!(
            next_step(&k, &keep, &h, now()),
            Step::FinishRelease(_)
        ));
    }

    #[test]
    fn deprovision_image_is_provisioned_when_configured() {
        let mut p = policy();
        p.deprovision_image = Some(ImageConfig {
            url: "http://img/wipe.iso".into(),
            checksum: None,
            checksum_type: None,
            format: Some("live-iso".into()),
        });
        let h = host()
            .held(&holder("1", "u"), Phase::Deprovisioning)
            .with_state("provisioned");
        let Step::Release(patch) = next_step(&keys(), &p, &h, now()) else {
            panic!()
        };
        assert_eq!(
            patch["spec"],
            json!({"image": {"url": "http://img/wipe.iso", "checksum": null, "checksumType": null,
                             "format": "live-iso"},
                   "userData": null, "online": true})
        );
    }

    #[test]
    fn a_secret_of_another_reservation_is_overwritten_only_from_a_current_copy() {
        let s = |managed, written_for: Option<&str>, up_to_date| ExistingSecret {
            managed,
            written_for: written_for.map(str::to_owned),
            up_to_date,
        };
        use SecretAction::*;
        assert_eq!(secret_action("101", None), CreateIfCurrent);
        assert_eq!(
            secret_action("101", Some(&s(true, Some("101"), true))),
            Keep
        );
        assert_eq!(
            secret_action("101", Some(&s(true, Some("101"), false))),
            Repair
        );
        assert_eq!(
            secret_action("101", Some(&s(true, Some("202"), true))),
            OverwriteIfCurrent
        );
        assert_eq!(
            secret_action("101", Some(&s(true, None, false))),
            OverwriteIfCurrent
        );
        assert_eq!(
            secret_action("101", Some(&s(false, Some("101"), true))),
            Foreign
        );
    }

    #[test]
    fn one_replica_at_a_time_sends_a_notification() {
        let k = keys();
        let ttl = Duration::from_secs(60);
        let mut h = host().held(&holder("1", "u"), Phase::Provisioned);
        let ClaimCheck::Take(p) = claim_notification(&k, &h, "a", ttl, now()) else {
            panic!()
        };
        assert_eq!(p["metadata"]["resourceVersion"], "10");
        let v = ann(&p, "notify-claim").as_str().unwrap();
        assert_eq!(v, "a 1970-01-01T00:01:10Z");
        h.notify_claim = Claim::parse(v);
        // Another replica waits for the claim to expire; the holder renews it.
        assert_eq!(
            claim_notification(&k, &h, "b", ttl, now()),
            ClaimCheck::Wait(Duration::from_secs(60))
        );
        assert!(matches!(
            claim_notification(&k, &h, "a", ttl, now()),
            ClaimCheck::Take(_)
        ));
        assert!(matches!(
            claim_notification(&k, &h, "b", ttl, at(70)),
            ClaimCheck::Take(_)
        ));
    }

    #[test]
    fn notify_then_take_the_queued_start() {
        let (k, p) = (keys(), policy());
        let b = holder("202", "u2");
        let mut h = host()
            .held(&holder("1", "u"), Phase::Released)
            .with_pending(&b);
        assert_eq!(next_step(&k, &p, &h, now()), Step::Notify(Phase::Released));
        h.notified = Some(Phase::Released);
        let Step::Transition(t) = next_step(&k, &p, &h, now()) else {
            panic!()
        };
        assert_eq!(t.to, Phase::Provisioning);
        assert_eq!(ann(&t.patch, "event-id"), "202");
        assert_eq!(ann(&t.patch, "phase"), "provisioning");
        assert_eq!(ann(&t.patch, "notified"), &Value::Null);
        assert_eq!(ann(&t.patch, "pending-start"), &Value::Null);
        assert_eq!(t.patch["spec"]["consumerRef"]["name"], "202");
        // Without a notification URL nothing waits for delivery.
        let mut quiet = p.clone();
        quiet.notify_enabled = false;
        h.notified = None;
        assert!(matches!(
            next_step(&k, &quiet, &h, now()),
            Step::Transition(_)
        ));
        let mut failed = host()
            .held(&holder("1", "u"), Phase::Failed)
            .with_pending(&b);
        failed.spec.image_url = None;
        assert_eq!(
            next_step(&k, &p, &failed, now()),
            Step::Notify(Phase::Failed)
        );
        assert_eq!(next_step(&k, &quiet, &failed, now()), Step::Idle);
        assert_eq!(next_step(&k, &p, &host(), now()), Step::Idle);
    }

    #[test]
    fn an_outcome_not_yet_notified_is_owed_and_delivered_before_released() {
        let (k, p) = (keys(), policy());
        let a = holder("101", "u1");
        // Provisioned, the receiver down: the END moves the host on, the outcome stays owed.
        let mut h = host().held(&a, Phase::Provisioned);
        let d = decide_end(&k, &p, &h, &a, now());
        let owed = ann(d.patch.as_ref().unwrap(), "notify-owed")
            .as_str()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(owed).unwrap(),
            json!({"outcome": "provisioned", "since": "1970-01-01T00:00:00Z", "detail": ""})
        );
        h.phase = Some(Phase::Deprovisioning);
        h.owed = serde_json::from_str(owed).unwrap();
        h.spec.image_url = Some(p.image.url.clone());
        h.spec.online = true;
        // The release is written first; the owed notification goes out while Metal3 works.
        assert!(matches!(next_step(&k, &p, &h, now()), Step::Release(_)));
        h.spec.image_url = None;
        h.spec.online = false;
        h.status.state = S::Deprovisioning;
        assert_eq!(
            next_step(&k, &p, &h, now()),
            Step::Notify(Phase::Provisioned)
        );
        // Released: still the owed one first.
        h.phase = Some(Phase::Released);
        assert_eq!(
            next_step(&k, &p, &h, now()),
            Step::Notify(Phase::Provisioned)
        );
        h.owed = None;
        assert_eq!(next_step(&k, &p, &h, now()), Step::Notify(Phase::Released));
        // Already notified, or never reached: nothing owed.
        let mut done = host().held(&a, Phase::Provisioned);
        done.notified = Some(Phase::Provisioned);
        let d = decide_end(&k, &p, &done, &a, now());
        assert_eq!(ann(d.patch.as_ref().unwrap(), "notify-owed"), &Value::Null);
        let d = decide_end(&k, &p, &host().held(&a, Phase::Provisioning), &a, now());
        assert_eq!(ann(d.patch.as_ref().unwrap(), "notify-owed"), &Value::Null);
    }

    #[test]
    fn a_queued_start_whose_reservation_ended_is_dropped_not_provisioned() {
        let (k, p) = (keys(), policy());
        let mut b = holder("202", "u2");
        b.event_end = Some(at(5));
        let mut h = host()
            .held(&holder("1", "u"), Phase::Released)
            .with_pending(&b);
        h.notified = Some(Phase::Released);
        let Step::Transition(t) = next_step(&k, &p, &h, now()) else {
            panic!()
        };
        assert_eq!(t.to, Phase::Released);
        assert_eq!(ann(&t.patch, "pending-start"), &Value::Null);
        assert_eq!(
            ann(&t.patch, "event-id"),
            &Value::Null,
            "the holder is not replaced"
        );
        assert!(t.detail.contains("dropped"));
    }
}
