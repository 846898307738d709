//! FNV-1a hashing for the proxy's hot maps: they are keyed by our own strings and
//! hashes, and a sync with 10,000 services does tens of thousands of lookups (SipHash and
//! key allocations were most of a no-change sync).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = extend(if self.0 == 0 { OFFSET_BASIS } else { self.0 }, bytes);
    }

    fn write_u64(&mut self, v: u64) {
        // Keys that are already hashes (see `hash_parts`) are used as they are.
        self.0 ^= v;
    }
}

/// FNV-1a of `bytes`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    extend(OFFSET_BASIS, bytes)
}

fn extend(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// FNV-1a of `parts`, each followed by a 0xff separator: an identity key computed from
/// borrowed strings, without allocating.
pub(crate) fn hash_parts(parts: &[&str]) -> u64 {
    let mut h = Fnv::default();
    for part in parts {
        h.write(part.as_bytes());
        h.write(&[0xff]);
    }
    h.finish()
}
