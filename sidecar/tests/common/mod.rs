//! Shared set-up of the sidecar's tests: a namespace on the real API server with the project's
//! RBAC applied, the stand-in operator, a notification sink, and the real `bmh-sidecar` binary
//! running as the ServiceAccount. Everything is stopped on drop, also when a test fails.
// Test support: failing loudly (unwrap/panic) is the point here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube_harness::metal3::{Operator, OperatorKind, metal3_server, operator_kinds};
use kube_harness::{
    ApiServer, NotificationSink, Recorded, StandInConfig, StandInOperator, create_bmh, get_bmh,
};
use serde_json::{Value, json};
use sha2::Sha256;

pub const SA: &str = "bmh-webhook-sidecar";
pub const PREFIX: &str = "reservations.polito.it";
pub const NOTIFY_SECRET: &str = "notify-secret-for-tests";
/// The inbound secret: the sidecar verifies every delivery itself too.
pub const INBOUND_SECRET: &str = "inbound-secret-for-tests-0123456789";
pub const IMAGE_URL: &str = "http://images.example.test/ubuntu-24.04.qcow2";
pub const IMAGE_CHECKSUM: &str = "http://images.example.test/ubuntu-24.04.qcow2.sha256sum";
pub const START: &str = include_str!("../fixtures/event-start.json");
pub const END: &str = include_str!("../fixtures/event-end.json");
pub const ID_LABEL: &str = "reservations.polito.it/resource-id";

/// Generous bound for anything the stand-in and the sidecar do together.
pub const WAIT: Duration = Duration::from_secs(30);

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

/// The running `bmh-sidecar` binary. Killed on drop.
pub struct Sidecar {
    child: Child,
    pub addr: SocketAddr,
    /// Its `REPLICA_ID`.
    pub replica: String,
    log: PathBuf,
}

impl Sidecar {
    /// Kills the process (SIGKILL, like a crash) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- last sidecar log lines ({}) ---", self.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// One test's world.
pub struct Bench {
    pub admin: kube::Client,
    pub ns: String,
    pub kubeconfig: PathBuf,
    pub sink: NotificationSink,
    pub operator: Option<StandInOperator>,
    /// The conformance tier's operator (real BMO or the stand-in), when chosen by kind.
    pub metal3: Option<Operator>,
    pub sidecar: Option<Sidecar>,
    pub replicas: Vec<Sidecar>,
    pub extra_env: Vec<(String, String)>,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    logs: tempfile::TempDir,
    runs: usize,
    /// The `REPLICA_ID` of the next sidecar started (default `replica-<n>`).
    next_replica: Option<String>,
    /// Start the sidecar with `extra_env` only (besides where it runs: `KUBECONFIG`,
    /// `SIDECAR_ADDR`, `REPLICA_ID`), none of the bench's own settings.
    only_extra_env: bool,
}

impl Bench {
    /// A namespace with the RBAC applied, the stand-in running, the sink up; no sidecar yet.
    pub async fn new(prefix: &str) -> Bench {
        let server = ApiServer::shared().await.unwrap();
        Bench::on(server, prefix).await
    }

    /// The same on a given (e.g. private) API server.
    pub async fn on(server: &ApiServer, prefix: &str) -> Bench {
        let mut b = Bench::without_operator(server, prefix).await;
        b.operator = Some(StandInOperator::start(b.admin.clone(), &b.ns));
        b
    }

    /// The conformance tier: `kind` of Metal3 operator on the shared Metal3 server (BMO's
    /// CRDs when BMO is built). `None` when `kind` cannot run here (BMO not built, outside CI:
    /// said loudly by the harness).
    pub async fn with_operator(kind: OperatorKind, prefix: &str) -> Option<Bench> {
        Self::with_operator_config(kind, prefix, &StandInConfig::default()).await
    }

    /// [`Bench::with_operator`] with explicit operator settings.
    pub async fn with_operator_config(
        kind: OperatorKind,
        prefix: &str,
        config: &StandInConfig,
    ) -> Option<Bench> {
        if !operator_kinds().unwrap().contains(&kind) {
            eprintln!("SKIPPED: {kind} is not available on this machine (see above)");
            return None;
        }
        let server = metal3_server().await.unwrap();
        let mut b = Bench::without_operator(server, prefix).await;
        let op = Operator::start_with(kind, server, &b.ns, config)
            .await
            .unwrap();
        eprintln!("conformance: {}", op.describe());
        b.metal3 = Some(op);
        Some(b)
    }

