//! The harness's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// `Result` with the harness [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building or using the test bench.
///
/// Messages name the component and, for processes, carry the tail of its log so a failing test
/// says why the API server did not come up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `KUBE_TESTBIN` is unset/wrong and `tools/build-testbin.sh` did not produce the binaries.
    #[error("kube-apiserver/etcd test binaries are missing: {0}")]
    MissingTestbin(String),

    /// The real baremetal-operator is needed (CI, or `BMO_BIN`/`BMO_SRC` set) but not usable.
    #[error("baremetal-operator is not available: {0}")]
    MissingBmo(String),

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
        /// `etcd`, `kube-apiserver` or `baremetal-operator`.
        name: &'static str,
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
        /// What was awaited.
        what: String,
        /// The bound.
        after: Duration,
    },

    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// A kubeconfig could not be loaded.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),

    /// A manifest is not valid YAML.
    #[error("manifest YAML: {0}")]
    Yaml(#[from] serde_saphyr::Error),

    /// A manifest document is not a Kubernetes object, or JSON (de)serialisation failed.
    #[error("manifest: {0}")]
    Manifest(String),

    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// The API server answered something the harness cannot use.
    #[error("unexpected API answer: {0}")]
    Unexpected(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// True when this is an API error with HTTP status 403 (RBAC denial).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.is_forbidden())
    }
}
