//! The senders' signature schemes, compiled from the configuration: what each one puts in
//! which header, which bytes it signs, how its secret becomes the HMAC key, and its timestamp
//! tolerance.
//!
//! | scheme | signature header | bytes signed | key | encoding | timestamp |
//! |---|---|---|---|---|---|
//! | `reservation_system` | `x-webhook-signature: <b64>` or `sha256=<hex>` | body | secret bytes | base64 or hex | none (body `timestamp`) |
//! | `hmac_sha256_hex` | `x-webhook-signature: sha256=<hex>` (header and prefix configurable) | body | secret bytes | hex | none |
//! | `github` | `x-hub-signature-256: sha256=<hex>` | body | secret bytes | hex | none |
//! | `stripe` | `stripe-signature: t=<unix>,v1=<hex>[,v1=…]` | `<t>.` + body | the whole secret string, `whsec_` included | hex | `t`, old only |
//! | `slack` | `x-slack-signature: v0=<hex>` + `x-slack-request-timestamp` | `v0:<ts>:` + body | secret bytes | hex | both ways |
//! | `standard_webhooks` | `webhook-signature: v1,<b64> …` + `webhook-id`, `webhook-timestamp` (or `svix-*`) | `<id>.<ts>.` + body | base64 after `whsec_` | base64 | both ways |
//! | `shopify` | `x-shopify-hmac-sha256: <b64>` | body | secret bytes | base64 | none |
//!
//! The header phase ([`Scheme::present`]) turns the headers into a [`Presented`]: candidate
//! tags, the bytes signed before the body, the timestamp and the delivery id. The body phase
//! ([`Presented::check_time`], [`Presented::verify`]) checks the tolerance and computes one
//! HMAC per active secret over the raw body, compared in constant time with every candidate.
//! The `sign_*` functions produce what each sender sends (tests, docs, local tooling).

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};
use subtle::ConstantTimeEq;

use crate::config::SchemeConfig;
use crate::error::{Error, Result};
use crate::signature::{SecretKey, TAG_LEN, hmac, strip_prefix_ci};

/// Default timestamp tolerance of Stripe, Slack and Standard Webhooks (all three use 5 min).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
/// Most signatures accepted in one header (Stripe and Standard Webhooks list several during a
/// rotation); more are ignored, so a huge header cannot multiply the work.
pub const MAX_CANDIDATES: usize = 8;

/// Base64 that accepts padded and unpadded input (the Standard Webhooks Python library pads
/// unpadded secrets; senders' signatures are padded).
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the request headers say about the signature, before the body arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Candidate tags; any one matching one active secret authenticates the request.
    pub candidates: Vec<[u8; TAG_LEN]>,
    /// Bytes the sender signs before the raw body (`<t>.`, `v0:<ts>:`, `<id>.<ts>.`, or none).
    pub signed_prefix: Vec<u8>,
    /// Sender timestamp (unix seconds), for schemes that carry one.
    pub timestamp: Option<i64>,
    /// Delivery id (GitHub `x-github-delivery`, Standard Webhooks `webhook-id`, ...).
    pub delivery_id: Option<String>,
}

/// How a timestamp is checked against the proxy clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerance {
    /// No timestamp in the scheme.
    None,
    /// Only too-old timestamps are refused (Stripe); 0 turns the check off.
    PastOnly(u64),
    /// Both directions (Slack, Standard Webhooks); 0 turns the check off.
    BothWays(u64),
}

