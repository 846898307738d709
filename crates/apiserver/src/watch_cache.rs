//! The API server's watch cache, as kube-apiserver's `storage/cacher`: one
//! store watch per resource, whatever the number of clients. A [`Cacher`]
//! lists its resource's key prefix once, then follows the store; it keeps
//! every object's latest value and a window of recent events, and fans each
//! event out to the client watches through one broadcast channel.
//!
//! A client watch from a revision inside the window is replayed from memory,
//! then streamed live; one that starts with the current state (no
//! resourceVersion, `"0"`, `sendInitialEvents`) gets it from memory too.
//! Older or future revisions are the store's business (the caller falls back
//! to a store watch, which answers 410 Gone for a compacted one). A client too
//! slow for the broadcast buffer is closed and re-watches from its last
//! revision, as upstream closes its slow watchers.

use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Event, KeyValue, Revision, Store};
use tokio::sync::broadcast;

/// Events kept for watches that resume from a revision (upstream sizes its
/// window by time and capacity; a few minutes of a busy resource fit here).
const WINDOW: usize = 20_000;
/// Events a client watch may fall behind before it is closed.
const FANOUT_BUFFER: usize = 8_192;
/// Wait before following the store again after its watch failed.
const RETRY: Duration = Duration::from_secs(1);

/// What the cacher sends to client watches.
#[derive(Clone, Debug)]
pub enum Message {
    Event(Arc<Event>),
    /// The cacher re-listed (its store watch failed): events may be missing,
    /// so every client watch ends and re-watches.
    Reset,
}

struct State {
    objects: BTreeMap<String, KeyValue>,
    /// Revision the cache is at (every event up to it is applied).
    revision: Revision,
    /// Events after `floor`, oldest first.
    window: VecDeque<Arc<Event>>,
    /// The window holds every event with a revision above this one.
    floor: Revision,
    /// Approximate bytes held by `objects` (for `/metrics`).
    bytes: usize,
}

/// The cache of one resource's key prefix; see the module docs.
pub struct Cacher {
    prefix: String,
    state: Mutex<State>,
    tx: broadcast::Sender<Message>,
}

/// A client watch served from the cache.
pub struct CachedWatch {
    /// Events before the live stream: the window's replay, or the current state as puts.
    pub replay: Vec<Arc<Event>>,
    /// The revision the replay ends at (the current state's, for an initial state).
    pub revision: Revision,
    pub live: broadcast::Receiver<Message>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Each update is applied whole under the lock; a panic elsewhere cannot
    // leave the state half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn kv_bytes(kv: &KeyValue) -> usize {
    kv.key.len() + kv.value.len() + 32
}

impl Cacher {
    /// Lists `prefix`, then follows the store in a task of its own.
    async fn start(store: Arc<dyn Store>, prefix: String) -> Result<Arc<Cacher>, store::Error> {
        let (kvs, revision) = crate::store_view::list_all(store.as_ref(), &prefix).await?;
        let bytes = kvs.iter().map(kv_bytes).sum();
        let objects = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        let (tx, _) = broadcast::channel(FANOUT_BUFFER);
        let state = State { objects, revision, window: VecDeque::new(), floor: revision, bytes };
        let cacher = Arc::new(Cacher { prefix, state: Mutex::new(state), tx });
        tokio::spawn(follow(store, Arc::downgrade(&cacher)));
        Ok(cacher)
    }

    fn apply(&self, ev: Event) {
        let ev = Arc::new(ev);
        let mut s = lock(&self.state);
        match &*ev {
            Event::Put { kv, .. } => {
                s.bytes += kv_bytes(kv);
                if let Some(old) = s.objects.insert(kv.key.clone(), kv.clone()) {
                    s.bytes = s.bytes.saturating_sub(kv_bytes(&old));
                }
            }
            Event::Delete { prev, .. } => {
                if let Some(old) = s.objects.remove(&prev.key) {
                    s.bytes = s.bytes.saturating_sub(kv_bytes(&old));
                }
            }
        }
        s.revision = s.revision.max(ev.revision());
        s.window.push_back(ev.clone());
        if s.window.len() > WINDOW {
            if let Some(old) = s.window.pop_front() {
                s.floor = old.revision();
            }
        }
        // Sent under the lock, so a watch that subscribes under it misses nothing
        // and gets nothing twice. No receiver is not an error.
        let _ = self.tx.send(Message::Event(ev));
    }

