//! The REAL Metal3 baremetal-operator (BMO), run out of cluster against the harness's API server
//! with its compiled-in `fixture` provisioner (no Ironic, no BMC, no machine is touched), and
//! its validating webhook served to the API server the way controller-runtime's envtest does.
//!
//! ```text
//!  tools/build-bmo.sh ─▶ ~/.cache/bmh-webhook/bmo/<commit>-<hash>/baremetal-operator
//!                         (from BMO_SRC: the ONE use of ../shared at build and test time)
//!
//!  ApiServer::start_with(Crds::Bmo(src))  ── every CRD of <src>/config/base/crds/bases
//!        ▲   ▲ admission: ValidatingWebhookConfiguration bmo-webhook-<ns>
//!        │   │   url https://127.0.0.1:<webhook port>/validate-metal3-io-v1alpha1-baremetalhost,
//!        │   │   caBundle = the self-signed serving cert, namespaceSelector = <ns> only
//!        │   └──────────────────────────────┐
//!  baremetal-operator -kubeconfig=<admin> -namespace=<ns> -provisioner=fixture
//!     -webhook-port=<free> -health-addr=127.0.0.1:<free> -metrics-addr=127.0.0.1:<free>
//!     -controller-concurrency=1 -enable-leader-election=false
//!     env: TMPDIR=<own dir> (its cert dir: $TMPDIR/k8s-webhook-server/serving-certs/tls.{crt,key})
//! ```
//!
//! One BMO process per test namespace: the fixture provisioner keeps **one** state for every
//! host of a process (power, deployed image, inspection, deletion) and cannot fail
//! provisioning, so each scenario gets its own namespace, its own BMO and one host.
//!
//! Life cycle: [`BmoProcess::start`] waits for BMO's `/readyz` (which includes its webhook
//! server), registers the webhook, and returns only once the API server really calls it (a
//! dry-run create with a bad image URL is rejected by BMO). Stopping deletes every host of the
//! namespace while BMO still runs (its finalizer), bounded, then kills BMO and deletes the
//! webhook configuration. `Drop` kills BMO and deletes the webhook configuration too (also when
//! a test panics), and a watchdog process kills BMO if the test binary dies without dropping it.
//!
//! Not loopback: controller-runtime's webhook server binds all interfaces (BMO has no flag for
//! its host); it only answers TLS admission reviews with the test's self-signed certificate.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::apiserver::{
    ApiServer, Crds, check_alive, client_from_kubeconfig, free_ports, kill_and_reap, log_tail,
    repo_root, spawn_watchdog,
};
use crate::bmh::{BMH_GROUP, BMH_KIND, BMH_VERSION, bmh_api};
use crate::error::{Error, Result};

/// The BMO commit this project pins (what `tools/build-bmo.sh` clones when no source is given).
pub const BMO_PINNED_COMMIT: &str = "02aa5059e3482f9dc3b5115c3a45cec4b000ae16";
/// The webhook manifest inside a BMO source tree (paths and rules of its webhooks).
pub const BMO_WEBHOOK_MANIFEST: &str = "config/base/webhook/manifests.yaml";
/// The path BMO serves its BareMetalHost validation on.
pub const BMH_WEBHOOK_PATH: &str = "/validate-metal3-io-v1alpha1-baremetalhost";

/// How long BMO may take to answer `/readyz` (cold start on a busy 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the API server may take to start calling a newly registered webhook.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long deleting the hosts (BMO's delete path, its finalizer) may take at stop.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);
/// Poll interval of the bounded waits above.
const POLL: Duration = Duration::from_millis(250);

/// A usable baremetal-operator build: the binary, the source tree it came from (its CRDs and
/// webhook manifest are read from there at test time) and its commit.
#[derive(Debug, Clone)]
pub struct BmoBuild {
    /// The `baremetal-operator` binary.
    pub bin: PathBuf,
    /// The source tree (`BMO_SRC`).
    pub src: PathBuf,
    /// The commit it was built from (`unknown` when `BMO_BIN` points at a binary the build script
    /// did not make).
    pub commit: String,
}

