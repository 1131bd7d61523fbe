//! What a delivery does to one host: [`decide_start`], [`decide_end`] (EVENT_END and
//! EVENT_DELETED) and [`decide_update`] over a snapshot, each answering with a [`Decision`]
//! (the per-resource result, and the conditional write if any); and the two writes the
//! reconciler shares with them: a reservation takes a host ([`take`]), a held host is released
//! ([`release`]).

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use super::Policy;
use crate::model::{
    AnnotationPatch, Host, Keys, Owed, Phase, ProvisioningState, Reservation, with_ended,
};

/// Per-resource outcome reported in the reply body (`results[].result`; not the filter's
/// per-request `webhook_core::metrics::Outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceOutcome {
    /// The start is being carried out (or queued until the host is released).
    Provisioning,
    /// The end is being carried out.
    Releasing,
    /// The reservation's new end is recorded (EVENT_UPDATED).
    Updated,
    /// The start cannot be carried out for a reason the user is told (no usable SSH key): the
    /// reservation holds the host as `failed` and the user is notified.
    Failed,
    /// Not a BareMetalHost resource type.
    Skipped,
    /// The host is held by another reservation or another Metal3 consumer; nothing changed.
    /// On the wire `conflict` (the documented reply); in the code "conflict" only ever means a
    /// write refused by a resourceVersion precondition (409, `Write::Conflict`).
    #[serde(rename = "conflict")]
    HeldByOther,
    /// No BMH maps to the resource.
    NotFound,
    /// A repeated delivery, or nothing to do for this host: nothing changed.
    AlreadyDone,
    /// A START of a reservation that has ended (its eventEnd passed, or its END was received):
    /// it never provisions.
    Expired,
    /// Metal3 would never provision the host (paused, detached, externally provisioned, no
    /// BMC, custom deploy), or the API server refused the write.
    Unavailable,
}

impl ResourceOutcome {
    /// The wire name (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceOutcome::Provisioning => "provisioning",
            ResourceOutcome::Releasing => "releasing",
            ResourceOutcome::Updated => "updated",
            ResourceOutcome::Failed => "failed",
            ResourceOutcome::Skipped => "skipped",
            ResourceOutcome::HeldByOther => "conflict",
            ResourceOutcome::NotFound => "not_found",
            ResourceOutcome::AlreadyDone => "already_done",
            ResourceOutcome::Expired => "expired",
            ResourceOutcome::Unavailable => "unavailable",
        }
    }

    /// Whether the delivery changed (or is changing) the host for this resource.
    pub fn acted(self) -> bool {
        matches!(
            self,
            ResourceOutcome::Provisioning
                | ResourceOutcome::Releasing
                | ResourceOutcome::Updated
                | ResourceOutcome::Failed
        )
    }
}

/// What a delivery does to one host: the answer, and the merge patch to write first (with a
/// resourceVersion precondition) when it changes the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: ResourceOutcome,
    pub detail: String,
    pub patch: Option<Value>,
}

impl Decision {
    fn answer(outcome: ResourceOutcome, detail: impl Into<String>) -> Self {
        Decision {
            outcome,
            detail: detail.into(),
            patch: None,
        }
    }

    fn write(outcome: ResourceOutcome, detail: impl Into<String>, patch: Value) -> Self {
        Decision {
            outcome,
            detail: detail.into(),
            patch: Some(patch),
        }
    }
}

/// The holder's phase when `req`'s reservation holds the host (whoever its user is now).
fn held_by(host: &Host, req: &Reservation) -> Option<Phase> {
    match (&host.holder, host.phase) {
        (Some(holder), Some(phase)) if holder.same_reservation(req) => Some(phase),
        _ => None,
    }
}

const QUEUED: &str = "queued: the host is released from an earlier reservation first";

