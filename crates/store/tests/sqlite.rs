//! Tests of the SQLite backend against a real database file.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use store::{Error, Event, KeyValue, ListOptions, Revision, SqliteOptions, SqliteStore, Store, WatchStream};

type TestResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn open(dir: &tempfile::TempDir) -> store::Result<SqliteStore> {
    SqliteStore::open(&dir.path().join("store.db"))
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

async fn next_event(w: &mut WatchStream) -> store::Result<Event> {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("no watch event within 10s"),
    }
}

#[tokio::test]
async fn crud_and_conflicts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    assert_eq!(s.current_revision().await?, 0);
    assert_eq!(s.compacted_revision().await?, 0);
    assert_eq!(s.get("/a", None).await?, None);

    let a = s.create("/a", v("1")).await?;
    assert_eq!(a, KeyValue { key: "/a".into(), value: v("1"), create_revision: 1, mod_revision: 1 });
    assert!(matches!(s.create("/a", v("x")).await, Err(Error::AlreadyExists { key }) if key == "/a"));
    // A failed write does not consume a revision.
    assert_eq!(s.current_revision().await?, 1);

    let a2 = s.update("/a", v("2"), 1).await?;
    assert_eq!((a2.create_revision, a2.mod_revision), (1, 2));
    assert!(matches!(s.update("/a", v("3"), 1).await, Err(Error::Conflict { expected: 1, actual: 2, .. })));
    assert!(matches!(s.update("/nope", v("3"), 1).await, Err(Error::NotFound { .. })));
    assert_eq!(s.get("/a", None).await?, Some(a2.clone()));

    assert!(matches!(s.delete("/a", Some(1)).await, Err(Error::Conflict { expected: 1, actual: 2, .. })));
    assert!(matches!(s.delete("/nope", None).await, Err(Error::NotFound { .. })));
    let (deleted, rev) = s.delete("/a", Some(2)).await?;
    assert_eq!((deleted, rev), (a2, 3));
    assert_eq!(s.get("/a", None).await?, None);
    assert!(matches!(s.update("/a", v("4"), 2).await, Err(Error::NotFound { .. })));

    // Re-create: a new create_revision.
    let a3 = s.create("/a", v("5")).await?;
    assert_eq!((a3.create_revision, a3.mod_revision), (4, 4));
    let b = s.create("/b", v("6")).await?;
    let (gone, rev) = s.delete("/b", None).await?;
    assert_eq!((gone, rev), (b, 6));
    assert_eq!(s.current_revision().await?, 6);
    Ok(())
}

#[tokio::test]
async fn get_at_revision() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    s.create("/k", v("1")).await?; // 1
    s.update("/k", v("2"), 1).await?; // 2
    s.delete("/k", None).await?; // 3
    s.create("/k", v("4")).await?; // 4
    let at = |rev| {
        let s = s.clone();
        async move { s.get("/k", Some(rev)).await.map(|o| o.map(|kv| (kv.value, kv.create_revision, kv.mod_revision))) }
    };
    assert_eq!(at(0).await?, None);
    assert_eq!(at(1).await?, Some((v("1"), 1, 1)));
    assert_eq!(at(2).await?, Some((v("2"), 1, 2)));
    assert_eq!(at(3).await?, None);
    assert_eq!(at(4).await?, Some((v("4"), 4, 4)));
    assert!(matches!(at(5).await, Err(Error::FutureRevision { requested: 5, current: 4 })));
    Ok(())
}

