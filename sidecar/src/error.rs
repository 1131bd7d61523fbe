//! The crate's one error type. Every variant knows the HTTP status and `error_type` it answers
//! with, so the HTTP layer maps errors in one place, and [`Error::body`] gives the JSON body in
//! the filter's own [`ErrorBody`] shape. A body the event rules refuse ([`Error::Invalid`]) is
//! answered exactly as the filter answers it.

use std::time::Duration;

use http::StatusCode;
use webhook_core::error::ErrorBody;
use webhook_core::event::ValidationError;

/// Why the configuration was refused at start-up ([`Error::Config`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Flags or environment variables that do not parse (clap's message, with the usage).
    #[error("{0}")]
    Args(#[from] clap::Error),
    /// A value that parses but breaks a rule (often Metal3's).
    #[error("{what}")]
    Invalid {
        /// What is wrong, naming the variable; never contains a secret.
        what: String,
    },
    /// `NOTIFY_URL` is not a URI.
    #[error("NOTIFY_URL: {0}")]
    NotifyUrl(#[source] http::uri::InvalidUri),
    /// The inbound verification (the filter's own configuration, built from ours) is refused.
    #[error("inbound verification: {0}")]
    Inbound(#[source] webhook_core::Error),
}

/// Everything that can go wrong in the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body is not a reservation event (the filter should have stopped it). Answered
    /// exactly as the filter answers it: 400 `MalformedJson` or 422, with `field`.
    #[error(transparent)]
    Invalid(#[from] ValidationError),

    /// The request body could not be read (the client went away, or sent a broken body).
    #[error("malformed request body: cannot read body: {0}")]
    UnreadableBody(#[source] BoxError),

    /// The request body is larger than the sidecar accepts.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured cap.
        limit: usize,
    },

    /// The Kubernetes API server could not be reached or answered 5xx/429. The sender retries;
    /// whatever intent was already recorded is finished by the reconciler.
    #[error("Kubernetes API server unavailable: {source}")]
    ApiUnavailable {
        /// The kube-rs error (transport, or the API server's 5xx/429).
        #[source]
        source: kube::Error,
    },

    /// The Kubernetes API server did not answer within the call timeout (treated like
    /// [`Error::ApiUnavailable`]).
    #[error(
        "Kubernetes API server unavailable: no answer within {}s{}",
        .after.as_secs(),
        for_name(.name.as_deref())
    )]
    ApiTimeout {
        /// The call timeout.
        after: Duration,
        /// The BMH or Secret concerned, named in the message only: like every unavailability,
        /// the 503 carries no `resource_name`.
        name: Option<String>,
    },

    /// The API server answered with an error that is not ours to fix by retrying.
    #[error("Kubernetes API error: {source}")]
    Kube {
        /// The kube-rs error.
        #[source]
        source: kube::Error,
        /// The BMH or Secret concerned, when one is.
        resource_name: Option<String>,
    },

    /// Optimistic concurrency lost too many times in a row for one host.
    #[error("host {resource_name} kept changing under us; retry")]
    Contended {
        /// The BMH concerned.
        resource_name: String,
    },

    /// A Secret with the userData Secret's name exists and was not written by the sidecar
    /// (no managed-by label): it is never overwritten or deleted.
    #[error("Secret {name} exists and is not managed by bmh-sidecar; refusing to overwrite it")]
    ForeignSecret {
        /// The Secret.
        name: String,
    },

    /// The cloud-config could not be rendered.
    #[error("cannot render cloud-config: {0}")]
    Render(#[source] serde_saphyr::ser::Error),

    /// Invalid configuration at start-up.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),

    /// Kubernetes client configuration could not be loaded.
    #[error("cannot load Kubernetes client configuration: {0}")]
    KubeConfig(#[source] kube::Error),

    /// Binding or serving the HTTP listener failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// What reading a request body fails with (hyper's error, or the length limit's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// ` for <name>`, or nothing.
fn for_name(name: Option<&str>) -> String {
    name.map(|n| format!(" for {n}")).unwrap_or_default()
}

impl Error {
    /// Wraps a kube error, classifying transport failures as [`Error::ApiUnavailable`].
    pub fn kube(source: kube::Error, resource_name: Option<&str>) -> Self {
        if is_unavailable(&source) {
            return Error::ApiUnavailable { source };
        }
        Error::Kube {
            source,
            resource_name: resource_name.map(str::to_owned),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid(v) => {
                StatusCode::from_u16(v.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Error::UnreadableBody(_) => StatusCode::BAD_REQUEST,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::ApiUnavailable { .. } | Error::ApiTimeout { .. } | Error::Contended { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::ForeignSecret { .. } => StatusCode::CONFLICT,
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 403 => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_GATEWAY,
            },
            Error::Render(_) | Error::Config(_) | Error::KubeConfig(_) | Error::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The `error_type` member of the JSON error body (and the metric label).
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Invalid(v) => v.outcome().error_type(),
            Error::UnreadableBody(_) => "ValidationError",
            Error::BodyTooLarge { .. } => "PayloadTooLarge",
            Error::ApiUnavailable { .. } | Error::ApiTimeout { .. } => "KubernetesUnavailable",
            Error::Contended { .. } => "Contended",
            Error::Kube { .. } => "KubernetesError",
            Error::ForeignSecret { .. } => "ForeignSecret",
            Error::Render(_) => "RenderError",
            Error::Config(_) => "ConfigError",
            Error::KubeConfig(_) => "KubeConfigError",
            Error::Io(_) => "IoError",
        }
    }

    /// The BMH or Secret concerned, for the `resource_name` member of error bodies.
    pub fn resource_name(&self) -> Option<&str> {
        match self {
            Error::Kube { resource_name, .. } => resource_name.as_deref(),
            Error::Contended { resource_name } => Some(resource_name),
            Error::ForeignSecret { name } => Some(name),
            _ => None,
        }
    }

    /// JSON path of the offending body member, for the `field` member of error bodies.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(v) => Some(&v.path),
            _ => None,
        }
    }

    /// The JSON error body, `timestamp` being the answer's time (RFC 3339).
    pub fn body(&self, timestamp: String) -> ErrorBody<'_> {
        ErrorBody::new(self.to_string(), self.error_type(), timestamp)
            .with_resource_name(self.resource_name())
            .with_field(self.field())
    }

    /// Seconds the sender should wait before retrying, for 503 answers.
    pub fn retry_after(&self) -> Option<u64> {
        (self.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(5)
    }
}

/// True when a kube error means "the API server is not there" rather than "it said no".
pub fn is_unavailable(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => matches!(status.code, 500 | 502 | 503 | 504 | 429),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// True for 409 Conflict (resourceVersion precondition failed, or AlreadyExists on create).
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

/// True for 404 Not Found.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("m", "r")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn statuses_and_types() {
        let e = Error::from(webhook_core::event::validate(b"not json").unwrap_err());
        assert_eq!(
            (e.status(), e.error_type(), e.field()),
            (StatusCode::BAD_REQUEST, "MalformedJson", Some("$"))
        );
        let e = Error::from(webhook_core::event::validate(b"{}").unwrap_err());
        assert_eq!(
            (e.status(), e.error_type()),
            (StatusCode::UNPROCESSABLE_ENTITY, "ValidationError")
        );
        let e = Error::kube(api_error(503), Some("h"));
        assert!(matches!(e, Error::ApiUnavailable { .. }));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after(), Some(5));
        assert_eq!(e.resource_name(), None);
        let e = Error::kube(api_error(403), Some("h"));
        assert_eq!(
            (e.status(), e.error_type(), e.resource_name()),
            (StatusCode::FORBIDDEN, "KubernetesError", Some("h"))
        );
        let e = Error::ApiTimeout {
            after: Duration::from_secs(5),
            name: Some("h".into()),
        };
        assert_eq!(
            e.to_string(),
            "Kubernetes API server unavailable: no answer within 5s for h"
        );
        assert_eq!(
            (e.status(), e.error_type(), e.resource_name()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "KubernetesUnavailable",
                None
            )
        );
        let e = Error::Contended {
            resource_name: "h".into(),
        };
        assert_eq!(e.resource_name(), Some("h"));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_refused_body_is_answered_as_the_filter_answers_it() {
        for body in [&b"not json"[..], b"{}", br#"{"eventType":"EVENT_NOPE"}"#] {
            let v = webhook_core::event::validate(body).unwrap_err();
            let ours = Error::from(v.clone());
            let filter = webhook_core::Error::from(v);
            assert_eq!(ours.status().as_u16(), filter.status());
            assert_eq!(ours.body("t".into()), filter.body("t".into()));
        }
    }

    #[test]
    fn the_body_keeps_its_member_order() {
        let e = Error::Contended {
            resource_name: "h".into(),
        };
        assert_eq!(
            String::from_utf8(e.body("t".into()).to_json()).unwrap(),
            r#"{"detail":"host h kept changing under us; retry","error_type":"Contended","resource_name":"h","timestamp":"t"}"#
        );
    }
}
