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
//! to a store watch, which answers 410 Gone for a compacted one).
//!
//! Lists are served from memory too, as upstream's `ConsistentListFromCache`:
//! the cache follows the store with a progress watch, so
//! [`Cacher::wait_fresh`] can ask how far it has come and know when it holds
//! every change up to the store's current revision, even when the last writes
//! were to other resources. A client too
//! slow for the broadcast buffer is closed and re-watches from its last
//! revision, as upstream closes its slow watchers.

use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Event, KeyValue, ProgressRequests, Revision, Store, WatchItem};
use tokio::sync::{broadcast, watch};

/// Events kept for watches that resume from a revision (upstream sizes its
/// window by time and capacity; a few minutes of a busy resource fit here).
const WINDOW: usize = 20_000;
/// Events a client watch may fall behind before it is closed.
const FANOUT_BUFFER: usize = 8_192;
/// Wait before following the store again after its watch failed.
const RETRY: Duration = Duration::from_secs(1);
/// How often a waiting read asks the store watch for progress (upstream's
/// progress requester ticks every 100 ms while reads wait).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

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
    /// Asks the store watch how far it has come.
    progress: ProgressRequests,
    /// The revision the cache holds every change up to (events and progress).
    fresh: watch::Sender<Revision>,
    /// Lists served from memory, and consistent reads that had to go to the
    /// store because the cache did not catch up in time.
    lists: AtomicU64,
    fallbacks: AtomicU64,
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
        let cacher = Arc::new(Cacher {
            prefix,
            state: Mutex::new(state),
            tx,
            progress: ProgressRequests::default(),
            fresh: watch::Sender::new(revision),
            lists: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        });
        tokio::spawn(follow(store, Arc::downgrade(&cacher)));
        Ok(cacher)
    }

    /// The store watch has yielded everything up to `revision`.
    fn progressed(&self, revision: Revision) {
        self.advance(&mut lock(&self.state), revision);
    }

    /// Moves the cache's revision forward and wakes the reads waiting for it.
    fn advance(&self, s: &mut State, revision: Revision) {
        if revision > s.revision {
            s.revision = revision;
            self.fresh.send_replace(revision);
        }
    }

    /// Waits until the cache holds every change up to `revision`, asking the
    /// store watch for progress meanwhile; `false` if it did not get there
    /// within `timeout` (the caller reads the store instead).
    pub async fn wait_fresh(&self, revision: Revision, timeout: Duration) -> bool {
        let mut fresh = self.fresh.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *fresh.borrow_and_update() >= revision {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            self.progress.request();
            // Woken by any change; a progress request may go unanswered, so ask again.
            let _ = tokio::time::timeout_at(deadline.min(now + PROGRESS_EVERY), fresh.changed()).await;
        }
    }

    /// Counts a list served from memory (`true`) or sent to the store after
    /// the cache did not catch up (`false`), for `/metrics`.
    pub fn count_list(&self, from_cache: bool) {
        let counter = if from_cache { &self.lists } else { &self.fallbacks };
        counter.fetch_add(1, Ordering::Relaxed);
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
        self.advance(&mut s, ev.revision());
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
        self.fresh.send_replace(revision);
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

    /// What the cacher holds and has served.
    fn stats(&self) -> CacheStats {
        let s = lock(&self.state);
        CacheStats {
            prefix: self.prefix.clone(),
            objects: s.objects.len(),
            window: s.window.len(),
            bytes: s.bytes + s.window.iter().map(|e| 64 + e.key().len()).sum::<usize>(),
            lists: self.lists.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }
}

/// Applies the store's events to the cacher while it lives; re-lists after a failure.
async fn follow(store: Arc<dyn Store>, cacher: std::sync::Weak<Cacher>) {
    let (prefix, mut revision, progress) = match cacher.upgrade() {
        Some(c) => (c.prefix.clone(), lock(&c.state).revision, c.progress.clone()),
        None => return,
    };
    loop {
        match store.watch_with_progress(&prefix, revision, progress.clone()).await {
            Ok(mut events) => {
                while let Some(ev) = events.next().await {
                    let Some(c) = cacher.upgrade() else { return };
                    match ev {
                        Ok(WatchItem::Event(ev)) => {
                            revision = ev.revision();
                            c.apply(ev);
                        }
                        Ok(WatchItem::Progress(r)) => {
                            revision = revision.max(r);
                            c.progressed(r);
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
        let mut out: Vec<CacheStats> = cachers.values().map(|c| c.stats()).collect();
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
    /// Lists served from memory.
    pub lists: u64,
    /// Consistent lists that went to the store (the cache lagged).
    pub fallbacks: u64,
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
    // Upstream counts consistent reads by whether they fell back to etcd.
    let name = "apiserver_watch_cache_list_total";
    out.push_str(&format!(
        "# HELP {name} Lists served from the watch cache (fallback=false) or from the store because it lagged.\n# TYPE {name} counter\n"
    ));
    for s in stats {
        out.push_str(&format!("{name}{{prefix=\"{}\",fallback=\"false\"}} {}\n", s.prefix, s.lists));
        out.push_str(&format!("{name}{{prefix=\"{}\",fallback=\"true\"}} {}\n", s.prefix, s.fallbacks));
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

    /// Writes to other resources move the store's revision without an event
    /// here; the cache learns by asking for progress that it is still fresh.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fresh_through_progress() -> Result<(), Box<dyn std::error::Error>> {
        let store: Arc<dyn Store> = Arc::new(store::SqliteStore::open_in_memory()?);
        store.create("/r/a", v("a")).await?; // 1
        let cache = WatchCache::new(store.clone());
        let c = cache.cacher("/r/").await?;
        for i in 0..3 {
            store.create(&format!("/other/{i}"), v("x")).await?; // 2..=4
        }
        assert!(c.wait_fresh(4, Duration::from_secs(5)).await, "progress brought the cache to 4");
        assert_eq!(c.list("/r/").1, 4);
        assert!(!c.wait_fresh(9, Duration::from_millis(300)).await, "revision 9 does not exist yet");
        store.create("/r/b", v("b")).await?; // 5
        assert!(c.wait_fresh(5, Duration::from_secs(5)).await);
        assert_eq!(c.list("/r/").0.len(), 2);
        Ok(())
    }
}
