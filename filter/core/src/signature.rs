//! HMAC-SHA256 keyed secrets and hex signatures, the primitives under every scheme.
//!
//! [`sign_hex`] produces a hex tag and [`signature_header_value`] the replaced service's
//! documented `sha256=<hex>` form of the reservation system's `X-Webhook-Signature` (its real
//! senders write Base64: [`crate::scheme::sign_reservation_system`]); [`SecretKey`] holds one
//! active secret, keyed once at configure time; [`parse_hex_signature`] decodes a hex header
//! value. Verification against the active secrets
//! is the scheme's ([`crate::scheme::Presented::verify`]), in constant time per comparison.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
pub const TAG_LEN: usize = 32;

/// Lowercase hex HMAC-SHA256 of `body` keyed with `secret`: the value after `sha256=`.
pub fn sign_hex(secret: &[u8], body: &[u8]) -> String {
    hex::encode(hmac(secret, &[], body))
}

/// The replaced service's README form of `X-Webhook-Signature`: `sha256=<hex>`.
pub fn signature_header_value(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", sign_hex(secret, body))
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (longer keys are hashed), so this cannot fail; fall back to
    // an empty key only to satisfy the type, which configuration already refuses.
    match <HmacSha256 as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => <HmacSha256 as KeyInit>::new(&Default::default()),
    }
}

/// HMAC-SHA256 of `prefix` followed by `body`, keyed with `key` (the senders' own signing).
pub(crate) fn hmac(key: &[u8], prefix: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
    tag(&keyed(key), prefix, body)
}

fn tag(mac: &HmacSha256, prefix: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = mac.clone();
    mac.update(prefix);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// One active secret: a name for the upstream (`x-webhook-secret-id`) and the HMAC keyed with
/// the secret (the inner/outer pads are computed once, here, not per request).
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    mac: HmacSha256,
}

impl SecretKey {
    /// Keys `secret` under the name `id`. The secret bytes are not kept apart from the keyed
    /// HMAC state.
    pub fn new(id: impl Into<String>, secret: &[u8]) -> Self {
        SecretKey {
            id: id.into(),
            mac: keyed(secret),
        }
    }

    /// The name given to this secret in the configuration (never the secret itself).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// HMAC-SHA256 of `prefix` followed by `body` (Stripe, Slack and Standard Webhooks sign a
    /// timestamp and id before the body), without concatenating them.
    pub fn tag_with_prefix(&self, prefix: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
        tag(&self.mac, prefix, body)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Decodes a signature header value: optional `prefix` (ASCII case-insensitive), then exactly
/// 64 hex digits (either case). Surrounding whitespace is ignored.
pub fn parse_hex_signature(value: &str, prefix: &str) -> Result<[u8; TAG_LEN]> {
    let hex_part = strip_prefix_ci(value.trim(), prefix).ok_or(Error::MalformedSignature)?;
    let mut out = [0u8; TAG_LEN];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| Error::MalformedSignature)?;
    Ok(out)
}

/// `value` without `prefix`, compared ASCII case-insensitively; `None` if it does not start so.
pub(crate) fn strip_prefix_ci<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}