/// Whether a START may take `host` now, or must wait for it.
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
    // Nothing is owed to the holder any more: its notifications went out.
    let notified =
        |p: Phase| !policy.notify_enabled || (host.notified == Some(p) && host.owed.is_none());
    match phase {
        Phase::Released if notified(Phase::Released) => Availability::Free,
        // A failed reservation whose time is over frees the host once its image is gone and
        // Metal3 has it `available` again (its END may never come).
        Phase::Failed
            if holder.has_ended(now)
                && notified(Phase::Failed)
                && !host.spec_deploys(&policy.image.url)
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
            ResourceOutcome::Unavailable,
            format!("Metal3 would never provision this host: {why}"),
        ));
    }
    if let Some(c) = &host.spec.consumer_ref
        && !c.is_reservation(&policy.prefix)
    {
        return Some(Decision::answer(
            ResourceOutcome::HeldByOther,
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
            ResourceOutcome::HeldByOther,
            "the host is in use outside the reservation system (spec.image is set); nothing changed",
        ));
    }
    None
}

/// The write by which reservation `req` takes `host` (from a START, or from the queue when the
/// previous holder is released): `provisioning`, or `failed` at once when its key cannot be
/// put on a server (the user is told why; the host is never given an earlier user's key). The
/// phase entered comes back with the patch.
pub(super) fn take(
    policy: &Policy,
    host: &Host,
    req: &Reservation,
    now: Timestamp,
    detail: &str,
) -> (Phase, String, Value) {
    let keys = &policy.keys;
    let (phase, detail) = match req.key_problem() {
        Some(problem) => (Phase::Failed, problem.to_string()),
        None => (Phase::Provisioning, detail.to_owned()),
    };
    let patch = AnnotationPatch::on(keys, &host.resource_version)
        .holder(req)
        .phase(phase, now, &detail)
        .notified(None)
        .pending(None)
        .consumer_ref(Some(&policy.consumer(host, req)))
        .build();
    (phase, detail, patch)
}

/// The write that releases `host` from its holder (an END or DELETED of it, or its end passed
/// long enough with neither): `deprovisioning`, the reservation remembered as ended, an outcome
/// not yet notified kept owed (delivered before `released`). A failed reservation whose spec was
/// never written has nothing to undo: it is `released` at once, and nobody is told about a
/// release of a server they never had.
pub(super) fn release(
    policy: &Policy,
    host: &Host,
    holder: &Reservation,
    phase: Phase,
    now: Timestamp,
    detail: &str,
) -> (Phase, Value) {
    let keys = &policy.keys;
    let ended = with_ended(&host.ended, &holder.event_id, holder.event_end, now);
    let patch = AnnotationPatch::on(keys, &host.resource_version).ended(&ended);
    // An outcome (`provisioned`, `failed`) not yet notified stays owed, delivered first.
    let owed =
        (policy.notify_enabled && phase != Phase::Provisioning && host.notified != Some(phase))
            .then(|| Owed {
                outcome: phase,
                since: host.phase_since,
                detail: host.detail.clone(),
            });
    let patch = match &owed {
        Some(owed) => patch.owed(Some(owed)),
        None => patch,
    };
    if phase == Phase::Failed
        && host.provision_baseline.is_none()
        && !host.spec_deploys(&policy.image.url)
    {
        let patch = patch
            .phase(Phase::Released, now, detail)
            .notified(Some(Phase::Released));
        let patch = match host.live_pending(now) {
            Some(_) => patch,
            None => patch.consumer_ref(None),
        };
        return (Phase::Released, patch.build());
    }
    let patch = patch.phase(Phase::Deprovisioning, now, detail);
    (Phase::Deprovisioning, patch.build())
}

