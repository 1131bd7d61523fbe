//! Pure decisions: what a webhook delivery does to a host ([`decide_start`], [`decide_end`]),
//! what the reconciler does next for a host ([`next_step`]), and the BMH spec patches.
//!
//! Every function here takes a [`Host`] snapshot and returns a plan; the I/O modules carry the
//! plan out with the snapshot's resourceVersion as precondition, so a plan made on a stale
//! snapshot fails with 409 and is made again.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Config, ImageConfig};
use crate::model::{AnnotationPatch, Claim, Holder, Host, Keys, Phase};

/// Per-resource outcome reported in the 202 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The start is being carried out (or queued until the host is released).
    Provisioning,
    /// The end is being carried out.
    Releasing,
    /// Not a BareMetalHost resource type.
    Skipped,
    /// The host is held by another reservation; nothing changed.
    Conflict,
    /// No BMH maps to the resource.
    NotFound,
    /// A repeated delivery: the work was already done.
    AlreadyDone,
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
        }
    }
}

/// What a delivery does to one host.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to write: answer with this outcome.
    Answer(Outcome, String),
    /// Write this merge patch (with resourceVersion precondition), then answer.
    Patch(Outcome, String, Value),
}

/// EVENT_START of reservation `req` on `host`.
pub fn decide_start(
    keys: &Keys,
    host: &Host,
    req: &Holder,
    notify_enabled: bool,
    now: Timestamp,
) -> Decision {
    let rv = &host.resource_version;
    let take = |detail: &str| {
        Decision::Patch(
            Outcome::Provisioning,
            detail.to_owned(),
            AnnotationPatch::on(keys, rv)
                .holder(req)
                .phase(Phase::Provisioning, now, "")
                .notified(None)
                .pending(None)
                .build(),
        )
    };
    let queue = || match &host.pending {
        None => Decision::Patch(
            Outcome::Provisioning,
            "queued: the host is released from an earlier reservation first".into(),
            AnnotationPatch::on(keys, rv).pending(Some(req)).build(),
        ),
        Some(p) if p.same_reservation(req) => Decision::Answer(
            Outcome::Provisioning,
            "queued: the host is released from an earlier reservation first".into(),
        ),
        Some(p) => Decision::Answer(
            Outcome::Conflict,
            format!(
                "another reservation (event {}) is already waiting for this host",
                p.event_id
            ),
        ),
    };
    let (Some(holder), Some(phase)) = (&host.holder, host.phase) else {
        if host.spec_image_url.is_some() || host.consumer_ref {
            return Decision::Answer(
                Outcome::Conflict,
                "host is in use outside the reservation system (spec.image or consumerRef set)"
                    .into(),
            );
        }
        return take("provisioning started");
    };
    if holder.event_id == req.event_id {
        if holder.user_id != req.user_id {
            return Decision::Answer(
                Outcome::Conflict,
                "this event id holds the host for another user".into(),
            );
        }
        return match phase {
            Phase::Provisioning => {
                Decision::Answer(Outcome::Provisioning, "provisioning in progress".into())
            }
            Phase::Provisioned => Decision::Answer(Outcome::AlreadyDone, "provisioned".into()),
            Phase::Failed => Decision::Answer(
                Outcome::AlreadyDone,
                format!("provisioning failed: {}", host.detail),
            ),
            Phase::Deprovisioning | Phase::Released => Decision::Answer(
                Outcome::AlreadyDone,
                "this reservation has already ended".into(),
            ),
        };
    }
    match phase {
        Phase::Released => {
            let released_notified = !notify_enabled || host.notified == Some(Phase::Released);
            match &host.pending {
                None if released_notified => take("provisioning started"),
                Some(p) if p.same_reservation(req) && released_notified => {
                    take("provisioning started")
                }
                _ => queue(),
            }
        }
        Phase::Provisioning | Phase::Provisioned | Phase::Deprovisioning | Phase::Failed => queue(),
    }
}

