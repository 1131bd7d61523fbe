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
//!
//! # Layout
//! This file holds the types, the errors, the entry points and the replay rule; `view.rs`
//! reads a body into borrowing twins of the types (and names the JSON path of a refusal),
//! `fields.rs` checks every field, `ssh_key.rs` the `sshPublicKey`.

mod fields;
mod ssh_key;
mod view;

pub use fields::{RESERVED_USERNAMES, check_email, check_username};
pub use ssh_key::{MAX_SSH_COMMENT, MAX_SSH_KEY_LEN, MIN_RSA_BITS, SSH_KEY_TYPES, check_ssh_key};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use view::EventView;

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
/// Upper bound on short identifiers and names, in characters.
pub const MAX_SHORT: usize = 256;
/// Upper bound on free-text descriptions, in characters.
pub const MAX_TEXT: usize = 4096;

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
    let event: EventView<'_> = view::parse(body)?;
    fields::check(&event)?;
    Ok(event.into_owned())
}

/// [`validate`] plus [`check_freshness`], without building the owned event: what the filter
/// runs per request (strings are borrowed from the body, not allocated).
pub fn check_body(
    body: &[u8],
    now_unix_seconds: i64,
    window_seconds: u64,
    skew_seconds: u64,
) -> Result<(), ValidationError> {
    let event: EventView<'_> = view::parse(body)?;
    fields::check(&event)?;
    freshness(
        event.event_type,
        &event.timestamp,
        event.events.iter().map(|r| &*r.event_end),
        Clock {
            now: now_unix_seconds,
            window: window_seconds,
            skew: skew_seconds,
        },
    )
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

/// An RFC 3339 date-time.
fn rfc3339(value: &str) -> Result<OffsetDateTime, Reason> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| Reason::NotRfc3339)
}
