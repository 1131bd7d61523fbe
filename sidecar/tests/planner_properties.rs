//! The reservation state machine, property-tested: random interleavings of START and END
//! deliveries (duplicated, reordered, late), two replicas acting on stale copies of the host,
//! restarts, notification receiver outages, clock jumps, and a baremetal-operator model that
//! fails deployments and retries them as BMO does (`provisioningFailCount`, retry limit, errors
//! left on `available` hosts). The decisions are the real ones (`plan::decide_start`,
//! `decide_end`, `next_step`, `secret_action`, `claim_notification`); the API server is
//! modelled by JSON merge patches with resourceVersion preconditions.
//!
//! Invariants, checked after every action:
//! - a reservation takes the host only if its END was not received and its eventEnd has not
//!   passed (a START for an ended reservation never provisions);
//! - only the holder's own END starts a release;
//! - when Metal3 starts a deployment, the userData Secret is the current holder's, and the
//!   host's consumerRef names the holder;
//! - no notification is delivered twice (same reservation and outcome).
//!
//! And once everything has settled (receiver up, Metal3 working, time passed): every
//! reservation that held the host got exactly one `released` if its END released it (or, if
//! Metal3 did not finish that release in time, one `failed`), and exactly one of
//! `provisioned`/`failed` if it reached that outcome, even when its END came first; one ended
//! before reaching it got none; a reservation that never held the host got nothing. Nothing is lost across restarts: replicas keep no
//! state of their own.
//!
//! CI runs a bounded number of sequences (`PROPTEST_CASES`, default below, ~1 min); the long run is
//! `PROPTEST_CASES=100000 cargo test --release -p bmh-sidecar --test planner_properties`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bmh_sidecar::config::ImageConfig;
use bmh_sidecar::model::{AnnotationPatch, Host, Keys, Phase, Reservation};
use bmh_sidecar::plan::{
    ClaimCheck, ExistingSecret, Policy, SecretAction, Step, claim_notification, decide_end,
    decide_start, next_step, owed_satisfied, secret_action,
};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

const PREFIX: &str = "reservations.polito.it";
const IMAGE: &str = "http://img/ubuntu.qcow2";
const RETRY_LIMIT: i64 = 3;
const REPLICAS: usize = 2;
/// Seconds one round of delivery attempts may take in this model; the claim lasts 60 s.
const DELIVERY_ROUND: i64 = 40;
/// Sequences per CI run; `PROPTEST_CASES` overrides.
const CI_CASES: u32 = 700;

fn t0() -> Timestamp {
    "2026-11-30T12:00:00Z".parse().unwrap()
}

#[derive(Debug, Clone)]
struct Booking {
    event_id: &'static str,
    user: &'static str,
    end: Timestamp,
}

fn reservations() -> [Booking; 3] {
    [
        Booking {
            event_id: "A",
            user: "alice",
            end: t0() + SignedDuration::from_secs(3_000),
        },
        Booking {
            event_id: "B",
            user: "bob",
            end: t0() + SignedDuration::from_secs(6_000),
        },
        // Ends early in the run: its late STARTs must never provision.
        Booking {
            event_id: "C",
            user: "carol",
            end: t0() + SignedDuration::from_secs(400),
        },
    ]
}