#[tokio::test]
async fn list_prefix_limit_continue() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    for k in ["/r/pods/a/1", "/r/pods/a/2", "/r/pods/b/1", "/r/pods/b/2", "/r/pods/b/3", "/r/podsx", "/r/svc/a/1"] {
        s.create(k, v(k)).await?;
    }
    let all = s.list("/r/pods/", ListOptions::default()).await?;
    assert_eq!(keys(&all.kvs), ["/r/pods/a/1", "/r/pods/a/2", "/r/pods/b/1", "/r/pods/b/2", "/r/pods/b/3"]);
    assert_eq!((all.revision, all.more, all.remaining), (7, false, 0));
    assert_eq!(all.kvs[0].value, v("/r/pods/a/1"));

    let everything = s.list("", ListOptions { limit: Some(0), ..Default::default() }).await?;
    assert_eq!(everything.kvs.len(), 7);

    // Pages of 2 with continue tokens.
    let mut seen = Vec::new();
    let mut start_after = None;
    let mut pages = Vec::new();
    loop {
        let page = s
            .list("/r/pods/", ListOptions { limit: Some(2), start_after: start_after.clone(), revision: None })
            .await?;
        pages.push((page.kvs.len(), page.more, page.remaining));
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        start_after = page.kvs.last().map(|kv| kv.key.clone());
    }
    assert_eq!(pages, [(2, true, 3), (2, true, 1), (1, false, 0)]);
    assert_eq!(seen, keys(&all.kvs));

    // Exactly `limit` keys left: no more.
    let page = s.list("/r/pods/b/", ListOptions { limit: Some(3), ..Default::default() }).await?;
    assert_eq!((page.kvs.len(), page.more, page.remaining), (3, false, 0));

    // start_after outside / before the prefix.
    let page = s.list("/r/pods/", ListOptions { start_after: Some("/a".into()), ..Default::default() }).await?;
    assert_eq!(page.kvs.len(), 5);
    let page =
        s.list("/r/pods/", ListOptions { start_after: Some("/r/pods/b/3".into()), ..Default::default() }).await?;
    assert!(page.kvs.is_empty());
    assert!(!page.more);
    Ok(())
}

#[tokio::test]
async fn list_at_older_revision() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    s.create("/p/a", v("a1")).await?; // 1
    s.create("/p/b", v("b1")).await?; // 2
    s.create("/p/c", v("c1")).await?; // 3
    s.update("/p/a", v("a2"), 1).await?; // 4
    s.delete("/p/b", None).await?; // 5
    s.create("/p/d", v("d1")).await?; // 6
    s.create("/q/x", v("x")).await?; // 7

    let at = |rev: Revision, limit: Option<usize>, start_after: Option<&str>| {
        let s = s.clone();
        let opts = ListOptions { revision: Some(rev), limit, start_after: start_after.map(str::to_owned) };
        async move { s.list("/p/", opts).await }
    };
    let r3 = at(3, None, None).await?;
    assert_eq!(r3.revision, 3);
    assert_eq!(
        r3.kvs.iter().map(|kv| (kv.key.as_str(), kv.value.clone(), kv.mod_revision)).collect::<Vec<_>>(),
        [("/p/a", v("a1"), 1), ("/p/b", v("b1"), 2), ("/p/c", v("c1"), 3)]
    );
    let r5 = at(5, None, None).await?;
    assert_eq!(keys(&r5.kvs), ["/p/a", "/p/c"]);
    assert_eq!(r5.kvs[0].value, v("a2"));
    assert_eq!(r5.kvs[0].create_revision, 1);
    let r6 = at(6, Some(1), Some("/p/a")).await?;
    assert_eq!(keys(&r6.kvs), ["/p/c"]);
    assert_eq!((r6.more, r6.remaining), (true, 1));
    assert!(at(0, None, None).await?.kvs.is_empty());
    assert!(matches!(at(8, None, None).await, Err(Error::FutureRevision { requested: 8, current: 7 })));

    // The latest list reports the current revision.
    let latest = s.list("/p/", ListOptions::default()).await?;
    assert_eq!(latest.revision, 7);
    assert_eq!(keys(&latest.kvs), ["/p/a", "/p/c", "/p/d"]);
    Ok(())
}

