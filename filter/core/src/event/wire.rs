//! Reading a body: one serde pass over the union of the three shapes' fields, strings borrowed
//! from the body where they hold no escapes, then normalised into a [`ReservationMessage`]
//! with the fields each action needs; the JSON path of whatever is refused, named as the
//! sender spelt it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};

use super::{
    Action, EventType, MAX_EVENTS, Reason, Reservation, ReservationMessage, Shape, User,
    ValidationError,
};

/// The body as any sender writes it. Which fields a shape needs is decided by [`read`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "opt_id")]
    webhook_id: Option<Cow<'a, str>>,
    // --- the batch ---
    #[serde(default)]
    event_count: Option<u32>,
    #[serde(default, borrow)]
    events: Option<Vec<Item<'a>>>,
    // --- the user (batch and flat) ---
    #[serde(default, borrow, deserialize_with = "opt_text")]
    user_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    username: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    email: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    ssh_public_key: Option<Cow<'a, str>>,
    // --- the flat event: one reservation at the top level ---
    #[serde(default, borrow, deserialize_with = "opt_id")]
    event_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    event_title: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    event_description: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    event_start: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    event_end: Option<Cow<'a, str>>,
    #[serde(default)]
    resource_id: Option<i64>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    resource_name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    resource_type: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    resource_specs: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    resource_location: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    site_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    site_name: Option<Cow<'a, str>>,
    // --- reservation-be's envelope: read in a second pass, for the types that act on it ---
    #[serde(default)]
    data: Option<IgnoredAny>,
}

/// One item of a batch's `events`: the reservation's identity and resource are always there.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item<'a> {
    #[serde(borrow, deserialize_with = "id")]
    event_id: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    event_title: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    event_description: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    event_start: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    event_end: Option<Cow<'a, str>>,
    resource_id: i64,
    #[serde(borrow)]
    resource_name: Cow<'a, str>,
    #[serde(borrow)]
    resource_type: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    resource_specs: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    resource_location: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    site_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    site_name: Option<Cow<'a, str>>,
}

/// reservation-be's envelope, as far as EVENT_UPDATED and EVENT_DELETED need it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow, deserialize_with = "opt_data")]
    data: Option<Data<'a>>,
}

/// `data` of EVENT_UPDATED (the reservation entity) and EVENT_DELETED (its copy).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    #[serde(borrow, deserialize_with = "id")]
    id: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    title: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    description: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    start: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    end: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    updated_at: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    keycloak_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    resource: DataResource<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataResource<'a> {
    id: i64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: DataResourceType<'a>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    specs: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    location: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_text")]
    site_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DataResourceType<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// A field of a reservation, for naming it in a refusal in the shape it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    EventId,
    Title,
    Description,
    Start,
    End,
    UpdatedAt,
    ResourceId,
    ResourceName,
    ResourceType,
    Specs,
    Location,
    SiteId,
    SiteName,
}

impl Field {
    /// The name in the batch's items and the flat event.
    fn event_name(self) -> &'static str {
        match self {
            Field::EventId => "eventId",
            Field::Title => "eventTitle",
            Field::Description => "eventDescription",
            Field::Start => "eventStart",
            Field::End => "eventEnd",
            Field::UpdatedAt => "updatedAt",
            Field::ResourceId => "resourceId",
            Field::ResourceName => "resourceName",
            Field::ResourceType => "resourceType",
            Field::Specs => "resourceSpecs",
            Field::Location => "resourceLocation",
            Field::SiteId => "siteId",
            Field::SiteName => "siteName",
        }
    }

    /// The path under reservation-be's `data`.
    fn data_name(self) -> &'static str {
        match self {
            Field::EventId => "id",
            Field::Title => "title",
            Field::Description => "description",
            Field::Start => "start",
            Field::End => "end",
            Field::UpdatedAt => "updatedAt",
            Field::ResourceId => "resource.id",
            Field::ResourceName => "resource.name",
            Field::ResourceType => "resource.type.name",
            Field::Specs => "resource.specs",
            Field::Location => "resource.location",
            Field::SiteId => "resource.siteId",
            Field::SiteName => "resource.siteName",
        }
    }
}