/// EVENT_END of reservation `req` on `host`.
pub fn decide_end(keys: &Keys, host: &Host, req: &Holder, now: Timestamp) -> Decision {
    let rv = &host.resource_version;
    if let (Some(holder), Some(phase)) = (&host.holder, host.phase)
        && holder.event_id == req.event_id
    {
        if holder.user_id != req.user_id {
            return Decision::Answer(
                Outcome::Conflict,
                "this event id holds the host for another user".into(),
            );
        }
        return match phase {
            Phase::Provisioning | Phase::Provisioned | Phase::Failed => Decision::Patch(
                Outcome::Releasing,
                "release started".into(),
                AnnotationPatch::on(keys, rv)
                    .phase(Phase::Deprovisioning, now, "")
                    .build(),
            ),
            Phase::Deprovisioning => {
                Decision::Answer(Outcome::Releasing, "release in progress".into())
            }
            Phase::Released => Decision::Answer(Outcome::AlreadyDone, "released".into()),
        };
    }
    if host
        .pending
        .as_ref()
        .is_some_and(|p| p.same_reservation(req))
    {
        return Decision::Patch(
            Outcome::Releasing,
            "the queued start of this reservation was cancelled".into(),
            AnnotationPatch::on(keys, rv).pending(None).build(),
        );
    }
    Decision::Answer(
        Outcome::Conflict,
        "the host is not held by this reservation; nothing changed".into(),
    )
}

/// The next thing the reconciler does for a host.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Write the userData Secret, then this spec patch (with precondition).
    Provision(Value),
    /// Write this spec patch (with precondition), then delete the Secret.
    Release(Value),
    /// Delete the Secret, then write this annotation patch (phase change, with precondition).
    FinishRelease(Value),
    /// Enter this phase: write this annotation patch (with precondition).
    Transition(Phase, Value),
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

/// The spec patch that provisions `host` for its holder.
pub fn provision_patch(cfg: &Config, host: &Host) -> Value {
    json!({
        "metadata": { "resourceVersion": host.resource_version },
        "spec": {
            "image": image_value(&cfg.image),
            "userData": { "name": host.secret_name(), "namespace": host.namespace },
            "online": true,
        }
    })
}

/// The spec patch that releases `host`: image and userData removed, or the deprovision image.
pub fn release_patch(cfg: &Config, host: &Host) -> Value {
    let image = cfg
        .deprovision_image
        .as_ref()
        .map(image_value)
        .unwrap_or(Value::Null);
    json!({
        "metadata": { "resourceVersion": host.resource_version },
        "spec": { "image": image, "userData": null }
    })
}

fn elapsed(host: &Host, now: Timestamp) -> Duration {
    host.phase_since
        .and_then(|t| now.duration_since(t).try_into().ok())
        .unwrap_or(Duration::ZERO)
}

