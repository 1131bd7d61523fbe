//! The reservation event the reservation system POSTs to `/webhook`, and its validation.
//!
//! Shared contract: the filter validates it at the edge with [`validate`], the sidecar calls the
//! same [`validate`] again (defence in depth) and acts on it. Field names follow the sender's
//! camelCase JSON; unknown extra fields are ignored (the sender may add some).
//!
//! What is checked, and why (values end up in cloud-config YAML, Kubernetes annotations and
//! notifications, so anything that could inject into them is refused here):
//! - `eventType` is `EVENT_START` or `EVENT_END`;
//! - `timestamp`, `eventStart`, `eventEnd` are RFC 3339; `eventEnd` is after `eventStart`;
//! - `events` has 1..=[`MAX_EVENTS`] items and `eventCount` equals their number;
//! - `username` is a safe POSIX login name (`^[a-z_][a-z0-9_.-]{0,31}$`), not a reserved system
//!   account ([`RESERVED_USERNAMES`]);
//! - `email` is a plausible address (ASCII, one `@`, dotted domain of sane labels);
//! - `sshPublicKey` is one line `<type> <base64> [comment]` with a known type, a blob that
//!   decodes and embeds the same type (and a sane key inside), and a comment of harmless
//!   characters only. A truncated key such as `ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAACAQC...` fails
//!   with 422 at `$.sshPublicKey`;
//! - every string is bounded and free of control characters (descriptions may hold line breaks
//!   and tabs);
//! - `resourceId` is not negative (it becomes a Kubernetes label value, which must start with
//!   an alphanumeric character).
//!
//! # Replay rule ([`check_body`], [`check_freshness`], [`start_expired`])
//! The body `timestamp` may be at most the clock skew in the future, for both event types. An
//! `EVENT_END` is accepted at any age: it is idempotent and owner-checked by the sidecar, so an
//! outage longer than any window must not leave a host provisioned. An `EVENT_START` is
//! accepted until the last `eventEnd` of its `events` has passed (plus the skew); the optional
//! replay window bounds the age of a START's `timestamp` as well. The sidecar applies
//! [`start_expired`] per resource.

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Lifecycle event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A reservation begins: provision the reserved servers.
    #[serde(rename = "EVENT_START")]
    Start,
    /// A reservation ends: reclaim the reserved servers.
    #[serde(rename = "EVENT_END")]
    End,
}

impl EventType {
    /// The wire name, as the sender spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "EVENT_START",
            EventType::End => "EVENT_END",
        }
    }
}

/// One webhook delivery: a user and the resources reserved for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationEvent {
    pub event_type: EventType,
    /// RFC 3339 time at which the sender emitted the delivery.
    pub timestamp: String,
    pub event_count: u32,
    pub user_id: String,
    pub username: String,
    pub email: String,
    pub ssh_public_key: String,
    pub events: Vec<ReservedResource>,
}

/// One reserved resource inside a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservedResource {
    pub event_id: String,
    #[serde(default)]
    pub event_title: String,
    #[serde(default)]
    pub event_description: String,
    pub event_start: String,
    pub event_end: String,
    pub resource_id: i64,
    pub resource_name: String,
    pub resource_type: String,
    #[serde(default)]
    pub resource_specs: String,
    #[serde(default)]
    pub resource_location: String,
    #[serde(default)]
    pub site_id: String,
    #[serde(default)]
    pub site_name: String,
}

/// Upper bound on `events` in one delivery.
pub const MAX_EVENTS: usize = 100;
/// Upper bound on the whole `sshPublicKey` line, in bytes (a 16384-bit RSA key fits).
pub const MAX_SSH_KEY_LEN: usize = 4096;
/// Upper bound on short identifiers and names, in characters.
pub const MAX_SHORT: usize = 256;
/// Upper bound on free-text descriptions, in characters.
pub const MAX_TEXT: usize = 4096;
/// Upper bound on the SSH key comment, in characters.
pub const MAX_SSH_COMMENT: usize = 128;
/// Smallest RSA modulus accepted in `sshPublicKey`, in bits.
pub const MIN_RSA_BITS: usize = 2048;

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

