//! The answer cache for names outside the cluster zone: positive answers kept at
//! most `max_ttl` and at most their own TTL, negative ones (NXDOMAIN, no data) at
//! most `negative_ttl` and at most the SOA minimum (RFC 2308), bounded in size
//! with least-recently-used eviction, and expired entries kept `stale` longer to
//! be served when the upstreams fail (RFC 8767).

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits of a DNS cache.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Most entries kept; the least recently used go first.
    pub capacity: usize,
    /// Longest a positive answer is kept (node-local-dns: `success 9984 30`).
    pub max_ttl: Duration,
    /// Longest a negative answer is kept (node-local-dns: `denial 9984 5`).
    pub negative_ttl: Duration,
    /// How long past its expiry an entry may still be served when every upstream
    /// fails (CoreDNS `serve_stale`).
    pub stale: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity: 9984,
            max_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            stale: Duration::from_secs(300),
        }
    }
}

/// The sections of a cached answer.
#[derive(Clone, Debug)]
pub(crate) struct CachedAnswer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl CachedAnswer {
    pub(crate) fn is_negative(&self) -> bool {
        self.rcode != ResponseCode::NoError || self.answers.is_empty()
    }

    /// The answer with every TTL at most `cap` and lowered by `age` seconds (0 for
    /// a stale answer).
    fn aged(&self, cap: u32, age: u32, stale: bool) -> CachedAnswer {
        let fix = |recs: &[Record]| {
            recs.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = if stale { 0 } else { r.ttl.min(cap).saturating_sub(age) };
                    r
                })
                .collect()
        };
        CachedAnswer {
            rcode: self.rcode,
            answers: fix(&self.answers),
            authorities: fix(&self.authorities),
            additionals: fix(&self.additionals),
        }
    }
}

pub(crate) enum Lookup {
    Fresh(CachedAnswer),
    /// Expired, but within the stale window: to be used only if upstreams fail.
    Stale(CachedAnswer),
    Miss,
}

type Key = (Name, RecordType, DNSClass);

struct Entry {
    answer: Arc<CachedAnswer>,
    stored: Instant,
    ttl: Duration,
    stamp: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    /// Recency order: stamp -> key; the smallest stamp is the least recently used.
    order: BTreeMap<u64, Key>,
    tick: u64,
}

impl Inner {
    fn touch(&mut self, key: &Key) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.map.get_mut(key) {
            self.order.remove(&e.stamp);
            e.stamp = tick;
            self.order.insert(tick, key.clone());
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.map.remove(key) {
            self.order.remove(&e.stamp);
        }
    }
}

/// A bounded DNS answer cache. Name comparison is case-insensitive.
pub(crate) struct DnsCache {
    cfg: CacheConfig,
    inner: Mutex<Inner>,
}

