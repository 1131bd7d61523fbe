//! The reservation system's messages, read into one normalised model, and their validation.
//!
//! Shared contract: the filter validates a body at the edge with [`check_body`], the sidecar
//! gets the very [`ReservationMessage`] that check built (`webhook_core::flow`) and acts on it.
//! Field names follow the senders' camelCase JSON; unknown extra fields are ignored (the senders
//! add some over time).
//!
//! # The shapes the real senders put on the wire
//! ```text
//!  batch (processor 0.1.15, the replaced README)   {eventType, timestamp, webhookId:"5",
//!                                                   eventCount, userId, username?, email?,
//!                                                   sshPublicKey?, events:[{eventId, ...}],
//!                                                   activeResources?}
//!  flat (processor 0.1.16+)                         {eventType, timestamp, webhookId?:5,
//!                                                   eventId, userId, username?, ..., eventStart,
//!                                                   eventEnd, resourceId, resourceName, ...}
//!  envelope (reservation-be)                        {eventType, timestamp, webhookId:"5",
//!                                                   data:{id, start, end, keycloakId?,
//!                                                   resource:{id, name, type:{name}}, ...}}
//!          │ wire.rs: one serde pass over the union of the shapes' fields (strings borrowed
//!          │          from the body), a second one into `data` for EVENT_UPDATED/DELETED
//!          ▼
//!  ReservationMessage { event_type, timestamp, webhook_id, user, reservations: [Reservation] }
//!          │ fields.rs: the field rules          check_freshness: the replay rule
//!          ▼
//!  the filter forwards it; the sidecar acts per reservation (EventType::action)
//! ```
//! Absent optional fields are absent (the senders never write `null`; a `null` reads as
//! absent all the same). A correctly signed message of a type nobody acts on (EVENT_CREATED,
//! RESOURCE_*, the admin's test webhook `ALL`, a type added later) is valid with no
//! reservations: the sidecar answers 2xx "nothing to do", never a 4xx the sender would retry.
//!
//! What is checked, and why: only what the action needs and what cannot be made safe where the
//! values land (annotations, notifications, logs; the cloud-config is rendered by a YAML
//! serializer). docs/filter.md ("Validation of reservation messages") gives each rule its
//! reason:
//! - `eventType` and `timestamp` (RFC 3339) on every message;
//! - EVENT_START: `userId`, and per reservation `eventId`, `resourceId`, `resourceName`,
//!   `resourceType`, `eventStart` and `eventEnd` (RFC 3339, end after start);
//! - EVENT_END and EVENT_DELETED: the reservation's identity and resource only (`eventId`,
//!   `resourceId`, `resourceName`, `resourceType`); EVENT_UPDATED also its new end;
//! - the batch: at most [`MAX_EVENTS`] `events`, and `eventCount` (when sent) equals their
//!   number;
//! - identifiers (`eventId`, `userId`, `webhookId`, `resourceType`, `siteId`, `username`,
//!   `email`) one line of at most [`MAX_SHORT`] characters without control characters; free
//!   text (titles, descriptions, specs, names, locations) at most [`MAX_TEXT`] characters, line
//!   breaks and tabs allowed, no other control character;
//! - `sshPublicKey` at most [`MAX_SSH_KEY_LEN`] bytes: whether it is a usable key is the
//!   sidecar's judgement ([`check_ssh_key`]), which fails the reservation with a reason the
//!   user is told, instead of a 422 nobody sees;
//! - `resourceId` not negative (it becomes a Kubernetes label value).
//!
//! # Replay rule ([`check_body`], [`check_freshness`], [`start_expired`])
//! The body `timestamp` may be at most the clock skew in the future, for every message. Only an
//! EVENT_START can do harm late: it is accepted until the last `eventEnd` of its reservations
//! has passed (plus the skew), and the optional replay window bounds the age of its `timestamp`
//! as well. Every other message is accepted at any age: an END or DELETED only ever releases
//! what that reservation holds, so an outage longer than any window must not leave a host
//! provisioned. The sidecar applies [`start_expired`] per reservation.
//!
//! # Layout
//! This file holds the model, the errors, the entry points and the replay rule; `wire.rs` reads
//! a body (and names the JSON path of a refusal), `fields.rs` checks every field, `ssh_key.rs`
//! judges an SSH public key.

mod fields;
mod ssh_key;
mod wire;

