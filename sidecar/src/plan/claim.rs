//! Who sends a host's notification: the claim one replica takes before sending
//! ([`claim_notification`]), and the owed record a delivery satisfies ([`owed_satisfied`]).

use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use crate::model::{AnnotationPatch, Claim, Host, Keys, Phase};

/// After the notification of `phase` for reservation `event_id` was delivered: the patch
/// (with precondition) that clears the owed record it satisfies on `host_now`. An END decided
/// while the delivery was in flight records that very notification as owed; without this it
/// would be sent a second time after the release.
pub fn owed_satisfied(keys: &Keys, host_now: &Host, phase: Phase, event_id: &str) -> Option<Value> {
    let owed = host_now.owed.as_ref()?;
    let same_holder = host_now
        .holder
        .as_ref()
        .is_some_and(|h| h.event_id == event_id);
    (owed.outcome == phase && same_holder).then(|| {
        AnnotationPatch::on(keys, &host_now.resource_version)
            .owed(None)
            .build()
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::*;
    use crate::plan::fixtures::*;

    #[test]
    fn one_replica_at_a_time_sends_a_notification() {
        let k = keys();
        let ttl = Duration::from_secs(60);
        let mut h = host().held(&holder("1", "u"), Phase::Provisioned);
        let ClaimCheck::Take(p) = claim_notification(&k, &h, "a", ttl, now()) else {
            panic!()
        };
        assert_eq!(p["metadata"]["resourceVersion"], "10");
        let v = ann(&p, "notify-claim").as_str().unwrap();
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
        assert!(matches!(
            claim_notification(&k, &h, "b", ttl, at(70)),
            ClaimCheck::Take(_)
        ));
    }
}
