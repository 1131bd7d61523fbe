//! Replay cache: repeated ids refused with the configured status, TTL, bounded size (oldest
//! forgotten first), forgetting after a failed delivery, encoding round trip.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use webhook_core::Error;
use webhook_core::config::ReplayCacheConfig;
use webhook_core::replay::{self, ReplayCache};

const CFG: ReplayCacheConfig = ReplayCacheConfig {
    ttl_seconds: 60,
    max_entries: 3,
    status: 409,
};

fn status(e: Error) -> u16 {
    match e {
        Error::Replayed { status } => status,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_repeated_id_is_refused_with_the_configured_status_until_it_expires() {
    let stored = replay::admit(None, "d-1", 1000, &CFG).unwrap();
    let e = replay::admit(Some(&stored), "d-1", 1059, &CFG).unwrap_err();
    assert_eq!(status(e), 409);
    let teapot = ReplayCacheConfig { status: 429, ..CFG };
    assert_eq!(
        status(replay::admit(Some(&stored), "d-1", 1001, &teapot).unwrap_err()),
        429
    );
    // At expiry (now >= admitted + ttl) the id is new again.
    assert!(replay::admit(Some(&stored), "d-1", 1060, &CFG).is_ok());
    // Other ids are not affected.
    assert!(replay::admit(Some(&stored), "d-2", 1001, &CFG).is_ok());
}

#[test]
fn the_cache_is_bounded_and_forgets_the_oldest_first() {
    let mut stored = Vec::new();
    for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
        stored = replay::admit(Some(&stored), id, 100 + i as i64, &CFG).unwrap();
    }
    let cache = ReplayCache::decode(&stored);
    assert_eq!(cache.len(), 3);
    assert!(!cache.contains("a", 110), "oldest forgotten");
    for id in ["b", "c", "d"] {
        assert!(cache.contains(id, 110), "{id}");
    }
    // Expired entries are dropped on the next insert.
    let later = replay::admit(Some(&stored), "e", 1000, &CFG).unwrap();
    assert_eq!(ReplayCache::decode(&later).len(), 1);
}

#[test]
fn forgetting_lets_a_retry_through() {
    let stored = replay::admit(None, "d-1", 0, &CFG).unwrap();
    let stored = replay::forget(Some(&stored), "d-1").unwrap();
    assert!(replay::admit(Some(&stored), "d-1", 1, &CFG).is_ok());
    assert_eq!(replay::forget(Some(&stored), "absent"), None);
    assert_eq!(replay::forget(None, "d-1"), None);
}

#[test]
fn decoding_is_tolerant_and_ids_are_checked() {
    let cache = ReplayCache::decode(b"100 ok\nnot-a-line\n-5 neg\n200 has space\n\xff\xfe\n");
    assert!(cache.contains("ok", 0));
    assert!(cache.contains("neg", -10));
    assert_eq!(cache.len(), 2);
    assert_eq!(ReplayCache::decode(&cache.encode()), cache);
    assert!(replay::valid_id("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
    for bad in ["", "has space", "tab\there", "nl\n", &"x".repeat(257)] {
        assert!(!replay::valid_id(bad), "{bad:?}");
    }
    assert_eq!(
        replay::shared_data_key("github"),
        "webhook_filter.replay.github"
    );
}
