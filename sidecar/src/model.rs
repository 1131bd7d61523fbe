//! What the sidecar reads from a BareMetalHost: its own annotations (the reservation that holds
//! the host, the phase, the pending start, the delivered notification, the reservations that
//! ended) and the Metal3 fields its decisions need (spec and status, as the baremetal-operator
//! writes them).
//!
//! Pure: no I/O. Both the webhook planner and the reconciler start from a [`Host`].

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

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
    /// `<prefix>/event-end`: the holder's `eventEnd` (RFC 3339).
    pub event_end: String,
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

/// A reservation of one host: who, and for which event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub event_id: String,
    pub user_id: String,
    pub username: String,
    pub ssh_public_key: String,
    pub resource_id: i64,
    pub resource_name: String,
    /// When the reservation ends (its `eventEnd`); `None` only for records written by an
    /// older sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_end: Option<Timestamp>,
}

impl Holder {
    /// Same reservation (event) and same user.
    pub fn same_reservation(&self, other: &Holder) -> bool {
        self.event_id == other.event_id && self.user_id == other.user_id
    }

    /// The reservation's `eventEnd` has passed at `now`.
    pub fn has_ended(&self, now: Timestamp) -> bool {
        self.event_end.is_some_and(|end| end <= now)
    }
}

/// A notification owed for an earlier phase of the holder: its outcome, when that phase began
/// and why (the notification's `timestamp` and `detail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owed {
    pub outcome: Phase,
    pub since: Option<Timestamp>,
    #[serde(default)]
    pub detail: String,
}

/// A replica's claim on sending a notification, valid until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub replica: String,
    pub until: Timestamp,
}

impl Claim {
    /// Parses `<replica> <RFC 3339 expiry>`.
    pub fn parse(s: &str) -> Option<Self> {
        let (replica, until) = s.trim().rsplit_once(' ')?;
        Some(Claim {
            replica: replica.to_owned(),
            until: until.parse().ok()?,
        })
    }

    /// The annotation value.
    pub fn render(&self) -> String {
        format!("{} {}", self.replica, self.until)
    }
}

/// `spec.consumerRef` of a BMH: the object that uses the host. Cluster API's Metal3 provider and
/// Metal3's HostClaims only take hosts without one, so a reservation sets its own.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRef {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// The kind of the consumerRef a reservation writes (with apiVersion `<prefix>/v1`).
pub const RESERVATION_KIND: &str = "Reservation";

impl ConsumerRef {
    /// The consumerRef of reservation `event_id`, in the annotation prefix's group.
    pub fn reservation(prefix: &str, namespace: &str, event_id: &str) -> Self {
        ConsumerRef {
            api_version: format!("{prefix}/v1"),
            kind: RESERVATION_KIND.to_owned(),
            name: event_id.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// Written by a reservation of this sidecar (any event).
    pub fn is_reservation(&self, prefix: &str) -> bool {
        self.kind == RESERVATION_KIND && self.api_version == format!("{prefix}/v1")
    }

    /// `Kind/name` for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// The BMH spec fields the sidecar reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    /// `spec.image.url`.
    pub image_url: Option<String>,
    /// `spec.userData.name`.
    pub user_data: Option<String>,
    /// `spec.online`.
    pub online: bool,
    /// `spec.consumerRef`.
    pub consumer_ref: Option<ConsumerRef>,
    /// `spec.bmc.address` ("" when absent).
    pub bmc_address: String,
    /// `spec.externallyProvisioned`.
    pub externally_provisioned: bool,
    /// `spec.customDeploy.method` is set.
    pub custom_deploy: bool,
    /// `spec.automatedCleaningMode` (`metadata` when absent, as in Metal3's CRD default).
    pub automated_cleaning_mode: String,
}

/// What Metal3 reports in the BMH status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// `status.provisioning.state`.
    pub state: ProvisioningState,
    /// `status.operationalStatus` (`OK`, `discovered`, `error`, `delayed`, `detached`,
    /// `servicing`; "" when absent).
    pub operational_status: String,
    /// `status.errorType`.
    pub error_type: String,
    /// `status.errorMessage`.
    pub error_message: String,
    /// `status.provisioningFailCount`: failed deployments the operator has retried.
    pub provisioning_fail_count: i64,
    /// `status.operationHistory.provision.start`: when the latest provisioning attempt began.
    pub provision_started: Option<Timestamp>,
    /// The same, as written (what `provision-baseline` records).
    pub provision_started_raw: Option<String>,
    /// `status.lastAttemptedImage.url`: the image of the latest attempt, failed or not.
    pub last_attempted_image_url: Option<String>,
    /// `status.provisioning.image.url`, when the operator reports it.
    pub image_url: Option<String>,
    /// `status.poweredOn`.
    pub powered_on: bool,
}

impl Status {
    /// What `provision-baseline` records: the latest attempt's start as written, or `none`.
    pub fn provision_baseline(&self) -> &str {
        self.provision_started_raw.as_deref().unwrap_or("none")
    }