/// The JSON path of `field` of reservation `index` in a message of `shape`.
pub(super) fn path(shape: Shape, index: usize, field: Field) -> String {
    match shape {
        Shape::Batch => format!("$.events[{index}].{}", field.event_name()),
        Shape::Flat => format!("$.{}", field.event_name()),
        Shape::Envelope => format!("$.data.{}", field.data_name()),
    }
}

/// The JSON path of the user's id in a message of `shape`.
pub(super) fn user_id_path(shape: Shape) -> &'static str {
    match shape {
        Shape::Envelope => "$.data.keycloakId",
        Shape::Batch | Shape::Flat => "$.userId",
    }
}

/// Reads `body` into the model: the batch when it has `events`, else the flat event, for a
/// START or END; reservation-be's `data` for an UPDATED or DELETED; no reservation for a type
/// nobody acts on. Absent fields an action needs are [`Reason::Missing`].
pub(super) fn read(body: &[u8]) -> Result<ReservationMessage<'_>, ValidationError> {
    // JSON is UTF-8 throughout (RFC 8259), members nobody reads included: serde_json skips
    // an ignored string without checking it.
    if std::str::from_utf8(body).is_err() {
        return Err(ValidationError::at("$", Reason::MalformedJson));
    }
    // serde would read a struct from an array too, field by field: a message is an object.
    if body.iter().find(|b| !b" \t\r\n".contains(b)) != Some(&b'{') {
        let reason = match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => Reason::WrongType,
            Err(_) => Reason::MalformedJson,
        };
        return Err(ValidationError::at("$", reason));
    }
    let b: Body<'_> = parse(body)?;
    let event_type = EventType::from_name(&b.event_type);
    let mut user = User {
        user_id: b.user_id,
        username: b.username,
        email: b.email,
        ssh_public_key: b.ssh_public_key,
    };
    let (shape, reservations) = match event_type {
        EventType::Start | EventType::End => match b.events {
            Some(items) => {
                if items.len() > MAX_EVENTS {
                    return Err(ValidationError::at("$.events", Reason::TooLong));
                }
                if b.event_count
                    .is_some_and(|n| usize::try_from(n).ok() != Some(items.len()))
                {
                    return Err(ValidationError::at("$.eventCount", Reason::CountMismatch));
                }
                (
                    Shape::Batch,
                    items.into_iter().map(Item::reservation).collect(),
                )
            }
            None => {
                let at = |field| path(Shape::Flat, 0, field);
                let missing = |field| ValidationError::at(at(field), Reason::Missing);
                let r = Reservation {
                    event_id: b.event_id.ok_or_else(|| missing(Field::EventId))?,
                    title: b.event_title,
                    description: b.event_description,
                    start: b.event_start,
                    end: b.event_end,
                    updated_at: None,
                    resource_id: b.resource_id.ok_or_else(|| missing(Field::ResourceId))?,
                    resource_name: b
                        .resource_name
                        .ok_or_else(|| missing(Field::ResourceName))?,
                    resource_type: b
                        .resource_type
                        .ok_or_else(|| missing(Field::ResourceType))?,
                    resource_specs: b.resource_specs,
                    resource_location: b.resource_location,
                    site_id: b.site_id,
                    site_name: b.site_name,
                };
                (Shape::Flat, vec![r])
            }
        },
        EventType::Updated | EventType::Deleted => {
            if b.data.is_none() {
                return Err(ValidationError::at("$.data", Reason::Missing));
            }
            let envelope: Envelope<'_> = parse(body)?;
            match envelope.data {
                Some(data) => {
                    user.user_id = data.keycloak_id.clone();
                    (Shape::Envelope, vec![data.reservation()])
                }
                // `data` that is not an object: reservation-be writes a string when it cannot
                // serialise the entity. Nothing can be acted on; the message is still valid.
                None => (Shape::Envelope, Vec::new()),
            }
        }
        _ => (Shape::Envelope, Vec::new()),
    };
    let message = ReservationMessage {
        event_type,
        event_name: b.event_type,
        timestamp: b.timestamp,
        shape,
        webhook_id: b.webhook_id,
        user,
        reservations,
    };
    require_for_action(&message)?;
    Ok(message)
}

