//! Replay cache and its admission over an in-memory store: first delivery recorded, repeated
//! ids refused with the configured status until they expire, lost compare-and-swap writes
//! retried a bounded number of times, bounded size (oldest forgotten first), forgetting after
//! a failed delivery, encoding round trip; and the flow's rejection of a replayed delivery.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use common::{MemoryStore, at};
use webhook_core::Error;
use webhook_core::config::{CompiledConfig, ReplayCacheConfig};
use webhook_core::flow::{self, HeadersDecision};
use webhook_core::metrics::Outcome;
use webhook_core::replay::{self, Admission, CAS_ATTEMPTS, Delivery, ReplayCache};
use webhook_core::signature::signature_header_value;

const CFG: ReplayCacheConfig = ReplayCacheConfig {
    ttl_seconds: 60,
    max_entries: 3,
    status: 409,
};

fn delivery(id: &str) -> Delivery {
    delivery_with(id, CFG)
}

fn delivery_with(id: &str, cache: ReplayCacheConfig) -> Delivery {
    Delivery {
        key: replay::shared_data_key("w"),
        id: id.to_owned(),
        cache,
    }
}

fn status(r: Result<Admission, Error>) -> u16 {
    match r {
        Err(Error::Replayed { status }) => status,
        other => panic!("{other:?}"),
    }
}

fn stored(store: &MemoryStore) -> ReplayCache {
    ReplayCache::decode(&store.bytes("webhook_filter.replay.w").unwrap_or_default())
}

#[test]
fn a_first_delivery_is_recorded() {
    let store = MemoryStore::default();
    assert!(matches!(
        replay::admit(&store, &delivery("d-1"), 1000),
        Ok(Admission::Recorded)
    ));
    assert!(stored(&store).contains("d-1", 1000));
    assert_eq!(store.writes.get(), 1);
}

#[test]
fn a_repeated_id_is_refused_with_the_configured_status() {
    let store = MemoryStore::default();
    replay::admit(&store, &delivery("d-1"), 1000).unwrap();
    assert_eq!(status(replay::admit(&store, &delivery("d-1"), 1059)), 409);
    let teapot = ReplayCacheConfig { status: 429, ..CFG };
    assert_eq!(
        status(replay::admit(&store, &delivery_with("d-1", teapot), 1001)),
        429
    );
    // A refusal writes nothing.
    assert_eq!(store.writes.get(), 1);
    // Other ids are not affected.
    assert!(matches!(
        replay::admit(&store, &delivery("d-2"), 1001),
        Ok(Admission::Recorded)
    ));
}

#[test]
fn an_expired_id_is_admitted_again() {
    let store = MemoryStore::default();
    replay::admit(&store, &delivery("d-1"), 1000).unwrap();
    // At expiry (now >= admitted + ttl) the id is new again, and remembered anew.
    assert!(matches!(
        replay::admit(&store, &delivery("d-1"), 1060),
        Ok(Admission::Recorded)
    ));
    assert_eq!(status(replay::admit(&store, &delivery("d-1"), 1119)), 409);
    assert_eq!(stored(&store).len(), 1, "the expired entry was dropped");
}

#[test]
fn a_lost_compare_and_swap_is_retried_on_a_fresh_read() {
    let store = MemoryStore::default();
    replay::admit(&store, &delivery("d-1"), 1000).unwrap();
    store.lose.set(2);
    assert!(matches!(
        replay::admit(&store, &delivery("d-2"), 1001),
        Ok(Admission::Recorded)
    ));
    assert_eq!(store.writes.get(), 1 + 3);
    let cache = stored(&store);
    assert!(cache.contains("d-1", 1001) && cache.contains("d-2", 1001));
}