#[tokio::test]
async fn compaction_keeps_latest_values() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    s.create("/k/a", v("a1")).await?; // 1
    s.update("/k/a", v("a2"), 1).await?; // 2
    s.create("/k/b", v("b1")).await?; // 3
    s.delete("/k/b", None).await?; // 4
    s.create("/k/c", v("c1")).await?; // 5
    s.update("/k/c", v("c2"), 5).await?; // 6
    s.create("/k/d", v("d1")).await?; // 7
    s.delete("/k/d", None).await?; // 8 (tombstone above the compaction)

    assert!(matches!(s.compact(9).await, Err(Error::FutureRevision { .. })));
    s.compact(5).await?;
    assert_eq!(s.compacted_revision().await?, 5);
    // Rows left: a@2, c@5 (latest at 5), c@6, d@7, d@8 tombstone.
    assert_eq!(s.stats().await?.log_rows, 5);

    assert!(matches!(s.get("/k/a", Some(4)).await, Err(Error::Compacted { requested: 4, compacted: 5 })));
    assert!(matches!(
        s.list("/k/", ListOptions { revision: Some(1), ..Default::default() }).await,
        Err(Error::Compacted { .. })
    ));
    // The state at the compacted revision itself is still readable.
    let at5 = s.list("/k/", ListOptions { revision: Some(5), ..Default::default() }).await?;
    assert_eq!(
        at5.kvs.iter().map(|kv| (kv.key.as_str(), kv.value.clone())).collect::<Vec<_>>(),
        [("/k/a", v("a2")), ("/k/c", v("c1"))]
    );
    assert_eq!(s.get("/k/b", Some(5)).await?, None);
    let latest = s.list("/k/", ListOptions::default()).await?;
    assert_eq!(keys(&latest.kvs), ["/k/a", "/k/c"]);

    // Watching from the compacted revision still has every `prev`.
    let mut w = s.watch("/k/", 5).await?;
    match next_event(&mut w).await? {
        Event::Put { kv, prev: Some(prev) } => {
            assert_eq!((kv.mod_revision, kv.value, prev.mod_revision, prev.value), (6, v("c2"), 5, v("c1")));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(next_event(&mut w).await?, Event::Put { prev: None, .. }));
    match next_event(&mut w).await? {
        Event::Delete { prev, revision: 8 } => assert_eq!((prev.value, prev.mod_revision), (v("d1"), 7)),
        other => panic!("unexpected {other:?}"),
    }

    // Compacting to the current revision drops tombstones; older: no-op.
    s.compact(8).await?;
    s.compact(3).await?;
    assert_eq!(s.compacted_revision().await?, 8);
    assert_eq!(s.stats().await?.log_rows, 2);
    assert_eq!(s.current_revision().await?, 8);
    let kv = s.create("/k/e", v("e")).await?;
    assert_eq!(kv.mod_revision, 9);
    assert!(matches!(s.watch("/k/", 7).await, Err(Error::Compacted { requested: 7, compacted: 8 })));
    Ok(())
}

#[tokio::test]
async fn watch_from_compacted_revision_fails() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    for i in 0..10 {
        s.create(&format!("/w/{i}"), v("x")).await?;
    }
    s.compact(6).await?;
    assert!(matches!(s.watch("/w/", 5).await, Err(Error::Compacted { requested: 5, compacted: 6 })));
    let mut w = s.watch("/w/", 6).await?;
    assert_eq!(next_event(&mut w).await?.revision(), 7);
    Ok(())
}

#[tokio::test]
async fn watch_replays_then_streams_live() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    s.create("/w/a", v("1")).await?; // 1
    s.create("/other", v("o")).await?; // 2
    s.update("/w/a", v("2"), 1).await?; // 3
    let mut w = s.watch("/w/", 0).await?;
    let mut late = s.watch("/w/", 3).await?;
    s.delete("/w/a", Some(3)).await?; // 4
    s.create("/other2", v("o")).await?; // 5
    s.create("/w/b", v("b")).await?; // 6

    let expected = vec![
        Event::Put {
            kv: KeyValue { key: "/w/a".into(), value: v("1"), create_revision: 1, mod_revision: 1 },
            prev: None,
        },
        Event::Put {
            kv: KeyValue { key: "/w/a".into(), value: v("2"), create_revision: 1, mod_revision: 3 },
            prev: Some(KeyValue { key: "/w/a".into(), value: v("1"), create_revision: 1, mod_revision: 1 }),
        },
        Event::Delete {
            prev: KeyValue { key: "/w/a".into(), value: v("2"), create_revision: 1, mod_revision: 3 },
            revision: 4,
        },
        Event::Put {
            kv: KeyValue { key: "/w/b".into(), value: v("b"), create_revision: 6, mod_revision: 6 },
            prev: None,
        },
    ];
    for want in &expected {
        assert_eq!(&next_event(&mut w).await?, want);
    }
    for want in &expected[2..] {
        assert_eq!(&next_event(&mut late).await?, want);
    }
    // Watching the future: only events after `after`.
    let mut future = s.watch("/w/", 7).await?;
    s.update("/w/b", v("b2"), 6).await?; // 7
    s.update("/w/b", v("b3"), 7).await?; // 8
    match next_event(&mut future).await? {
        Event::Put { kv, prev: Some(prev) } => {
            assert_eq!((kv.mod_revision, kv.value, prev.mod_revision, prev.value), (8, v("b3"), 7, v("b2")))
        }
        other => panic!("unexpected {other:?}"),
    }

    // Dropping the store (all clones) ends the streams.
    assert_eq!(s.stats().await?.watchers, 3);
    drop(s);
    let mut rest = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), w.next()).await? {
        rest.push(ev?.revision());
    }
    assert_eq!(rest, [7, 8]);
    Ok(())
}