    /// Metal3 reports an error for this host.
    pub fn has_error(&self) -> bool {
        self.operational_status == "error"
    }

    /// `errorType: errorMessage`, for messages.
    pub fn error(&self) -> String {
        [self.error_type.as_str(), self.error_message.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(": ")
    }
}

/// The facts about one BMH that decisions depend on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Host {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub resource_version: String,
    pub holder: Option<Holder>,
    pub phase: Option<Phase>,
    pub phase_since: Option<Timestamp>,
    pub detail: String,
    pub notified: Option<Phase>,
    pub pending: Option<Holder>,
    /// Who is sending the notification of the current phase, and until when.
    pub notify_claim: Option<Claim>,
    /// Reservations whose END was received: eventId → eventEnd.
    pub ended: BTreeMap<String, Timestamp>,
    /// What `provision-baseline` recorded at our spec write, if it did.
    pub provision_baseline: Option<String>,
    /// A notification owed for an earlier phase of the holder.
    pub owed: Option<Owed>,
    /// Metal3's paused annotation is present.
    pub paused: bool,
    /// Metal3's detached annotation is present.
    pub detached: bool,
    pub spec: Spec,
    pub status: Status,
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path)?.as_str()
}

fn time_at(v: &Value, path: &str) -> Option<Timestamp> {
    str_at(v, path)?.parse().ok()
}

