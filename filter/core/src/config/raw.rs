//! The plugin configuration as written: the serde types of the JSON document, with their
//! defaults. Nothing here is checked beyond its shape (`deny_unknown_fields`); the rules live
//! in [`super`], which compiles this into a [`super::CompiledConfig`].

use serde::Deserialize;

/// Default body cap: the sample event is 2 KB; 64 KiB leaves room for ~100 resources.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024;
/// Default replay-cache lifetime of a delivery id: one day.
pub const DEFAULT_REPLAY_TTL_SECONDS: u64 = 86_400;
/// Default number of delivery ids remembered per webhook.
pub const DEFAULT_REPLAY_MAX_ENTRIES: usize = 1024;

/// The whole plugin configuration, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Guarded webhooks, matched by exact path (query string ignored).
    pub webhooks: Vec<WebhookConfig>,
    /// What to do with a request whose path no webhook guards.
    #[serde(default)]
    pub unmatched: Unmatched,
}

/// Policy for paths no webhook guards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Forward untouched (health checks, other routes). Owned headers are still stripped.
    #[default]
    Pass,
    /// Answer 404 with a JSON error.
    Reject,
}

/// One guarded webhook, as written. Every field is optional here: a `preset` gives a known
/// sender's whole configuration and any field written beside it overrides that field; without
/// a preset `name` and `path` are required and the rest has the defaults documented per field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A known sender's configuration ([`Preset`]).
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Name used in logs, counters and the `x-webhook-name` header.
    #[serde(default)]
    pub name: Option<String>,
    /// Exact request path, e.g. `/webhook`.
    #[serde(default)]
    pub path: Option<String>,
    /// Accepted methods; others get 405 with `allow`. Default `["POST"]`.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Signature scheme. Default `reservation_system` with its defaults.
    #[serde(default)]
    pub scheme: Option<SchemeConfig>,
    /// Active secrets, tried in order; several at once during a rotation. Default none.
    #[serde(default)]
    pub secrets: Option<Vec<SecretSource>>,
    /// Shortest secret accepted, in bytes of HMAC key. Default 32 (24 for
    /// `standard_webhooks`); a shorter secret, optional or not, refuses the configuration.
    #[serde(default)]
    pub min_secret_bytes: Option<usize>,
    /// Development switch: forward without checking any signature. Default off.
    #[serde(default)]
    pub allow_unsigned: Option<bool>,
    /// Body cap in bytes (413 above it). Default 64 KiB.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Body schema to validate. Default `reservation_event`.
    #[serde(default)]
    pub schema: Option<Schema>,
    /// Maximum age of an `EVENT_START`'s body `timestamp`; 0 (the default) turns it off.
    /// Only with `schema: "reservation_event"`.
    #[serde(default)]
    pub replay_window_seconds: Option<u64>,
    /// How far in the future the body `timestamp` may be, and how long after its last
    /// `eventEnd` an `EVENT_START` is still accepted. Only with `schema: "reservation_event"`.
    #[serde(default)]
    pub max_clock_skew_seconds: Option<u64>,
    /// Remember delivery ids and answer a repeated one (needs a scheme with a delivery id).
    #[serde(default)]
    pub replay_cache: Option<ReplayCacheConfig>,
}

/// A known sender's whole webhook configuration, named in `preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// The Politecnico di Torino reservation system (reservation-be and
    /// reservation-event-processor) on `/webhook`: [`WebhookConfig::reservation_system`].
    ReservationSystem,
}

impl Preset {
    /// The configuration the preset stands for.
    pub fn config(self) -> WebhookConfig {
        match self {
            Preset::ReservationSystem => WebhookConfig::reservation_system(),
        }
    }
}

/// The environment variable of the reservation system's current secret.
pub const RESERVATION_SECRET_ENV: &str = "WEBHOOK_SECRET";
/// The environment variable of its previous secret during a rotation (optional).
pub const RESERVATION_PREVIOUS_SECRET_ENV: &str = "WEBHOOK_SECRET_PREVIOUS";

