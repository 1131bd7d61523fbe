//! What the sidecar reads from a BareMetalHost: its own annotations (the reservation that holds
//! the host, the phase, the pending start, the delivered notification, the reservations that
//! ended) and the Metal3 fields its decisions need (spec and status, as the baremetal-operator
//! writes them).
//!
//! Pure: no I/O. Both the webhook planner and the reconciler start from a [`Host`].

use std::fmt;

use serde::{Deserialize, Serialize};

mod host;
mod lookup;
mod patch;

pub use host::{Claim, ConsumerRef, Host, Owed, RESERVATION_KIND, Reservation, Spec, Status};
pub use lookup::{HostLookup, dns1123, secret_name};
pub use patch::{AnnotationPatch, with_ended};

/// Metal3's annotation that stops the baremetal-operator from reconciling a host.
pub const PAUSED_ANNOTATION: &str = "baremetalhost.metal3.io/paused";
/// Metal3's annotation that detaches a host from its provisioner.
pub const DETACHED_ANNOTATION: &str = "baremetalhost.metal3.io/detached";
/// Metal3's `errorType` for a failed deployment (and for the retry limit).
pub const PROVISIONING_ERROR: &str = "provisioning error";
/// Most reservations whose END was seen that one host remembers (they are forgotten anyway
/// once their `eventEnd` has passed, when the eventEnd rule alone refuses a late START).
pub const MAX_ENDED: usize = 64;

/// Names of the sidecar's annotations, all under one prefix (`ANNOTATION_PREFIX`).
#[derive(Debug, Clone)]
pub struct Keys {
    /// `<prefix>/event-id`: the reservation (eventId) holding the host.
    pub event_id: String,
    /// `<prefix>/user-id`: the holder's user id.
    pub user_id: String,
    /// `<prefix>/username`: the holder's username (the account cloud-init creates).
    pub username: String,
    /// `<prefix>/ssh-public-key`: the holder's key, so any replica can (re)write the Secret.
    pub ssh_public_key: String,
    /// `<prefix>/resource-id`: the reservation system's resourceId, echoed in notifications.
    pub resource_id: String,
    /// `<prefix>/resource-name`: the reservation system's resourceName.
    pub resource_name: String,
    /// `<prefix>/event-end`: the holder's `eventEnd` (RFC 3339), moved by EVENT_UPDATED.
    pub event_end: String,
    /// `<prefix>/webhook-id`: reservation-be's webhook id the START came through.
    pub webhook_id: String,
    /// `<prefix>/updated-at`: `updatedAt` of the latest EVENT_UPDATED applied (RFC 3339).
    pub updated_at: String,
    /// `<prefix>/phase`: provisioning, provisioned, deprovisioning, released or failed.
    pub phase: String,
    /// `<prefix>/phase-since`: RFC 3339 time the phase began (timeouts count from here).
    pub phase_since: String,
    /// `<prefix>/detail`: why the phase was entered (the failure reason for `failed`).
    pub detail: String,
    /// `<prefix>/notified`: the phase whose notification was delivered.
    pub notified: String,
    /// `<prefix>/pending-start`: JSON of a start that waits for the host to be released.
    pub pending: String,
    /// `<prefix>/notify-claim`: `<replica> <expiry>`: the replica sending the notification, so
    /// that two replicas never both send it.
    pub notify_claim: String,
    /// `<prefix>/ended`: JSON `{eventId: eventEnd}` of reservations whose EVENT_END was
    /// received, so a late or replayed START of one of them never provisions the host again.
    pub ended: String,
    /// `<prefix>/provision-baseline`: Metal3's `operationHistory.provision.start` as it was when
    /// our spec was written (`none` when unset): any other value means Metal3 has started an
    /// attempt on our spec since. Compared as written, so no two clocks are involved.
    pub provision_baseline: String,
    /// `<prefix>/notify-owed`: JSON [`Owed`] of an outcome (`provisioned` or `failed`) whose
    /// notification was still undelivered when the holder's END moved the host on; it is
    /// delivered before `released`.
    pub owed: String,
}