impl BmoBuild {
    /// The first 9 characters of the commit, as `git log --oneline` shows it.
    pub fn short_commit(&self) -> &str {
        self.commit.get(..9).unwrap_or(&self.commit)
    }
}

/// True when the environment says this is CI (`CI=true`): a missing BMO then fails the run.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The BMO source tree: `BMO_SRC` when set and non-empty, else
/// `<repo root>/../shared/third_party/baremetal-operator` when that folder exists. (In a git
/// worktree outside the main checkout the default does not exist: set `BMO_SRC`, which
/// `tools/bootstrap.sh` prints.)
pub fn bmo_source() -> Option<PathBuf> {
    match std::env::var_os("BMO_SRC").filter(|v| !v.is_empty()) {
        Some(v) => Some(PathBuf::from(v)),
        None => {
            let d = repo_root().join("../shared/third_party/baremetal-operator");
            d.is_dir().then(|| d.canonicalize().unwrap_or(d))
        }
    }
}

static BUILD: OnceLock<std::result::Result<Option<BmoBuild>, String>> = OnceLock::new();

/// The BMO build this process uses, resolved once: `BMO_BIN` (+ [`bmo_source`]) when
/// `BMO_BIN` is set; otherwise `tools/build-bmo.sh` runs (it builds on first use, about five
/// minutes cold, and caches outside the repository).
///
/// `Ok(None)` when no source or no Go can be had: the BMO tier is skipped, after one LOUD
/// message on stderr. Under `CI=true` that is an error instead, so CI cannot pass without it.
pub fn bmo_build() -> Result<Option<&'static BmoBuild>> {
    match BUILD.get_or_init(resolve_build) {
        Ok(b) => Ok(b.as_ref()),
        Err(e) => Err(Error::MissingBmo(e.clone())),
    }
}

/// Whether the real BMO can run here: `Ok(Some(binary))`, `Ok(None)` (skip; a loud message was
/// printed), or an error under `CI=true` (or when `BMO_BIN`/`BMO_SRC` are set but wrong).
pub fn bmo_binary() -> Result<Option<PathBuf>> {
    Ok(bmo_build()?.map(|b| b.bin.clone()))
}

fn resolve_build() -> std::result::Result<Option<BmoBuild>, String> {
    let has_crds = |src: &Path| src.join(crate::apiserver::BMO_CRD_DIR).is_dir();
    match std::env::var_os("BMO_BIN") {
        Some(bin) if !bin.is_empty() => {
            let bin = PathBuf::from(bin);
            if !bin.is_file() {
                return Err(format!("BMO_BIN={} is not a file", bin.display()));
            }
            let Some(src) = bmo_source().filter(|s| has_crds(s)) else {
                return Err(format!(
                    "BMO_BIN={} is set but no BMO source tree with {} was found (set BMO_SRC)",
                    bin.display(),
                    crate::apiserver::BMO_CRD_DIR
                ));
            };
            let commit = bin
                .parent()
                .and_then(|d| fs::read_to_string(d.join("commit")).ok())
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "unknown".into());
            Ok(Some(BmoBuild { bin, src, commit }))
        }
        Some(_) => unavailable("BMO_BIN is set but empty (tools/bootstrap.sh found no BMO source)"),
        None => {
            let out = crate::run_tool("build-bmo.sh")?;
            if !out.status.success() {
                return Err(format!("tools/build-bmo.sh failed ({})", out.status));
            }
            let (src, bin) = (out.field("BMO_SRC"), out.field("BMO_BIN"));
            if bin.is_empty() || src.is_empty() {
                return unavailable("tools/build-bmo.sh found no BMO source or no Go");
            }
            let (src, bin) = (PathBuf::from(src), PathBuf::from(bin));
            if !bin.is_file() || !has_crds(&src) {
                return Err(format!(
                    "tools/build-bmo.sh printed {} / {}, which do not exist",
                    bin.display(),
                    src.display()
                ));
            }
            let commit = bin
                .parent()
                .and_then(|d| fs::read_to_string(d.join("commit")).ok())
                .map(|c| c.trim().to_string())
                .unwrap_or_else(|| "unknown".into());
            Ok(Some(BmoBuild { bin, src, commit }))
        }
    }
}

