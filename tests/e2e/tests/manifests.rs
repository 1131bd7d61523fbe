//! The deployment manifests, checked against the real kube-apiserver: each kustomize overlay is
//! rendered and applied with a server-side dry run (full schema validation, CEL rules, defaulting
//! and admission, nothing stored) on the real CRDs of Istio, the Gateway API and the Prometheus
//! Operator (tools/fetch-crds.sh); probes, rollout and scraping are checked on the rendered
//! objects; the copies of the filter configuration cannot drift.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kube_harness::{ApiServer, manifest::parse_documents, repo_root};
use serde_json::Value;
use support::{
    OVERLAYS, ThirdParty, container, containers, crds_dir, deployment, docs_of, env, find,
    install_crds, kinds, kustomize_build, kustomize_user_overlay, one, port_number, secret_refs,
};

/// The sidecar's admin port (ADMIN_ADDR): probes and /metrics.
const ADMIN_PORT: u64 = 9090;

/// What an operator relies on in every container: non-root, read-only root filesystem, no
/// privilege escalation, every capability dropped, a memory limit.
fn assert_hardened(deployment: &Value, skip: &[&str]) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    for c in containers(deployment) {
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

/// Renders `k8s/overlays/<overlay>` and dry-runs it in a fresh namespace on the real CRDs.
async fn dry_run(overlay: &str, apis: &[ThirdParty]) -> Vec<Value> {
    let server = ApiServer::shared().await.unwrap();
    install_crds(server, apis).await;
    let ns = server
        .create_namespace(&format!("manifests-{overlay}"))
        .await
        .unwrap();
    let yaml = kustomize_build(format!("k8s/overlays/{overlay}"));
    let docs = docs_of(&yaml);
    let applied = server
        .apply_yaml(&yaml, &ns, true)
        .await
        .unwrap_or_else(|e| panic!("dry run of the {overlay} overlay rejected: {e}"));
    assert_eq!(applied.len(), docs.len());
    docs
}

/// The objects every overlay ships, plus the overlay's own.
fn expected_kinds(extra: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    k.sort();
    k
}

#[tokio::test]
async fn envoy_overlay_passes_a_server_side_dry_run() {
    let docs = dry_run("envoy", &[]).await;
    assert_eq!(kinds(&docs), expected_kinds(&["ConfigMap"]));
    let deploy = deployment(&docs);
    assert_hardened(deploy, &[]);
    let envoy = container(deploy, "envoy");
    assert_eq!(envoy["ports"][0]["containerPort"], 5001);
    // The filter's counters: the `prometheus` listener of envoy.yaml, on the port the
    // PodMonitor scrapes by name (the name Istio gives its proxy's metrics port).
    assert_eq!(
        port_number(envoy, &serde_json::json!("http-envoy-prom")),
        Some(u64::from(envoy_harness::config::DEPLOYMENT_STATS_PORT))
    );
    // The sidecar stays on loopback: only Envoy (and so the filter) faces the network.
    let sidecar = container(deploy, "sidecar");
    assert_eq!(env(sidecar, "SIDECAR_ADDR"), Some("127.0.0.1:8080"));
}

#[tokio::test]
async fn istio_overlay_passes_a_server_side_dry_run_on_istios_own_crds() {
    let docs = dry_run("istio", &[ThirdParty::Istio]).await;
    assert_eq!(
        kinds(&docs),
        expected_kinds(&["EnvoyFilter", "EnvoyFilter", "WasmPlugin"])
    );
    // istio-proxy is a partial container that Istio's injector merges; it is not checked here.
    assert_hardened(deployment(&docs), &["istio-proxy"]);
    let plugin = one(&docs, "WasmPlugin");
    assert_plugin_is_fail_closed(plugin);
    assert_eq!(
        plugin["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "bmh-webhook"
    );
    assert_eq!(plugin["spec"]["match"][0]["ports"][0]["number"], 8080);

    let pod = &deployment(&docs)["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["sidecar.istio.io/inject"], "true");
    let annotations = &pod["metadata"]["annotations"];
    // Prometheus and the kubelet reach the admin port without the mesh (plain HTTP under
    // STRICT mTLS); everything else goes through the proxy and its filter.
    assert_eq!(
        annotations["traffic.sidecar.istio.io/excludeInboundPorts"],
        ADMIN_PORT.to_string()
    );
    let proxy_config = annotations["proxy.istio.io/config"].as_str().unwrap();
    assert!(proxy_config.contains("holdApplicationUntilProxyStarts: true"));
    assert!(proxy_config.contains("terminationDrainDuration: 10s"));
    assert_extra_stat_tags(proxy_config);

    // The zero-bytes arrangement: the buffer filter before the router on the inbound port.
    let buffer = find(&docs, "EnvoyFilter", "bmh-webhook-buffer");
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
    let edge = &find(&docs, "EnvoyFilter", "bmh-webhook-edge")["spec"]["configPatches"][0];
    assert_eq!(edge["applyTo"], "NETWORK_FILTER");
    assert_eq!(edge["match"]["context"], "SIDECAR_INBOUND");
    assert_eq!(edge["patch"]["operation"], "MERGE");
    assert_edge_settings(&edge["patch"]["value"]["typed_config"]);
}

/// A proxy configuration (`proxy.istio.io/config`) whose `extraStatTags` are the tags of the
/// filter's counters: Istio's bootstrap then has the stats_tags of `envoy/envoy.yaml`
/// (`(<tag>=\.=(.*?);\.;)`, tools/packaging/common/envoy_bootstrap.json in istio.io/istio).
fn assert_extra_stat_tags(proxy_config: &str) {
    let config = parse_documents(proxy_config).unwrap().remove(0);
    let tags: Vec<&str> = webhook_core::metrics::STATS_TAGS
        .iter()
        .map(|(tag, _)| *tag)
        .collect();
    assert_eq!(
        config["extraStatTags"],
        serde_json::json!(tags),
        "{proxy_config}"
    );
    for (tag, regex) in webhook_core::metrics::STATS_TAGS {
        assert_eq!(regex, format!(r"({tag}=\.=(.*?);\.;)"));
    }
}

/// The filter's plugin: authentication phase, never fail-open, no placeholder digest.
fn assert_plugin_is_fail_closed(plugin: &Value) {
    assert_eq!(plugin["spec"]["phase"], "AUTHN");
    // Consistent with the Envoy overlay's failure_policy: a VM that fails is reloaded, a module
    // that cannot be fetched denies everything. Never FAIL_OPEN.
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_RELOAD");
    let envoy = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    assert!(envoy.contains("failure_policy: FAIL_RELOAD"));
    // The checked-in manifests can pull nothing: out/deploy (make images) sets the digests.
    assert_eq!(
        plugin["spec"]["url"],
        "oci://registry.invalid/bmh-webhook/filter"
    );
    assert!(
        plugin["spec"].get("sha256").is_none(),
        "a placeholder sha256 in the checked-in WasmPlugin"
    );
}

fn assert_edge_settings(hcm: &Value) {
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

/// The ingress-gateway variant: the filter in a dedicated gateway (targetRefs), the secrets in
/// the gateway's proxy, the pods reachable on their webhook port from that gateway only.
#[tokio::test]
async fn istio_gateway_overlay_passes_a_server_side_dry_run_on_the_real_crds() {
    let docs = dry_run(
        "istio-gateway",
        &[ThirdParty::Istio, ThirdParty::GatewayApi],
    )
    .await;
    assert_eq!(
        kinds(&docs),
        expected_kinds(&[
            "ConfigMap",
            "EnvoyFilter",
            "Gateway",
            "HTTPRoute",
            "NetworkPolicy",
            "WasmPlugin"
        ])
    );
    assert_hardened(deployment(&docs), &[]);
    let plugin = one(&docs, "WasmPlugin");
    assert_plugin_is_fail_closed(plugin);
    assert!(plugin["spec"].get("selector").is_none());
    assert!(plugin["spec"].get("match").is_none());
    let gateway_ref = serde_json::json!([{
        "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "bmh-webhook"
    }]);
    assert_eq!(plugin["spec"]["targetRefs"], gateway_ref);

    let gateway = find(&docs, "Gateway", "bmh-webhook");
    assert_eq!(gateway["spec"]["gatewayClassName"], "istio");
    // istiod labels the gateway's pods with infrastructure.labels, or else with the Gateway's
    // own labels: neither may be selected by what is meant for the sidecar pods.
    let gateway_pods = &gateway["spec"]["infrastructure"]["labels"];
    assert!(gateway_pods.is_object(), "no infrastructure.labels");
    for (kind, selector) in [
        (
            "Service",
            &find(&docs, "Service", "bmh-webhook")["spec"]["selector"],
        ),
        (
            "PodDisruptionBudget",
            &one(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        ),
        (
            "NetworkPolicy",
            &one(&docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        ),
    ] {
        let selects_gateway = selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &gateway_pods[k] == v);
        assert!(!selects_gateway, "the {kind} selects the gateway's pods");
    }
    assert_eq!(gateway["spec"]["listeners"][0]["port"], 5001);
    // The gateway's proxies get the secrets the plugin reads (vmConfig.env valueFrom HOST).
    let options_name = gateway["spec"]["infrastructure"]["parametersRef"]["name"]
        .as_str()
        .unwrap();
    let options = find(&docs, "ConfigMap", options_name);
    let overlay = parse_documents(options["data"]["deployment"].as_str().unwrap())
        .unwrap()
        .remove(0);
    let proxy = &overlay["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(proxy["name"], "istio-proxy");
    assert_eq!(
        secret_refs(proxy),
        [
            (
                "bmh-webhook-secrets".to_string(),
                "WEBHOOK_SECRET".to_string()
            ),
            (
                "bmh-webhook-secrets".to_string(),
                "WEBHOOK_SECRET_PREVIOUS".to_string()
            )
        ]
    );
    assert!(overlay["spec"]["replicas"].as_u64().unwrap() >= 2);
    assert_extra_stat_tags(
        overlay["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"]
            .as_str()
            .unwrap(),
    );

    // The route leads to the Service, which leads to the sidecar's webhook port.
    let route = find(&docs, "HTTPRoute", "bmh-webhook");
    let backend = &route["spec"]["rules"][0]["backendRefs"][0];
    let service = find(&docs, "Service", backend["name"].as_str().unwrap());
    assert_eq!(service["spec"]["ports"][0]["port"], backend["port"]);
    let sidecar = container(deployment(&docs), "sidecar");
    assert_eq!(
        port_number(sidecar, &service["spec"]["ports"][0]["targetPort"]),
        Some(8080)
    );
    // Outside the mesh, only the gateway's pods reach that port.
    let pod = &deployment(&docs)["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"]["sidecar.istio.io/inject"],
        "false"
    );
    let policy = one(&docs, "NetworkPolicy");
    let webhook_rule = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| port_number(sidecar, &r["ports"][0]["port"]) == Some(8080))
        .expect("a rule for the webhook port");
    assert_eq!(
        webhook_rule["from"],
        serde_json::json!([{"podSelector": {"matchLabels": {
            "gateway.networking.k8s.io/gateway-name": "bmh-webhook"}}}])
    );
    // The zero-bytes and edge arrangement on the gateway's listener.
    let edge = find(&docs, "EnvoyFilter", "bmh-webhook-gateway-edge");
    assert_eq!(edge["spec"]["targetRefs"], gateway_ref);
    let patches = edge["spec"]["configPatches"].as_array().unwrap();
    assert!(patches.iter().all(
        |p| p["match"]["context"] == "GATEWAY" && p["match"]["listener"]["portNumber"] == 5001
    ));
    assert_eq!(
        patches[0]["patch"]["value"]["name"],
        "envoy.filters.http.buffer"
    );
    assert_edge_settings(&patches[1]["patch"]["value"]["typed_config"]);
}

/// Each container probes itself: its probes name one of its own ports, so the kubelet restarts
/// the container that is broken, never its neighbour. The sidecar's readiness does not depend
/// on the API server (a blip must not empty the Service: the sidecar answers 503 + Retry-After).
#[test]
fn every_container_probes_itself() {
    for (overlay, _) in OVERLAYS {
        let docs = docs_of(&kustomize_build(format!("k8s/overlays/{overlay}")));
        let deploy = deployment(&docs);
        for c in containers(deploy) {
            let name = c["name"].as_str().unwrap();
            if name == "istio-proxy" {
                continue; // Istio's injector owns the proxy's probes.
            }
            for probe in ["readinessProbe", "livenessProbe"] {
                let p = &c[probe];
                assert!(p.is_object(), "{overlay}/{name}: no {probe}");
                let port = p["httpGet"]["port"]
                    .as_str()
                    .or(p["tcpSocket"]["port"].as_str())
                    .unwrap_or_else(|| panic!("{overlay}/{name}: {probe} names no port"));
                assert!(
                    port_number(c, &Value::from(port)).is_some(),
                    "{overlay}/{name}: {probe} port {port} is not one of its own ports"
                );
            }
            assert!(
                c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64() >= Some(5),
                "{overlay}/{name}: no preStop drain"
            );
        }
        let sidecar = container(deploy, "sidecar");
        assert_eq!(env(sidecar, "ADMIN_ADDR"), Some("0.0.0.0:9090"));
        assert_eq!(
            port_number(sidecar, &sidecar["readinessProbe"]["httpGet"]["port"]),
            Some(ADMIN_PORT)
        );
        assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/healthz");
        // Liveness gives up later than readiness: a slow moment takes the pod out of the
        // Service before it restarts it.
        let threshold = |p: &str| {
            sidecar[p]["periodSeconds"].as_u64().unwrap()
                * sidecar[p]["failureThreshold"].as_u64().unwrap()
        };
        assert!(threshold("livenessProbe") > threshold("readinessProbe"));
        // The drain fits in the grace period: preStop + the sidecar's own 15 s drain.
        let grace = deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        let pre_stop = sidecar["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap();
        assert!(grace >= pre_stop + 15, "{overlay}: grace period {grace}s");
    }
}

/// Two replicas that are never both down by choice: a rollout surges instead of stopping one,
/// the PodDisruptionBudget lets one be evicted at a time, and they spread over nodes and zones.
#[test]
fn replicas_are_spread_and_protected_from_disruptions() {
    for (overlay, _) in OVERLAYS {
        let docs = docs_of(&kustomize_build(format!("k8s/overlays/{overlay}")));
        let deploy = deployment(&docs);
        let replicas = deploy["spec"]["replicas"].as_u64().unwrap();
        assert!(replicas >= 2);
        assert_eq!(
            deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            0
        );
        let labels = &deploy["spec"]["template"]["metadata"]["labels"];
        let pdb = one(&docs, "PodDisruptionBudget");
        let min = pdb["spec"]["minAvailable"].as_u64().unwrap();
        assert!(min >= 1 && min < replicas, "{overlay}: minAvailable {min}");
        for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "{overlay}: the PDB does not select the pods");
        }
        let spread = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
            .as_array()
            .unwrap();
        let keys: Vec<&str> = spread
            .iter()
            .map(|c| c["topologyKey"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        );
        for c in spread {
            for (k, v) in c["labelSelector"]["matchLabels"].as_object().unwrap() {
                assert_eq!(
                    &labels[k], v,
                    "{overlay}: a spread constraint selects no pod"
                );
            }
        }
    }
}

/// Prometheus reaches the sidecar's /metrics on the admin port, never through the public
/// Service: the Service's target is another port, and the admin port serves no /webhook.
#[test]
fn metrics_are_scrapable_but_not_through_the_public_service() {
    for (overlay, _) in OVERLAYS {
        let docs = docs_of(&kustomize_build(format!("k8s/overlays/{overlay}")));
        let deploy = deployment(&docs);
        let service = find(&docs, "Service", "bmh-webhook");
        let target = &service["spec"]["ports"][0]["targetPort"];
        let public: Vec<u64> = containers(deploy)
            .iter()
            .filter_map(|c| port_number(c, target))
            .collect();
        assert_eq!(public.len(), 1, "{overlay}: the Service targets one port");
        assert_ne!(
            public[0], ADMIN_PORT,
            "{overlay}: metrics through the Service"
        );
        let annotations = &deploy["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/port"], ADMIN_PORT.to_string());
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
    }
    // Plain Envoy routes nothing but the webhook and the health checks to the sidecar.
    let envoy = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    assert!(!envoy.contains("/metrics"));
}

/// A configuration change renames the generated ConfigMap, so the pod template changes and the
/// pods roll; the same holds for a Secret made by the user's secretGenerator.
#[tokio::test]
async fn config_and_secret_changes_roll_the_pods() {
    let server = ApiServer::shared().await.unwrap();
    install_crds(server, &[ThirdParty::Istio]).await;
    for overlay in ["envoy", "istio"] {
        let render = |log_level: &str, secret: &str| {
            let yaml = kustomize_user_overlay(
                &format!(
                    "resources: ['{{root}}/k8s/overlays/{overlay}']\n\
                     configMapGenerator:\n\
                     - name: bmh-webhook-config\n  behavior: merge\n  literals: [LOG_LEVEL={log_level}]\n\
                     secretGenerator:\n\
                     - name: bmh-webhook-secrets\n  literals: [WEBHOOK_SECRET={secret}]\n"
                ),
                &[],
            );
            let docs = docs_of(&yaml);
            (yaml, docs)
        };
        let (yaml, a) = render("INFO", &"a".repeat(64));
        let (_, b) = render("DEBUG", &"a".repeat(64));
        let (_, c) = render("INFO", &"b".repeat(64));
        let template = |docs: &[Value]| deployment(docs)["spec"]["template"].clone();
        assert_ne!(
            template(&a),
            template(&b),
            "{overlay}: a config change rolls nothing"
        );
        assert_ne!(
            template(&a),
            template(&c),
            "{overlay}: a secret change rolls nothing"
        );
        // Every reference follows the generated names.
        let config = docs_of(&yaml)
            .iter()
            .find(|d| {
                d["kind"] == "ConfigMap"
                    && d["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .starts_with("bmh-webhook-config-")
            })
            .map(|d| d["metadata"]["name"].clone())
            .unwrap();
        let sidecar = container(deployment(&a), "sidecar");
        assert_eq!(sidecar["envFrom"][0]["configMapRef"]["name"], config);
        let secret = one(&a, "Secret")["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(secret.starts_with("bmh-webhook-secrets-"));
        // (The optional operator Secret is the user's own, not generated: its name stays.)
        for (name, _) in secret_refs(deployment(&a))
            .into_iter()
            .filter(|(n, _)| n != "bmh-webhook-operator")
        {
            assert_eq!(
                name, secret,
                "{overlay}: a reference to the old Secret name"
            );
        }
        let ns = server
            .create_namespace(&format!("rollout-{overlay}"))
            .await
            .unwrap();
        server
            .apply_yaml(&yaml, &ns, true)
            .await
            .unwrap_or_else(|e| panic!("dry run of a user overlay on {overlay}: {e}"));
    }
}

/// The monitoring component (PodMonitor, PrometheusRule, Grafana dashboard) on the Prometheus
/// Operator's own CRDs, with each overlay; the PodMonitor scrapes ports the pods have.
#[tokio::test]
async fn monitoring_component_passes_a_dry_run_on_the_prometheus_operator_crds() {
    let server = ApiServer::shared().await.unwrap();
    install_crds(
        server,
        &[
            ThirdParty::Istio,
            ThirdParty::GatewayApi,
            ThirdParty::PrometheusOperator,
        ],
    )
    .await;
    for (overlay, _) in OVERLAYS {
        let yaml = kustomize_user_overlay(
            &format!(
                "resources: ['{{root}}/k8s/overlays/{overlay}']\n\
                 components: ['{{root}}/k8s/components/monitoring']\n"
            ),
            &[],
        );
        let docs = docs_of(&yaml);
        let ns = server
            .create_namespace(&format!("monitoring-{overlay}"))
            .await
            .unwrap();
        server
            .apply_yaml(&yaml, &ns, true)
            .await
            .unwrap_or_else(|e| panic!("dry run of {overlay} + monitoring rejected: {e}"));
        let monitor = find(&docs, "PodMonitor", "bmh-webhook");
        let sidecar = container(deployment(&docs), "sidecar");
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        assert_eq!(endpoint["path"], "/metrics");
        assert_eq!(
            port_number(sidecar, &endpoint["port"]),
            Some(ADMIN_PORT),
            "{overlay}: the PodMonitor scrapes no port of the sidecar"
        );
        if overlay == "envoy" {
            // The filter's counters, from the Envoy container's metrics listener.
            let filter = &monitor["spec"]["podMetricsEndpoints"][1];
            assert_eq!(filter["path"], "/stats/prometheus");
            assert_eq!(
                port_number(container(deployment(&docs), "envoy"), &filter["port"]),
                Some(u64::from(envoy_harness::config::DEPLOYMENT_STATS_PORT)),
                "the PodMonitor scrapes no port of Envoy"
            );
        }
        let rule = find(&docs, "PrometheusRule", "bmh-webhook");
        let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["alert"].as_str().unwrap())
            .collect();
        // The README's recommended alerts.
        for a in [
            "BmhWebhookInvalidSignatures",
            "BmhWebhookReservationFailed",
            "BmhWebhookNotificationsRetrying",
        ] {
            assert!(alerts.contains(&a), "{overlay}: no alert {a}");
        }
        let dashboard = find(&docs, "ConfigMap", "bmh-webhook-dashboard");
        assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
        let json: Value =
            serde_json::from_str(dashboard["data"]["bmh-webhook.json"].as_str().unwrap()).unwrap();
        assert_eq!(json["uid"], "bmh-webhook");
    }
}

#[tokio::test]
async fn bmh_crd_is_valid() {
    let server = ApiServer::shared().await.unwrap();
    server
        .apply_file("k8s/crd/baremetalhosts.metal3.io.yaml", "default", true)
        .await
        .unwrap_or_else(|e| panic!("dry run of the BMH CRD rejected: {e}"));
}

/// The Istio CRDs really are the module's: the WasmPlugin schema has the fields and rules the
/// overlays rely on (FAIL_RELOAD, targetRefs, imagePullSecret, the url CEL rule).
#[test]
fn istio_crds_are_the_real_ones() {
    let text = std::fs::read_to_string(crds_dir().join("istio/crd-all.gen.yaml")).unwrap();
    let docs = parse_documents(&text).unwrap();
    let wasm = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "wasmplugins.extensions.istio.io")
        .unwrap();
    let spec = &wasm["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(
        spec["properties"]["failStrategy"]["enum"]
            .as_array()
            .unwrap()
            .contains(&Value::from("FAIL_RELOAD"))
    );
    for field in ["targetRefs", "imagePullSecret", "sha256", "url", "vmConfig"] {
        assert!(spec["properties"][field].is_object(), "no {field}");
    }
    assert!(
        spec["properties"]["url"]["x-kubernetes-validations"].is_array(),
        "the url CEL rule"
    );
    assert!(docs.len() > 10, "crd-all.gen.yaml has every Istio CRD");
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
    let yaml = std::fs::read_to_string(
        repo_root().join("k8s/components/istio-wasmplugin/wasmplugin.yaml"),
    )
    .unwrap();
    let plugin = &parse_documents(&yaml).unwrap()[0];
    let istio = &plugin["spec"]["pluginConfig"];
    let envoy: Value = serde_json::from_str(envoy_harness::config::DEFAULT_PLUGIN_CONFIG).unwrap();
    assert_eq!(istio, &envoy);

    let env = |name: &str| (name == "WEBHOOK_SECRET").then(|| "0123456789abcdef".repeat(2));
    webhook_core::config::CompiledConfig::from_json(istio.to_string().as_bytes(), env)
        .unwrap_or_else(|e| panic!("the filter refuses the Istio pluginConfig: {e}"));
}

/// No overlay ships a secret value: applying (or re-applying) the manifests must never create
/// or overwrite the Secret the operator made (README, Deploying: `kubectl create secret`). The
/// pods read it by the one name the README documents.
#[test]
fn no_overlay_ships_a_secret_and_all_read_the_documented_one() {
    for (overlay, _) in OVERLAYS {
        let yaml = kustomize_build(format!("k8s/overlays/{overlay}"));
        let docs = docs_of(&yaml);
        assert!(
            !docs.iter().any(|d| d["kind"] == "Secret"),
            "{overlay} ships a Secret"
        );
        assert!(
            !yaml.contains("change-me"),
            "{overlay} ships a placeholder secret"
        );
        let mut refs = Vec::new();
        for d in &docs {
            refs.extend(secret_refs(d));
        }
        // The gateway's proxy reads them through the deployment options (a YAML string).
        for d in docs.iter().filter(|d| d["kind"] == "ConfigMap") {
            if let Some(overlay) = d["data"]["deployment"].as_str() {
                refs.extend(secret_refs(&parse_documents(overlay).unwrap()[0]));
            }
        }
        assert!(!refs.is_empty(), "{overlay} reads no secret");
        for (name, key) in refs {
            let documented = match name.as_str() {
                "bmh-webhook-secrets" => {
                    key == "WEBHOOK_SECRET" || key == "WEBHOOK_SECRET_PREVIOUS"
                }
                // The optional operator account's keys (docs/sidecar.md).
                "bmh-webhook-operator" => key == "authorized_keys",
                _ => false,
            };
            assert!(documented, "{overlay}: undocumented secret {name}/{key}");
        }
    }
}

/// The checked-in manifests name images that can never be pulled; only out/deploy (make
/// images) gives them registry and digest, so nothing runs an image nobody built.
#[test]
fn checked_in_overlays_reference_no_pullable_image() {
    for (overlay, _) in OVERLAYS {
        let docs = docs_of(&kustomize_build(format!("k8s/overlays/{overlay}")));
        for c in containers(deployment(&docs)) {
            let image = c["image"].as_str().unwrap();
            assert!(
                image == "auto" || image.starts_with("registry.invalid/bmh-webhook/"),
                "{overlay}: {image}"
            );
        }
    }
}
