//! `POST /webhook`: validate the event, map each resource to a BMH, record the intent on the
//! BMH with a conditional merge patch, and report a result per resource. The slow work (Secret,
//! spec, waiting, notifying) is the reconciler's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::join_all;
use jiff::Timestamp;
use kube::api::DynamicObject;
use serde::Serialize;
use webhook_core::event::{EventType, ReservationEvent, ReservedResource};

use crate::error::{Error, Result};
use crate::k8s::Write;
use crate::metrics::inc;
use crate::model::{Holder, Host, HostLookup, dns1123};
use crate::plan::{ResourceOutcome, decide_end, decide_start};
use crate::state::AppState;

/// How often one host is re-read and re-decided after losing a resourceVersion race.
const MAX_ATTEMPTS: usize = 8;

/// One entry of `results` in the reply body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceResult {
    pub event_id: String,
    pub resource_id: i64,
    pub resource_name: String,
    /// `<namespace>/<name>` of the BMH, or null.
    pub bmh: Option<String>,
    pub result: ResourceOutcome,
    pub detail: String,
}

/// The success body: the replaced service's members (`status: "success"`, `message`,
/// `resourceName`, `eventType`, `timestamp`) plus `results`, one per resource.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub status: &'static str,
    pub message: String,
    /// The first BMH the event maps to (the replaced service named one BMH), else the first
    /// resource's `resourceName`.
    pub resource_name: String,
    pub event_type: EventType,
    pub timestamp: String,
    pub results: Vec<ResourceResult>,
}

/// Parses and validates a delivery with the filter's own rules (defence in depth: the filter
/// should already have rejected anything this refuses, and the refusal is answered as it would).
pub fn parse_event(body: &[u8]) -> Result<ReservationEvent> {
    Ok(webhook_core::event::validate(body)?)
}

/// Handles one delivery. Errors mean "nothing could be decided" (API server down): the sender
/// retries and intents already recorded are finished by the reconciler.
pub async fn handle(state: &AppState, ev: &ReservationEvent) -> Result<Accepted> {
    let results = join_all(ev.events.iter().map(|r| handle_resource(state, ev, r))).await;
    let results = results.into_iter().collect::<Result<Vec<_>>>()?;
    for r in &results {
        inc(
            &state.metrics.results,
            &[
                ("event_type", ev.event_type.as_str()),
                ("result", r.result.as_str()),
            ],
        );
    }
    let acted = results
        .iter()
        .filter(|r| {
            matches!(
                r.result,
                ResourceOutcome::Provisioning | ResourceOutcome::Releasing
            )
        })
        .count();
    let resource_name = results
        .iter()
        .find_map(|r| r.bmh.as_deref())
        .map(|key| key.rsplit('/').next().unwrap_or(key).to_owned())
        .or_else(|| ev.events.first().map(|r| r.resource_name.clone()))
        .unwrap_or_default();
    Ok(Accepted {
        status: "success",
        message: format!(
            "{} of {} resources {}",
            acted,
            results.len(),
            match ev.event_type {
                EventType::Start => "are being provisioned",
                EventType::End => "are being released",
            }
        ),
        resource_name,
        event_type: ev.event_type,
        timestamp: Timestamp::now().to_string(),
        results,
    })
}