/// A compiled signature scheme: [`SchemeConfig`] with header names checked and lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// See [`SchemeConfig::ReservationSystem`].
    ReservationSystem {
        /// Lowercase header name.
        header: String,
    },
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
            | Scheme::ReservationSystem { header }
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
            Scheme::ReservationSystem { .. } | Scheme::Stripe { .. } | Scheme::Slack { .. } => {
                false
            }
        }
    }

    /// Compiles the configured scheme of the webhook at `at` (its field path, for errors).
    pub(crate) fn compile(raw: &SchemeConfig, at: &str) -> Result<Self> {
        let name = |h: &str, field: &str| -> Result<String> {
            if is_token(h) {
                Ok(h.to_ascii_lowercase())
            } else {
                Err(Error::ConfigInvalid {
                    what: format!("{at}.scheme.{field} is not a header name"),
                })
            }
        };
        Ok(match raw {
            SchemeConfig::ReservationSystem { header } => Scheme::ReservationSystem {
                header: name(header, "header")?,
            },
            SchemeConfig::HmacSha256Hex {
                header,
                prefix,
                delivery_id_header,
            } => Scheme::HmacSha256Hex {
                header: name(header, "header")?,
                prefix: prefix.clone(),
                delivery_id_header: delivery_id_header
                    .as_deref()
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
                tolerance_seconds: *tolerance_seconds,
            },
            SchemeConfig::Slack {
                signature_header,
                timestamp_header,
                tolerance_seconds,
            } => Scheme::Slack {
                signature_header: name(signature_header, "signature_header")?,
                timestamp_header: name(timestamp_header, "timestamp_header")?,
                tolerance_seconds: *tolerance_seconds,
            },
            SchemeConfig::StandardWebhooks { tolerance_seconds } => Scheme::StandardWebhooks {
                tolerance_seconds: *tolerance_seconds,
            },
            SchemeConfig::Shopify { header } => Scheme::Shopify {
                header: name(header, "header")?,
            },
        })
    }
}

/// An HTTP token (RFC 9110): what header names and methods are made of.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn first(header: &impl Fn(&str) -> Option<String>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| header(n))
}

fn hex_tag(s: &str) -> Option<[u8; TAG_LEN]> {
    let mut out = [0u8; TAG_LEN];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}

/// The reservation system's `X-Webhook-Signature`: `sha256=<64 hex digits>` (the prefix in any
/// case), else standard padded Base64 of the 32-byte tag (what the real senders write). The
/// same MAC either way; anything else is malformed.
fn reservation_tag(value: &str) -> Result<[u8; TAG_LEN]> {
    let v = value.trim();
    if strip_prefix_ci(v, "sha256=").is_some() {
        return crate::signature::parse_hex_signature(v, "sha256=");
    }
    b64_tag(v).ok_or(Error::MalformedSignature)
}

fn b64_tag(s: &str) -> Option<[u8; TAG_LEN]> {
    let bytes = STANDARD.decode(s.trim()).ok()?;
    <[u8; TAG_LEN]>::try_from(bytes.as_slice()).ok()
}

/// A unix timestamp header: ASCII digits only (no sign, no fraction), as every sender sends.
fn unix_timestamp(value: &str) -> Result<i64> {
    let v = value.trim();
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::MalformedSignature);
    }
    v.parse().map_err(|_| Error::MalformedSignature)
}

