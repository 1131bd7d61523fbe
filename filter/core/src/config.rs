//! Plugin configuration: parse (serde, `deny_unknown_fields`), then compile once.
//!
//! The JSON document is Envoy's `configuration` (a `StringValue`) or Istio's `pluginConfig`.
//! [`CompiledConfig::from_json`] reads the secrets from the proxy's environment through the
//! `env` lookup it is given (the adapter passes `std::env::var`), keys the HMACs, and refuses
//! anything inconsistent: unknown fields, duplicate names or paths, a required secret that is
//! unset, a secret shorter than `min_secret_bytes`, replay fields on a schema without a body
//! timestamp, or no usable secret without `allow_unsigned`. Every field and default is documented
//! in `docs/filter.md`.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::signature::SecretKey;

/// Default body cap: the sample event is 2 KB; 64 KiB leaves room for ~100 resources.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024;
/// Highest cap accepted: Envoy's default per-connection buffer limit (1 MiB); above it Envoy
/// answers 413 itself before the filter decides.
pub const MAX_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Default replay window: off. A START is bounded by its reservation's last `eventEnd`
/// instead, and an END is honoured at any age (`docs/filter.md`, "Replays"); a window would
/// refuse a START retried after an outage longer than it.
pub const DEFAULT_REPLAY_WINDOW_SECONDS: u64 = 0;
/// Default tolerance for a sender clock ahead of the proxy clock (and for an `eventEnd` that
/// has just passed).
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u64 = 300;
/// Default shortest secret, in bytes of HMAC key: 256 bits, the size of the HMAC-SHA256 tag.
pub const DEFAULT_MIN_SECRET_BYTES: usize = 32;
/// Default shortest secret for `standard_webhooks`, whose specification issues keys of 24 to 64
/// bytes (Svix's are 24): measured after base64 decoding.
pub const DEFAULT_MIN_SECRET_BYTES_STANDARD_WEBHOOKS: usize = 24;

/// Header set upstream on every forwarded guarded request: `true`, or `unsigned` in unsigned
/// mode. Inbound copies are always removed.
pub const VERIFIED_HEADER: &str = "x-webhook-verified";
/// Header set upstream naming the secret (its configured `id`) that matched. Inbound copies
/// are always removed. Envoy's route adds it from the filter state [`SECRET_ID_PROPERTY`].
pub const SECRET_ID_HEADER: &str = "x-webhook-secret-id";
/// Filter-state property the adapter sets to the matched secret's `id`; Envoy stores it as
/// `wasm.webhook_secret_id` and the route turns it into [`SECRET_ID_HEADER`] with
/// `%FILTER_STATE(wasm.webhook_secret_id:PLAIN)%`.
pub const SECRET_ID_PROPERTY: &str = "webhook_secret_id";
/// Header set upstream naming the webhook (its configured `name`) that matched.
pub const WEBHOOK_NAME_HEADER: &str = "x-webhook-name";
/// Header set upstream with the sender's delivery id (`X-GitHub-Delivery`, `webhook-id`,
/// `svix-id`, `X-Shopify-Webhook-Id`, or the configured `delivery_id_header`).
pub const DELIVERY_ID_HEADER: &str = "x-webhook-delivery-id";
/// Every header the filter owns; stripped from every inbound request so none can be spoofed.
pub const OWNED_HEADERS: [&str; 4] = [
    VERIFIED_HEADER,
    SECRET_ID_HEADER,
    WEBHOOK_NAME_HEADER,
    DELIVERY_ID_HEADER,
];
/// Default replay-cache lifetime of a delivery id: one day.
pub const DEFAULT_REPLAY_TTL_SECONDS: u64 = 86_400;
/// Default number of delivery ids remembered per webhook.
pub const DEFAULT_REPLAY_MAX_ENTRIES: usize = 1024;
/// Highest `max_entries`: the whole cache is read and written per request (shared data).
pub const MAX_REPLAY_MAX_ENTRIES: usize = 16_384;

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

