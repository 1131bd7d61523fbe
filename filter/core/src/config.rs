//! Plugin configuration: parse (serde, `deny_unknown_fields`), then compile once.
//!
//! The JSON document is Envoy's `configuration` (a `StringValue`) or Istio's `pluginConfig`.
//! [`CompiledConfig::from_json`] reads the secrets from the proxy's environment through the
//! `env` lookup it is given (the adapter passes `std::env::var`), keys the HMACs, and refuses
//! anything inconsistent: unknown fields, duplicate names or paths, a required secret that is
//! unset, or no usable secret without `allow_unsigned`. Every field and default is documented
//! in `docs/filter.md`.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::signature::SecretKey;

/// Default body cap: the sample event is 2 KB; 64 KiB leaves room for ~100 resources.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024;
/// Highest cap accepted: Envoy's default per-connection buffer limit (1 MiB); above it Envoy
/// answers 413 itself before the filter decides.
pub const MAX_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Default replay window (see `docs/filter.md`: covers a sender that retries for up to an hour
/// after a 503 with `Retry-After`, while an EVENT_START captured today cannot be replayed
/// tomorrow).
pub const DEFAULT_REPLAY_WINDOW_SECONDS: u64 = 3600;
/// Default tolerance for a sender clock ahead of the proxy clock.
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u64 = 300;

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
/// Every header the filter owns; stripped from every inbound request so none can be spoofed.
pub const OWNED_HEADERS: [&str; 3] = [VERIFIED_HEADER, SECRET_ID_HEADER, WEBHOOK_NAME_HEADER];

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
    /// Development switch: forward without checking any signature.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// Body cap in bytes (413 above it).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Body schema to validate.
    #[serde(default)]
    pub schema: Schema,
    /// Maximum age of the body `timestamp`; 0 turns the replay check off.
    #[serde(default = "default_replay")]
    pub replay_window_seconds: u64,
    /// How far in the future the body `timestamp` may be.
    #[serde(default = "default_skew")]
    pub max_clock_skew_seconds: u64,
}

fn default_methods() -> Vec<String> {
    vec!["POST".to_owned()]
}
fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn default_replay() -> u64 {
    DEFAULT_REPLAY_WINDOW_SECONDS
}
fn default_skew() -> u64 {
    DEFAULT_MAX_CLOCK_SKEW_SECONDS
}

/// Signature scheme, tagged by `type`. New senders (GitHub, Stripe, Slack, Standard Webhooks,
/// Shopify) become new variants.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SchemeConfig {
    /// `<header>: <prefix><hex HMAC-SHA256 of the raw body>`.
    HmacSha256Hex {
        /// Header carrying the signature. Default `x-webhook-signature`.
        #[serde(default = "default_sig_header")]
        header: String,
        /// Prefix before the hex digits. Default `sha256=`.
        #[serde(default = "default_sig_prefix")]
        prefix: String,
    },
}

impl Default for SchemeConfig {
    fn default() -> Self {
        SchemeConfig::HmacSha256Hex {
            header: default_sig_header(),
            prefix: default_sig_prefix(),
        }
    }
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

/// Body schema of a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schema {
    /// [`crate::event::ReservationEvent`], with replay window on its `timestamp`.
    #[default]
    ReservationEvent,
    /// Any JSON document (syntax only; no replay check).
    Json,
}

/// A compiled signature scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// See [`SchemeConfig::HmacSha256Hex`]; `header` is lowercase.
    HmacSha256Hex {
        /// Lowercase header name.
        header: String,
        /// Value prefix.
        prefix: String,
    },
}

impl Scheme {
    /// The (lowercase) header that carries the signature.
    pub fn header(&self) -> &str {
        match self {
            Scheme::HmacSha256Hex { header, .. } => header,
        }
    }
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
    /// Replay window in seconds (0 = off).
    pub replay_window_seconds: u64,
    /// Future tolerance in seconds.
    pub max_clock_skew_seconds: u64,
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
            let scheme = match w.scheme {
                SchemeConfig::HmacSha256Hex { header, prefix } => {
                    if !is_token(&header) {
                        return Err(invalid(format!("{at}.scheme.header is not a header name")));
                    }
                    Scheme::HmacSha256Hex {
                        header: header.to_ascii_lowercase(),
                        prefix,
                    }
                }
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
                        secrets.push(SecretKey::new(id, value.as_bytes()));
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
                replay_window_seconds: w.replay_window_seconds,
                max_clock_skew_seconds: w.max_clock_skew_seconds,
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
