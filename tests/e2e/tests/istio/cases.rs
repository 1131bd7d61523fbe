//! The cases of the Istio tier, in the order they run. Each asserts what a user (or their
//! monitoring) sees: the gateway's HTTP answers and JSON bodies, what reached the backend,
//! Envoy's configuration and counters. Each fails when the filter is absent or misconfigured:
//! without it, unsigned and forged requests are forwarded (200), nothing carries
//! `x-webhook-verified`, no counter moves and no ECDS configuration names the module.

use std::process::Command;

use envoy_harness::envoy::{parse_sample, sum_samples};
use envoy_harness::http::{self, assert_rejected};
use serde_json::{Value, json};

use e2e::Result;

use crate::tier::{
    GATEWAY, ISTIOD_HTTP, NS, POD_NAME, PREVIOUS_SECRET, REGISTRY, SECRET, Tier, webhook,
    webhook_entry_mut,
};

pub type Case = fn(&mut Tier) -> Result<()>;

pub const CASES: &[(&str, Case)] = &[
    (
        "istiod_creates_the_gateway_deployment_from_the_shipped_options",
        gateway_deployment_from_the_shipped_options,
    ),
    (
        "envoy_runs_the_module_from_a_local_file_the_agent_fetched_and_checked",
        module_from_a_local_file,
    ),
    (
        "a_signed_event_reaches_the_backend_verified",
        signed_event_reaches_the_backend_verified,
    ),
    (
        "an_unsigned_event_is_refused_401",
        unsigned_event_is_refused,
    ),
    ("a_bad_signature_is_refused_401", bad_signature_is_refused),
    (
        "the_secrets_reach_the_filter_from_the_gateway_options",
        secrets_from_the_gateway_options,
    ),
    (
        "the_gateway_exposes_the_counters_the_alert_compares",
        gateway_exposes_the_alert_series,
    ),
    (
        "a_changed_plugin_config_takes_effect_without_a_restart",
        plugin_config_change_is_live,
    ),
    (
        "a_wrong_digest_denies_every_request_403",
        wrong_digest_denies_everything,
    ),
    (
        "a_new_image_digest_takes_effect_without_a_restart",
        new_image_digest_is_live,
    ),
];

fn env_entry<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no env {name} in {container}"))
}

/// The shipped gateway options (k8s/overlays/istio-gateway/gateway-options.yaml), rendered
/// into the Deployment by istiod's own template: two replicas, the secrets from the user's
/// Secret in istio-proxy's environment, the stats tags annotation, the pod labels of the
/// Gateway's `infrastructure`; and the projected token for istiod's CA.
fn gateway_deployment_from_the_shipped_options(t: &mut Tier) -> Result<()> {
    let d = &t.gateway_deployment;
    assert_eq!(d["spec"]["replicas"], 2, "{d}");
    let proxy = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "istio-proxy"))
        .expect("istio-proxy container");
    assert_eq!(
        env_entry(proxy, "WEBHOOK_SECRET")["valueFrom"]["secretKeyRef"],
        json!({"name": "bmh-webhook-secrets", "key": "WEBHOOK_SECRET"})
    );
    assert_eq!(
        env_entry(proxy, "WEBHOOK_SECRET_PREVIOUS")["valueFrom"]["secretKeyRef"],
        json!({"name": "bmh-webhook-secrets", "key": "WEBHOOK_SECRET_PREVIOUS", "optional": true})
    );
    let config = t
        .pod
        .annotations
        .get("proxy.istio.io/config")
        .expect("proxy.istio.io/config");
    assert!(config.contains("extraStatTags"), "{config}");
    assert_eq!(
        t.pod
            .labels
            .get("app.kubernetes.io/name")
            .map(String::as_str),
        Some("bmh-webhook-gateway"),
        "the Gateway's infrastructure labels, not the sidecar pods' ({:?})",
        t.pod.labels
    );
    assert_eq!(
        t.pod
            .labels
            .get("gateway.networking.k8s.io/gateway-name")
            .map(String::as_str),
        Some("bmh-webhook")
    );
    assert_eq!(t.pod.token_audience, "istio-ca");
    // The agent got its workload certificate from istiod's CA with that token.
    let log = t.agent.log_text();
    assert!(
        log.contains("generated new workload certificate"),
        "{}",
        t.agent.tail(40)
    );
    Ok(())
}

