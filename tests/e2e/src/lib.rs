//! The whole system wired together, for the end-to-end tests and for `make run`.
//!
//! ```text
//!  client ──signed POST /webhook──▶ Envoy + webhook filter (real Envoy 1.40, V8)
//!                                     │ only authenticated, valid events
//!                                     ▼
//!                                   bmh-sidecar (its real binary, ServiceAccount token from
//!                                     │          k8s/base/rbac.yaml, not admin)
//!                                     ├──▶ kube-apiserver + etcd (real; BMH CRD, sample BMHs)
//!                                     │        ▲ status via /status
//!                                     │        └── StandInOperator (SIMULATION of Metal3)
//!                                     └──▶ NotificationSink (records signed notifications)
//! ```
//!
//! [`Stack::start`] brings every part up on free loopback ports (or the ports asked for), in
//! its own namespace; dropping the [`Stack`] stops everything it started, also when a test
//! panics. With an external cluster ([`Cluster::External`]) no API server, sample hosts or
//! stand-in operator are started: the cluster's own Metal3 does the work.
//!
//! # Layout
//! - [`Stack`], [`StackOptions`], [`Cluster`]: start and stop the system.
//! - [`Sidecar`]: the sidecar as a child process.
//! - [`SAMPLE_HOSTS`]: the BareMetalHosts a local run creates (resource ids of the fixtures).
//! - [`fixture`], [`fresh`], [`sign`], [`post_webhook`]: payloads and requests as the
//!   reservation system sends them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_harness::http::{self, Response};
use envoy_harness::{Envoy, EnvoyConfig};
use kube::Client;
use kube_harness::{ApiServer, NotificationSink, StandInConfig, StandInOperator, repo_root};

/// Boxed error of this crate: it only wires components together and reports what failed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The secret a local run and the tests sign with (never a production value; 32 bytes or more,
/// the least the filter and the sidecar accept).
pub const DEV_SECRET: &str = "dev-secret-change-me-0123456789abcdef";

/// BareMetalHosts a local run creates: (name, resourceId label). `lab-server-a1` is resource 1
/// of the sample event; resources 2 and 5 of the sample are a database and a router, which the
/// sidecar skips. The others are spare hosts to try more events on.
pub const SAMPLE_HOSTS: [(&str, &str); 3] = [
    ("lab-server-a1", "1"),
    ("lab-server-a2", "3"),
    ("lab-server-b1", "4"),
];

/// The webhook id a local run and the tests configure (`WEBHOOK_ID`).
pub const SAMPLE_WEBHOOK_ID: &str = "1";

/// Label the sidecar maps `resourceId` with (its default `BMH_RESOURCE_ID_LABEL`).
pub const RESOURCE_ID_LABEL: &str = "reservations.polito.it/resource-id";

/// Where the Kubernetes API comes from.
pub enum Cluster {
    /// The test binary's shared real API server (tests).
    Shared,
    /// A private real API server owned by the stack (local run without a cluster).
    Owned,
    /// An existing cluster: kubeconfig path (None: in-cluster / `KUBECONFIG` / `~/.kube/config`)
    /// and the namespace holding its BareMetalHosts.
    External {
        kubeconfig: Option<PathBuf>,
        namespace: String,
    },
}