/// SSH public key types accepted in `sshPublicKey`.
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Why a body was refused. [`Reason::MalformedJson`] answers 400, every other reason 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The body is not JSON at all (syntax error, truncated, not UTF-8).
    #[error("body is not valid JSON")]
    MalformedJson,
    /// A required field is absent.
    #[error("required field is missing")]
    Missing,
    /// A field has the wrong JSON type or an unknown enum value.
    #[error("field has the wrong type or an unknown value")]
    WrongType,
    /// A string is empty where a value is required.
    #[error("must not be empty")]
    Empty,
    /// A string or list is longer than its bound.
    #[error("too long")]
    TooLong,
    /// A string holds a control character (or a line break where none is allowed).
    #[error("contains a control character")]
    ControlCharacter,
    /// Not an RFC 3339 date-time.
    #[error("not an RFC 3339 date-time")]
    NotRfc3339,
    /// `eventEnd` is not after `eventStart`.
    #[error("must be after eventStart")]
    EndNotAfterStart,
    /// `events` is empty.
    #[error("must hold at least one event")]
    NoEvents,
    /// `eventCount` differs from the number of `events`.
    #[error("does not match the number of events")]
    CountMismatch,
    /// `username` is not a safe POSIX login name.
    #[error("not a valid login name (^[a-z_][a-z0-9_.-]{{0,31}}$)")]
    BadUsername,
    /// `username` names a system account.
    #[error("reserved login name")]
    ReservedUsername,
    /// `email` is not a plausible address.
    #[error("not a valid email address")]
    BadEmail,
    /// `sshPublicKey` is not `<type> <base64> [comment]` on one line.
    #[error("not a single-line OpenSSH public key")]
    BadSshKeyFormat,
    /// `sshPublicKey` has a type outside [`SSH_KEY_TYPES`].
    #[error("unsupported SSH key type")]
    UnknownSshKeyType,
    /// The base64 blob does not decode, or does not hold a well-formed key of the stated type.
    #[error("SSH key data is invalid or truncated")]
    BadSshKeyBlob,
    /// An RSA key below [`MIN_RSA_BITS`].
    #[error("RSA key is too short")]
    WeakSshKey,
    /// The comment after the key holds characters that could escape into cloud-config.
    #[error("SSH key comment holds characters outside [A-Za-z0-9 @._+=:,/-]")]
    BadSshKeyComment,
    /// A negative number where only non-negative ones are valid (`resourceId`).
    #[error("must not be negative")]
    Negative,
    /// An `EVENT_START` whose `timestamp` is older than the configured replay window.
    #[error("event is older than the replay window")]
    Stale,
    /// An `EVENT_START` that arrives after every reserved resource's `eventEnd` (plus the clock
    /// skew): the reservation is over, nothing may be provisioned for it.
    #[error("every reserved resource's eventEnd has passed")]
    ReservationEnded,
    /// `timestamp` is further in the future than the allowed clock skew.
    #[error("event timestamp is in the future")]
    FromTheFuture,
}

/// A refused body: the JSON path of the offending field (`$` for the whole body, e.g.
/// `$.events[2].eventEnd`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ValidationError {
    /// JSON path of the offending field.
    pub path: String,
    /// What is wrong with it.
    pub reason: Reason,
}

impl ValidationError {
    fn at(path: impl Into<String>, reason: Reason) -> Self {
        ValidationError {
            path: path.into(),
            reason,
        }
    }
}

/// Parses and validates a raw body with every rule of this module (no clock: see
/// [`check_freshness`] for the replay rule).
pub fn validate(body: &[u8]) -> Result<ReservationEvent, ValidationError> {
    let view: EventView<'_> = parse(body)?;
    check(&view)?;
    Ok(view.into_owned())
}

/// [`validate`] plus [`check_freshness`], without building the owned event: what the filter
/// runs per request (strings are borrowed from the body, not allocated).
pub fn check_body(
    body: &[u8],
    now_unix_seconds: i64,
    window_seconds: u64,
    skew_seconds: u64,
) -> Result<(), ValidationError> {
    let view: EventView<'_> = parse(body)?;
    check(&view)?;
    freshness(
        view.event_type,
        &view.timestamp,
        view.events.iter().map(|r| &*r.event_end),
        Clock {
            now: now_unix_seconds,
            window: window_seconds,
            skew: skew_seconds,
        },
    )
}

/// Borrowing twin of [`ReservationEvent`] (same serde shape), so validation allocates little.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventView<'a> {
    event_type: EventType,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    event_count: u32,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    username: Cow<'a, str>,
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[serde(borrow)]
    ssh_public_key: Cow<'a, str>,
    #[serde(borrow)]
    events: Vec<ResourceView<'a>>,
}

