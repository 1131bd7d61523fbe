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
use serde_json::json;
use webhook_core::event::{self, Action, ReservationMessage};

use crate::error::{Error, Result};
use crate::k8s::Write;
use crate::metrics::{LogDelivery, LogKind};
use crate::model::{Host, HostLookup, Reservation, dns1123};
use crate::notify::{MAX_LOG_TEXT, WebhookLog, truncate_utf16};
use crate::plan::{ResourceOutcome, decide_end, decide_start, decide_update};
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
    /// The first BMH the message maps to (the replaced service named one BMH), else the first
    /// resource's `resourceName` (empty for a message without reservations).
    pub resource_name: String,
    /// The message's `eventType`, as the sender spelt it.
    pub event_type: String,
    pub timestamp: String,
    pub results: Vec<ResourceResult>,
}

/// Handles one verified message. Errors mean "nothing could be decided" (API server down): the
/// sender may retry, and intents already recorded are finished by the reconciler. A message
/// nobody acts on (EVENT_CREATED, RESOURCE_*, the test webhook, a type added later) is answered
/// "nothing to do": a correctly signed message is never refused for being of no use here.
pub async fn handle(state: &AppState, message: &ReservationMessage<'_>) -> Result<Accepted> {
    let action = message.event_type.action();
    let results = match action {
        Action::Nothing => Vec::new(),
        _ => {
            let all = message
                .reservations
                .iter()
                .map(|r| handle_resource(state, message, r));
            join_all(all)
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()?
        }
    };
    for r in &results {
        state
            .metrics
            .count_result(message.event_type.as_str(), r.result);
    }
    let acted = results.iter().filter(|r| r.result.acted()).count();
    let resource_name = results
        .iter()
        .find_map(|r| r.bmh.as_deref())
        .map(|key| key.rsplit('/').next().unwrap_or(key).to_owned())
        .or_else(|| {
            message
                .reservations
                .first()
                .map(|r| r.resource_name.to_string())
        })
        .unwrap_or_default();
    let doing = match action {
        Action::Start => "are being provisioned",
        Action::Release => "are being released",
        Action::Update => "were updated",
        Action::Nothing => "",
    };
    let text = match action {
        Action::Nothing => format!("{}: nothing to do", message.event_name),
        _ => format!("{acted} of {} resources {doing}", results.len()),
    };
    let accepted = Accepted {
        status: "success",
        message: text,
        resource_name,
        event_type: message.event_name.to_string(),
        timestamp: Timestamp::now().to_string(),
        results,
    };
    log_delivery(state, message, &accepted);
    Ok(accepted)
}

/// Posts the webhook log of a delivery that changed a host (best effort, off the request path).
fn log_delivery(state: &AppState, message: &ReservationMessage<'_>, accepted: &Accepted) {
    let Some(first) = accepted.results.iter().find(|r| r.result.acted()) else {
        return;
    };
    let Some(webhook_id) = state.notifier.log_webhook_id(message.webhook_id.as_deref()) else {
        return;
    };
    let results: Vec<_> = accepted
        .results
        .iter()
        .map(|r| json!({"eventId": r.event_id, "resourceId": r.resource_id, "bareMetalHost": r.bmh, "result": r.result, "detail": r.detail}))
        .collect();
    let payload = json!({
        "eventType": message.event_name,
        "timestamp": message.timestamp,
        "userId": message.user.user_id,
        "results": results,
    });
    let entry = WebhookLog {
        webhook_id,
        event_type: message.event_type.as_str(),
        payload: truncate_utf16(&payload.to_string(), MAX_LOG_TEXT),
        status_code: state.config.success_status,
        response: truncate_utf16(&accepted.message, MAX_LOG_TEXT),
        success: true,
        retry_count: 0,
        resource_id: Some(first.resource_id),
        metadata: json!({"resourceType": "BareMetalHost", "bareMetalHost": first.bmh, "eventId": first.event_id}),
    };
    let key = format!(
        "{}:{}:{}",
        first.event_id,
        message.event_type.as_str(),
        message.timestamp
    );
    let state = state.clone();
    tokio::spawn(async move {
        let sent = state.notifier.log(&entry, &key).await;
        let delivery = match &sent {
            Some(Ok(())) => LogDelivery::Delivered,
            Some(Err(e)) => {
                tracing::warn!(error = %e, key, "webhook log not delivered");
                LogDelivery::Failed
            }
            None => return,
        };
        state.metrics.count_webhook_log(LogKind::Delivery, delivery);
    });
}

async fn handle_resource(
    state: &AppState,
    message: &ReservationMessage<'_>,
    r: &event::Reservation<'_>,
) -> Result<ResourceResult> {
    let result = |bmh: Option<String>, outcome: ResourceOutcome, detail: String| ResourceResult {
        event_id: r.event_id.to_string(),
        resource_id: r.resource_id,
        resource_name: r.resource_name.to_string(),
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
    let req = Reservation::from_message(message, r);
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
        let (keys, policy) = (&state.keys, &state.policy);
        let decision = match message.event_type.action() {
            Action::Start => decide_start(policy, &host, &req, now),
            Action::Release => decide_end(policy, &host, &req, now),
            Action::Update | Action::Nothing => decide_update(keys, &host, &req),
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

fn miss_key(r: &event::Reservation<'_>) -> String {
    format!("{}/{}", r.resource_id, dns1123(&r.resource_name))
}

/// The host of a resource from the watch cache.
fn find_cached(state: &AppState, r: &event::Reservation<'_>) -> Cached {
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
    let name = match lookup(labelled, r) {
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

/// [`HostLookup::from_labelled`] for a reserved resource; several hosts carrying its label is an
/// operator's mistake, warned about here for the watch-cache and the API path alike.
fn lookup<T>(labelled: Vec<T>, r: &event::Reservation<'_>) -> HostLookup<T> {
    let found = HostLookup::from_labelled(labelled, &r.resource_name);
    if let HostLookup::ByName {
        ambiguous: true, ..
    } = &found
    {
        tracing::warn!(
            resource_id = r.resource_id,
            "several BMHs carry the same resource id; using the name fallback"
        );
    }
    found
}

/// Maps a resource to its BMH: the one labelled with its resourceId, else the one named after
/// its resourceName.
async fn find_bmh(state: &AppState, r: &event::Reservation<'_>) -> Result<Option<DynamicObject>> {
    let cfg = &state.config;
    let labelled = state
        .kube
        .list_labelled(&cfg.resource_id_label, &r.resource_id.to_string())
        .await?;
    match lookup(labelled, r) {
        HostLookup::Labelled(one) => Ok(Some(one)),
        HostLookup::ByName {
            name: Some(name), ..
        } => state.kube.get_bmh(&name).await,
        HostLookup::ByName { name: None, .. } => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
