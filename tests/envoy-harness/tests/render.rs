//! The committed deployment config is exactly what the renderer prints.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[test]
fn envoy_yaml_matches_the_renderer() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../envoy/envoy.yaml"
    ))
    .unwrap();
    let rendered = envoy_harness::EnvoyConfig::deployment().render();
    assert!(
        committed == rendered,
        "envoy/envoy.yaml drifted from the renderer; regenerate it with\n  \
         cargo run -q -p envoy-harness --bin render-envoy-config > envoy/envoy.yaml"
    );
}

#[test]
fn deployment_config_holds_the_contract() {
    let y = envoy_harness::EnvoyConfig::deployment().render();
    for needle in [
        "address: 0.0.0.0, port_value: 5001",
        "address: 127.0.0.1, port_value: 9901",
        "address: 127.0.0.1, port_value: 8080",
        "filename: '/etc/envoy/webhook_filter.wasm'",
        "host_env_keys: ['WEBHOOK_SECRET', 'WEBHOOK_SECRET_PREVIOUS']",
        "envoy.filters.http.buffer",
        "path: /healthz",
        "path: /readyz",
        // Edge settings (tests/edge.rs checks their effect with shorter timeouts).
        "use_remote_address: true",
        "xff_num_trusted_hops: 0",
        "request_headers_timeout: 10s",
        "request_timeout: 30s",
        "stream_idle_timeout: 60s",
        "idle_timeout: 60s",
        "max_request_headers_kb: 16",
        "headers_with_underscores_action: DROP_HEADER",
        "max_concurrent_streams: 100",
        "envoy.resource_monitors.fixed_heap",
        "max_active_downstream_connections: 1024",
        "envoy.overload_actions.stop_accepting_requests",
    ] {
        assert!(y.contains(needle), "missing {needle:?}");
    }
    // On the listener and on the sidecar cluster.
    assert_eq!(
        y.matches("per_connection_buffer_limit_bytes: 32768")
            .count(),
        2
    );
    // No replay window in the deployment: an END at any age, a START until its reservation ends.
    assert!(!y.contains("replay_window_seconds"));
    // The buffer filter sits between the wasm filter and the router.
    let (w, b, r) = (
        y.find("filters.http.wasm").unwrap(),
        y.find("name: envoy.filters.http.buffer").unwrap(),
        y.find("name: envoy.filters.http.router").unwrap(),
    );
    assert!(w < b && b < r);
}

#[test]
fn stats_tags_are_the_filters() {
    assert_eq!(
        envoy_harness::config::STATS_TAGS,
        webhook_core::metrics::STATS_TAGS
    );
    assert_eq!(
        envoy_harness::envoy::FILTER_REQUESTS_METRIC,
        webhook_core::metrics::REQUESTS_METRIC
    );
    let y = envoy_harness::EnvoyConfig::deployment().render();
    assert!(
        y.contains("  - tag_name: webhook\n    regex: '(webhook=\\.=(.*?);\\.;)'"),
        "{y}"
    );
}
