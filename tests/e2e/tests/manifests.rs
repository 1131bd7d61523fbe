//! The deployment manifests, checked against the real kube-apiserver: each kustomize overlay is
//! rendered and applied with a server-side dry run (full schema validation, defaulting and
//! admission, nothing stored), and the copies of the filter configuration cannot drift.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use kube::discovery::{self, ApiGroup};
use kube_harness::{ApiServer, manifest::parse_documents, repo_root};
use serde_json::Value;

fn kustomize_build(dir: &str) -> String {
    let bin = std::env::var("KUSTOMIZE_BIN").unwrap_or_else(|_| {
        let out = Command::new(repo_root().join("tools/build-kustomize.sh"))
            .output()
            .expect("run tools/build-kustomize.sh (or set KUSTOMIZE_BIN)");
        assert!(out.status.success(), "tools/build-kustomize.sh failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    });
    let out = Command::new(&bin)
        .arg("build")
        .arg(repo_root().join(dir))
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    assert!(
        out.status.success(),
        "kustomize build {dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Installs the minimal Istio CRDs of k8s/test/ and waits (bounded) until they are served.
async fn install_istio_test_crds(server: &ApiServer) {
    let client = server.client().await.unwrap();
    for (file, group, kind) in [
        (
            "k8s/test/wasmplugin-crd.yaml",
            "extensions.istio.io",
            "WasmPlugin",
        ),
        (
            "k8s/test/envoyfilter-crd.yaml",
            "networking.istio.io",
            "EnvoyFilter",
        ),
    ] {
        server
            .apply_file(file, "default", false)
            .await
            .unwrap_or_else(|e| panic!("install {file}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let served = discovery::group(&client, group)
                .await
                .ok()
                .is_some_and(|g: ApiGroup| {
                    g.recommended_resources()
                        .iter()
                        .any(|(ar, _)| ar.kind == kind)
                });
            if served {
                break;
            }
            assert!(Instant::now() < deadline, "{kind} CRD never served");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    k.sort();
    k
}

fn deployment(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment")
}

/// What an operator relies on in every container: non-root, read-only root filesystem, no
/// privilege escalation, every capability dropped, a memory limit.
fn assert_hardened(deployment: &Value, skip: &[&str]) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    for c in pod["containers"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        if skip.contains(&name) {
            continue;
        }
        let sc = &c["securityContext"];
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{name}: read-only root fs"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{name}: no escalation"
        );
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert!(
            c["resources"]["limits"]["memory"].is_string(),
            "{name}: memory limit"
        );
        assert!(
            c["resources"]["requests"]["cpu"].is_string(),
            "{name}: cpu request"
        );
    }
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

#[tokio::test]
async fn envoy_overlay_passes_a_server_side_dry_run() {
    let server = ApiServer::shared().await.unwrap();
    let ns = server.create_namespace("manifests-envoy").await.unwrap();
    let yaml = kustomize_build("k8s/overlays/envoy");
    let docs = parse_documents(&yaml).unwrap();
    assert_eq!(
        kinds(&docs),
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
    );
    let applied = server
        .apply_yaml(&yaml, &ns, true)
        .await
        .unwrap_or_else(|e| panic!("dry run of the envoy overlay rejected: {e}"));
    assert_eq!(applied.len(), docs.len());

    let deploy = deployment(&docs);
    assert_hardened(deploy, &[]);
    let envoy = container(deploy, "envoy");
    assert_eq!(envoy["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(envoy["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(envoy["ports"][0]["containerPort"], 5001);
    // The sidecar stays on loopback: only Envoy (and so the filter) faces the network.
    let sidecar = container(deploy, "sidecar");
    let addr = sidecar["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SIDECAR_ADDR")
        .unwrap();
    assert_eq!(addr["value"], "127.0.0.1:8080");
}

#[tokio::test]
async fn istio_overlay_passes_a_server_side_dry_run() {
    let server = ApiServer::shared().await.unwrap();
    install_istio_test_crds(server).await;
    let ns = server.create_namespace("manifests-istio").await.unwrap();
    let yaml = kustomize_build("k8s/overlays/istio");
    let docs = parse_documents(&yaml).unwrap();
    assert_eq!(
        kinds(&docs),
        [
            "ConfigMap",
            "Deployment",
            "EnvoyFilter",
            "EnvoyFilter",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "WasmPlugin",
        ]
    );
    server
        .apply_yaml(&yaml, &ns, true)
        .await
        .unwrap_or_else(|e| panic!("dry run of the istio overlay rejected: {e}"));

    // istio-proxy is a partial container that Istio's injector merges; it is not checked here.
    assert_hardened(deployment(&docs), &["istio-proxy"]);
    let plugin = docs.iter().find(|d| d["kind"] == "WasmPlugin").unwrap();
    assert_eq!(plugin["spec"]["phase"], "AUTHN");
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_CLOSE");
    assert!(
        plugin["spec"]["url"]
            .as_str()
            .unwrap()
            .starts_with("oci://")
    );
    assert_eq!(plugin["spec"]["sha256"].as_str().unwrap().len(), 64);
    // The zero-bytes arrangement: the buffer filter before the router on the inbound port.
    let envoy_filter = |name: &str| {
        docs.iter()
            .find(|d| d["kind"] == "EnvoyFilter" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("EnvoyFilter {name}"))
    };
    let buffer = envoy_filter("bmh-webhook-buffer");
    let patch = &buffer["spec"]["configPatches"][0];
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    assert_eq!(patch["patch"]["value"]["name"], "envoy.filters.http.buffer");
    assert_eq!(
        patch["patch"]["value"]["typed_config"]["max_request_bytes"].as_u64(),
        Some(envoy_harness::config::BUFFER_MAX_REQUEST_BYTES)
    );
    // The edge settings of the plain-Envoy overlay that apply to the pod's inbound listener.
    let edge = &envoy_filter("bmh-webhook-edge")["spec"]["configPatches"][0];
    assert_eq!(edge["applyTo"], "NETWORK_FILTER");
    assert_eq!(edge["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(edge["patch"]["operation"], "MERGE");
    let hcm = &edge["patch"]["value"]["typed_config"];
    let deployed = envoy_harness::EdgeLimits::deployment();
    assert_eq!(
        hcm["common_http_protocol_options"]["headers_with_underscores_action"],
        "DROP_HEADER"
    );
    assert_eq!(
        hcm["request_headers_timeout"],
        format!("{}s", deployed.request_headers_timeout.as_secs())
    );
    assert_eq!(
        hcm["request_timeout"],
        format!("{}s", deployed.request_timeout.as_secs())
    );
}

#[tokio::test]
async fn bmh_crd_and_test_crds_are_valid() {
    let server = ApiServer::shared().await.unwrap();
    for file in [
        "k8s/crd/baremetalhosts.metal3.io.yaml",
        "k8s/test/wasmplugin-crd.yaml",
        "k8s/test/envoyfilter-crd.yaml",
    ] {
        server
            .apply_file(file, "default", true)
            .await
            .unwrap_or_else(|e| panic!("dry run of {file} rejected: {e}"));
    }
}

/// The plain-Envoy overlay ships envoy/envoy.yaml (the renderer's output) in its ConfigMap.
#[test]
fn envoy_overlay_config_is_the_rendered_envoy_config() {
    let rendered = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    let overlay =
        std::fs::read_to_string(repo_root().join("k8s/overlays/envoy/envoy.yaml")).unwrap();
    assert!(
        rendered == overlay,
        "k8s/overlays/envoy/envoy.yaml differs from envoy/envoy.yaml: copy it again"
    );
}

/// Istio's pluginConfig is the same document as the Envoy configuration's, and the filter's own
/// configuration compiler accepts it.
#[test]
fn istio_plugin_config_is_the_envoy_plugin_config() {
    let yaml =
        std::fs::read_to_string(repo_root().join("k8s/overlays/istio/wasmplugin.yaml")).unwrap();
    let plugin = &parse_documents(&yaml).unwrap()[0];
    let istio = &plugin["spec"]["pluginConfig"];
    let envoy: Value = serde_json::from_str(envoy_harness::config::DEFAULT_PLUGIN_CONFIG).unwrap();
    assert_eq!(istio, &envoy);

    let env = |name: &str| (name == "WEBHOOK_SECRET").then(|| "0123456789abcdef".repeat(2));
    webhook_core::config::CompiledConfig::from_json(istio.to_string().as_bytes(), env)
        .unwrap_or_else(|e| panic!("the filter refuses the Istio pluginConfig: {e}"));
}

/// Every `secretKeyRef` of a rendered overlay, as (secret name, key).
fn secret_refs(docs: &[Value]) -> Vec<(String, String)> {
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
    docs.iter().for_each(|d| walk(d, &mut out));
    out.sort();
    out.dedup();
    out
}

/// No overlay ships a secret value: applying (or re-applying) the manifests must never create
/// or overwrite the Secret the operator made (README, Deploying: `kubectl create secret`). The
/// pods read it by the one name the README documents.
#[test]
fn no_overlay_ships_a_secret_and_all_read_the_documented_one() {
    for overlay in ["k8s/overlays/envoy", "k8s/overlays/istio"] {
        let yaml = kustomize_build(overlay);
        let docs = parse_documents(&yaml).unwrap();
        assert!(
            !docs.iter().any(|d| d["kind"] == "Secret"),
            "{overlay} ships a Secret"
        );
        assert!(
            !yaml.contains("change-me"),
            "{overlay} ships a placeholder secret"
        );
        let refs = secret_refs(&docs);
        assert!(!refs.is_empty(), "{overlay} reads no secret");
        for (name, key) in refs {
            assert_eq!(name, "bmh-webhook-secrets", "{overlay}");
            assert!(
                key == "WEBHOOK_SECRET" || key == "WEBHOOK_SECRET_PREVIOUS",
                "{overlay}: undocumented key {key}"
            );
        }
    }
}
