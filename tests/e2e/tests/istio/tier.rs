//! Brings the Istio tier up, inside the private namespaces `istio.rs` entered, and down again.
//!
//! ```text
//!  kube-apiserver + etcd ◀── istiod (pilot-discovery, the project's mesh config) ── creates ──▶
//!   Istio + Gateway API CRDs,     │ Service + Deployment bmh-webhook-istio (kube-gateway
//!   out/deploy/istio-gateway      │ template of the chart's istio-sidecar-injector ConfigMap)
//!   (registry → loopback),        │
//!   WorkloadEntries               ▼ xDS, CA (istiod.istio-system.svc:15012 → /etc/hosts)
//!                               istio-agent (pilot-agent proxy router, env/args/volumes of
//!  crane registry serve ◀─ pull ─ │ that Deployment's pod) ── spawns ──▶ Envoy 1.40 (PyPI)
//!   127.0.0.1:5000, the filter    │ ECDS rewritten to /var/lib/istio/data/<hash>/<digest>.wasm
//!   image of out/images           ▼
//!  test ── 127.0.0.1:5001 ──▶ gateway listener 0.0.0.0_5001 ──▶ RecordingUpstream 127.0.0.1:8080
//!                                                               (the bmh-webhook Service's
//!                                                                WorkloadEntry)
//! ```
//! Two WorkloadEntries stand in for the pods no kubelet runs: the sidecar pods at 127.0.0.1
//! (labels of the bmh-webhook Deployment's pods, so the shipped Service selects them) and the
//! gateway pod at 127.0.0.2 (labels of the pods istiod's Deployment would create, so istiod
//! binds the Gateway to this proxy).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_harness::{RecordingUpstream, http};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use kube_harness::{ApiServer, repo_root};
use serde_json::{Value, json};

use e2e::Result;

use crate::pod::{self, PodIdentity};
use crate::support;

/// The namespace the user deploys into (the README's).
pub const NS: &str = "metal3";
/// The gateway pod this tier runs (istio-agent's POD_NAME).
pub const POD_NAME: &str = "bmh-webhook-istio-0";
/// The gateway's proxy: its pod IP, the address of its WorkloadEntry.
pub const GATEWAY_IP: &str = "127.0.0.2";
/// Where the gateway listener is reached (it binds 0.0.0.0:5001 inside the namespace).
pub const GATEWAY: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5001);
/// Envoy's admin, as istio-agent's bootstrap sets it.
pub const ENVOY_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15000);
/// The gateway pod's Prometheus port (`http-envoy-prom`, what the PodMonitor scrapes).
pub const ENVOY_PROM: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15090);
/// The loopback OCI registry.
pub const REGISTRY: &str = "127.0.0.1:5000";
/// istiod's address in the gateway's environment and mesh config (resolved by /etc/hosts in
/// the private mount namespace).
pub const ISTIOD_HOST: &str = "istiod.istio-system.svc";
/// istiod's debug and readiness endpoint.
pub const ISTIOD_HTTP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 18080);

/// The secrets the user puts in `bmh-webhook-secrets` (README, "Deploying").
pub const SECRET: &str = "istio-tier-secret-0123456789abcdef0123456789";
pub const PREVIOUS_SECRET: &str = "istio-tier-previous-0123456789abcdef01234567";

/// Bound of the waits for the control plane (a busy 2-core machine).
pub const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);

/// A child process killed (and reaped) on drop, with its log file.
pub struct Proc {
    name: &'static str,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        Ok(Proc { name, child, log })
    }

    /// Fails with the log tail when the process has exited.
    pub fn check(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(st) => Err(format!("{} exited ({st}):\n{}", self.name, self.tail(40)).into()),
        }
    }

    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What was built and shipped: the Istio binaries, the images, the deployable overlay.
pub struct Inputs {
    pub istio: PathBuf,
    pub envoy: PathBuf,
    pub images: Value,
    /// The filter module (`plugin.wasm` of the image), byte for byte.
    pub wasm: Vec<u8>,
}

