//! What a kubelet does for one pod of the gateway Deployment istiod creates, for its
//! `istio-proxy` container only, without a container runtime: the container's environment
//! (literal values, `fieldRef`, `resourceFieldRef`, `secretKeyRef`, `configMapKeyRef`, with
//! `$(VAR)` expansion), its arguments, and its volume mounts laid out under a directory that
//! stands in for the container's root (istio-agent reads them by relative paths,
//! `./var/run/secrets/tokens/istio-token`, `./etc/istio/pod/labels`, ...; it runs with that
//! directory as its working directory): `emptyDir`s, `configMap`s, the `downwardAPI` labels
//! and annotations files, and the projected ServiceAccount token (a TokenRequest with the
//! volume's audience and expiry, which is what `kubectl create token --audience` sends).
//! Anything else in the pod spec fails loudly instead of being skipped.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::Value;

use e2e::Result;

/// The pod this process stands in for.
pub struct PodIdentity<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub ip: &'a str,
    pub host_ip: &'a str,
    pub node_name: &'a str,
}

/// The container, ready to run: environment, arguments, and its root directory with every
/// volume mounted.
pub struct Container {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// The pod's labels and annotations (its template's).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub service_account: String,
    /// The audience of the projected token (`istio-ca` in Istio's template).
    pub token_audience: String,
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Lays out container `name` of `deployment`'s pod template under `root` and resolves its
/// environment, as the kubelet would for a pod `pod`.
pub async fn realize(
    client: &Client,
    deployment: &Value,
    name: &str,
    pod: &PodIdentity<'_>,
    root: &Path,
) -> Result<Container> {
    let template = &deployment["spec"]["template"];
    let spec = &template["spec"];
    let labels = string_map(&template["metadata"]["labels"]);
    let annotations = string_map(&template["metadata"]["annotations"]);
    let service_account = spec["serviceAccountName"]
        .as_str()
        .ok_or("the pod template names no serviceAccountName")?
        .to_owned();
    let container = spec["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .ok_or_else(|| format!("no container {name} in the pod template"))?;
    if container.get("envFrom").is_some() {
        return Err("envFrom is not supported by this stand-in kubelet".into());
    }

    // --- environment, in order, each value able to refer to the ones before it ---
    let mut env: Vec<(String, String)> = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let key = e["name"]
            .as_str()
            .ok_or("an env entry without name")?
            .to_owned();
        let value = match (e.get("value"), e.get("valueFrom")) {
            (Some(v), _) => Some(expand(v.as_str().unwrap_or_default(), &env)),
            (None, Some(from)) => {
                value_from(
                    client,
                    from,
                    pod,
                    &service_account,
                    container,
                    &labels,
                    &annotations,
                )
                .await?
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            env.retain(|(k, _)| *k != key);
            env.push((key, value));
        }
    }
    let args: Vec<String> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| expand(a.as_str().unwrap_or_default(), &env))
        .collect();

    // --- volumes ---
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    let mut token_audience = String::new();
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let vol_name = m["name"].as_str().unwrap_or_default();
        let mount = m["mountPath"].as_str().unwrap_or_default();
        let dir = root.join(mount.trim_start_matches('/'));
        std::fs::create_dir_all(&dir)?;
        let vol = volumes
            .iter()
            .find(|v| v["name"] == vol_name)
            .ok_or_else(|| format!("volumeMount {vol_name} names no volume"))?;
        if vol.get("emptyDir").is_some() {
            // Made above.
        } else if let Some(cm) = vol.get("configMap") {
            let cm_name = cm["name"].as_str().unwrap_or_default();
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), pod.namespace);
            let data = api.get(cm_name).await?.data.unwrap_or_default();
            for (k, v) in data {
                std::fs::write(dir.join(k), v)?;
            }
        } else if let Some(d) = vol.get("downwardAPI") {
            for item in d["items"].as_array().into_iter().flatten() {
                let text = match item["fieldRef"]["fieldPath"].as_str() {
                    Some("metadata.labels") => downward_map(&labels),
                    Some("metadata.annotations") => downward_map(&annotations),
                    other => return Err(format!("downwardAPI field {other:?}").into()),
                };
                std::fs::write(dir.join(item["path"].as_str().unwrap_or_default()), text)?;
            }
        } else if let Some(p) = vol.get("projected") {
            for source in p["sources"].as_array().into_iter().flatten() {
                let sat = source
                    .get("serviceAccountToken")
                    .ok_or_else(|| format!("projected volume {vol_name}: {source}"))?;
                let audience = sat["audience"].as_str().unwrap_or_default().to_owned();
                let token = token(
                    client,
                    pod.namespace,
                    &service_account,
                    &audience,
                    sat["expirationSeconds"].as_i64().unwrap_or(3600),
                )
                .await?;
                std::fs::write(dir.join(sat["path"].as_str().unwrap_or_default()), token)?;
                token_audience = audience;
            }
        } else {
            return Err(format!("volume {vol}: not supported by this stand-in kubelet").into());
        }
    }
    Ok(Container {
        env,
        args,
        labels,
        annotations,
        service_account,
        token_audience,
    })
}

