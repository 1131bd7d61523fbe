//! Fixtures and helpers shared by the core test files (native and wasm32 runs).
#![allow(dead_code)]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// EVENT_START with three resources and a real ed25519 key (~2 KB).
pub const START: &[u8] = include_bytes!("../fixtures/event-start.json");
/// EVENT_END, same shape.
pub const END: &[u8] = include_bytes!("../fixtures/event-end.json");
/// EVENT_START with a real 4096-bit RSA key.
pub const START_RSA: &[u8] = include_bytes!("../fixtures/event-start-rsa.json");

/// The fixtures' `timestamp` (2025-06-08T14:30:00+02:00) as unix seconds.
pub const FIXTURE_TS: i64 = 1_749_385_800;

pub fn at(unix: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap())
}

pub fn start_json() -> Value {
    serde_json::from_slice(START).unwrap()
}

/// The START fixture with `edit` applied.
pub fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = start_json();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}
