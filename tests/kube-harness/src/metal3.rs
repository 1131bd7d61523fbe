//! One API over both Metal3 operators, so a conformance suite runs the same test functions
//! against the real baremetal-operator (BMO, fixture provisioner) and the stand-in simulation.
//!
//! ```text
//!  let server = metal3_server().await?;               // BMO's CRDs when BMO is available
//!  for kind in operator_kinds()? {                    // [StandIn] or [StandIn, Bmo]
//!      let ns = server.create_namespace("t").await?;
//!      let op = Operator::start(kind, server, &ns).await?;   // one operator per namespace
//!      op.add_host(&client, "host-a", &[("label", "v")]).await?;  // as a user would; `available`
//!      ... the scenario ...
//!      op.stop().await?;                                // BMO: hosts deleted while it runs
//!  }
//! ```
//!
//! Rules that keep scenarios identical under both operators:
//! - one [`Operator`] per namespace, one host per scenario (BMO's fixture provisioner keeps one
//!   state per process: power, deployed image, inspection);
//! - hosts are created as a user would ([`Operator::add_host`]): BMC credentials Secret, BMC
//!   address, boot MAC, `online: false`; the operator brings them to `available` itself (BMO
//!   through registering → inspecting → preparing → available, ~20 s; the stand-in at once);
//! - what the fixture cannot do (failed provisioning, retries, stalls) only runs on the stand-in
//!   ([`OperatorKind::StandIn`]; its switches are in [`crate::operator`]).

use std::path::Path;
use std::time::Duration;

use kube::Client;
use kube::api::{DynamicObject, PostParams};
use serde_json::Value;

use crate::apiserver::{ApiServer, Crds};
use crate::bmh::{bmh_api, wait_for_state};
use crate::bmo::{BmoProcess, bmc_secret_name, bmo_build, ensure_bmc_secret, user_host};
use crate::error::{Error, Result};
use crate::operator::{StandInConfig, StandInOperator};

/// How long a new host may take to become `available` under BMO (measured ~20 s).
pub const BMO_AVAILABLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a new host may take to become `available` under the stand-in.
pub const STAND_IN_AVAILABLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which Metal3 operator drives the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorKind {
    /// The project's simulation ([`StandInOperator`]): fast, scriptable failures and stalls.
    StandIn,
    /// The real baremetal-operator with its fixture provisioner and its validating webhook.
    Bmo,
}

impl std::fmt::Display for OperatorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OperatorKind::StandIn => "stand-in",
            OperatorKind::Bmo => "baremetal-operator",
        })
    }
}

/// The operators that can run here: always the stand-in, plus BMO when it is built (see
/// [`crate::bmo::bmo_build`]: skipped with a loud message when unavailable, an error under
/// `CI=true`).
pub fn operator_kinds() -> Result<Vec<OperatorKind>> {
    let mut kinds = vec![OperatorKind::StandIn];
    if bmo_build()?.is_some() {
        kinds.push(OperatorKind::Bmo);
    }
    Ok(kinds)
}

static METAL3: tokio::sync::OnceCell<ApiServer> = tokio::sync::OnceCell::const_new();

/// The test binary's shared API server for the conformance tier, started on first use: with
/// BMO's CRDs (read from `BMO_SRC`) when BMO is available, so both operators run on the schema
/// the real operator ships; else with the project's CRD (stand-in only). Like
/// [`ApiServer::shared`], never stopped by the test (its watchdog ends it with the binary).
pub async fn metal3_server() -> Result<&'static ApiServer> {
    METAL3
        .get_or_try_init(|| async {
            match bmo_build()? {
                Some(b) => ApiServer::start_with(Crds::Bmo(b.src.clone())).await,
                None => ApiServer::start().await,
            }
        })
        .await
}

enum Running {
    StandIn(StandInOperator),
    Bmo(Box<BmoProcess>),
}

/// One running Metal3 operator for one namespace. Stops on drop (BMO: killed, its webhook
/// configuration removed); [`Operator::stop`] also deletes the hosts first, under BMO while it
/// still runs.
pub struct Operator {
    kind: OperatorKind,
    namespace: String,
    running: Running,
}

