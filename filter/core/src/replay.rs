//! Replay cache of delivery ids: bounded in size, entries expire after a TTL, the oldest is
//! forgotten first. Pure: the adapter keeps the encoded cache in proxy-wasm shared data (one
//! entry per webhook, updated with compare-and-swap) and passes the clock in.
//!
//! ```text
//! accepted request ─▶ admit(stored bytes, id, now) ─┬─ Ok(new bytes)  store (CAS), forward
//!                                                   └─ Err(Replayed)  answer the configured status
//! upstream answers non-2xx, or no answer ─▶ forget(stored bytes, id)   so the sender's retry passes
//! ```
//! Shared data lives in one Envoy process (all its worker threads share it, per VM id): two
//! Envoy replicas each have their own cache; it is not cluster-wide.
//!
//! Encoding: one line per id, `<expiry unix seconds> <id>\n`, oldest first. Ids are 1 to
//! [`MAX_ID_LEN`] visible ASCII characters ([`valid_id`]), so they never hold a space or newline.

use crate::config::ReplayCacheConfig;
use crate::error::Error;

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

/// One admission step on stored bytes: the new bytes to store, or [`Error::Replayed`] with the
/// configured status.
pub fn admit(
    stored: Option<&[u8]>,
    id: &str,
    now: i64,
    cfg: &ReplayCacheConfig,
) -> Result<Vec<u8>, Error> {
    let mut cache = stored.map(ReplayCache::decode).unwrap_or_default();
    cache
        .insert(id, now, cfg.ttl_seconds, cfg.max_entries)
        .map_err(|_| Error::Replayed { status: cfg.status })?;
    Ok(cache.encode())
}

/// The stored bytes without `id`, or `None` if it was not there (nothing to write).
pub fn forget(stored: Option<&[u8]>, id: &str) -> Option<Vec<u8>> {
    let mut cache = ReplayCache::decode(stored?);
    cache.remove(id).then(|| cache.encode())
}