pub use ssh_key::{KeyProblem, MIN_RSA_BITS, SSH_KEY_TYPES, check_ssh_key};

use std::borrow::Cow;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Upper bound on the reservations of one message (`events` of a batch).
pub const MAX_EVENTS: usize = 100;
/// Upper bound on identifiers, in characters.
pub const MAX_SHORT: usize = 256;
/// Upper bound on free text (titles, descriptions, specs, names), in characters.
pub const MAX_TEXT: usize = 4096;
/// Upper bound on the `sshPublicKey` string, in bytes (a 16384-bit RSA key and a long comment
/// fit; it is stored in a BMH annotation).
pub const MAX_SSH_KEY_LEN: usize = 8192;

/// What a message says happened: the names of reservation-be's `WebhookEventType` and the
/// processor's two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A reservation begins (the processor, 0 to 5 minutes before its start).
    Start,
    /// A reservation ended (the processor, 0 to 60 s after its end; possibly twice, or lost).
    End,
    /// A reservation was booked.
    Created,
    /// A reservation was edited: its times, resource or owner.
    Updated,
    /// A reservation was deleted, at any time: no START or END of it follows.
    Deleted,
    /// A resource was added.
    ResourceCreated,
    /// A resource was edited.
    ResourceUpdated,
    /// A resource's status changed.
    ResourceStatusChanged,
    /// A resource was removed.
    ResourceDeleted,
    /// The admin's "Test" button (`eventType` `ALL`).
    Test,
    /// A type this model does not know (a later version of the sender may add some).
    Other,
}

/// What a message asks the client to do with each of its reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Provision the reserved hosts (EVENT_START).
    Start,
    /// Release what these reservations hold (EVENT_END, EVENT_DELETED).
    Release,
    /// Record a held reservation's new end (EVENT_UPDATED).
    Update,
    /// Nothing: verified, answered 2xx.
    Nothing,
}

impl EventType {
    /// Every type with a name, and its name on the wire.
    const NAMES: [(EventType, &'static str); 10] = [
        (EventType::Start, "EVENT_START"),
        (EventType::End, "EVENT_END"),
        (EventType::Created, "EVENT_CREATED"),
        (EventType::Updated, "EVENT_UPDATED"),
        (EventType::Deleted, "EVENT_DELETED"),
        (EventType::ResourceCreated, "RESOURCE_CREATED"),
        (EventType::ResourceUpdated, "RESOURCE_UPDATED"),
        (EventType::ResourceStatusChanged, "RESOURCE_STATUS_CHANGED"),
        (EventType::ResourceDeleted, "RESOURCE_DELETED"),
        (EventType::Test, "ALL"),
    ];

    /// The type a wire name stands for ([`EventType::Other`] for a name not in the model).
    pub fn from_name(name: &str) -> Self {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map_or(EventType::Other, |(t, _)| *t)
    }

    /// The wire name, as the senders spell it (`OTHER` for [`EventType::Other`]; the message
    /// keeps the sender's spelling in [`ReservationMessage::event_name`]).
    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("OTHER", |(_, n)| n)
    }

    /// What the client does for this type.
    pub fn action(self) -> Action {
        match self {
            EventType::Start => Action::Start,
            EventType::End | EventType::Deleted => Action::Release,
            EventType::Updated => Action::Update,
            _ => Action::Nothing,
        }
    }
}

/// Which of the senders' shapes a message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `events[]` (processor 0.1.15, the replaced service's README).
    Batch,
    /// One reservation at the top level (processor 0.1.16 and later).
    Flat,
    /// reservation-be's `{eventType, timestamp, webhookId, data}`.
    Envelope,
}

/// One message of the reservation system, normalised: whatever its shape, the user and the
/// reservations it concerns. Strings borrow from the body where it holds no escapes; the
/// sidecar keeps an owned copy ([`ReservationMessage::into_owned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationMessage<'a> {
    /// What happened.
    pub event_type: EventType,
    /// `eventType` as the sender spelt it.
    pub event_name: Cow<'a, str>,
    /// When the sender emitted the message (RFC 3339).
    pub timestamp: Cow<'a, str>,
    /// The shape it came in.
    pub shape: Shape,
    /// The sender's webhook id (a string in the batch and the envelope, a number in the flat
    /// event, absent in processor 0.1.17): the id a notification quotes back.
    pub webhook_id: Option<Cow<'a, str>>,
    /// Whose reservations these are.
    pub user: User<'a>,
    /// The reservations concerned, one per reserved resource (none for types nobody acts on).
    pub reservations: Vec<Reservation<'a>>,
}