/// EVENT_START of reservation `req` on `host`.
pub fn decide_start(policy: &Policy, host: &Host, req: &Reservation, now: Timestamp) -> Decision {
    let keys = &policy.keys;
    if let Some(end) = req.event_end.filter(|_| req.has_ended(now)) {
        return Decision::answer(
            ResourceOutcome::Expired,
            format!("the reservation ended at {end}; nothing changed"),
        );
    }
    if host.has_ended(&req.event_id) {
        return Decision::answer(
            ResourceOutcome::Expired,
            "this reservation's EVENT_END was already received; nothing changed",
        );
    }
    if let Some(phase) = held_by(host, req) {
        return match phase {
            Phase::Provisioning => {
                Decision::answer(ResourceOutcome::Provisioning, "provisioning in progress")
            }
            Phase::Provisioned => Decision::answer(ResourceOutcome::AlreadyDone, "provisioned"),
            Phase::Failed => Decision::answer(
                ResourceOutcome::AlreadyDone,
                format!("provisioning failed: {}", host.detail),
            ),
            Phase::Deprovisioning | Phase::Released => Decision::answer(
                ResourceOutcome::Expired,
                "this reservation has already ended",
            ),
        };
    }
    match availability(policy, host, now) {
        Availability::Free => {
            let waiting_other = host
                .pending
                .as_ref()
                .is_some_and(|p| !p.same_reservation(req) && !host.pending_dropped(p, now));
            if waiting_other {
                // The queued start comes first; the reconciler hands the host over to it.
                return queue(keys, host, req, now);
            }
            refusal(policy, host).unwrap_or_else(|| {
                let (phase, detail, patch) = take(policy, host, req, now, "");
                match phase {
                    Phase::Failed => Decision::write(ResourceOutcome::Failed, detail, patch),
                    _ => Decision::write(
                        ResourceOutcome::Provisioning,
                        "provisioning started",
                        patch,
                    ),
                }
            })
        }
        Availability::Busy => queue(keys, host, req, now),
    }
}

fn queue(keys: &Keys, host: &Host, req: &Reservation, now: Timestamp) -> Decision {
    let rv = &host.resource_version;
    match &host.pending {
        Some(p) if p.same_reservation(req) => {
            Decision::answer(ResourceOutcome::Provisioning, QUEUED)
        }
        Some(p) if !host.pending_dropped(p, now) => Decision::answer(
            ResourceOutcome::HeldByOther,
            format!(
                "another reservation (event {}) is already waiting for this host",
                p.event_id
            ),
        ),
        // Nothing queued, or what is queued will never run: queue this one.
        _ => Decision::write(
            ResourceOutcome::Provisioning,
            QUEUED,
            AnnotationPatch::on(keys, rv).pending(Some(req)).build(),
        ),
    }
}

