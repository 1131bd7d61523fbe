//! The Envoy configuration: one listener with the webhook routes, the wasm filter, the buffer
//! filter that keeps unauthenticated bytes from the upstream, and the `sidecar` cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default plugin configuration of the deployment: the reservation webhook on `/webhook`,
/// current and previous secret from the proxy environment.
pub const DEFAULT_PLUGIN_CONFIG: &str =
    r#"{"webhooks":[{"preset":"reservation_system"}],"unmatched":"pass"}"#;

/// Largest body the buffer filter holds (must be at least every webhook's `max_body_bytes`;
/// the filter refuses larger caps).
pub const BUFFER_MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// Envoy stats tag extraction for the filter's counters: their names carry the labels in
/// Istio's encoding (`webhook=.=<name>;.;outcome=.=<outcome>;.;webhook_filter_requests_total`),
/// and these regexes turn them into the labels of `webhook_filter_requests_total{webhook,
/// outcome}` (`webhook_core::metrics::STATS_TAGS`; a test checks they agree). The first group is
/// cut out of the name, the second is the value. Istio generates the same regexes from
/// `extraStatTags: [webhook, outcome]`.
pub const STATS_TAGS: [(&str, &str); 2] = [
    ("webhook", r"(webhook=\.=(.*?);\.;)"),
    ("outcome", r"(outcome=\.=(.*?);\.;)"),
];

/// Adds `x-webhook-secret-id` from the filter state the wasm filter sets when a signature
/// matches (filters cannot change request headers after the headers callback; the router adds
/// route headers when it finally gets the request, after the verdict).
const SECRET_ID_HEADER_TO_ADD: &str = r#"
                request_headers_to_add:
                - header:
                    key: x-webhook-secret-id
                    value: "%FILTER_STATE(wasm.webhook_secret_id:PLAIN)%"
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD"#;

/// Envoy's edge settings (its "Configuring Envoy as an edge proxy" best practices), as
/// parameters so a test can shorten the timeouts and still render the deployment's layout.
/// `docs/filter.md` ("Envoy at the edge") explains each value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLimits {
    /// From the first byte of a request's headers to the last (`request_headers_timeout`):
    /// a client dribbling its headers is answered 408 and disconnected.
    pub request_headers_timeout: Duration,
    /// From the first byte of a request to its last (`request_timeout`): a body that never
    /// finishes, however slowly it trickles, is answered 408 and disconnected.
    pub request_timeout: Duration,
    /// No byte either way for this long ends a stream (`stream_idle_timeout`). Above the
    /// routes' 30 s timeout, so a slow sidecar answer is the route's 504, not this.
    pub stream_idle_timeout: Duration,
    /// A connection without any stream for this long is closed (`common_http_protocol_options.
    /// idle_timeout`): covers a client that connects and never sends a byte.
    pub idle_timeout: Duration,
    /// Largest request header block (`max_request_headers_kb`); larger gets 431.
    pub max_request_headers_kb: u32,
    /// Read/write buffer of each downstream connection, and each upstream one
    /// (`per_connection_buffer_limit_bytes`). Bodies are held by the buffer filter up to
    /// [`BUFFER_MAX_REQUEST_BYTES`], which raises the limit for its own stream.
    pub per_connection_buffer_limit_bytes: u32,
    /// Downstream connections accepted at once across all listeners (overload manager
    /// `global_downstream_max_connections`); more are closed at accept.
    pub max_downstream_connections: u64,
    /// Heap the overload manager measures against (`fixed_heap`): at 95 % Envoy shrinks its
    /// heap, at 98 % it stops accepting requests (503). Below the container's memory limit.
    pub max_heap_size_bytes: u64,
    /// Proxies in front of Envoy whose `x-forwarded-for` entries are trusted
    /// (`xff_num_trusted_hops`). 0: Envoy is the edge, the peer address is the client.
    pub xff_num_trusted_hops: u32,
}