/// What the reconciler does next for `host`.
pub fn next_step(
    cfg: &Config,
    keys: &Keys,
    host: &Host,
    notify_enabled: bool,
    now: Timestamp,
) -> Step {
    let Some(phase) = host.phase else {
        return Step::Idle;
    };
    let rv = &host.resource_version;
    let enter = |to: Phase, detail: &str| {
        Step::Transition(
            to,
            AnnotationPatch::on(keys, rv).phase(to, now, detail).build(),
        )
    };
    let fail = |detail: String| enter(Phase::Failed, &detail);
    // Fails once `timeout` has passed since the phase began; else looks again at the next
    // resync or when the timeout falls due, whichever comes first.
    let wait_or_fail = |timeout: Duration, goal: &str| {
        let elapsed = elapsed(host, now);
        if elapsed >= timeout {
            return fail(format!(
                "not {goal} within {}s (state: {:?})",
                timeout.as_secs(),
                host.state
            ));
        }
        Step::Wait(
            cfg.resync
                .min(timeout.saturating_sub(elapsed))
                .max(Duration::from_millis(200)),
        )
    };
    match phase {
        Phase::Provisioning => {
            let spec_done = host.spec_image_url.as_deref() == Some(cfg.image.url.as_str())
                && host.spec_user_data.as_deref() == Some(host.secret_name().as_str())
                && host.spec_online;
            if !spec_done {
                return Step::Provision(provision_patch(cfg, host));
            }
            if host.operator_error() {
                return fail(format!("Metal3 reported an error: {}", host.error));
            }
            // The operator reports the image it provisioned; when it does, it must be ours
            // (a host re-provisioned from another image still shows the old `provisioned`).
            let ours = host
                .status_image_url
                .as_deref()
                .is_none_or(|u| u == cfg.image.url);
            if host.state == "provisioned" && ours {
                return enter(Phase::Provisioned, "");
            }
            wait_or_fail(cfg.provision_timeout, "provisioned")
        }
        Phase::Deprovisioning => {
            let spec_done = match &cfg.deprovision_image {
                None => host.spec_image_url.is_none() && host.spec_user_data.is_none(),
                Some(img) => {
                    host.spec_image_url.as_deref() == Some(img.url.as_str())
                        && host.spec_user_data.is_none()
                }
            };
            if !spec_done {
                return Step::Release(release_patch(cfg, host));
            }
            // No fail-fast on `operationalStatus: error` here: the error a failed provisioning
            // left behind stays on the host while Metal3 deprovisions it. The timeout decides.
            let done = match &cfg.deprovision_image {
                None => host.is_available(),
                Some(img) => {
                    host.state == "provisioned"
                        && host.status_image_url.as_deref() == Some(img.url.as_str())
                }
            };
            if done {
                return Step::FinishRelease(
                    AnnotationPatch::on(keys, rv)
                        .phase(Phase::Released, now, "")
                        .build(),
                );
            }
            wait_or_fail(cfg.release_timeout, "released")
        }
        Phase::Provisioned | Phase::Failed | Phase::Released => {
            if notify_enabled && host.notified != Some(phase) {
                return Step::Notify(phase);
            }
            match (&host.pending, phase) {
                (Some(p), Phase::Released) => Step::Transition(
                    Phase::Provisioning,
                    AnnotationPatch::on(keys, rv)
                        .holder(p)
                        .phase(Phase::Provisioning, now, "started from the queue")
                        .notified(None)
                        .pending(None)
                        .build(),
                ),
                _ => Step::Idle,
            }
        }
    }
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

    fn cfg() -> Config {
        let mut c = Config::defaults().unwrap();
        c.image.url = "http://img/ubuntu.qcow2".into();
        c.image.checksum = Some("http://img/ubuntu.qcow2.sha256".into());
        c.image.checksum_type = Some("sha256".into());
        c.image.format = Some("qcow2".into());
        c.provision_timeout = Duration::from_secs(100);
        c.release_timeout = Duration::from_secs(100);
        c.resync = Duration::from_secs(30);
        c
    }

    fn now() -> Timestamp {
        Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(10)
    }

    fn outcome(d: &Decision) -> Outcome {
        match d {
            Decision::Answer(o, _) | Decision::Patch(o, _, _) => *o,
        }
    }

    #[test]
    fn dns1123_names() {
        assert_eq!(dns1123("Lab Server A1"), "lab-server-a1");
        assert_eq!(dns1123("  GPU_node #3 "), "gpu-node-3");
        assert_eq!(dns1123("a--b"), "a-b");
        assert_eq!(dns1123("---"), "");
    }

    #[test]
    fn start_on_a_free_host_takes_it() {
        let k = keys();
        let h = holder("101", "u1");
        let d = decide_start(&k, &host(), &h, true, now());
        let Decision::Patch(Outcome::Provisioning, _, p) = d else {
            panic!("{d:?}")
        };
        let a = &p["metadata"]["annotations"];
        assert_eq!(p["metadata"]["resourceVersion"], "10");
        assert_eq!(a["reservations.polito.it/event-id"], "101");
        assert_eq!(a["reservations.polito.it/phase"], "provisioning");
        assert_eq!(a["reservations.polito.it/pending-start"], Value::Null);
    }

    #[test]
    fn repeated_start_changes_nothing() {
        let k = keys();
        let h = holder("101", "u1");
        for (phase, want) in [
            (Phase::Provisioning, Outcome::Provisioning),
            (Phase::Provisioned, Outcome::AlreadyDone),
            (Phase::Failed, Outcome::AlreadyDone),
            (Phase::Released, Outcome::AlreadyDone),
        ] {
            let d = decide_start(&k, &host().held(&h, phase), &h, true, now());
            assert!(
                matches!(d, Decision::Answer(o, _) if o == want),
                "{phase}: {d:?}"
            );
        }
    }

    #[test]
    fn start_on_a_held_host_is_queued_once() {
        let k = keys();
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        let c = holder("303", "u3");
        let held = host().held(&a, Phase::Provisioned);
        let d = decide_start(&k, &held, &b, true, now());
        let Decision::Patch(Outcome::Provisioning, _, p) = d else {
            panic!("{d:?}")
        };
        assert!(
            p["metadata"]["annotations"]["reservations.polito.it/pending-start"]
                .as_str()
                .unwrap()
                .contains("\"eventId\":\"202\"")
        );
        let queued = held.clone().with_pending(&b);
        assert_eq!(
            decide_start(&k, &queued, &b, true, now()),
            Decision::Answer(
                Outcome::Provisioning,
                "queued: the host is released from an earlier reservation first".into()
            )
        );
        assert_eq!(
            outcome(&decide_start(&k, &queued, &c, true, now())),
            Outcome::Conflict
        );
    }

    #[test]
    fn start_on_a_released_host_waits_for_the_release_notification() {
        let k = keys();
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        let mut released = host().held(&a, Phase::Released);
        assert!(matches!(
            decide_start(&k, &released, &b, true, now()),
            Decision::Patch(Outcome::Provisioning, ref d, _) if d.starts_with("queued")
        ));
        assert!(matches!(
            decide_start(&k, &released, &b, false, now()),
            Decision::Patch(Outcome::Provisioning, ref d, _) if d == "provisioning started"
        ));
        released.notified = Some(Phase::Released);
        assert!(matches!(
            decide_start(&k, &released, &b, true, now()),
            Decision::Patch(Outcome::Provisioning, ref d, _) if d == "provisioning started"
        ));
    }

    #[test]
    fn start_on_a_host_used_outside_is_a_conflict() {
        let mut h = host();
        h.spec_image_url = Some("http://other".into());
        assert_eq!(
            outcome(&decide_start(&keys(), &h, &holder("1", "u"), true, now())),
            Outcome::Conflict
        );
    }

    #[test]
    fn end_only_from_the_holder() {
        let k = keys();
        let a = holder("101", "u1");
        let b = holder("202", "u2");
        let held = host().held(&a, Phase::Provisioned);
        assert_eq!(
            outcome(&decide_end(&k, &held, &b, now())),
            Outcome::Conflict
        );
        assert_eq!(
            outcome(&decide_end(&k, &host(), &b, now())),
            Outcome::Conflict
        );
        let mut wrong_user = a.clone();
        wrong_user.user_id = "mallory".into();
        assert_eq!(
            outcome(&decide_end(&k, &held, &wrong_user, now())),
            Outcome::Conflict
        );
        let Decision::Patch(Outcome::Releasing, _, p) = decide_end(&k, &held, &a, now()) else {
            panic!()
        };
        assert_eq!(
            p["metadata"]["annotations"]["reservations.polito.it/phase"],
            "deprovisioning"
        );
        assert_eq!(
            outcome(&decide_end(
                &k,
                &host().held(&a, Phase::Deprovisioning),
                &a,
                now()
            )),
            Outcome::Releasing
        );
        assert_eq!(
            outcome(&decide_end(
                &k,
                &host().held(&a, Phase::Released),
                &a,
                now()
            )),
            Outcome::AlreadyDone
        );
        // The end of a queued reservation cancels its queued start.
        let queued = held.with_pending(&b);
        let Decision::Patch(Outcome::Releasing, _, p) = decide_end(&k, &queued, &b, now()) else {
            panic!()
        };
        assert_eq!(
            p["metadata"]["annotations"]["reservations.polito.it/pending-start"],
            Value::Null
        );
    }

    #[test]
    fn provisioning_steps() {
        let c = cfg();
        let k = keys();
        let a = holder("101", "u1");
        let mut h = host().held(&a, Phase::Provisioning);
        let Step::Provision(p) = next_step(&c, &k, &h, true, now()) else {
            panic!()
        };
        assert_eq!(
            p,
            json!({
                "metadata": {"resourceVersion": "10"},
                "spec": {
                    "image": {"url": "http://img/ubuntu.qcow2", "checksum": "http://img/ubuntu.qcow2.sha256",
                              "checksumType": "sha256", "format": "qcow2"},
                    "userData": {"name": "lab-server-a1-userdata", "namespace": "ns"},
                    "online": true
                }
            })
        );
        h.spec_image_url = Some(c.image.url.clone());
        h.spec_user_data = Some("lab-server-a1-userdata".into());
        h.spec_online = true;
        assert_eq!(
            next_step(&c, &k, &h, true, now()),
            Step::Wait(Duration::from_secs(30))
        );
        h.state = "provisioned".into();
        let Step::Transition(_, p) = next_step(&c, &k, &h, true, now()) else {
            panic!()
        };
        assert_eq!(
            p["metadata"]["annotations"]["reservations.polito.it/phase"],
            "provisioned"
        );
        // A provisioned status that names another image is not ours yet.
        h.status_image_url = Some("http://img/other".into());
        assert!(matches!(next_step(&c, &k, &h, true, now()), Step::Wait(_)));
        h.state = "provisioning".into();
        h.operational_status = "error".into();
        h.error = "provisioning error: boom".into();
        let Step::Transition(_, p) = next_step(&c, &k, &h, true, now()) else {
            panic!()
        };
        assert_eq!(
            p["metadata"]["annotations"]["reservations.polito.it/phase"],
            "failed"
        );
        assert_eq!(
            p["metadata"]["annotations"]["reservations.polito.it/detail"],
            "Metal3 reported an error: provisioning error: boom"
        );
    }

    #[test]
    fn provisioning_times_out() {
        let c = cfg();
        let k = keys();
        let mut h = host().held(&holder("1", "u"), Phase::Provisioning);
        h.spec_image_url = Some(c.image.url.clone());
        h.spec_user_data = Some(h.secret_name());
        h.spec_online = true;
        let late = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(95);
        assert_eq!(
            next_step(&c, &k, &h, true, late),
            Step::Wait(Duration::from_secs(5))
        );
        let later = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(100);
        let Step::Transition(_, p) = next_step(&c, &k, &h, true, later) else {
            panic!()
        };
        assert!(
            p["metadata"]["annotations"]["reservations.polito.it/detail"]
                .as_str()
                .unwrap()
                .starts_with("not provisioned within 100s")
        );
    }

    #[test]
    fn release_steps() {
        let c = cfg();
        let k = keys();
        let mut h = host()
            .held(&holder("1", "u"), Phase::Deprovisioning)
            .with_state("provisioned");
        h.spec_image_url = Some(c.image.url.clone());
        h.spec_user_data = Some(h.secret_name());
        let Step::Release(p) = next_step(&c, &k, &h, true, now()) else {
            panic!()
        };
        assert_eq!(
            p,
            json!({"metadata": {"resourceVersion": "10"}, "spec": {"image": null, "userData": null}})
        );
        h.spec_image_url = None;
        h.spec_user_data = None;
        assert!(matches!(next_step(&c, &k, &h, true, now()), Step::Wait(_)));
        h.state = "available".into();
        let Step::FinishRelease(p) = next_step(&c, &k, &h, true, now()) else {
            panic!()
        };
        assert_eq!(
            p["metadata"]["annotations"]["reservations.polito.it/phase"],
            "released"
        );
    }

    #[test]
    fn deprovision_image_is_provisioned_when_configured() {
        let mut c = cfg();
        c.deprovision_image = Some(ImageConfig {
            url: "http://img/wipe.iso".into(),
            checksum: None,
            checksum_type: None,
            format: Some("live-iso".into()),
        });
        let h = host()
            .held(&holder("1", "u"), Phase::Deprovisioning)
            .with_state("provisioned");
        let Step::Release(p) = next_step(&c, &keys(), &h, true, now()) else {
            panic!()
        };
        assert_eq!(
            p["spec"]["image"],
            json!({"url": "http://img/wipe.iso", "checksum": null, "checksumType": null, "format": "live-iso"})
        );
        assert_eq!(p["spec"]["userData"], Value::Null);
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
        let v = p["metadata"]["annotations"]["reservations.polito.it/notify-claim"]
            .as_str()
            .unwrap();
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
        let expired = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(70);
        assert!(matches!(
            claim_notification(&k, &h, "b", ttl, expired),
            ClaimCheck::Take(_)
        ));
    }

    #[test]
    fn notify_then_take_the_queued_start() {
        let c = cfg();
        let k = keys();
        let b = holder("202", "u2");
        let mut h = host()
            .held(&holder("1", "u"), Phase::Released)
            .with_pending(&b);
        assert_eq!(
            next_step(&c, &k, &h, true, now()),
            Step::Notify(Phase::Released)
        );
        h.notified = Some(Phase::Released);
        let Step::Transition(_, p) = next_step(&c, &k, &h, true, now()) else {
            panic!()
        };
        let a = &p["metadata"]["annotations"];
        assert_eq!(a["reservations.polito.it/event-id"], "202");
        assert_eq!(a["reservations.polito.it/phase"], "provisioning");
        assert_eq!(a["reservations.polito.it/notified"], Value::Null);
        assert_eq!(a["reservations.polito.it/pending-start"], Value::Null);
        // Without a notification URL nothing waits for delivery.
        h.notified = None;
        assert!(matches!(
            next_step(&c, &k, &h, false, now()),
            Step::Transition(..)
        ));
        let failed = host()
            .held(&holder("1", "u"), Phase::Failed)
            .with_pending(&b);
        assert_eq!(
            next_step(&c, &k, &failed, true, now()),
            Step::Notify(Phase::Failed)
        );
        assert_eq!(next_step(&c, &k, &failed, false, now()), Step::Idle);
        assert_eq!(next_step(&c, &k, &host(), true, now()), Step::Idle);
    }
}