impl Operator {
    /// Starts `kind` for `namespace` with default settings (BMO's `-max-provisioning-retries`
    /// default 5; the stand-in's step delay 200 ms).
    pub async fn start(
        kind: OperatorKind,
        server: &ApiServer,
        namespace: &str,
    ) -> Result<Operator> {
        Self::start_with(kind, server, namespace, &StandInConfig::default()).await
    }

    /// Starts `kind` with `config`: `max_provisioning_retries` applies to both operators,
    /// `step_delay` to the stand-in only. BMO needs a server with BMO's CRDs
    /// ([`metal3_server`]) and fails with [`Error::MissingBmo`] when it is not built.
    pub async fn start_with(
        kind: OperatorKind,
        server: &ApiServer,
        namespace: &str,
        config: &StandInConfig,
    ) -> Result<Operator> {
        let running = match kind {
            OperatorKind::StandIn => Running::StandIn(StandInOperator::start_with(
                server.client().await?,
                namespace,
                config.clone(),
            )),
            OperatorKind::Bmo => {
                let Some(build) = bmo_build()? else {
                    return Err(Error::MissingBmo(
                        "no baremetal-operator build (see the message above); ask \
                         operator_kinds() which operators can run"
                            .into(),
                    ));
                };
                Running::Bmo(Box::new(
                    BmoProcess::start(build, server, namespace, config.max_provisioning_retries)
                        .await?,
                ))
            }
        };
        Ok(Operator {
            kind,
            namespace: namespace.to_string(),
            running,
        })
    }

    /// Which operator this is.
    pub fn kind(&self) -> OperatorKind {
        self.kind
    }

    /// The namespace it manages.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The BMO process (None for the stand-in): its log, build, webhook.
    pub fn bmo(&self) -> Option<&BmoProcess> {
        match &self.running {
            Running::Bmo(b) => Some(b),
            Running::StandIn(_) => None,
        }
    }

    /// BMO's log file (None for the stand-in, which logs through `tracing`).
    pub fn log_path(&self) -> Option<&Path> {
        self.bmo().map(BmoProcess::log_path)
    }

    /// One line saying what drives the hosts, for people reading a test log or `make run`.
    pub fn describe(&self) -> String {
        match &self.running {
            Running::StandIn(_) => {
                "stand-in operator: a SIMULATION of Metal3, no machine is touched".into()
            }
            Running::Bmo(b) => format!(
                "baremetal-operator {}, fixture provisioner: no machine is touched",
                b.build().short_commit()
            ),
        }
    }

    /// Creates host `name` as a user would (a BMC credentials Secret `<name>-bmc-secret` with
    /// `username`/`password`, `spec.bmc.address`, `credentialsName`, `bootMACAddress`,
    /// `online: false`, `labels`), then waits (bounded) until the operator has made it
    /// `available`, and returns it as stored.
    pub async fn add_host(
        &self,
        client: &Client,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<Value> {
        ensure_bmc_secret(client, &self.namespace, &bmc_secret_name(name)).await?;
        let obj: DynamicObject = serde_json::from_value(user_host(&self.namespace, name, labels))?;
        bmh_api(client, &self.namespace)
            .create(&PostParams::default(), &obj)
            .await?;
        let timeout = match self.kind {
            OperatorKind::StandIn => STAND_IN_AVAILABLE_TIMEOUT,
            OperatorKind::Bmo => BMO_AVAILABLE_TIMEOUT,
        };
        match wait_for_state(client, &self.namespace, name, "available", timeout).await {
            Err(Error::Timeout { what, after }) => Err(Error::Timeout {
                what: match self.bmo() {
                    Some(b) => format!("{what}; BMO log tail:\n{}", b.log_tail()),
                    None => what,
                },
                after,
            }),
            other => other,
        }
    }

    /// Stops the operator. BMO: deletes every host of the namespace while it still runs
    /// (bounded; its finalizer and delete path), then kills it and removes its webhook
    /// configuration. The stand-in just stops.
    pub async fn stop(self) -> Result<()> {
        match self.running {
            Running::StandIn(s) => {
                s.stop();
                Ok(())
            }
            Running::Bmo(b) => b.stop().await,
        }
    }
}