impl WebhookConfig {
    /// The reservation system's webhook, as the filter's shipped configuration, the Istio
    /// `WasmPlugin`, the Envoy overlay and the sidecar's own check use it: `POST /webhook`,
    /// scheme `reservation_system` (Base64 or `sha256=<hex>` in `X-Webhook-Signature`), the
    /// secrets `WEBHOOK_SECRET` (id `current`) and `WEBHOOK_SECRET_PREVIOUS` (id `previous`,
    /// optional), a 64 KiB cap, `schema: reservation_event`.
    pub fn reservation_system() -> Self {
        WebhookConfig {
            preset: None,
            name: Some("reservations".to_owned()),
            path: Some("/webhook".to_owned()),
            methods: Some(default_methods()),
            scheme: Some(SchemeConfig::default()),
            secrets: Some(vec![
                SecretSource {
                    env: RESERVATION_SECRET_ENV.to_owned(),
                    optional: false,
                    id: Some("current".to_owned()),
                },
                SecretSource {
                    env: RESERVATION_PREVIOUS_SECRET_ENV.to_owned(),
                    optional: true,
                    id: Some("previous".to_owned()),
                },
            ]),
            min_secret_bytes: None,
            allow_unsigned: None,
            max_body_bytes: Some(DEFAULT_MAX_BODY_BYTES),
            schema: Some(Schema::ReservationEvent),
            replay_window_seconds: None,
            max_clock_skew_seconds: None,
            replay_cache: None,
        }
    }

    /// The fields written here over the preset's (itself unchanged without a preset).
    pub fn with_preset(self) -> Self {
        let Some(preset) = self.preset else {
            return self;
        };
        let base = preset.config();
        WebhookConfig {
            preset: None,
            name: self.name.or(base.name),
            path: self.path.or(base.path),
            methods: self.methods.or(base.methods),
            scheme: self.scheme.or(base.scheme),
            secrets: self.secrets.or(base.secrets),
            min_secret_bytes: self.min_secret_bytes.or(base.min_secret_bytes),
            allow_unsigned: self.allow_unsigned.or(base.allow_unsigned),
            max_body_bytes: self.max_body_bytes.or(base.max_body_bytes),
            schema: self.schema.or(base.schema),
            replay_window_seconds: self.replay_window_seconds.or(base.replay_window_seconds),
            max_clock_skew_seconds: self.max_clock_skew_seconds.or(base.max_clock_skew_seconds),
            replay_cache: self.replay_cache.or(base.replay_cache),
        }
    }
}

/// Replay cache of delivery ids, in the proxy's shared data (per Envoy process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayCacheConfig {
    /// How long an id is remembered. Default one day.
    #[serde(default = "default_replay_ttl")]
    pub ttl_seconds: u64,
    /// How many ids are remembered; the oldest is forgotten first. Default 1024.
    #[serde(default = "default_replay_max")]
    pub max_entries: usize,
    /// Status of the answer to a repeated id. Default 409.
    #[serde(default = "default_replay_status")]
    pub status: u16,
}

fn default_replay_ttl() -> u64 {
    DEFAULT_REPLAY_TTL_SECONDS
}
fn default_replay_max() -> usize {
    DEFAULT_REPLAY_MAX_ENTRIES
}
fn default_replay_status() -> u16 {
    409
}
fn default_tolerance() -> u64 {
    crate::scheme::DEFAULT_TOLERANCE_SECONDS
}

/// Methods of a webhook that does not list them.
pub fn default_methods() -> Vec<String> {
    vec!["POST".to_owned()]
}