/// One guarded webhook, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name used in logs and the `x-webhook-name` header.
    pub name: String,
    /// Exact request path, e.g. `/webhook`.
    pub path: String,
    /// Accepted methods; others get 405 with `allow`. Default `["POST"]`.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Signature scheme. Default `hmac_sha256_hex` with its defaults.
    #[serde(default)]
    pub scheme: SchemeConfig,
    /// Active secrets, tried in order; several at once during a rotation.
    #[serde(default)]
    pub secrets: Vec<SecretSource>,
    /// Shortest secret accepted, in bytes of HMAC key. Default 32 (24 for
    /// `standard_webhooks`); a shorter secret, optional or not, refuses the configuration.
    #[serde(default)]
    pub min_secret_bytes: Option<usize>,
    /// Development switch: forward without checking any signature.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// Body cap in bytes (413 above it).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Body schema to validate.
    #[serde(default)]
    pub schema: Schema,
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

fn default_methods() -> Vec<String> {
    vec!["POST".to_owned()]
}
fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}

/// Signature scheme, tagged by `type`, one variant per sender (see [`crate::scheme`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SchemeConfig {
    /// The reservation system: `<header>: <prefix><hex HMAC-SHA256 of the raw body>`.
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
        SchemeConfig::HmacSha256Hex {
            header: default_sig_header(),
            prefix: default_sig_prefix(),
            delivery_id_header: None,
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
#[derive(Debug, Clone, Deserialize)]
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

/// A compiled signature scheme: [`SchemeConfig`] with header names lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// See [`SchemeConfig::HmacSha256Hex`].
    HmacSha256Hex {
        /// Lowercase header name.
        header: String,
        /// Value prefix.
        prefix: String,
        /// Lowercase delivery id header.
        delivery_id_header: Option<String>,
    },
    /// See [`SchemeConfig::Github`].
    Github {
        /// Lowercase header name.
        header: String,
    },
    /// See [`SchemeConfig::Stripe`].
    Stripe {
        /// Lowercase header name.
        header: String,
        /// Past tolerance, 0 = off.
        tolerance_seconds: u64,
    },
    /// See [`SchemeConfig::Slack`].
    Slack {
        /// Lowercase header name.
        signature_header: String,
        /// Lowercase header name.
        timestamp_header: String,
        /// Tolerance both ways, 0 = off.
        tolerance_seconds: u64,
    },
    /// See [`SchemeConfig::StandardWebhooks`].
    StandardWebhooks {
        /// Tolerance both ways, 0 = off.
        tolerance_seconds: u64,
    },
    /// See [`SchemeConfig::Shopify`].
    Shopify {
        /// Lowercase header name.
        header: String,
    },
}

impl Scheme {
    /// The (lowercase) header that carries the signature.
    pub fn header(&self) -> &str {
        match self {
            Scheme::HmacSha256Hex { header, .. }
            | Scheme::Github { header }
            | Scheme::Stripe { header, .. }
            | Scheme::Shopify { header } => header,
            Scheme::Slack {
                signature_header, ..
            } => signature_header,
            Scheme::StandardWebhooks { .. } => "webhook-signature",
        }
    }

    /// Whether the scheme carries a delivery id (needed by the replay cache).
    pub fn has_delivery_id(&self) -> bool {
        match self {
            Scheme::HmacSha256Hex {
                delivery_id_header, ..
            } => delivery_id_header.is_some(),
            Scheme::Github { .. } | Scheme::StandardWebhooks { .. } | Scheme::Shopify { .. } => {
                true
            }
            Scheme::Stripe { .. } | Scheme::Slack { .. } => false,
        }
    }