impl EdgeLimits {
    /// The deployment's values (`envoy/envoy.yaml`).
    pub fn deployment() -> Self {
        EdgeLimits {
            request_headers_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            stream_idle_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_request_headers_kb: 16,
            per_connection_buffer_limit_bytes: 32 * 1024,
            max_downstream_connections: 1024,
            max_heap_size_bytes: 192 * 1024 * 1024,
            xff_num_trusted_hops: 0,
        }
    }
}

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
    /// Timeouts and limits of the edge (see [`EdgeLimits`]).
    pub edge: EdgeLimits,
    /// Envoy's log level on the command line (`-l`): `info` by default; `trace` or `debug`
    /// for the tests that search every log line (not part of the rendered YAML).
    pub log_level: String,
    /// Per-component levels on the command line (`--component-log-level`, e.g.
    /// `wasm:trace,http:trace`); empty: none.
    pub component_log_level: String,
    /// Without the filter (`wasm_path` `None`), still render the buffer filter: benchmarks
    /// price it alone. Off in the deployment and the tests.
    pub buffer_without_filter: bool,
    /// A listener on `listener_address` at this port that serves only the admin's
    /// `/stats/prometheus` (the filter's counters), so Prometheus can scrape the pod while the
    /// admin interface itself stays on loopback. `None`: no such listener (the tests' default).
    pub stats_port: Option<u16>,
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
            edge: EdgeLimits::deployment(),
            log_level: "info".into(),
            component_log_level: String::new(),
            buffer_without_filter: false,
            stats_port: Some(DEPLOYMENT_STATS_PORT),
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
            stats_port: None,
            ..EnvoyConfig::deployment()
        }
    }

    /// Whether `envoy.filters.http.buffer` sits before the router: after the wasm filter
    /// (`buffer_after_filter`), or alone for a benchmark (`buffer_without_filter`).
    fn has_buffer_filter(&self) -> bool {
        match self.wasm_path {
            Some(_) => self.buffer_after_filter,
            None => self.buffer_without_filter,
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
                r#"          # The webhook filter: signature, body cap, schema, replay rule (docs/filter.md).
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
        }
        if self.has_buffer_filter() {
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
        let (stats_listener, stats_cluster) = match self.stats_port {
            Some(port) => (
                stats_listener(&self.listener_address, port),
                admin_cluster(self.admin_port),
            ),
            None => (String::new(), String::new()),
        };
        let no_buffer = if self.has_buffer_filter() {
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
# Edge settings follow Envoy's "Configuring Envoy as an edge proxy"; docs/filter.md ("Envoy at
# the edge") explains each value.
# The filter's counters as one family with labels:
# webhook_filter_requests_total{{webhook="...",outcome="..."}} (docs/filter.md, "Metrics").
stats_config:
  stats_tags:{stats_tags}
overload_manager:
  refresh_interval: 0.25s
  resource_monitors:
  - name: envoy.resource_monitors.fixed_heap
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
      max_heap_size_bytes: {max_heap}
  # Connections beyond this are closed at accept, on every listener.
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: {max_cx}
  actions:
  - name: envoy.overload_actions.shrink_heap
    triggers:
    - name: envoy.resource_monitors.fixed_heap
      threshold: {{ value: 0.95 }}
  - name: envoy.overload_actions.stop_accepting_requests
    triggers:
    - name: envoy.resource_monitors.fixed_heap
      threshold: {{ value: 0.98 }}
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}
static_resources:
  listeners:
  - name: webhook
    address:
      socket_address: {{ address: {laddr}, port_value: {lport} }}
    per_connection_buffer_limit_bytes: {buffer_limit}
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
          # The client is the peer of the connection, not what its headers claim.
          use_remote_address: true
          xff_num_trusted_hops: {xff_hops}
          # Slow clients: headers dribbled, bodies that never finish, silent connections.
          request_headers_timeout: {headers_timeout}
          request_timeout: {request_timeout}
          stream_idle_timeout: {stream_idle}
          max_request_headers_kb: {headers_kb}
          common_http_protocol_options:
            idle_timeout: {idle}
            # `x_webhook_verified` is `X-Webhook-Verified` to upstreams that treat `_` and `-`
            # alike: such header names never leave Envoy (dropped, the request is served).
            headers_with_underscores_action: DROP_HEADER
          http2_protocol_options:
            max_concurrent_streams: 100
            initial_stream_window_size: 65536
            initial_connection_window_size: 1048576
          # Envoy's own 408 and 431 in the project's error shape (the filter never uses them).
          local_reply_config:
            mappers:{local_replies}
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
{stats_listener}  clusters:
  - name: sidecar
    type: STATIC
    connect_timeout: 1s
    per_connection_buffer_limit_bytes: {buffer_limit}
    load_assignment:
      cluster_name: sidecar
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {uaddr}, port_value: {uport} }}
{stats_cluster}"#,
            admin = self.admin_port,
            stats_tags = STATS_TAGS
                .iter()
                .map(|(tag, regex)| format!("\n  - tag_name: {tag}\n    regex: {}", yaml_quote(regex)))
                .collect::<String>(),
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
            max_heap = self.edge.max_heap_size_bytes,
            max_cx = self.edge.max_downstream_connections,
            buffer_limit = self.edge.per_connection_buffer_limit_bytes,
            xff_hops = self.edge.xff_num_trusted_hops,
            headers_timeout = duration(self.edge.request_headers_timeout),
            request_timeout = duration(self.edge.request_timeout),
            stream_idle = duration(self.edge.stream_idle_timeout),
            idle = duration(self.edge.idle_timeout),
            headers_kb = self.edge.max_request_headers_kb,
            local_replies = [
                (408, "RequestTimeout"),
                (431, "RequestHeaderFieldsTooLarge")
            ]
            .iter()
            .map(|(status, error_type)| json_local_reply(*status, error_type))
            .collect::<String>(),
            laddr = self.listener_address,
            lport = self.listener_port,
            uaddr = self.upstream.ip(),
            uport = self.upstream.port(),
        )
    }
}