async fn handle_resource(
    state: &AppState,
    ev: &ReservationEvent,
    r: &ReservedResource,
) -> Result<ResourceResult> {
    let result = |bmh: Option<String>, outcome: ResourceOutcome, detail: String| ResourceResult {
        event_id: r.event_id.clone(),
        resource_id: r.resource_id,
        resource_name: r.resource_name.clone(),
        bmh,
        result: outcome,
        detail,
    };
    let cfg = &state.config;
    if !cfg.is_bmh_type(&r.resource_type) {
        return Ok(result(
            None,
            ResourceOutcome::Skipped,
            format!("resource type {:?} is not a BareMetalHost", r.resource_type),
        ));
    }
    let not_found = || {
        result(
            None,
            ResourceOutcome::NotFound,
            format!(
                "no BareMetalHost in namespace {} labelled {}={} or named {:?}",
                cfg.namespace,
                cfg.resource_id_label,
                r.resource_id,
                dns1123(&r.resource_name)
            ),
        )
    };
    let cached = find_cached(state, r);
    let (mut obj, mut fresh) = match cached {
        Cached::Found(o) => (o.as_ref().clone(), false),
        // A synced watch cache is trusted for misses: a sender naming unknown resources must
        // not turn deliveries into API load. One fresh lookup per resource per MISS_TTL
        // covers a host created a moment ago that the watch has not delivered yet.
        Cached::Missing if !state.misses.should_look_up(&miss_key(r), Instant::now()) => {
            return Ok(not_found());
        }
        Cached::Missing | Cached::NotSynced => match find_bmh(state, r).await? {
            Some(o) => (o, true),
            None => return Ok(not_found()),
        },
    };
    let req = Holder::for_resource(ev, r);
    let gone = || {
        result(
            None,
            ResourceOutcome::NotFound,
            "the BareMetalHost was deleted".into(),
        )
    };
    for _ in 0..MAX_ATTEMPTS {
        let host = Host::from_object(&state.keys, &obj);
        let key = Some(host.key());
        let now = Timestamp::now();
        let decision = match ev.event_type {
            EventType::Start => decide_start(&state.keys, &state.policy, &host, &req, now),
            EventType::End => decide_end(&state.keys, &state.policy, &host, &req, now),
        };
        match decision.patch {
            // An answer that writes nothing must rest on a fresh read, not on the cache.
            None if fresh => return Ok(result(key, decision.outcome, decision.detail)),
            None => {}
            Some(patch) => match state.kube.patch_bmh(&host.name, &patch).await? {
                Write::Done(_) => {
                    tracing::info!(bmh = %host.key(), event_id = %r.event_id, result = decision.outcome.as_str(), detail = %decision.detail, "intent recorded");
                    return Ok(result(key, decision.outcome, decision.detail));
                }
                Write::Refused(message) => {
                    // Metal3's webhook validates the whole host on every write: a host that
                    // breaks its rules cannot be taken until an operator fixes it.
                    return Ok(result(
                        key,
                        ResourceOutcome::Unavailable,
                        format!("the API server refused the write: {message}"),
                    ));
                }
                Write::Conflict => {}
                Write::Gone => return Ok(gone()),
            },
        }
        // The snapshot was stale or someone else wrote first: read again, decide again.
        match state.kube.get_bmh(&host.name).await? {
            Some(o) => {
                obj = o;
                fresh = true;
            }
            None => return Ok(gone()),
        }
    }
    Err(Error::Contended {
        resource_name: dns1123(&r.resource_name),
    })
}

/// What the watch cache knows of a resource's host.
enum Cached {
    Found(std::sync::Arc<DynamicObject>),
    /// The cache is synced and has no such host.
    Missing,
    /// No cache, or not synced yet: ask the API.
    NotSynced,
}

fn miss_key(r: &ReservedResource) -> String {
    format!("{}/{}", r.resource_id, dns1123(&r.resource_name))
}

/// The host of a resource from the watch cache.
fn find_cached(state: &AppState, r: &ReservedResource) -> Cached {
    let Some(store) = state.cache.as_ref() else {
        return Cached::NotSynced;
    };
    if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
        return Cached::NotSynced;
    }
    let id = r.resource_id.to_string();
    let label = &state.config.resource_id_label;
    let labelled = store.state_filter(|o| {
        o.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(label))
            .is_some_and(|v| *v == id)
    });
    let name = match HostLookup::from_labelled(labelled, &r.resource_name) {
        HostLookup::Labelled(one) => return Cached::Found(one),
        HostLookup::ByName { name: None, .. } => return Cached::Missing,
        HostLookup::ByName {
            name: Some(name), ..
        } => name,
    };
    match store.find(|o| o.metadata.name.as_deref() == Some(name.as_str())) {
        Some(o) => Cached::Found(o),
        None => Cached::Missing,
    }
}