/// Borrowing twin of [`ReservedResource`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceView<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(default, borrow)]
    event_title: Cow<'a, str>,
    #[serde(default, borrow)]
    event_description: Cow<'a, str>,
    #[serde(borrow)]
    event_start: Cow<'a, str>,
    #[serde(borrow)]
    event_end: Cow<'a, str>,
    resource_id: i64,
    #[serde(borrow)]
    resource_name: Cow<'a, str>,
    #[serde(borrow)]
    resource_type: Cow<'a, str>,
    #[serde(default, borrow)]
    resource_specs: Cow<'a, str>,
    #[serde(default, borrow)]
    resource_location: Cow<'a, str>,
    #[serde(default, borrow)]
    site_id: Cow<'a, str>,
    #[serde(default, borrow)]
    site_name: Cow<'a, str>,
}

impl EventView<'_> {
    fn into_owned(self) -> ReservationEvent {
        ReservationEvent {
            event_type: self.event_type,
            timestamp: self.timestamp.into_owned(),
            event_count: self.event_count,
            user_id: self.user_id.into_owned(),
            username: self.username.into_owned(),
            email: self.email.into_owned(),
            ssh_public_key: self.ssh_public_key.into_owned(),
            events: self
                .events
                .into_iter()
                .map(|r| ReservedResource {
                    event_id: r.event_id.into_owned(),
                    event_title: r.event_title.into_owned(),
                    event_description: r.event_description.into_owned(),
                    event_start: r.event_start.into_owned(),
                    event_end: r.event_end.into_owned(),
                    resource_id: r.resource_id,
                    resource_name: r.resource_name.into_owned(),
                    resource_type: r.resource_type.into_owned(),
                    resource_specs: r.resource_specs.into_owned(),
                    resource_location: r.resource_location.into_owned(),
                    site_id: r.site_id.into_owned(),
                    site_name: r.site_name.into_owned(),
                })
                .collect(),
        }
    }
}

/// The replay rule (module docs) on a parsed event: the body `timestamp` at most
/// `skew_seconds` in the future; for an `EVENT_START`, at least one `eventEnd` not more than
/// `skew_seconds` in the past and, when `window_seconds` is not 0, a `timestamp` at most
/// `window_seconds` old. An `EVENT_END` passes at any age. `now_unix_seconds` comes from the
/// caller's clock (the proxy's, in the filter).
pub fn check_freshness(
    event: &ReservationEvent,
    now_unix_seconds: i64,
    window_seconds: u64,
    skew_seconds: u64,
) -> Result<(), ValidationError> {
    freshness(
        event.event_type,
        &event.timestamp,
        event.events.iter().map(|r| r.event_end.as_str()),
        Clock {
            now: now_unix_seconds,
            window: window_seconds,
            skew: skew_seconds,
        },
    )
}

/// Whether an `EVENT_START` for a resource whose reservation ends at `event_end` (RFC 3339)
/// comes too late to provision it: `now_unix_seconds` is more than `skew_seconds` past
/// `event_end`. An `event_end` that cannot be read counts as passed (fail closed; [`validate`]
/// refuses such a body anyway). The filter refuses a START when this holds for every resource;
/// the sidecar applies it to each resource.
pub fn start_expired(event_end: &str, now_unix_seconds: i64, skew_seconds: u64) -> bool {
    rfc3339(event_end).map_or(true, |end| {
        i128::from(now_unix_seconds) - i128::from(end.unix_timestamp()) > i128::from(skew_seconds)
    })
}

/// The proxy clock and the two tolerances of the replay rule.
struct Clock {
    now: i64,
    window: u64,
    skew: u64,
}