    async fn without_operator(server: &ApiServer, prefix: &str) -> Bench {
        let admin = server.client().await.unwrap();
        let ns = server.create_namespace(prefix).await.unwrap();
        server
            .apply_file("k8s/base/rbac.yaml", &ns, false)
            .await
            .unwrap();
        // Every test runs the sidecar under the shipped Secret policy too.
        server
            .apply_file("k8s/base/secret-policy.yaml", &ns, false)
            .await
            .unwrap();
        let kubeconfig = server.service_account_kubeconfig(&ns, SA).await.unwrap();
        let sink = NotificationSink::start().await.unwrap();
        Bench {
            admin,
            ns,
            kubeconfig,
            sink,
            operator: None,
            metal3: None,
            sidecar: None,
            replicas: Vec::new(),
            extra_env: Vec::new(),
            only_extra_env: false,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
            logs: tempfile::tempdir().unwrap(),
            runs: 0,
            next_replica: None,
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.extra_env.push((k.into(), v.into()));
        self
    }

    /// The sidecar gets the [`Bench::env`] settings only, none of the bench's own.
    pub fn with_only_its_env(mut self) -> Self {
        self.only_extra_env = true;
        self
    }

    /// Starts the real binary as the ServiceAccount and waits until it answers /healthz.
    pub async fn start_sidecar(&mut self) {
        let sc = self.spawn_sidecar().await;
        self.sidecar = Some(sc);
    }

    /// Kills the sidecar (SIGKILL, like a crash) and starts it again as the same replica (a
    /// container restarted in its pod keeps its name, so it may take over its own claims).
    pub async fn crash_and_restart(&mut self) {
        self.crash();
        self.restart().await;
    }

    /// Kills the sidecar (SIGKILL); [`Bench::restart`] starts it again as the same replica.
    pub fn crash(&mut self) {
        if let Some(mut sc) = self.sidecar.take() {
            sc.kill();
            self.next_replica = Some(sc.replica.clone());
        }
    }

    /// Starts the sidecar again after [`Bench::crash`], with the same replica id.
    pub async fn restart(&mut self) {
        self.start_sidecar().await;
    }

    /// Starts one more replica (same namespace and settings) and returns its address.
    pub async fn start_replica(&mut self) -> SocketAddr {
        let sc = self.spawn_sidecar().await;
        let addr = sc.addr;
        self.replicas.push(sc);
        addr
    }

    async fn spawn_sidecar(&mut self) -> Sidecar {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        self.runs += 1;
        let log = self.logs.path().join(format!("sidecar-{}.log", self.runs));
        let replica = self
            .next_replica
            .take()
            .unwrap_or_else(|| format!("replica-{}", self.runs));
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bmh-sidecar"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("SIDECAR_ADDR", addr.to_string())
            .env("REPLICA_ID", &replica);
        if !self.only_extra_env {
            cmd.env("K8S_NAMESPACE", &self.ns)
                .env("PROVISION_IMAGE", IMAGE_URL)
                .env("PROVISION_CHECKSUM", IMAGE_CHECKSUM)
                .env("PROVISION_CHECKSUM_TYPE", "sha256")
                .env("PROVISION_IMAGE_FORMAT", "qcow2")
                .env("NOTIFICATION_ENDPOINT", self.sink.url())
                // The lifecycle tiers read the sidecar's own body (the documented alternative
                // format); reservation-be's DTO is asserted by the e2e and real-system tiers.
                .env("NOTIFICATION_FORMAT", "generic")
                .env("WEBHOOK_SECRET", INBOUND_SECRET)
                .env("NOTIFY_SECRET", NOTIFY_SECRET)
                .env("LOG_LEVEL", "DEBUG")
                .env("RESYNC_SECONDS", "1");
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf))
            .spawn()
            .unwrap();
        let sc = Sidecar {
            child,
            addr,
            log,
            replica,
        };
        for _ in 0..200 {
            if let Ok(a) = self.request_to(addr, "GET", "/healthz", b"").await
                && a.status == 200
            {
                return sc;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("sidecar did not answer /healthz within 10s");
    }

    fn addr(&self) -> SocketAddr {
        self.sidecar.as_ref().map(|s| s.addr).unwrap()
    }

    pub async fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<Answer, String> {
        self.request_to(self.addr(), method, path, body).await
    }

    /// A request as the edge forwards it: `POST /webhook` bodies are signed with the inbound
    /// secret (the sidecar verifies them too).
    pub async fn request_to(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Answer, String> {
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if method == "POST" && path == "/webhook" {
            headers.push(("x-webhook-signature", sign(INBOUND_SECRET, body)));
        }
        self.send_to(addr, method, path, &headers, body).await
    }

    /// A request with exactly these headers.
    pub async fn send_to(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Answer, String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(WAIT, self.http.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.request("GET", path, b"").await
    }

    pub async fn post(&self, body: &Value) -> Answer {
        self.request("POST", "/webhook", &serde_json::to_vec(body).unwrap())
            .await
            .unwrap()
    }

    pub async fn post_to(&self, addr: SocketAddr, body: &Value) -> Answer {
        self.request_to(addr, "POST", "/webhook", &serde_json::to_vec(body).unwrap())
            .await
            .unwrap()
    }

    /// A host labelled with `resource_id`: `available` at once (the stand-in), or created as
    /// a user would and brought to `available` by the chosen operator (conformance tier).
    pub async fn create_host(&self, name: &str, resource_id: Option<i64>) -> Value {
        let id = resource_id.map(|i| i.to_string());
        let labels: Vec<(&str, &str)> = id.iter().map(|i| (ID_LABEL, i.as_str())).collect();
        match &self.metal3 {
            Some(op) => op.add_host(&self.admin, name, &labels).await.unwrap(),
            None => create_bmh(&self.admin, &self.ns, name, &labels)
                .await
                .unwrap(),
        }
    }

    pub async fn host(&self, name: &str) -> Value {
        get_bmh(&self.admin, &self.ns, name).await.unwrap()
    }

    /// Sets (or removes with None) a test annotation on a host, as admin.
    pub async fn annotate(&self, name: &str, key: &str, value: Option<&str>) {
        let api = kube_harness::bmh_api(&self.admin, &self.ns);
        let patch = json!({"metadata": {"annotations": {key: value}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    pub async fn secret(&self, name: &str) -> Option<Secret> {
        let api: Api<Secret> = Api::namespaced(self.admin.clone(), &self.ns);
        api.get_opt(name).await.unwrap()
    }

    /// Waits for `n` notifications and checks each one's signature and idempotency key.
    pub async fn notifications(&self, n: usize) -> Vec<Value> {
        let got = self.sink.wait_for(n, WAIT).await.unwrap();
        got.iter().map(check_notification).collect()
    }

    /// Waits until a host annotation has `value`.
    pub async fn wait_annotation(&self, name: &str, key: &str, value: &str) -> Value {
        let key = format!("{PREFIX}/{key}");
        kube_harness::wait_for_bmh(&self.admin, &self.ns, name, WAIT, |v| {
            annotation(v, &key) == Some(value)
        })
        .await
        .unwrap()
    }
}

/// The annotation `key` of a host as JSON.
pub fn annotation<'a>(host: &'a Value, key: &str) -> Option<&'a str> {
    host.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The sidecar's annotations of a host (those under the prefix), as a JSON object.
pub fn our_annotations(host: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(a) = host
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in a {
            if let Some(short) = k.strip_prefix(&format!("{PREFIX}/")) {
                out.insert(short.to_owned(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// `sha256=<hex HMAC-SHA256>`, computed here independently of the code under test.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks the signature and idempotency key of a recorded notification; returns its body.
pub fn check_notification(r: &Recorded) -> Value {
    assert_eq!(r.method, "POST");
    let want = sign(NOTIFY_SECRET, &r.body);
    assert_eq!(r.header("x-webhook-signature"), Some(want.as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json().unwrap();
    let key = format!(
        "{}:{}:{}",
        body["eventId"].as_str().unwrap(),
        body["bmh"].as_str().unwrap(),
        body["outcome"].as_str().unwrap()
    );
    assert_eq!(r.header("idempotency-key"), Some(key.as_str()));
    body
}

/// Runs `script` with the test bench venv's Python (`tools/envoy-venv.sh` installs it with
/// tools/test-requirements.txt), `input` as JSON on its stdin. Fails the test when the venv
/// is missing (never skips).
pub fn venv_python(script: &str, input: &Value) -> std::process::Output {
    use std::io::Write as _;
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run tools/envoy-venv.sh (make test does)",
        py.display()
    );
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A sample event (`START` or `END`) as JSON, its reservations running now (started an hour
/// ago, ending in a day): the sidecar never provisions a reservation whose eventEnd passed.
pub fn sample(fixture: &str) -> Value {
    let mut v: Value = serde_json::from_str(fixture).unwrap();
    let now = jiff::Timestamp::now();
    let start = (now - jiff::SignedDuration::from_hours(1)).to_string();
    let end = (now + jiff::SignedDuration::from_hours(24)).to_string();
    for e in v["events"].as_array_mut().unwrap() {
        e["eventStart"] = json!(start);
        e["eventEnd"] = json!(end);
    }
    v
}

/// A sample event with its userId and first resource's eventId replaced.
pub fn event(template: &str, event_id: &str, user_id: &str) -> Value {
    let mut v = sample(template);
    v["userId"] = json!(user_id);
    v["events"][0]["eventId"] = json!(event_id);
    v
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Decoded `userData` of a Secret.
pub fn user_data(s: &Secret) -> String {
    let b = s.data.as_ref().and_then(|d| d.get("userData")).unwrap();
    String::from_utf8(b.0.clone()).unwrap()
}
