//! The store contract (`suite/`) on the SQLite backend, and what only this
//! backend has: its watch buffer and catch-up from the database, reopening
//! a file, `kill -9` durability, the in-memory mode, a latency check.

mod suite;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use store::{Error, Event, ListOptions, Revision, SqliteOptions, SqliteStore, Store};
use suite::{collect_until, keys, next_event, v, TestResult};

fn open(dir: &tempfile::TempDir) -> store::Result<SqliteStore> {
    SqliteStore::open(&dir.path().join("store.db"))
}

/// One check of the shared suite on a fresh database file.
macro_rules! on_sqlite {
    ($name:ident, $check:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> TestResult {
            let dir = tempfile::tempdir()?;
            let s = open(&dir)?;
            $check(&s).await
        }
    };
}

on_sqlite!(crud_and_conflicts, suite::crud_and_conflicts);
on_sqlite!(get_at_revision, suite::get_at_revision);
on_sqlite!(list_prefix_limit_continue, suite::list_prefix_limit_continue);
on_sqlite!(list_at_older_revision, suite::list_at_older_revision);
on_sqlite!(compaction_keeps_latest_values, suite::compaction_keeps_latest_values);
on_sqlite!(watch_replays_then_streams_live, suite::watch_replays_then_streams_live);
on_sqlite!(watch_from_compacted_revision_fails, suite::watch_from_compacted_revision_fails);
on_sqlite!(watch_progress_on_request, suite::watch_progress_on_request);
on_sqlite!(concurrent_updates_conflict_exactly_once, suite::concurrent_updates_conflict_exactly_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suite_concurrent_writers_no_gaps() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    suite::concurrent_writers_no_gaps(&s, 4, 150).await
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