    fn reset(&self, kvs: Vec<KeyValue>, revision: Revision) {
        let mut s = lock(&self.state);
        s.bytes = kvs.iter().map(kv_bytes).sum();
        s.objects = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        s.revision = revision;
        s.window.clear();
        s.floor = revision;
        let _ = self.tx.send(Message::Reset);
    }

    /// Changes under `prefix` after revision `after`, if the window still
    /// holds them and the cache has reached `after`; `None` otherwise.
    pub fn watch_from(&self, prefix: &str, after: Revision) -> Option<CachedWatch> {
        let s = lock(&self.state);
        if after < s.floor || after > s.revision {
            return None;
        }
        // The window is in revision order: skip what is not after `after`.
        let start = s.window.partition_point(|e| e.revision() <= after);
        let replay = s.window.range(start..).filter(|e| e.key().starts_with(prefix)).cloned().collect();
        Some(CachedWatch { replay, revision: s.revision, live: self.tx.subscribe() })
    }

    /// The current objects under `prefix` (as puts, in key order) and the live changes after them.
    pub fn watch_current(&self, prefix: &str) -> CachedWatch {
        let s = lock(&self.state);
        let replay = s
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| Arc::new(Event::Put { kv: kv.clone(), prev: None }))
            .collect();
        CachedWatch { replay, revision: s.revision, live: self.tx.subscribe() }
    }

    /// The current objects under `prefix` and the revision they are at.
    pub fn list(&self, prefix: &str) -> (Vec<KeyValue>, Revision) {
        let s = lock(&self.state);
        let kvs = s
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        (kvs, s.revision)
    }

    /// Objects, window length and approximate bytes held.
    pub fn stats(&self) -> (usize, usize, usize) {
        let s = lock(&self.state);
        (s.objects.len(), s.window.len(), s.bytes + s.window.iter().map(|e| 64 + e.key().len()).sum::<usize>())
    }
}