/// Collect events until revision `until`, asserting strictly increasing revisions.
async fn collect_until(mut w: WatchStream, until: Revision) -> store::Result<Vec<Event>> {
    let mut out: Vec<Event> = Vec::new();
    loop {
        let ev = next_event(&mut w).await?;
        if let Some(prev) = out.last() {
            assert!(ev.revision() > prev.revision(), "{} after {}", ev.revision(), prev.revision());
        }
        let rev = ev.revision();
        out.push(ev);
        if rev >= until {
            return Ok(out);
        }
    }
}

async fn concurrent_writers_no_gaps(opts: SqliteOptions, slow: bool) -> TestResult {
    const WRITERS: usize = 4;
    const KEYS: usize = 500;
    let total = (WRITERS * KEYS) as Revision;
    let dir = tempfile::tempdir()?;
    let s = SqliteStore::open_with(&dir.path().join("store.db"), opts)?;
    let from_start = s.watch("/c/", 0).await?;
    let from_start = tokio::spawn(async move {
        let mut w = from_start;
        let mut out = Vec::new();
        while out.len() < total as usize {
            let ev = next_event(&mut w).await?;
            if slow && out.len() % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            out.push(ev.revision());
        }
        store::Result::Ok(out)
    });
    let mut writers = Vec::new();
    for t in 0..WRITERS {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..KEYS {
                s.create(&format!("/c/{t}/{i:04}"), vec![b'x'; 200]).await?;
            }
            store::Result::Ok(())
        }));
    }
    // A watcher that joins in the middle, replaying from revision 0.
    while s.current_revision().await? < total / 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mid = tokio::spawn(collect_until(s.watch("/c/", 0).await?, total));
    let mid_after = s.current_revision().await?;
    let mid2 = tokio::spawn(collect_until(s.watch("/c/", mid_after).await?, total));
    for w in writers {
        w.await??;
    }
    assert_eq!(s.current_revision().await?, total);
    let want: Vec<Revision> = (1..=total).collect();
    assert_eq!(from_start.await??, want);
    let mid: Vec<Revision> = mid.await??.iter().map(Event::revision).collect();
    assert_eq!(mid, want);
    let mid2: Vec<Revision> = mid2.await??.iter().map(Event::revision).collect();
    assert_eq!(mid2, (mid_after + 1..=total).collect::<Vec<_>>());
    let stats = s.stats().await?;
    eprintln!("{stats:?}");
    if slow {
        assert!(stats.watch_catch_ups > 0, "the slow watcher never overflowed its buffer");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_sees_every_revision_under_concurrent_writers() -> TestResult {
    concurrent_writers_no_gaps(SqliteOptions::default(), false).await
}

/// A watcher with a tiny buffer that reads slowly overflows its buffer many
/// times; writers are not held up and it still sees every revision once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_watcher_catches_up_from_the_database() -> TestResult {
    concurrent_writers_no_gaps(SqliteOptions { watch_buffer: 4, ..Default::default() }, true).await
}

