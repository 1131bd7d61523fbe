//! The crate's one error type.
//!
//! Every variant that answers HTTP knows its status, its `error_type` (the machine-readable
//! string in the JSON reply) and the metric it increments, in one place: [`Error::status`],
//! [`Error::error_type`] and [`Error::outcome`]. Configuration variants never reach a client:
//! they are logged by the adapter and make Envoy refuse the configuration.

use crate::event::{Reason, ValidationError};
use crate::metrics::Outcome;

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, at configure time or for one request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // === configuration (never sent to a client) ===
    /// The plugin configuration is not valid JSON of the expected shape.
    #[error("invalid plugin configuration: {0}")]
    ConfigSyntax(#[source] serde_json::Error),
    /// The configuration parsed but is inconsistent.
    #[error("invalid plugin configuration: {what}")]
    ConfigInvalid {
        /// What is wrong, naming the field; never contains a secret.
        what: String,
    },

    // === request rejections ===
    /// The method is not one the guarded path accepts.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// The body is not declared as JSON.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// The body is, or would become, larger than the configured cap.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The configured cap, in bytes.
        limit: u64,
    },
    /// No signature header.
    #[error("missing signature")]
    MissingSignature,
    /// A signature header that cannot be a signature (wrong prefix, not hex, wrong length).
    #[error("malformed signature")]
    MalformedSignature,
    /// The signature matches none of the active secrets (wrong secret or altered body: the
    /// reply is the same for both, and never says which secret was tried).
    #[error("invalid signature")]
    BadSignature,
    /// The sender timestamp (Stripe `t`, Slack, Standard Webhooks) is outside the scheme's
    /// tolerance.
    #[error("signature timestamp outside the tolerance")]
    StaleTimestamp,
    /// The replay cache is on and the request carries no usable delivery id.
    #[error("missing or malformed delivery id")]
    MissingDeliveryId,
    /// The delivery id was already accepted within the replay cache's lifetime.
    #[error("delivery already received")]
    Replayed {
        /// Configured status of the answer (default 409).
        status: u16,
    },
    /// The body does not satisfy the configured JSON Schema.
    #[error("{path}: does not satisfy the JSON Schema (`{keyword}`)")]
    SchemaViolation {
        /// JSON path of the first offending member, e.g. `$.events[0].resourceId`.
        path: String,
        /// The schema keyword that failed (`type`, `pattern`, `required`, ...).
        keyword: String,
    },
    /// The path is not guarded and the configuration says to refuse unmatched paths.
    #[error("no webhook is configured for this path")]
    NotFound,
    /// The body failed JSON parsing or schema validation (see [`ValidationError::reason`]).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl Error {
    /// HTTP status of the reply for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::ConfigSyntax(_) | Error::ConfigInvalid { .. } => 500,
            Error::MethodNotAllowed => 405,
            Error::UnsupportedMediaType => 415,
            Error::BodyTooLarge { .. } => 413,
            Error::MissingSignature
            | Error::MalformedSignature
            | Error::BadSignature
            | Error::StaleTimestamp => 401,
            Error::MissingDeliveryId => 400,
            Error::Replayed { status } => *status,
            Error::SchemaViolation { .. } => 422,
            Error::NotFound => 404,
            Error::Invalid(v) if matches!(v.reason, Reason::MalformedJson) => 400,
            Error::Invalid(_) => 422,
        }
    }

    /// The `error_type` member of the JSON reply, PascalCase like the sidecar's
    /// (`InvalidSignature`, `ValidationError`, ...).
    pub fn error_type(&self) -> &'static str {
        self.outcome().error_type()
    }

    /// The outcome counted for this error (one Envoy counter per outcome).
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::ConfigSyntax(_) | Error::ConfigInvalid { .. } => Outcome::ConfigError,
            Error::MethodNotAllowed => Outcome::MethodNotAllowed,
            Error::UnsupportedMediaType => Outcome::UnsupportedMediaType,
            Error::BodyTooLarge { .. } => Outcome::BodyTooLarge,
            Error::MissingSignature => Outcome::MissingSignature,
            Error::MalformedSignature => Outcome::MalformedSignature,
            Error::BadSignature => Outcome::BadSignature,
            Error::StaleTimestamp => Outcome::StaleTimestamp,
            Error::MissingDeliveryId => Outcome::MissingDeliveryId,
            Error::Replayed { .. } => Outcome::ReplayedDelivery,
            Error::SchemaViolation { .. } => Outcome::InvalidEvent,
            Error::NotFound => Outcome::NotFound,
            Error::Invalid(v) => match v.reason {
                Reason::MalformedJson => Outcome::MalformedJson,
                Reason::Stale | Reason::FromTheFuture | Reason::ReservationEnded => {
                    Outcome::StaleEvent
                }
                _ => Outcome::InvalidEvent,
            },
        }
    }

    /// JSON path of the offending body field, for 400/422 replies.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(v) => Some(&v.path),
            Error::SchemaViolation { path, .. } => Some(path),
            _ => None,
        }
    }
}
