//! # bmh-sidecar
//!
//! Turns verified reservation events into Metal3 BareMetalHost (BMH) provisioning. It runs
//! behind the webhook filter (Envoy or Istio), which has already checked the signature and the
//! schema; the sidecar checks the body again, records each reservation's intent on its BMH, and
//! a small controller does the slow work, waits for Metal3 and notifies.
//!
//! ```text
//!  reservation system ─POST /webhook─▶ proxy + filter ─▶ sidecar HTTP (server.rs)
//!                                                          │ parse + validate (webhook.rs)
//!                                                          │ per resource: map to a BMH by label
//!                                                          │   or name, decide (plan/delivery.rs),
//!                                                          │   write the intent as annotations with
//!                                                          │   a resourceVersion precondition (k8s.rs)
//!                                                          ▼
//!                    200 {"status":"success", "resourceName", "results":[...]} (the replaced
//!                    service's reply; SUCCESS_STATUS_CODE=202 for senders that want 202)
//!
//!  kube-apiserver ──one watch over BMHs──▶ reconciler (reconcile.rs, kube-runtime Controller)
//!                                            │ next_step (plan/steps.rs) from annotations + status:
//!                                            │  provisioning: userData Secret, spec patch,
//!                                            │    wait provisioned / operator error / timeout
//!                                            │  deprovisioning: spec patch, Secret deleted,
//!                                            │    wait available / error / timeout
//!                                            │  provisioned|released|failed: claim, then
//!                                            │    notify (notify.rs), then record delivery
//!                                            │  released + pending start: hand the host over
//!                                            ▼
//!                                  NOTIFY_URL ◀─ signed JSON POST, retried with backoff
//! ```
//!
//! Kubernetes is the only state: intent, phase, pending start and delivered notification live
//! in annotations on the BMH (see [`model::Keys`]), and every write carries the resourceVersion
//! it was decided on, so a restarted sidecar or a second replica finishes any unfinished work and
//! two writers never both act.
//!
//! # Layout
//! - [`config`]: environment variables and flags (clap), checked into [`config::Config`].
//! - [`error`]: the crate's error type, with the HTTP status and `error_type` of each variant.
//! - [`model`]: what decisions read: annotation names, [`model::Phase`], [`model::Host`] (read
//!   from a BMH object), [`model::Reservation`] (from an event), the resource-to-host mapping rule.
//! - [`plan`]: pure decisions: [`plan::delivery`] (webhook deliveries), [`plan::steps`]
//!   (reconciler steps and spec patches), [`plan::claim`] (who notifies), [`plan::secret`]
//!   (the userData Secret rule).
//! - [`cloudinit`]: the `#cloud-config` userData, rendered by a YAML serializer.
//! - [`k8s`]: all Kubernetes I/O (BMHs as `DynamicObject`s, Secrets).
//! - [`verify`]: the filter's own check of every delivery, again behind the edge.
//! - [`webhook`]: the `POST /webhook` logic.
//! - [`reconcile`]: the controller that carries out intents.
//! - [`notify`]: signed notifications with retry.
//! - [`server`]: hyper HTTP layer with graceful shutdown.
//! - [`metrics`], [`telemetry`]: Prometheus counters and JSON logs.
//! - [`state`]: what handlers and the reconciler share.

pub mod cloudinit;
pub mod config;
pub mod error;
pub mod k8s;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod plan;
pub mod reconcile;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod verify;
pub mod webhook;

use std::time::Duration;

pub use config::Config;
pub use error::{Error, Result};
pub use state::AppState;

/// Builds the Kubernetes client: in-cluster service account, else `KUBECONFIG`/`~/.kube/config`.
pub async fn kube_client() -> Result<kube::Client> {
    kube::Client::try_default().await.map_err(Error::KubeConfig)
}

/// Runs the sidecar until SIGTERM or SIGINT: HTTP server and reconciler.
pub async fn run(config: Config) -> Result<()> {
    let client = kube_client().await?;
    let addr = config.addr;
    let mut state = AppState::new(config, client)?;
    let controller = reconcile::controller(&state);
    state.cache = Some(controller.store());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let c = &state.config;
    // What it runs with, secrets aside: a ConfigMap whose names it did not read shows here.
    tracing::info!(
        namespace = %c.namespace,
        provision_image = %c.image.url,
        provision_checksum = c.image.checksum.as_deref().unwrap_or(""),
        provision_checksum_type = c.image.checksum_type.as_deref().unwrap_or(""),
        deprovision_image = c.deprovision_image.as_ref().map_or("", |i| i.url.as_str()),
        provisioning_timeout_seconds = c.provision_timeout.as_secs(),
        release_grace_seconds = c.release_grace.map_or(0, |g| g.as_secs()),
        notification_endpoint = c.notify_url.as_deref().unwrap_or(""),
        notification_timeout_seconds = c.notification_timeout.as_secs(),
        webhook_log_endpoint = c.webhook_log_url.as_deref().unwrap_or(""),
        login_user = %c.login_user,
        "configuration"
    );
    tracing::info!(%addr, namespace = %c.namespace, "bmh-sidecar listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reconciler = tokio::spawn(reconcile::run(controller, state.clone(), async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    }));
    // The admin listener (probes, metrics) keeps answering while the public one drains.
    let admin = match state.config.admin_addr {
        Some(admin_addr) => {
            let admin_listener = tokio::net::TcpListener::bind(admin_addr).await?;
            tracing::info!(%admin_addr, "admin listener (probes, metrics)");
            let mut rx = stop_tx.subscribe();
            Some(tokio::spawn(server::run_admin(
                admin_listener,
                state.clone(),
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                },
            )))
        }
        None => None,
    };
    let served = server::run(listener, state, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    if let Some(admin) = admin {
        let _ = tokio::time::timeout(Duration::from_secs(5), admin).await;
    }
    if tokio::time::timeout(Duration::from_secs(10), reconciler)
        .await
        .is_err()
    {
        tracing::warn!("reconciler did not stop within 10s");
    }
    tracing::info!("bmh-sidecar stopped");
    served
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