impl DnsCache {
    pub(crate) fn new(cfg: CacheConfig) -> DnsCache {
        DnsCache { cfg, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub(crate) fn get(&self, name: &Name, qtype: RecordType, class: DNSClass, now: Instant) -> Lookup {
        let key = (name.clone(), qtype, class);
        let mut inner = self.lock();
        let Some(e) = inner.map.get(&key) else { return Lookup::Miss };
        let age = now.saturating_duration_since(e.stored);
        let answer = e.answer.clone();
        let ttl = e.ttl;
        if age < ttl {
            inner.touch(&key);
            let secs = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
            let cap = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
            return Lookup::Fresh(answer.aged(cap, secs, false));
        }
        if age < ttl + self.cfg.stale {
            return Lookup::Stale(answer.aged(0, 0, true));
        }
        inner.remove(&key);
        Lookup::Miss
    }

    /// Keep an upstream answer if it is cacheable; returns it as a hit would serve
    /// it (TTLs capped), or `None` when it was not kept.
    pub(crate) fn insert(
        &self,
        name: &Name,
        qtype: RecordType,
        class: DNSClass,
        resp: &Message,
        now: Instant,
    ) -> Option<CachedAnswer> {
        if self.cfg.capacity == 0 || resp.truncation {
            return None;
        }
        let answer = CachedAnswer {
            rcode: resp.response_code,
            answers: resp.answers.clone(),
            authorities: resp.authorities.clone(),
            additionals: resp.additionals.clone(),
        };
        let ttl = match answer.rcode {
            ResponseCode::NoError if !answer.answers.is_empty() => {
                let min = answer.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
                Duration::from_secs(u64::from(min)).min(self.cfg.max_ttl)
            }
            ResponseCode::NoError | ResponseCode::NXDomain => {
                // RFC 2308 5: the negative TTL is min(SOA TTL, SOA minimum).
                let soa_ttl = answer.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                    _ => None,
                });
                match soa_ttl {
                    Some(t) => Duration::from_secs(u64::from(t)).min(self.cfg.negative_ttl),
                    None => self.cfg.negative_ttl,
                }
            }
            _ => return None,
        };
        let served = answer.aged(u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX), 0, false);
        let key = (name.clone(), qtype, class);
        let mut inner = self.lock();
        inner.remove(&key);
        inner.tick += 1;
        let stamp = inner.tick;
        inner.order.insert(stamp, key.clone());
        inner.map.insert(key, Entry { answer: Arc::new(answer), stored: now, ttl, stamp });
        while inner.map.len() > self.cfg.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else { break };
            inner.map.remove(&oldest);
        }
        Some(served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, SOA};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn positive(ttl: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(name("a.example."), ttl, RData::A(A::new(192, 0, 2, 1))));
        m
    }

    #[test]
    fn positive_answers_expire_at_their_ttl_capped_then_go_stale() {
        let c = DnsCache::new(CacheConfig::default());
        let t0 = Instant::now();
        let n = name("A.example.");
        assert!(c.insert(&n, RecordType::A, DNSClass::IN, &positive(300), t0).is_some());
        match c.get(&name("a.EXAMPLE."), RecordType::A, DNSClass::IN, t0 + Duration::from_secs(10)) {
            Lookup::Fresh(a) => assert_eq!(a.answers[0].ttl, 20, "capped at 30 s, 10 s old"),
            _ => panic!("expected a fresh hit"),
        }
        // Capped at 30 s although the record says 300.
        assert!(matches!(c.get(&n, RecordType::A, DNSClass::IN, t0 + Duration::from_secs(31)), Lookup::Stale(_)));
        assert!(matches!(c.get(&n, RecordType::A, DNSClass::IN, t0 + Duration::from_secs(331)), Lookup::Miss));
        // A short TTL wins over the cap.
        assert!(c.insert(&n, RecordType::A, DNSClass::IN, &positive(2), t0).is_some());
        assert!(matches!(c.get(&n, RecordType::A, DNSClass::IN, t0 + Duration::from_secs(3)), Lookup::Stale(_)));
    }

    #[test]
    fn negative_answers_are_capped_at_five_seconds() {
        let c = DnsCache::new(CacheConfig::default());
        let t0 = Instant::now();
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        let soa = SOA::new(name("ns.example."), name("h.example."), 1, 1, 1, 1, 3600);
        m.add_authority(Record::from_rdata(name("example."), 3600, RData::SOA(soa)));
        let n = name("nx.example.");
        assert!(c.insert(&n, RecordType::A, DNSClass::IN, &m, t0).is_some());
        assert!(matches!(c.get(&n, RecordType::A, DNSClass::IN, t0 + Duration::from_secs(4)), Lookup::Fresh(_)));
        assert!(matches!(c.get(&n, RecordType::A, DNSClass::IN, t0 + Duration::from_secs(6)), Lookup::Stale(_)));
        m.metadata.response_code = ResponseCode::ServFail;
        assert!(c.insert(&name("sf.example."), RecordType::A, DNSClass::IN, &m, t0).is_none());
    }

    #[test]
    fn least_recently_used_entries_are_evicted() {
        let c = DnsCache::new(CacheConfig { capacity: 3, ..Default::default() });
        let t0 = Instant::now();
        for i in 0..3 {
            c.insert(&name(&format!("n{i}.example.")), RecordType::A, DNSClass::IN, &positive(30), t0);
        }
        // Use n0, so n1 is now the least recently used.
        assert!(matches!(c.get(&name("n0.example."), RecordType::A, DNSClass::IN, t0), Lookup::Fresh(_)));
        c.insert(&name("n3.example."), RecordType::A, DNSClass::IN, &positive(30), t0);
        assert_eq!(c.len(), 3);
        assert!(matches!(c.get(&name("n1.example."), RecordType::A, DNSClass::IN, t0), Lookup::Miss));
        assert!(matches!(c.get(&name("n0.example."), RecordType::A, DNSClass::IN, t0), Lookup::Fresh(_)));
        assert!(matches!(c.get(&name("n3.example."), RecordType::A, DNSClass::IN, t0), Lookup::Fresh(_)));
    }
}