async fn value_from(
    client: &Client,
    from: &Value,
    pod: &PodIdentity<'_>,
    service_account: &str,
    container: &Value,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<String>> {
    if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
        let lookup = |map: &BTreeMap<String, String>, rest: &str| {
            let key = rest.trim_start_matches("['").trim_end_matches("']");
            map.get(key).cloned().unwrap_or_default()
        };
        return Ok(Some(match path {
            "metadata.name" => pod.name.to_owned(),
            "metadata.namespace" => pod.namespace.to_owned(),
            "status.podIP" | "status.podIPs" => pod.ip.to_owned(),
            "status.hostIP" | "status.hostIPs" => pod.host_ip.to_owned(),
            "spec.nodeName" => pod.node_name.to_owned(),
            "spec.serviceAccountName" => service_account.to_owned(),
            p if p.starts_with("metadata.labels[") => lookup(labels, &p[15..]),
            p if p.starts_with("metadata.annotations[") => lookup(annotations, &p[20..]),
            other => return Err(format!("fieldRef {other} not supported").into()),
        }));
    }
    if let Some(r) = from.get("resourceFieldRef") {
        let resource = r["resource"].as_str().unwrap_or_default();
        let (kind, what) = resource
            .split_once('.')
            .ok_or_else(|| format!("resourceFieldRef {resource}"))?;
        let section = if kind == "limits" {
            "limits"
        } else {
            "requests"
        };
        let quantity = container["resources"][section][what].as_str();
        let divisor = r["divisor"].as_str().unwrap_or("1");
        return Ok(Some(resource_value(what, quantity, divisor)?));
    }
    for (key, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
        let Some(r) = from.get(key) else { continue };
        let (name, k) = (
            r["name"].as_str().unwrap_or_default(),
            r["key"].as_str().unwrap_or_default(),
        );
        let optional = r["optional"].as_bool().unwrap_or(false);
        let found = if kind == "Secret" {
            let api: Api<Secret> = Api::namespaced(client.clone(), pod.namespace);
            match api.get_opt(name).await? {
                Some(s) => s
                    .data
                    .unwrap_or_default()
                    .get(k)
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned()),
                None => None,
            }
        } else {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), pod.namespace);
            api.get_opt(name)
                .await?
                .and_then(|c| c.data.unwrap_or_default().get(k).cloned())
        };
        return match (found, optional) {
            (Some(v), _) => Ok(Some(v)),
            // An optional reference to a missing key leaves the variable unset.
            (None, true) => Ok(None),
            (None, false) => Err(format!(
                "{kind} {}/{name} has no key {k}: the kubelet would not start the container",
                pod.namespace
            )
            .into()),
        };
    }
    Err(format!("valueFrom {from} not supported").into())
}

/// A container resource in the unit of `divisor`, rounded up, as the kubelet writes it
/// (no limit set: this machine's capacity stands in for the node's allocatable).
fn resource_value(what: &str, quantity: Option<&str>, divisor: &str) -> Result<String> {
    let value = match (what, quantity) {
        ("cpu", Some(q)) => cpu_millis(q)?,
        ("cpu", None) => 1000 * std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        ("memory" | "ephemeral-storage", Some(q)) => bytes(q)?,
        ("memory" | "ephemeral-storage", None) => 1 << 30,
        (other, _) => return Err(format!("resource {other} not supported").into()),
    };
    let div = if what == "cpu" {
        cpu_millis(divisor)?
    } else {
        bytes(divisor)?
    };
    Ok(value.div_ceil(div.max(1)).to_string())
}

fn cpu_millis(q: &str) -> Result<u64> {
    match q.strip_suffix('m') {
        Some(m) => Ok(m.parse()?),
        None => Ok((q.parse::<f64>()? * 1000.0).ceil() as u64),
    }
}

fn bytes(q: &str) -> Result<u64> {
    const UNITS: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return Ok(n.parse::<u64>()? * factor);
        }
    }
    Ok(q.parse()?)
}

/// `$(VAR)` references to variables defined before, as Kubernetes expands them in `env` and
/// `args`; `$$` escapes; unknown references stay as they are.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(end) = rest.strip_prefix("$(").and_then(|r| r.find(')')) {
            let name = &rest[2..2 + end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&rest[..3 + end]),
            }
            rest = &rest[3 + end..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The Downward API file format: `key="value"` lines, sorted, values quoted like Go's `%q`
/// (istio-agent reads them back with `strconv.Unquote`).
fn downward_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A ServiceAccount token for `audience` (TokenRequest, what `kubectl create token --audience`
/// and the kubelet's projected token both ask the API server for).
pub async fn token(
    client: &Client,
    namespace: &str,
    service_account: &str,
    audience: &str,
    expiration_seconds: i64,
) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_owned()]),
            expiration_seconds: Some(expiration_seconds),
            ..Default::default()
        }),
        ..Default::default()
    };
    let out = api
        .create_token_request(service_account, &PostParams::default(), &tr)
        .await?;
    out.status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "TokenRequest returned no token".into())
}

/// Unit checks of the pure parts, run by the tier's runner before anything starts.
pub fn self_check() -> Result<()> {
    let env = vec![("POD_NAMESPACE".to_owned(), "metal3".to_owned())];
    let cases = [
        (
            expand("$(POD_NAMESPACE).svc.cluster.local", &env),
            "metal3.svc.cluster.local",
        ),
        (
            expand("$(NOPE) $$(POD_NAMESPACE) $x", &env),
            "$(NOPE) $(POD_NAMESPACE) $x",
        ),
        (resource_value("cpu", Some("2000m"), "1")?, "2"),
        (resource_value("cpu", Some("100m"), "1")?, "1"),
        (resource_value("memory", Some("1Gi"), "1")?, "1073741824"),
        (go_quote("a: [b]\n\"c\""), r#""a: [b]\n\"c\"""#),
    ];
    for (got, want) in cases {
        if got != want {
            return Err(format!("stand-in kubelet: got {got:?}, want {want:?}").into());
        }
    }
    Ok(())
}