fn unavailable(why: &str) -> std::result::Result<Option<BmoBuild>, String> {
    if is_ci() {
        return Err(format!(
            "{why}; CI=true: the real baremetal-operator tier must run in CI"
        ));
    }
    eprintln!(
        "\n################################################################################\n\
         ## kube-harness: the real Metal3 baremetal-operator is NOT available:\n\
         ##   {why}\n\
         ## Every test against the real operator (the BMO tier) is SKIPPED.\n\
         ## Set BMO_SRC to a baremetal-operator source tree and run tools/build-bmo.sh.\n\
         ################################################################################\n"
    );
    Ok(None)
}

/// A TLS key pair for BMO's webhook server: a self-signed certificate for `IP:127.0.0.1`
/// written into controller-runtime's cert dir under `tmpdir`; returns the certificate (PEM),
/// which is also the CA bundle the API server trusts.
fn write_serving_cert(tmpdir: &Path) -> Result<Vec<u8>> {
    let dir = tmpdir.join("k8s-webhook-server/serving-certs");
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| Error::io("running openssl req (is openssl installed?)", e))?;
    if !st.success() {
        return Err(Error::Unexpected(format!("openssl req failed: {st}")));
    }
    fs::read(&crt).map_err(|e| Error::io(format!("reading {}", crt.display()), e))
}

