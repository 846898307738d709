//! `store`: a multi-version key-value store with etcd v3's semantics.
//!
//! One global, strictly increasing revision numbers every write; it is the
//! Kubernetes `resourceVersion`. Reads can be served at the latest or at an
//! older revision, writes are compare-and-swap on a key's `mod_revision`, and
//! watches replay every change after a revision, in order. Only `apiserver`
//! depends on this crate. Backends: [`SqliteStore`] (embedded, default) and
//! [`EtcdStore`] (an etcd v3 cluster; its KV and Watch map one to one).
//!
//! Depends on: rusqlite, etcd-client, tokio. Knows nothing about Kubernetes objects.

mod error;
mod etcd;
mod sqlite;

pub use error::{Error, Result};
pub use etcd::{EtcdOptions, EtcdStore, EtcdTls};
pub use sqlite::{SqliteOptions, SqliteStats, SqliteStore};

use futures::StreamExt;
use std::pin::Pin;
use std::sync::Arc;

/// A revision of the whole store (etcd's `header.revision`).
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (survives updates).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// A change seen by a watch. Events are delivered in revision order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created (`prev == None`) or updated.
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// The key was deleted at `revision`; `prev` is its last value.
    Delete { prev: KeyValue, revision: Revision },
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
    /// The key this event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// Options for [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Read at this revision (must not be compacted); `None` = latest.
    pub revision: Option<Revision>,
    /// At most this many keys; `None` or `Some(0)` = no limit.
    pub limit: Option<usize>,
    /// Only keys strictly greater than this one (for continue tokens).
    pub start_after: Option<String>,
}

/// Result of [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    pub kvs: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// Whether more keys follow the last one returned.
    pub more: bool,
    /// How many keys under the prefix were not returned (when `more`).
    pub remaining: u64,
}

/// A stream of watch events; ends when the store shuts down or the watcher
/// falls too far behind (then the caller re-lists, as with etcd).
pub type WatchStream = Pin<Box<dyn futures_core::Stream<Item = Result<Event>> + Send>>;

/// What a progress watch yields: a change, or word of how far it has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    Event(Event),
    /// Every change under the prefix with a revision up to this one has been
    /// yielded (etcd's progress notification). Sent after a
    /// [`ProgressRequests::request`], and by etcd now and then on its own.
    Progress(Revision),
}

/// A stream of [`WatchItem`]s; ends as a [`WatchStream`] does.
pub type ProgressWatchStream = Pin<Box<dyn futures_core::Stream<Item = Result<WatchItem>> + Send>>;

/// Asks a progress watch how far it has come (etcd's `RequestProgress`).
/// Requests made while one is still unanswered are answered once; a request
/// may go unanswered (etcd ignores one while the watch is catching up), so
/// the asker repeats it, as kube-apiserver's progress requester does.
#[derive(Clone, Debug, Default)]
pub struct ProgressRequests(Arc<tokio::sync::Notify>);

impl ProgressRequests {
    /// Ask for a [`WatchItem::Progress`].
    pub fn request(&self) {
        self.0.notify_one();
    }

    /// Wait for the next request (for backends).
    async fn requested(&self) {
        self.0.notified().await;
    }
}

/// The contract every backend meets (etcd v3's KV + Watch, narrowed to what the
/// API server uses). All methods are safe to call concurrently.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Latest revision of the store.
    async fn current_revision(&self) -> Result<Revision>;
    /// Oldest revision still readable (everything at or below the compacted
    /// revision except the latest value of each key is gone).
    async fn compacted_revision(&self) -> Result<Revision>;
    /// Value of `key` at `revision` (latest when `None`).
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>>;
    /// Keys starting with `prefix`, in key order.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;
    /// Create `key`; fails with [`Error::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;
    /// Replace `key` only if its `mod_revision` is still `expected`
    /// ([`Error::Conflict`] otherwise, [`Error::NotFound`] if absent).
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;
    /// Delete `key`, if `expected` is given only when its `mod_revision` still
    /// matches. Returns the deleted value and the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;
    /// Every change to keys under `prefix` with revision > `after`, in order,
    /// then live changes. [`Error::Compacted`] if `after` is below the
    /// compacted revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let items = self.watch_with_progress(prefix, after, ProgressRequests::default()).await?;
        Ok(Box::pin(items.filter_map(|item| async move {
            match item {
                Ok(WatchItem::Event(ev)) => Some(Ok(ev)),
                Ok(WatchItem::Progress(_)) => None,
                Err(e) => Some(Err(e)),
            }
        })))
    }
    /// [`Store::watch`], with a [`WatchItem::Progress`] in answer to each of
    /// `progress`'s requests (what kube-apiserver's watch cache uses to serve
    /// consistent reads from memory).
    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
        progress: ProgressRequests,
    ) -> Result<ProgressWatchStream>;
    /// Drop history at and below `revision` (latest values are kept).
    async fn compact(&self, revision: Revision) -> Result<()>;
}