/// Signature scheme, tagged by `type`, one variant per sender (see [`crate::scheme`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SchemeConfig {
    /// The reservation system: `<header>: <Base64 HMAC-SHA256 of the raw body>` (what
    /// reservation-be and reservation-event-processor send) or `<header>: sha256=<hex>` (the
    /// replaced service's README): the same MAC either way.
    ReservationSystem {
        /// Header carrying the signature. Default `x-webhook-signature`.
        #[serde(default = "default_sig_header")]
        header: String,
    },
    /// Any sender of `<header>: <prefix><hex HMAC-SHA256 of the raw body>`.
    HmacSha256Hex {
        /// Header carrying the signature. Default `x-webhook-signature`.
        #[serde(default = "default_sig_header")]
        header: String,
        /// Prefix before the hex digits. Default `sha256=`.
        #[serde(default = "default_sig_prefix")]
        prefix: String,
        /// Header carrying a delivery id, if the sender sends one. Default none.
        #[serde(default)]
        delivery_id_header: Option<String>,
    },
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`, delivery id `X-GitHub-Delivery`.
    Github {
        /// Default `x-hub-signature-256`.
        #[serde(default = "default_github_header")]
        header: String,
    },
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]` over `<t>.<body>`.
    Stripe {
        /// Default `stripe-signature`.
        #[serde(default = "default_stripe_header")]
        header: String,
        /// Oldest accepted `t`, in seconds before now; 0 = off. Default 300.
        #[serde(default = "default_tolerance")]
        tolerance_seconds: u64,
    },
    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:<ts>:<body>`.
    Slack {
        /// Default `x-slack-signature`.
        #[serde(default = "default_slack_sig")]
        signature_header: String,
        /// Default `x-slack-request-timestamp`.
        #[serde(default = "default_slack_ts")]
        timestamp_header: String,
        /// Accepted distance of the timestamp from now, both ways; 0 = off. Default 300.
        #[serde(default = "default_tolerance")]
        tolerance_seconds: u64,
    },
    /// Standard Webhooks / Svix: `webhook-signature: v1,<b64> ...` over `<id>.<ts>.<body>`.
    StandardWebhooks {
        /// Accepted distance of the timestamp from now, both ways; 0 = off. Default 300.
        #[serde(default = "default_tolerance")]
        tolerance_seconds: u64,
    },
    /// Shopify: `X-Shopify-Hmac-Sha256: <b64>` over the body.
    Shopify {
        /// Default `x-shopify-hmac-sha256` (`shopify-hmac-sha256` is also read).
        #[serde(default = "default_shopify_header")]
        header: String,
    },
}

impl Default for SchemeConfig {
    fn default() -> Self {
        SchemeConfig::ReservationSystem {
            header: default_sig_header(),
        }
    }
}

fn default_github_header() -> String {
    "x-hub-signature-256".to_owned()
}
fn default_stripe_header() -> String {
    "stripe-signature".to_owned()
}
fn default_slack_sig() -> String {
    "x-slack-signature".to_owned()
}
fn default_slack_ts() -> String {
    "x-slack-request-timestamp".to_owned()
}
fn default_shopify_header() -> String {
    "x-shopify-hmac-sha256".to_owned()
}

fn default_sig_header() -> String {
    "x-webhook-signature".to_owned()
}
fn default_sig_prefix() -> String {
    "sha256=".to_owned()
}

/// Where one secret comes from. Only the proxy environment: never inline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Environment variable of the proxy VM (`vm_config.environment_variables`).
    pub env: String,
    /// If true, an unset or empty variable is skipped instead of refusing the configuration.
    #[serde(default)]
    pub optional: bool,
    /// Name reported upstream in `x-webhook-secret-id`. Default: the variable name.
    #[serde(default)]
    pub id: Option<String>,
}

/// Body schema of a webhook: `"reservation_event"`, `"json"`, `"none"`, or
/// `{"json_schema": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schema {
    /// [`crate::event::ReservationEvent`], with the replay rule on its `timestamp` and
    /// `eventEnd`s.
    #[default]
    ReservationEvent,
    /// Any JSON document (syntax only; no replay check).
    Json,
    /// Any body of any content type (Slack slash commands are form-encoded): only the
    /// signature and the size are checked.
    None,
    /// A JSON Schema (draft 2020-12 unless `$schema` says otherwise), formats asserted.
    #[cfg(feature = "json-schema")]
    JsonSchema(serde_json::Value),
    /// Without the `json-schema` feature the schema is skipped when parsing (keeping
    /// `serde_json::Value` out of the default artifact) and the configuration is refused.
    #[cfg(not(feature = "json-schema"))]
    JsonSchema(serde::de::IgnoredAny),
}
