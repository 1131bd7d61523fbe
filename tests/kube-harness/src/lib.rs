//! kube-harness: the real-Kubernetes test bench the sidecar and end-to-end tests run on.
//!
//! ```text
//!  test ──ApiServer::shared()/start()──▶ etcd (--unsafe-no-fsync) ◀── kube-apiserver (RBAC on)
//!    │                                        127.0.0.1:<free>          127.0.0.1:<free>, TLS
//!    │   installs k8s/crd/ (BareMetalHost), admin token (system:masters), SA signing key
//!    ├─ create_namespace("t") ─▶ one namespace per test
//!    ├─ apply_file("k8s/base/rbac.yaml", ns) + service_account_kubeconfig(ns, sa) ─▶ least-privilege client
//!    ├─ create_bmh(..) ─▶ BareMetalHost in state `available`
//!    ├─ StandInOperator::start(client, ns) ─▶ watches BMHs, writes status via /status (SIMULATION)
//!    └─ NotificationSink::start() ─▶ records the sidecar's notification POSTs
//! ```
//!
//! Everything started is stopped on drop (also when a test panics); a watchdog process kills
//! etcd and kube-apiserver if the test binary dies without dropping them.
//!
//! # Layout
//! - [`apiserver`]: [`ApiServer`]: binaries, processes, readiness, CRD, namespaces, kubeconfigs,
//!   stop/start of kube-apiserver alone.
//! - [`manifest`]: multi-document YAML → server-side apply (optionally dry-run) via discovery.
//! - [`bmh`]: BareMetalHost helpers (create an `available` host, read it, write status, wait).
//! - [`operator`]: [`StandInOperator`], the simulated Metal3 operator, and its pure
//!   [`operator::next_status`].
//! - [`sink`]: [`NotificationSink`], a recording HTTP receiver that can go down and come up.
//! - [`error`]: the crate's [`Error`].
//!
//! Environment: `KUBE_TESTBIN` (dir with `kube-apiserver` and `etcd`; when unset the harness
//! runs `tools/build-testbin.sh`), `KUBE_HARNESS_KEEP` (keep the temp dir with logs of a
//! private server after drop).

pub mod apiserver;
pub mod bmh;
pub mod bmo;
pub mod error;
pub mod manifest;
pub mod metal3;
pub mod operator;
pub mod sink;

pub use apiserver::{ApiServer, Crds, client_from_kubeconfig, repo_root, testbin_dir};
pub use bmh::{
    available_status, bmh_api, bmh_resource, create_bmh, get_bmh, provisioning_state,
    set_bmh_status, wait_for_bmh, wait_for_state,
};
pub use bmo::{BmoBuild, BmoProcess, bmo_binary, bmo_build, bmo_source};
pub use error::{Error, Result};
pub use manifest::apply_documents;
pub use metal3::{Operator, OperatorKind, metal3_server, operator_kinds};
pub use operator::{StandInConfig, StandInOperator};
pub use sink::{NotificationSink, Recorded};

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: how the bench's programs (`kube-testbench`,
/// `standin-operator`, the local run) learn to stop everything they started.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
