//! Outcomes of a request and the one Envoy counter family that counts them.
//!
//! Every request the filter sees increments one counter of the family
//! `webhook_filter_requests_total{webhook, outcome}`: `webhook` is the matched webhook's
//! configured `name` (absent for paths no webhook guards), `outcome` is [`Outcome::label`]
//! (`accepted`, `invalid_signature`, ...). proxy-wasm counters have names, not labels, so the
//! filter defines one counter per (webhook, outcome) whose name carries the labels in Istio's
//! encoding, `webhook=.=<name>;.;outcome=.=<outcome>;.;webhook_filter_requests_total`
//! ([`requests_metric`]), and Envoy's stats tag extraction ([`STATS_TAGS`] in the bootstrap's
//! `stats_config.stats_tags`, or Istio's `extraStatTags`) turns them into labels. Envoy stores
//! the counters under `wasmcustom.`, which `/stats/prometheus` strips (no `envoy_` prefix), so a
//! scrape shows `webhook_filter_requests_total{webhook="reservations",outcome="accepted"} 1`.

/// The counter family's name, as Prometheus shows it.
pub const REQUESTS_METRIC: &str = "webhook_filter_requests_total";

/// Envoy `stats_config.stats_tags` entries (tag name, regex) that turn the names of
/// [`requests_metric`] into labels. Istio's `extraStatTags: [webhook, outcome]` generates the
/// same regexes (`(<tag>=\.=(.*?);\.;)`). The first group is cut out of the name, the second is
/// the label value.
pub const STATS_TAGS: [(&str, &str); 2] = [
    ("webhook", r"(webhook=\.=(.*?);\.;)"),
    ("outcome", r"(outcome=\.=(.*?);\.;)"),
];

/// The name the filter defines for the counter of `outcome` on `webhook` (`None`: a path no
/// webhook guards), e.g. `webhook=.=github;.;outcome=.=accepted;.;webhook_filter_requests_total`.
/// Webhook names are `[A-Za-z0-9._-]+` (configuration), so they never hold the `;.;` delimiter.
pub fn requests_metric(webhook: Option<&str>, outcome: Outcome) -> String {
    let mut name = String::with_capacity(80);
    if let Some(w) = webhook {
        name.push_str("webhook=.=");
        name.push_str(w);
        name.push_str(";.;");
    }
    name.push_str("outcome=.=");
    name.push_str(outcome.label());
    name.push_str(";.;");
    name.push_str(REQUESTS_METRIC);
    name
}

/// What happened to one request that went through the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Guarded path, signature valid (or unsigned mode), event valid: forwarded.
    Accepted,
    /// Path not guarded by any webhook: forwarded untouched (minus spoofable headers).
    Passed,
    /// 405.
    MethodNotAllowed,
    /// 415.
    UnsupportedMediaType,
    /// 413.
    BodyTooLarge,
    /// 401, no signature header.
    MissingSignature,
    /// 401, signature header present but not a signature.
    MalformedSignature,
    /// 401, signature matches no active secret.
    BadSignature,
    /// 400.
    MalformedJson,
    /// 422, schema or content rule violated.
    InvalidEvent,
    /// 422, the replay rule: a START after its reservation ended or older than the replay
    /// window, or a body timestamp from the future.
    StaleEvent,
    /// 404, unmatched path with `unmatched: reject`.
    NotFound,
    /// 401, sender timestamp outside the scheme's tolerance.
    StaleTimestamp,
    /// 400, replay cache on and no usable delivery id.
    MissingDeliveryId,
    /// Configured status (409), delivery id seen before.
    ReplayedDelivery,
    /// Not a request outcome: configuration refused (never counted per request).
    ConfigError,
}

impl Outcome {
    /// Every outcome that is counted per request, in a stable order (the adapter defines one
    /// counter for each at configure time).
    pub const COUNTED: [Outcome; 15] = [
        Outcome::Accepted,
        Outcome::Passed,
        Outcome::MethodNotAllowed,
        Outcome::UnsupportedMediaType,
        Outcome::BodyTooLarge,
        Outcome::MissingSignature,
        Outcome::MalformedSignature,
        Outcome::BadSignature,
        Outcome::MalformedJson,
        Outcome::InvalidEvent,
        Outcome::StaleEvent,
        Outcome::NotFound,
        Outcome::StaleTimestamp,
        Outcome::MissingDeliveryId,
        Outcome::ReplayedDelivery,
    ];

    /// The `error_type` of a rejection reply, PascalCase like the sidecar's.
    pub fn error_type(self) -> &'static str {
        match self {
            Outcome::Accepted => "Accepted",
            Outcome::Passed => "Passed",
            Outcome::MethodNotAllowed => "MethodNotAllowed",
            Outcome::UnsupportedMediaType => "UnsupportedMediaType",
            Outcome::BodyTooLarge => "PayloadTooLarge",
            Outcome::MissingSignature => "MissingSignature",
            Outcome::MalformedSignature => "MalformedSignature",
            Outcome::BadSignature => "InvalidSignature",
            Outcome::MalformedJson => "MalformedJson",
            Outcome::InvalidEvent => "ValidationError",
            Outcome::StaleEvent => "StaleEvent",
            Outcome::NotFound => "NotFound",
            Outcome::StaleTimestamp => "StaleTimestamp",
            Outcome::MissingDeliveryId => "MissingDeliveryId",
            Outcome::ReplayedDelivery => "ReplayedDelivery",
            Outcome::ConfigError => "ConfigError",
        }
    }

    /// The `outcome` label value, snake_case.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Passed => "passed",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
            Outcome::BodyTooLarge => "body_too_large",
            Outcome::MissingSignature => "missing_signature",
            Outcome::MalformedSignature => "malformed_signature",
            Outcome::BadSignature => "invalid_signature",
            Outcome::MalformedJson => "malformed_json",
            Outcome::InvalidEvent => "validation_error",
            Outcome::StaleEvent => "stale_event",
            Outcome::NotFound => "not_found",
            Outcome::StaleTimestamp => "stale_timestamp",
            Outcome::MissingDeliveryId => "missing_delivery_id",
            Outcome::ReplayedDelivery => "replayed_delivery",
            Outcome::ConfigError => "config_error",
        }
    }

    /// Outcomes of guarded requests, counted with a `webhook` label (every counted one except
    /// `passed` and `not_found`, which concern paths no webhook guards).
    pub fn per_webhook(self) -> bool {
        !matches!(
            self,
            Outcome::Passed | Outcome::NotFound | Outcome::ConfigError
        )
    }
}