fn freshness<'e>(
    event_type: EventType,
    timestamp: &str,
    mut event_ends: impl Iterator<Item = &'e str>,
    clock: Clock,
) -> Result<(), ValidationError> {
    let sent = rfc3339(timestamp)
        .map_err(|reason| ValidationError::at("$.timestamp", reason))?
        .unix_timestamp();
    let age = i128::from(clock.now) - i128::from(sent);
    if -age > i128::from(clock.skew) {
        return Err(ValidationError::at("$.timestamp", Reason::FromTheFuture));
    }
    if event_type == EventType::End {
        return Ok(());
    }
    if event_ends.all(|end| start_expired(end, clock.now, clock.skew)) {
        return Err(ValidationError::at("$.events", Reason::ReservationEnded));
    }
    if clock.window != 0 && age > i128::from(clock.window) {
        return Err(ValidationError::at("$.timestamp", Reason::Stale));
    }
    Ok(())
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ValidationError> {
    // Fast path without path tracking; only a refused body pays for a second, tracked pass.
    if let Ok(event) = serde_json::from_slice(body) {
        return Ok(event);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let event: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(event) => event,
        Err(err) => {
            let path = json_path(err.path());
            let inner = err.into_inner();
            let message = inner.to_string();
            let reason = match inner.classify() {
                serde_json::error::Category::Data => {
                    if message.starts_with("missing field") {
                        Reason::Missing
                    } else {
                        Reason::WrongType
                    }
                }
                _ => return Err(ValidationError::at("$", Reason::MalformedJson)),
            };
            let path = match (reason, message.split('`').nth(1)) {
                // serde reports a missing field at its parent; name the field itself.
                (Reason::Missing, Some(field)) => format!("{path}.{field}"),
                _ => path,
            };
            return Err(ValidationError::at(path, reason));
        }
    };
    // Trailing non-whitespace after the object is a syntax error, not a schema one.
    de.end()
        .map_err(|_| ValidationError::at("$", Reason::MalformedJson))?;
    Ok(event)
}

fn json_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::from("$");
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn check(e: &EventView<'_>) -> Result<(), ValidationError> {
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
    check_ssh_key(&e.ssh_public_key)?;
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

fn rfc3339(value: &str) -> Result<OffsetDateTime, Reason> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| Reason::NotRfc3339)
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
fn has_control(s: &str, allow_line_breaks: bool) -> bool {
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

/// One line `<type> <base64> [comment]`; see the module docs.
pub fn check_ssh_key(key: &str) -> Result<(), ValidationError> {
    let err = |reason| ValidationError::at("$.sshPublicKey", reason);
    if key.len() > MAX_SSH_KEY_LEN {
        return Err(err(Reason::TooLong));
    }
    if has_control(key, false) {
        return Err(err(Reason::ControlCharacter));
    }
    let mut parts = key.splitn(3, ' ');
    let (Some(kind), Some(data)) = (parts.next(), parts.next()) else {
        return Err(err(Reason::BadSshKeyFormat));
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(err(Reason::UnknownSshKeyType));
    }
    if let Some(comment) = parts.next() {
        let ok = !comment.is_empty()
            && comment.len() <= MAX_SSH_COMMENT
            && !comment.starts_with(' ')
            && comment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " @._+=:,/-".contains(c));
        if !ok {
            return Err(err(Reason::BadSshKeyComment));
        }
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| err(Reason::BadSshKeyBlob))?;
    check_ssh_blob(kind, &blob).map_err(err)
}

/// Reads SSH wire-format strings (`u32` big-endian length, then bytes).
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn string(&mut self) -> Result<&'a [u8], Reason> {
        let (len, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or(Reason::BadSshKeyBlob)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| Reason::BadSshKeyBlob)?;
        if rest.len() < len {
            return Err(Reason::BadSshKeyBlob);
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(s)
    }

    fn done(&self) -> Result<(), Reason> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Reason::BadSshKeyBlob)
        }
    }
}

fn check_ssh_blob(kind: &str, blob: &[u8]) -> Result<(), Reason> {
    let mut w = Wire(blob);
    if w.string()? != kind.as_bytes() {
        return Err(Reason::BadSshKeyBlob);
    }
    match kind {
        "ssh-ed25519" => {
            if w.string()?.len() != 32 {
                return Err(Reason::BadSshKeyBlob);
            }
        }
        "ssh-rsa" => {
            let e = w.string()?;
            let n = w.string()?;
            if e.is_empty() || n.is_empty() {
                return Err(Reason::BadSshKeyBlob);
            }
            // mpint: a leading zero byte keeps the number positive.
            let n = n.strip_prefix(&[0]).unwrap_or(n);
            let bits =
                (n.len() * 8).saturating_sub(n.first().map_or(8, |b| b.leading_zeros() as usize));
            if bits < MIN_RSA_BITS {
                return Err(Reason::WeakSshKey);
            }
        }
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => {
            let curve = w.string()?;
            if kind.strip_prefix("ecdsa-sha2-").map(str::as_bytes) != Some(curve) {
                return Err(Reason::BadSshKeyBlob);
            }
            let point = w.string()?;
            if point.first() != Some(&4) || point.len() < 65 {
                return Err(Reason::BadSshKeyBlob);
            }
        }
        "sk-ssh-ed25519@openssh.com" => {
            if w.string()?.len() != 32 {
                return Err(Reason::BadSshKeyBlob);
            }
            w.string()?; // application, e.g. "ssh:"
        }
        _ => {
            // sk-ecdsa-sha2-nistp256@openssh.com: curve, point, application.
            if w.string()? != b"nistp256" {
                return Err(Reason::BadSshKeyBlob);
            }
            w.string()?;
            w.string()?;
        }
    }
    w.done()
}
