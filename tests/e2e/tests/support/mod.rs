//! Shared by the manifest and image tests: kustomize, the real third-party CRDs, small lookups in
//! rendered documents.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::discovery::{self, ApiGroup};
use kube_harness::{ApiServer, manifest::parse_documents, repo_root};
use serde_json::Value;

/// Runs a repository script that prints one path, unless `var` already names it.
fn tool_path(var: &str, script: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var)
        && !p.is_empty()
    {
        return PathBuf::from(p);
    }
    let out = Command::new(repo_root().join(script))
        .output()
        .unwrap_or_else(|e| panic!("run {script} (or set {var}): {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `kustomize build DIR` (relative to the repository root, or absolute).
pub fn kustomize_build(dir: impl AsRef<Path>) -> String {
    let bin = tool_path("KUSTOMIZE_BIN", "tools/build-kustomize.sh");
    let dir = repo_root().join(dir.as_ref());
    let out = Command::new(&bin)
        .arg("build")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "kustomize build {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Writes `kustomization` into a fresh directory and renders it: a user's own overlay on top of
/// the shipped ones. `{root}` in it is the repository root (kustomize wants relative paths).
pub fn kustomize_user_overlay(kustomization: &str, files: &[(&str, &str)]) -> String {
    let dir = tempfile_dir();
    std::fs::write(
        dir.join("kustomization.yaml"),
        kustomization.replace("{root}", "../../.."),
    )
    .unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let out = kustomize_build(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// A fresh empty directory under the target directory (removed by the caller).
pub fn tempfile_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = repo_root().join("target/e2e-tmp").join(format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The cache of real third-party CRDs (tools/fetch-crds.sh, or `CRDS_DIR`).
pub fn crds_dir() -> PathBuf {
    tool_path("CRDS_DIR", "tools/fetch-crds.sh")
}

/// Third-party APIs the overlays use, installed from their real CRDs.
#[derive(Debug, Clone, Copy)]
pub enum ThirdParty {
    /// istio.io/istio's crd-all.gen.yaml (WasmPlugin, EnvoyFilter, ...).
    Istio,
    /// Gateway API standard channel (Gateway, HTTPRoute).
    GatewayApi,
    /// Prometheus Operator (PodMonitor, PrometheusRule).
    PrometheusOperator,
}

impl ThirdParty {
    fn files(self) -> Vec<PathBuf> {
        let dir = crds_dir();
        let sub = match self {
            ThirdParty::Istio => return vec![dir.join("istio/crd-all.gen.yaml")],
            ThirdParty::GatewayApi => dir.join("gateway-api"),
            ThirdParty::PrometheusOperator => dir.join("prometheus-operator"),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)
            .unwrap_or_else(|e| panic!("{}: {e}", sub.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        files
    }

    /// (group, kind) pairs that must be served before the dry runs.
    fn kinds(self) -> &'static [(&'static str, &'static str)] {
        match self {
            ThirdParty::Istio => &[
                ("extensions.istio.io", "WasmPlugin"),
                ("networking.istio.io", "EnvoyFilter"),
            ],
            ThirdParty::GatewayApi => &[
                ("gateway.networking.k8s.io", "Gateway"),
                ("gateway.networking.k8s.io", "HTTPRoute"),
            ],
            ThirdParty::PrometheusOperator => &[
                ("monitoring.coreos.com", "PodMonitor"),
                ("monitoring.coreos.com", "PrometheusRule"),
            ],
        }
    }
}

/// Installs the real CRDs of `apis` (server-side apply: idempotent, so tests sharing the server
/// may all call it) and waits, bounded, until their kinds are served.
pub async fn install_crds(server: &ApiServer, apis: &[ThirdParty]) {
    let client = server.client().await.unwrap();
    for api in apis {
        for file in api.files() {
            let yaml = std::fs::read_to_string(&file).unwrap();
            server
                .apply_yaml(&yaml, "default", false)
                .await
                .unwrap_or_else(|e| panic!("install {}: {e}", file.display()));
        }
        for (group, kind) in api.kinds() {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let served =
                    discovery::group(&client, group)
                        .await
                        .ok()
                        .is_some_and(|g: ApiGroup| {
                            // Any version: EnvoyFilter is v1alpha3 only, not the preferred one.
                            g.resources_by_stability()
                                .iter()
                                .any(|(ar, _)| ar.kind == *kind)
                        });
                if served {
                    break;
                }
                assert!(Instant::now() < deadline, "{kind} CRD never served");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Renders and parses.
pub fn docs_of(yaml: &str) -> Vec<Value> {
    parse_documents(yaml).unwrap()
}

pub fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    k.sort();
    k
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

pub fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let all: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(all.len(), 1, "expected one {kind}");
    all[0]
}

pub fn deployment(docs: &[Value]) -> &Value {
    find(docs, "Deployment", "bmh-webhook")
}

pub fn containers(deployment: &Value) -> &Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
}

pub fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    containers(deployment)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

/// The value of environment variable `name` of a container (literal values only).
pub fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

/// The port of `container` that a probe, Service or policy names (by number or by name), if
/// the container declares it.
pub fn port_number(container: &Value, port: &Value) -> Option<u64> {
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| match port {
            Value::Number(n) => p["containerPort"].as_u64() == n.as_u64(),
            Value::String(name) => p["name"] == name.as_str(),
            _ => false,
        })
        .and_then(|p| p["containerPort"].as_u64())
}

/// Every `secretKeyRef` under `v`, as (secret name, key).
pub fn secret_refs(v: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                if let Some(r) = map.get("secretKeyRef") {
                    out.push((
                        r["name"].as_str().unwrap_or_default().to_owned(),
                        r["key"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.sort();
    out.dedup();
    out
}

/// The overlays a user deploys, with the third-party APIs each needs.
pub const OVERLAYS: [(&str, &[ThirdParty]); 3] = [
    ("envoy", &[]),
    ("istio", &[ThirdParty::Istio]),
    (
        "istio-gateway",
        &[ThirdParty::Istio, ThirdParty::GatewayApi],
    ),
];
