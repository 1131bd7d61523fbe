//! Outcomes of a request and the Envoy counter each one increments.
//!
//! Names follow Prometheus conventions (`snake_case`, `_total` suffix for counters). Envoy
//! stores them as `wasmcustom.<name>` and `/stats/prometheus` strips that prefix and adds no
//! `envoy_` prefix, so a scrape shows exactly [`Outcome::metric_name`].

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

    /// Short snake_case label: the middle of the metric name.
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

    /// The Envoy counter name, e.g. `webhook_filter_rejected_invalid_signature_total`.
    pub fn metric_name(self) -> &'static str {
        match self {
            Outcome::Accepted => "webhook_filter_accepted_total",
            Outcome::Passed => "webhook_filter_passed_total",
            Outcome::MethodNotAllowed => "webhook_filter_rejected_method_not_allowed_total",
            Outcome::UnsupportedMediaType => "webhook_filter_rejected_unsupported_media_type_total",
            Outcome::BodyTooLarge => "webhook_filter_rejected_body_too_large_total",
            Outcome::MissingSignature => "webhook_filter_rejected_missing_signature_total",
            Outcome::MalformedSignature => "webhook_filter_rejected_malformed_signature_total",
            Outcome::BadSignature => "webhook_filter_rejected_invalid_signature_total",
            Outcome::MalformedJson => "webhook_filter_rejected_malformed_json_total",
            Outcome::InvalidEvent => "webhook_filter_rejected_validation_error_total",
            Outcome::StaleEvent => "webhook_filter_rejected_stale_event_total",
            Outcome::NotFound => "webhook_filter_rejected_not_found_total",
            Outcome::StaleTimestamp => "webhook_filter_rejected_stale_timestamp_total",
            Outcome::MissingDeliveryId => "webhook_filter_rejected_missing_delivery_id_total",
            Outcome::ReplayedDelivery => "webhook_filter_rejected_replayed_delivery_total",
            Outcome::ConfigError => "webhook_filter_config_errors_total",
        }
    }
}

/// Per-webhook counter name: `webhook_filter_webhook_<webhook>_<label>_total`, where
/// `<webhook>` is [`crate::config::Webhook::metric_name`] and `<label>` is
/// [`Outcome::label`] (`accepted`, `invalid_signature`, ...). Only outcomes of guarded requests
/// are counted per webhook (not `passed` or `not_found`).
pub fn webhook_metric_name(webhook_metric: &str, outcome: Outcome) -> String {
    format!(
        "webhook_filter_webhook_{webhook_metric}_{}_total",
        outcome.label()
    )
}

impl Outcome {
    /// Outcomes counted per webhook (every counted one except `passed` and `not_found`).
    pub fn per_webhook(self) -> bool {
        !matches!(
            self,
            Outcome::Passed | Outcome::NotFound | Outcome::ConfigError
        )
    }
}