/// The running tier. Field order is drop order: the agent (and its Envoy) first, the API
/// server last.
pub struct Tier {
    pub agent: Proc,
    pub istiod: Proc,
    pub registry: Proc,
    pub upstream: RecordingUpstream,
    pub server: ApiServer,
    pub rt: tokio::runtime::Runtime,
    /// The WasmPlugin as `kustomize build out/deploy/istio-gateway` rendered it (registry
    /// pointed at the loopback one).
    pub wasmplugin: Value,
    /// The Deployment istiod created for the Gateway.
    pub gateway_deployment: Value,
    /// The gateway pod as this tier ran it.
    pub pod: pod::Container,
    /// The filter image in the loopback registry: `127.0.0.1:5000/bmh-webhook/filter`.
    pub repository: String,
    /// Its manifest digest (`sha256:...`), equal to out/images' one.
    pub digest: String,
    pub inputs: Inputs,
    pub dir: PathBuf,
}

fn wait_until(what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {WAIT:?} waiting for {what}").into());
        }
        std::thread::sleep(POLL);
    }
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Tier {
    /// Starts everything (see the module docs). `dir` is the tier's scratch directory (on a
    /// tmpfs of the private mount namespace).
    pub fn start(inputs: Inputs, dir: PathBuf) -> Result<Tier> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let t0 = Instant::now();
        let step =
            |what: &str| eprintln!("istio tier: {:>5.1} s  {what}", t0.elapsed().as_secs_f64());

        step("kube-apiserver + etcd");
        let server = rt.block_on(ApiServer::start())?;
        let client = rt.block_on(server.client())?;
        step("Istio and Gateway API CRDs");
        rt.block_on(support::install_crds(
            &server,
            &[support::ThirdParty::Istio, support::ThirdParty::GatewayApi],
        ));
        rt.block_on(async {
            let api: Api<Namespace> = Api::all(client.clone());
            for name in ["istio-system", NS] {
                let ns = Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                api.create(&PostParams::default(), &ns).await?;
            }
            // The chart's injector ConfigMap: istiod renders the gateway's Deployment from it.
            let injector =
                std::fs::read_to_string(inputs.istio.join("istio-sidecar-injector.yaml"))?;
            server.apply_yaml(&injector, "istio-system", false).await?;
            Ok::<_, e2e::Error>(())
        })?;

        step("loopback OCI registry, the filter image pushed unchanged");
        let crane = inputs.istio.join("crane");
        let mut cmd = Command::new(&crane);
        cmd.args(["registry", "serve", "--address", REGISTRY]);
        let mut registry = Proc::spawn("crane registry", cmd, dir.join("registry.log"))?;
        wait_until("the registry", || {
            registry.check()?;
            Ok(http::get(REGISTRY.parse()?, "/v2/").is_ok_and(|r| r.status == 200))
        })?;
        let filter = &inputs.images["images"]["filter"];
        let digest = filter["digest"]
            .as_str()
            .ok_or("images.json: no filter digest")?
            .to_owned();
        let built_registry = inputs.images["registry"]
            .as_str()
            .ok_or("images.json: no registry")?;
        let loopback_registry = format!("{REGISTRY}/bmh-webhook");
        let repository = format!("{loopback_registry}/filter");
        let layout = dir.join("filter-oci");
        std::fs::create_dir_all(&layout)?;
        run(Command::new("tar")
            .arg("-xf")
            .arg(repo_root().join(filter["archive"].as_str().unwrap_or_default()))
            .arg("-C")
            .arg(&layout))?;
        let tag = filter["tag"].as_str().unwrap_or_default().replacen(
            built_registry,
            &loopback_registry,
            1,
        );
        run(Command::new(&crane)
            .args(["push", "--insecure"])
            .arg(&layout)
            .arg(&tag))?;
        let served = run(Command::new(&crane).args(["digest", "--insecure", &tag]))?;
        if served.trim() != digest {
            return Err(format!(
                "the registry serves {} for {tag}, out/images has {digest}",
                served.trim()
            )
            .into());
        }

        step("out/deploy/istio-gateway, registry pointed at the loopback one");
        let wasmplugin = rt.block_on(apply_overlay(
            &server,
            &client,
            built_registry,
            &loopback_registry,
        ))?;

        step("the backend: RecordingUpstream at the bmh-webhook Service's WorkloadEntry");
        let backend_port = rt.block_on(backend_workload_entry(&server, &client))?;
        let upstream =
            RecordingUpstream::start_on(SocketAddr::from(([127, 0, 0, 1], backend_port)))?;

        step("istiod");
        let istiod = start_istiod(&inputs.istio, &server, &dir)?;
        let mut istiod = istiod;
        wait_until("istiod /ready", || {
            istiod.check()?;
            Ok(http::get(ISTIOD_HTTP, "/ready").is_ok_and(|r| r.status == 200))
        })?;

        step("istiod creates the gateway's Service and Deployment");
        let mut gateway_deployment = Value::Null;
        wait_until(
            "Deployment bmh-webhook-istio (istiod's gateway controller)",
            || {
                istiod.check()?;
                let d = rt.block_on(async {
                    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
                    let svc: Api<Service> = Api::namespaced(client.clone(), NS);
                    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
                    Ok::<_, e2e::Error>(
                        match (
                            api.get_opt("bmh-webhook-istio").await?,
                            svc.get_opt("bmh-webhook-istio").await?,
                            cm.get_opt("istio-ca-root-cert").await?,
                        ) {
                            (Some(d), Some(_), Some(_)) => Some(serde_json::to_value(d)?),
                            _ => None,
                        },
                    )
                })?;
                match d {
                    Some(d) => {
                        gateway_deployment = d;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            },
        )?;

        step("the gateway pod: WorkloadEntry, volumes, environment (a stand-in kubelet)");
        let pod_name = POD_NAME;
        let root = dir.join("gateway-pod");
        let identity = PodIdentity {
            name: pod_name,
            namespace: NS,
            ip: GATEWAY_IP,
            host_ip: "127.0.0.1",
            node_name: "istio-tier",
        };
        let pod = rt.block_on(pod::realize(
            &client,
            &gateway_deployment,
            "istio-proxy",
            &identity,
            &root,
        ))?;
        rt.block_on(apply_json(
            &server,
            &workload_entry(
                pod_name,
                GATEWAY_IP,
                &pod.labels,
                Some(&pod.service_account),
            ),
        ))?;

        step("istio-agent (pilot-agent) with the project's Envoy");
        let agent = start_agent(&inputs, &pod, &root, &dir)?;
        let mut tier = Tier {
            agent,
            istiod,
            registry,
            upstream,
            server,
            rt,
            wasmplugin,
            gateway_deployment,
            pod,
            repository,
            digest,
            inputs,
            dir,
        };
        let ready = wait_until(
            "the gateway listener and the filter (a signed event answered 200)",
            || {
                tier.check_processes()?;
                Ok(tier
                    .post_signed(SECRET, &tier.event())
                    .is_ok_and(|r| r.status == 200))
            },
        );
        if let Err(e) = ready {
            return Err(format!("{e}\n{}", tier.log_tails()).into());
        }
        step("ready");
        Ok(tier)
    }

    pub fn check_processes(&mut self) -> Result<()> {
        self.registry.check()?;
        self.istiod.check()?;
        self.agent.check()
    }

    /// The fixture EVENT_START as the reservation system sends it now.
    pub fn event(&self) -> Vec<u8> {
        e2e::fresh(&e2e::fixture("event-start.json").unwrap_or_default())
    }

    /// The header the shipped pluginConfig reads the signature from.
    pub fn signature_header(&self) -> String {
        webhook(&self.wasmplugin)
            .map(|w| w.scheme.header().to_owned())
            .unwrap_or_else(|_| "x-webhook-signature".to_owned())
    }

    /// POST /webhook to the gateway, JSON, signed with `secret` the way the reservation system
    /// signs (e2e::sign).
    pub fn post_signed(&self, secret: &str, body: &[u8]) -> Result<http::Response> {
        let sig = e2e::sign(secret, body);
        let header = self.signature_header();
        e2e::post_webhook(
            GATEWAY,
            body,
            &[
                ("content-type", "application/json"),
                (header.as_str(), sig.as_str()),
            ],
        )
    }

    pub fn post_unsigned(&self, body: &[u8]) -> Result<http::Response> {
        e2e::post_webhook(GATEWAY, body, &[("content-type", "application/json")])
    }

    /// Server-side applies `plugin` (a changed copy of [`Tier::wasmplugin`]) as the user would
    /// `kubectl apply` it.
    pub fn apply_wasmplugin(&self, plugin: &Value) -> Result<()> {
        self.rt.block_on(apply_json(&self.server, plugin))
    }

    /// Envoy's `/config_dump`.
    pub fn config_dump(&self) -> Result<Value> {
        let r = http::get(ENVOY_ADMIN, "/config_dump")?;
        Ok(serde_json::from_slice(&r.body)?)
    }

    /// The Wasm configurations Envoy holds from ECDS (what istio-agent handed it).
    pub fn ecds_wasm(&self) -> Result<Vec<Value>> {
        let dump = self.config_dump()?;
        Ok(dump["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.EcdsConfigDump")
            .flat_map(|c| c["ecds_filters"].as_array().cloned().unwrap_or_default())
            .map(|f| f["ecds_filter"].clone())
            .filter(|f| {
                f["typed_config"]["@type"]
                    == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
            })
            .collect())
    }

    /// `server.uptime` of Envoy: it only grows while the same Envoy runs.
    pub fn envoy_uptime(&self) -> Result<u64> {
        let r = http::get(ENVOY_ADMIN, "/stats?filter=^server.uptime$")?;
        let text = String::from_utf8_lossy(&r.body);
        text.lines()
            .find_map(|l| l.strip_prefix("server.uptime: "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no server.uptime in {text}").into())
    }

    /// The gateway pod's `/stats/prometheus` on 15090 (what Prometheus scrapes).
    pub fn prometheus(&self) -> Result<String> {
        let r = http::get(ENVOY_PROM, "/stats/prometheus")?;
        Ok(String::from_utf8_lossy(&r.body).into_owned())
    }

    /// Waits (bounded) until `f` holds, e.g. for a pushed change to reach Envoy.
    pub fn eventually(
        &mut self,
        what: &str,
        mut f: impl FnMut(&Tier) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.check_processes()?;
            if f(self)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {WAIT:?} waiting until {what}").into());
            }
            std::thread::sleep(POLL);
        }
    }

    /// The logs worth reading after a failure.
    pub fn log_tails(&self) -> String {
        format!(
            "--- istiod (tail) ---\n{}\n--- istio-agent + Envoy (tail) ---\n{}",
            self.istiod.tail(30),
            self.agent.tail(60)
        )
    }
}

impl Drop for Tier {
    fn drop(&mut self) {
        // ISTIO_TIER_LOGS=<dir outside /tmp and target/istio-tier>: keep the logs (istiod,
        // istio-agent with Envoy, the registry) of this run there.
        if let Some(keep) = std::env::var_os("ISTIO_TIER_LOGS") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            for p in [&self.istiod.log, &self.agent.log, &self.registry.log] {
                if let Some(name) = p.file_name() {
                    let _ = std::fs::copy(p, keep.join(name));
                }
            }
            eprintln!("istio tier: logs kept in {}", keep.display());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The reservation webhook of a WasmPlugin's pluginConfig (the one on `/webhook`) as the
/// filter compiles it: a preset's name, header and cap included.
pub fn webhook(plugin: &Value) -> Result<webhook_core::config::Webhook> {
    let config = plugin["spec"]["pluginConfig"].to_string();
    let compiled =
        webhook_core::config::CompiledConfig::from_json(config.as_bytes(), |env| match env {
            "WEBHOOK_SECRET" => Some(SECRET.to_owned()),
            "WEBHOOK_SECRET_PREVIOUS" => Some(PREVIOUS_SECRET.to_owned()),
            _ => None,
        })?;
    compiled
        .webhooks
        .into_iter()
        .find(|w| w.path == "/webhook")
        .ok_or_else(|| "the WasmPlugin has no webhook on /webhook".into())
}

/// The pluginConfig entry that configures the reservation webhook (written fields win over its
/// preset's), for a test to change as a user would.
pub fn webhook_entry_mut(plugin: &mut Value) -> Option<&mut Value> {
    plugin["spec"]["pluginConfig"]["webhooks"]
        .as_array_mut()?
        .iter_mut()
        .find(|w| w["path"] == "/webhook" || w["preset"] == "reservation_system")
}

async fn apply_json(server: &ApiServer, obj: &Value) -> Result<()> {
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or(NS)
        .to_owned();
    server.apply_yaml(&obj.to_string(), &ns, false).await?;
    Ok(())
}

/// The user's steps of README "Deploying" for the gateway overlay: the Secret, then
/// `kubectl apply -k out/deploy/istio-gateway`, where the only change is the registry (the
/// kustomization `make images` wrote, with IMAGE_REGISTRY = the loopback registry). Returns
/// the WasmPlugin as rendered.
async fn apply_overlay(
    server: &ApiServer,
    client: &Client,
    built_registry: &str,
    loopback_registry: &str,
) -> Result<Value> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let data: BTreeMap<String, ByteString> = [
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_SECRET_PREVIOUS", PREVIOUS_SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("bmh-webhook-secrets".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &secret).await?;

    let shipped = repo_root().join("out/deploy/istio-gateway/kustomization.yaml");
    let text = std::fs::read_to_string(&shipped)
        .map_err(|e| format!("{}: {e} (make images)", shipped.display()))?;
    if !text.contains(built_registry) {
        return Err(format!(
            "{} does not name the registry of images.json",
            shipped.display()
        )
        .into());
    }
    // Three levels below the repository root, like out/deploy/<overlay>: the relative
    // resource path of the generated kustomization stays valid unchanged.
    let dir = repo_root().join("target/istio-tier/deploy");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("kustomization.yaml"),
        text.replace(built_registry, loopback_registry),
    )?;
    let rendered = support::kustomize_build(&dir);
    let docs = kube_harness::manifest::parse_documents(&rendered)?;
    server.apply_yaml(&rendered, NS, false).await?;
    docs.into_iter()
        .find(|d| d["kind"] == "WasmPlugin")
        .map(|mut d| {
            d["metadata"]["namespace"] = json!(NS);
            d
        })
        .ok_or_else(|| "the overlay has no WasmPlugin".into())
}

/// The WorkloadEntry standing in for the sidecar pods, with their pod template's labels (which
/// the shipped Service selects); returns the Service's target port. No `serviceAccount`: the
/// pods are outside the mesh (`sidecar.istio.io/inject: "false"`), and istiod takes a
/// WorkloadEntry with one for a mesh workload and would send it mTLS, where an uninjected pod
/// (no `security.istio.io/tlsMode` label) gets plain HTTP.
async fn backend_workload_entry(server: &ApiServer, client: &Client) -> Result<u16> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let d = serde_json::to_value(deployments.get("bmh-webhook").await?)?;
    let labels: BTreeMap<String, String> =
        serde_json::from_value(d["spec"]["template"]["metadata"]["labels"].clone())?;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let svc = serde_json::to_value(services.get("bmh-webhook").await?)?;
    let port = svc["spec"]["ports"][0]["targetPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or("the bmh-webhook Service's targetPort is not a number")?;
    apply_json(
        server,
        &workload_entry("bmh-webhook-0", "127.0.0.1", &labels, None),
    )
    .await?;
    Ok(port)
}

fn workload_entry(
    name: &str,
    address: &str,
    labels: &BTreeMap<String, String>,
    service_account: Option<&str>,
) -> Value {
    let mut spec = json!({"address": address, "labels": labels});
    if let Some(sa) = service_account {
        spec["serviceAccount"] = json!(sa);
    }
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    })
}