impl Host {
    /// Reads a host from its metadata and JSON body (`spec`/`status` of a DynamicObject).
    pub fn read(
        keys: &Keys,
        name: &str,
        namespace: &str,
        uid: &str,
        resource_version: &str,
        annotations: &BTreeMap<String, String>,
        data: &Value,
    ) -> Host {
        let a = |k: &String| annotations.get(k).map(String::as_str).unwrap_or_default();
        let holder = (!a(&keys.event_id).is_empty()).then(|| Holder {
            event_id: a(&keys.event_id).to_owned(),
            user_id: a(&keys.user_id).to_owned(),
            username: a(&keys.username).to_owned(),
            ssh_public_key: a(&keys.ssh_public_key).to_owned(),
            resource_id: a(&keys.resource_id).parse().unwrap_or_default(),
            resource_name: a(&keys.resource_name).to_owned(),
            event_end: a(&keys.event_end).parse().ok(),
        });
        let spec = Spec {
            image_url: str_at(data, "/spec/image/url")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            user_data: str_at(data, "/spec/userData/name").map(str::to_owned),
            online: data
                .pointer("/spec/online")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            consumer_ref: data
                .pointer("/spec/consumerRef")
                .filter(|v| !v.is_null())
                .and_then(|v| serde_json::from_value(v.clone()).ok()),
            bmc_address: str_at(data, "/spec/bmc/address")
                .unwrap_or_default()
                .to_owned(),
            externally_provisioned: data
                .pointer("/spec/externallyProvisioned")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            custom_deploy: str_at(data, "/spec/customDeploy/method").is_some_and(|m| !m.is_empty()),
            automated_cleaning_mode: str_at(data, "/spec/automatedCleaningMode")
                .unwrap_or("metadata")
                .to_owned(),
        };
        let status = Status {
            state: ProvisioningState::parse(
                str_at(data, "/status/provisioning/state").unwrap_or_default(),
            ),
            operational_status: str_at(data, "/status/operationalStatus")
                .unwrap_or_default()
                .to_owned(),
            error_type: str_at(data, "/status/errorType")
                .unwrap_or_default()
                .to_owned(),
            error_message: str_at(data, "/status/errorMessage")
                .unwrap_or_default()
                .to_owned(),
            provisioning_fail_count: data
                .pointer("/status/provisioningFailCount")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            provision_started: time_at(data, "/status/operationHistory/provision/start"),
            provision_started_raw: str_at(data, "/status/operationHistory/provision/start")
                .map(str::to_owned),
            last_attempted_image_url: str_at(data, "/status/lastAttemptedImage/url")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            image_url: str_at(data, "/status/provisioning/image/url")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            powered_on: data
                .pointer("/status/poweredOn")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        Host {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            uid: uid.to_owned(),
            resource_version: resource_version.to_owned(),
            holder,
            phase: Phase::parse(a(&keys.phase)),
            phase_since: a(&keys.phase_since).parse().ok(),
            detail: a(&keys.detail).to_owned(),
            notified: Phase::parse(a(&keys.notified)),
            pending: serde_json::from_str(a(&keys.pending)).ok(),
            notify_claim: Claim::parse(a(&keys.notify_claim)),
            ended: serde_json::from_str(a(&keys.ended)).unwrap_or_default(),
            provision_baseline: annotations.get(&keys.provision_baseline).cloned(),
            owed: serde_json::from_str(a(&keys.owed)).ok(),
            paused: annotations.contains_key(PAUSED_ANNOTATION),
            detached: annotations.contains_key(DETACHED_ANNOTATION)
                || status.operational_status == "detached",
            spec,
            status,
        }
    }

    /// `<namespace>/<name>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The name of this host's userData Secret.
    pub fn secret_name(&self) -> String {
        secret_name(&self.name)
    }

    /// Why Metal3 would never provision this host, if it would not: the checks BMO makes before
    /// it provisions (`baremetalhost_controller.go`: paused and detached hosts are not
    /// reconciled; `externallyProvisioned` hosts are adopted, not provisioned; a host without a
    /// BMC cannot be powered or deployed; `customDeploy` replaces the image).
    pub fn unprovisionable(&self) -> Option<String> {
        let why = if self.paused {
            format!("Metal3 reconciliation is paused ({PAUSED_ANNOTATION})")
        } else if self.detached {
            "the host is detached from Metal3's provisioner".to_owned()
        } else if self.spec.externally_provisioned {
            "the host is externally provisioned (spec.externallyProvisioned)".to_owned()
        } else if self.spec.bmc_address.is_empty() {
            "the host has no BMC address (spec.bmc.address)".to_owned()
        } else if self.spec.custom_deploy {
            "the host uses a custom deploy (spec.customDeploy)".to_owned()
        } else {
            return None;
        };
        Some(why)
    }

    /// Whether `event_id` ended: its END was received on this host.
    pub fn has_ended(&self, event_id: &str) -> bool {
        self.ended.contains_key(event_id)
    }
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

/// The rule mapping a reserved resource to its host, one place for the watch-cache path and
/// the API path: the one host labelled with the resourceId (`BMH_RESOURCE_ID_LABEL`); with none,
/// or several (a warning), the host named after the resourceName ([`dns1123`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostLookup<T> {
    /// Exactly one host carries the label.
    Labelled(T),
    /// Look the host up by this name (`None` when the name maps to nothing); `ambiguous` when
    /// several hosts carry the label.
    ByName {
        name: Option<String>,
        ambiguous: bool,
    },
}

impl<T> HostLookup<T> {
    /// Decides from the hosts labelled with the resource's id.
    pub fn from_labelled(mut labelled: Vec<T>, resource_name: &str) -> Self {
        if labelled.len() == 1
            && let Some(one) = labelled.pop()
        {
            return HostLookup::Labelled(one);
        }
        let name = dns1123(resource_name);
        HostLookup::ByName {
            name: (!name.is_empty()).then_some(name),
            ambiguous: labelled.len() > 1,
        }
    }
}

impl Host {
    /// Reads the decision-relevant facts of a BMH object.
    pub fn from_object(keys: &Keys, obj: &kube::api::DynamicObject) -> Host {
        let empty = BTreeMap::new();
        Host::read(
            keys,
            obj.metadata.name.as_deref().unwrap_or_default(),
            obj.metadata.namespace.as_deref().unwrap_or_default(),
            obj.metadata.uid.as_deref().unwrap_or_default(),
            obj.metadata.resource_version.as_deref().unwrap_or_default(),
            obj.metadata.annotations.as_ref().unwrap_or(&empty),
            &obj.data,
        )
    }
}

impl Holder {
    /// The holder a delivery asks for, for one resource of an event.
    pub fn for_resource(
        ev: &webhook_core::event::ReservationEvent,
        r: &webhook_core::event::ReservedResource,
    ) -> Holder {
        Holder {
            event_id: r.event_id.clone(),
            user_id: ev.user_id.clone(),
            username: ev.username.clone(),
            ssh_public_key: ev.ssh_public_key.clone(),
            resource_id: r.resource_id,
            resource_name: r.resource_name.clone(),
            // Validated as RFC 3339 by the event rules; an unparsable one means "unknown".
            event_end: r.event_end.parse().ok(),
        }
    }
}

/// The name of the userData Secret of host `bmh`.
pub fn secret_name(bmh: &str) -> String {
    format!("{bmh}-userdata")
}

/// `ended` plus `event_id` (ending at `event_end`), without the entries whose eventEnd has
/// passed at `now`, at most [`MAX_ENDED`] (the earliest ends are dropped first).
pub fn with_ended(
    ended: &BTreeMap<String, Timestamp>,
    event_id: &str,
    event_end: Option<Timestamp>,
    now: Timestamp,
) -> BTreeMap<String, Timestamp> {
    let mut out: BTreeMap<String, Timestamp> = ended
        .iter()
        .filter(|(_, end)| **end > now)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    // An END without a known eventEnd is remembered for a day.
    let end = event_end
        .filter(|e| *e > now)
        .unwrap_or_else(|| now + jiff::SignedDuration::from_hours(24));
    out.insert(event_id.to_owned(), end);
    while out.len() > MAX_ENDED {
        let Some(first) = out
            .iter()
            .min_by_key(|(_, end)| **end)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        out.remove(&first);
    }
    out
}

/// Builds JSON merge patches of the sidecar's annotations (and, where a decision takes or frees
/// the host, its `spec.consumerRef`). Every patch carries the resourceVersion it was decided on,
/// so a concurrent writer makes it fail with 409.
#[derive(Debug)]
pub struct AnnotationPatch<'k> {
    keys: &'k Keys,
    rv: Option<String>,
    set: Map<String, Value>,
    spec: Map<String, Value>,
}

