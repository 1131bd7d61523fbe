//! The annotation writes: the merge patch of the sidecar's own annotations and the bounded
//! list of ended reservations.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::{Claim, ConsumerRef, Keys, MAX_ENDED, Owed, Phase, Reservation};

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
    pub fn holder(self, h: &Reservation) -> Self {
        let k = self.keys;
        self.put(&k.provision_baseline, None)
            .put(&k.event_id, Some(h.event_id.clone()))
            .put(&k.user_id, Some(h.user_id.clone()))
            .put(&k.username, Some(h.username.clone()))
            .put(&k.ssh_public_key, Some(h.ssh_public_key.clone()))
            .put(&k.resource_id, Some(h.resource_id.to_string()))
            .put(&k.resource_name, Some(h.resource_name.clone()))
            .put(&k.event_end, h.event_end.map(|t| t.to_string()))
            .put(&k.webhook_id, h.webhook_id.clone())
            .put(&k.updated_at, h.updated_at.map(|t| t.to_string()))
    }

    /// Moves the holder's end (EVENT_UPDATED), with the `updatedAt` it was decided on.
    pub fn reservation_end(self, end: Timestamp, updated_at: Option<Timestamp>) -> Self {
        let k = self.keys;
        let patch = self.put(&k.event_end, Some(end.to_string()));
        match updated_at {
            Some(t) => patch.put(&k.updated_at, Some(t.to_string())),
            None => patch,
        }
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
    pub fn pending(self, pending: Option<&Reservation>) -> Self {
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