impl Scheme {
    /// Reads the signature headers. `header` looks a request header up by lowercase name.
    /// Missing headers answer [`Error::MissingSignature`], unusable ones
    /// [`Error::MalformedSignature`].
    pub fn present(&self, header: &impl Fn(&str) -> Option<String>) -> Result<Presented> {
        let mut p = Presented {
            candidates: Vec::new(),
            signed_prefix: Vec::new(),
            timestamp: None,
            delivery_id: self.delivery_id(header),
        };
        match self {
            Scheme::ReservationSystem { header: h } => {
                let v = header(h).ok_or(Error::MissingSignature)?;
                p.candidates.push(reservation_tag(&v)?);
            }
            Scheme::HmacSha256Hex {
                header: h, prefix, ..
            } => {
                let v = header(h).ok_or(Error::MissingSignature)?;
                p.candidates
                    .push(crate::signature::parse_hex_signature(&v, prefix)?);
            }
            Scheme::Github { header: h } => {
                let v = header(h).ok_or(Error::MissingSignature)?;
                p.candidates
                    .push(crate::signature::parse_hex_signature(&v, "sha256=")?);
            }
            Scheme::Stripe { header: h, .. } => {
                let v = header(h).ok_or(Error::MissingSignature)?;
                let mut t = None;
                for item in v.split(',') {
                    let Some((k, val)) = item.split_once('=') else {
                        continue;
                    };
                    match k.trim() {
                        "t" if t.is_none() => t = Some(unix_timestamp(val)?),
                        "v1" if p.candidates.len() < MAX_CANDIDATES => {
                            // Stripe compares strings: an entry that is not 64 hex digits can
                            // never match, so it is skipped like other schemes (`v0`).
                            if let Some(tag) = hex_tag(val) {
                                p.candidates.push(tag);
                            }
                        }
                        _ => {}
                    }
                }
                let t = t.ok_or(Error::MalformedSignature)?;
                if p.candidates.is_empty() {
                    return Err(Error::MalformedSignature);
                }
                p.signed_prefix = format!("{t}.").into_bytes();
                p.timestamp = Some(t);
            }
            Scheme::Slack {
                signature_header,
                timestamp_header,
                ..
            } => {
                let v = header(signature_header).ok_or(Error::MissingSignature)?;
                let ts = header(timestamp_header).ok_or(Error::MissingSignature)?;
                let t = unix_timestamp(&ts)?;
                let hex_part = strip_prefix_ci(v.trim(), "v0=").ok_or(Error::MalformedSignature)?;
                p.candidates
                    .push(hex_tag(hex_part).ok_or(Error::MalformedSignature)?);
                p.signed_prefix = format!("v0:{t}:").into_bytes();
                p.timestamp = Some(t);
            }
            Scheme::StandardWebhooks { .. } => {
                let sig = first(header, &["svix-signature", "webhook-signature"])
                    .ok_or(Error::MissingSignature)?;
                let id = p.delivery_id.clone().ok_or(Error::MissingSignature)?;
                let ts = first(header, &["svix-timestamp", "webhook-timestamp"])
                    .ok_or(Error::MissingSignature)?;
                let t = unix_timestamp(&ts)?;
                for entry in sig.split(' ').filter(|e| !e.is_empty()) {
                    // Other versions (`v1a`: ed25519) are skipped, as the reference code does.
                    if let Some(("v1", b64)) = entry.split_once(',')
                        && p.candidates.len() < MAX_CANDIDATES
                        && let Some(tag) = b64_tag(b64)
                    {
                        p.candidates.push(tag);
                    }
                }
                if p.candidates.is_empty() {
                    return Err(Error::MalformedSignature);
                }
                p.signed_prefix = format!("{id}.{t}.").into_bytes();
                p.timestamp = Some(t);
            }
            Scheme::Shopify { header: h } => {
                let v = first(header, &[h.as_str(), "shopify-hmac-sha256"])
                    .ok_or(Error::MissingSignature)?;
                p.candidates
                    .push(b64_tag(&v).ok_or(Error::MalformedSignature)?);
            }
        }
        Ok(p)
    }

    /// The delivery id the sender put in the headers, if the scheme has one.
    pub fn delivery_id(&self, header: &impl Fn(&str) -> Option<String>) -> Option<String> {
        let v = match self {
            Scheme::HmacSha256Hex {
                delivery_id_header: Some(h),
                ..
            } => header(h),
            Scheme::HmacSha256Hex { .. }
            | Scheme::ReservationSystem { .. }
            | Scheme::Stripe { .. }
            | Scheme::Slack { .. } => None,
            Scheme::Github { .. } => header("x-github-delivery"),
            Scheme::StandardWebhooks { .. } => first(header, &["svix-id", "webhook-id"]),
            Scheme::Shopify { .. } => header("x-shopify-webhook-id"),
        }?;
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_owned())
    }

    /// The scheme's timestamp rule.
    pub fn tolerance(&self) -> Tolerance {
        match self {
            Scheme::Stripe {
                tolerance_seconds, ..
            } => Tolerance::PastOnly(*tolerance_seconds),
            Scheme::Slack {
                tolerance_seconds, ..
            }
            | Scheme::StandardWebhooks { tolerance_seconds } => {
                Tolerance::BothWays(*tolerance_seconds)
            }
            _ => Tolerance::None,
        }
    }

    /// Turns a secret, as configured, into HMAC key bytes. Only Standard Webhooks decodes
    /// (`whsec_` stripped, then base64); Stripe keys with the whole string, `whsec_` included.
    pub fn key_bytes(&self, secret: &str) -> Result<Vec<u8>, String> {
        match self {
            Scheme::StandardWebhooks { .. } => {
                let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
                B64_LENIENT
                    .decode(b64.trim())
                    .map_err(|_| "is not `whsec_` + base64 (Standard Webhooks secret)".to_owned())
            }
            _ => Ok(secret.as_bytes().to_vec()),
        }
    }
}