impl Keys {
    /// The annotation names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        let k = |s: &str| format!("{prefix}/{s}");
        Keys {
            event_id: k("event-id"),
            user_id: k("user-id"),
            username: k("username"),
            ssh_public_key: k("ssh-public-key"),
            resource_id: k("resource-id"),
            resource_name: k("resource-name"),
            event_end: k("event-end"),
            webhook_id: k("webhook-id"),
            updated_at: k("updated-at"),
            phase: k("phase"),
            phase_since: k("phase-since"),
            detail: k("detail"),
            notified: k("notified"),
            pending: k("pending-start"),
            notify_claim: k("notify-claim"),
            ended: k("ended"),
            provision_baseline: k("provision-baseline"),
            owed: k("notify-owed"),
        }
    }
}

/// Where a host is in the reservation lifecycle, as recorded by the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Intent recorded; Secret and spec being written, then waiting for `provisioned`.
    Provisioning,
    /// Metal3 reported `provisioned`: the host belongs to the holder.
    Provisioned,
    /// EVENT_END accepted: the release is under way (image removed, waiting for `available`).
    /// Our word for the whole release is "release"; this phase keeps the name `deprovisioning`
    /// because it is persisted in the `phase` annotation of hosts in flight, and Metal3's own
    /// `deprovisioning` state ([`ProvisioningState::Deprovisioning`]) is one step of it.
    Deprovisioning,
    /// The host is free again (the holder annotations stay for the record).
    Released,
    /// Provisioning or release failed (Metal3 gave up, refused our spec, or a timeout); the
    /// holder still owns the host, whose image has been removed so Metal3 stops trying.
    Failed,
}

impl Phase {
    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "provisioning",
            Phase::Provisioned => "provisioned",
            Phase::Deprovisioning => "deprovisioning",
            Phase::Released => "released",
            Phase::Failed => "failed",
        }
    }

    /// Parses an annotation value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "provisioning" => Phase::Provisioning,
            "provisioned" => Phase::Provisioned,
            "deprovisioning" => Phase::Deprovisioning,
            "released" => Phase::Released,
            "failed" => Phase::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metal3's `status.provisioning.state`, as the baremetal-operator writes it
/// (`apis/metal3.io/v1alpha1/baremetalhost_types.go`, `ProvisioningState`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProvisioningState {
    /// No status yet (the operator has not seen the host).
    #[default]
    None,
    /// `registering`, `inspecting`, `preparing`, `match profile`: on the way to `available`.
    Preparing,
    /// `available` (or its deprecated spelling `ready`): free to provision.
    Available,
    /// `provisioning`: an image is being written.
    Provisioning,
    /// `provisioned`: the image is on the disk.
    Provisioned,
    /// `deprovisioning`: the image is being removed (and the disk cleaned).
    Deprovisioning,
    /// `externally provisioned`: managed outside Metal3's provisioning.
    ExternallyProvisioned,
    /// `unmanaged`, `powering off before delete`, `deleting`, or anything newer.
    Other(String),
}

impl ProvisioningState {
    /// Parses the status field.
    pub fn parse(s: &str) -> Self {
        match s {
            "" => ProvisioningState::None,
            "registering" | "inspecting" | "preparing" | "match profile" => {
                ProvisioningState::Preparing
            }
            "available" | "ready" => ProvisioningState::Available,
            "provisioning" => ProvisioningState::Provisioning,
            "provisioned" => ProvisioningState::Provisioned,
            "deprovisioning" => ProvisioningState::Deprovisioning,
            "externally provisioned" => ProvisioningState::ExternallyProvisioned,
            other => ProvisioningState::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ProvisioningState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProvisioningState::None => "none",
            ProvisioningState::Preparing => "preparing",
            ProvisioningState::Available => "available",
            ProvisioningState::Provisioning => "provisioning",
            ProvisioningState::Provisioned => "provisioned",
            ProvisioningState::Deprovisioning => "deprovisioning",
            ProvisioningState::ExternallyProvisioned => "externally provisioned",
            ProvisioningState::Other(s) => s,
        })
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use jiff::Timestamp;

    use super::*;

    pub const PREFIX: &str = "reservations.polito.it";