#[test]
fn a_store_that_always_loses_is_given_up_on_after_a_bounded_number_of_writes() {
    let store = MemoryStore::default();
    store.lose.set(u32::MAX);
    assert!(matches!(
        replay::admit(&store, &delivery("d-1"), 1000),
        Ok(Admission::Busy)
    ));
    assert_eq!(store.writes.get(), u32::try_from(CAS_ATTEMPTS).unwrap());
    assert!(!stored(&store).contains("d-1", 1000), "not recorded");
    // Forgetting gives up the same way (and says so).
    store.lose.set(0);
    replay::admit(&store, &delivery("d-1"), 1000).unwrap();
    store.lose.set(u32::MAX);
    assert!(!replay::forget(&store, &delivery("d-1")));
    assert!(stored(&store).contains("d-1", 1000));
}

#[test]
fn the_cache_is_bounded_and_forgets_the_oldest_first() {
    let store = MemoryStore::default();
    for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
        replay::admit(&store, &delivery(id), 100 + i as i64).unwrap();
    }
    let cache = stored(&store);
    assert_eq!(cache.len(), 3);
    assert!(!cache.contains("a", 110), "oldest forgotten");
    for id in ["b", "c", "d"] {
        assert!(cache.contains(id, 110), "{id}");
    }
    // Expired entries are dropped on the next insert.
    replay::admit(&store, &delivery("e"), 1000).unwrap();
    assert_eq!(stored(&store).len(), 1);
}

#[test]
fn forgetting_lets_a_retry_through() {
    let store = MemoryStore::default();
    assert!(replay::forget(&store, &delivery("d-1")), "nothing stored");
    assert_eq!(store.writes.get(), 0);
    replay::admit(&store, &delivery("d-1"), 0).unwrap();
    assert!(replay::forget(&store, &delivery("absent")));
    assert_eq!(store.writes.get(), 1, "nothing to forget, nothing written");
    assert!(replay::forget(&store, &delivery("d-1")));
    assert!(matches!(
        replay::admit(&store, &delivery("d-1"), 1),
        Ok(Admission::Recorded)
    ));
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

#[test]
fn the_flow_refuses_a_replayed_delivery_on_its_webhook() {
    const SECRET: &str = "replay-secret-0123456789abcdef0123";
    let cfg = CompiledConfig::from_json(
        br#"{"webhooks":[{"name":"other","path":"/other","schema":"none","allow_unsigned":true},
            {"name":"w","path":"/w","schema":"none",
             "scheme":{"type":"hmac_sha256_hex","delivery_id_header":"x-delivery"},
             "secrets":[{"env":"S"}],"replay_cache":{"ttl_seconds":60,"status":429}}]}"#,
        |_| Some(SECRET.to_owned()),
    )
    .unwrap();
    let body = b"anything";
    let sig = signature_header_value(SECRET.as_bytes(), body);
    let header = |name: &str| match name {
        "x-webhook-signature" => Some(sig.clone()),
        "x-delivery" => Some("d-1".to_owned()),
        _ => None,
    };
    let HeadersDecision::Inspect(p) = flow::on_request_headers(&cfg, "POST", "/w", header) else {
        panic!("not inspected");
    };
    let verified = p.finish(&cfg, body, at(1000)).unwrap();
    let store = MemoryStore::default();
    let (d, admission) = verified.admit(&store, at(1000)).unwrap().unwrap();
    assert_eq!((d.id.as_str(), admission), ("d-1", Admission::Recorded));
    let r = verified.admit(&store, at(1001)).unwrap_err();
    assert_eq!(
        (r.status(), r.outcome(), r.webhook),
        (429, Outcome::ReplayedDelivery, Some(1))
    );
    assert_eq!(r.error.error_type(), "ReplayedDelivery");
    // A webhook without a cache has nothing to admit.
    let HeadersDecision::Inspect(p) = flow::on_request_headers(&cfg, "POST", "/other", |_| None)
    else {
        panic!("not inspected");
    };
    let unsigned = p.finish(&cfg, b"{}", at(1000)).unwrap();
    assert!(matches!(unsigned.admit(&store, at(1000)), Ok(None)));
}
