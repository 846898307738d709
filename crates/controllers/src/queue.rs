//! A work queue with client-go's semantics (`k8s.io/client-go/util/workqueue`):
//! a key queued several times before a worker takes it is processed once; a
//! key is never processed by two workers at once (re-added while processing,
//! it is queued again when the worker is done); failed keys come back after
//! a per-key exponential backoff (5 ms doubling, capped).

use crate::informer::Key;
use crate::metrics::ControllerMetrics;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(300);

#[derive(Default)]
struct State {
    queue: VecDeque<Key>,
    dirty: HashSet<Key>,
    processing: HashSet<Key>,
    failures: HashMap<Key, u32>,
}

pub struct Queue {
    state: Mutex<State>,
    notify: Notify,
    metrics: Arc<ControllerMetrics>,
}

impl Queue {
    pub fn new(metrics: Arc<ControllerMetrics>) -> Arc<Self> {
        Arc::new(Queue { state: Mutex::new(State::default()), notify: Notify::new(), metrics })
    }

    pub fn name(&self) -> &'static str {
        self.metrics.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, key: Key) {
        let mut s = self.lock();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        self.metrics.add();
        if s.processing.contains(&key) {
            return;
        }
        s.queue.push_back(key);
        self.metrics.set_depth(s.queue.len());
        drop(s);
        self.notify.notify_one();
    }

    /// Adds `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: Key, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(q) = weak.upgrade() {
                q.add(key);
            }
        });
    }

    /// Adds `key` after its backoff (which doubles with each failure).
    pub fn add_rate_limited(self: &Arc<Self>, key: Key) {
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.metrics.retry();
        let delay = BASE_DELAY.saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(31))).min(MAX_DELAY);
        self.add_after(key, delay);
    }

    /// Clears the backoff of `key` (after a successful sync).
    pub fn forget(&self, key: &Key) {
        self.lock().failures.remove(key);
    }

    /// The next key to process; call [`Queue::done`] when finished with it.
    pub async fn get(&self) -> Key {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    self.metrics.set_depth(s.queue.len());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &Key) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            self.metrics.set_depth(s.queue.len());
            drop(s);
            self.notify.notify_one();
        }
    }
}

/// Runs `workers` loops that take keys from `queue` and run `sync` on them;
/// a failed sync is retried with backoff. Never returns.
pub async fn run_workers<F, Fut>(queue: Arc<Queue>, workers: usize, sync: F)
where
    F: Fn(Key) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), crate::SyncError>> + Send + 'static,
{
    let loops = (0..workers.max(1)).map(|_| {
        let queue = queue.clone();
        let sync = sync.clone();
        async move {
            loop {
                let key = queue.get().await;
                let result = sync(key.clone()).await;
                queue.metrics.sync(result.is_ok());
                match result {
                    Ok(()) => queue.forget(&key),
                    Err(e) => {
                        tracing::debug!(controller = queue.metrics.name, %key, error = %e, "sync failed, retrying");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }
    });
    futures::future::join_all(loops).await;
}

/// Enqueues every key of `keys()` now and then each `period` (a
/// level-triggered safety net). Never returns.
pub async fn resync<F>(queue: Arc<Queue>, period: Duration, keys: F)
where
    F: Fn() -> Vec<Key> + Send + Sync + 'static,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for k in keys() {
            queue.add(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Arc<Queue> {
        Queue::new(crate::metrics::register("queue-test"))
    }

    #[tokio::test]
    async fn coalesces_and_requeues_while_processing() {
        let q = q();
        q.add(Key::new("a", "1"));
        q.add(Key::new("a", "1"));
        q.add(Key::new("a", "2"));
        let k = q.get().await;
        assert_eq!(k, Key::new("a", "1"));
        // Re-added while processing: not handed out until done.
        q.add(Key::new("a", "1"));
        let k2 = q.get().await;
        assert_eq!(k2, Key::new("a", "2"));
        q.done(&k2);
        q.done(&k);
        let k3 = tokio::time::timeout(Duration::from_secs(1), q.get()).await.expect("requeued");
        assert_eq!(k3, Key::new("a", "1"));
        q.done(&k3);
        assert!(tokio::time::timeout(Duration::from_millis(50), q.get()).await.is_err(), "queue empty");
    }

    #[tokio::test]
    async fn rate_limited_backoff_grows() {
        let q = q();
        let k = Key::new("", "x");
        q.add_rate_limited(k.clone());
        let got = tokio::time::timeout(Duration::from_secs(1), q.get()).await.expect("after 5ms");
        q.done(&got);
        q.add_rate_limited(k.clone());
        q.add_rate_limited(k.clone());
        assert_eq!(q.lock().failures.get(&k), Some(&3));
        q.forget(&k);
        assert!(q.lock().failures.is_empty());
    }
}