    pub fn keys() -> Keys {
        Keys::new(PREFIX)
    }

    /// A reservation that ends a day after the unix epoch (the tests' clock runs near it).
    pub fn holder(event: &str, user: &str) -> Reservation {
        Reservation {
            event_id: event.into(),
            user_id: user.into(),
            username: format!("{user}-name"),
            ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx9RIMklGKNChy25ZekbXY0Z7xeB8MBBmOwiz1ztNtk u@h".into(),
            resource_id: 1,
            resource_name: "Lab Server A1".into(),
            event_end: Some(Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(24)),
            webhook_id: Some("5".into()),
            updated_at: None,
        }
    }

    /// An `available` host as Metal3 shows it after registration.
    pub fn host() -> Host {
        Host {
            name: "lab-server-a1".into(),
            namespace: "ns".into(),
            uid: "uid-1".into(),
            resource_version: "10".into(),
            spec: Spec {
                bmc_address: "ipmi://192.0.2.10".into(),
                automated_cleaning_mode: "metadata".into(),
                ..Spec::default()
            },
            status: Status {
                state: ProvisioningState::Available,
                operational_status: "OK".into(),
                ..Status::default()
            },
            ..Host::default()
        }
    }

    impl Host {
        pub fn held(mut self, h: &Reservation, phase: Phase) -> Self {
            self.holder = Some(h.clone());
            self.phase = Some(phase);
            self.phase_since = Some(Timestamp::UNIX_EPOCH);
            self.spec.consumer_ref = Some(ConsumerRef::reservation(PREFIX, "ns", &h.event_id));
            self
        }
        pub fn with_state(mut self, s: &str) -> Self {
            self.status.state = ProvisioningState::parse(s);
            self
        }
        pub fn with_pending(mut self, h: &Reservation) -> Self {
            self.pending = Some(h.clone());
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jiff::Timestamp;
    use serde_json::{Value, json};

    use super::fixtures::*;
    use super::*;

    #[test]
    fn reads_annotations_spec_and_status() {
        let k = keys();
        let h = holder("101", "u1");
        let patch = AnnotationPatch::on(&k, "5")
            .holder(&h)
            .phase(Phase::Provisioning, Timestamp::UNIX_EPOCH, "")
            .pending(Some(&holder("202", "u2")))
            .build();
        let ann: BTreeMap<String, String> = patch["metadata"]["annotations"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect();
        let data = json!({
            "spec": {"online": true, "image": {"url": "http://img"}, "userData": {"name": "x-userdata"},
                     "bmc": {"address": "ipmi://192.0.2.1"},
                     "consumerRef": {"apiVersion": "reservations.polito.it/v1", "kind": "Reservation", "name": "101"}},
            "status": {"provisioning": {"state": "provisioning", "image": {"url": "http://img"}},
                       "operationalStatus": "error", "errorType": "provisioning error",
                       "errorMessage": "boom", "provisioningFailCount": 2, "poweredOn": true,
                       "operationHistory": {"provision": {"start": "2026-11-30T10:00:00Z"}}}
        });
        let host = Host::read(&k, "x", "ns", "uid", "5", &ann, &data);
        assert_eq!(host.holder, Some(h));
        assert_eq!(host.phase, Some(Phase::Provisioning));
        assert_eq!(host.phase_since, Some(Timestamp::UNIX_EPOCH));
        assert_eq!(host.pending, Some(holder("202", "u2")));
        assert_eq!(host.spec.image_url.as_deref(), Some("http://img"));
        assert_eq!(host.spec.user_data.as_deref(), Some("x-userdata"));
        assert!(host.spec.online);
        assert!(
            host.spec
                .consumer_ref
                .as_ref()
                .is_some_and(|c| c.is_reservation(PREFIX))
        );
        assert!(host.status.has_error());
        assert_eq!(host.status.error(), "provisioning error: boom");
        assert_eq!(host.status.state, ProvisioningState::Provisioning);
        assert_eq!(host.status.provisioning_fail_count, 2);
        assert_eq!(
            host.status.provision_started,
            Some("2026-11-30T10:00:00Z".parse().unwrap())
        );
        assert!(host.status.powered_on);
        assert_eq!(host.unprovisionable(), None);
        assert_eq!(patch["metadata"]["resourceVersion"], "5");
        assert_eq!(
            patch["metadata"]["annotations"]["reservations.polito.it/detail"],
            Value::Null
        );
    }

    #[test]
    fn unmanaged_host_has_no_holder() {
        let host = Host::read(&keys(), "x", "ns", "u", "1", &BTreeMap::new(), &json!({}));
        assert_eq!(host.holder, None);
        assert_eq!(host.phase, None);
        assert!(!host.spec.online);
        assert_eq!(host.secret_name(), "x-userdata");
        assert_eq!(host.status.state, ProvisioningState::None);
        assert_eq!(
            host.unprovisionable().as_deref(),
            Some("the host has no BMC address (spec.bmc.address)")
        );
    }

    #[test]
    fn hosts_metal3_would_never_provision() {
        let mut paused = host();
        paused.paused = true;
        let mut detached = host();
        detached.detached = true;
        let mut external = host();
        external.spec.externally_provisioned = true;
        let mut custom = host();
        custom.spec.custom_deploy = true;
        for (h, why) in [
            (paused, "paused"),
            (detached, "detached"),
            (external, "externally provisioned"),
            (custom, "custom deploy"),
        ] {
            assert!(
                h.unprovisionable().is_some_and(|w| w.contains(why)),
                "{why}"
            );
        }
        let ann = BTreeMap::from([(DETACHED_ANNOTATION.to_owned(), "{}".to_owned())]);
        let h = Host::read(&keys(), "x", "ns", "u", "1", &ann, &json!({}));
        assert!(h.detached);
    }

    #[test]
    fn ended_reservations_are_bounded_and_forget_past_ends() {
        let now = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(1);
        let later = |h: i64| Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(h);
        let mut ended = BTreeMap::from([("old".to_owned(), later(0))]);
        ended = with_ended(&ended, "a", Some(later(5)), now);
        assert_eq!(ended.keys().collect::<Vec<_>>(), ["a"]);
        for i in 0..(MAX_ENDED + 5) {
            ended = with_ended(&ended, &format!("e{i}"), Some(later(10 + i as i64)), now);
        }
        assert_eq!(ended.len(), MAX_ENDED);
        assert!(!ended.contains_key("a"), "the earliest end goes first");
        assert!(ended.contains_key(&format!("e{}", MAX_ENDED + 4)));
    }

    #[test]
    fn dns1123_names() {
        assert_eq!(dns1123("Lab Server A1"), "lab-server-a1");
        assert_eq!(dns1123("  GPU_node #3 "), "gpu-node-3");
        assert_eq!(dns1123("a--b"), "a-b");
        assert_eq!(dns1123("---"), "");
    }

    #[test]
    fn a_resource_maps_to_its_one_labelled_host_else_by_name() {
        assert_eq!(
            HostLookup::from_labelled(vec!["node-17"], "Lab Server A1"),
            HostLookup::Labelled("node-17")
        );
        assert_eq!(
            HostLookup::from_labelled(Vec::<&str>::new(), "Lab Server A1"),
            HostLookup::ByName {
                name: Some("lab-server-a1".into()),
                ambiguous: false
            }
        );
        assert_eq!(
            HostLookup::from_labelled(vec!["a", "b"], "Lab Server A1"),
            HostLookup::ByName {
                name: Some("lab-server-a1".into()),
                ambiguous: true
            }
        );
        assert_eq!(
            HostLookup::from_labelled(Vec::<&str>::new(), "---"),
            HostLookup::ByName {
                name: None,
                ambiguous: false
            }
        );
    }

    #[test]
    fn unconditional_patch_has_no_precondition() {
        let k = keys();
        let p = AnnotationPatch::unconditional(&k)
            .notified(Some(Phase::Provisioned))
            .build();
        assert!(p["metadata"].get("resourceVersion").is_none());
        assert!(p.get("spec").is_none());
        assert_eq!(
            p["metadata"]["annotations"]["reservations.polito.it/notified"],
            "provisioned"
        );
    }
}
