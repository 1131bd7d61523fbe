//! What the reconciler does next for a host: [`next_step`] over a snapshot, and the spec
//! patches it writes.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::Policy;
use super::delivery::{release, take};
use crate::config::ImageConfig;
use crate::model::{
    AnnotationPatch, Host, Keys, PROVISIONING_ERROR, Phase, ProvisioningState, Reservation,
};

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
pub fn provision_patch(policy: &Policy, host: &Host, h: &Reservation, now: Timestamp) -> Value {
    let keys = &policy.keys;
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
pub fn release_patch(policy: &Policy, host: &Host, now: Timestamp) -> Value {
    let keys = &policy.keys;
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

/// The holder, and when its hold ends without an END: its reservation's end plus
/// `RELEASE_GRACE_SECONDS` (none when the grace is off, or the end unknown).
fn release_deadline<'h>(policy: &Policy, host: &'h Host) -> Option<(&'h Reservation, Timestamp)> {
    let holder = host.holder.as_ref()?;
    let grace = jiff::SignedDuration::try_from(policy.release_grace?).ok()?;
    let deadline = holder.event_end?.checked_add(grace).ok()?;
    Some((holder, deadline))
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

/// What the reconciler does next for `host`: the expiry of a reservation whose END never
/// came, else the step of its phase.
pub fn next_step(policy: &Policy, host: &Host, now: Timestamp) -> Step {
    let Some(phase) = host.phase else {
        return Step::Idle;
    };
    if let Some(expired) = expiry(policy, host, phase, now) {
        return expired;
    }
    match phase {
        Phase::Provisioning => provisioning_step(policy, host, now),
        Phase::Deprovisioning => release_step(policy, host, now),
        Phase::Failed if host.spec_deploys(&policy.image.url) => Step::Stop(stop_patch(host)),
        Phase::Provisioned | Phase::Failed | Phase::Released => {
            settled_step(policy, host, phase, now)
        }
    }
}

/// A reservation whose end has passed by the grace with no END or DELETED (the processor lost
/// it, or was down): released by the sidecar itself, exactly as an END would.
fn expiry(policy: &Policy, host: &Host, phase: Phase, now: Timestamp) -> Option<Step> {
    let (holder, deadline) = release_deadline(policy, host)?;
    let holding = matches!(
        phase,
        Phase::Provisioning | Phase::Provisioned | Phase::Failed
    );
    if !holding || now < deadline {
        return None;
    }
    let detail = format!(
        "released after the reservation's end ({}): no EVENT_END or EVENT_DELETED arrived within {}s",
        holder.event_end.map(|t| t.to_string()).unwrap_or_default(),
        policy.release_grace.map_or(0, |g| g.as_secs())
    );
    let (to, patch) = release(policy, host, holder, phase, now, &detail);
    Some(Step::Transition(Transition { to, detail, patch }))
}

/// The phase failed: `timeout` has passed since it began (the reason names `goal` and what
/// Metal3 shows).
fn timed_out(
    policy: &Policy,
    host: &Host,
    now: Timestamp,
    timeout: Duration,
    goal: &str,
) -> Option<Step> {
    (elapsed(host, now) >= timeout).then(|| {
        let error = if host.status.has_error() {
            format!(", {}", host.status.error())
        } else {
            String::new()
        };
        let detail = format!(
            "not {goal} within {}s (Metal3 state: {}{error})",
            timeout.as_secs(),
            host.status.state,
        );
        Step::Transition(transition(&policy.keys, host, Phase::Failed, &detail, now))
    })
}

/// Look again at the next resync or when `timeout` falls due, whichever comes first.
fn wait_within(policy: &Policy, host: &Host, now: Timestamp, timeout: Duration) -> Step {
    Step::Wait(
        policy
            .resync
            .min(timeout.saturating_sub(elapsed(host, now)))
            .max(Duration::from_millis(200)),
    )
}

/// `provisioning`: success first (a sidecar back from an outage finds work Metal3 finished
/// meanwhile), then Metal3 giving up, then the timeout, then the spec write; a spec write
/// restarts the phase's clock, so the timeout measures Metal3's time after it.
fn provisioning_step(policy: &Policy, host: &Host, now: Timestamp) -> Step {
    let keys = &policy.keys;
    let Some(holder) = &host.holder else {
        return Step::Idle;
    };
    let fail =
        |detail: String| Step::Transition(transition(keys, host, Phase::Failed, &detail, now));
    let spec = &host.spec;
    let spec_done = spec.image_url.as_deref() == Some(policy.image.url.as_str())
        && spec.user_data.as_deref() == Some(host.secret_name().as_str())
        && spec.online
        && spec.consumer_ref.as_ref() == Some(&policy.consumer(host, holder));
    let status = &host.status;
    // The operator reports the image it provisioned; when it does, it must be ours (a host
    // re-provisioned from another image still shows the old `provisioned`).
    let ours = status
        .image_url
        .as_deref()
        .is_none_or(|u| u == policy.image.url);
    if spec_done && status.state == ProvisioningState::Provisioned && ours {
        return Step::Transition(transition(keys, host, Phase::Provisioned, "", now));
    }
    // While BMO retries (error while provisioning, deprovisioning between attempts) the
    // reservation waits; it fails when BMO gives up: an `available` host with a provisioning
    // error after an attempt on our spec.
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
    if let Some(failed) = timed_out(policy, host, now, policy.provision_timeout, "provisioned") {
        return failed;
    }
    if !spec_done {
        return Step::Provision(provision_patch(policy, host, holder, now));
    }
    wait_within(policy, host, now, policy.provision_timeout)
}

/// `deprovisioning`: the release write, Metal3's time to release, then `released`.
fn release_step(policy: &Policy, host: &Host, now: Timestamp) -> Step {
    let spec = &host.spec;
    let spec_done = !needs_cleaning(policy, host)
        && spec.user_data.is_none()
        && match &policy.deprovision_image {
            None => spec.image_url.is_none() && !spec.online,
            Some(img) => spec.image_url.as_deref() == Some(img.url.as_str()) && spec.online,
        };
    // No fail-fast on `operationalStatus: error` here: the error a failed provisioning left
    // behind stays on the host while Metal3 deprovisions it. The timeout decides.
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
        // Removing the user's image is always right, so the release write has no deadline of
        // its own (a refusal fails the release); Metal3's part does.
        if !spec_done {
            return Step::Release(release_patch(policy, host, now));
        }
        if let Some(failed) = timed_out(policy, host, now, policy.release_timeout, "released") {
            return failed;
        }
        // Nothing to write meanwhile: deliver what the holder is still owed.
        if let Some(owed) = owed_now(policy, host) {
            return Step::Notify(owed);
        }
        return wait_within(policy, host, now, policy.release_timeout);
    }
    // The release's reason (an expiry says so) goes on to `released` and its notification.
    let patch = AnnotationPatch::on(&policy.keys, &host.resource_version).phase(
        Phase::Released,
        now,
        &host.detail,
    );
    // Free for any Metal3 consumer again, unless a queued start takes it next.
    let patch = match host.live_pending(now) {
        Some(_) => patch,
        None => patch.consumer_ref(None),
    };
    Step::FinishRelease(Transition {
        to: Phase::Released,
        detail: host.detail.clone(),
        patch: patch.build(),
    })
}

/// `provisioned`, `failed` (its image removed) or `released`: the notifications in order, then
/// the queued start, else nothing until the reservation's end plus the grace.
fn settled_step(policy: &Policy, host: &Host, phase: Phase, now: Timestamp) -> Step {
    // The holder's earlier outcome first, so notifications arrive in order.
    if let Some(owed) = owed_now(policy, host) {
        return Step::Notify(owed);
    }
    if policy.notify_enabled && host.notified != Some(phase) {
        return Step::Notify(phase);
    }
    match (&host.pending, phase) {
        (Some(p), Phase::Released) if host.pending_dropped(p, now) => {
            Step::Transition(Transition {
                to: Phase::Released,
                detail: format!(
                    "the queued start of event {} was dropped: its reservation has ended",
                    p.event_id
                ),
                patch: AnnotationPatch::on(&policy.keys, &host.resource_version)
                    .pending(None)
                    .consumer_ref(None)
                    .build(),
            })
        }
        (Some(p), Phase::Released) => {
            let (to, detail, patch) = take(policy, host, p, now, "started from the queue");
            Step::Transition(Transition { to, detail, patch })
        }
        _ => match release_deadline(policy, host) {
            // Looked at again when the reservation's end plus the grace falls due.
            Some((_, deadline)) if phase != Phase::Released => {
                let left: Duration = now.duration_until(deadline).try_into().unwrap_or_default();
                Step::Wait(left.max(Duration::from_millis(200)))
            }
            _ => Step::Idle,
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::*;
    use crate::model::{ProvisioningState as S, Status};
    use crate::plan::decide_end;
    use crate::plan::fixtures::*;

    #[test]
    fn provisioning_writes_the_spec_then_waits_for_metal3() {
        let p = policy();
        let a = holder("101", "u1");
        let mut h = host().held(&a, Phase::Provisioning);
        let Step::Provision(patch) = next_step(&p, &h, now()) else {
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
            next_step(&p, &h, now()),
            Step::Wait(Duration::from_secs(30))
        );
        h.status.state = S::Provisioned;
        let Step::Transition(t) = next_step(&p, &h, now()) else {
            panic!()
        };
        assert_eq!(
            (t.to, ann(&t.patch, "phase")),
            (Phase::Provisioned, &json!("provisioned"))
        );
        // A provisioned status that names another image is not ours yet.
        h.status.image_url = Some("http://img/other".into());
        assert!(matches!(next_step(&p, &h, now()), Step::Wait(_)));
    }

    #[test]
    fn metal3_retrying_a_failed_deployment_is_followed_not_reported() {
        let p = policy();
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
            matches!(next_step(&p, &h, now()), Step::Wait(_)),
            "error while provisioning: BMO retries"
        );
        h.status.state = S::Deprovisioning;
        h.status.provisioning_fail_count = 1;
        assert!(matches!(next_step(&p, &h, now()), Step::Wait(_)));
        // BMO gave up: the host is available with the retry-limit error.
        h.status.state = S::Available;
        h.status.provisioning_fail_count = 5;
        h.status.error_message = "provisioning failed 5 times, retry limit (5) reached; change image or reset provisioningFailCount to retry".into();
        let Step::Transition(t) = next_step(&p, &h, now()) else {
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
        let p = policy();
        let mut h = provisioning(&holder("101", "u1"));
        h.phase_since = Some(at(100));
        h.status.operational_status = "error".into();
        h.status.error_type = PROVISIONING_ERROR.into();
        h.status.error_message = "provisioning failed 5 times, retry limit (5) reached".into();
        // The attempt that failed started before this reservation's phase.
        h.status.provision_started = Some(at(40));
        assert!(matches!(next_step(&p, &h, at(101)), Step::Wait(_)));
        h.status.provision_started = None;
        assert!(matches!(next_step(&p, &h, at(101)), Step::Wait(_)));
        // BMO's second-precision start in the same second as the phase counts as ours.
        h.phase_since = Some(at(100) + jiff::SignedDuration::from_millis(700));
        h.status.provision_started = Some(at(100));
        assert!(matches!(next_step(&p, &h, at(101)), Step::Transition(_)));
    }

    #[test]
    fn metal3_acting_is_judged_against_the_baseline_written_with_the_spec() {
        let p = policy();
        let mut h = provisioning(&holder("101", "u1"));
        h.status.state = S::Available;
        h.status.operational_status = "error".into();
        h.status.error_type = PROVISIONING_ERROR.into();
        h.status.error_message = "provisioning failed 5 times, retry limit (5) reached".into();
        h.status.provision_started = Some(at(40));
        h.status.provision_started_raw = Some("1970-01-01T00:00:40Z".into());
        // The spec write recorded this very start: Metal3 has not acted since.
        h.provision_baseline = Some("1970-01-01T00:00:40Z".into());
        assert!(matches!(next_step(&p, &h, at(50)), Step::Wait(_)));
        // A later attempt (whatever the clocks say) is an attempt on our spec.
        h.status.provision_started = Some(at(30));
        h.status.provision_started_raw = Some("1970-01-01T00:00:30Z".into());
        let Step::Transition(t) = next_step(&p, &h, at(50)) else {
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
        let p = policy();
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
        let Step::Transition(t) = next_step(&p, &h, at(50)) else {
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
        assert!(matches!(next_step(&p, &h, at(50)), Step::Wait(_)));
    }

    #[test]
    fn a_failed_reservation_stops_metal3_then_notifies() {
        let p = policy();
        let mut h = provisioning(&holder("101", "u1"));
        h.phase = Some(Phase::Failed);
        assert_eq!(
            next_step(&p, &h, now()),
            Step::Stop(json!({"metadata": {"resourceVersion": "10"},
                              "spec": {"image": null, "userData": null, "online": false}}))
        );
        h.spec.image_url = None;
        h.spec.user_data = None;
        h.spec.online = false;
        assert_eq!(next_step(&p, &h, now()), Step::Notify(Phase::Failed));
    }

    #[test]
    fn steps_are_inside_the_timeout() {
        let p = policy();
        // The spec was never written (every write failed): the timeout still fails it.
        let h = host().held(&holder("1", "u"), Phase::Provisioning);
        let Step::Transition(t) = next_step(&p, &h, at(100)) else {
            panic!()
        };
        assert_eq!(t.to, Phase::Failed);
        let mut h = provisioning(&holder("1", "u"));
        assert_eq!(
            next_step(&p, &h, at(95)),
            Step::Wait(Duration::from_secs(5))
        );
        h.status.state = S::Provisioning;
        let Step::Transition(t) = next_step(&p, &h, at(100)) else {
            panic!()
        };
        assert_eq!(
            t.detail,
            "not provisioned within 100s (Metal3 state: provisioning)"
        );
        let mut d = host().held(&holder("1", "u"), Phase::Deprovisioning);
        // The release is written even late (removing the image is always right) ...
        d.spec.image_url = Some(p.image.url.clone());
        assert!(matches!(next_step(&p, &d, at(100)), Step::Release(_)));
        // ... and Metal3 then has its time; past it, the release fails.
        d.spec.image_url = None;
        d.status.state = S::Deprovisioning;
        let Step::Transition(t) = next_step(&p, &d, at(100)) else {
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
        let p = policy();
        let mut h = provisioning(&holder("1", "u"));
        h.status.state = S::Provisioned;
        let Step::Transition(t) = next_step(&p, &h, at(10_000)) else {
            panic!()
        };
        assert_eq!(t.to, Phase::Provisioned);
        // Released while the sidecar was away (or never provisioned at all).
        let d = host().held(&holder("1", "u"), Phase::Deprovisioning);
        assert!(matches!(
            next_step(&p, &d, at(10_000)),
            Step::FinishRelease(_)
        ));
    }

    #[test]
    fn a_spec_write_restarts_the_phase_clock() {
        let p = policy();
        let h = host().held(&holder("1", "u"), Phase::Provisioning);
        let Step::Provision(patch) = next_step(&p, &h, at(50)) else {
            panic!()
        };
        assert_eq!(ann(&patch, "phase-since"), "1970-01-01T00:00:50Z");
    }

    #[test]
    fn release_powers_off_cleans_and_frees_the_host() {
        let p = policy();
        let mut h = provisioning(&holder("1", "u")).with_state("provisioned");
        h.phase = Some(Phase::Deprovisioning);
        h.spec.automated_cleaning_mode = "disabled".into();
        let Step::Release(patch) = next_step(&p, &h, now()) else {
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
        assert!(matches!(next_step(&p, &h, now()), Step::Wait(_)));
        h.status.state = S::Available;
        h.status.powered_on = true;
        assert!(
            matches!(next_step(&p, &h, now()), Step::Wait(_)),
            "still powered on"
        );
        h.status.powered_on = false;
        let Step::FinishRelease(t) = next_step(&p, &h, now()) else {
            panic!()
        };
        assert_eq!(ann(&t.patch, "phase"), "released");
        assert_eq!(t.patch["spec"]["consumerRef"], Value::Null);
        // With `keep`, the host's cleaning setting is left alone.
        let mut keep = p.clone();
        keep.release_cleaning = false;
        h.spec.automated_cleaning_mode = "disabled".into();
        assert!(matches!(
            next_step(&keep, &h, now()),
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
        let Step::Release(patch) = next_step(&p, &h, now()) else {
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
    fn notify_then_take_the_queued_start() {
        let p = policy();
        let b = holder("202", "u2");
        let mut h = host()
            .held(&holder("1", "u"), Phase::Released)
            .with_pending(&b);
        assert_eq!(next_step(&p, &h, now()), Step::Notify(Phase::Released));
        h.notified = Some(Phase::Released);
        let Step::Transition(t) = next_step(&p, &h, now()) else {
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
        assert!(matches!(next_step(&quiet, &h, now()), Step::Transition(_)));
        let mut failed = host()
            .held(&holder("1", "u"), Phase::Failed)
            .with_pending(&b);
        failed.spec.image_url = None;
        assert_eq!(next_step(&p, &failed, now()), Step::Notify(Phase::Failed));
        // Nothing to do until the reservation's end plus the grace (a day and 600 s away).
        assert_eq!(
            next_step(&quiet, &failed, now()),
            Step::Wait(Duration::from_secs(86_400 + 600 - 10))
        );
        assert_eq!(next_step(&p, &host(), now()), Step::Idle);
    }

    #[test]
    fn an_outcome_not_yet_notified_is_owed_and_delivered_before_released() {
        let p = policy();
        let a = holder("101", "u1");
        // Provisioned, the receiver down: the END moves the host on, the outcome stays owed.
        let mut h = host().held(&a, Phase::Provisioned);
        let d = decide_end(&p, &h, &a, now());
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
        assert!(matches!(next_step(&p, &h, now()), Step::Release(_)));
        h.spec.image_url = None;
        h.spec.online = false;
        h.status.state = S::Deprovisioning;
        assert_eq!(next_step(&p, &h, now()), Step::Notify(Phase::Provisioned));
        // Released: still the owed one first.
        h.phase = Some(Phase::Released);
        assert_eq!(next_step(&p, &h, now()), Step::Notify(Phase::Provisioned));
        h.owed = None;
        assert_eq!(next_step(&p, &h, now()), Step::Notify(Phase::Released));
        // Already notified, or never reached: nothing owed.
        let mut done = host().held(&a, Phase::Provisioned);
        done.notified = Some(Phase::Provisioned);
        let d = decide_end(&p, &done, &a, now());
        assert_eq!(ann(d.patch.as_ref().unwrap(), "notify-owed"), &Value::Null);
        let d = decide_end(&p, &host().held(&a, Phase::Provisioning), &a, now());
        assert_eq!(ann(d.patch.as_ref().unwrap(), "notify-owed"), &Value::Null);
    }

    #[test]
    fn a_queued_start_whose_reservation_ended_is_dropped_not_provisioned() {
        let p = policy();
        let mut b = holder("202", "u2");
        b.event_end = Some(at(5));
        let mut h = host()
            .held(&holder("1", "u"), Phase::Released)
            .with_pending(&b);
        h.notified = Some(Phase::Released);
        let Step::Transition(t) = next_step(&p, &h, now()) else {
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

    #[test]
    fn a_host_whose_end_passed_by_the_grace_without_end_is_released_by_the_sidecar() {
        let mut p = policy();
        p.release_grace = Some(Duration::from_secs(600));
        let a = holder("101", "u1"); // ends a day after the epoch
        let end = a.event_end.unwrap();
        let mut h = host().held(&a, Phase::Provisioned);
        h.notified = Some(Phase::Provisioned);
        // Looked at again exactly when the grace is over.
        assert_eq!(next_step(&p, &h, end), Step::Wait(Duration::from_secs(600)));
        let later = end + jiff::SignedDuration::from_secs(600);
        let Step::Transition(t) = next_step(&p, &h, later) else {
            panic!()
        };
        assert_eq!(t.to, Phase::Deprovisioning);
        assert!(
            t.detail.contains("no EVENT_END or EVENT_DELETED"),
            "{}",
            t.detail
        );
        assert_eq!(t.patch["metadata"]["resourceVersion"], "10");
        assert!(ann(&t.patch, "ended").as_str().unwrap().contains("\"101\""));
        // Its reason goes on to `released`, what the notification reads.
        h.phase = Some(Phase::Deprovisioning);
        h.detail = t.detail.clone();
        h.status.state = S::Available;
        let Step::FinishRelease(f) = next_step(&p, &h, later) else {
            panic!()
        };
        assert_eq!(ann(&f.patch, "detail"), &json!(t.detail));
        // Off: never.
        let mut off = policy();
        off.release_grace = None;
        let mut h = host().held(&a, Phase::Provisioned);
        h.notified = Some(Phase::Provisioned);
        assert_eq!(next_step(&off, &h, later), Step::Idle);
        // An update moved the end: the deadline moves with it.
        let mut moved = h.clone();
        moved.holder.as_mut().unwrap().event_end =
            Some(later + jiff::SignedDuration::from_secs(3600));
        assert!(matches!(next_step(&p, &moved, later), Step::Wait(_)));
    }
}