/// Applies the store's events to the cacher while it lives; re-lists after a failure.
async fn follow(store: Arc<dyn Store>, cacher: std::sync::Weak<Cacher>) {
    let (prefix, mut revision) = match cacher.upgrade() {
        Some(c) => (c.prefix.clone(), lock(&c.state).revision),
        None => return,
    };
    loop {
        match store.watch(&prefix, revision).await {
            Ok(mut events) => {
                while let Some(ev) = events.next().await {
                    let Some(c) = cacher.upgrade() else { return };
                    match ev {
                        Ok(ev) => {
                            revision = ev.revision();
                            c.apply(ev);
                        }
                        Err(e) => {
                            tracing::warn!(prefix = %prefix, error = %e, "watch cache: store watch failed; re-listing");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(prefix = %prefix, error = %e, "watch cache: store watch could not start"),
        }
        tokio::time::sleep(RETRY).await;
        let Some(c) = cacher.upgrade() else { return };
        match crate::store_view::list_all(store.as_ref(), &prefix).await {
            Ok((kvs, r)) => {
                revision = r;
                c.reset(kvs, r);
            }
            Err(e) => tracing::warn!(prefix = %prefix, error = %e, "watch cache: re-listing failed"),
        }
    }
}

/// Every resource's cacher, made on first use.
pub struct WatchCache {
    store: Arc<dyn Store>,
    cachers: tokio::sync::Mutex<HashMap<String, Arc<Cacher>>>,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>) -> WatchCache {
        WatchCache { store, cachers: Default::default() }
    }

    /// The cacher of a resource's key prefix (all namespaces).
    pub async fn cacher(&self, resource_prefix: &str) -> Result<Arc<Cacher>, store::Error> {
        let mut cachers = self.cachers.lock().await;
        if let Some(c) = cachers.get(resource_prefix) {
            return Ok(c.clone());
        }
        let c = Cacher::start(self.store.clone(), resource_prefix.to_string()).await?;
        cachers.insert(resource_prefix.to_string(), c.clone());
        Ok(c)
    }

    /// What each cacher holds, by key prefix.
    pub async fn stats(&self) -> Vec<CacheStats> {
        let cachers = self.cachers.lock().await;
        let mut out: Vec<CacheStats> = cachers
            .iter()
            .map(|(p, c)| {
                let (objects, window, bytes) = c.stats();
                CacheStats { prefix: p.clone(), objects, window, bytes }
            })
            .collect();
        out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        out
    }
}

/// What one cacher holds.
pub struct CacheStats {
    pub prefix: String,
    pub objects: usize,
    /// Events kept for resuming watches.
    pub window: usize,
    /// Approximate bytes of objects and window.
    pub bytes: usize,
}

/// The watch cache's gauges in the Prometheus text format (upstream has
/// `apiserver_watch_cache_resource_version` and friends).
pub fn render_metrics(stats: &[CacheStats]) -> String {
    type Gauge = (&'static str, &'static str, fn(&CacheStats) -> usize);
    let gauges: [Gauge; 3] = [
        ("apiserver_watch_cache_objects", "Objects held by the watch cache, by key prefix.", |s| s.objects),
        ("apiserver_watch_cache_window_events", "Recent events kept for resuming watches.", |s| s.window),
        ("apiserver_watch_cache_bytes", "Approximate bytes held by the watch cache.", |s| s.bytes),
    ];
    let mut out = String::new();
    for (name, help, get) in gauges {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for s in stats {
            out.push_str(&format!("{name}{{prefix=\"{}\"}} {}\n", s.prefix, get(s)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    async fn next(rx: &mut broadcast::Receiver<Message>) -> Arc<Event> {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Ok(Message::Event(e))) => e,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// One store watch serves many: replay from a revision, the current state,
    /// namespaces as key prefixes, and live events in order without gaps.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replays_and_streams() -> Result<(), Box<dyn std::error::Error>> {
        let store: Arc<dyn Store> = Arc::new(store::SqliteStore::open_in_memory()?);
        store.create("/r/a/1", v("a1")).await?; // 1
        store.create("/r/b/1", v("b1")).await?; // 2
        let cache = WatchCache::new(store.clone());
        let c = cache.cacher("/r/").await?;
        assert!(c.watch_from("/r/", 1).is_none(), "before the cache started: the store's business");
        let mut current = c.watch_current("/r/a/");
        assert_eq!(current.replay.len(), 1);
        assert_eq!(current.revision, 2);
        store.update("/r/a/1", v("a1'"), 1).await?; // 3
        store.create("/r/b/2", v("b2")).await?; // 4
        store.delete("/r/b/1", None).await?; // 5
        assert_eq!(next(&mut current.live).await.revision(), 3);
        // Wait for the cache to catch up, then resume from revision 3.
        while lock(&c.state).revision < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut from3 = c.watch_from("/r/b/", 3).expect("in the window");
        let revs: Vec<Revision> = from3.replay.iter().map(|e| e.revision()).collect();
        assert_eq!(revs, vec![4, 5]);
        assert!(c.watch_from("/r/", 6).is_none(), "a future revision");
        store.create("/r/b/3", v("b3")).await?; // 6
        assert_eq!(next(&mut from3.live).await.revision(), 6);
        let (kvs, rev) = c.list("/r/b/");
        assert_eq!((kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), rev), (vec!["/r/b/2", "/r/b/3"], 6));
        assert_eq!(cache.stats().await[0].objects, 3);
        Ok(())
    }
}