#[tokio::test]
async fn slow_watcher_past_compaction_gets_compacted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s =
        SqliteStore::open_with(&dir.path().join("store.db"), SqliteOptions { watch_buffer: 2, ..Default::default() })?;
    let mut w = s.watch("/s/", 0).await?;
    for i in 0..20 {
        s.create(&format!("/s/{i:02}"), v("x")).await?;
    }
    s.compact(10).await?;
    // Events already buffered may be delivered; then the stream ends with Compacted.
    let mut last = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await? {
            Some(Ok(ev)) => {
                assert_eq!(ev.revision(), last + 1);
                last = ev.revision();
            }
            Some(Err(Error::Compacted { compacted: 10, .. })) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(w.next().await.is_none());
    Ok(())
}

#[tokio::test]
async fn reopen_preserves_data_and_revision() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let s = open(&dir)?;
        s.create("/a", v("1")).await?; // 1
        s.update("/a", v("2"), 1).await?; // 2
        s.create("/b", v("b")).await?; // 3
        s.delete("/b", None).await?; // 4
    }
    {
        let s = open(&dir)?;
        assert_eq!(s.current_revision().await?, 4);
        assert_eq!(s.get("/a", None).await?.map(|kv| (kv.value, kv.mod_revision)), Some((v("2"), 2)));
        assert_eq!(s.get("/a", Some(1)).await?.map(|kv| kv.value), Some(v("1")));
        // Compaction that removes the newest row (a tombstone) must not let
        // the revision go backwards after a reopen.
        s.compact(4).await?;
    }
    let s = open(&dir)?;
    assert_eq!(s.current_revision().await?, 4);
    assert_eq!(s.compacted_revision().await?, 4);
    assert_eq!(s.create("/c", v("c")).await?.mod_revision, 5);
    let list = s.list("/", ListOptions::default()).await?;
    assert_eq!(keys(&list.kvs), ["/a", "/c"]);
    assert_eq!(list.revision, 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_conflict_exactly_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    let kv = s.create("/n", v("0")).await?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.update("/n", vec![i], kv.mod_revision).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => ok += 1,
            Err(Error::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(ok, 1);
    Ok(())
}

const CRASH_ENV: &str = "STORE_CRASH_TEST_DB";

/// Child half of [`kill_9_keeps_acknowledged_writes`]: does nothing unless
/// re-executed with `STORE_CRASH_TEST_DB` set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() -> TestResult {
    let Ok(path) = std::env::var(CRASH_ENV) else { return Ok(()) };
    let s = SqliteStore::open(std::path::Path::new(&path))?;
    let mut out = std::io::stdout();
    for i in 0.. {
        let key = format!("/crash/{i:08}");
        s.create(&key, vec![b'v'; 1000]).await?;
        if i % 7 == 0 {
            let kv = s.get(&key, None).await?.ok_or("missing")?;
            s.update(&key, vec![b'u'; 500], kv.mod_revision).await?;
        }
        writeln!(out, "ACK {key}")?;
        out.flush()?;
    }
    Ok(())
}