impl<'k> AnnotationPatch<'k> {
    /// A patch that applies only if the host still has `resource_version`.
    pub fn on(keys: &'k Keys, resource_version: &str) -> Self {
        AnnotationPatch {
            keys,
            rv: Some(resource_version.to_owned()),
            set: Map::new(),
            spec: Map::new(),
        }
    }

    /// A patch without precondition (for idempotent bookkeeping only).
    pub fn unconditional(keys: &'k Keys) -> Self {
        AnnotationPatch {
            keys,
            rv: None,
            set: Map::new(),
            spec: Map::new(),
        }
    }

    fn put(mut self, key: &str, v: Option<String>) -> Self {
        self.set
            .insert(key.to_owned(), v.map(Value::String).unwrap_or(Value::Null));
        self
    }

    /// Records `h` as the holder (and forgets the previous holder's provision baseline).
    pub fn holder(self, h: &Holder) -> Self {
        let k = self.keys;
        self.put(&k.provision_baseline, None)
            .put(&k.event_id, Some(h.event_id.clone()))
            .put(&k.user_id, Some(h.user_id.clone()))
            .put(&k.username, Some(h.username.clone()))
            .put(&k.ssh_public_key, Some(h.ssh_public_key.clone()))
            .put(&k.resource_id, Some(h.resource_id.to_string()))
            .put(&k.resource_name, Some(h.resource_name.clone()))
            .put(&k.event_end, h.event_end.map(|t| t.to_string()))
    }