/// BMO's validating webhooks (from `<src>/config/base/webhook/manifests.yaml`: names, paths,
/// rules, failure policy), re-pointed at `https://127.0.0.1:<port><path>` with `ca_bundle`,
/// and limited to `namespace` by a `namespaceSelector`, as one configuration named `name`.
pub fn webhook_configuration(
    src: &Path,
    name: &str,
    namespace: &str,
    port: u16,
    ca_bundle: &[u8],
) -> Result<ValidatingWebhookConfiguration> {
    let path = src.join(BMO_WEBHOOK_MANIFEST);
    let yaml = fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut webhooks: Vec<ValidatingWebhook> = Vec::new();
    for doc in crate::manifest::parse_documents(&yaml)? {
        if doc["kind"] != "ValidatingWebhookConfiguration" {
            continue;
        }
        let vwc: ValidatingWebhookConfiguration = serde_json::from_value(doc)?;
        webhooks.extend(vwc.webhooks.unwrap_or_default());
    }
    if !webhooks.iter().any(|w| {
        w.client_config
            .service
            .as_ref()
            .and_then(|s| s.path.as_deref())
            == Some(BMH_WEBHOOK_PATH)
    }) {
        return Err(Error::Manifest(format!(
            "{} has no webhook for {BMH_WEBHOOK_PATH}",
            path.display()
        )));
    }
    for w in &mut webhooks {
        let hook_path = w
            .client_config
            .service
            .as_ref()
            .and_then(|s| s.path.clone())
            .unwrap_or_default();
        w.client_config = WebhookClientConfig {
            url: Some(format!("https://127.0.0.1:{port}{hook_path}")),
            ca_bundle: Some(ByteString(ca_bundle.to_vec())),
            service: None,
        };
        w.failure_policy = Some("Fail".into());
        w.namespace_selector = Some(LabelSelector {
            match_labels: Some(
                [(
                    "kubernetes.io/metadata.name".to_string(),
                    namespace.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        });
    }
    Ok(ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "kube-harness".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        webhooks: Some(webhooks),
    })
}

/// `GET http://127.0.0.1:<port><path>`: the status code, or None when nothing answers.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()
        .flatten()
}

/// One running baremetal-operator process, watching one namespace. See the module docs.
pub struct BmoProcess {
    child: Child,
    watchdog: Option<Child>,
    namespace: String,
    webhook_config: String,
    webhook_port: u16,
    health_port: u16,
    admin_kubeconfig: PathBuf,
    log: PathBuf,
    build: BmoBuild,
    max_provisioning_retries: u32,
    // Last field: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl BmoProcess {
    /// Starts BMO for `namespace` on `server` (which must run BMO's CRDs:
    /// [`ApiServer::start_with`]`(Crds::Bmo(..))` or [`crate::metal3_server`]) and registers
    /// its webhook; returns once the API server calls the webhook. `max_provisioning_retries`
    /// is BMO's `-max-provisioning-retries` (0: no limit).
    pub async fn start(
        build: &BmoBuild,
        server: &ApiServer,
        namespace: &str,
        max_provisioning_retries: u32,
    ) -> Result<BmoProcess> {
        if !matches!(server.crds(), Crds::Bmo(_)) {
            return Err(Error::Unexpected(
                "the real baremetal-operator needs BMO's CRDs: start the API server with \
                 ApiServer::start_with(Crds::Bmo(src)) or use metal3_server()"
                    .into(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("kube-harness-bmo-")
            .tempdir()
            .map_err(|e| Error::io("creating a temp dir", e))?;
        let ca = write_serving_cert(dir.path())?;
        let [webhook_port, health_port, metrics_port] = free_ports(3)?[..] else {
            return Err(Error::Unexpected(
                "free_ports(3) returned fewer ports".into(),
            ));
        };
        let args: Vec<OsString> = vec![
            format!("-kubeconfig={}", server.admin_kubeconfig().display()).into(),
            format!("-namespace={namespace}").into(),
            "-provisioner=fixture".into(),
            format!("-webhook-port={webhook_port}").into(),
            format!("-health-addr=127.0.0.1:{health_port}").into(),
            format!("-metrics-addr=127.0.0.1:{metrics_port}").into(),
            "-controller-concurrency=1".into(),
            "-enable-leader-election=false".into(),
            format!("-max-provisioning-retries={max_provisioning_retries}").into(),
            "-dev".into(),
        ];
        let log = dir.path().join("baremetal-operator.log");
        let tmpdir = dir.path().display().to_string();
        let path = std::env::var("PATH").unwrap_or_default();
        // A clean environment: nothing of the caller's (KUBECONFIG of a real cluster,
        // WATCH_NAMESPACE, POD_NAMESPACE, PROVISIONER_PLUGIN_DIR, ...) reaches BMO.
        let child = spawn_logged_clean(
            &build.bin,
            &args,
            &log,
            &[
                ("PATH", path.as_str()),
                ("HOME", tmpdir.as_str()),
                ("TMPDIR", tmpdir.as_str()),
                ("GOMEMLIMIT", "256MiB"),
            ],
        )?;
        let pids = dir.path().join("pids");
        let _ = fs::write(&pids, child.id().to_string());
        let mut bmo = BmoProcess {
            child,
            watchdog: None,
            namespace: namespace.to_string(),
            webhook_config: format!("bmo-webhook-{namespace}"),
            webhook_port,
            health_port,
            admin_kubeconfig: server.admin_kubeconfig().to_path_buf(),
            log,
            build: build.clone(),
            max_provisioning_retries,
            dir,
        };
        bmo.watchdog = Some(spawn_watchdog(&pids, Some(bmo.dir.path()))?);
        bmo.wait_ready().await?;
        let client = client_from_kubeconfig(&bmo.admin_kubeconfig).await?;
        let vwc = webhook_configuration(
            &build.src,
            &bmo.webhook_config,
            namespace,
            webhook_port,
            &ca,
        )?;
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        api.create(&PostParams::default(), &vwc).await?;
        bmo.wait_webhook_effective(&client).await?;
        Ok(bmo)
    }

    /// The process id of `baremetal-operator`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its temp dir (log, serving certificate as `TMPDIR`); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The namespace this BMO watches (and its webhook guards).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The build it runs.
    pub fn build(&self) -> &BmoBuild {
        &self.build
    }

    /// BMO's log file (controller-runtime's development logger).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of BMO's log (for failure messages).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// BMO's webhook port (TLS; all interfaces, see the module docs).
    pub fn webhook_port(&self) -> u16 {
        self.webhook_port
    }

    /// The name of the cluster-scoped ValidatingWebhookConfiguration of this instance.
    pub fn webhook_configuration_name(&self) -> &str {
        &self.webhook_config
    }

    /// Its `-max-provisioning-retries`.
    pub fn max_provisioning_retries(&self) -> u32 {
        self.max_provisioning_retries
    }

    fn check_running(&mut self) -> Result<()> {
        let log = self.log.clone();
        check_alive(&mut self.child, "baremetal-operator", &log)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_running()?;
            if http_status(self.health_port, "/readyz").await == Some(200) {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("baremetal-operator /readyz; log tail:\n{}", self.log_tail()),
                    after: READY_TIMEOUT,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the API server sends BareMetalHost writes in our namespace to BMO: a dry-run
    /// create with an image URL BMO refuses must come back denied by the webhook.
    async fn wait_webhook_effective(&mut self, client: &Client) -> Result<()> {
        let api = bmh_api(client, &self.namespace);
        let probe: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{BMH_GROUP}/{BMH_VERSION}"),
            "kind": BMH_KIND,
            "metadata": {"name": "kube-harness-webhook-probe"},
            "spec": {"online": false, "image": {"url": "file:///probe.img", "checksum": "0"}},
        }))?;
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let start = Instant::now();
        loop {
            self.check_running()?;
            match api.create(&pp, &probe).await {
                Err(kube::Error::Api(s)) if s.message.contains("denied the request") => {
                    return Ok(());
                }
                other => {
                    if start.elapsed() > WEBHOOK_TIMEOUT {
                        return Err(Error::Timeout {
                            what: format!(
                                "the API server to call BMO's webhook (last answer to a bad \
                                 image: {other:?}); BMO log tail:\n{}",
                                self.log_tail()
                            ),
                            after: WEBHOOK_TIMEOUT,
                        });
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deletes every BareMetalHost of the namespace while BMO runs (BMO removes its finalizer
    /// after its delete path: powering off before delete → deleting), bounded; then kills BMO
    /// and deletes the webhook configuration. Hosts still there at the bound lose their
    /// finalizers (so nothing is stuck) and the call reports the timeout.
    pub async fn stop(mut self) -> Result<()> {
        let client = client_from_kubeconfig(&self.admin_kubeconfig).await?;
        let deleted = delete_hosts(&client, &self.namespace, DELETE_TIMEOUT).await;
        let deleted = match deleted {
            Err(e @ Error::Timeout { .. }) => Err(Error::Unexpected(format!(
                "{e}; BMO log tail:\n{}",
                self.log_tail()
            ))),
            other => other,
        };
        self.kill();
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
        let removed = match api
            .delete(&self.webhook_config, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::from(e)),
        };
        self.webhook_config.clear();
        deleted.and(removed)
    }

    fn kill(&mut self) {
        kill_and_reap(&mut self.child);
        if let Some(mut w) = self.watchdog.take() {
            kill_and_reap(&mut w);
        }
    }
}

impl Drop for BmoProcess {
    fn drop(&mut self) {
        self.kill();
        if self.webhook_config.is_empty() {
            return;
        }
        // Best effort, bounded, on a thread of its own: Drop may run inside or outside a tokio
        // runtime, and the API server may already be gone. A configuration left behind only
        // guards this test's namespace.
        let (kubeconfig, name) = (self.admin_kubeconfig.clone(), self.webhook_config.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    let client = client_from_kubeconfig(&kubeconfig).await.ok()?;
                    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
                    api.delete(&name, &DeleteParams::default()).await.ok()
                })
                .await;
            });
        })
        .join();
        if std::env::var_os("KUBE_HARNESS_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("kube-harness: kept {}", self.dir.path().display());
        }
    }
}

/// Like the API server's `spawn_logged`, but with exactly `env`: nothing is inherited.
fn spawn_logged_clean(
    bin: &Path,
    args: &[OsString],
    log: &Path,
    env: &[(&str, &str)],
) -> Result<Child> {
    let out =
        fs::File::create(log).map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| Error::io("duplicating a log handle", e))?;
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .map_err(|e| Error::io(format!("starting {}", bin.display()), e))
}

/// Deletes every BareMetalHost of `namespace` and waits (bounded) until they are gone. At the
/// bound, strips the finalizers of those left (so the namespace is not stuck) and fails.
pub async fn delete_hosts(client: &Client, namespace: &str, timeout: Duration) -> Result<()> {
    let api = bmh_api(client, namespace);
    for h in api.list(&ListParams::default()).await?.items {
        if let Some(name) = h.metadata.name {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let start = Instant::now();
    loop {
        let left = api.list(&ListParams::default()).await?.items;
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let mut states = Vec::new();
            for h in left {
                let v = serde_json::to_value(&h).unwrap_or_default();
                if let Some(name) = h.metadata.name {
                    states.push(format!("{name}: {}", crate::bmh::provisioning_state(&v)));
                    let _ = api
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await;
                }
            }
            return Err(Error::Timeout {
                what: format!("BareMetalHosts of {namespace} to be deleted (left: {states:?})"),
                after: timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The BMC credentials Secret a host names in `spec.bmc.credentialsName`, as a user creates it
/// (`username`, `password`). Created if missing; an existing one is left as it is.
pub async fn ensure_bmc_secret(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        string_data: Some(
            [
                ("username".to_string(), "admin".to_string()),
                ("password".to_string(), "password".to_string()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A stable, locally administered MAC address for a host name (its `bootMACAddress`).
pub fn boot_mac(name: &str) -> String {
    // FNV-1a: deterministic across runs and platforms, unlike the std hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = h.to_be_bytes();
    format!("52:54:00:{a:02x}:{b:02x}:{c:02x}")
}

/// The BareMetalHost a user creates for a machine (as JSON): `online: false`, a BMC address and
/// credentials Secret, a boot MAC, the labels; no status (the operator registers it).
pub fn user_host(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
        .collect();
    json!({
        "apiVersion": format!("{BMH_GROUP}/{BMH_VERSION}"),
        "kind": BMH_KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "online": false,
            "bootMACAddress": boot_mac(name),
            "bmc": {
                "address": "ipmi://192.0.2.10",
                "credentialsName": bmc_secret_name(name),
            },
        },
    })
}

/// The name of a host's BMC credentials Secret: `<host>-bmc-secret`.
pub fn bmc_secret_name(host: &str) -> String {
    format!("{host}-bmc-secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_macs_are_stable_and_distinct() {
        assert_eq!(boot_mac("host-a"), boot_mac("host-a"));
        assert_ne!(boot_mac("host-a"), boot_mac("host-b"));
        assert!(boot_mac("x").starts_with("52:54:00:"));
        assert_eq!(boot_mac("x").len(), 17);
    }

    #[test]
    fn a_user_host_has_what_bmo_needs_to_register_it() {
        let h = user_host("ns", "h1", &[("k", "v")]);
        assert_eq!(h["spec"]["online"], false);
        assert_eq!(h["spec"]["bmc"]["credentialsName"], "h1-bmc-secret");
        assert_eq!(h["spec"]["bmc"]["address"], "ipmi://192.0.2.10");
        assert_eq!(h["metadata"]["labels"]["k"], "v");
        assert!(h.get("status").is_none());
    }
}