/// What to start.
pub struct StackOptions {
    /// Kubernetes API source.
    pub cluster: Cluster,
    /// Envoy listener port; 0 picks a free one (the local run asks for 5001).
    pub listener_port: u16,
    /// Bind the listener on all interfaces instead of loopback.
    pub listen_on_all_interfaces: bool,
    /// The shared secret of the webhooks and of the notifications.
    pub secret: String,
    /// Extra environment for the sidecar (e.g. `PROVISIONING_TIMEOUT`).
    pub sidecar_env: Vec<(String, String)>,
    /// Where notifications go; None starts a [`NotificationSink`] and uses it.
    pub notify_url: Option<String>,
    /// Sidecar log level.
    pub log_level: String,
    /// Envoy's log level (`-l`); `trace` logs every component, the filter's VM included.
    pub envoy_log_level: String,
    /// The previous webhook secret of a rotation (`WEBHOOK_SECRET_PREVIOUS`), given to both
    /// Envoy and the sidecar; None: unset.
    pub previous_secret: Option<String>,
    /// Delay of each simulated Metal3 step (the local run slows it down to be watchable).
    pub operator_step_delay: Duration,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            cluster: Cluster::Shared,
            listener_port: 0,
            listen_on_all_interfaces: false,
            secret: DEV_SECRET.into(),
            sidecar_env: Vec::new(),
            notify_url: None,
            log_level: "INFO".into(),
            envoy_log_level: "info".into(),
            previous_secret: None,
            operator_step_delay: Duration::from_millis(200),
        }
    }
}

/// The running system. Field order is drop order: Envoy first (no new requests), then the
/// sidecar, the operator, the sink, and the API server last.
pub struct Stack {
    /// Envoy with the filter, in front of the sidecar.
    pub envoy: Envoy,
    /// The sidecar process.
    pub sidecar: Sidecar,
    /// The simulated Metal3 operator (local API server only).
    pub operator: Option<StandInOperator>,
    /// The notification receiver (when no `notify_url` was given).
    pub sink: Option<NotificationSink>,
    /// Admin client of the local API server (None on an external cluster).
    pub admin: Option<Client>,
    /// Namespace holding the BareMetalHosts.
    pub namespace: String,
    /// Kubeconfig the sidecar runs with (the ServiceAccount's, on a local API server).
    pub sidecar_kubeconfig: Option<PathBuf>,
    /// The secret requests are signed with.
    pub secret: String,
    /// A private API server (local run), stopped last.
    pub owned_apiserver: Option<ApiServer>,
    /// Envoy's configuration and environment, to start it again on the same ports.
    envoy_config: EnvoyConfig,
    envoy_env: Vec<(String, String)>,
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

impl Stack {
    /// Starts everything (see the crate docs) and waits until a request through Envoy reaches
    /// a ready sidecar.
    pub async fn start(opts: StackOptions) -> Result<Stack> {
        let mut owned_apiserver = None;
        let (server, external_ns, external_kubeconfig) = match opts.cluster {
            Cluster::Shared => (Some(ApiServer::shared().await?), None, None),
            Cluster::Owned => {
                owned_apiserver = Some(ApiServer::start().await?);
                (None, None, None)
            }
            Cluster::External {
                kubeconfig,
                namespace,
            } => (None, Some(namespace), kubeconfig),
        };
        let local: Option<&ApiServer> = server.or(owned_apiserver.as_ref());

        let (namespace, admin, operator, sidecar_kubeconfig) = match local {
            Some(server) => {
                let namespace = server.create_namespace("bmh-demo").await?;
                let admin = server.client().await?;
                for (name, id) in SAMPLE_HOSTS {
                    kube_harness::create_bmh(&admin, &namespace, name, &[(RESOURCE_ID_LABEL, id)])
                        .await?;
                }
                server
                    .apply_file("k8s/base/rbac.yaml", &namespace, false)
                    .await?;
                let kubeconfig = server
                    .service_account_kubeconfig(&namespace, "bmh-webhook-sidecar")
                    .await?;
                let operator = StandInOperator::start_with(
                    admin.clone(),
                    &namespace,
                    StandInConfig {
                        step_delay: opts.operator_step_delay,
                        ..StandInConfig::default()
                    },
                );
                (namespace, Some(admin), Some(operator), Some(kubeconfig))
            }
            None => (
                external_ns.unwrap_or_else(|| "default".into()),
                None,
                None,
                external_kubeconfig,
            ),
        };

        let sink = match opts.notify_url {
            Some(_) => None,
            None => Some(NotificationSink::start().await?),
        };
        let notify_url = match (&opts.notify_url, &sink) {
            (Some(url), _) => url.clone(),
            (None, Some(sink)) => sink.url(),
            (None, None) => String::new(),
        };

        let sidecar_addr = SocketAddr::from(([127, 0, 0, 1], envoy_harness::free_port()?));
        let mut env: Vec<(String, String)> = vec![
            ("K8S_NAMESPACE".into(), namespace.clone()),
            ("SIDECAR_ADDR".into(), sidecar_addr.to_string()),
            ("WEBHOOK_SECRET".into(), opts.secret.clone()),
            ("NOTIFICATION_ENDPOINT".into(), notify_url),
            // The README's sample carries no webhookId (like processor 0.1.17): the id
            // reservation-be gave the webhook, for notifications.
            ("WEBHOOK_ID".into(), SAMPLE_WEBHOOK_ID.into()),
            (
                "PROVISION_IMAGE".into(),
                "http://images.example.org/ubuntu-24.04.qcow2".into(),
            ),
            (
                "PROVISION_CHECKSUM".into(),
                "http://images.example.org/ubuntu-24.04.qcow2.sha256sum".into(),
            ),
            ("PROVISION_CHECKSUM_TYPE".into(), "sha256".into()),
            ("PROVISION_IMAGE_FORMAT".into(), "qcow2".into()),
            ("LOG_LEVEL".into(), opts.log_level.clone()),
        ];
        if let Some(previous) = &opts.previous_secret {
            env.push(("WEBHOOK_SECRET_PREVIOUS".into(), previous.clone()));
        }
        if let Some(kc) = &sidecar_kubeconfig {
            env.push(("KUBECONFIG".into(), kc.display().to_string()));
        }
        env.extend(opts.sidecar_env.iter().cloned());
        let sidecar = Sidecar::start(sidecar_addr, &env)?;
        sidecar.wait_ready(Duration::from_secs(60))?;

        let listener_port = match opts.listener_port {
            0 => envoy_harness::free_port()?,
            p => p,
        };
        let mut config = EnvoyConfig::for_test(
            listener_port,
            envoy_harness::free_port()?,
            sidecar_addr,
            Some(envoy_harness::filter_wasm()?),
            envoy_harness::config::DEFAULT_PLUGIN_CONFIG,
        );
        if opts.listen_on_all_interfaces {
            config.listener_address = "0.0.0.0".into();
        }
        config.log_level = opts.envoy_log_level.clone();
        let mut envoy_env = vec![("WEBHOOK_SECRET".to_owned(), opts.secret.clone())];
        if let Some(previous) = &opts.previous_secret {
            envoy_env.push(("WEBHOOK_SECRET_PREVIOUS".to_owned(), previous.clone()));
        }
        let envoy = Envoy::start(&config, &env_refs(&envoy_env))?;
        let envoy_config = config;

        Ok(Stack {
            envoy,
            sidecar,
            operator,
            sink,
            admin,
            namespace,
            sidecar_kubeconfig,
            secret: opts.secret,
            owned_apiserver,
            envoy_config,
            envoy_env,
        })
    }