/// The benchmarks' stand-in upstream: an Envoy on loopback `port` that answers every request
/// 200 `{"status":"accepted"}` itself (`direct_response`), its admin on loopback `admin_port`
/// counting what it received. The cheapest upstream there is, so a figure is the proxy in front.
pub fn stub_upstream(port: u16, admin_port: u16) -> String {
    format!(
        r#"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }} }}
static_resources:
  listeners:
  - address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                direct_response: {{ status: 200, body: {{ inline_string: '{{"status":"accepted"}}' }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

/// The port of the deployment's metrics listener (the pod's `http-envoy-prom`, the name Istio
/// gives its proxy's metrics port, so one PodMonitor endpoint covers both overlays).
pub const DEPLOYMENT_STATS_PORT: u16 = 9902;

/// The `prometheus` listener: `GET /stats/prometheus` goes to the admin interface through the
/// `envoy_admin` cluster; every other path is a 404, so nothing else of the admin (config
/// dump, `/quitquitquit`, log levels) is reachable from the pod network.
fn stats_listener(address: &str, port: u16) -> String {
    format!(
        r#"  # Prometheus scrapes the filter's counters here; the admin itself stays on loopback.
  - name: prometheus
    address:
      socket_address: {{ address: {address}, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: prometheus
          normalize_path: true
          merge_slashes: true
          request_headers_timeout: 5s
          stream_idle_timeout: 10s
          route_config:
            name: prometheus
            virtual_hosts:
            - name: admin
              domains: ["*"]
              routes:
              - match: {{ path: /stats/prometheus, headers: [{{ name: ":method", string_match: {{ exact: GET }} }}] }}
                route: {{ cluster: envoy_admin, timeout: 5s }}
              - match: {{ prefix: / }}
                direct_response:
                  status: 404
                  body: {{ inline_string: '{{"detail":"not found","error_type":"NotFound"}}' }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

/// The cluster behind the `prometheus` listener: Envoy's own admin interface on loopback.
fn admin_cluster(admin_port: u16) -> String {
    format!(
        r#"  - name: envoy_admin
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: envoy_admin
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
"#
    )
}

/// A protobuf `Duration` in YAML: `10s`, or `1.5s` with milliseconds.
fn duration(d: Duration) -> String {
    match d.subsec_millis() {
        0 => format!("{}s", d.as_secs()),
        ms => format!("{}.{ms:03}s", d.as_secs()),
    }
}

/// A `local_reply_config` mapper: Envoy's own reply with `status` as
/// `{"detail", "error_type", "timestamp"}` (`detail` is Envoy's text, `timestamp` the request's
/// start in UTC).
fn json_local_reply(status: u16, error_type: &str) -> String {
    format!(
        r#"
            - filter:
                status_code_filter:
                  comparison: {{ op: EQ, value: {{ default_value: {status}, runtime_key: webhook_local_reply_{status} }} }}
              body_format_override:
                json_format:
                  detail: "%LOCAL_REPLY_BODY%"
                  error_type: {error_type}
                  timestamp: "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%"
                content_type: application/json"#
    )
}

/// A YAML single-quoted scalar (only `'` needs escaping, as `''`).
fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