#[test]
fn kill_9_keeps_acknowledged_writes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut acked = Vec::new();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_owned());
        }
        if !killed && acked.len() >= 2000 {
            child.kill()?; // SIGKILL
            killed = true;
        }
    }
    let status = child.wait()?;
    assert!(killed, "child exited early: {status}");
    assert!(!status.success());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let s = SqliteStore::open(&path)?;
        let list = s.list("/crash/", ListOptions::default()).await?;
        let present: std::collections::HashSet<&str> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
        for key in &acked {
            assert!(present.contains(key.as_str()), "acknowledged {key} lost");
        }
        // Revisions stayed consistent: one per create plus one per 7th update.
        let n = list.kvs.len() as Revision;
        let updates = list.kvs.iter().filter(|kv| kv.value.len() == 500).count() as Revision;
        assert_eq!(s.current_revision().await?, n + updates);
        eprintln!("acknowledged {} keys before kill -9, {} present after reopen", acked.len(), n);
        TestResult::Ok(())
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Rough performance numbers (`cargo test -p store --release -- --nocapture perf`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_creates_lists_and_watch_latency() -> TestResult {
    const N: usize = 10_000;
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    let value = vec![b'x'; 1500];
    // Noise in another prefix, to make the prefix scan realistic.
    for i in 0..1000 {
        s.create(&format!("/registry/configmaps/{i:05}"), value.clone()).await?;
    }
    let mut lat = Vec::with_capacity(N);
    let start = Instant::now();
    for i in 0..N {
        let t = Instant::now();
        s.create(&format!("/registry/pods/ns{}/pod-{i:05}", i % 10), value.clone()).await?;
        lat.push(t.elapsed());
    }
    let creates = start.elapsed();
    lat.sort();
    eprintln!(
        "{N} creates of 1.5 KB: {creates:?} total, p50 {:?}, p99 {:?}, max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );

    let mut list_times = Vec::new();
    let mut interleaved = Vec::new();
    for i in 0..10 {
        if i >= 5 {
            // Steady state: other writes between lists.
            for j in 0..100 {
                s.create(&format!("/registry/secrets/{i}-{j}"), value.clone()).await?;
            }
        }
        let t = Instant::now();
        let list = s.list("/registry/pods/", ListOptions::default()).await?;
        if i < 5 { &mut list_times } else { &mut interleaved }.push(t.elapsed());
        assert_eq!(list.kvs.len(), N);
    }
    list_times.sort();
    interleaved.sort();
    eprintln!(
        "list {N} keys of 1.5 KB: back to back best {:?} median {:?}; with 100 writes before each: best {:?} median {:?}",
        list_times[0], list_times[2], interleaved[0], interleaved[2]
    );
    let t = Instant::now();
    let page = s.list("/registry/pods/", ListOptions { limit: Some(500), ..Default::default() }).await?;
    eprintln!("list first 500 of {N} (with remaining count): {:?}", t.elapsed());
    assert_eq!(page.remaining, (N - 500) as u64);
    let t = Instant::now();
    let old = s.list("/registry/pods/", ListOptions { revision: Some(6000), ..Default::default() }).await?;
    eprintln!("list at an older revision ({} keys): {:?}", old.kvs.len(), t.elapsed());
    assert_eq!(old.kvs.len(), 5000);

    // Watch delivery latency: write, then time until the watcher has it.
    let s2 = s.clone();
    let mut w = s.watch("/registry/pods/", s.current_revision().await?).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let watcher = tokio::spawn(async move {
        let mut lat = Vec::new();
        while let Some(Ok(ev)) = w.next().await {
            let now = Instant::now();
            if let Event::Put { kv, .. } = &ev {
                if kv.key.ends_with("done") {
                    break;
                }
            }
            if let Some(sent) = rx.recv().await {
                lat.push(now.saturating_duration_since(sent));
            }
        }
        lat
    });
    for i in 0..1000 {
        let kv = s2.get(&format!("/registry/pods/ns0/pod-{:05}", i * 10), None).await?.ok_or("missing")?;
        // Sent before the write, so the watcher always finds it.
        tx.send(Instant::now())?;
        s2.update(&kv.key, value.clone(), kv.mod_revision).await?;
    }
    s2.create("/registry/pods/done", vec![]).await?;
    let mut watch_lat = watcher.await?;
    watch_lat.sort();
    eprintln!(
        "update -> watch event received: p50 {:?}, p99 {:?} ({} events)",
        percentile(&watch_lat, 0.5),
        percentile(&watch_lat, 0.99),
        watch_lat.len()
    );
    let stats = s.stats().await?;
    eprintln!("stats: {stats:?}");
    Ok(())
}

#[tokio::test]
async fn in_memory_store_works() -> TestResult {
    let s = Arc::new(SqliteStore::open_in_memory()?);
    let mut w = s.watch("/", 0).await?;
    s.create("/a", v("1")).await?;
    s.update("/a", v("2"), 1).await?;
    assert_eq!(next_event(&mut w).await?.revision(), 1);
    assert_eq!(next_event(&mut w).await?.revision(), 2);
    assert_eq!(s.list("/", ListOptions { revision: Some(1), ..Default::default() }).await?.kvs[0].value, v("1"));
    Ok(())
}