/// istiod pushes the WasmPlugin as a remote `oci://` code source (what a plain Envoy must not
/// be given, docs/deploy.md); istio-agent pulls the image, checks the digest and rewrites it:
/// Envoy holds only a local file under /var/lib/istio/data named by the digest, byte for byte
/// the filter module, with the shipped pluginConfig, fail closed.
fn module_from_a_local_file(t: &mut Tier) -> Result<()> {
    let wasm = t.ecds_wasm()?;
    assert_eq!(wasm.len(), 1, "one Wasm filter from ECDS: {wasm:?}");
    let config = &wasm[0]["typed_config"]["config"];
    let code = &config["vm_config"]["code"];
    assert!(
        code.get("remote").is_none(),
        "a remote code source reached Envoy: {code}"
    );
    let file = code["local"]["filename"]
        .as_str()
        .expect("code.local.filename");
    let hex = t.digest.trim_start_matches("sha256:");
    assert!(
        file.starts_with("/var/lib/istio/data/") && file.ends_with(&format!("/{hex}.wasm")),
        "{file}"
    );
    assert_eq!(
        std::fs::read(file)?,
        t.inputs.wasm,
        "{file} is not the filter module"
    );
    assert_eq!(config["fail_open"], Value::Null, "{config}");
    assert_eq!(config["failure_policy"], "FAIL_RELOAD", "{config}");
    let keys = &config["vm_config"]["environment_variables"]["host_env_keys"];
    assert_eq!(keys, &json!(["WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS"]));
    let plugin_config: Value = serde_json::from_str(
        config["configuration"]["value"]
            .as_str()
            .expect("configuration"),
    )?;
    assert_eq!(plugin_config, t.wasmplugin["spec"]["pluginConfig"]);
    // Nothing remote anywhere in what Envoy holds.
    let dump = t.config_dump()?.to_string();
    assert!(
        !dump.contains("\"remote\":{\"http_uri\""),
        "a remote data source in Envoy's config"
    );

    // What istiod sent: the oci:// url with the sha256, for the agent to fetch.
    let r = http::get(
        ISTIOD_HTTP,
        &format!("/debug/ecdsz?proxyID={POD_NAME}.{NS}"),
    )?;
    let sent = String::from_utf8_lossy(&r.body);
    assert!(
        sent.contains(&format!("oci://{}@{}", t.repository, t.digest)) && sent.contains(hex),
        "istiod's ECDS for the gateway: {sent}"
    );
    Ok(())
}

/// A correctly signed event is answered 200 by the backend, which received it byte for byte
/// with `x-webhook-verified: true`; the filter counted it on the port Prometheus scrapes.
fn signed_event_reaches_the_backend_verified(t: &mut Tier) -> Result<()> {
    let before = t.upstream.requests().len();
    let accepted = accepted(t)?;
    let body = t.event();
    let r = t.post_signed(SECRET, &body)?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.body,
        envoy_harness::upstream::REPLY_BODY,
        "the backend's answer"
    );
    let reqs = t.upstream.requests();
    assert_eq!(reqs.len(), before + 1);
    let got = &reqs[before];
    assert_eq!(got.request_line(), "POST /webhook HTTP/1.1");
    assert_eq!(got.body, body, "the body reaches the backend unchanged");
    assert_eq!(got.header_values("x-webhook-verified"), ["true"]);
    assert_eq!(
        got.header_values("x-webhook-name"),
        [webhook(&t.wasmplugin)?.name]
    );
    assert_eq!(
        accepted_now(t, accepted)?,
        accepted + 1,
        "the filter's accepted counter"
    );
    Ok(())
}

