//! The field rules of a message: identifiers one bounded line, free text bounded, dates that
//! read where the action uses them, the SSH key bounded. docs/filter.md gives each its reason.

use super::wire::{Field, path, user_id_path};
use super::{
    Action, MAX_SHORT, MAX_SSH_KEY_LEN, MAX_TEXT, Reason, ReservationMessage, ValidationError,
    rfc3339,
};

/// Every field rule on a read message, in document order; the first refusal wins.
pub(super) fn check(m: &ReservationMessage<'_>) -> Result<(), ValidationError> {
    let top = |path: &'static str| move |reason| ValidationError::at(path, reason);
    rfc3339(&m.timestamp).map_err(top("$.timestamp"))?;
    if let Some(id) = &m.webhook_id {
        ident(id, true).map_err(top("$.webhookId"))?;
    }
    let user = &m.user;
    if let Some(id) = &user.user_id {
        ident(id, true).map_err(top(user_id_path(m.shape)))?;
    }
    if let Some(name) = &user.username {
        ident(name, false).map_err(top("$.username"))?;
    }
    if let Some(email) = &user.email {
        ident(email, false).map_err(top("$.email"))?;
    }
    if let Some(key) = &user.ssh_public_key
        && key.len() > MAX_SSH_KEY_LEN
    {
        return Err(ValidationError::at("$.sshPublicKey", Reason::TooLong));
    }
    let action = m.event_type.action();
    for (i, r) in m.reservations.iter().enumerate() {
        // The path is only formatted when a field is refused.
        let at = |field| move |reason| ValidationError::at(path(m.shape, i, field), reason);
        ident(&r.event_id, true).map_err(at(Field::EventId))?;
        optional(&r.title, text).map_err(at(Field::Title))?;
        optional(&r.description, text).map_err(at(Field::Description))?;
        if r.resource_id < 0 {
            return Err(at(Field::ResourceId)(Reason::Negative));
        }
        required_text(&r.resource_name).map_err(at(Field::ResourceName))?;
        ident(&r.resource_type, true).map_err(at(Field::ResourceType))?;
        optional(&r.resource_specs, text).map_err(at(Field::Specs))?;
        optional(&r.resource_location, text).map_err(at(Field::Location))?;
        optional(&r.site_id, |v| ident(v, false)).map_err(at(Field::SiteId))?;
        optional(&r.site_name, text).map_err(at(Field::SiteName))?;
        // Times matter where the action uses them: a START's both (the replay rule and the
        // hold), an UPDATED's new end. An END or DELETED releases whatever its times say.
        match action {
            Action::Start => {
                let start = date(&r.start).map_err(at(Field::Start))?;
                let end = date(&r.end).map_err(at(Field::End))?;
                if end <= start {
                    return Err(at(Field::End)(Reason::EndNotAfterStart));
                }
            }
            Action::Update => {
                date(&r.end).map_err(at(Field::End))?;
                if r.updated_at.is_some() {
                    date(&r.updated_at).map_err(at(Field::UpdatedAt))?;
                }
            }
            Action::Release | Action::Nothing => {}
        }
    }
    Ok(())
}

fn optional(
    value: &Option<std::borrow::Cow<'_, str>>,
    rule: impl Fn(&str) -> Result<(), Reason>,
) -> Result<(), Reason> {
    value.as_deref().map_or(Ok(()), rule)
}

/// A date the action needs (its presence is checked when the body is read).
fn date(value: &Option<std::borrow::Cow<'_, str>>) -> Result<time::OffsetDateTime, Reason> {
    rfc3339(value.as_deref().ok_or(Reason::Missing)?)
}

/// An identifier: one line of at most [`MAX_SHORT`] characters, no control character; not
/// blank when `required`.
fn ident(value: &str, required: bool) -> Result<(), Reason> {
    if required && value.trim().is_empty() {
        return Err(Reason::Empty);
    }
    bounded(value, MAX_SHORT, false)
}

/// Free text that must not be blank (`resourceName`).
fn required_text(value: &str) -> Result<(), Reason> {
    if value.trim().is_empty() {
        return Err(Reason::Empty);
    }
    text(value)
}

/// Free text: at most [`MAX_TEXT`] characters; line breaks and tabs allowed, other control
/// characters not.
fn text(value: &str) -> Result<(), Reason> {
    bounded(value, MAX_TEXT, true)
}

/// At most `max` characters and no control characters (but see `allow_line_breaks`).
fn bounded(value: &str, max: usize, allow_line_breaks: bool) -> Result<(), Reason> {
    // Byte length bounds the character count from above: count only when it could matter.
    if value.len() > max && value.chars().count() > max {
        return Err(Reason::TooLong);
    }
    if has_control(value, allow_line_breaks) {
        return Err(Reason::ControlCharacter);
    }
    Ok(())
}

/// Whether `s` holds a Unicode control character (category Cc: U+0000..=U+001F,
/// U+007F..=U+009F), optionally allowing `\n`, `\r` and `\t`. Scans bytes: C0 controls and DEL
/// are single bytes, C1 controls are `0xC2 0x80..=0x9F` in UTF-8.
pub(super) fn has_control(s: &str, allow_line_breaks: bool) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &c)| match c {
        b'\n' | b'\r' | b'\t' => !allow_line_breaks,
        0..=0x1f | 0x7f => true,
        0xc2 => b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)),
        _ => false,
    })
}
