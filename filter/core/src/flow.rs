//! The per-request decision, as plain functions over the compiled configuration, and the
//! headers it sets upstream.
//!
//! ```text
//! headers ──▶ on_request_headers ──┬─ Pass            (path not guarded: forward)
//!                                  ├─ Reject(r)       (405 / 415 / 413 / 401 / 404: reply now)
//!                                  └─ Inspect(p) ──▶ body chunks: p.check_size(buffered)
//!                                                      └─ end of stream: p.finish(body, now)
//!                                                          ├─ Ok(v)   v.admit(store, now)
//!                                                          │            ├─ Ok(_)  forward
//!                                                          │            └─ Err(r) replayed (409)
//!                                                          └─ Err(r)  413/401/400/422
//! ```
//! The adapter performs the I/O (read headers and body, send the reply, bump the counter, the
//! shared-data store behind [`replay::SharedData`]); this module decides. The clock is a
//! parameter.

use std::time::SystemTime;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{CompiledConfig, Schema, Unmatched, Webhook};
use crate::error::Error;
use crate::event::{self, ReservationMessage};
use crate::metrics::Outcome;
use crate::replay::{self, Admission, Delivery, SharedData};
use crate::scheme::Presented;

/// Header set upstream on every forwarded guarded request: `true`, or `unsigned` in unsigned
/// mode. Inbound copies are always removed.
pub const VERIFIED_HEADER: &str = "x-webhook-verified";
/// Header set upstream naming the secret (its configured `id`) that matched. Inbound copies
/// are always removed. Envoy's route adds it from the filter state [`SECRET_ID_PROPERTY`].
pub const SECRET_ID_HEADER: &str = "x-webhook-secret-id";
/// Filter-state property the adapter sets to the matched secret's `id`; Envoy stores it as
/// `wasm.webhook_secret_id` and the route turns it into [`SECRET_ID_HEADER`] with
/// `%FILTER_STATE(wasm.webhook_secret_id:PLAIN)%`.
pub const SECRET_ID_PROPERTY: &str = "webhook_secret_id";
/// Header set upstream naming the webhook (its configured `name`) that matched.
pub const WEBHOOK_NAME_HEADER: &str = "x-webhook-name";
/// Header set upstream with the sender's delivery id (`X-GitHub-Delivery`, `webhook-id`,
/// `svix-id`, `X-Shopify-Webhook-Id`, or the configured `delivery_id_header`).
pub const DELIVERY_ID_HEADER: &str = "x-webhook-delivery-id";
/// Every header the filter owns; stripped from every inbound request so none can be spoofed.
pub const OWNED_HEADERS: [&str; 4] = [
    VERIFIED_HEADER,
    SECRET_ID_HEADER,
    WEBHOOK_NAME_HEADER,
    DELIVERY_ID_HEADER,
];

/// What to do after the request headers.
#[derive(Debug)]
pub enum HeadersDecision {
    /// Not guarded: forward untouched.
    Pass,
    /// Answer now with this rejection.
    Reject(Rejection),
    /// Guarded: buffer the body and decide at its end.
    Inspect(Pending),
}

/// A guarded request waiting for its body.
#[derive(Debug, Clone)]
pub struct Pending {
    webhook: usize,
    /// What the headers say about the signature; `None` only in unsigned mode.
    signature: Option<Presented>,
    /// The sender's delivery id, if the scheme has one.
    delivery_id: Option<String>,
}

/// A request whose headers and body passed every check of its webhook (the signature, unless
/// in unsigned mode): what is left is [`Verified::admit`] into the replay cache, then forward.
/// (Not [`Outcome::Accepted`], which counts a request actually forwarded.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The configured `id` of the secret that matched (`None` in unsigned mode).
    pub secret_id: Option<String>,
    /// The delivery to record in the replay cache (only when the webhook has one).
    pub replay: Option<Delivery>,
    /// Index of the matched webhook, for the rejection of a replayed delivery.
    webhook: usize,
    /// Whether `x-webhook-secret-id` was already set with the headers
    /// ([`Webhook::secret_id_at_headers`]).
    secret_id_sent: bool,
}

