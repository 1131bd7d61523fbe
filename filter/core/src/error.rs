//! The crate's one error type.
//!
//! Every variant that answers HTTP knows its status, its `error_type` (the machine-readable
//! string in the JSON reply) and the metric it increments, in one place: [`Error::status`],
//! [`Error::error_type`] and [`Error::outcome`]. Configuration variants never reach a client:
//! they are logged by the adapter and make Envoy refuse the configuration.
//!
//! [`ErrorBody`] is the JSON body of every error reply, the filter's and the sidecar's alike.

use serde::Serialize;

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
            Error::Invalid(v) => v.status(),
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
            Error::Invalid(v) => v.outcome(),
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

    /// The reply body for this error, `timestamp` being the reply's time (RFC 3339).
    pub fn body(&self, timestamp: String) -> ErrorBody<'_> {
        ErrorBody::new(self.to_string(), self.error_type(), timestamp).with_field(self.field())
    }
}

// The answer to a refused body lives here, next to the other statuses, rather than in `event`:
// the sidecar answers a `ValidationError` of its own exactly as the filter does.
impl ValidationError {
    /// HTTP status of the reply: 400 when the body is not JSON, 422 for every other rule.
    pub fn status(&self) -> u16 {
        match self.reason {
            Reason::MalformedJson => 400,
            _ => 422,
        }
    }

    /// The outcome counted for this refusal; its [`Outcome::error_type`] is the reply's.
    pub fn outcome(&self) -> Outcome {
        match self.reason {
            Reason::MalformedJson => Outcome::MalformedJson,
            Reason::Stale | Reason::FromTheFuture | Reason::ReservationEnded => Outcome::StaleEvent,
            _ => Outcome::InvalidEvent,
        }
    }
}

/// The JSON body of an error reply, the replaced service's shape (docs/openapi.yaml, `Error`):
/// `detail`, `error_type` and `timestamp`, plus `resource_name` (sidecar: the BMH or Secret
/// concerned) and `field` (the JSON path of the offending member, 400/422) when they apply.
///
/// Members are written in declaration order: the filter has always answered `detail,
/// error_type, timestamp, field` and the sidecar `detail, error_type, resource_name, timestamp`,
/// and this order keeps both byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody<'a> {
    /// Human-readable, never a secret.
    pub detail: String,
    /// Machine-readable, PascalCase (`InvalidSignature`, `KubernetesUnavailable`, ...).
    pub error_type: &'a str,
    /// The BMH or Secret concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<&'a str>,
    /// When the reply was made, RFC 3339.
    pub timestamp: String,
    /// JSON path of the offending body member, e.g. `$.events[1].eventEnd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl<'a> ErrorBody<'a> {
    /// A body with the three members every error reply has.
    pub fn new(detail: String, error_type: &'a str, timestamp: String) -> Self {
        ErrorBody {
            detail,
            error_type,
            resource_name: None,
            timestamp,
            field: None,
        }
    }

    /// Sets (or clears) `field`.
    pub fn with_field(mut self, field: Option<&'a str>) -> Self {
        self.field = field;
        self
    }

    /// Sets (or clears) `resource_name`.
    pub fn with_resource_name(mut self, resource_name: Option<&'a str>) -> Self {
        self.resource_name = resource_name;
        self
    }

    /// The body's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings only, so serialization cannot fail; the fallback is never taken.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}