fn accepted(t: &Tier) -> Result<u64> {
    let name = webhook(&t.wasmplugin)?.name;
    Ok(parse_sample(
        &t.prometheus()?,
        envoy_harness::envoy::FILTER_REQUESTS_METRIC,
        &[("webhook", &name), ("outcome", "accepted")],
    )
    .unwrap_or(0))
}

/// The accepted counter once it has moved past `before` (waited for, bounded).
fn accepted_now(t: &mut Tier, before: u64) -> Result<u64> {
    let mut now = before;
    t.eventually("the accepted counter moved", |t| {
        now = accepted(t)?;
        Ok(now > before)
    })?;
    Ok(now)
}

/// Nothing reaches the backend without a signature: 401 from the filter, in JSON.
fn unsigned_event_is_refused(t: &mut Tier) -> Result<()> {
    let before = t.upstream.requests().len();
    let r = t.post_unsigned(&t.event())?;
    assert_rejected(&r, 401, "MissingSignature");
    assert_eq!(
        t.upstream.requests().len(),
        before,
        "zero requests upstream"
    );
    Ok(())
}

/// A signature with another key (or an altered body): 401 InvalidSignature.
fn bad_signature_is_refused(t: &mut Tier) -> Result<()> {
    let before = t.upstream.requests().len();
    let r = t.post_signed("not-the-secret-0123456789abcdef0123456789", &t.event())?;
    assert_rejected(&r, 401, "InvalidSignature");
    let body = t.event();
    let mut altered = body.clone();
    altered.extend_from_slice(b" ");
    let sig = e2e::sign(SECRET, &body);
    let header = t.signature_header();
    let r = e2e::post_webhook(
        GATEWAY,
        &altered,
        &[
            ("content-type", "application/json"),
            (header.as_str(), sig.as_str()),
        ],
    )?;
    assert_rejected(&r, 401, "InvalidSignature");
    assert_eq!(
        t.upstream.requests().len(),
        before,
        "zero requests upstream"
    );
    Ok(())
}