impl Verified {
    /// The matched secret's id when the headers could not carry it (several active secrets).
    /// Envoy does not let a filter change request headers after the headers callback, so the
    /// adapter hands it to Envoy as filter state ([`SECRET_ID_PROPERTY`]) and the route adds
    /// `x-webhook-secret-id` from there.
    pub fn secret_id_for_filter_state(&self) -> Option<&str> {
        self.secret_id.as_deref().filter(|_| !self.secret_id_sent)
    }

    /// Records the delivery id in the webhook's replay cache through `store` at `now`, when the
    /// webhook has a cache (`Ok(None)` otherwise): the delivery and what became of it. A
    /// delivery id seen before and not expired is refused with the cache's status (counted as
    /// `replayed_delivery` on the webhook).
    pub fn admit(
        &self,
        store: &impl SharedData,
        now: SystemTime,
    ) -> Result<Option<(&Delivery, Admission)>, Rejection> {
        let Some(delivery) = &self.replay else {
            return Ok(None);
        };
        match replay::admit(store, delivery, unix_seconds(now)) {
            Ok(admission) => Ok(Some((delivery, admission))),
            Err(e) => Err(Rejection::from(e).with_webhook(self.webhook)),
        }
    }
}

/// A refused request: the error and what the reply needs besides it.
#[derive(Debug)]
pub struct Rejection {
    /// Why.
    pub error: Error,
    /// `allow` header value for a 405.
    pub allow: Option<String>,
    /// Index of the webhook concerned, for per-webhook counters.
    pub webhook: Option<usize>,
}

impl From<Error> for Rejection {
    fn from(error: Error) -> Self {
        Rejection {
            error,
            allow: None,
            webhook: None,
        }
    }
}

impl Rejection {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        self.error.status()
    }

    /// Counter to increment.
    pub fn outcome(&self) -> Outcome {
        self.error.outcome()
    }

    /// The webhook's index, when the rejection concerns a guarded request (per-webhook
    /// counters); set by the flow, `None` for unguarded paths.
    pub fn with_webhook(mut self, index: usize) -> Self {
        self.webhook = Some(index);
        self
    }

    /// Reply headers (besides the status).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("content-type", "application/json".to_owned())];
        if let Some(allow) = &self.allow {
            h.push(("allow", allow.clone()));
        }
        h
    }

    /// Reply body: the shared [`ErrorBody`](crate::error::ErrorBody), `{"detail", "error_type",
    /// "timestamp"}` plus `field` (JSON path) for 400/422.
    pub fn body(&self, now: SystemTime) -> Vec<u8> {
        self.error.body(rfc3339_utc(now)).to_json()
    }
}

/// `now` as RFC 3339 in UTC (`...Z`).
pub fn rfc3339_utc(now: SystemTime) -> String {
    OffsetDateTime::from(now)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `now` as unix seconds.
pub fn unix_seconds(now: SystemTime) -> i64 {
    OffsetDateTime::from(now).unix_timestamp()
}

/// `true` for `application/json` and `application/<x>+json`, parameters allowed.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let suffix_json = subtype.len() > 5
        && subtype
            .get(subtype.len() - 5..)
            .is_some_and(|s| s.eq_ignore_ascii_case("+json"));
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || suffix_json)
}

/// Decides on the request headers. `header` looks up a request header by lowercase name.
pub fn on_request_headers(
    cfg: &CompiledConfig,
    method: &str,
    path: &str,
    header: impl Fn(&str) -> Option<String>,
) -> HeadersDecision {
    let Some((index, hook)) = cfg.route(path) else {
        return match cfg.unmatched {
            Unmatched::Pass => HeadersDecision::Pass,
            Unmatched::Reject => HeadersDecision::Reject(Error::NotFound.into()),
        };
    };
    match check_headers(hook, method, &header) {
        Ok((signature, delivery_id)) => HeadersDecision::Inspect(Pending {
            webhook: index,
            signature,
            delivery_id,
        }),
        Err(rejection) => HeadersDecision::Reject(rejection.with_webhook(index)),
    }
}

