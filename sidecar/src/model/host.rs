//! The reservation records on a host (holder, owed notification, claim, consumerRef) and
//! the Metal3 spec and status fields the decisions read, parsed from a BMH object.

use webhook_core::event::{self, ReservationMessage};

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DETACHED_ANNOTATION, Keys, PAUSED_ANNOTATION, Phase, ProvisioningState, secret_name};

/// A reservation of one host: who, and for which event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub event_id: String,
    pub user_id: String,
    /// The Keycloak username: metadata only (the login account is `LOGIN_USER`); empty when
    /// the processor's Keycloak lookup failed.
    #[serde(default)]
    pub username: String,
    /// The user's SSH public key as sent; empty when the user has none.
    #[serde(default)]
    pub ssh_public_key: String,
    pub resource_id: i64,
    pub resource_name: String,
    /// When the reservation ends (its `eventEnd`, moved by EVENT_UPDATED); `None` only for
    /// records written by an older sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_end: Option<Timestamp>,
    /// reservation-be's id of the webhook the START came through: what notifications quote
    /// back (`None` when the sender sent none, as processor 0.1.17 did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// reservation-be's `updatedAt` of the latest EVENT_UPDATED applied, so an older one it
    /// re-sends later never moves the end back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl Reservation {
    /// The same reservation: reservation-be's event ids are unique, and the owner of a
    /// reservation can change between its START and its END (an admin edits it), so the user
    /// is not part of the identity.
    pub fn same_reservation(&self, other: &Reservation) -> bool {
        self.event_id == other.event_id
    }

    /// Why this reservation's key cannot be put on a server, if it cannot.
    pub fn key_problem(&self) -> Option<webhook_core::event::KeyProblem> {
        webhook_core::event::check_ssh_key(Some(&self.ssh_public_key)).err()
    }

    /// The reservation's `eventEnd` has passed at `now`.
    pub fn has_ended(&self, now: Timestamp) -> bool {
        self.event_end.is_some_and(|end| end <= now)
    }
    /// The holder a message asks for, for one of its reservations.
    pub fn from_message(
        message: &ReservationMessage<'_>,
        r: &event::Reservation<'_>,
    ) -> Reservation {
        let time =
            |t: &Option<std::borrow::Cow<'_, str>>| t.as_deref().and_then(|t| t.parse().ok());
        let text =
            |t: &Option<std::borrow::Cow<'_, str>>| t.as_deref().unwrap_or_default().to_owned();
        Reservation {
            event_id: r.event_id.clone().into_owned(),
            user_id: text(&message.user.user_id),
            username: text(&message.user.username),
            ssh_public_key: text(&message.user.ssh_public_key),
            resource_id: r.resource_id,
            resource_name: r.resource_name.clone().into_owned(),
            // Validated as RFC 3339 where the action needs it; otherwise "unknown".
            event_end: time(&r.end),
            webhook_id: message.webhook_id.as_deref().map(str::to_owned),
            updated_at: time(&r.updated_at),
        }
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
    pub holder: Option<Reservation>,
    pub phase: Option<Phase>,
    pub phase_since: Option<Timestamp>,
    pub detail: String,
    pub notified: Option<Phase>,
    pub pending: Option<Reservation>,
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
        let holder = (!a(&keys.event_id).is_empty()).then(|| Reservation {
            event_id: a(&keys.event_id).to_owned(),
            user_id: a(&keys.user_id).to_owned(),
            username: a(&keys.username).to_owned(),
            ssh_public_key: a(&keys.ssh_public_key).to_owned(),
            resource_id: a(&keys.resource_id).parse().unwrap_or_default(),
            resource_name: a(&keys.resource_name).to_owned(),
            event_end: a(&keys.event_end).parse().ok(),
            webhook_id: Some(a(&keys.webhook_id))
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            updated_at: a(&keys.updated_at).parse().ok(),
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

    /// The spec still asks Metal3 for a reservation's deployment: `image_url` (the provisioning
    /// image), or this host's userData Secret.
    pub fn spec_deploys(&self, image_url: &str) -> bool {
        self.spec.image_url.as_deref() == Some(image_url)
            || self.spec.user_data.as_deref() == Some(self.secret_name().as_str())
    }

    /// Whether the queued start `p` will never run: its reservation's eventEnd passed, or its
    /// END came.
    pub fn pending_dropped(&self, p: &Reservation, now: Timestamp) -> bool {
        p.has_ended(now) || self.has_ended(&p.event_id)
    }

    /// The queued start, unless it will never run.
    pub fn live_pending(&self, now: Timestamp) -> Option<&Reservation> {
        self.pending
            .as_ref()
            .filter(|p| !self.pending_dropped(p, now))
    }
}
