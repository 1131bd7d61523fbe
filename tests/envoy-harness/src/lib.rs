//! Test bench for the webhook filter inside a real Envoy, and the renderer of the deployment
//! Envoy configuration (`envoy/envoy.yaml`, printed by `render-envoy-config`).
//!
//! ```text
//! test ──raw HTTP/1.1──▶ Envoy (subprocess, free loopback ports, --use-dynamic-base-id)
//!                          wasm filter ─▶ buffer ─▶ router ──▶ RecordingUpstream (raw TCP,
//!                          admin /ready, /stats/prometheus                  records every byte,
//!                                                                           answers 200)
//! ```
//! Everything started is stopped on `Drop`, also when a test panics.
//!
//! # Layout
//! - [`config`]: [`EnvoyConfig`] and its YAML rendering.
//! - [`envoy`]: [`Envoy`], the running proxy (start, wait ready, stats, stop on drop), and how
//!   the Envoy binary and the filter `.wasm` are found ([`envoy_bin`], [`filter_wasm`]).
//! - [`upstream`] holds [`RecordingUpstream`].
//! - [`http`]: a tiny raw HTTP/1.1 client (exact bytes, chunked bodies, split writes).
//! - [`sample`]: the fixtures' reservation messages moved to now.

pub mod config;
pub mod envoy;
pub mod http;
pub mod sample;
pub mod upstream;

pub use config::{EdgeLimits, EnvoyConfig, stub_upstream};
pub use envoy::{Envoy, envoy_bin, filter_wasm, filter_wasm_jsonschema, free_port};
pub use upstream::RecordingUpstream;

/// Errors of the harness (setup problems, never request outcomes).
#[derive(Debug)]
pub enum Error {
    /// An I/O error, with what was being done.
    Io(&'static str, std::io::Error),
    /// Envoy did not become ready; holds the tail of its log.
    NotReady(String),
    /// A required component (Envoy binary, filter artifact) is missing.
    Missing(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::NotReady(log) => write!(f, "Envoy did not become ready; log tail:\n{log}"),
            Error::Missing(what) => write!(f, "missing component: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result alias of the harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;