/// istiod as the chart runs it, out of cluster: every port on loopback, no webhooks to patch,
/// and the two Istio-only HTTP filters off (the project's Envoy is upstream Envoy, which lacks
/// them; docs/deploy.md). The mesh config names no metrics provider, so no `istio.stats`.
fn start_istiod(istio: &Path, server: &ApiServer, dir: &Path) -> Result<Proc> {
    let mesh = dir.join("mesh.yaml");
    std::fs::write(
        &mesh,
        format!(
            "rootNamespace: istio-system\ntrustDomain: cluster.local\naccessLogFile: /dev/stdout\n\
             defaultConfig:\n  discoveryAddress: {ISTIOD_HOST}:15012\n"
        ),
    )?;
    let mut cmd = Command::new(istio.join("pilot-discovery"));
    cmd.arg("discovery")
        .arg("--kubeconfig")
        .arg(server.admin_kubeconfig())
        .arg("--meshConfig")
        .arg(&mesh)
        .args([
            "--httpAddr=127.0.0.1:18080",
            "--grpcAddr=127.0.0.1:15010",
            "--secureGRPCAddr=127.0.0.1:15012",
            "--httpsAddr=127.0.0.1:15017",
            "--monitoringAddr=127.0.0.1:15014",
            "--ctrlz_address=127.0.0.1",
            "--log_output_level=default:info",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            ("POD_NAMESPACE", "istio-system"),
            ("POD_NAME", "istiod-tier"),
            ("REVISION", "default"),
            ("PILOT_ENABLE_METADATA_EXCHANGE", "false"),
            ("PILOT_ENABLE_ALPN_FILTER", "false"),
            ("VALIDATION_WEBHOOK_CONFIG_NAME", ""),
            ("INJECTION_WEBHOOK_CONFIG_NAME", ""),
            ("GOMEMLIMIT", "1GiB"),
        ]);
    Proc::spawn("istiod", cmd, dir.join("istiod.log"))
}