/// The secrets reach the filter the way the overlay ships them: Secret → the gateway
/// options' `secretKeyRef`s → istio-proxy's environment → `vmConfig.env` `valueFrom: HOST`.
/// Both are live (a rotation in progress), and the labelled counters prove the options'
/// `extraStatTags` reached the proxy's bootstrap.
fn secrets_from_the_gateway_options(t: &mut Tier) -> Result<()> {
    let env = |k: &str| {
        t.pod
            .env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(env("WEBHOOK_SECRET").as_deref(), Some(SECRET));
    assert_eq!(
        env("WEBHOOK_SECRET_PREVIOUS").as_deref(),
        Some(PREVIOUS_SECRET)
    );
    let before = t.upstream.requests().len();
    let r = t.post_signed(PREVIOUS_SECRET, &t.event())?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = t.post_signed(SECRET, &t.event())?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let reqs = t.upstream.requests();
    assert_eq!(reqs.len(), before + 2);
    assert!(
        reqs[before..]
            .iter()
            .all(|r| r.header_values("x-webhook-verified") == ["true"])
    );
    let text = t.prometheus()?;
    let name = webhook(&t.wasmplugin)?.name;
    assert!(
        sum_samples(
            &text,
            envoy_harness::envoy::FILTER_REQUESTS_METRIC,
            &[("webhook", &name)]
        ) > 0,
        "no webhook_filter_requests_total{{webhook=\"{name}\"}} on :15090:\n{}",
        text.lines()
            .filter(|l| l.contains("webhook"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// What `BmhWebhookFilterNotCounting` (k8s/components/monitoring) compares, as the gateway
/// exposes it on the port the PodMonitor scrapes: the webhook listener's request counter
/// (kept by the gateway options' `proxyStatsMatcher`; the alert's selector read from the
/// shipped rule) and the filter's counters both move with a request, so the alert stays
/// quiet while the filter works (the wrong-digest case shows its condition holding).
fn gateway_exposes_the_alert_series(t: &mut Tier) -> Result<()> {
    let monitor = repo_file("k8s/components/monitoring/podmonitor.yaml");
    assert!(
        monitor.contains("regex: webhook_filter_.*|envoy_http_downstream_rq_total"),
        "the PodMonitor drops a series the alert reads"
    );
    let (listener, filter) = (listener_requests(t)?, filter_counted(t)?);
    let r = t.post_signed(SECRET, &t.event())?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    t.eventually("both counters moved", |t| {
        Ok(listener_requests(t)? > listener && filter_counted(t)? > filter)
    })
}

/// The gateway listener's prefix the shipped alert selects (`http_conn_manager_prefix`, Istio's
/// tag name).
fn alert_gateway_prefix() -> String {
    let rule = repo_file("k8s/components/monitoring/prometheusrule.yaml");
    let start = rule
        .find("alert: BmhWebhookFilterNotCounting")
        .expect("alert BmhWebhookFilterNotCounting");
    let key = "{http_conn_manager_prefix=\"";
    let at = start + rule[start..].find(key).expect("the alert's Istio selector") + key.len();
    rule[at..].split('"').next().unwrap_or_default().to_owned()
}

fn listener_requests(t: &Tier) -> Result<u64> {
    let prefix = alert_gateway_prefix();
    Ok(sum_samples(
        &t.prometheus()?,
        "envoy_http_downstream_rq_total",
        &[("http_conn_manager_prefix", &prefix)],
    ))
}

fn filter_counted(t: &Tier) -> Result<u64> {
    Ok(sum_samples(
        &t.prometheus()?,
        envoy_harness::envoy::FILTER_REQUESTS_METRIC,
        &[],
    ))
}

fn repo_file(path: &str) -> String {
    let p = kube_harness::repo_root().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The WasmPlugin edited live (`kubectl apply` of a smaller body cap): the next request is
/// judged by the new configuration, with the same Envoy (no restart, no pod rollout); then
/// back.
fn plugin_config_change_is_live(t: &mut Tier) -> Result<()> {
    let uptime = t.envoy_uptime()?;
    let body = t.event();
    let mut plugin = t.wasmplugin.clone();
    // Half the event (its length varies by a few bytes with the timestamps' precision).
    let cap = body.len() / 2;
    assert!(
        webhook(&plugin)?.max_body_bytes > body.len() as u64,
        "the shipped cap admits the event"
    );
    let hook = webhook_entry_mut(&mut plugin).expect("the /webhook webhook");
    hook["max_body_bytes"] = json!(cap);
    t.apply_wasmplugin(&plugin)?;
    t.eventually("the smaller body cap is in force (413)", |t| {
        Ok(t.post_signed(SECRET, &t.event())?.status == 413)
    })?;
    let before = t.upstream.requests().len();
    let r = t.post_signed(SECRET, &t.event())?;
    assert_rejected(&r, 413, "PayloadTooLarge");
    assert_eq!(
        t.upstream.requests().len(),
        before,
        "zero requests upstream"
    );

    let shipped = t.wasmplugin.clone();
    t.apply_wasmplugin(&shipped)?;
    t.eventually("the shipped cap is back (200)", |t| {
        Ok(t.post_signed(SECRET, &t.event())?.status == 200)
    })?;
    assert!(t.envoy_uptime()? >= uptime, "Envoy was restarted");
    Ok(())
}

/// A `sha256` that is not the image's manifest digest (here the module's own hash, the
/// mistake docs/deploy.md warns about): istio-agent refuses the module and installs its
/// deny-all filter, every request is 403 and nothing reaches the backend; the right digest
/// restores service without a restart.
fn wrong_digest_denies_everything(t: &mut Tier) -> Result<()> {
    let uptime = t.envoy_uptime()?;
    let module_hash = sha256_hex(&t.inputs.wasm);
    assert_ne!(module_hash, t.digest.trim_start_matches("sha256:"));
    let mut plugin = t.wasmplugin.clone();
    plugin["spec"]["sha256"] = json!(module_hash);
    t.apply_wasmplugin(&plugin)?;
    t.eventually("the deny-all filter is in force (403)", |t| {
        Ok(t.post_signed(SECRET, &t.event())?.status == 403)
    })?;
    let before = t.upstream.requests().len();
    let (listener, filter) = (listener_requests(t)?, filter_counted(t)?);
    let signed = t.post_signed(SECRET, &t.event())?;
    let unsigned = t.post_unsigned(&t.event())?;
    let health = http::get(GATEWAY, "/healthz")?;
    for r in [&signed, &unsigned, &health] {
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(String::from_utf8_lossy(&r.body), "RBAC: access denied");
    }
    assert_eq!(
        t.upstream.requests().len(),
        before,
        "zero requests upstream"
    );
    // BmhWebhookFilterNotCounting's condition: the listener counts them, no filter does.
    t.eventually("the listener counted the denied requests", |t| {
        Ok(listener_requests(t)? >= listener + 3)
    })?;
    assert_eq!(filter_counted(t)?, filter, "no filter ran");
    assert!(
        t.agent.log_text().contains("which does not match"),
        "the agent says why: {}",
        t.agent.tail(20)
    );

    let shipped = t.wasmplugin.clone();
    t.apply_wasmplugin(&shipped)?;
    t.eventually("the right digest serves again (200)", |t| {
        Ok(t.post_signed(SECRET, &t.event())?.status == 200)
    })?;
    assert_rejected(&t.post_unsigned(&t.event())?, 401, "MissingSignature");
    assert!(t.envoy_uptime()? >= uptime, "Envoy was restarted");
    Ok(())
}

/// A new image (a rebuild: same module, new manifest, new digest) rolled out by editing the
/// WasmPlugin's url and sha256: the agent pulls it and Envoy runs the module from the new
/// digest's file, still guarding, without a restart; then back.
fn new_image_digest_is_live(t: &mut Tier) -> Result<()> {
    let uptime = t.envoy_uptime()?;
    let crane = t.inputs.istio.join("crane");
    let out = Command::new(&crane)
        .args([
            "mutate",
            "--insecure",
            "--label",
            "org.opencontainers.image.version=tier-rebuild",
        ])
        .arg(format!("{}@{}", t.repository, t.digest))
        .arg("--tag")
        .arg(format!("{}:tier-rebuild", t.repository))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_ref = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let new_digest = new_ref
        .rsplit_once('@')
        .map(|(_, d)| d.to_owned())
        .expect("ref@digest");
    assert_ne!(new_digest, t.digest);
    assert!(new_ref.starts_with(REGISTRY), "{new_ref}");

    let mut plugin = t.wasmplugin.clone();
    plugin["spec"]["url"] = json!(format!("oci://{}@{new_digest}", t.repository));
    plugin["spec"]["sha256"] = json!(new_digest.trim_start_matches("sha256:"));
    t.apply_wasmplugin(&plugin)?;
    let new_file = format!("/{}.wasm", new_digest.trim_start_matches("sha256:"));
    t.eventually("Envoy runs the module of the new digest", |t| {
        Ok(local_file(t)?.is_some_and(|f| f.ends_with(&new_file)))
    })?;
    let file = local_file(t)?.unwrap_or_default();
    assert_eq!(std::fs::read(&file)?, t.inputs.wasm);
    assert_rejected(&t.post_unsigned(&t.event())?, 401, "MissingSignature");
    let before = t.upstream.requests().len();
    let r = t.post_signed(SECRET, &t.event())?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        t.upstream.requests()[before].header_values("x-webhook-verified"),
        ["true"]
    );

    let shipped = t.wasmplugin.clone();
    t.apply_wasmplugin(&shipped)?;
    let old_file = format!("/{}.wasm", t.digest.trim_start_matches("sha256:"));
    t.eventually("Envoy runs the shipped digest's module again", |t| {
        Ok(local_file(t)?.is_some_and(|f| f.ends_with(&old_file)))
    })?;
    assert!(t.envoy_uptime()? >= uptime, "Envoy was restarted");
    Ok(())
}

/// The local file Envoy's Wasm filter runs, if it has one.
fn local_file(t: &Tier) -> Result<Option<String>> {
    Ok(t.ecds_wasm()?
        .first()
        .and_then(|w| {
            w["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"].as_str()
        })
        .map(str::to_owned))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}
