//! Pure core of the webhook edge filter: configuration (several webhooks, each with its sender's
//! signature scheme), signature verification, reservation event and JSON Schema validation,
//! the replay cache logic and the per-request decision. No proxy-wasm types and no I/O, so all of it
//! is tested natively and under `wasm32-unknown-unknown`; the `webhook-filter` crate is a thin
//! proxy-wasm adapter over it, and the sidecar reuses [`event`] and [`signature`].
//!
//! # Request flow
//! ```text
//! Envoy ─▶ adapter: on_http_request_headers
//!            │  flow::on_request_headers(cfg, method, path, header lookup)
//!            │    route by path ─ no webhook ─▶ Pass (or 404 with `unmatched: reject`)
//!            │    method (405) ─ content type (415) ─ content-length vs cap (413)
//!            │    Scheme::present: the sender's signature headers (401) ─ delivery id (400)
//!            ▼
//!          adapter: on_http_request_body (buffer until end of stream)
//!            │  Pending::check_size(buffered)          413 as soon as the cap is passed
//!            │  Pending::finish(body, now)
//!            │    sender timestamp tolerance (401) ─ HMAC-SHA256 against every secret (401)
//!            │    JSON (400) ─ event rules or JSON Schema (422 + JSON path) ─ replay rule
//!            ▼
//!          Verified { secret_id, replay: Delivery { key, id, cache } }
//!            │  Verified::admit(store, now): replay::admit, a bounded CAS loop on the
//!            │    adapter's replay::SharedData (proxy-wasm shared data) ─ id seen before (409)
//!            ▼
//!          forwarded (+ secret id as filter state); or Rejection ─▶ JSON reply + counter
//!          (per webhook); upstream answers non-2xx, or not at all ─▶ replay::forget
//! ```
//!
//! # Layout
//! - [`config`]: the compiled configuration and its checks; `config/raw.rs` the plugin
//!   configuration as written (serde, `deny_unknown_fields`).
//! - [`scheme`]: each sender's compiled scheme (headers, signed bytes, key, tolerance),
//!   verification of what it presents, and `sign_*`.
//! - [`signature`]: keyed HMAC-SHA256 secrets and hex signing ([`signature::sign_hex`]).
//! - [`replay`]: the bounded, expiring cache of delivery ids and its admission (CAS loop over
//!   the [`replay::SharedData`] store the adapter provides).
//! - [`event`]: the shared reservation event types and [`event::validate`] (field rules in
//!   `event/fields.rs`, the SSH key in `event/ssh_key.rs`).
//! - [`flow`]: the per-request decision the adapter drives, and the `x-webhook-*` headers.
//! - [`metrics`]: outcomes and their Prometheus counter names.
//! - [`error`]: the crate's error type, with HTTP status, `error_type` and outcome per variant.
//!
//! Feature `json-schema` (default here; off in the default filter artifact): `schema:
//! {"json_schema": ...}` through the `jsonschema` crate.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod event;
pub mod flow;
pub mod metrics;
pub mod replay;
pub mod scheme;
pub mod signature;

pub use error::{Error, Result};