    /// Enters `phase` now, with a reason.
    pub fn phase(self, phase: Phase, now: Timestamp, detail: &str) -> Self {
        let k = self.keys;
        let detail = (!detail.is_empty()).then(|| detail.to_owned());
        self.put(&k.phase, Some(phase.as_str().to_owned()))
            .put(&k.phase_since, Some(now.to_string()))
            .put(&k.detail, detail)
    }

    /// Records (or clears) the delivered notification.
    pub fn notified(self, phase: Option<Phase>) -> Self {
        let k = self.keys;
        self.put(&k.notified, phase.map(|p| p.as_str().to_owned()))
    }

    /// Records (or clears) the pending start.
    pub fn pending(self, pending: Option<&Holder>) -> Self {
        let k = self.keys;
        let v = pending.and_then(|p| serde_json::to_string(p).ok());
        self.put(&k.pending, v)
    }

    /// Records (or clears) the notification claim.
    pub fn claim(self, claim: Option<&Claim>) -> Self {
        let k = self.keys;
        self.put(&k.notify_claim, claim.map(Claim::render))
    }

    /// Records (or clears) a notification owed for the holder's earlier phase.
    pub fn owed(self, owed: Option<&Owed>) -> Self {
        let k = self.keys;
        let v = owed.and_then(|o| serde_json::to_string(o).ok());
        self.put(&k.owed, v)
    }

    /// Records the reservations whose END was received.
    pub fn ended(self, ended: &BTreeMap<String, Timestamp>) -> Self {
        let k = self.keys;
        let v = (!ended.is_empty())
            .then(|| serde_json::to_string(ended).ok())
            .flatten();
        self.put(&k.ended, v)
    }

    /// Sets (or clears) `spec.consumerRef` in the same write.
    pub fn consumer_ref(mut self, consumer: Option<&ConsumerRef>) -> Self {
        let v = consumer
            .and_then(|c| serde_json::to_value(c).ok())
            .unwrap_or(Value::Null);
        self.spec.insert("consumerRef".into(), v);
        self
    }

    /// The JSON merge patch.
    pub fn build(self) -> Value {
        let mut meta = Map::new();
        if let Some(rv) = self.rv {
            meta.insert("resourceVersion".into(), Value::String(rv));
        }
        meta.insert("annotations".into(), Value::Object(self.set));
        if self.spec.is_empty() {
            json!({ "metadata": meta })
        } else {
            json!({ "metadata": meta, "spec": self.spec })
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub const PREFIX: &str = "reservations.polito.it";

    pub fn keys() -> Keys {
        Keys::new(PREFIX)
    }

    /// A reservation that ends a day after the unix epoch (the tests' clock runs near it).
    pub fn holder(event: &str, user: &str) -> Holder {
        Holder {
            event_id: event.into(),
            user_id: user.into(),
            username: format!("{user}-name"),
            ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForUnitTests u@h".into(),
            resource_id: 1,
            resource_name: "Lab Server A1".into(),
            event_end: Some(Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_hours(24)),
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
        pub fn held(mut self, h: &Holder, phase: Phase) -> Self {
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
        pub fn with_pending(mut self, h: &Holder) -> Self {
            self.pending = Some(h.clone());
            self
        }
    }
}

#[cfg(test)]
mod tests {
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
