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
        "headers_with_underscores_action: DROP_HEADER",
    ] {
        assert!(y.contains(needle), "missing {needle:?}");
    }
    // The buffer filter sits between the wasm filter and the router.
    let (w, b, r) = (
        y.find("filters.http.wasm").unwrap(),
        y.find("name: envoy.filters.http.buffer").unwrap(),
        y.find("name: envoy.filters.http.router").unwrap(),
    );
    assert!(w < b && b < r);
}
