//! A real etcd + kube-apiserver on loopback, with the project's BMH CRD installed (or, with
//! [`Crds::Bmo`], every CRD of a baremetal-operator source tree).
//!
//! Start-up: find the binaries (`KUBE_TESTBIN`, else `tools/build-testbin.sh`), make a temp dir
//! with a service-account signing key (`openssl genrsa`) and a static token file holding one
//! admin token in group `system:masters`, start etcd, start kube-apiserver (RBAC on), wait for
//! `/readyz`, then server-side apply the CRDs and wait until they are Established and BMHs are
//! served.
//!
//! Clean-up: [`Drop`] kills both processes and removes the temp dir, also while a test unwinds
//! from a panic. A small `sh` watchdog (one per server) covers the cases where `Drop` never runs
//! (a shared server in a `static`, or the test binary being killed): it polls the test process
//! once a second and, when it is gone, kills etcd and kube-apiserver and removes the temp dir. A
//! watchdog process is used instead of `PR_SET_PDEATHSIG` because the death signal fires when the
//! *thread* that spawned the child exits, and test threads and tokio blocking threads come and go.

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::error::{Error, Result};

/// How long a cold kube-apiserver may take to serve `/readyz` on a busy 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the CRD may take to become Established and served.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval for the bounded waits above.
const POLL: Duration = Duration::from_millis(200);

/// Name of the project's BMH CRD (file `k8s/crd/<name>.yaml`).
pub const BMH_CRD_NAME: &str = "baremetalhosts.metal3.io";

/// Which CustomResourceDefinitions a server is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crds {
    /// The project's own BareMetalHost CRD, `k8s/crd/baremetalhosts.metal3.io.yaml`.
    Project,
    /// Every CRD of a baremetal-operator source tree (`<src>/config/base/crds/bases/*.yaml`,
    /// read at start-up, never copied): what the real operator needs to run.
    Bmo(PathBuf),
}

impl Crds {
    /// The manifest files to apply, in a stable order.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        match self {
            Crds::Project => Ok(vec![
                repo_root().join(format!("k8s/crd/{BMH_CRD_NAME}.yaml")),
            ]),
            Crds::Bmo(src) => {
                let dir = src.join(BMO_CRD_DIR);
                let mut files: Vec<PathBuf> = fs::read_dir(&dir)
                    .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(Error::Manifest(format!(
                        "no CRD files in {}",
                        dir.display()
                    )));
                }
                Ok(files)
            }
        }
    }
}

/// Where a baremetal-operator source tree keeps its CRDs.
pub const BMO_CRD_DIR: &str = "config/base/crds/bases";

/// Repository root, resolved from this crate's location at compile time (tests run with the
/// crate directory as working directory, manifests live at the root).
pub fn repo_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// What a build script of `tools/` printed on stdout (it builds on first use, caches outside the
/// repository and logs to stderr, which goes to the test's output).
pub struct ToolOutput {
    /// The script's exit status.
    pub status: std::process::ExitStatus,
    /// Its standard output, as text.
    pub stdout: String,
}

impl ToolOutput {
    /// The value of the script's `KEY=value` line (trimmed), or `""` when it printed none.
    pub fn field(&self, key: &str) -> String {
        let prefix = format!("{key}=");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    }
}

/// Runs `tools/<script>` with bash; `Err` only when it cannot be started.
pub fn run_tool(script: &str) -> std::result::Result<ToolOutput, String> {
    let path = repo_root().join("tools").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", path.display()))?;
    Ok(ToolOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// The directory holding `kube-apiserver` and `etcd`: `KUBE_TESTBIN` when set (it must then
/// hold both), else whatever `tools/build-testbin.sh` prints (it builds on first use).
pub fn testbin_dir() -> Result<PathBuf> {
    let has_both = |d: &Path| d.join("kube-apiserver").is_file() && d.join("etcd").is_file();
    if let Some(dir) = std::env::var_os("KUBE_TESTBIN") {
        let dir = PathBuf::from(dir);
        return if has_both(&dir) {
            Ok(dir)
        } else {
            Err(Error::MissingTestbin(format!(
                "KUBE_TESTBIN={} does not contain kube-apiserver and etcd (run tools/build-testbin.sh)",
                dir.display()
            )))
        };
    }
    let out = run_tool("build-testbin.sh").map_err(Error::MissingTestbin)?;
    let dir = out
        .stdout
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .unwrap_or_default();
    if out.status.success() && has_both(&dir) {
        Ok(dir)
    } else {
        Err(Error::MissingTestbin(format!(
            "KUBE_TESTBIN is unset and tools/build-testbin.sh failed ({}); set KUBE_TESTBIN to a dir with kube-apiserver and etcd",
            out.status
        )))
    }
}

/// `n` distinct free TCP ports on 127.0.0.1 (all bound at once, then released for the caller's
/// processes to bind).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut held = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n {
        let l =
            TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("binding a free port", e))?;
        ports.push(
            l.local_addr()
                .map_err(|e| Error::io("reading a bound port", e))?
                .port(),
        );
        held.push(l);
    }
    Ok(ports)
}

