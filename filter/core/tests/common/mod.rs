//! Fixtures and helpers shared by the core test files (native and wasm32 runs).
#![allow(dead_code)]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use webhook_core::replay::{CasMismatch, SharedData};

/// EVENT_START with three resources and a real ed25519 key (~2 KB).
pub const START: &[u8] = include_bytes!("../fixtures/event-start.json");
/// EVENT_END, same shape.
pub const END: &[u8] = include_bytes!("../fixtures/event-end.json");
/// EVENT_START with a real 4096-bit RSA key.
pub const START_RSA: &[u8] = include_bytes!("../fixtures/event-start-rsa.json");
/// EVENT_START as reservation-event-processor 0.1.18 sends it: one flat event, `webhookId` a
/// number, multi-line description and specs.
pub const FLAT_START: &[u8] = include_bytes!("../fixtures/flat-start.json");
/// EVENT_START as processor 0.1.15 sends it: a batch of two (a server and a switch port),
/// `webhookId` a string, `activeResources`, `customParameters`.
pub const BATCH_0115: &[u8] = include_bytes!("../fixtures/batch-start-0115.json");
/// reservation-be's EVENT_DELETED of an active reservation (the flat fixture's).
pub const DELETED: &[u8] = include_bytes!("../fixtures/envelope-deleted.json");
/// reservation-be's EVENT_UPDATED of the same reservation, extended to 15:00.
pub const UPDATED: &[u8] = include_bytes!("../fixtures/envelope-updated.json");
/// reservation-be's test webhook (the admin's "Test" button, `eventType` `ALL`).
pub const TEST_WEBHOOK: &[u8] = include_bytes!("../fixtures/envelope-test.json");
/// reservation-be's RESOURCE_CREATED.
pub const RESOURCE_CREATED: &[u8] = include_bytes!("../fixtures/envelope-resource-created.json");
/// The 44-character Base64 secret the vectors of [`FLAT_START`] are computed with (the form
/// reservation-be generates), used as its ASCII bytes.
pub const REAL_SECRET: &str = "Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1zZWNyZXQ=";
/// `X-Webhook-Signature` of [`FLAT_START`] (its bytes as committed, final newline included)
/// under [`REAL_SECRET`], as the real senders write it: `openssl dgst -sha256 -hmac
/// "$REAL_SECRET" -binary flat-start.json | base64`.
pub const FLAT_START_SIGNATURE_B64: &str = "TfoWNmIXfEb8JM7xs0xO7COscj5JZTDcxw5Izru0LaU=";
/// The same MAC in the replaced README's form: `openssl dgst -sha256 -hmac "$REAL_SECRET"`.
pub const FLAT_START_SIGNATURE_HEX: &str =
    "sha256=4dfa163662177c46fc24cef1b34c4eec23ac723e496530dcc70e48cebbb42da5";

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

/// In-memory [`SharedData`]: one version per entry, bumped on every write, like proxy-wasm
/// shared data. `lose` makes the next writes fail with a mismatch, as if another worker wrote
/// between our read and our write.
#[derive(Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Writes still to lose (`u32::MAX`: all of them).
    pub lose: Cell<u32>,
    /// Writes attempted.
    pub writes: Cell<u32>,
}

impl MemoryStore {
    /// The bytes stored under `key`, if any.
    pub fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.borrow().get(key).map(|(b, _)| b.clone())
    }
}

impl SharedData for MemoryStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.borrow().get(key) {
            Some((bytes, version)) => (Some(bytes.clone()), Some(*version)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        self.writes.set(self.writes.get() + 1);
        let mut entries = self.entries.borrow_mut();
        let current = entries.get(key).map(|(_, v)| *v);
        let lost = self.lose.get() > 0;
        if lost || cas.is_some_and(|c| Some(c) != current) {
            if lost && self.lose.get() != u32::MAX {
                self.lose.set(self.lose.get() - 1);
            }
            // A concurrent writer moved the entry on.
            if let Some((_, v)) = entries.get_mut(key) {
                *v += 1;
            }
            return Err(CasMismatch);
        }
        let version = current.unwrap_or(0) + 1;
        entries.insert(key.to_owned(), (value.to_vec(), version));
        Ok(())
    }
}
