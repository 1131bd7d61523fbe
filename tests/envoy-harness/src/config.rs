//! The Envoy configuration: one listener with the webhook routes, the wasm filter, the buffer
//! filter that keeps unauthenticated bytes from the upstream, and the `sidecar` cluster.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Default plugin configuration of the deployment: the reservation webhook on `/webhook`,
/// current and previous secret from the proxy environment.
pub const DEFAULT_PLUGIN_CONFIG: &str = r#"{"webhooks":[{"name":"reservations","path":"/webhook","methods":["POST"],"scheme":{"type":"hmac_sha256_hex","header":"x-webhook-signature","prefix":"sha256="},"secrets":[{"env":"WEBHOOK_SECRET","id":"current"},{"env":"WEBHOOK_SECRET_PREVIOUS","id":"previous","optional":true}],"max_body_bytes":65536,"schema":"reservation_event","max_clock_skew_seconds":300}],"unmatched":"pass"}"#;

/// Largest body the buffer filter holds (must be at least every webhook's `max_body_bytes`;
/// the filter refuses larger caps).
pub const BUFFER_MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// Adds `x-webhook-secret-id` from the filter state the wasm filter sets when a signature
/// matches (filters cannot change request headers after the headers callback; the router adds
/// route headers when it finally gets the request, after the verdict).
const SECRET_ID_HEADER_TO_ADD: &str = r#"
                request_headers_to_add:
                - header:
                    key: x-webhook-secret-id
                    value: "%FILTER_STATE(wasm.webhook_secret_id:PLAIN)%"
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD"#;

/// Everything that varies between the deployment config and a test's.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// Listener bind address (`0.0.0.0` in a pod, `127.0.0.1` in tests).
    pub listener_address: String,
    /// Listener port (5001, the replaced service's port, in the deployment).
    pub listener_port: u16,
    /// Admin port, always bound on 127.0.0.1.
    pub admin_port: u16,
    /// The `sidecar` cluster's single endpoint.
    pub upstream: SocketAddr,
    /// The filter artifact; `None` renders Envoy without the filter (benchmark baseline).
    pub wasm_path: Option<PathBuf>,
    /// The plugin configuration JSON (see `docs/filter.md`).
    pub plugin_config: String,
    /// Proxy environment variables exposed to the VM (`host_env_keys`).
    pub host_env_keys: Vec<String>,
    /// Put `envoy.filters.http.buffer` after the wasm filter (the zero-bytes arrangement).
    /// Only benchmarks turn it off, to measure its cost.
    pub buffer_after_filter: bool,
    /// More exact paths routed to the `sidecar` cluster like `/webhook` (other webhooks guarded
    /// by the same filter instance). Empty in the deployment.
    pub extra_paths: Vec<String>,
}

impl EnvoyConfig {
    /// The deployment configuration committed as `envoy/envoy.yaml`.
    pub fn deployment() -> Self {
        EnvoyConfig {
            listener_address: "0.0.0.0".into(),
            listener_port: 5001,
            admin_port: 9901,
            upstream: SocketAddr::from(([127, 0, 0, 1], 8080)),
            wasm_path: Some(PathBuf::from("/etc/envoy/webhook_filter.wasm")),
            plugin_config: DEFAULT_PLUGIN_CONFIG.into(),
            host_env_keys: vec!["WEBHOOK_SECRET".into(), "WEBHOOK_SECRET_PREVIOUS".into()],
            buffer_after_filter: true,
            extra_paths: Vec::new(),
        }
    }

    /// A test configuration: loopback listener and the given ports, upstream, filter and
    /// plugin configuration.
    pub fn for_test(
        listener_port: u16,
        admin_port: u16,
        upstream: SocketAddr,
        wasm_path: Option<PathBuf>,
        plugin_config: &str,
    ) -> Self {
        EnvoyConfig {
            listener_address: "127.0.0.1".into(),
            listener_port,
            admin_port,
            upstream,
            wasm_path,
            plugin_config: plugin_config.into(),
            ..EnvoyConfig::deployment()
        }
    }