impl Presented {
    /// Checks the sender timestamp against `now` (unix seconds) with the scheme's rule.
    pub fn check_time(&self, tolerance: Tolerance, now: i64) -> Result<()> {
        let (Some(t), tol) = (self.timestamp, tolerance) else {
            return Ok(());
        };
        let (past_only, secs) = match tol {
            Tolerance::None | Tolerance::PastOnly(0) | Tolerance::BothWays(0) => return Ok(()),
            Tolerance::PastOnly(s) => (true, s),
            Tolerance::BothWays(s) => (false, s),
        };
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        if t < now.saturating_sub(secs) || (!past_only && t > now.saturating_add(secs)) {
            return Err(Error::StaleTimestamp);
        }
        Ok(())
    }

    /// Computes the HMAC of `signed_prefix + body` with each secret in order and compares it,
    /// in constant time, with every candidate; returns the index of the first matching secret.
    pub fn verify(&self, secrets: &[SecretKey], body: &[u8]) -> Result<usize> {
        secrets
            .iter()
            .position(|secret| {
                let tag = secret.tag_with_prefix(&self.signed_prefix, body);
                // Every candidate is compared (no early exit inside one secret).
                self.candidates
                    .iter()
                    .fold(subtle::Choice::from(0), |acc, c| acc | tag.ct_eq(c))
                    .into()
            })
            .ok_or(Error::BadSignature)
    }
}

/// The reservation system's `X-Webhook-Signature` value as reservation-be and
/// reservation-event-processor send it: standard padded Base64 of HMAC-SHA256 over the raw
/// body, keyed with the secret string's UTF-8 bytes (the README's `sha256=<hex>` form is
/// [`crate::signature::signature_header_value`]).
pub fn sign_reservation_system(secret: &str, body: &[u8]) -> String {
    base64_body_tag(secret, body)
}

/// GitHub's `X-Hub-Signature-256` value: `sha256=<hex>` over the body.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(secret.as_bytes(), &[], body)))
}

/// Stripe's `Stripe-Signature` value `t=<t>,v1=<hex>`; the key is the whole secret string.
pub fn sign_stripe(secret: &str, t: i64, body: &[u8]) -> String {
    let tag = hmac(secret.as_bytes(), format!("{t}.").as_bytes(), body);
    format!("t={t},v1={}", hex::encode(tag))
}

/// Slack's `X-Slack-Signature` value `v0=<hex>` for timestamp `ts`.
pub fn sign_slack(secret: &str, ts: i64, body: &[u8]) -> String {
    let tag = hmac(secret.as_bytes(), format!("v0:{ts}:").as_bytes(), body);
    format!("v0={}", hex::encode(tag))
}

/// Standard Webhooks' `webhook-signature` value `v1,<base64>`; `secret` is `whsec_<base64>`.
/// `None` if the secret does not decode.
pub fn sign_standard_webhooks(secret: &str, id: &str, ts: i64, body: &[u8]) -> Option<String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = B64_LENIENT.decode(b64).ok()?;
    let tag = hmac(&key, format!("{id}.{ts}.").as_bytes(), body);
    Some(format!("v1,{}", general_purpose::STANDARD.encode(tag)))
}

/// Shopify's `X-Shopify-Hmac-Sha256` value: base64 over the body.
pub fn sign_shopify(secret: &str, body: &[u8]) -> String {
    base64_body_tag(secret, body)
}

/// Standard Base64 of HMAC-SHA256 over the body alone, keyed with the secret's bytes.
fn base64_body_tag(secret: &str, body: &[u8]) -> String {
    general_purpose::STANDARD.encode(hmac(secret.as_bytes(), &[], body))
}