/// A client from a kubeconfig file (for example [`ApiServer::admin_kubeconfig`] or
/// [`ApiServer::service_account_kubeconfig`]). Build one per tokio runtime: a `kube::Client`
/// runs a background task on the runtime that created it.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path)?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// 32 hex characters from the standard library's randomly seeded hasher (no extra crate for a
/// test token).
pub(crate) fn random_hex() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(Instant::now());
    format!("{a:016x}{b:016x}")
}

pub(crate) fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

pub(crate) fn spawn_logged(
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
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .map_err(|e| Error::io(format!("starting {}", bin.display()), e))
}

pub(crate) fn check_alive(child: &mut Child, name: &'static str, log: &Path) -> Result<()> {
    match child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => Err(Error::ProcessExited {
            name,
            status: status.to_string(),
            log: log.to_path_buf(),
            tail: log_tail(log),
        }),
        Err(e) => Err(Error::io(format!("checking {name}"), e)),
    }
}

pub(crate) fn kill_and_reap(child: &mut Child) {
    // Already-exited children make kill() fail; wait() still reaps them.
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts the `sh` watchdog of a set of processes (see the module docs): once a second it checks
/// whether this test process is alive; when it is gone, it SIGKILLs every pid listed in
/// `pids_file` (space-separated, rewritten by the owner whenever its processes change) and
/// removes `dir` (`None`: keeps it, for reading the logs). The owner kills the watchdog itself
/// in its `Drop`. The reservation harness watches its services with it too.
pub fn spawn_watchdog(pids_file: &Path, dir: Option<&Path>) -> Result<Child> {
    let script = r#"
parent=$1; pids=$2; dir=$3
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
for p in $(cat "$pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
[ -n "$dir" ] && rm -rf "$dir"
"#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("kube-harness-watchdog")
        .arg(std::process::id().to_string())
        .arg(pids_file)
        .arg(dir.unwrap_or(Path::new("")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io("starting the watchdog (sh)", e))
}

/// A running etcd + kube-apiserver pair. See the module docs for lifecycle and clean-up.
///
/// One server per test binary ([`ApiServer::shared`], each test in its own namespace) is the
/// default: a cold start costs seconds of CPU on a shared 2-core machine. A test that stops and
/// restarts the API server takes its own ([`ApiServer::start`]).
pub struct ApiServer {
    etcd: Child,
    apiserver: Option<Child>,
    watchdog: Option<Child>,
    bin_dir: PathBuf,
    apiserver_args: Vec<OsString>,
    port: u16,
    url: String,
    ca_cert: PathBuf,
    admin_kubeconfig: PathBuf,
    admin_token: String,
    crds: Crds,
    // Last field: removed after the processes are gone.
    dir: tempfile::TempDir,
}

static SHARED: tokio::sync::OnceCell<ApiServer> = tokio::sync::OnceCell::const_new();

impl ApiServer {
    /// The API server shared by every test of this test binary, started on first use.
    ///
    /// Never stop it (the methods that do need `&mut`). Its processes end through the watchdog
    /// when the test binary exits, since statics are never dropped. Call [`ApiServer::client`]
    /// inside each test: clients are bound to the test's own tokio runtime.
    pub async fn shared() -> Result<&'static ApiServer> {
        SHARED.get_or_try_init(ApiServer::start).await
    }

    /// Starts a private etcd + kube-apiserver and installs the project's BMH CRD. Fails loudly
    /// (never skips) when the binaries are missing or the server does not come up in time.
    pub async fn start() -> Result<ApiServer> {
        ApiServer::start_with(Crds::Project).await
    }

    /// Like [`ApiServer::start`], with the CRDs of `crds` installed instead: the project's BMH
    /// CRD, or every CRD of a baremetal-operator source tree (what the real operator needs).
    pub async fn start_with(crds: Crds) -> Result<ApiServer> {
        let crd_files = crds.files()?;
        let bin_dir = testbin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("kube-harness-")
            .tempdir()
            .map_err(|e| Error::io("creating a temp dir", e))?;
        let d = dir.path().to_path_buf();

        let sa_key = d.join("sa.key");
        let st = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&sa_key)
            .arg("2048")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::io("running openssl genrsa (is openssl installed?)", e))?;
        if !st.success() {
            return Err(Error::Unexpected(format!("openssl genrsa failed: {st}")));
        }
        let admin_token = random_hex();
        let tokens = d.join("tokens.csv");
        fs::write(
            &tokens,
            format!("{admin_token},admin,admin-uid,\"system:masters\"\n"),
        )
        .map_err(|e| Error::io("writing the token file", e))?;

        let [etcd_port, peer_port, port] = free_ports(3)?[..] else {
            return Err(Error::Unexpected(
                "free_ports(3) returned fewer ports".into(),
            ));
        };
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args: Vec<OsString> = vec![
            "--name=harness".into(),
            format!("--data-dir={}", d.join("etcd").display()).into(),
            "--log-level=warn".into(),
            "--unsafe-no-fsync".into(),
            format!("--listen-client-urls={etcd_url}").into(),
            format!("--advertise-client-urls={etcd_url}").into(),
            format!("--listen-peer-urls={peer_url}").into(),
            format!("--initial-advertise-peer-urls={peer_url}").into(),
            format!("--initial-cluster=harness={peer_url}").into(),
        ];
        let etcd_log = d.join("etcd.log");
        let etcd = spawn_logged(
            &bin_dir.join("etcd"),
            &etcd_args,
            &etcd_log,
            &[("GOMEMLIMIT", "256MiB")],
        )?;

        let cert_dir = d.join("pki");
        let apiserver_args: Vec<OsString> = vec![
            format!("--etcd-servers={etcd_url}").into(),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}").into(),
            format!("--cert-dir={}", cert_dir.display()).into(),
            format!("--token-auth-file={}", tokens.display()).into(),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", sa_key.display()).into(),
            format!("--service-account-signing-key-file={}", sa_key.display()).into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            // No controller-manager creates the `default` ServiceAccount, so the admission
            // plugin that requires it is off (as in controller-runtime's envtest).
            "--disable-admission-plugins=ServiceAccount".into(),
            "--endpoint-reconciler-type=none".into(),
            "--profiling=false".into(),
        ];
        let mut server = ApiServer {
            etcd,
            apiserver: None,
            watchdog: None,
            bin_dir,
            apiserver_args,
            port,
            url: format!("https://127.0.0.1:{port}"),
            ca_cert: cert_dir.join("apiserver.crt"),
            admin_kubeconfig: d.join("admin.kubeconfig"),
            admin_token,
            crds,
            dir,
        };
        server.start_watchdog()?;
        server.spawn_apiserver()?;
        server.wait_for_cert().await?;
        let kubeconfig = server.kubeconfig_json(&server.admin_token, "default");
        fs::write(&server.admin_kubeconfig, kubeconfig)
            .map_err(|e| Error::io("writing the admin kubeconfig", e))?;
        server.wait_ready().await?;
        server.install_crds(&crd_files).await?;
        Ok(server)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The API server's serving certificate (PEM, leaf followed by its self-signed CA): use as
    /// `certificate-authority`.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert
    }

    /// A kubeconfig for the admin identity (group `system:masters`), default namespace `default`.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The temp dir holding keys, kubeconfigs and the `etcd.log` / `kube-apiserver.log` files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh admin client for the calling test's tokio runtime.
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.admin_kubeconfig).await
    }

    /// Creates a namespace named `<prefix>-<random suffix>` (server-side `generateName`) and
    /// returns its name. Namespaces are never deleted: without a controller-manager a deleted
    /// namespace stays `Terminating` anyway, and the whole server is thrown away after the run.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String> {
        let mut p: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(50)
            .collect();
        p = p.trim_matches('-').to_string();
        if p.is_empty() {
            p = "test".into();
        }
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{p}-")),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<Namespace> = Api::all(self.client().await?);
        let created = api.create(&PostParams::default(), &ns).await?;
        created
            .metadata
            .name
            .ok_or_else(|| Error::Unexpected("created namespace has no name".into()))
    }

    /// Mints a token for an existing ServiceAccount (TokenRequest, 1 h) and writes a kubeconfig
    /// for it (context namespace `namespace`). Applies nothing: create the ServiceAccount first,
    /// e.g. with `apply_file("k8s/base/rbac.yaml", ns, false)`.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        sa_name: &str,
    ) -> Result<PathBuf> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client().await?, namespace);
        let tr = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = api
            .create_token_request(sa_name, &PostParams::default(), &tr)
            .await?;
        let token = out
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unexpected("TokenRequest returned no token".into()))?;
        let path = self
            .dir
            .path()
            .join(format!("sa-{namespace}-{sa_name}.kubeconfig"));
        fs::write(&path, self.kubeconfig_json(&token, namespace))
            .map_err(|e| Error::io("writing a ServiceAccount kubeconfig", e))?;
        Ok(path)
    }

    /// Kills kube-apiserver only (SIGKILL, like a crash); etcd and all data stay. Requests then
    /// fail with connection errors until [`ApiServer::start_apiserver`].
    pub fn stop_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            kill_and_reap(&mut c);
        }
        self.write_pids();
    }

    /// Starts kube-apiserver again on the same port, with the same etcd, certificates and tokens,
    /// and waits for `/readyz`. A no-op wait when it is already running.
    pub async fn start_apiserver(&mut self) -> Result<()> {
        if self.apiserver.is_none() {
            self.spawn_apiserver()?;
        }
        self.wait_ready().await
    }

    /// True while the kube-apiserver process is running.
    pub fn apiserver_running(&mut self) -> bool {
        self.apiserver
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn apiserver_log(&self) -> PathBuf {
        self.dir.path().join("kube-apiserver.log")
    }

    fn etcd_log(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn_apiserver(&mut self) -> Result<()> {
        let child = spawn_logged(
            &self.bin_dir.join("kube-apiserver"),
            &self.apiserver_args,
            &self.apiserver_log(),
            // A soft heap target keeps the Go GC from growing the heap on a shared machine.
            &[("GOMEMLIMIT", "1GiB")],
        )?;
        self.apiserver = Some(child);
        self.write_pids();
        Ok(())
    }

    /// Records the pids the watchdog must kill if the test binary dies.
    fn write_pids(&self) {
        let mut pids = vec![self.etcd.id().to_string()];
        if let Some(c) = &self.apiserver {
            pids.push(c.id().to_string());
        }
        let _ = fs::write(self.dir.path().join("pids"), pids.join(" "));
    }

    fn start_watchdog(&mut self) -> Result<()> {
        self.write_pids();
        self.watchdog = Some(spawn_watchdog(
            &self.dir.path().join("pids"),
            Some(self.dir.path()),
        )?);
        Ok(())
    }

    /// Fails with the process log when etcd or kube-apiserver has exited.
    fn check_processes(&mut self) -> Result<()> {
        let etcd_log = self.etcd_log();
        check_alive(&mut self.etcd, "etcd", &etcd_log)?;
        let log = self.apiserver_log();
        match self.apiserver.as_mut() {
            Some(c) => check_alive(c, "kube-apiserver", &log),
            None => Err(Error::Unexpected("kube-apiserver is stopped".into())),
        }
    }

    async fn wait_for_cert(&mut self) -> Result<()> {
        let start = Instant::now();
        while !self.ca_cert.is_file() {
            self.check_processes()?;
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("{} to be written", self.ca_cert.display()),
                    after: READY_TIMEOUT,
                });
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = self.client().await?;
        let start = Instant::now();
        loop {
            self.check_processes()?;
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| Error::Unexpected(e.to_string()))?;
            if let Ok(body) = client.request_text(req).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!(
                        "kube-apiserver /readyz; log tail:\n{}",
                        log_tail(&self.apiserver_log())
                    ),
                    after: READY_TIMEOUT,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Server-side applies every CRD file, then waits (bounded) until each CRD is Established
    /// and BareMetalHosts can be listed.
    async fn install_crds(&self, files: &[PathBuf]) -> Result<()> {
        let mut names = Vec::new();
        for path in files {
            for crd in self.apply_file(path, "default", false).await? {
                names.extend(crd.metadata.name);
            }
        }
        let client = self.client().await?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let start = Instant::now();
        loop {
            let mut pending = Vec::new();
            for name in &names {
                let crd = crds.get(name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if !established {
                    pending.push(name.as_str());
                }
            }
            // Established can precede discovery by a moment; listing proves it is served.
            if pending.is_empty()
                && crate::bmh::bmh_api(&client, "default")
                    .list(&ListParams::default().limit(1))
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > CRD_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("CRDs {pending:?} to be Established and BMHs served"),
                    after: CRD_TIMEOUT,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Which CRDs this server was started with.
    pub fn crds(&self) -> &Crds {
        &self.crds
    }

    fn kubeconfig_json(&self, token: &str, namespace: &str) -> String {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "harness", "cluster": {
                "server": self.url,
                "certificate-authority": self.ca_cert,
            }}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "harness", "context": {
                "cluster": "harness", "user": "user", "namespace": namespace,
            }}],
            "current-context": "harness",
        })
        .to_string()
    }

    /// The port kube-apiserver listens on (stable across stop/start).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            kill_and_reap(&mut c);
        }
        kill_and_reap(&mut self.etcd);
        if let Some(mut w) = self.watchdog.take() {
            kill_and_reap(&mut w);
        }
        if std::env::var_os("KUBE_HARNESS_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("kube-harness: kept {}", self.dir.path().display());
        }
    }
}
