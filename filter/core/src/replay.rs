//! Replay cache of delivery ids and its admission rule: bounded in size, entries expire after
//! a TTL, the oldest is forgotten first, and every update is a bounded compare-and-swap loop on
//! a [`SharedData`] store (proxy-wasm shared data in the filter, a map in tests). The clock is
//! passed in.
//!
//! ```text
//! verified request ─▶ admit(store, delivery, now) ─┬─ Ok(Recorded)   forward
//!                                                  ├─ Ok(Busy)       forward, not recorded
//!                                                  └─ Err(Replayed)  answer the configured status
//! upstream answers non-2xx, or no answer ─▶ forget(store, delivery)   so the sender's retry passes
//! ```
//! Shared data lives in one Envoy process (all its worker threads share it, per VM id): two
//! Envoy replicas each have their own cache; it is not cluster-wide.
//!
//! Encoding: one line per id, `<expiry unix seconds> <id>\n`, oldest first. Ids are 1 to
//! [`MAX_ID_LEN`] visible ASCII characters ([`valid_id`]), so they never hold a space or newline.

use crate::config::ReplayCacheConfig;
use crate::error::Error;

/// Read-then-write attempts on the store before giving up on an update that keeps losing to
/// concurrent writers ([`Admission::Busy`]): a request never spins on a contended cache.
pub const CAS_ATTEMPTS: usize = 8;

/// Longest delivery id kept (GitHub and Svix ids are ~36 characters).
pub const MAX_ID_LEN: usize = 256;

/// Shared-data key of a webhook's cache.
pub fn shared_data_key(webhook_name: &str) -> String {
    format!("webhook_filter.replay.{webhook_name}")
}

/// `true` for 1 to [`MAX_ID_LEN`] visible ASCII characters (0x21..=0x7e).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The cache, oldest entry first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayCache {
    entries: Vec<(i64, String)>,
}

impl ReplayCache {
    /// Decodes stored bytes; lines that do not parse are dropped (never an error: a damaged
    /// cache only forgets).
    pub fn decode(bytes: &[u8]) -> Self {
        let entries = bytes
            .split(|b| *b == b'\n')
            .filter_map(|l| {
                let (exp, id) = std::str::from_utf8(l).ok()?.split_once(' ')?;
                let exp = exp.parse::<i64>().ok()?;
                valid_id(id).then(|| (exp, id.to_owned()))
            })
            .collect();
        ReplayCache { entries }
    }

    /// Encodes for storage.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 48);
        for (exp, id) in &self.entries {
            out.extend_from_slice(exp.to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(id.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Number of remembered ids (expired ones included until the next insert).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `id` is remembered and not expired at `now`.
    pub fn contains(&self, id: &str, now: i64) -> bool {
        self.entries.iter().any(|(exp, i)| i == id && *exp > now)
    }

    /// Remembers `id` until `now + ttl`, first dropping expired entries, then the oldest ones
    /// beyond `max_entries`. Refuses an id already remembered.
    pub fn insert(
        &mut self,
        id: &str,
        now: i64,
        ttl_seconds: u64,
        max_entries: usize,
    ) -> Result<(), Error> {
        self.entries.retain(|(exp, _)| *exp > now);
        if self.entries.iter().any(|(_, i)| i == id) {
            return Err(Error::Replayed { status: 409 });
        }
        let ttl = i64::try_from(ttl_seconds).unwrap_or(i64::MAX);
        self.entries.push((now.saturating_add(ttl), id.to_owned()));
        let excess = self.entries.len().saturating_sub(max_entries.max(1));
        self.entries.drain(..excess);
        Ok(())
    }

    /// Forgets `id`; returns whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, i)| i != id);
        before != self.entries.len()
    }
}

/// Where the encoded caches live: a key/value store whose entries carry a version (the CAS
/// token), like proxy-wasm shared data. Implementations must not panic.
pub trait SharedData {
    /// The bytes stored under `key` and their version; `(None, None)` when nothing is stored.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);

    /// Stores `value` under `key` if the entry is still at version `cas` (`None`: whatever is
    /// there, as for a key never written); [`CasMismatch`] when another writer came first.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch>;
}

/// A compare-and-swap write lost to a concurrent writer: read again and retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

/// One delivery to admit: the webhook's cache (key and rule) and the sender's delivery id.
/// Built by the flow for a verified request of a webhook with a replay cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Shared-data key of the webhook's cache ([`shared_data_key`]).
    pub key: String,
    /// The delivery id ([`valid_id`]).
    pub id: String,
    /// TTL, size bound and reply status of the webhook's cache.
    pub cache: ReplayCacheConfig,
}

/// What [`admit`] did with a delivery id that was not seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Recorded: forward, and [`forget`] it again if the upstream does not take the delivery.
    Recorded,
    /// The cache changed under every one of [`CAS_ATTEMPTS`] writes: not recorded. The
    /// signature was valid, so the request is forwarded; only the duplicate check is skipped.
    Busy,
}

/// Records `delivery` in its cache at `now` (unix seconds), or answers
/// [`Error::Replayed`] with the cache's status when the id is there and not expired.
pub fn admit(store: &impl SharedData, delivery: &Delivery, now: i64) -> Result<Admission, Error> {
    let written = update(store, &delivery.key, |stored| {
        let mut cache = stored.map(ReplayCache::decode).unwrap_or_default();
        let rule = &delivery.cache;
        cache
            .insert(&delivery.id, now, rule.ttl_seconds, rule.max_entries)
            .map_err(|_| Error::Replayed {
                status: rule.status,
            })?;
        Ok(Some(cache.encode()))
    })?;
    Ok(if written {
        Admission::Recorded
    } else {
        Admission::Busy
    })
}

/// Forgets `delivery` (the upstream did not take it); `false` when the cache stayed busy and
/// the id is still there.
pub fn forget(store: &impl SharedData, delivery: &Delivery) -> bool {
    let done = update(store, &delivery.key, |stored| {
        let Some(stored) = stored else {
            return Ok(None);
        };
        let mut cache = ReplayCache::decode(stored);
        Ok(cache.remove(&delivery.id).then(|| cache.encode()))
    });
    done.unwrap_or(true)
}

/// The bounded compare-and-swap loop: reads the entry, asks `next` for the bytes to write
/// (`None`: nothing to write, done), writes them at the version read. `Ok(false)` after
/// [`CAS_ATTEMPTS`] lost writes; `next`'s error ends the loop at once.
fn update(
    store: &impl SharedData,
    key: &str,
    next: impl Fn(Option<&[u8]>) -> Result<Option<Vec<u8>>, Error>,
) -> Result<bool, Error> {
    for _ in 0..CAS_ATTEMPTS {
        let (stored, cas) = store.get(key);
        let Some(bytes) = next(stored.as_deref())? else {
            return Ok(true);
        };
        if store.set(key, &bytes, cas).is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}