/// EVENT_END or EVENT_DELETED of reservation `req` on `host`. Honoured at any age and whoever
/// its user is now: it only ever frees what this reservation holds, and it is remembered so a
/// late START of it never provisions. An outcome (`provisioned`, `failed`) not yet notified
/// stays owed and is delivered before `released`.
pub fn decide_end(policy: &Policy, host: &Host, req: &Reservation, now: Timestamp) -> Decision {
    let keys = &policy.keys;
    let rv = &host.resource_version;
    if let (Some(phase), Some(holder)) = (held_by(host, req), &host.holder) {
        return match phase {
            Phase::Provisioning | Phase::Provisioned | Phase::Failed => {
                // The end as the message says, else as recorded (a DELETED may carry none).
                let mut holder = holder.clone();
                holder.event_end = req.event_end.or(holder.event_end);
                let (to, patch) = release(policy, host, &holder, phase, now, "");
                let detail = match to {
                    Phase::Released => "released: nothing had been provisioned",
                    _ => "release started",
                };
                Decision::write(ResourceOutcome::Releasing, detail, patch)
            }
            Phase::Deprovisioning => {
                Decision::answer(ResourceOutcome::Releasing, "release in progress")
            }
            Phase::Released => Decision::answer(ResourceOutcome::AlreadyDone, "released"),
        };
    }
    let ended = with_ended(&host.ended, &req.event_id, req.event_end, now);
    if host
        .pending
        .as_ref()
        .is_some_and(|p| p.same_reservation(req))
    {
        return Decision::write(
            ResourceOutcome::Releasing,
            "the queued start of this reservation was cancelled",
            AnnotationPatch::on(keys, rv)
                .pending(None)
                .ended(&ended)
                .build(),
        );
    }
    let (outcome, detail) = match &host.holder {
        Some(_) => (
            ResourceOutcome::HeldByOther,
            "the host is held by another reservation; nothing released",
        ),
        None => (
            ResourceOutcome::AlreadyDone,
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

/// EVENT_UPDATED of reservation `req` on `host`: a held (or queued) reservation's end follows
/// the new one, so the hold, the replay rule and the release after the end all move with it. An
/// update older than the one applied (reservation-be re-sends a failed delivery long after)
/// changes nothing.
pub fn decide_update(keys: &Keys, host: &Host, req: &Reservation) -> Decision {
    let Some(end) = req.event_end else {
        return Decision::answer(ResourceOutcome::AlreadyDone, "the update has no end");
    };
    let newer = |current: &Reservation| match (req.updated_at, current.updated_at) {
        (Some(new), Some(applied)) => new > applied,
        _ => true,
    };
    let rv = &host.resource_version;
    if let (Some(phase), Some(holder)) = (held_by(host, req), &host.holder) {
        return match phase {
            Phase::Provisioning | Phase::Provisioned | Phase::Failed if !newer(holder) => {
                Decision::answer(
                    ResourceOutcome::AlreadyDone,
                    "a later update was already applied; nothing changed",
                )
            }
            Phase::Provisioning | Phase::Provisioned | Phase::Failed
                if holder.event_end == Some(end) =>
            {
                Decision::answer(ResourceOutcome::AlreadyDone, format!("ends at {end}"))
            }
            Phase::Provisioning | Phase::Provisioned | Phase::Failed => Decision::write(
                ResourceOutcome::Updated,
                format!("the reservation now ends at {end}"),
                AnnotationPatch::on(keys, rv)
                    .reservation_end(end, req.updated_at)
                    .build(),
            ),
            Phase::Deprovisioning | Phase::Released => Decision::answer(
                ResourceOutcome::AlreadyDone,
                "this reservation has already ended; nothing changed",
            ),
        };
    }
    if let Some(p) = host.pending.as_ref().filter(|p| p.same_reservation(req)) {
        if !newer(p) || p.event_end == Some(end) {
            return Decision::answer(ResourceOutcome::AlreadyDone, QUEUED);
        }
        let mut queued = p.clone();
        queued.event_end = Some(end);
        queued.updated_at = req.updated_at.or(p.updated_at);
        return Decision::write(
            ResourceOutcome::Updated,
            format!("the queued reservation now ends at {end}"),
            AnnotationPatch::on(keys, rv).pending(Some(&queued)).build(),
        );
    }
    Decision::answer(
        ResourceOutcome::AlreadyDone,
        "the host is not held by this reservation; nothing to update",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConsumerRef;
    use crate::model::fixtures::*;
    use crate::plan::fixtures::*;
    use serde_json::json;

    fn start(host: &Host, req: &Reservation) -> Decision {
        decide_start(&policy(), host, req, now())
    }

    #[test]
    fn start_on_a_free_host_takes_it_with_a_consumer_ref() {
        let h = holder("101", "u1");
        let d = start(&host(), &h);
        assert_eq!(d.outcome, ResourceOutcome::Provisioning);
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
            (Phase::Provisioning, ResourceOutcome::Provisioning),
            (Phase::Provisioned, ResourceOutcome::AlreadyDone),
            (Phase::Failed, ResourceOutcome::AlreadyDone),
            (Phase::Deprovisioning, ResourceOutcome::Expired),
            (Phase::Released, ResourceOutcome::Expired),
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
        assert_eq!(
            (d.outcome, d.patch.is_none()),
            (ResourceOutcome::Expired, true)
        );
        // Its END was received before, and the host went on to another reservation.
        let b = holder("202", "u2");
        let mut h = host().held(&b, Phase::Provisioned);
        h.ended = [("101".to_owned(), at(1000))].into();
        let d = start(&h, &a);
        assert_eq!(
            (d.outcome, d.patch.is_none()),
            (ResourceOutcome::Expired, true),
            "{d:?}"
        );
        // ... also on a free host.
        let mut free = host();
        free.ended = h.ended.clone();
        assert_eq!(start(&free, &a).outcome, ResourceOutcome::Expired);
    }

    #[test]
    fn an_end_is_remembered_so_a_late_start_is_refused() {
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        // END of a reservation that never got the host (its START was lost or is late).
        let held = host().held(&b, Phase::Provisioned);
        let d = decide_end(&policy(), &held, &a, now());
        assert_eq!(d.outcome, ResourceOutcome::HeldByOther);
        let p = d.patch.unwrap();
        assert_eq!(ann(&p, "phase"), &Value::Null, "the holder is untouched");
        let ended: std::collections::BTreeMap<String, Timestamp> =
            serde_json::from_str(ann(&p, "ended").as_str().unwrap()).unwrap();
        assert!(ended.contains_key("101"));
        // The holder's own END records itself too.
        let d = decide_end(&policy(), &host().held(&a, Phase::Provisioned), &a, now());
        assert!(
            ann(d.patch.as_ref().unwrap(), "ended")
                .as_str()
                .unwrap()
                .contains("\"101\"")
        );
        // A repeated END of a reservation already remembered writes nothing.
        let mut remembered = host();
        remembered.ended = ended;
        let d = decide_end(&policy(), &remembered, &a, now());
        assert_eq!((d.outcome, d.patch), (ResourceOutcome::AlreadyDone, None));
    }

    #[test]
    fn start_on_a_held_host_is_queued_once() {
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        let c = holder("303", "u3");
        let held = host().held(&a, Phase::Provisioned);
        let d = start(&held, &b);
        assert_eq!(d.outcome, ResourceOutcome::Provisioning);
        assert!(
            ann(d.patch.as_ref().unwrap(), "pending-start")
                .as_str()
                .unwrap()
                .contains("\"eventId\":\"202\"")
        );
        let queued = held.clone().with_pending(&b);
        assert_eq!(
            start(&queued, &b),
            Decision::answer(ResourceOutcome::Provisioning, QUEUED)
        );
        assert_eq!(start(&queued, &c).outcome, ResourceOutcome::HeldByOther);
        // A queued start whose reservation has ended gives its place up.
        let mut gone = b.clone();
        gone.event_end = Some(at(5));
        let d = start(&held.clone().with_pending(&gone), &c);
        assert_eq!(d.outcome, ResourceOutcome::Provisioning);
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
        let d = decide_start(&no_notify, &released, &b, now());
        assert_eq!(d.detail, "provisioning started");
        released.notified = Some(Phase::Released);
        assert_eq!(start(&released, &b).detail, "provisioning started");
    }

    #[test]
    fn hosts_used_elsewhere_or_unprovisionable_are_refused_at_once() {
        let req = holder("1", "u");
        let mut image = host();
        image.spec.image_url = Some("http://other".into());
        assert_eq!(start(&image, &req).outcome, ResourceOutcome::HeldByOther);
        let mut capi = host();
        capi.spec.consumer_ref = Some(ConsumerRef {
            api_version: "infrastructure.cluster.x-k8s.io/v1beta1".into(),
            kind: "Metal3Machine".into(),
            name: "m-0".into(),
            namespace: "ns".into(),
        });
        let d = start(&capi, &req);
        assert_eq!(d.outcome, ResourceOutcome::HeldByOther);
        assert!(d.detail.contains("Metal3Machine/m-0"), "{}", d.detail);
        let mut paused = host();
        paused.paused = true;
        let d = start(&paused, &req);
        assert_eq!((d.outcome, d.patch), (ResourceOutcome::Unavailable, None));
        // A released host is checked again before it is taken.
        let mut released = host().held(&holder("9", "v"), Phase::Released);
        released.notified = Some(Phase::Released);
        released.spec.consumer_ref = capi.spec.consumer_ref.clone();
        assert_eq!(start(&released, &req).outcome, ResourceOutcome::HeldByOther);
        released.spec.consumer_ref = None;
        released.spec.custom_deploy = true;
        assert_eq!(start(&released, &req).outcome, ResourceOutcome::Unavailable);
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
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        let held = host().held(&a, Phase::Provisioned);
        assert_eq!(
            decide_end(&policy(), &held, &b, now()).outcome,
            ResourceOutcome::HeldByOther
        );
        assert_eq!(
            decide_end(&policy(), &host(), &b, now()).outcome,
            ResourceOutcome::AlreadyDone
        );
        // The owner of a reservation can change between its START and its END (an admin
        // edits it): the END of the same reservation releases, whatever user it names.
        let mut new_owner = a.clone();
        new_owner.user_id = "someone-else".into();
        assert_eq!(
            decide_end(&policy(), &held, &new_owner, now()).outcome,
            ResourceOutcome::Releasing
        );
        let d = decide_end(&policy(), &held, &a, now());
        assert_eq!(d.outcome, ResourceOutcome::Releasing);
        assert_eq!(ann(d.patch.as_ref().unwrap(), "phase"), "deprovisioning");
        let end = |p| decide_end(&policy(), &host().held(&a, p), &a, now()).outcome;
        assert_eq!(end(Phase::Deprovisioning), ResourceOutcome::Releasing);
        assert_eq!(end(Phase::Released), ResourceOutcome::AlreadyDone);
        // An END long after its reservation is still honoured.
        let mut late = a.clone();
        late.event_end = Some(at(1));
        assert_eq!(
            decide_end(&policy(), &held, &late, at(1_000_000)).outcome,
            ResourceOutcome::Releasing
        );
        // The end of a queued reservation cancels its queued start.
        let queued = held.with_pending(&b);
        let d = decide_end(&policy(), &queued, &b, now());
        assert_eq!(d.outcome, ResourceOutcome::Releasing);
        assert_eq!(
            ann(d.patch.as_ref().unwrap(), "pending-start"),
            &Value::Null
        );
    }

    #[test]
    fn a_start_without_a_usable_key_fails_at_once_and_never_gets_an_earlier_key() {
        for key in ["", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAACAQC..."] {
            let mut a = holder("101", "u1");
            a.ssh_public_key = key.into();
            let d = start(&host(), &a);
            assert_eq!(d.outcome, ResourceOutcome::Failed, "{key:?}");
            let p = d.patch.unwrap();
            assert_eq!(ann(&p, "phase"), "failed");
            assert_eq!(ann(&p, "ssh-public-key"), key);
            assert!(
                ann(&p, "detail")
                    .as_str()
                    .unwrap()
                    .contains("SSH public key")
            );
            // The reconciler tells the user; nothing is written to the spec.
            let mut failed = host().held(&a, Phase::Failed);
            failed.detail = d.detail.clone();
            assert_eq!(
                crate::plan::next_step(&policy(), &failed, now()),
                crate::plan::Step::Notify(Phase::Failed)
            );
            // Its END has nothing to undo: released at once, no second notification.
            failed.notified = Some(Phase::Failed);
            let d = decide_end(&policy(), &failed, &a, now());
            let p = d.patch.unwrap();
            assert_eq!(
                (ann(&p, "phase"), ann(&p, "notified")),
                (&json!("released"), &json!("released"))
            );
            assert_eq!(p["spec"]["consumerRef"], Value::Null);
        }
    }

    #[test]
    fn an_update_moves_the_end_of_the_held_or_queued_reservation_only_forward_in_time() {
        let k = keys();
        let a = holder("101", "u1");
        let mut update = a.clone();
        update.event_end = Some(at(9_000));
        update.updated_at = Some(at(50));
        let held = host().held(&a, Phase::Provisioned);
        let d = decide_update(&k, &held, &update);
        assert_eq!(d.outcome, ResourceOutcome::Updated);
        let p = d.patch.unwrap();
        assert_eq!(ann(&p, "event-end"), "1970-01-01T02:30:00Z");
        assert_eq!(ann(&p, "updated-at"), "1970-01-01T00:00:50Z");
        assert_eq!(p["metadata"]["resourceVersion"], "10");
        // An older update (re-sent by reservation-be after a later one) changes nothing.
        let mut applied = held.clone();
        applied.holder.as_mut().unwrap().updated_at = Some(at(60));
        let d = decide_update(&k, &applied, &update);
        assert_eq!((d.outcome, d.patch), (ResourceOutcome::AlreadyDone, None));
        // Another reservation's update, or an ended one: nothing.
        let other = holder("202", "u2");
        assert_eq!(decide_update(&k, &held, &other).patch, None);
        assert_eq!(
            decide_update(&k, &host().held(&a, Phase::Released), &update).patch,
            None
        );
        // A queued START follows too.
        let b = holder("202", "u2");
        let mut b_update = b.clone();
        b_update.event_end = Some(at(7_200));
        let queued = held.clone().with_pending(&b);
        let d = decide_update(&k, &queued, &b_update);
        assert_eq!(d.outcome, ResourceOutcome::Updated);
        assert!(
            ann(d.patch.as_ref().unwrap(), "pending-start")
                .as_str()
                .unwrap()
                .contains("1970-01-01T02:00:00Z")
        );
    }
}