/// The user of a message. Only `user_id` is always sent with a START or END; the processor
/// omits `username` and `email` when its Keycloak lookup fails, and `sshPublicKey` when the
/// user has no key. reservation-be's envelope carries only the owner's id (`keycloakId`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User<'a> {
    /// Keycloak id.
    pub user_id: Option<Cow<'a, str>>,
    /// Keycloak username (metadata only: the login account is the site's, not this).
    pub username: Option<Cow<'a, str>>,
    /// E-mail address (metadata only).
    pub email: Option<Cow<'a, str>>,
    /// The user's SSH public key, as stored in reservation-be.
    pub ssh_public_key: Option<Cow<'a, str>>,
}

/// One reservation of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation<'a> {
    /// The reservation's id in reservation-be (`eventId`, or `data.id`).
    pub event_id: Cow<'a, str>,
    /// `eventTitle` / `data.title`.
    pub title: Option<Cow<'a, str>>,
    /// `eventDescription` / `data.description`.
    pub description: Option<Cow<'a, str>>,
    /// `eventStart` / `data.start` (RFC 3339; checked for a START only).
    pub start: Option<Cow<'a, str>>,
    /// `eventEnd` / `data.end` (RFC 3339; checked for a START and an UPDATED only).
    pub end: Option<Cow<'a, str>>,
    /// `data.updatedAt` of reservation-be's envelope: orders two EVENT_UPDATEDs (it re-sends a
    /// failed one long after a later one succeeded).
    pub updated_at: Option<Cow<'a, str>>,
    /// `resourceId` / `data.resource.id`.
    pub resource_id: i64,
    /// `resourceName` / `data.resource.name`.
    pub resource_name: Cow<'a, str>,
    /// `resourceType` / `data.resource.type.name` (e.g. `Server`).
    pub resource_type: Cow<'a, str>,
    /// `resourceSpecs` / `data.resource.specs`.
    pub resource_specs: Option<Cow<'a, str>>,
    /// `resourceLocation` / `data.resource.location`.
    pub resource_location: Option<Cow<'a, str>>,
    /// `siteId` / `data.resource.siteId`.
    pub site_id: Option<Cow<'a, str>>,
    /// `siteName`.
    pub site_name: Option<Cow<'a, str>>,
}

/// Why a body was refused. [`Reason::MalformedJson`] answers 400, every other reason 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The body is not JSON at all (syntax error, truncated, not UTF-8).
    #[error("body is not valid JSON")]
    MalformedJson,
    /// A field the message's action needs is absent.
    #[error("required field is missing")]
    Missing,
    /// A field has the wrong JSON type.
    #[error("field has the wrong type")]
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
    /// `eventCount` differs from the number of `events`.
    #[error("does not match the number of events")]
    CountMismatch,
    /// A negative number where only non-negative ones are valid (`resourceId`).
    #[error("must not be negative")]
    Negative,
    /// An EVENT_START whose `timestamp` is older than the configured replay window.
    #[error("event is older than the replay window")]
    Stale,
    /// An EVENT_START that arrives after every reservation's `eventEnd` (plus the clock skew):
    /// the reservation is over, nothing may be provisioned for it.
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

/// Reads a body in any of the senders' shapes and checks every field rule (no clock: see
/// [`check_freshness`] for the replay rule).
pub fn validate(body: &[u8]) -> Result<ReservationMessage<'_>, ValidationError> {
    let message = wire::read(body)?;
    fields::check(&message)?;
    Ok(message)
}

/// [`validate`] plus [`check_freshness`]: what the filter runs per request, and what the
/// sidecar's own check hands to its handler.
pub fn check_body(
    body: &[u8],
    now_unix_seconds: i64,
    window_seconds: u64,
    skew_seconds: u64,
) -> Result<ReservationMessage<'_>, ValidationError> {
    let message = validate(body)?;
    check_freshness(&message, now_unix_seconds, window_seconds, skew_seconds)?;
    Ok(message)
}