    /// Sum of the sidecar's `/webhook` request counts (its request histogram's `_count`), whatever their labels: the proof
    /// that a request did (or did not) reach it.
    pub fn sidecar_webhook_requests(&self) -> u64 {
        let text = self.sidecar.metrics().unwrap_or_default();
        text.lines()
            .filter(|l| {
                l.starts_with("bmh_sidecar_http_request_duration_seconds_count")
                    && l.contains("path=\"/webhook\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// Kills Envoy (SIGKILL, mid-request if one is in flight) and starts it again on the same
    /// ports, as a restarted proxy container would.
    pub fn restart_envoy(&mut self) -> Result<()> {
        self.envoy.kill();
        self.envoy = Envoy::start(&self.envoy_config, &env_refs(&self.envoy_env))?;
        Ok(())
    }

    /// Envoy's listener: where the reservation system sends webhooks.
    pub fn listener(&self) -> SocketAddr {
        self.envoy.listener()
    }

    /// POSTs `body` to `/webhook` through Envoy as the reservation system does: JSON, signed
    /// with the stack's secret. The blocking client runs off the async runtime.
    pub async fn send_signed(&self, body: Vec<u8>) -> Result<Response> {
        let (addr, secret) = (self.listener(), self.secret.clone());
        tokio::task::spawn_blocking(move || {
            let sig = sign(&secret, &body);
            post_webhook(
                addr,
                &body,
                &[
                    ("content-type", "application/json"),
                    ("x-webhook-signature", &sig),
                ],
            )
        })
        .await?
    }
}

/// The sidecar binary: `SIDECAR_BIN`, else `debug/bmh-sidecar` in `CARGO_TARGET_DIR` or
/// `target/` (built by `make test` / `make run`). Missing is an error, never a skip.
pub fn sidecar_bin() -> Result<PathBuf> {
    let path = std::env::var_os("SIDECAR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| repo_root().join("target"), PathBuf::from)
                .join("debug/bmh-sidecar")
        });
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "sidecar binary not found at {} (run `cargo build -p bmh-sidecar` or set SIDECAR_BIN)",
            path.display()
        )
        .into())
    }
}

/// The sidecar as a child process; killed and reaped on drop.
pub struct Sidecar {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Sidecar {
    /// Spawns the sidecar with exactly `env` (plus `PATH`), logging to a temp file.
    pub fn start(addr: SocketAddr, env: &[(String, String)]) -> Result<Sidecar> {
        let log = std::env::temp_dir().join(format!(
            "bmh-sidecar-{}-{}.log",
            std::process::id(),
            addr.port()
        ));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(sidecar_bin()?);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        Ok(Sidecar { child, addr, log })
    }

