//! The harness's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// `Result` with the harness [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while starting or using the reservation system.
///
/// Messages name the component and, for processes, carry the tail of its log, so a failing
/// scenario says why reservation-be did not come up or what the processor logged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A piece the tier needs (Java, the jars, PostgreSQL) is missing and this is CI
    /// (`CI=true`), or an explicitly given path is wrong.
    #[error("the reservation system is not available: {0}")]
    Missing(String),

    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A started process exited although it should be serving.
    #[error("{name} exited early ({status}); log {log:?} ends with:\n{tail}")]
    ProcessExited {
        /// `postgres`, `reservation-be`, `reservation-event-processor`.
        name: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },

    /// Something did not happen within its bound.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited (with the log tail of the process concerned, when there is one).
        what: String,
        /// The bound.
        after: Duration,
    },

    /// `psql` failed (the statement, and what psql printed).
    #[error("psql on database {db}: {message}\nstatement: {sql}")]
    Sql {
        /// The database.
        db: String,
        /// The statement.
        sql: String,
        /// psql's stderr.
        message: String,
    },

    /// An HTTP exchange with one of the services failed below HTTP (connect, read).
    #[error("HTTP {method} {url}: {message}")]
    Http {
        /// Method.
        method: String,
        /// Full URL.
        url: String,
        /// What went wrong.
        message: String,
    },

    /// A service answered, but not what the harness needs (status and body included).
    #[error("{what}: HTTP {status}: {body}")]
    Refused {
        /// The call.
        what: String,
        /// Status code.
        status: u16,
        /// Body (text).
        body: String,
    },

    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// The Kubernetes bench failed.
    #[error("kube-harness: {0}")]
    Kube(#[from] kube_harness::Error),

    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    KubeApi(#[from] kube::Error),

    /// Envoy did not start.
    #[error("envoy-harness: {0}")]
    Envoy(#[from] envoy_harness::Error),

    /// The sidecar did not start (the e2e crate's boxed error, as text).
    #[error("sidecar: {0}")]
    Sidecar(String),

    /// Anything else the harness cannot use.
    #[error("{0}")]
    Unexpected(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
