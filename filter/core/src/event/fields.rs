//! The field rules of an event: every field bounded and free of control characters, a safe
//! login name, a plausible email address, dates that read, and the `sshPublicKey` rule.

use super::view::EventView;
use super::{MAX_EVENTS, MAX_SHORT, MAX_TEXT, Reason, ValidationError, rfc3339, ssh_key};

/// Login names that must never be created or given keys on a provisioned server.
pub const RESERVED_USERNAMES: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "nogroup",
    "sshd",
    "messagebus",
    "systemd-network",
    "systemd-resolve",
    "systemd-timesync",
    "systemd-journal",
    "syslog",
    "adm",
    "admin",
    "wheel",
    "sudo",
    "operator",
    "halt",
    "shutdown",
    "ftp",
    "postfix",
    "polkitd",
    "dbus",
    "tss",
    "chrony",
    "ntp",
    "core",
    "ubuntu",
    "centos",
    "fedora",
    "cloud-user",
    "ec2-user",
    "debian",
    "metal3",
    "ironic",
];

/// Every field rule on a parsed event, in document order; the first refusal wins.
pub(super) fn check(e: &EventView<'_>) -> Result<(), ValidationError> {
    let top = |path: &'static str| move |reason| ValidationError::at(path, reason);
    rfc3339(&e.timestamp).map_err(top("$.timestamp"))?;
    if e.events.is_empty() {
        return Err(ValidationError::at("$.events", Reason::NoEvents));
    }
    if e.events.len() > MAX_EVENTS {
        return Err(ValidationError::at("$.events", Reason::TooLong));
    }
    if usize::try_from(e.event_count).ok() != Some(e.events.len()) {
        return Err(ValidationError::at("$.eventCount", Reason::CountMismatch));
    }
    line(&e.user_id, MAX_SHORT).map_err(top("$.userId"))?;
    check_username(&e.username)?;
    check_email(&e.email)?;
    ssh_key::check_ssh_key(&e.ssh_public_key)?;
    for (i, r) in e.events.iter().enumerate() {
        // The path is only formatted when a field is refused.
        let at = |field: &'static str| {
            move |reason| ValidationError::at(format!("$.events[{i}].{field}"), reason)
        };
        line(&r.event_id, MAX_SHORT).map_err(at("eventId"))?;
        optional_line(&r.event_title, MAX_SHORT).map_err(at("eventTitle"))?;
        text(&r.event_description, MAX_TEXT).map_err(at("eventDescription"))?;
        let start = rfc3339(&r.event_start).map_err(at("eventStart"))?;
        let end = rfc3339(&r.event_end).map_err(at("eventEnd"))?;
        if end <= start {
            return Err(at("eventEnd")(Reason::EndNotAfterStart));
        }
        if r.resource_id < 0 {
            return Err(at("resourceId")(Reason::Negative));
        }
        line(&r.resource_name, MAX_SHORT).map_err(at("resourceName"))?;
        line(&r.resource_type, MAX_SHORT).map_err(at("resourceType"))?;
        optional_line(&r.resource_specs, MAX_TEXT).map_err(at("resourceSpecs"))?;
        optional_line(&r.resource_location, MAX_SHORT).map_err(at("resourceLocation"))?;
        optional_line(&r.site_id, MAX_SHORT).map_err(at("siteId"))?;
        optional_line(&r.site_name, MAX_SHORT).map_err(at("siteName"))?;
    }
    Ok(())
}

/// A required single-line string: non-empty, bounded, no control characters.
fn line(value: &str, max: usize) -> Result<(), Reason> {
    if value.trim().is_empty() {
        return Err(Reason::Empty);
    }
    optional_line(value, max)
}

/// An optional single-line string: bounded, no control characters.
fn optional_line(value: &str, max: usize) -> Result<(), Reason> {
    bounded(value, max, false)
}

/// Free text: bounded; line breaks and tabs allowed, other control characters not.
fn text(value: &str, max: usize) -> Result<(), Reason> {
    bounded(value, max, true)
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

/// `^[a-z_][a-z0-9_.-]{0,31}$`, not reserved.
pub fn check_username(name: &str) -> Result<(), ValidationError> {
    const P: &str = "$.username";
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some('a'..='z' | '_'));
    let rest_ok = chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'));
    if !first_ok || !rest_ok || name.len() > 32 {
        return Err(ValidationError::at(P, Reason::BadUsername));
    }
    if RESERVED_USERNAMES.contains(&name) || name.starts_with("systemd-") {
        return Err(ValidationError::at(P, Reason::ReservedUsername));
    }
    Ok(())
}

/// A plausible, ASCII-only address: `local@domain`, local part of `[A-Za-z0-9._%+-]` without
/// leading/trailing/double dots, domain of at least two labels of `[A-Za-z0-9-]`.
pub fn check_email(email: &str) -> Result<(), ValidationError> {
    let bad = || ValidationError::at("$.email", Reason::BadEmail);
    if email.len() > 254 {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        Ok(())
    } else {
        Err(bad())
    }
}