    /// Renders the YAML bootstrap.
    pub fn render(&self) -> String {
        let mut filters = String::new();
        if let Some(wasm) = &self.wasm_path {
            let keys = self
                .host_env_keys
                .iter()
                .map(|k| yaml_quote(k))
                .collect::<Vec<_>>()
                .join(", ");
            filters.push_str(&format!(
                r#"          # The webhook filter: signature, body cap, schema, replay window (docs/filter.md).
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: webhook_filter
                root_id: webhook_filter
                # A VM that fails answers 503 (never forwards) and is reloaded.
                failure_policy: FAIL_RELOAD
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {config}
                vm_config:
                  vm_id: webhook_filter
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local:
                      filename: {wasm}
                  environment_variables:
                    host_env_keys: [{keys}]
"#,
                config = yaml_quote(&self.plugin_config),
                wasm = yaml_quote(&wasm.display().to_string()),
            ));
            if self.buffer_after_filter {
                filters.push_str(&format!(
                    r#"          # Holds the request headers back from the router until the wasm filter has
          # accepted the whole body: a rejected request reaches the sidecar with zero bytes.
          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: {BUFFER_MAX_REQUEST_BYTES}
"#
                ));
            }
        }
        let no_buffer = if self.wasm_path.is_some() && self.buffer_after_filter {
            r#"
                typed_per_filter_config:
                  envoy.filters.http.buffer:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
                    disabled: true"#
        } else {
            ""
        };
        format!(
            r#"# Envoy in front of the bmh sidecar. Rendered by `cargo run -p envoy-harness --bin
# render-envoy-config`; a test fails if this file drifts from the renderer, so edit the
# renderer (tests/envoy-harness/src/config.rs), not this file.
# Secrets: WEBHOOK_SECRET (and WEBHOOK_SECRET_PREVIOUS during a rotation) in Envoy's environment.
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}
static_resources:
  listeners:
  - name: webhook
    address:
      socket_address: {{ address: {laddr}, port_value: {lport} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: webhook
          # One canonical path, so the filter's exact path match cannot be sidestepped.
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          common_http_protocol_options:
            # `x_webhook_verified` is `X-Webhook-Verified` to upstreams that treat `_` and `-`
            # alike: such header names never leave Envoy (dropped, the request is served).
            headers_with_underscores_action: DROP_HEADER
          route_config:
            name: webhook
            virtual_hosts:
            - name: sidecar
              domains: ["*"]
              routes:
              - match: {{ path: /webhook }}
                route: {{ cluster: sidecar, timeout: 30s }}{secret_id}
{extra}              - match: {{ path: /healthz }}
                route: {{ cluster: sidecar, timeout: 5s }}{no_buffer}
              - match: {{ path: /readyz }}
                route: {{ cluster: sidecar, timeout: 5s }}{no_buffer}
              - match: {{ prefix: / }}
                direct_response:
                  status: 404
                  body: {{ inline_string: '{{"detail":"not found","error_type":"NotFound"}}' }}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: sidecar
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: sidecar
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {uaddr}, port_value: {uport} }}
"#,
            admin = self.admin_port,
            secret_id = if self.wasm_path.is_some() {
                SECRET_ID_HEADER_TO_ADD
            } else {
                ""
            },
            extra = self
                .extra_paths
                .iter()
                .map(|p| format!(
                    "              - match: {{ path: {} }}\n                route: {{ cluster: sidecar, timeout: 30s }}{}\n",
                    yaml_quote(p),
                    if self.wasm_path.is_some() { SECRET_ID_HEADER_TO_ADD } else { "" }
                ))
                .collect::<String>(),
            laddr = self.listener_address,
            lport = self.listener_port,
            uaddr = self.upstream.ip(),
            uport = self.upstream.port(),
        )
    }
}

/// A YAML single-quoted scalar (only `'` needs escaping, as `''`).
fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
