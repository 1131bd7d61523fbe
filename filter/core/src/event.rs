//! The reservation event the reservation system POSTs to `/webhook`.
//!
//! Shared contract: the filter validates it at the edge, the sidecar deserializes it again
//! (defence in depth) and acts on it. Field names follow the sender's camelCase JSON.

use serde::{Deserialize, Serialize};

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