type HeaderFacts = (Option<Presented>, Option<String>);

fn check_headers(
    hook: &Webhook,
    method: &str,
    header: &impl Fn(&str) -> Option<String>,
) -> Result<HeaderFacts, Rejection> {
    if !hook.methods.iter().any(|m| m == method) {
        return Err(Rejection {
            error: Error::MethodNotAllowed,
            allow: Some(hook.allow.clone()),
            webhook: None,
        });
    }
    if hook.schema != Schema::None
        && !header("content-type").is_some_and(|ct| is_json_content_type(&ct))
    {
        return Err(Error::UnsupportedMediaType.into());
    }
    if let Some(len) = header("content-length") {
        // An unparsable length is Envoy's business (it answers 400 before us); only a
        // declared size above the cap matters here.
        if len
            .trim()
            .parse::<u64>()
            .is_ok_and(|n| n > hook.max_body_bytes)
        {
            return Err(Error::BodyTooLarge {
                limit: hook.max_body_bytes,
            }
            .into());
        }
    }
    let signature = if hook.allow_unsigned {
        None
    } else {
        Some(hook.scheme.present(header)?)
    };
    let delivery_id = match &signature {
        Some(p) => p.delivery_id.clone(),
        None => hook.scheme.delivery_id(header),
    };
    if hook.replay_cache.is_some() && !delivery_id.as_deref().is_some_and(replay::valid_id) {
        return Err(Error::MissingDeliveryId.into());
    }
    Ok((signature, delivery_id))
}

impl Pending {
    /// Headers to set on the request in the headers callback, before the verdict:
    /// `x-webhook-name`, `x-webhook-verified` (`true`, or `unsigned` in unsigned mode),
    /// `x-webhook-delivery-id` when the scheme carries one, and `x-webhook-secret-id` when the
    /// webhook has a single active secret (with several, the one that matches is known only
    /// after the body: [`Verified::secret_id_for_filter_state`]).
    ///
    /// Setting them before the body is checked is safe only because a rejected request never
    /// leaves Envoy (the buffer filter after ours holds the headers back until we continue);
    /// Envoy refuses header changes in the body callback.
    pub fn upstream_headers(&self, cfg: &CompiledConfig) -> Vec<(&'static str, String)> {
        let Some(hook) = self.webhook(cfg) else {
            return Vec::new();
        };
        let verified = if self.signature.is_some() {
            "true"
        } else {
            "unsigned"
        };
        let mut h = vec![
            (WEBHOOK_NAME_HEADER, hook.name.clone()),
            (VERIFIED_HEADER, verified.to_owned()),
        ];
        if let Some(id) = &self.delivery_id {
            h.push((DELIVERY_ID_HEADER, id.clone()));
        }
        // With one active secret, the one that matches is known now: the header is set here
        // and the body callback needs no filter-state call (see [`Webhook::secret_id_at_headers`]).
        if self.signature.is_some()
            && let Some(id) = hook.secret_id_at_headers()
        {
            h.push((SECRET_ID_HEADER, id.to_owned()));
        }
        h
    }

    /// Index of the matched webhook in [`CompiledConfig::webhooks`].
    pub fn webhook_index(&self) -> usize {
        self.webhook
    }