    /// The sidecar's own address (loopback; only Envoy talks to it).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The sidecar's log file (JSON lines).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits (bounded) until `GET /readyz` answers 200.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(r) = http::get(self.addr, "/readyz")
                && r.status == 200
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        Err(format!("sidecar not ready after {timeout:?}; log:\n{log}").into())
    }

    /// `GET /metrics` from the sidecar itself.
    pub fn metrics(&self) -> Result<String> {
        let r = http::get(self.addr, "/metrics")?;
        Ok(String::from_utf8_lossy(&r.body).into_owned())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a payload from `fixtures/` at the repository root.
pub fn fixture(name: &str) -> Result<Vec<u8>> {
    let path = repo_root().join("fixtures").join(name);
    std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()).into())
}

/// The payload with its times moved to now (`envoy_harness::sample::at_now`): `timestamp` now
/// (the fixtures' 2025 dates are long past), every reservation begun an hour ago and ending a
/// day from now (a START of a reservation that has ended never provisions). A body that is not
/// JSON is returned as it is.
pub fn fresh(body: &[u8]) -> Vec<u8> {
    let Ok(mut message) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.to_vec();
    };
    envoy_harness::sample::at_now(
        &mut message,
        std::time::SystemTime::now(),
        std::time::Duration::from_secs(24 * 3600),
    );
    serde_json::to_vec_pretty(&message).unwrap_or_else(|_| body.to_vec())
}

/// `X-Webhook-Signature` as the real reservation system signs: standard Base64 of
/// HMAC-SHA256 of the body (reservation-be checks the sidecar's notifications the same way).
pub fn sign(secret: &str, body: &[u8]) -> String {
    webhook_core::scheme::sign_reservation_system(secret, body)
}

/// The replaced service's README form of the same MAC, `sha256=<hex>` (still accepted).
pub fn sign_hex(secret: &str, body: &[u8]) -> String {
    webhook_core::signature::signature_header_value(secret.as_bytes(), body)
}

/// `POST /webhook` with the given headers (plus a correct `content-length`).
pub fn post_webhook(addr: SocketAddr, body: &[u8], headers: &[(&str, &str)]) -> Result<Response> {
    let len = body.len().to_string();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("content-length", &len));
    let head = http::head("POST", "/webhook", &all);
    Ok(http::send(addr, &[head.as_bytes(), body])?)
}