/// pilot-agent as the container would run it: its args and environment from the Deployment,
/// its volumes under `root` (its working directory), plus two differences, both about this
/// machine rather than the manifests: `PROXY_CONFIG.binaryPath` is the project's Envoy (the
/// proxyv2 image's /usr/local/bin/envoy is Istio's build), and the loopback registry speaks
/// plain HTTP (`WASM_INSECURE_REGISTRIES`).
fn start_agent(inputs: &Inputs, pod: &pod::Container, root: &Path, dir: &Path) -> Result<Proc> {
    // What the proxyv2 image carries beside the agent.
    let template = root.join("var/lib/istio/envoy/envoy_bootstrap_tmpl.json");
    std::fs::create_dir_all(template.parent().ok_or("no parent")?)?;
    std::fs::copy(inputs.istio.join("envoy_bootstrap_tmpl.json"), &template)?;
    // The emptyDir istio-agent caches modules in is the fixed /var/lib/istio/data (a tmpfs of
    // the private mount namespace).
    std::fs::create_dir_all("/var/lib/istio/data")?;

    let mut env = pod.env.clone();
    let proxy_config = env
        .iter_mut()
        .find(|(k, _)| k == "PROXY_CONFIG")
        .ok_or("the istio-proxy container has no PROXY_CONFIG")?;
    let mut pc: Value = serde_json::from_str(&proxy_config.1)?;
    pc["binaryPath"] = json!(inputs.envoy.display().to_string());
    proxy_config.1 = pc.to_string();
    env.push(("WASM_INSECURE_REGISTRIES".into(), REGISTRY.into()));

    let mut cmd = Command::new(inputs.istio.join("pilot-agent"));
    cmd.args(&pod.args)
        .current_dir(root)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    Proc::spawn("istio-agent", cmd, dir.join("agent.log"))
}

/// What the tier runs, from the environment `istio.rs` resolved before entering the
/// namespaces.
pub fn inputs() -> Result<Inputs> {
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let images_path = repo_root().join("out/images/images.json");
    let images: Value = serde_json::from_str(&std::fs::read_to_string(&images_path)?)?;
    let wasm_path = PathBuf::from(var("FILTER_WASM")?);
    Ok(Inputs {
        istio: PathBuf::from(var("ISTIO_TESTBIN")?),
        envoy: PathBuf::from(var("ENVOY_BIN")?),
        images,
        wasm: std::fs::read(&wasm_path).map_err(|e| format!("{}: {e}", wasm_path.display()))?,
    })
}
