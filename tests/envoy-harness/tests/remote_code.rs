//! A regression canary for an Envoy 1.40 hazard, and the guard that keeps every shipped
//! configuration away from it (docs/deploy.md, "Never give a plain Envoy a remote code source").
//!
//! The hazard (first seen with istiod driving a plain Envoy: `shared/reference/
//! istio-control-plane.md`, "Side finding, fail-open"): the filter reaches Envoy through ECDS
//! with `vm_config.code.remote` (an HTTP URL and a sha256). When the **first** ECDS update for
//! the filter is rejected (here: no `sha256`, which is what an Istio `WasmPlugin` with an
//! `oci://` url and no `sha256` turns into without istio-agent) and a valid one follows, Envoy
//! accepts the valid one but never fetches the module, and **forwards every request without the
//! filter**: `failure_policy: FAIL_RELOAD` does not help, since no VM ever fails.
//!
//! Shipped deployments never depend on a remote code source: the Envoy overlay loads a local
//! file, and under Istio istio-agent rewrites every remote source to a local file before Envoy
//! sees it (asserted by the Istio tier, tests/e2e/tests/istio.rs). The last test checks the
//! shipped files. The alert `BmhWebhookFilterNotCounting` of k8s/components/monitoring catches
//! the symptom: Envoy's request counter of the webhook listener moves, the filter's do not.
//!
//! Here the ECDS updates come from a watched file (`path_config_source`), the module from a
//! loopback HTTP server that counts its requests.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use envoy_harness::envoy::sum_samples;
use envoy_harness::http::assert_rejected;
use envoy_harness::{Envoy, RecordingUpstream, filter_wasm, free_port, http};
use serde_json::Value;

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The name of the ECDS-configured HTTP filter and of its resource.
const FILTER_NAME: &str = "webhook-filter";

/// Serves one file over HTTP/1.1 on loopback and counts the requests (the module's "remote").
struct ModuleServer {
    addr: SocketAddr,
    fetches: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ModuleServer {
    fn start(body: Vec<u8>) -> ModuleServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let fetches = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (fetches.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while http::find(&head, b"\r\n\r\n").is_none() {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                f.fetch_add(1, Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes());
                let _ = conn.write_all(&body);
            }
        });
        ModuleServer {
            addr,
            fetches,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/plugin.wasm", self.addr)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for ModuleServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sha256_hex(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A YAML single-quoted scalar.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The ECDS resource file: the filter with a remote code source (`sha256` None: the update
/// Envoy rejects).
fn ecds_file(version: u32, url: &str, sha256: Option<&str>) -> String {
    let sha = sha256.map_or(String::new(), |s| format!("\n            sha256: {s}"));
    format!(
        r#"version_info: "{version}"
resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: {FILTER_NAME}
  typed_config:
    "@type": {WASM_TYPE}
    config:
      name: webhook_filter
      root_id: webhook_filter
      failure_policy: FAIL_RELOAD
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: {config}
      vm_config:
        vm_id: webhook_filter
        runtime: envoy.wasm.runtime.v8
        code:
          remote:
            http_uri:
              uri: {url}
              cluster: module_server
              timeout: 10s{sha}
        environment_variables:
          host_env_keys: [WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS]
"#,
        config = quoted(&plugin_config(|_| {})),
    )
}

/// A static bootstrap whose one HTTP filter before the router comes from ECDS, read from
/// `dir/ecds.yaml` (watched: a file moved over it is an update).
fn bootstrap(
    dir: &Path,
    listener: u16,
    admin: u16,
    upstream: SocketAddr,
    module: SocketAddr,
) -> String {
    let tags = envoy_harness::config::STATS_TAGS
        .iter()
        .map(|(tag, regex)| format!("\n  - tag_name: {tag}\n    regex: {}", quoted(regex)))
        .collect::<String>();
    let cluster = |name: &str, addr: SocketAddr| {
        format!(
            r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {ip}, port_value: {port} }}"#,
            ip = addr.ip(),
            port = addr.port()
        )
    };
    format!(
        r#"# A filesystem subscription (the ECDS file) needs a node identity.
node: {{ id: remote-code-canary, cluster: envoy-harness }}
stats_config:
  stats_tags:{tags}
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}
static_resources:
  listeners:
  - name: webhook
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listener} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: webhook
          route_config:
            name: webhook
            virtual_hosts:
            - name: sidecar
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: sidecar, timeout: 30s }}
          http_filters:
          - name: {FILTER_NAME}
            config_discovery:
              config_source:
                resource_api_version: V3
                path_config_source:
                  path: {ecds}
                  watched_directory: {{ path: {dir} }}
              type_urls: [{WASM_TYPE}]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{sidecar}{module_server}
