//! Pure decisions, in four parts: what a webhook delivery does to a host ([`delivery`]), what
//! the reconciler does next for a host ([`steps`]), who sends a notification ([`claim`]), and
//! what happens to an existing userData Secret ([`secret`]).
//!
//! Every function here takes a [`Host`] snapshot and returns a plan; the
//! I/O modules carry the plan out with the snapshot's resourceVersion as precondition, so a
//! plan made on a stale snapshot fails with 409 and is made again.
//!
//! How Metal3 is judged (the baremetal-operator's behaviour these rules rest on, paths in its
//! repository; the full table is in docs/sidecar.md):
//! - a failed deployment is not an end state: BMO records the error, counts
//!   `provisioningFailCount`, deprovisions and provisions again, up to
//!   `--max-provisioning-retries`; only then the error stays, on an `available` host
//!   (`internal/controller/metal3.io/host_state_machine.go` `handleProvisioning`,
//!   `baremetalhost_controller.go` `actionManageAvailable`). So a reservation is `failed` only
//!   when BMO gave up, when it refused our spec, or at the timeout; never on the first error;
//! - errors stay on `available` hosts from earlier attempts, so an error counts only once BMO
//!   has started an attempt on our spec (`status.operationHistory.provision.start` changed
//!   since the spec write);
//! - a failed reservation's image and userData are removed at once, so BMO stops redeploying
//!   the host with the user's key;
//! - a host taken by a reservation carries `spec.consumerRef`, so Cluster API and HostClaims
//!   leave it alone; it is cleared when the host is released.

use std::time::Duration;

use crate::config::{Config, ImageConfig};
use crate::model::{ConsumerRef, Host, Keys, Reservation};

pub mod claim;
pub mod delivery;
pub mod secret;
pub mod steps;

pub use claim::{ClaimCheck, claim_notification, owed_satisfied};
pub use delivery::{Decision, ResourceOutcome, decide_end, decide_start, decide_update};
pub use secret::{ExistingSecret, SecretAction, secret_action};
pub use steps::{
    Step, Transition, next_step, provision_patch, refused, release_patch, stop_patch, transition,
};

/// What planning needs from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The sidecar's annotation names (under `prefix`).
    pub keys: Keys,
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
    /// How long after its reservation's end a host with no END or DELETED is released by the
    /// sidecar itself (`None`: never).
    pub release_grace: Option<Duration>,
}

impl Policy {
    /// The policy of `cfg`.
    pub fn new(cfg: &Config, notify_enabled: bool) -> Self {
        Policy {
            keys: Keys::new(&cfg.annotation_prefix),
            prefix: cfg.annotation_prefix.clone(),
            image: cfg.image.clone(),
            deprovision_image: cfg.deprovision_image.clone(),
            provision_timeout: cfg.provision_timeout,
            release_timeout: cfg.release_timeout,
            resync: cfg.resync,
            release_cleaning: cfg.release_cleaning,
            notify_enabled,
            release_grace: cfg.release_grace,
        }
    }

    /// The consumerRef reservation `h` writes on `host`.
    fn consumer(&self, host: &Host, h: &Reservation) -> ConsumerRef {
        ConsumerRef::reservation(&self.prefix, &host.namespace, &h.event_id)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use jiff::Timestamp;
    use serde_json::Value;

    use super::*;
    use crate::model::Phase;
    use crate::model::fixtures::*;

    pub fn policy() -> Policy {
        let mut c = crate::config::fixtures::config(&[]).unwrap();
        c.image.checksum_type = Some("sha256".into());
        c.provision_timeout = Duration::from_secs(100);
        c.release_timeout = Duration::from_secs(100);
        c.resync = Duration::from_secs(30);
        Policy::new(&c, true)
    }

    pub fn at(secs: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(secs)
    }

    pub fn now() -> Timestamp {
        at(10)
    }

    /// The value of annotation `<prefix>/key` in a patch.
    pub fn ann<'a>(p: &'a Value, key: &str) -> &'a Value {
        &p["metadata"]["annotations"][format!("{PREFIX}/{key}")]
    }

    /// A host whose spec our provisioning has written.
    pub fn provisioning(h: &Reservation) -> Host {
        let p = policy();
        let mut host = host().held(h, Phase::Provisioning);
        host.spec.image_url = Some(p.image.url.clone());
        host.spec.user_data = Some(host.secret_name());
        host.spec.online = true;
        host
    }
}
