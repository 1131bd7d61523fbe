//! What the sidecar reads from a BareMetalHost: its own annotations (the reservation that holds
//! the host, the phase, the pending start, the delivered notification) and the Metal3 fields it
//! needs (spec image/userData/online, `status.provisioning.state`, `status.operationalStatus`).
//!
//! Pure: no I/O. Both the webhook planner and the reconciler start from a [`Host`].

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

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
            phase: k("phase"),
            phase_since: k("phase-since"),
            detail: k("detail"),
            notified: k("notified"),
            pending: k("pending-start"),
            notify_claim: k("notify-claim"),
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
    /// EVENT_END accepted; image removed, waiting for `available`.
    Deprovisioning,
    /// The host is free again (the holder annotations stay for the record).
    Released,
    /// Provisioning or release failed (operator error or timeout); the holder still owns it.
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
}

impl Holder {
    /// Same reservation (event) and same user.
    pub fn same_reservation(&self, other: &Holder) -> bool {
        self.event_id == other.event_id && self.user_id == other.user_id
    }
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
    pub spec_image_url: Option<String>,
    pub spec_user_data: Option<String>,
    pub spec_online: bool,
    pub consumer_ref: bool,
    /// `status.provisioning.state` ("" when absent).
    pub state: String,
    /// `status.operationalStatus` ("" when absent).
    pub operational_status: String,
    /// `status.errorType` / `status.errorMessage`.
    pub error: String,
    /// `status.provisioning.image.url`, when the operator reports it.
    pub status_image_url: Option<String>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
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
        });
        let error = [
            str_at(data, &["status", "errorType"]).unwrap_or_default(),
            str_at(data, &["status", "errorMessage"]).unwrap_or_default(),
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(": ");
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
            spec_image_url: str_at(data, &["spec", "image", "url"]).map(str::to_owned),
            spec_user_data: str_at(data, &["spec", "userData", "name"]).map(str::to_owned),
            spec_online: data
                .pointer("/spec/online")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            consumer_ref: data
                .pointer("/spec/consumerRef")
                .is_some_and(|v| !v.is_null()),
            state: str_at(data, &["status", "provisioning", "state"])
                .unwrap_or_default()
                .to_owned(),
            operational_status: str_at(data, &["status", "operationalStatus"])
                .unwrap_or_default()
                .to_owned(),
            error,
            status_image_url: str_at(data, &["status", "provisioning", "image", "url"])
                .map(str::to_owned),
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

    /// Metal3 reports an error for this host.
    pub fn operator_error(&self) -> bool {
        self.operational_status == "error"
    }

    /// Metal3 considers the host free (`ready` is the deprecated spelling).
    pub fn is_available(&self) -> bool {
        matches!(self.state.as_str(), "available" | "ready")
    }
}

/// The name of the userData Secret of host `bmh`.
pub fn secret_name(bmh: &str) -> String {
    format!("{bmh}-userdata")
}

/// Builds JSON merge patches of the sidecar's annotations. Every patch carries the
/// resourceVersion it was decided on, so a concurrent writer makes it fail with 409.
#[derive(Debug)]
pub struct AnnotationPatch<'k> {
    keys: &'k Keys,
    rv: Option<String>,
    set: Map<String, Value>,
}

impl<'k> AnnotationPatch<'k> {
    /// A patch that applies only if the host still has `resource_version`.
    pub fn on(keys: &'k Keys, resource_version: &str) -> Self {
        AnnotationPatch {
            keys,
            rv: Some(resource_version.to_owned()),
            set: Map::new(),
        }
    }

    /// A patch without precondition (for idempotent bookkeeping only).
    pub fn unconditional(keys: &'k Keys) -> Self {
        AnnotationPatch {
            keys,
            rv: None,
            set: Map::new(),
        }
    }

    fn put(mut self, key: &str, v: Option<String>) -> Self {
        self.set
            .insert(key.to_owned(), v.map(Value::String).unwrap_or(Value::Null));
        self
    }

    /// Records `h` as the holder.
    pub fn holder(self, h: &Holder) -> Self {
        let k = self.keys;
        self.put(&k.event_id, Some(h.event_id.clone()))
            .put(&k.user_id, Some(h.user_id.clone()))
            .put(&k.username, Some(h.username.clone()))
            .put(&k.ssh_public_key, Some(h.ssh_public_key.clone()))
            .put(&k.resource_id, Some(h.resource_id.to_string()))
            .put(&k.resource_name, Some(h.resource_name.clone()))
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

    /// The JSON merge patch.
    pub fn build(self) -> Value {
        let mut meta = Map::new();
        if let Some(rv) = self.rv {
            meta.insert("resourceVersion".into(), Value::String(rv));
        }
        meta.insert("annotations".into(), Value::Object(self.set));
        json!({ "metadata": meta })
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn keys() -> Keys {
        Keys::new("reservations.polito.it")
    }

    pub fn holder(event: &str, user: &str) -> Holder {
        Holder {
            event_id: event.into(),
            user_id: user.into(),
            username: format!("{user}-name"),
            ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForUnitTests u@h".into(),
            resource_id: 1,
            resource_name: "Lab Server A1".into(),
        }
    }

    pub fn host() -> Host {
        Host {
            name: "lab-server-a1".into(),
            namespace: "ns".into(),
            uid: "uid-1".into(),
            resource_version: "10".into(),
            state: "available".into(),
            spec_online: false,
            ..Host::default()
        }
    }

    impl Host {
        pub fn held(mut self, h: &Holder, phase: Phase) -> Self {
            self.holder = Some(h.clone());
            self.phase = Some(phase);
            self.phase_since = Some(Timestamp::UNIX_EPOCH);
            self
        }
        pub fn with_state(mut self, s: &str) -> Self {
            self.state = s.into();
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
    fn reads_annotations_and_status() {
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
            "spec": {"online": true, "image": {"url": "http://img"}, "userData": {"name": "x-userdata"}},
            "status": {"provisioning": {"state": "provisioning"}, "operationalStatus": "error",
                       "errorType": "provisioning error", "errorMessage": "boom"}
        });
        let host = Host::read(&k, "x", "ns", "uid", "5", &ann, &data);
        assert_eq!(host.holder, Some(h));
        assert_eq!(host.phase, Some(Phase::Provisioning));
        assert_eq!(host.phase_since, Some(Timestamp::UNIX_EPOCH));
        assert_eq!(host.pending, Some(holder("202", "u2")));
        assert_eq!(host.spec_image_url.as_deref(), Some("http://img"));
        assert_eq!(host.spec_user_data.as_deref(), Some("x-userdata"));
        assert!(host.spec_online);
        assert!(host.operator_error());
        assert_eq!(host.error, "provisioning error: boom");
        assert_eq!(host.state, "provisioning");
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
        assert!(!host.spec_online);
        assert_eq!(host.secret_name(), "x-userdata");
    }

    #[test]
    fn unconditional_patch_has_no_precondition() {
        let k = keys();
        let p = AnnotationPatch::unconditional(&k)
            .notified(Some(Phase::Provisioned))
            .build();
        assert!(p["metadata"].get("resourceVersion").is_none());
        assert_eq!(
            p["metadata"]["annotations"]["reservations.polito.it/notified"],
            "provisioned"
        );
    }
}
