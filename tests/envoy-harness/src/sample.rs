//! The sample reservation messages, moved to now: the fixtures' dates are in 2025, and the
//! filter refuses an EVENT_START whose every `eventEnd` has passed. The one Rust place that does
//! it (the tools and benchmarks use `tools/fresh-event.py`, the same rule).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

/// One hour: how long ago every reservation of a moved message started.
pub const STARTED_AGO: Duration = Duration::from_secs(3600);

/// `message` with `timestamp` set to `now` and every reservation in it (the flat event, each of
/// a batch's `events`, an envelope's `data`) started [`STARTED_AGO`] and ending in `ends_in`;
/// every other field as written.
pub fn at_now(message: &mut Value, now: SystemTime, ends_in: Duration) {
    let rfc3339 = webhook_core::flow::rfc3339_utc;
    let (start, end) = (rfc3339(now - STARTED_AGO), rfc3339(now + ends_in));
    if message.get("timestamp").is_some() {
        message["timestamp"] = json!(rfc3339(now));
    }
    // Each time that is there is moved; none is added.
    let moved = |r: &mut Value, start_key: &str, end_key: &str| {
        for (key, time) in [(start_key, &start), (end_key, &end)] {
            if let Some(slot) = r.get_mut(key) {
                *slot = json!(time);
            }
        }
    };
    moved(message, "eventStart", "eventEnd");
    if let Some(events) = message.get_mut("events").and_then(Value::as_array_mut) {
        events
            .iter_mut()
            .for_each(|r| moved(r, "eventStart", "eventEnd"));
    }
    if let Some(data) = message.get_mut("data").filter(|d| d.is_object()) {
        moved(data, "start", "end");
    }
}

/// The core's fixtures of every shape the real reservation system sends (in
/// `filter/core/tests/fixtures`): the processor's flat event and 0.1.15 batch, reservation-be's
/// envelopes.
pub const REAL_SENDER_FIXTURES: [&str; 6] = [
    "flat-start.json",
    "batch-start-0115.json",
    "envelope-deleted.json",
    "envelope-updated.json",
    "envelope-test.json",
    "envelope-resource-created.json",
];

/// One of the core's fixtures (`filter/core/tests/fixtures/<name>`), as written.
pub fn core_fixture(name: &str) -> std::io::Result<Vec<u8>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../filter/core/tests/fixtures");
    std::fs::read(dir.join(name))
}
