//! The etcd v3 backend (crate `etcd-client`): the [`Store`] contract maps
//! one to one onto etcd's KV and Watch APIs, as in kube-apiserver's
//! `storage/etcd3/store.go`:
//!
//! - revisions are etcd's revisions (a fresh etcd is at revision 1);
//! - create is a txn `create_revision(key) == 0 ? put : get`, update and
//!   delete compare the key's `mod_revision` (and that it exists);
//! - lists are ranges at a revision with `limit`, continuing after the last
//!   key, `count` telling how many are left;
//! - watches start at `after + 1` with `prev_kv` and progress notifications;
//!   a watch at a compacted revision is [`Error::Compacted`];
//! - every key lives under a per-cluster prefix (`--etcd-prefix`, default
//!   `/rkube`), so several clusters can share one etcd.
//!
//! etcd does not tell the compacted revision directly; a watch at revision 1
//! does (its `compact_revision`), read at open and after each compaction.

use crate::{
    Error, Event, KeyValue, ListOptions, ListResult, ProgressRequests, ProgressWatchStream, Result, Revision, Store,
    WatchItem,
};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one etcd request may take before it fails (kube-apiserver's
/// default request timeout is 60 s; a shorter one keeps the API answering).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdOptions {
    /// `http://host:2379` (or `https://...`) of each member.
    pub endpoints: Vec<String>,
    /// Every key is stored under this prefix (no trailing `/`).
    pub prefix: String,
    /// TLS to the members (`https://` endpoints), as kube-apiserver's
    /// `--etcd-cafile`/`--etcd-certfile`/`--etcd-keyfile`.
    pub tls: Option<EtcdTls>,
}

/// PEM files for TLS to etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    /// CA that signed the members' serving certificates.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate and key, when etcd checks clients (`--client-cert-auth`).
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

impl EtcdTls {
    fn options(&self) -> Result<etcd_client::TlsOptions> {
        let read = |p: &std::path::Path, what: &'static str| {
            std::fs::read(p).map_err(|e| Error::Backend {
                context: "reading the etcd TLS files",
                message: format!("{what} {}: {e}", p.display()),
            })
        };
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &self.ca_file {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca, "--etcd-cafile")?));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                tls = tls
                    .identity(etcd_client::Identity::from_pem(read(c, "--etcd-certfile")?, read(k, "--etcd-keyfile")?))
            }
            (None, None) => {}
            _ => {
                return Err(Error::Backend {
                    context: "reading the etcd TLS files",
                    message: "--etcd-certfile and --etcd-keyfile go together: give both or neither".into(),
                })
            }
        }
        Ok(tls)
    }
}

/// A [`Store`] on an etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    compacted: Arc<AtomicI64>,
}

/// Attempts per request when members cannot be connected to (a few rounds
/// over a 3-member cluster).
const CONNECT_RETRIES: u32 = 8;

/// How long requests are retried while etcd elects a leader (an election
/// takes about a second; a lost quorum is reported after this).
const TRANSIENT_DEADLINE: Duration = Duration::from_secs(8);

/// An etcd answer worth retrying: `Some(false)` when the request was surely not
/// applied (no leader yet), `Some(true)` when it may have been (the leader
/// changed or the request timed out after it was proposed), `None` otherwise.
fn transient(e: &etcd_client::Error) -> Option<bool> {
    let etcd_client::Error::GRpcStatus(s) = e else { return None };
    if s.code() != tonic::Code::Unavailable {
        return None;
    }
    let m = s.message();
    if m.contains("no leader") {
        Some(false)
    } else if m.contains("leader changed") || m.contains("timed out") {
        Some(true)
    } else {
        None
    }
}

/// Whether the request failed before it was sent (no connection to the member).
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable && s.message().contains("connect error")
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

fn backend(context: &'static str) -> impl Fn(etcd_client::Error) -> Error {
    move |e| classify(context, e)
}