    /// The webhook this request matched.
    pub fn webhook<'c>(&self, cfg: &'c CompiledConfig) -> Option<&'c Webhook> {
        cfg.webhooks.get(self.webhook)
    }

    /// Called on each body chunk with the total size buffered so far: refuses as soon as it
    /// passes the cap, so no more than the cap is ever held.
    pub fn check_size(&self, cfg: &CompiledConfig, buffered: usize) -> Result<(), Rejection> {
        let Some(hook) = self.webhook(cfg) else {
            return Err(Error::NotFound.into());
        };
        if u64::try_from(buffered).map_or(true, |n| n > hook.max_body_bytes) {
            return Err(Rejection::from(Error::BodyTooLarge {
                limit: hook.max_body_bytes,
            })
            .with_webhook(self.webhook));
        }
        Ok(())
    }

    /// Decides on the complete body: cap, scheme timestamp, signature, JSON, schema, replay
    /// window. The replay cache comes after: [`Verified::admit`].
    pub fn finish(
        &self,
        cfg: &CompiledConfig,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, Rejection> {
        self.finish_message(cfg, body, now)
            .map(|(verified, _)| verified)
    }

    /// [`Pending::finish`], also handing over the reservation message it validated (for
    /// `schema: reservation_event`), so a caller that acts on it (the sidecar) reads the body
    /// once, with the very rules the edge applied.
    pub fn finish_message<'b>(
        &self,
        cfg: &CompiledConfig,
        body: &'b [u8],
        now: SystemTime,
    ) -> Result<(Verified, Option<ReservationMessage<'b>>), Rejection> {
        self.check_size(cfg, body.len())?;
        let Some(hook) = self.webhook(cfg) else {
            return Err(Error::NotFound.into());
        };
        self.decide(hook, body, now)
            .map_err(|e| Rejection::from(e).with_webhook(self.webhook))
    }

    fn decide<'b>(
        &self,
        hook: &Webhook,
        body: &'b [u8],
        now: SystemTime,
    ) -> Result<(Verified, Option<ReservationMessage<'b>>), Error> {
        let secret_id = match &self.signature {
            Some(p) => {
                p.check_time(hook.scheme.tolerance(), unix_seconds(now))?;
                let i = p.verify(&hook.secrets, body)?;
                hook.secrets.get(i).map(|s| s.id().to_owned())
            }
            None => None,
        };
        let mut message = None;
        match &hook.schema {
            Schema::ReservationEvent => {
                message = Some(
                    event::check_body(
                        body,
                        unix_seconds(now),
                        hook.replay_window_seconds,
                        hook.max_clock_skew_seconds,
                    )
                    .map_err(Error::from)?,
                );
            }
            Schema::Json => {
                serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|_| malformed())?;
            }
            Schema::None => {}
            Schema::JsonSchema(_) => check_json_schema(hook, body)?,
        }
        let replay = match (&hook.replay_cache, &self.delivery_id) {
            (Some(cache), Some(id)) => Some(Delivery {
                key: replay::shared_data_key(&hook.name),
                id: id.clone(),
                cache: *cache,
            }),
            _ => None,
        };
        let verified = Verified {
            secret_id,
            replay,
            webhook: self.webhook,
            secret_id_sent: hook.secret_id_at_headers().is_some(),
        };
        Ok((verified, message))
    }
}

fn malformed() -> Error {
    Error::from(event::ValidationError {
        path: "$".into(),
        reason: event::Reason::MalformedJson,
    })
}

#[cfg(feature = "json-schema")]
fn check_json_schema(hook: &Webhook, body: &[u8]) -> Result<(), Error> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| malformed())?;
    let Some(v) = &hook.json_schema else {
        return Ok(());
    };
    match v.0.iter_errors(&value).next() {
        None => Ok(()),
        Some(e) => {
            let mut path = String::from("$");
            for seg in e.instance_path().segments() {
                match seg {
                    jsonschema::paths::LocationSegment::Property(p) => {
                        path.push('.');
                        path.push_str(&p);
                    }
                    jsonschema::paths::LocationSegment::Index(i) => {
                        path.push_str(&format!("[{i}]"));
                    }
                }
            }
            Err(Error::SchemaViolation {
                path,
                keyword: e.kind().keyword().to_owned(),
            })
        }
    }
}

#[cfg(not(feature = "json-schema"))]
fn check_json_schema(_hook: &Webhook, _body: &[u8]) -> Result<(), Error> {
    // Unreachable: configuration refuses `json_schema` in builds without the feature.
    Err(Error::SchemaViolation {
        path: "$".into(),
        keyword: "unsupported".into(),
    })
}
