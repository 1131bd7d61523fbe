//! The crate's one error type. Every variant knows the HTTP status and `error_type` it answers
//! with, so the HTTP layer maps errors in one place.

use http::StatusCode;

/// Everything that can go wrong in the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body is not a reservation event (the filter should have stopped it).
    #[error("malformed request body: {0}")]
    MalformedBody(String),

    /// The request body is larger than the sidecar accepts.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured cap.
        limit: usize,
    },

    /// The Kubernetes API server could not be reached or did not answer in time. The sender
    /// retries; whatever intent was already recorded is finished by the reconciler.
    #[error("Kubernetes API server unavailable: {0}")]
    ApiUnavailable(String),

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
    Render(String),

    /// Invalid configuration at start-up.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Kubernetes client configuration could not be loaded.
    #[error("cannot load Kubernetes client configuration: {0}")]
    KubeConfig(String),

    /// A notification could not be delivered (retried later by the reconciler).
    #[error("notification not delivered: {0}")]
    Notify(String),

    /// Binding or serving the HTTP listener failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a kube error, classifying transport failures as [`Error::ApiUnavailable`].
    pub fn kube(source: kube::Error, resource_name: Option<&str>) -> Self {
        if is_unavailable(&source) {
            return Error::ApiUnavailable(source.to_string());
        }
        Error::Kube {
            source,
            resource_name: resource_name.map(str::to_owned),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::MalformedBody(_) => StatusCode::BAD_REQUEST,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::ApiUnavailable(_) | Error::Contended { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::ForeignSecret { .. } => StatusCode::CONFLICT,
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 403 => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_GATEWAY,
            },
            Error::Render(_)
            | Error::Config(_)
            | Error::KubeConfig(_)
            | Error::Notify(_)
            | Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error_type` member of the JSON error body (and the metric label).
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::MalformedBody(_) => "ValidationError",
            Error::BodyTooLarge { .. } => "PayloadTooLarge",
            Error::ApiUnavailable(_) => "KubernetesUnavailable",
            Error::Contended { .. } => "Conflict",
            Error::Kube { .. } => "KubernetesError",
            Error::ForeignSecret { .. } => "ForeignSecret",
            Error::Render(_) => "RenderError",
            Error::Config(_) => "ConfigError",
            Error::KubeConfig(_) => "KubeConfigError",
            Error::Notify(_) => "NotificationError",
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

    #[test]
    fn statuses_and_types() {
        let e = Error::MalformedBody("x".into());
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.error_type(), "ValidationError");
        let e = Error::ApiUnavailable("down".into());
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after(), Some(5));
        let e = Error::Contended {
            resource_name: "h".into(),
        };
        assert_eq!(e.resource_name(), Some("h"));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