    fn compile(raw: SchemeConfig, at: &str) -> Result<Self> {
        let name = |h: String, field: &str| -> Result<String> {
            if is_token(&h) {
                Ok(h.to_ascii_lowercase())
            } else {
                Err(invalid(format!("{at}.scheme.{field} is not a header name")))
            }
        };
        Ok(match raw {
            SchemeConfig::HmacSha256Hex {
                header,
                prefix,
                delivery_id_header,
            } => Scheme::HmacSha256Hex {
                header: name(header, "header")?,
                prefix,
                delivery_id_header: delivery_id_header
                    .map(|h| name(h, "delivery_id_header"))
                    .transpose()?,
            },
            SchemeConfig::Github { header } => Scheme::Github {
                header: name(header, "header")?,
            },
            SchemeConfig::Stripe {
                header,
                tolerance_seconds,
            } => Scheme::Stripe {
                header: name(header, "header")?,
                tolerance_seconds,
            },
            SchemeConfig::Slack {
                signature_header,
                timestamp_header,
                tolerance_seconds,
            } => Scheme::Slack {
                signature_header: name(signature_header, "signature_header")?,
                timestamp_header: name(timestamp_header, "timestamp_header")?,
                tolerance_seconds,
            },
            SchemeConfig::StandardWebhooks { tolerance_seconds } => {
                Scheme::StandardWebhooks { tolerance_seconds }
            }
            SchemeConfig::Shopify { header } => Scheme::Shopify {
                header: name(header, "header")?,
            },
        })
    }
}

/// A compiled JSON Schema validator (feature `json-schema`).
#[derive(Clone)]
pub struct JsonSchemaValidator(
    #[cfg(feature = "json-schema")] pub std::sync::Arc<jsonschema::Validator>,
    #[cfg(not(feature = "json-schema"))] (),
);

impl std::fmt::Debug for JsonSchemaValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonSchemaValidator")
    }
}

#[cfg(feature = "json-schema")]
fn compile_json_schema(schema: &serde_json::Value, at: &str) -> Result<JsonSchemaValidator> {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .map(|v| JsonSchemaValidator(std::sync::Arc::new(v)))
        .map_err(|e| invalid(format!("{at}.schema.json_schema does not compile: {e}")))
}

#[cfg(not(feature = "json-schema"))]
fn compile_json_schema(_schema: &serde::de::IgnoredAny, at: &str) -> Result<JsonSchemaValidator> {
    Err(invalid(format!(
        "{at}.schema.json_schema: this filter build has no JSON Schema support; use \
         webhook_filter_jsonschema.wasm (feature `json-schema`)"
    )))
}

/// One webhook, ready for requests.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// See [`WebhookConfig::name`].
    pub name: String,
    /// See [`WebhookConfig::path`].
    pub path: String,
    /// Upper-case methods.
    pub methods: Vec<String>,
    /// Value of the `allow` header of a 405.
    pub allow: String,
    /// Compiled scheme.
    pub scheme: Scheme,
    /// Keyed secrets; empty only in unsigned mode.
    pub secrets: Vec<SecretKey>,
    /// Unsigned mode.
    pub allow_unsigned: bool,
    /// Body cap in bytes.
    pub max_body_bytes: u64,
    /// Body schema.
    pub schema: Schema,
    /// Shortest accepted secret, in bytes of HMAC key.
    pub min_secret_bytes: usize,
    /// Replay window of a START's timestamp in seconds (0 = off).
    pub replay_window_seconds: u64,
    /// Clock skew tolerance in seconds (future timestamps, just-passed `eventEnd`s).
    pub max_clock_skew_seconds: u64,
    /// Compiled validator when `schema` is `json_schema`.
    pub json_schema: Option<JsonSchemaValidator>,
    /// Replay cache of delivery ids, if configured.
    pub replay_cache: Option<ReplayCacheConfig>,
}

/// The configuration every HTTP context shares (behind an `Rc`/`Arc`).
#[derive(Debug, Clone)]
pub struct CompiledConfig {
    /// Guarded webhooks.
    pub webhooks: Vec<Webhook>,
    /// Policy for other paths.
    pub unmatched: Unmatched,
    /// Things worth a warning log line at configure time (unsigned mode, skipped optional
    /// secrets). Never contains a secret.
    pub warnings: Vec<String>,
}

