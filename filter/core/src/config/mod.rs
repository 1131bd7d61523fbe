//! The compiled configuration: the plugin configuration checked and compiled once, at
//! configure time, into what every request reads.
//!
//! The JSON document is Envoy's `configuration` (a `StringValue`) or Istio's `pluginConfig`;
//! its serde types are in `raw.rs` and re-exported here. [`CompiledConfig::from_json`] reads
//! the secrets from the proxy's environment through the `env` lookup it is given (the adapter
//! passes `std::env::var`), keys the HMACs, and refuses anything inconsistent: unknown fields,
//! duplicate names or paths, a required secret that is unset, a secret shorter than
//! `min_secret_bytes`, replay fields on a schema without a body timestamp, or no usable secret
//! without `allow_unsigned`. Every error names the field (`webhooks[1].secrets[0]: ...`) and
//! never a secret. Every field and default is documented in `docs/filter.md`.

mod raw;

pub use raw::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_REPLAY_MAX_ENTRIES, DEFAULT_REPLAY_TTL_SECONDS, FilterConfig,
    Preset, RESERVATION_PREVIOUS_SECRET_ENV, RESERVATION_SECRET_ENV, ReplayCacheConfig, Schema,
    SchemeConfig, SecretSource, Unmatched, WebhookConfig,
};

use crate::error::{Error, Result};
use crate::scheme::{Scheme, is_token};
use crate::signature::SecretKey;

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
/// Highest `max_entries`: the whole cache is read and written per request (shared data).
pub const MAX_REPLAY_MAX_ENTRIES: usize = 16_384;

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
            let w = Written::resolve(w, &at)?;
            check_identity(&w, &at, &webhooks)?;
            webhooks.push(Webhook::compile(w, &at, &env, &mut warnings)?);
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

/// One webhook as written, its preset applied and every default filled in.
struct Written {
    name: String,
    path: String,
    methods: Vec<String>,
    scheme: SchemeConfig,
    secrets: Vec<SecretSource>,
    min_secret_bytes: Option<usize>,
    allow_unsigned: bool,
    max_body_bytes: u64,
    schema: Schema,
    replay_window_seconds: Option<u64>,
    max_clock_skew_seconds: Option<u64>,
    replay_cache: Option<ReplayCacheConfig>,
}

impl Written {
    /// `w` over its preset, with the documented defaults; `name` and `path` have none.
    fn resolve(w: WebhookConfig, at: &str) -> Result<Self> {
        let w = w.with_preset();
        let required = |v: Option<String>, field: &str| {
            v.ok_or_else(|| invalid(format!("{at}.{field} is required (or a `preset`)")))
        };
        Ok(Written {
            name: required(w.name, "name")?,
            path: required(w.path, "path")?,
            methods: w.methods.unwrap_or_else(raw::default_methods),
            scheme: w.scheme.unwrap_or_default(),
            secrets: w.secrets.unwrap_or_default(),
            min_secret_bytes: w.min_secret_bytes,
            allow_unsigned: w.allow_unsigned.unwrap_or(false),
            max_body_bytes: w.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            schema: w.schema.unwrap_or_default(),
            replay_window_seconds: w.replay_window_seconds,
            max_clock_skew_seconds: w.max_clock_skew_seconds,
            replay_cache: w.replay_cache,
        })
    }
}

impl Webhook {
    /// Compiles one webhook (its name and path already checked by [`check_identity`]); `at`
    /// is its field path for errors, `warnings` collects what is worth a log line.
    fn compile(
        w: Written,
        at: &str,
        env: &impl Fn(&str) -> Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Self> {
        let methods = compile_methods(&w.methods, at)?;
        if w.max_body_bytes == 0 || w.max_body_bytes > MAX_MAX_BODY_BYTES {
            return Err(invalid(format!(
                "{at}.max_body_bytes must be in 1..={MAX_MAX_BODY_BYTES}"
            )));
        }
        let scheme = Scheme::compile(&w.scheme, at)?;
        if let Some(rc) = &w.replay_cache {
            check_replay_cache(rc, &scheme, at)?;
        }
        check_event_only_fields(&w, at)?;
        let min_secret_bytes = compile_min_secret_bytes(&w, &scheme, at, warnings)?;
        let json_schema = match &w.schema {
            Schema::JsonSchema(s) => Some(compile_json_schema(s, at)?),
            _ => None,
        };
        let mut secrets = compile_secrets(&w, &scheme, min_secret_bytes, at, env, warnings)?;
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
        Ok(Webhook {
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
        })
    }

    /// The id of the secret a valid signature must match, when it is known from the
    /// configuration alone: the webhook has exactly one active secret (the usual case outside a
    /// rotation). The filter then sets `x-webhook-secret-id` with the other headers, before
    /// the verdict, and makes no filter-state call per request; with several secrets it
    /// records the matched one after the body ([`crate::flow::Verified::secret_id`]).
    pub fn secret_id_at_headers(&self) -> Option<&str> {
        match self.secrets.as_slice() {
            [only] => Some(only.id()),
            _ => None,
        }
    }
}

fn invalid(what: impl Into<String>) -> Error {
    Error::ConfigInvalid { what: what.into() }
}

/// Name and path: well formed, and neither taken by an earlier webhook.
fn check_identity(w: &Written, at: &str, earlier: &[Webhook]) -> Result<()> {
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
    if earlier.iter().any(|o| o.name == w.name || o.path == w.path) {
        return Err(invalid(format!("{at}: duplicate name or path")));
    }
    Ok(())
}

/// The methods, upper-cased; at least one, each an HTTP token.
fn compile_methods(methods: &[String], at: &str) -> Result<Vec<String>> {
    if methods.is_empty() || !methods.iter().all(|m| is_token(m)) {
        return Err(invalid(format!("{at}.methods must list HTTP methods")));
    }
    Ok(methods.iter().map(|m| m.to_ascii_uppercase()).collect())
}

/// The replay cache needs a delivery id to remember, and sane bounds.
fn check_replay_cache(rc: &ReplayCacheConfig, scheme: &Scheme, at: &str) -> Result<()> {
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
    Ok(())
}

/// The replay window and clock skew read the body `timestamp`: only reservation events have one.
fn check_event_only_fields(w: &Written, at: &str) -> Result<()> {
    if w.schema == Schema::ReservationEvent {
        return Ok(());
    }
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
    Ok(())
}

/// The shortest secret accepted: as configured, or the scheme's default; a warning when set
/// below the recommended length.
fn compile_min_secret_bytes(
    w: &Written,
    scheme: &Scheme,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<usize> {
    let min = w.min_secret_bytes.unwrap_or(match scheme {
        Scheme::StandardWebhooks { .. } => DEFAULT_MIN_SECRET_BYTES_STANDARD_WEBHOOKS,
        _ => DEFAULT_MIN_SECRET_BYTES,
    });
    if min == 0 {
        return Err(invalid(format!("{at}.min_secret_bytes must be at least 1")));
    }
    if min < DEFAULT_MIN_SECRET_BYTES && w.min_secret_bytes.is_some() {
        warnings.push(format!(
            "webhook {}: min_secret_bytes {min} is below the recommended \
             {DEFAULT_MIN_SECRET_BYTES}",
            w.name
        ));
    }
    Ok(min)
}

/// Reads and keys every secret that is set; an unset optional one is skipped with a warning.
fn compile_secrets(
    w: &Written,
    scheme: &Scheme,
    min_secret_bytes: usize,
    at: &str,
    env: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<SecretKey>> {
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
                // Optional or not: a secret that is set but weak is a mistake to fix, never
                // one to skip. The message names no length.
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
    Ok(secrets)
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
