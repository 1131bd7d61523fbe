//! kube-harness: the real-Kubernetes test bench the sidecar and end-to-end tests run on.
//!
//! ```text
//!  test ──ApiServer::shared()/start()──▶ etcd (--unsafe-no-fsync) ◀── kube-apiserver (RBAC on)
//!    │                                        127.0.0.1:<free>          127.0.0.1:<free>, TLS
//!    │   installs k8s/crd/ (BareMetalHost) — or, start_with(Crds::Bmo(src)) / metal3_server(),
//!    │   every CRD of the baremetal-operator source; admin token (system:masters), SA key
//!    ├─ create_namespace("t") ─▶ one namespace per test
//!    ├─ apply_file("k8s/base/rbac.yaml", ns) + service_account_kubeconfig(ns, sa) ─▶ least-privilege client
//!    ├─ create_bmh(..) ─▶ BareMetalHost in state `available` (status written directly)
//!    ├─ StandInOperator::start(client, ns) ─▶ writes status the way BMO does (SIMULATION)
//!    ├─ Operator::start(StandIn | Bmo, server, ns) ─▶ one operator for one namespace:
//!    │     Bmo = the REAL baremetal-operator (fixture provisioner) + its validating webhook
//!    │     op.add_host(client, name, labels) ─▶ created as a user would, waited to `available`
//!    └─ NotificationSink::start() ─▶ records the sidecar's notification POSTs
//! ```
//!
//! Everything started is stopped on drop (also when a test panics); watchdog processes kill
//! etcd, kube-apiserver and baremetal-operator if the test binary dies without dropping them.
//!
//! # The conformance API ([`metal3`])
//! - [`OperatorKind`] `{ StandIn, Bmo }`; [`operator_kinds`]`() -> Result<Vec<OperatorKind>>`:
//!   the stand-in, plus BMO when it is built.
//! - [`bmo_binary`]`() -> Result<Option<PathBuf>>`: `Ok(Some(bin))`, `Ok(None)` (skip; a loud
//!   message was printed), `Err` under `CI=true` when BMO is missing. [`bmo_build`] gives the
//!   source tree and commit too.
//! - [`metal3_server`]`() -> Result<&'static ApiServer>`: the test binary's shared server with
//!   BMO's CRDs when available (both operators run on it), else the project's CRD.
//! - [`Operator::start`]`(kind, &server, ns)`, [`Operator::start_with`] (with a
//!   [`StandInConfig`]), [`Operator::kind`], [`Operator::add_host`]`(&client, name, labels) ->
//!   Result<Value>`, [`Operator::describe`], [`Operator::stop`] (BMO: hosts deleted while it
//!   runs, then BMO and its webhook configuration).
//!
//! # Layout
//! - [`apiserver`]: [`ApiServer`]: binaries, processes, readiness, CRDs ([`Crds`]), namespaces,
//!   kubeconfigs, stop/start of kube-apiserver alone, the watchdog.
//! - [`manifest`]: multi-document YAML → server-side apply (optionally dry-run) via discovery.
//! - [`bmh`]: BareMetalHost helpers (create an `available` host, read it, write status, wait).
//! - [`bmo`]: the real baremetal-operator: finding its build ([`bmo_build`]), [`BmoProcess`],
//!   its webhook configuration, hosts as a user creates them.
//! - [`metal3`]: [`Operator`], the same API over both operators.
//! - [`operator`]: [`StandInOperator`], the simulated Metal3 operator, and its pure
//!   [`operator::next_status_with`] (BMO's next status save for a host).
//! - [`sink`]: [`NotificationSink`], a recording HTTP receiver that can go down and come up.
//! - [`error`]: the crate's [`Error`].
//!
//! Environment: `KUBE_TESTBIN` (dir with `kube-apiserver` and `etcd`; when unset the harness
//! runs `tools/build-testbin.sh`), `BMO_BIN` and `BMO_SRC` (the baremetal-operator binary and
//! its source tree; when `BMO_BIN` is unset the harness runs `tools/build-bmo.sh`), `CI`
//! (`true`: a missing BMO fails instead of skipping), `KUBE_HARNESS_KEEP` (keep the temp dirs
//! with logs of a private server or a BMO after drop).

pub mod apiserver;
pub mod bmh;
pub mod bmo;
pub mod error;
pub mod manifest;
pub mod metal3;
pub mod operator;
pub mod sink;

pub use apiserver::{
    ApiServer, Crds, ToolOutput, client_from_kubeconfig, repo_root, run_tool, spawn_watchdog,
    testbin_dir,
};
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