fn invalid(what: impl Into<String>) -> Error {
    Error::ConfigInvalid { what: what.into() }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Webhook {
    /// The id of the secret a valid signature must match, when it is known from the
    /// configuration alone: the webhook has exactly one active secret (the usual case outside a
    /// rotation). The filter then sets `x-webhook-secret-id` with the other headers, before
    /// the verdict, and makes no filter-state call per request; with several secrets it
    /// records the matched one after the body ([`crate::flow::Accepted::secret_id`]).
    pub fn secret_id_at_headers(&self) -> Option<&str> {
        match self.secrets.as_slice() {
            [only] => Some(only.id()),
            _ => None,
        }
    }
}

impl CompiledConfig {
    /// Parses and compiles the plugin configuration; `env` looks up the proxy environment.
    pub fn from_json(json: &[u8], env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let raw: FilterConfig = serde_json::from_slice(json).map_err(Error::ConfigSyntax)?;
        Self::compile(raw, env)
    }

    /// Compiles an already parsed configuration.
    pub fn compile(raw: FilterConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if raw.webhooks.is_empty() {
            return Err(invalid("`webhooks` must hold at least one webhook"));
        }
        let mut warnings = Vec::new();
        let mut webhooks: Vec<Webhook> = Vec::with_capacity(raw.webhooks.len());
        for (i, w) in raw.webhooks.into_iter().enumerate() {
            let at = format!("webhooks[{i}]");
            if w.name.is_empty()
                || !w
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(invalid(format!(
                    "{at}.name must be non-empty [A-Za-z0-9._-]"
                )));
            }
            if !w.path.starts_with('/') || w.path.contains(['?', '#', ' ']) {
                return Err(invalid(format!(
                    "{at}.path must start with '/' and hold no query"
                )));
            }
            if webhooks
                .iter()
                .any(|o| o.name == w.name || o.path == w.path)
            {
                return Err(invalid(format!("{at}: duplicate name or path")));
            }
            if w.methods.is_empty() || !w.methods.iter().all(|m| is_token(m)) {
                return Err(invalid(format!("{at}.methods must list HTTP methods")));
            }
            let methods: Vec<String> = w.methods.iter().map(|m| m.to_ascii_uppercase()).collect();
            if w.max_body_bytes == 0 || w.max_body_bytes > MAX_MAX_BODY_BYTES {
                return Err(invalid(format!(
                    "{at}.max_body_bytes must be in 1..={MAX_MAX_BODY_BYTES}"
                )));
            }
            let scheme = Scheme::compile(w.scheme, &at)?;
            if let Some(rc) = &w.replay_cache {
                if !scheme.has_delivery_id() {
                    return Err(invalid(format!(
                        "{at}.replay_cache needs a scheme with a delivery id (github, \
                         standard_webhooks, shopify, or hmac_sha256_hex with delivery_id_header)"
                    )));
                }
                if rc.ttl_seconds == 0
                    || rc.max_entries == 0
                    || rc.max_entries > MAX_REPLAY_MAX_ENTRIES
                    || !(400..=599).contains(&rc.status)
                {
                    return Err(invalid(format!(
                        "{at}.replay_cache: ttl_seconds > 0, max_entries in \
                         1..={MAX_REPLAY_MAX_ENTRIES}, status in 400..=599"
                    )));
                }
            }
            if w.schema != Schema::ReservationEvent {
                for (field, set) in [
                    ("replay_window_seconds", w.replay_window_seconds.is_some()),
                    ("max_clock_skew_seconds", w.max_clock_skew_seconds.is_some()),
                ] {
                    if set {
                        return Err(invalid(format!(
                            "{at}.{field} applies only to schema reservation_event (its body \
                             timestamp); remove it"
                        )));
                    }
                }
            }
            let min_secret_bytes = w.min_secret_bytes.unwrap_or(match scheme {
                Scheme::StandardWebhooks { .. } => DEFAULT_MIN_SECRET_BYTES_STANDARD_WEBHOOKS,
                _ => DEFAULT_MIN_SECRET_BYTES,
            });
            if min_secret_bytes == 0 {
                return Err(invalid(format!("{at}.min_secret_bytes must be at least 1")));
            }
            if min_secret_bytes < DEFAULT_MIN_SECRET_BYTES && w.min_secret_bytes.is_some() {
                warnings.push(format!(
                    "webhook {}: min_secret_bytes {min_secret_bytes} is below the recommended \
                     {DEFAULT_MIN_SECRET_BYTES}",
                    w.name
                ));
            }
            let json_schema = match &w.schema {
                Schema::JsonSchema(s) => Some(compile_json_schema(s, &at)?),
                _ => None,
            };
            let mut secrets = Vec::new();
            for (j, s) in w.secrets.iter().enumerate() {
                if s.env.is_empty() {
                    return Err(invalid(format!(
                        "{at}.secrets[{j}].env must name a variable"
                    )));
                }
                match env(&s.env).filter(|v| !v.is_empty()) {
                    Some(value) => {
                        let id = s.id.clone().unwrap_or_else(|| s.env.clone());
                        let key = scheme.key_bytes(&value).map_err(|why| {
                            invalid(format!("{at}.secrets[{j}]: variable {} {why}", s.env))
                        })?;
                        // Optional or not: a secret that is set but weak is a mistake to
                        // fix, never one to skip. The message names no length.
                        if key.len() < min_secret_bytes {
                            return Err(invalid(format!(
                                "{at}.secrets[{j}]: variable {} is shorter than \
                                 min_secret_bytes ({min_secret_bytes} bytes); generate one \
                                 with `openssl rand -hex 32`",
                                s.env
                            )));
                        }
                        secrets.push(SecretKey::new(id, &key));
                    }
                    None if s.optional => warnings.push(format!(
                        "webhook {}: optional secret variable {} is not set; skipped",
                        w.name, s.env
                    )),
                    None => {
                        return Err(invalid(format!(
                            "{at}.secrets[{j}]: environment variable {} is not set or empty \
                             (pass it via vm_config.environment_variables)",
                            s.env
                        )));
                    }
                }
            }
            if w.allow_unsigned {
                warnings.push(format!(
                    "webhook {}: allow_unsigned is on, signatures are NOT checked",
                    w.name
                ));
                secrets.clear();
            } else if secrets.is_empty() {
                return Err(invalid(format!(
                    "{at}: no usable secret; set one in `secrets` or turn on `allow_unsigned` \
                     explicitly"
                )));
            }
            webhooks.push(Webhook {
                name: w.name,
                path: w.path,
                allow: methods.join(", "),
                methods,
                scheme,
                secrets,
                allow_unsigned: w.allow_unsigned,
                max_body_bytes: w.max_body_bytes,
                schema: w.schema,
                min_secret_bytes,
                replay_window_seconds: w
                    .replay_window_seconds
                    .unwrap_or(DEFAULT_REPLAY_WINDOW_SECONDS),
                max_clock_skew_seconds: w
                    .max_clock_skew_seconds
                    .unwrap_or(DEFAULT_MAX_CLOCK_SKEW_SECONDS),
                json_schema,
                replay_cache: w.replay_cache,
            });
        }
        Ok(CompiledConfig {
            webhooks,
            unmatched: raw.unmatched,
            warnings,
        })
    }

    /// The webhook guarding `path` (query string ignored), if any.
    pub fn route(&self, path: &str) -> Option<(usize, &Webhook)> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.webhooks
            .iter()
            .enumerate()
            .find(|(_, w)| w.path == path)
    }
}
