//! What writing the userData Secret does with an existing one ([`secret_action`]): the rule
//! that keeps a replica on a stale copy of a host from writing the wrong reservation's Secret.

/// What is known of an existing `<bmh>-userdata` Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingSecret {
    /// Carries the sidecar's managed-by label.
    pub managed: bool,
    /// The reservation (eventId) it was written for.
    pub written_for: Option<String>,
    /// Its userData and owner are what the holder's would be.
    pub up_to_date: bool,
}

/// What writing the userData Secret for the holder of a host snapshot does with an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretAction {
    /// None exists: create it, after a fresh read of the host shows the snapshot is current
    /// (a stale replica must not leave a released reservation's key behind).
    CreateIfCurrent,
    /// It is the holder's and up to date.
    Keep,
    /// It is the holder's (same reservation) but differs: bring it up to date.
    Repair,
    /// It was written for another reservation: an older one's leftover, or, if this snapshot is
    /// stale, the NEXT holder's. Overwrite only after a fresh read of the host shows the
    /// snapshot is current (same resourceVersion); otherwise leave it and look again.
    OverwriteIfCurrent,
    /// Someone else's Secret: never touched.
    Foreign,
}

/// Decides [`SecretAction`] for the holder `event_id` of a snapshot.
pub fn secret_action(event_id: &str, existing: Option<&ExistingSecret>) -> SecretAction {
    match existing {
        None => SecretAction::CreateIfCurrent,
        Some(s) if !s.managed => SecretAction::Foreign,
        Some(s) if s.written_for.as_deref() == Some(event_id) => {
            if s.up_to_date {
                SecretAction::Keep
            } else {
                SecretAction::Repair
            }
        }
        Some(_) => SecretAction::OverwriteIfCurrent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_of_another_reservation_is_overwritten_only_from_a_current_copy() {
        let s = |managed, written_for: Option<&str>, up_to_date| ExistingSecret {
            managed,
            written_for: written_for.map(str::to_owned),
            up_to_date,
        };
        use SecretAction::*;
        assert_eq!(secret_action("101", None), CreateIfCurrent);
        assert_eq!(
            secret_action("101", Some(&s(true, Some("101"), true))),
            Keep
        );
        assert_eq!(
            secret_action("101", Some(&s(true, Some("101"), false))),
            Repair
        );
        assert_eq!(
            secret_action("101", Some(&s(true, Some("202"), true))),
            OverwriteIfCurrent
        );
        assert_eq!(
            secret_action("101", Some(&s(true, None, false))),
            OverwriteIfCurrent
        );
        assert_eq!(
            secret_action("101", Some(&s(false, Some("101"), true))),
            Foreign
        );
    }
}