impl Booking {
    fn holder(&self) -> Reservation {
        Reservation {
            event_id: self.event_id.into(),
            user_id: self.user.into(),
            username: self.user.into(),
            ssh_public_key: format!(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx9RIMklGKNChy25ZekbXY0Z7xeB8MBBmOwiz1ztNtk {}",
                self.user
            ),
            resource_id: 1,
            resource_name: "h".into(),
            event_end: Some(self.end),
            webhook_id: Some("5".into()),
            updated_at: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Action {
    Start {
        r: usize,
        replica: usize,
        cached: bool,
    },
    End {
        r: usize,
        replica: usize,
        cached: bool,
    },
    Reconcile {
        replica: usize,
    },
    Deliver {
        replica: usize,
    },
    Refresh {
        replica: usize,
    },
    Restart {
        replica: usize,
    },
    Operator {
        fail: bool,
    },
    Tick {
        secs: i64,
    },
    Sink {
        up: bool,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..3usize, 0..REPLICAS, any::<bool>()).prop_map(|(r, replica, cached)| Action::Start { r, replica, cached }),
        2 => (0..3usize, 0..REPLICAS, any::<bool>()).prop_map(|(r, replica, cached)| Action::End { r, replica, cached }),
        6 => (0..REPLICAS).prop_map(|replica| Action::Reconcile { replica }),
        4 => (0..REPLICAS).prop_map(|replica| Action::Deliver { replica }),
        3 => (0..REPLICAS).prop_map(|replica| Action::Refresh { replica }),
        1 => (0..REPLICAS).prop_map(|replica| Action::Restart { replica }),
        5 => any::<bool>().prop_map(|fail| Action::Operator { fail }),
        2 => (1..400i64).prop_map(|secs| Action::Tick { secs }),
        1 => any::<bool>().prop_map(|up| Action::Sink { up }),
    ]
}

/// The userData Secret as the model API server holds it.
#[derive(Debug, Clone, PartialEq)]
struct StoredSecret {
    written_for: String,
}

struct World {
    keys: Keys,
    policy: Policy,
    res: [Booking; 3],
    host: Value,
    rv: u64,
    secret: Option<StoredSecret>,
    now: Timestamp,
    caches: [Option<Value>; REPLICAS],
    /// A notification each replica has claimed and is sending, and when it claimed it.
    in_flight: [Option<(Host, Phase, Timestamp)>; REPLICAS],
    sink_up: bool,
    /// Delivered notifications: (eventId, outcome).
    notes: Vec<(String, Phase)>,
    /// Reservations whose `failed` notification reported a failed release.
    failed_release_notes: BTreeSet<String>,
    /// ENDs the sidecar has processed.
    ends_seen: BTreeSet<String>,
    /// Reservations that took the host at some point.
    held: BTreeSet<String>,
    /// Reservations whose END started their release.
    released_by_end: BTreeSet<String>,
    /// Reservations whose release Metal3 did not finish in time.
    release_failed: BTreeSet<String>,
    /// Reservations that reached `provisioned` or `failed` while holding the host.
    reached: BTreeSet<String>,
    log: Vec<String>,
}

fn annotations(host: &Value) -> BTreeMap<String, String> {
    host.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

impl World {
    fn new(stale_error: bool) -> Self {
        let mut status = json!({
            "provisioning": {"state": "available", "ID": "x"},
            "operationalStatus": "OK", "errorType": "", "errorMessage": "", "errorCount": 0,
            "poweredOn": false, "provisioningFailCount": 0
        });
        if stale_error {
            // An error an earlier attempt (outside any reservation) left on the host.
            status["operationalStatus"] = json!("error");
            status["errorType"] = json!("provisioning error");
            status["errorMessage"] = json!("provisioning failed 3 times, retry limit (3) reached");
            status["operationHistory"] = json!({"provision": {"start": "2026-11-30T10:00:00Z", "end": "2026-11-30T10:05:00Z"}});
        }
        World {
            keys: Keys::new(PREFIX),
            policy: Policy {
                keys: Keys::new(PREFIX),
                prefix: PREFIX.into(),
                image: ImageConfig {
                    url: IMAGE.into(),
                    checksum: Some("abc".into()),
                    checksum_type: None,
                    format: None,
                },
                deprovision_image: None,
                provision_timeout: Duration::from_secs(600),
                release_timeout: Duration::from_secs(600),
                resync: Duration::from_secs(30),
                release_cleaning: true,
                notify_enabled: true,
                release_grace: None,
            },
            res: reservations(),
            host: json!({
                "metadata": {"name": "h", "namespace": "ns", "uid": "u", "resourceVersion": "1",
                             "annotations": {}},
                "spec": {"online": false, "bmc": {"address": "ipmi://192.0.2.1"}},
                "status": status,
            }),
            rv: 1,
            secret: None,
            now: t0(),
            caches: [None, None],
            in_flight: [None, None],
            sink_up: true,
            notes: Vec::new(),
            failed_release_notes: BTreeSet::new(),
            ends_seen: BTreeSet::new(),
            held: BTreeSet::new(),
            released_by_end: BTreeSet::new(),
            release_failed: BTreeSet::new(),
            reached: BTreeSet::new(),
            log: Vec::new(),
        }
    }

    fn read(&self, host: &Value) -> Host {
        Host::read(
            &self.keys,
            "h",
            "ns",
            "u",
            host.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap(),
            &annotations(host),
            host,
        )
    }

    fn current(&self) -> Host {
        self.read(&self.host)
    }

    fn bump(&mut self) {
        self.rv += 1;
        self.host["metadata"]["resourceVersion"] = json!(self.rv.to_string());
    }

    /// A merge patch with the API server's optimistic concurrency: `false` on 409.
    fn apply(&mut self, patch: &Value) -> bool {
        let mut patch = patch.clone();
        if let Some(rv) = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if rv != self.rv.to_string() {
                return false;
            }
            patch["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("resourceVersion");
        }
        let before = self.current();
        json_patch::merge(&mut self.host, &patch);
        self.bump();
        self.observe(&before);
        true
    }

    /// Safety invariants about a change of the host.
    fn observe(&mut self, before: &Host) {
        let after = self.current();
        let (Some(h), Some(phase)) = (&after.holder, after.phase) else {
            return;
        };
        let took = phase == Phase::Provisioning
            && (before.phase != Some(Phase::Provisioning)
                || before.holder.as_ref().map(|b| &b.event_id) != Some(&h.event_id));
        if took {
            let r = self.res.iter().find(|r| r.event_id == h.event_id).unwrap();
            assert!(
                !self.ends_seen.contains(&h.event_id),
                "{} took the host after its END was received\n{:#?}",
                h.event_id,
                self.log
            );
            assert!(
                self.now < r.end,
                "{} took the host after its eventEnd\n{:#?}",
                h.event_id,
                self.log
            );
            self.held.insert(h.event_id.clone());
        }
        if phase == Phase::Deprovisioning && before.phase != Some(Phase::Deprovisioning) {
            assert!(
                self.ends_seen.contains(&h.event_id),
                "{}'s release started without its END\n{:#?}",
                h.event_id,
                self.log
            );
            self.released_by_end.insert(h.event_id.clone());
        }
        let entered = before.phase != Some(phase)
            || before.holder.as_ref().map(|b| &b.event_id) != Some(&h.event_id);
        if entered && phase == Phase::Failed && before.phase == Some(Phase::Deprovisioning) {
            self.release_failed.insert(h.event_id.clone());
        } else if entered && matches!(phase, Phase::Provisioned | Phase::Failed) {
            self.reached.insert(h.event_id.clone());
        }
        if matches!(
            phase,
            Phase::Provisioning | Phase::Provisioned | Phase::Deprovisioning | Phase::Failed
        ) {
            let consumer = after.spec.consumer_ref.as_ref().map(|c| c.name.as_str());
            assert_eq!(
                consumer,
                Some(h.event_id.as_str()),
                "consumerRef does not name the holder\n{:#?}",
                self.log
            );
        }
    }

    fn snapshot(&mut self, replica: usize, cached: bool) -> (Value, bool) {
        match (&self.caches[replica], cached) {
            (Some(c), true) => (c.clone(), false),
            _ => {
                self.caches[replica] = Some(self.host.clone());
                (self.host.clone(), true)
            }
        }
    }

    /// `POST /webhook` for one resource, as `webhook::handle_resource` does it.
    fn deliver(&mut self, r: usize, start: bool, replica: usize, cached: bool) {
        let req = self.res[r].holder();
        if !start {
            // Received: from here on the sidecar knows this reservation ended.
            self.ends_seen.insert(req.event_id.clone());
        }
        let (mut obj, mut fresh) = self.snapshot(replica, cached);
        for _ in 0..8 {
            let host = self.read(&obj);
            let d = if start {
                decide_start(&self.policy, &host, &req, self.now)
            } else {
                decide_end(&self.policy, &host, &req, self.now)
            };
            let done = match &d.patch {
                None => fresh,
                Some(p) => self.apply(p),
            };
            if done {
                self.log.push(format!(
                    "{} {} via {replica}: {:?} {}",
                    if start { "START" } else { "END" },
                    req.event_id,
                    d.outcome,
                    d.detail
                ));
                return;
            }
            obj = self.host.clone();
            fresh = true;
        }
        self.log.push("contended".into());
    }

    /// What `Kube::delete_secret` does for the holder of `host`.
    fn delete_secret(&mut self, host: &Host) {
        let ours = host.holder.as_ref().map(|h| h.event_id.as_str());
        if self.secret.as_ref().map(|s| s.written_for.as_str()) == ours {
            self.secret = None;
        }
    }

    /// One run of the reconciler of `replica` on its copy of the host.
    fn reconcile(&mut self, replica: usize) {
        let (obj, _) = self.snapshot(replica, true);
        let host = self.read(&obj);
        let step = next_step(&self.policy, &host, self.now);
        self.log.push(format!(
            "reconcile {replica} on rv {}: {step:?}",
            host.resource_version
        ));
        match step {
            Step::Idle | Step::Wait(_) => {}
            Step::Provision(patch) => {
                let holder = host.holder.as_ref().unwrap().event_id.clone();
                let existing = self.secret.as_ref().map(|s| ExistingSecret {
                    managed: true,
                    written_for: Some(s.written_for.clone()),
                    up_to_date: s.written_for == holder,
                });
                let write = match secret_action(&holder, existing.as_ref()) {
                    SecretAction::Repair => true,
                    SecretAction::Keep => false,
                    SecretAction::CreateIfCurrent | SecretAction::OverwriteIfCurrent => {
                        if self.rv.to_string() != host.resource_version {
                            return;
                        }
                        true
                    }
                    SecretAction::Foreign => unreachable!("no foreign Secrets in this model"),
                };
                if write {
                    self.secret = Some(StoredSecret {
                        written_for: holder,
                    });
                }
                self.apply(&patch);
            }
            Step::Release(patch) | Step::Stop(patch) => {
                if self.apply(&patch) {
                    self.delete_secret(&host);
                }
            }
            Step::FinishRelease(t) => {
                self.delete_secret(&host);
                self.apply(&t.patch);
            }
            Step::Transition(t) => {
                self.apply(&t.patch);
            }
            Step::Notify(phase) => {
                let me = format!("replica-{replica}");
                match claim_notification(&self.keys, &host, &me, Duration::from_secs(60), self.now)
                {
                    ClaimCheck::Wait(_) => {}
                    ClaimCheck::Take(claim) => {
                        // Claimed: the POST is now in flight (delivered by a `Deliver` action,
                        // lost if the replica restarts first).
                        if self.apply(&claim) {
                            self.in_flight[replica] = Some((host.clone(), phase, self.now));
                        }
                    }
                }
            }
        }
    }

    /// The in-flight notification of `replica` reaches the receiver (if it is up), then is
    /// recorded as the reconciler does (`notified`/owed cleared, and `owed_satisfied`).
    fn deliver_notification(&mut self, replica: usize) {
        let Some((host, phase, claimed)) = self.in_flight[replica].take() else {
            return;
        };
        // A round of attempts ends within its worst case, shorter than the claim (see
        // `notify::worst_case_round` and `reconcile::claim_ttl`): later, it has given up.
        if !self.sink_up || self.now.as_second() - claimed.as_second() > DELIVERY_ROUND {
            return;
        }
        let event = host.holder.as_ref().unwrap().event_id.clone();
        assert!(
            !self.notes.contains(&(event.clone(), phase)),
            "{event} notified {phase} twice\n{:#?}",
            self.log
        );
        let detail = match &host.owed {
            Some(o) if o.outcome == phase => o.detail.as_str(),
            _ => host.detail.as_str(),
        };
        if phase == Phase::Failed && detail.starts_with("not released") {
            self.failed_release_notes.insert(event.clone());
        }
        self.log
            .push(format!("delivered {event} {phase} via {replica}"));
        self.notes.push((event.clone(), phase));
        let owed = host.owed.as_ref().is_some_and(|o| o.outcome == phase);
        let recorded = AnnotationPatch::unconditional(&self.keys).claim(None);
        let recorded = if owed {
            recorded.owed(None)
        } else {
            recorded.notified(Some(phase))
        }
        .build();
        self.apply(&recorded);
        if let Some(clear) = owed_satisfied(&self.keys, &self.current(), phase, &event) {
            self.apply(&clear);
        }
    }

    fn status(&self, path: &str) -> &Value {
        self.host
            .pointer(&format!("/status/{path}"))
            .unwrap_or(&Value::Null)
    }

    /// One step of the baremetal-operator model (`host_state_machine.go`: handleAvailable,
    /// handleProvisioning, handleProvisioned, handleDeprovisioning).
    fn operator(&mut self, fail: bool) {
        let state = self
            .status("provisioning/state")
            .as_str()
            .unwrap_or("")
            .to_owned();
        let image = self
            .host
            .pointer("/spec/image")
            .cloned()
            .filter(|i| !i.is_null());
        let online = self.host["spec"]["online"].as_bool().unwrap_or(false);
        let fails = self.status("provisioningFailCount").as_i64().unwrap_or(0);
        let st = &mut self.host["status"];
        let clear_error = |st: &mut Value| {
            st["operationalStatus"] = json!("OK");
            st["errorType"] = json!("");
            st["errorMessage"] = json!("");
        };
        match state.as_str() {
            "available" => match (&image, online) {
                (Some(img), true) => {
                    let fails = if st.get("lastAttemptedImage") == Some(img) {
                        fails
                    } else {
                        0
                    };
                    st["provisioningFailCount"] = json!(fails);
                    if fails >= RETRY_LIMIT {
                        st["operationalStatus"] = json!("error");
                        st["errorType"] = json!("provisioning error");
                        st["errorMessage"] = json!(format!(
                            "provisioning failed {fails} times, retry limit ({RETRY_LIMIT}) reached"
                        ));
                    } else {
                        clear_error(st);
                        st["provisioning"]["state"] = json!("provisioning");
                        st["lastAttemptedImage"] = img.clone();
                        let start = Timestamp::from_second(self.now.as_second()).unwrap();
                        st["operationHistory"] = json!({"provision": {"start": start.to_string()}});
                        let holder = self.current().holder.map(|h| h.event_id);
                        let secret = self.secret.as_ref().map(|s| s.written_for.clone());
                        assert!(
                            secret.is_some() && secret == holder,
                            "Metal3 deploys the Secret of {secret:?} while {holder:?} holds the host\n{:#?}",
                            self.log
                        );
                    }
                }
                _ => {
                    if image.is_none() && fails > 0 {
                        st["provisioningFailCount"] = json!(0);
                        st["lastAttemptedImage"] = Value::Null;
                    }
                    st["poweredOn"] = json!(online);
                }
            },
            "provisioning" => {
                if image.as_ref().and_then(|i| i.get("url"))
                    != st.pointer("/lastAttemptedImage/url")
                {
                    st["provisioning"]["state"] = json!("deprovisioning");
                } else if st["errorType"].as_str().is_some_and(|e| !e.is_empty()) {
                    st["provisioningFailCount"] = json!(fails + 1);
                    st["provisioning"]["state"] = json!("deprovisioning");
                } else if fail {
                    st["operationalStatus"] = json!("error");
                    st["errorType"] = json!("provisioning error");
                    st["errorMessage"] = json!("deploy failed");
                } else {
                    st["provisioning"]["state"] = json!("provisioned");
                    st["provisioning"]["image"] = image.clone().unwrap_or(Value::Null);
                    st["provisioningFailCount"] = json!(0);
                    st["poweredOn"] = json!(true);
                    clear_error(st);
                }
            }
            "provisioned" => {
                if image.as_ref().and_then(|i| i.get("url"))
                    != st.pointer("/provisioning/image/url")
                {
                    st["provisioning"]["state"] = json!("deprovisioning");
                } else {
                    st["poweredOn"] = json!(online);
                }
            }
            "deprovisioning" => {
                st["provisioning"]["state"] = json!("available");
                st["provisioning"]["image"] = Value::Null;
                st["poweredOn"] = json!(false);
                clear_error(st);
            }
            _ => {}
        }
        let before = self.current();
        self.bump();
        self.observe(&before);
        self.log.push(format!(
            "operator: {state} -> {}",
            self.status("provisioning/state")
        ));
    }

    fn run(&mut self, a: &Action) {
        match *a {
            Action::Start { r, replica, cached } => self.deliver(r, true, replica, cached),
            Action::End { r, replica, cached } => self.deliver(r, false, replica, cached),
            Action::Reconcile { replica } => self.reconcile(replica),
            Action::Deliver { replica } => self.deliver_notification(replica),
            Action::Refresh { replica } => self.caches[replica] = Some(self.host.clone()),
            Action::Restart { replica } => {
                self.log.push(format!("restart {replica}"));
                self.caches[replica] = None;
                self.in_flight[replica] = None;
            }
            Action::Operator { fail } => self.operator(fail),
            Action::Tick { secs } => self.now += SignedDuration::from_secs(secs),
            Action::Sink { up } => self.sink_up = up,
        }
    }

    /// Receiver up, Metal3 working, replicas current, time passing: everything finishes.
    fn settle(&mut self) {
        self.sink_up = true;
        self.log.push("-- settle --".into());
        for _ in 0..80 {
            for replica in 0..REPLICAS {
                self.caches[replica] = Some(self.host.clone());
                self.reconcile(replica);
                self.deliver_notification(replica);
            }
            self.operator(false);
            self.now += SignedDuration::from_secs(20);
        }
    }

    fn count(&self, event: &str, phases: &[Phase]) -> usize {
        self.notes
            .iter()
            .filter(|(e, p)| e == event && phases.contains(p))
            .count()
    }

    fn check_settled(&self) {
        let holder = self.current().holder.map(|h| h.event_id);
        for event in &self.held {
            // The provisioning's outcome: `provisioned`, or a `failed` that is not a release's.
            let outcome = self.count(event, &[Phase::Provisioned, Phase::Failed])
                - usize::from(self.failed_release_notes.contains(event));
            // Exactly one for a reservation that reached its outcome, even when its END came
            // before the notification could be delivered; none for one ended before that.
            let want = usize::from(self.reached.contains(event));
            assert_eq!(
                outcome, want,
                "{event}: provisioned/failed notifications\n{:#?}",
                self.log
            );
            if self.released_by_end.contains(event) {
                // One `released`; or, when Metal3 did not finish the release in time, the
                // reservation's one `failed` (at most one per reservation and outcome).
                let released = self.count(event, &[Phase::Released]);
                let failed = self.count(event, &[Phase::Failed]);
                assert!(
                    released == 1 || (self.release_failed.contains(event) && failed == 1),
                    "{event} was released by its END: {released} released, {failed} failed\n{:#?}",
                    self.log
                );
            } else {
                assert!(
                    self.reached.contains(event),
                    "{event} still holds the host without an outcome\n{:#?}",
                    self.log
                );
            }
        }
        for (event, _) in &self.notes {
            assert!(
                self.held.contains(event),
                "{event} never held the host but was notified\n{:#?}",
                self.log
            );
        }
        // Nothing is left half done.
        let host = self.current();
        match host.phase {
            Some(Phase::Released) | None => {
                assert!(host.spec.image_url.is_none(), "{:#?}", self.log);
                assert!(
                    self.secret.is_none(),
                    "a Secret outlived its reservation\n{:#?}",
                    self.log
                );
            }
            Some(Phase::Provisioned) => {
                assert_eq!(
                    self.secret.as_ref().map(|s| &s.written_for),
                    holder.as_ref()
                );
            }
            Some(Phase::Failed) => {
                assert!(
                    host.spec.image_url.is_none(),
                    "a failed host keeps its image\n{:#?}",
                    self.log
                );
            }
            Some(p) => panic!("not settled: {p}\n{:#?}", self.log),
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_CASES)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 4_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn reservations_never_overlap_end_early_or_lose_a_notification(
        actions in proptest::collection::vec(action(), 1..80),
        stale_error in any::<bool>(),
    ) {
        let mut w = World::new(stale_error);
        for a in &actions {
            w.log.push(format!("{a:?}"));
            w.run(a);
        }
        w.settle();
        w.check_settled();
    }
}