/// What an action needs beyond the reservation's identity and resource: a START its user and
/// both times, an UPDATED its new end.
fn require_for_action(m: &ReservationMessage<'_>) -> Result<(), ValidationError> {
    let missing = |path: String| Err(ValidationError::at(path, Reason::Missing));
    match m.event_type.action() {
        Action::Start => {
            if m.user.user_id.is_none() {
                return missing(user_id_path(m.shape).to_owned());
            }
            for (i, r) in m.reservations.iter().enumerate() {
                if r.start.is_none() {
                    return missing(path(m.shape, i, Field::Start));
                }
                if r.end.is_none() {
                    return missing(path(m.shape, i, Field::End));
                }
            }
        }
        Action::Update => {
            for (i, r) in m.reservations.iter().enumerate() {
                if r.end.is_none() {
                    return missing(path(m.shape, i, Field::End));
                }
            }
        }
        Action::Release | Action::Nothing => {}
    }
    Ok(())
}

impl<'a> Item<'a> {
    fn reservation(self) -> Reservation<'a> {
        Reservation {
            event_id: self.event_id,
            title: self.event_title,
            description: self.event_description,
            start: self.event_start,
            end: self.event_end,
            updated_at: None,
            resource_id: self.resource_id,
            resource_name: self.resource_name,
            resource_type: self.resource_type,
            resource_specs: self.resource_specs,
            resource_location: self.resource_location,
            site_id: self.site_id,
            site_name: self.site_name,
        }
    }
}

impl<'a> Data<'a> {
    fn reservation(self) -> Reservation<'a> {
        Reservation {
            event_id: self.id,
            title: self.title,
            description: self.description,
            start: self.start,
            end: self.end,
            updated_at: self.updated_at,
            resource_id: self.resource.id,
            resource_name: self.resource.name,
            resource_type: self.resource.kind.name,
            resource_specs: self.resource.specs,
            resource_location: self.resource.location,
            site_id: self.resource.site_id,
            site_name: None,
        }
    }
}

// === field readers ===

/// A string, borrowed when it holds no escape; `null` reads as absent.
fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    d.deserialize_option(OptionOf(TEXT))
}

/// An identifier the senders write as a string or as a number (`webhookId`, reservation-be's
/// `data.id`), read as a string.
fn id<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, str>, D::Error> {
    d.deserialize_any(ID)
}

/// [`id`], or absent (`null` included).
fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    d.deserialize_option(OptionOf(ID))
}

/// `data` when it is an object; anything else (reservation-be's "Payload serialization failed"
/// string) reads as absent.
fn opt_data<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Data<'de>>, D::Error> {
    d.deserialize_any(DataVisitor)
}

/// A string, borrowed from the input where it allows; with `integers`, a JSON integer too, as
/// its decimal text (the senders write ids either way).
#[derive(Clone, Copy)]
struct Str {
    integers: bool,
}

/// A string field.
const TEXT: Str = Str { integers: false };
/// An id: a string or an integer.
const ID: Str = Str { integers: true };

impl<'de> Visitor<'de> for Str {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.integers {
            "a string or an integer"
        } else {
            "a string"
        })
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        if self.integers {
            Ok(Cow::Owned(v.to_string()))
        } else {
            Err(E::invalid_type(de::Unexpected::Unsigned(v), &self))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if self.integers {
            Ok(Cow::Owned(v.to_string()))
        } else {
            Err(E::invalid_type(de::Unexpected::Signed(v), &self))
        }
    }
}

/// `null` (or absent) as `None`, anything else through `V`.
struct OptionOf<V>(V);

impl<'de, V: Visitor<'de> + Copy> Visitor<'de> for OptionOf<V> {
    type Value = Option<V::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Option<Data<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Data::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

// === parsing with paths ===

/// Deserializes `body`; a refusal names the field (missing or of the wrong type) or `$`
/// (not JSON).
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ValidationError> {
    // Fast path without path tracking; only a refused body pays for a second, tracked pass.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => value,
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
    Ok(value)
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