"#,
        ecds = dir.join("ecds.yaml").display(),
        dir = dir.display(),
        sidecar = cluster("sidecar", upstream),
        module_server = cluster("module_server", module),
    )
}

/// The running bench: Envoy with the ECDS filter, the recording upstream, the module server.
struct RemoteBench {
    // Drop order: Envoy first.
    envoy: Envoy,
    upstream: RecordingUpstream,
    module: ModuleServer,
    dir: PathBuf,
    sha256: String,
}

impl RemoteBench {
    /// Starts everything with `first` as the ECDS file Envoy starts on.
    fn start(first: impl Fn(&ModuleServer, &str) -> String) -> RemoteBench {
        let wasm = filter_wasm().unwrap_or_else(|e| panic!("{e}"));
        let sha256 = sha256_hex(&wasm);
        let module = ModuleServer::start(std::fs::read(&wasm).unwrap());
        let upstream = RecordingUpstream::start().unwrap();
        let (listener, admin) = (free_port().unwrap(), free_port().unwrap());
        let dir = std::env::temp_dir().join(format!(
            "envoy-harness-ecds-{}-{listener}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ecds.yaml"), first(&module, &sha256)).unwrap();
        let yaml = bootstrap(&dir, listener, admin, upstream.addr(), module.addr);
        let envoy = Envoy::start_bootstrap(
            &yaml,
            listener,
            admin,
            &[("WEBHOOK_SECRET", NEW), ("WEBHOOK_SECRET_PREVIOUS", OLD)],
        )
        .unwrap_or_else(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("{e}")
        });
        RemoteBench {
            envoy,
            upstream,
            module,
            dir,
            sha256,
        }
    }

    /// Replaces the ECDS file the way a control plane's push arrives (a rename in the watched
    /// directory), and waits (bounded) until Envoy counted one more update, accepted or not.
    fn push(&self, text: &str) {
        let before = self.ecds_updates();
        let tmp = self.dir.join("ecds.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join("ecds.yaml")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ecds_updates() == before {
            assert!(
                Instant::now() < deadline,
                "Envoy did not take the ECDS update in 20 s:\n{}",
                self.envoy.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// ECDS updates Envoy has processed for the filter: (accepted, rejected).
    fn ecds_counts(&self) -> (u64, u64) {
        let stat = |s| {
            self.envoy
                .stat(&format!(
                    "extension_config_discovery.http_filter.{FILTER_NAME}.{s}"
                ))
                .unwrap()
                .unwrap_or(0)
        };
        (stat("config_reload"), stat("config_fail"))
    }

    fn ecds_updates(&self) -> u64 {
        let (ok, failed) = self.ecds_counts();
        ok + failed
    }

    /// The Wasm filter configuration Envoy holds from ECDS, if any.
    fn ecds_config(&self) -> Option<Value> {
        let r = http::get(self.envoy.admin(), "/config_dump").unwrap();
        let dump: Value = serde_json::from_slice(&r.body).unwrap();
        dump["configs"]
            .as_array()?
            .iter()
            .find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.EcdsConfigDump")?
            ["ecds_filters"]
            .as_array()?
            .iter()
            .find(|f| f["ecds_filter"]["name"] == FILTER_NAME)
            .map(|f| f["ecds_filter"]["typed_config"].clone())
    }

    /// Envoy's own request counter of the webhook listener, what the alert reads.
    fn downstream_requests(&self) -> u64 {
        sum_samples(
            &self.envoy.prometheus().unwrap(),
            "envoy_http_downstream_rq_total",
            &[("envoy_http_conn_manager_prefix", "webhook")],
        )
    }

    /// Every sample of the filter's counter family, summed (0 when the family is absent).
    fn filter_counted(&self) -> u64 {
        sum_samples(
            &self.envoy.prometheus().unwrap(),
            envoy_harness::envoy::FILTER_REQUESTS_METRIC,
            &[],
        )
    }
}

impl Drop for RemoteBench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Control: the valid remote source as the first update is fetched, checked and guards.
#[test]
fn a_remote_code_source_in_the_first_update_is_fetched_and_guards() {
    let b = RemoteBench::start(|m, sha| ecds_file(1, &m.url(), Some(sha)));
    assert_eq!(b.ecds_counts(), (1, 0), "{}", b.envoy.log_tail());
    assert!(b.module.fetches() >= 1, "the module was never fetched");

    let r = b.post(&fresh_event(|_| {}), &[]);
    assert_rejected(&r, 401, "MissingSignature");
    let r = b.post_signed(NEW, &fresh_event(|_| {}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let reqs = b.upstream.requests();
    assert_eq!(
        reqs.len(),
        1,
        "only the signed request reaches the upstream"
    );
    assert_eq!(reqs[0].header_values("x-webhook-verified"), ["true"]);
    assert!(b.filter_counted() >= 2, "the filter counts what it sees");
}

/// The hazard, as a canary: it exists in Envoy 1.40. When this test fails because Envoy
/// fetches the module after all (or refuses the requests), the hazard is fixed in the Envoy
/// under test: update docs/deploy.md ("Never give a plain Envoy a remote code source") and turn
/// this into a regression test of the fixed behaviour.
#[test]
fn envoy_1_40_forwards_unguarded_after_a_rejected_first_update_of_a_remote_code_source() {
    let b = RemoteBench::start(|m, _| ecds_file(1, &m.url(), None));
    assert_eq!(b.ecds_counts(), (0, 1), "the first update must be rejected");
    // No filter configuration yet: Envoy answers 500 itself, nothing is forwarded.
    let r = b.post(&fresh_event(|_| {}), &[]);
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert!(b.upstream.requests().is_empty());

    b.push(&ecds_file(2, &b.module.url(), Some(&b.sha256)));
    assert_eq!(b.ecds_counts(), (1, 1), "the valid update must be accepted");
    let code =
        b.ecds_config().expect("the ECDS filter configuration")["config"]["vm_config"]["code"]
            .clone();
    assert_eq!(code["remote"]["sha256"], b.sha256.as_str(), "{code}");

    // Unsigned, and signed with a wrong secret: both forwarded, none verified.
    let unsigned = b.post(&fresh_event(|_| {}), &[]);
    let forged = b.post_signed(
        "not-the-secret-0123456789abcdef0123456789",
        &fresh_event(|_| {}),
    );
    std::thread::sleep(Duration::from_secs(2)); // a fetch, if any, would have happened by now
    let again = b.post(&fresh_event(|_| {}), &[]);
    for r in [&unsigned, &forged, &again] {
        assert_eq!(
            r.status,
            200,
            "the hazard is gone from this Envoy? {}\n{}",
            String::from_utf8_lossy(&r.body),
            b.envoy.log_tail()
        );
    }
    assert_eq!(b.module.fetches(), 0, "Envoy never fetches the module");
    let reqs = b.upstream.requests();
    assert_eq!(reqs.len(), 3, "every request reached the upstream");
    assert!(
        reqs.iter()
            .all(|r| r.header_values("x-webhook-verified").is_empty()),
        "nothing verified them"
    );

    // What BmhWebhookFilterNotCounting reads: the listener counts the requests, the filter
    // counts nothing (its family is not even there).
    assert!(
        b.downstream_requests() >= 4,
        "{}",
        b.envoy.prometheus().unwrap()
    );
    assert_eq!(b.filter_counted(), 0);
    assert_alert_reads_these_series();
}

impl RemoteBench {
    fn post(&self, body: &[u8], extra: &[(&str, &str)]) -> http::Response {
        let len = body.len().to_string();
        let mut headers = vec![
            ("content-length", len.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        let head = http::head("POST", "/webhook", &headers);
        http::send(self.envoy.listener(), &[head.as_bytes(), body]).unwrap()
    }

    fn post_signed(&self, secret: &str, body: &[u8]) -> http::Response {
        let sig = webhook_core::signature::signature_header_value(secret.as_bytes(), body);
        self.post(body, &[("x-webhook-signature", &sig)])
    }
}

/// The shipped alert names the two series the hazard test reads, with the plain Envoy's
/// listener prefix (`stat_prefix: webhook` in envoy/envoy.yaml).
fn assert_alert_reads_these_series() {
    let rule = repo_file("k8s/components/monitoring/prometheusrule.yaml");
    let start = rule
        .find("alert: BmhWebhookFilterNotCounting")
        .expect("the alert BmhWebhookFilterNotCounting in the shipped PrometheusRule");
    let end = rule[start + 1..]
        .find("- alert:")
        .map_or(rule.len(), |i| start + 1 + i);
    let alert = &rule[start..end];
    for needle in [
        "envoy_http_downstream_rq_total",
        r#"envoy_http_conn_manager_prefix="webhook""#,
        "webhook_filter_requests_total",
    ] {
        assert!(
            alert.contains(needle),
            "the alert does not read {needle}:\n{alert}"
        );
    }
    assert!(
        repo_file("envoy/envoy.yaml").contains("stat_prefix: webhook\n"),
        "the shipped Envoy's webhook listener has another stat_prefix than the alert reads"
    );
}

fn repo_file(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// No shipped Envoy configuration gives Envoy a remote code source: every `vm_config.code` in
/// envoy/ and k8s/ (and the renderer's deployment output) is `local`.
#[test]
fn no_shipped_configuration_uses_a_remote_code_source() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["envoy", "k8s"] {
        collect_yaml(&root.join(dir), &mut files);
    }
    assert!(
        files.iter().any(|f| f.ends_with("envoy/envoy.yaml")),
        "{files:?}"
    );
    let mut texts: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read_to_string(f).unwrap()))
        .collect();
    texts.push((
        "EnvoyConfig::deployment().render()".into(),
        envoy_harness::EnvoyConfig::deployment().render(),
    ));
    let mut codes = 0;
    for (name, text) in &texts {
        let docs: Vec<Option<Value>> =
            serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
        for doc in docs.into_iter().flatten() {
            walk(&doc, &mut |code| {
                codes += 1;
                assert!(
                    code.get("remote").is_none() && code.get("local").is_some(),
                    "{name}: a vm_config.code that is not a local file: {code}"
                );
            });
        }
    }
    assert!(codes >= 2, "no vm_config.code found at all ({codes})");
}

/// Calls `f` on the `code` member of every `vm_config` in `v`.
fn walk(v: &Value, f: &mut impl FnMut(&Value)) {
    match v {
        Value::Object(m) => {
            if let Some(code) = m.get("vm_config").and_then(|vm| vm.get("code")) {
                f(code);
            }
            m.values().for_each(|x| walk(x, f));
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_yaml(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        {
            out.push(p);
        }
    }
}