/// etcd's answer as a store error: a lost quorum, a timeout or a member
/// that cannot be reached is [`Error::Unavailable`] (the API says 503).
fn classify(context: &'static str, e: etcd_client::Error) -> Error {
    use tonic::Code;
    let message = e.to_string();
    if message.contains("required revision has been compacted") {
        return Error::Compacted { requested: 0, compacted: 0 };
    }
    let unavailable = match &e {
        etcd_client::Error::GRpcStatus(s) => {
            matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled)
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    };
    if unavailable {
        Error::Unavailable { context, message }
    } else {
        Error::Backend { context, message }
    }
}

/// The key's current value from a transaction's `or_else` get.
fn current_kv(resp: &etcd_client::TxnResponse) -> Option<etcd_client::KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

/// The first key after every key starting with `prefix` (etcd's prefix range end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connect and check that etcd answers (a clear error naming the endpoints otherwise).
    pub async fn connect(opts: EtcdOptions) -> Result<EtcdStore> {
        let named = opts.endpoints.join(",");
        let mut connect = ConnectOptions::new().with_timeout(REQUEST_TIMEOUT).with_connect_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = &opts.tls {
            connect = connect.with_tls(tls.options()?);
        }
        let unreachable = |e: String| Error::Backend {
            context: "connecting to etcd",
            message: format!("etcd at {named} cannot be reached: {e}"),
        };
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, Client::connect(&opts.endpoints, Some(connect)))
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", CONNECT_TIMEOUT * 2)))?
            .map_err(|e| unreachable(e.to_string()))?;
        let store =
            EtcdStore { client, prefix: opts.prefix.trim_end_matches('/').to_string(), compacted: Arc::default() };
        // Any member answering a read will do (one may be down).
        tokio::time::timeout(REQUEST_TIMEOUT, store.current_revision())
            .await
            .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let c = store.probe_compacted().await?;
        store.compacted.store(c, Ordering::SeqCst);
        Ok(store)
    }

    /// Runs `op` on a client, again (up to a few times, briefly spaced) when
    /// the request never left: the balanced channel picked a member that cannot
    /// be connected to. Anything that may have reached etcd is not retried.
    async fn retry<T, F, Fut>(&self, mut op: F) -> std::result::Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0u32;
        loop {
            match op(self.client.clone()).await {
                Err(e) if attempt < CONNECT_RETRIES && never_sent(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    /// A read, retried while etcd is between leaders (reads are idempotent),
    /// for at most [`TRANSIENT_DEADLINE`].
    async fn get_raw(
        &self,
        key: Vec<u8>,
        opts: GetOptions,
    ) -> std::result::Result<etcd_client::GetResponse, etcd_client::Error> {
        let start = std::time::Instant::now();
        let mut attempt = 0u64;
        loop {
            let res = self
                .retry(|mut c| {
                    let (key, opts) = (key.clone(), opts.clone());
                    async move { c.get(key, Some(opts)).await }
                })
                .await;
            match res {
                Err(e) if transient(&e).is_some() && start.elapsed() < TRANSIENT_DEADLINE => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis((50 * attempt).min(500))).await;
                }
                other => return other,
            }
        }
    }

    /// A transaction, retried while etcd is between leaders. The flag says
    /// whether an earlier attempt may have been applied (etcd answered
    /// "leader changed" or timed out after it was proposed): a compare that
    /// then fails may be this very write, which the caller checks.
    async fn txn_raw(&self, txn: Txn) -> std::result::Result<(etcd_client::TxnResponse, bool), etcd_client::Error> {
        let start = std::time::Instant::now();
        let mut ambiguous = false;
        let mut attempt = 0u64;
        loop {
            let res = self
                .retry(|mut c| {
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })
                .await;
            match res {
                Ok(resp) => return Ok((resp, ambiguous)),
                Err(e) => match transient(&e) {
                    Some(maybe_applied) if start.elapsed() < TRANSIENT_DEADLINE => {
                        ambiguous |= maybe_applied;
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis((50 * attempt).min(500))).await;
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    fn key(&self, k: &str) -> Vec<u8> {
        format!("{}{k}", self.prefix).into_bytes()
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        let key = String::from_utf8_lossy(kv.key());
        let key = key.strip_prefix(self.prefix.as_str()).unwrap_or(&key).to_string();
        KeyValue {
            key,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }

    /// The compacted revision: the oldest revision a read still succeeds at
    /// (a range at `r` fails exactly when `r` is below it), found by bisection
    /// over `1..=current` (0 when nothing was compacted).
    async fn probe_compacted(&self) -> Result<Revision> {
        let current = self.current_revision().await?;
        let probe = self.key("\u{0}compaction-probe");
        let (mut lo, mut hi) = (1, current.max(1));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get_raw(probe.clone(), GetOptions::new().with_count_only().with_revision(mid)).await {
                Ok(_) => hi = mid,
                Err(e) if e.to_string().contains("required revision has been compacted") => lo = mid + 1,
                Err(e) => return Err(backend("reading the etcd compaction")(e)),
            }
        }
        Ok(if lo > 1 { lo } else { 0 })
    }

    async fn future_check(&self, requested: Revision) -> Result<()> {
        let current = self.current_revision().await?;
        if requested > current {
            return Err(Error::FutureRevision { requested, current });
        }
        Ok(())
    }

    fn compacted_error(&self, requested: Revision) -> Error {
        Error::Compacted { requested, compacted: self.compacted.load(Ordering::SeqCst) }
    }

    /// Map an etcd read error at `revision`: compacted or in the future.
    async fn read_error(&self, e: etcd_client::Error, revision: Option<Revision>) -> Error {
        let message = e.to_string();
        if message.contains("required revision has been compacted") {
            if let Ok(c) = self.probe_compacted().await {
                self.compacted.fetch_max(c, Ordering::SeqCst);
            }
            return self.compacted_error(revision.unwrap_or(0));
        }
        if message.contains("required revision is a future revision") {
            let current = self.current_revision().await.unwrap_or(0);
            return Error::FutureRevision { requested: revision.unwrap_or(0), current };
        }
        classify("reading from etcd", e)
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .get_raw(self.key("/"), GetOptions::new().with_count_only().with_limit(1))
            .await
            .map_err(backend("reading the etcd revision"))?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.compacted.load(Ordering::SeqCst))
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        // Revision 0 is before the first write (etcd reads it as "latest").
        if revision.is_some_and(|r| r < 1) {
            return Ok(None);
        }
        if let Some(r) = revision {
            if r < self.compacted.load(Ordering::SeqCst) {
                return Err(self.compacted_error(r));
            }
        }
        let mut opts = GetOptions::new();
        if let Some(r) = revision {
            opts = opts.with_revision(r);
        }
        match self.get_raw(self.key(key), opts).await {
            Ok(resp) => Ok(resp.kvs().first().map(|kv| self.kv(kv))),
            Err(e) => Err(self.read_error(e, revision).await),
        }
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        if let Some(r) = opts.revision {
            if r < 1 {
                return Ok(ListResult { kvs: Vec::new(), revision: r, more: false, remaining: 0 });
            }
            if r < self.compacted.load(Ordering::SeqCst) {
                return Err(self.compacted_error(r));
            }
        }
        let start = self.key(prefix);
        let end = prefix_end(&start);
        let from = match &opts.start_after {
            // The first key after `start_after`: itself followed by a NUL.
            Some(after) => {
                let mut k = self.key(after);
                k.push(0);
                k.max(start.clone())
            }
            None => start.clone(),
        };
        if from >= end {
            let revision = match opts.revision {
                Some(r) => r,
                None => self.current_revision().await?,
            };
            return Ok(ListResult { kvs: Vec::new(), revision, more: false, remaining: 0 });
        }
        let limit = opts.limit.filter(|l| *l > 0).map(|l| l as i64).unwrap_or(0);
        let mut g = GetOptions::new().with_range(end).with_limit(limit);
        if let Some(r) = opts.revision {
            g = g.with_revision(r);
        }
        let resp = match self.get_raw(from, g).await {
            Ok(r) => r,
            Err(e) => return Err(self.read_error(e, opts.revision).await),
        };
        let kvs: Vec<KeyValue> = resp.kvs().iter().map(|kv| self.kv(kv)).collect();
        let count = resp.count().max(0) as u64;
        let revision = opts.revision.unwrap_or_else(|| resp.header().map(|h| h.revision()).unwrap_or(0));
        let remaining = count.saturating_sub(kvs.len() as u64);
        Ok(ListResult { kvs, revision, more: resp.more(), remaining })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let k = self.key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k.clone(), value.clone(), None)])
            .or_else([TxnOp::get(k, None)]);
        let (resp, ambiguous) = self.txn_raw(txn).await.map_err(backend("creating in etcd"))?;
        if !resp.succeeded() {
            // After an ambiguous attempt, the key holding exactly this value is our own write.
            if ambiguous {
                if let Some(kv) = current_kv(&resp).filter(|kv| kv.value() == value.as_slice()) {
                    return Ok(self.kv(&kv));
                }
            }
            return Err(Error::AlreadyExists { key: key.to_string() });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok(KeyValue { key: key.to_string(), value, create_revision: rev, mod_revision: rev })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let k = self.key(key);
        let txn = Txn::new()
            .when([
                Compare::version(k.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(k.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(k.clone(), value.clone(), Some(PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(k, None)]);
        let (resp, ambiguous) = self.txn_raw(txn).await.map_err(backend("updating in etcd"))?;
        let ops = resp.op_responses();
        if !resp.succeeded() {
            if ambiguous {
                let ours =
                    current_kv(&resp).filter(|kv| kv.value() == value.as_slice() && kv.mod_revision() > expected);
                if let Some(kv) = ours {
                    return Ok(self.kv(&kv));
                }
            }
            let current = current_kv(&resp).map(|kv| kv.mod_revision());
            return Err(match current {
                None => Error::NotFound { key: key.to_string() },
                Some(actual) => Error::Conflict { key: key.to_string(), expected, actual },
            });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let created = ops
            .iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(p) => p.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .unwrap_or(rev);
        Ok(KeyValue { key: key.to_string(), value, create_revision: created, mod_revision: rev })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let k = self.key(key);
        let mut compares = vec![Compare::version(k.clone(), CompareOp::Greater, 0)];
        if let Some(e) = expected {
            compares.push(Compare::mod_revision(k.clone(), CompareOp::Equal, e));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(k.clone(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(k, None)]);
        // A delete retried after an ambiguous attempt that was applied reports
        // NotFound: the caller sees the key gone either way.
        let (resp, _) = self.txn_raw(txn).await.map_err(backend("deleting in etcd"))?;
        let ops = resp.op_responses();
        if !resp.succeeded() {
            let current = current_kv(&resp).map(|kv| kv.mod_revision());
            return Err(match current {
                None => Error::NotFound { key: key.to_string() },
                Some(actual) => Error::Conflict { key: key.to_string(), expected: expected.unwrap_or(0), actual },
            });
        }
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let prev = ops
            .iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().map(|kv| self.kv(kv)),
                _ => None,
            })
            .ok_or_else(|| Error::NotFound { key: key.to_string() })?;
        Ok((prev, rev))
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after: Revision,
        progress: ProgressRequests,
    ) -> Result<ProgressWatchStream> {
        if after < self.compacted.load(Ordering::SeqCst) {
            return Err(self.compacted_error(after));
        }
        let start = self.key(prefix);
        let opts = WatchOptions::new()
            .with_range(prefix_end(&start))
            .with_start_revision(after + 1)
            .with_prev_key()
            .with_progress_notify();
        // etcd-client's `watch` has already read the "created" answer; a watch
        // whose start was compacted is canceled only in a later message, so
        // ask first with a count-only range at `after` (it fails exactly when
        // `after` is below the compacted revision).
        if after >= 1 {
            let probe = GetOptions::new().with_range(prefix_end(&start)).with_count_only().with_revision(after);
            if let Err(e) = self.get_raw(start.clone(), probe).await {
                return Err(match self.read_error(e, Some(after)).await {
                    // A watch from the future is fine for etcd and for the contract.
                    Error::FutureRevision { .. } => return self.open_watch(start, opts, progress).await,
                    other => other,
                });
            }
        }
        self.open_watch(start, opts, progress).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.future_check(revision).await?;
        if revision <= self.compacted.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.retry(|mut c| async move { c.compact(revision, None).await }).await {
            Ok(_) => {}
            // Compacted further already (by another server): the same outcome.
            Err(e) if e.to_string().contains("required revision has been compacted") => {}
            Err(e) => return Err(backend("compacting etcd")(e)),
        }
        self.compacted.fetch_max(revision, Ordering::SeqCst);
        Ok(())
    }
}

impl EtcdStore {
    /// The watch itself: events as etcd sends them, its progress
    /// notifications (asked for on `progress`'s requests), a later compaction
    /// as an [`Error::Compacted`] item, then the end.
    async fn open_watch(
        &self,
        start: Vec<u8>,
        opts: WatchOptions,
        progress: ProgressRequests,
    ) -> Result<ProgressWatchStream> {
        let (watcher, stream) = self
            .retry(|mut c| {
                let (start, opts) = (start.clone(), opts.clone());
                async move { c.watch(start, Some(opts)).await }
            })
            .await
            .map_err(backend("watching etcd"))?;
        let state = EtcdWatch { me: self.clone(), watcher, stream, pending: VecDeque::new(), done: false, progress };
        Ok(Box::pin(futures::stream::unfold(state, |mut w| async move { w.next().await.map(|item| (item, w)) })))
    }

    fn events(&self, resp: &etcd_client::WatchResponse) -> Vec<Event> {
        resp.events()
            .iter()
            .filter_map(|e| {
                let kv = e.kv()?;
                let prev = e.prev_kv().map(|p| self.kv(p));
                Some(match e.event_type() {
                    EventType::Put => Event::Put { kv: self.kv(kv), prev },
                    EventType::Delete => {
                        let revision = kv.mod_revision();
                        let prev = prev.unwrap_or_else(|| KeyValue {
                            key: self.kv(kv).key,
                            value: Vec::new(),
                            create_revision: 0,
                            mod_revision: 0,
                        });
                        Event::Delete { prev, revision }
                    }
                })
            })
            .collect()
    }
}

/// State of one watch stream (one gRPC stream with one etcd watcher, so a
/// progress request is about this watch alone).
struct EtcdWatch {
    me: EtcdStore,
    watcher: etcd_client::Watcher,
    stream: etcd_client::WatchStream,
    pending: VecDeque<Result<WatchItem>>,
    done: bool,
    progress: ProgressRequests,
}

impl EtcdWatch {
    async fn next(&mut self) -> Option<Result<WatchItem>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            let message = tokio::select! {
                m = self.stream.message() => m,
                () = self.progress.requested() => {
                    // Unanswered if the stream is gone; its end comes next.
                    if let Err(e) = self.watcher.request_progress().await {
                        tracing::debug!(error = %e, "etcd progress request failed");
                    }
                    continue;
                }
            };
            match message {
                Ok(Some(resp)) => {
                    if resp.compact_revision() > 0 {
                        self.me.compacted.fetch_max(resp.compact_revision(), Ordering::SeqCst);
                        let c = self.me.compacted.load(Ordering::SeqCst);
                        self.done = true;
                        return Some(Err(Error::Compacted { requested: c, compacted: c }));
                    }
                    if resp.canceled() {
                        return None;
                    }
                    let events = self.me.events(&resp);
                    if events.is_empty() && !resp.created() {
                        // A progress notification: no events, the stream's revision.
                        if let Some(h) = resp.header() {
                            return Some(Ok(WatchItem::Progress(h.revision())));
                        }
                        continue;
                    }
                    self.pending.extend(events.into_iter().map(|e| Ok(WatchItem::Event(e))));
                }
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(classify("watching etcd", e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