/// The replay rule (module docs) on a parsed message: the body `timestamp` at most
/// `skew_seconds` in the future; for an EVENT_START with reservations, at least one `eventEnd`
/// not more than `skew_seconds` in the past and, when `window_seconds` is not 0, a `timestamp`
/// at most `window_seconds` old. Every other message passes at any age. `now_unix_seconds`
/// comes from the caller's clock (the proxy's, in the filter).
pub fn check_freshness(
    message: &ReservationMessage<'_>,
    now_unix_seconds: i64,
    window_seconds: u64,
    skew_seconds: u64,
) -> Result<(), ValidationError> {
    let sent = rfc3339(&message.timestamp)
        .map_err(|reason| ValidationError::at("$.timestamp", reason))?
        .unix_timestamp();
    let age = i128::from(now_unix_seconds) - i128::from(sent);
    if -age > i128::from(skew_seconds) {
        return Err(ValidationError::at("$.timestamp", Reason::FromTheFuture));
    }
    if message.event_type != EventType::Start || message.reservations.is_empty() {
        return Ok(());
    }
    let ended = message.reservations.iter().all(|r| {
        r.end
            .as_deref()
            .is_none_or(|end| start_expired(end, now_unix_seconds, skew_seconds))
    });
    if ended {
        let path = match message.shape {
            Shape::Batch => "$.events",
            Shape::Flat | Shape::Envelope => "$.eventEnd",
        };
        return Err(ValidationError::at(path, Reason::ReservationEnded));
    }
    if window_seconds != 0 && age > i128::from(window_seconds) {
        return Err(ValidationError::at("$.timestamp", Reason::Stale));
    }
    Ok(())
}

/// Whether an EVENT_START for a reservation that ends at `event_end` (RFC 3339) comes too late
/// to provision it: `now_unix_seconds` is more than `skew_seconds` past `event_end`. An
/// `event_end` that cannot be read counts as passed (fail closed; [`validate`] refuses such a
/// START anyway). The filter refuses a START when this holds for every reservation; the sidecar
/// applies it to each one.
pub fn start_expired(event_end: &str, now_unix_seconds: i64, skew_seconds: u64) -> bool {
    rfc3339(event_end).map_or(true, |end| {
        i128::from(now_unix_seconds) - i128::from(end.unix_timestamp()) > i128::from(skew_seconds)
    })
}

/// An RFC 3339 date-time with `T` (or `t`) between date and time, as the senders write it and
/// the JSON Schema says. The `time` crate alone also reads another character there (RFC 3339's
/// note on readability), which the schema refuses: one contract, so that is refused here too.
fn rfc3339(value: &str) -> Result<OffsetDateTime, Reason> {
    if !matches!(value.as_bytes().get(10), Some(b'T' | b't')) {
        return Err(Reason::NotRfc3339);
    }
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| Reason::NotRfc3339)
}

fn owned(s: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    s.map(|s| Cow::Owned(s.into_owned()))
}

impl ReservationMessage<'_> {
    /// The same message with every string owned (what outlives the request body).
    pub fn into_owned(self) -> ReservationMessage<'static> {
        ReservationMessage {
            event_type: self.event_type,
            event_name: Cow::Owned(self.event_name.into_owned()),
            timestamp: Cow::Owned(self.timestamp.into_owned()),
            shape: self.shape,
            webhook_id: owned(self.webhook_id),
            user: User {
                user_id: owned(self.user.user_id),
                username: owned(self.user.username),
                email: owned(self.user.email),
                ssh_public_key: owned(self.user.ssh_public_key),
            },
            reservations: self
                .reservations
                .into_iter()
                .map(Reservation::into_owned)
                .collect(),
        }
    }
}

impl Reservation<'_> {
    /// The same reservation with every string owned.
    pub fn into_owned(self) -> Reservation<'static> {
        Reservation {
            event_id: Cow::Owned(self.event_id.into_owned()),
            title: owned(self.title),
            description: owned(self.description),
            start: owned(self.start),
            end: owned(self.end),
            updated_at: owned(self.updated_at),
            resource_id: self.resource_id,
            resource_name: Cow::Owned(self.resource_name.into_owned()),
            resource_type: Cow::Owned(self.resource_type.into_owned()),
            resource_specs: owned(self.resource_specs),
            resource_location: owned(self.resource_location),
            site_id: owned(self.site_id),
            site_name: owned(self.site_name),
        }
    }
}