/// How long one API lookup of a resource the synced cache does not have is trusted.
pub const MISS_TTL: Duration = Duration::from_secs(30);
/// Most resources remembered (the oldest are forgotten first).
const MISS_CAPACITY: usize = 4096;

/// Unknown resources recently looked up in the API, so each costs at most one lookup per
/// [`MISS_TTL`] however often deliveries name it.
#[derive(Debug, Default)]
pub struct MissCache {
    seen: Mutex<HashMap<String, Instant>>,
}

impl MissCache {
    /// Whether `key` should be looked up in the API now (and, if so, records that it was).
    pub fn should_look_up(&self, key: &str, now: Instant) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        if seen
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < MISS_TTL)
        {
            return false;
        }
        if seen.len() >= MISS_CAPACITY {
            seen.retain(|_, at| now.saturating_duration_since(*at) < MISS_TTL);
            if seen.len() >= MISS_CAPACITY
                && let Some(oldest) = seen
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        seen.insert(key.to_owned(), now);
        true
    }
}

/// Maps a resource to its BMH: the one labelled with its resourceId, else the one named after
/// its resourceName.
async fn find_bmh(state: &AppState, r: &ReservedResource) -> Result<Option<DynamicObject>> {
    let cfg = &state.config;
    let labelled = state
        .kube
        .list_labelled(&cfg.resource_id_label, &r.resource_id.to_string())
        .await?;
    match HostLookup::from_labelled(labelled, &r.resource_name) {
        HostLookup::Labelled(one) => Ok(Some(one)),
        HostLookup::ByName { name, ambiguous } => {
            if ambiguous {
                tracing::warn!(
                    resource_id = r.resource_id,
                    "several BMHs carry the same resource id; using the name fallback"
                );
            }
            match name {
                Some(name) => state.kube.get_bmh(&name).await,
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = include_str!("../tests/fixtures/event-start.json");

    #[test]
    fn an_unknown_resource_costs_one_api_lookup_per_ttl() {
        let misses = MissCache::default();
        let t0 = Instant::now();
        assert!(misses.should_look_up("7/ghost", t0));
        for s in [1, 10, 29] {
            assert!(!misses.should_look_up("7/ghost", t0 + Duration::from_secs(s)));
        }
        assert!(misses.should_look_up("8/other", t0));
        assert!(misses.should_look_up("7/ghost", t0 + MISS_TTL));
        // Bounded: a flood of distinct names never grows it past its capacity.
        for i in 0..(MISS_CAPACITY + 10) {
            misses.should_look_up(&format!("{i}/x"), t0 + MISS_TTL);
        }
        assert!(misses.seen.lock().unwrap().len() <= MISS_CAPACITY);
    }

    #[test]
    fn parses_the_sample_event() {
        let ev = parse_event(START.as_bytes()).unwrap();
        assert_eq!(ev.event_type, EventType::Start);
        assert_eq!(ev.events.len(), 3);
    }

    #[test]
    fn rejects_malformed_bodies() {
        for body in [
            &b"not json"[..],
            b"{}",
            br#"{"eventType":"EVENT_START"}"#,
            br#"{"eventType":"EVENT_NOPE","timestamp":"t","eventCount":0,"userId":"u","username":"n","email":"e","sshPublicKey":"k","events":[]}"#,
            br#"{"eventType":"EVENT_START","timestamp":"t","eventCount":0,"userId":"u","username":"n","email":"e","sshPublicKey":"k","events":[]}"#,
        ] {
            assert!(matches!(parse_event(body), Err(Error::Invalid(_))));
        }
        let mut v: serde_json::Value = serde_json::from_str(START).unwrap();
        v["sshPublicKey"] = "".into();
        assert!(parse_event(&serde_json::to_vec(&v).unwrap()).is_err());
    }
}
