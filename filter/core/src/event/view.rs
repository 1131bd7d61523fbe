//! Reading a body: borrowing twins of the event types (strings borrowed from the body where it
//! holds no escapes) and the JSON path of a field serde refused.

use std::borrow::Cow;

use serde::Deserialize;

use super::{EventType, Reason, ReservationEvent, ReservedResource, ValidationError};

/// Borrowing twin of [`ReservationEvent`] (same serde shape), so validation allocates little.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventView<'a> {
    pub(super) event_type: EventType,
    #[serde(borrow)]
    pub(super) timestamp: Cow<'a, str>,
    pub(super) event_count: u32,
    #[serde(borrow)]
    pub(super) user_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) username: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) email: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) ssh_public_key: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) events: Vec<ResourceView<'a>>,
}

/// Borrowing twin of [`ReservedResource`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResourceView<'a> {
    #[serde(borrow)]
    pub(super) event_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) event_title: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) event_description: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) event_start: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) event_end: Cow<'a, str>,
    pub(super) resource_id: i64,
    #[serde(borrow)]
    pub(super) resource_name: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) resource_type: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) resource_specs: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) resource_location: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) site_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) site_name: Cow<'a, str>,
}

impl EventView<'_> {
    pub(super) fn into_owned(self) -> ReservationEvent {
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

/// Deserializes `body`; a refusal names the field (missing or of the wrong type) or `$`
/// (not JSON).
pub(super) fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ValidationError> {
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
