//! The store contract, checked the same way on every backend (SQLite in
//! `sqlite.rs`, etcd in `etcd.rs`). Revisions are counted from the store's
//! revision when a check starts (a fresh SQLite store is at 0, a fresh etcd
//! at 1), so each check needs a store of its own.

#![allow(dead_code)]

use futures::StreamExt;
use std::time::Duration;
use store::{Error, Event, KeyValue, ListOptions, ProgressRequests, Revision, Store, WatchItem, WatchStream};

pub type TestResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn next_event(w: &mut WatchStream) -> store::Result<Event> {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("no watch event within 10s"),
    }
}

pub async fn crud_and_conflicts<S: Store>(s: &S) -> TestResult {
    let b = s.current_revision().await?;
    assert_eq!(s.compacted_revision().await?, 0);
    assert_eq!(s.get("/a", None).await?, None);

    let a = s.create("/a", v("1")).await?;
    assert_eq!(a, KeyValue { key: "/a".into(), value: v("1"), create_revision: b + 1, mod_revision: b + 1 });
    assert!(matches!(s.create("/a", v("x")).await, Err(Error::AlreadyExists { key }) if key == "/a"));
    // A failed write does not consume a revision.
    assert_eq!(s.current_revision().await?, b + 1);

    let a2 = s.update("/a", v("2"), b + 1).await?;
    assert_eq!((a2.create_revision, a2.mod_revision), (b + 1, b + 2));
    assert!(
        matches!(s.update("/a", v("3"), b + 1).await, Err(Error::Conflict { expected, actual, .. }) if expected == b + 1 && actual == b + 2)
    );
    assert!(matches!(s.update("/nope", v("3"), b + 1).await, Err(Error::NotFound { .. })));
    assert!(matches!(s.update("/nope", v("3"), 0).await, Err(Error::NotFound { .. })));
    assert_eq!(s.get("/a", None).await?, Some(a2.clone()));

    assert!(
        matches!(s.delete("/a", Some(b + 1)).await, Err(Error::Conflict { expected, actual, .. }) if expected == b + 1 && actual == b + 2)
    );
    assert!(matches!(s.delete("/nope", None).await, Err(Error::NotFound { .. })));
    let (deleted, rev) = s.delete("/a", Some(b + 2)).await?;
    assert_eq!((deleted, rev), (a2, b + 3));
    assert_eq!(s.get("/a", None).await?, None);
    assert!(matches!(s.update("/a", v("4"), b + 2).await, Err(Error::NotFound { .. })));

    // Re-create: a new create_revision.
    let a3 = s.create("/a", v("5")).await?;
    assert_eq!((a3.create_revision, a3.mod_revision), (b + 4, b + 4));
    let bkv = s.create("/b", v("6")).await?;
    let (gone, rev) = s.delete("/b", None).await?;
    assert_eq!((gone, rev), (bkv, b + 6));
    assert_eq!(s.current_revision().await?, b + 6);
    Ok(())
}

pub async fn get_at_revision<S: Store>(s: &S) -> TestResult {
    let b = s.current_revision().await?;
    s.create("/k", v("1")).await?; // b+1
    s.update("/k", v("2"), b + 1).await?; // b+2
    s.delete("/k", None).await?; // b+3
    s.create("/k", v("4")).await?; // b+4
    let at = |rev| async move {
        s.get("/k", Some(rev)).await.map(|o| o.map(|kv| (kv.value, kv.create_revision, kv.mod_revision)))
    };
    assert_eq!(at(0).await?, None);
    assert_eq!(at(b).await?, None);
    assert_eq!(at(b + 1).await?, Some((v("1"), b + 1, b + 1)));
    assert_eq!(at(b + 2).await?, Some((v("2"), b + 1, b + 2)));
    assert_eq!(at(b + 3).await?, None);
    assert_eq!(at(b + 4).await?, Some((v("4"), b + 4, b + 4)));
    assert!(
        matches!(at(b + 5).await, Err(Error::FutureRevision { requested, current }) if requested == b + 5 && current == b + 4)
    );
    Ok(())
}

pub async fn list_prefix_limit_continue<S: Store>(s: &S) -> TestResult {
    let b = s.current_revision().await?;
    for k in ["/r/pods/a/1", "/r/pods/a/2", "/r/pods/b/1", "/r/pods/b/2", "/r/pods/b/3", "/r/podsx", "/r/svc/a/1"] {
        s.create(k, v(k)).await?;
    }
    let all = s.list("/r/pods/", ListOptions::default()).await?;
    assert_eq!(keys(&all.kvs), ["/r/pods/a/1", "/r/pods/a/2", "/r/pods/b/1", "/r/pods/b/2", "/r/pods/b/3"]);
    assert_eq!((all.revision, all.more, all.remaining), (b + 7, false, 0));
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

pub async fn list_at_older_revision<S: Store>(s: &S) -> TestResult {
    let b = s.current_revision().await?;
    s.create("/p/a", v("a1")).await?; // b+1
    s.create("/p/b", v("b1")).await?; // b+2
    s.create("/p/c", v("c1")).await?; // b+3
    s.update("/p/a", v("a2"), b + 1).await?; // b+4
    s.delete("/p/b", None).await?; // b+5
    s.create("/p/d", v("d1")).await?; // b+6
    s.create("/q/x", v("x")).await?; // b+7

    let at = |rev: Revision, limit: Option<usize>, start_after: Option<&str>| {
        let opts = ListOptions { revision: Some(rev), limit, start_after: start_after.map(str::to_owned) };
        async move { s.list("/p/", opts).await }
    };
    let r3 = at(b + 3, None, None).await?;
    assert_eq!(r3.revision, b + 3);
    assert_eq!(
        r3.kvs.iter().map(|kv| (kv.key.as_str(), kv.value.clone(), kv.mod_revision)).collect::<Vec<_>>(),
        [("/p/a", v("a1"), b + 1), ("/p/b", v("b1"), b + 2), ("/p/c", v("c1"), b + 3)]
    );
    let r5 = at(b + 5, None, None).await?;
    assert_eq!(keys(&r5.kvs), ["/p/a", "/p/c"]);
    assert_eq!(r5.kvs[0].value, v("a2"));
    assert_eq!(r5.kvs[0].create_revision, b + 1);
    let r6 = at(b + 6, Some(1), Some("/p/a")).await?;
    assert_eq!(keys(&r6.kvs), ["/p/c"]);
    assert_eq!((r6.more, r6.remaining), (true, 1));
    assert!(at(0, None, None).await?.kvs.is_empty());
    assert!(
        matches!(at(b + 8, None, None).await, Err(Error::FutureRevision { requested, current }) if requested == b + 8 && current == b + 7)
    );

    // The latest list reports the current revision.
    let latest = s.list("/p/", ListOptions::default()).await?;
    assert_eq!(latest.revision, b + 7);
    assert_eq!(keys(&latest.kvs), ["/p/a", "/p/c", "/p/d"]);
    Ok(())
}

pub async fn compaction_keeps_latest_values<S: Store>(s: &S) -> TestResult {
    let b = s.current_revision().await?;
    s.create("/k/a", v("a1")).await?; // b+1
    s.update("/k/a", v("a2"), b + 1).await?; // b+2
    s.create("/k/b", v("b1")).await?; // b+3
    s.delete("/k/b", None).await?; // b+4
    s.create("/k/c", v("c1")).await?; // b+5
    s.update("/k/c", v("c2"), b + 5).await?; // b+6
    s.create("/k/d", v("d1")).await?; // b+7
    s.delete("/k/d", None).await?; // b+8

    assert!(matches!(s.compact(b + 9).await, Err(Error::FutureRevision { .. })));
    s.compact(b + 5).await?;
    assert_eq!(s.compacted_revision().await?, b + 5);

    assert!(
        matches!(s.get("/k/a", Some(b + 4)).await, Err(Error::Compacted { requested, compacted }) if requested == b + 4 && compacted == b + 5)
    );
    assert!(matches!(
        s.list("/k/", ListOptions { revision: Some(b + 1), ..Default::default() }).await,
        Err(Error::Compacted { .. })
    ));
    // The state at the compacted revision itself is still readable.
    let at5 = s.list("/k/", ListOptions { revision: Some(b + 5), ..Default::default() }).await?;
    assert_eq!(
        at5.kvs.iter().map(|kv| (kv.key.as_str(), kv.value.clone())).collect::<Vec<_>>(),
        [("/k/a", v("a2")), ("/k/c", v("c1"))]
    );
    assert_eq!(s.get("/k/b", Some(b + 5)).await?, None);
    let latest = s.list("/k/", ListOptions::default()).await?;
    assert_eq!(keys(&latest.kvs), ["/k/a", "/k/c"]);

    // Watching from the compacted revision: the later changes, in order.
    let mut w = s.watch("/k/", b + 5).await?;
    match next_event(&mut w).await? {
        Event::Put { kv, prev: Some(prev) } => {
            assert_eq!((kv.mod_revision, kv.value, prev.mod_revision, prev.value), (b + 6, v("c2"), b + 5, v("c1")));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(next_event(&mut w).await?, Event::Put { prev: None, .. }));
    match next_event(&mut w).await? {
        Event::Delete { prev, revision } => {
            assert_eq!((prev.value, prev.mod_revision, revision), (v("d1"), b + 7, b + 8))
        }
        other => panic!("unexpected {other:?}"),
    }

    // Compacting to the current revision; older: no-op; a compaction takes no revision.
    s.compact(b + 8).await?;
    s.compact(b + 3).await?;
    assert_eq!(s.compacted_revision().await?, b + 8);
    assert_eq!(s.current_revision().await?, b + 8);
    let kv = s.create("/k/e", v("e")).await?;
    assert_eq!(kv.mod_revision, b + 9);
    assert!(
        matches!(s.watch("/k/", b + 7).await, Err(Error::Compacted { requested, compacted }) if requested == b + 7 && compacted == b + 8)
    );
    Ok(())
}

pub async fn watch_replays_then_streams_live<S: Store>(s: &S) -> TestResult {
    let b = s.current_revision().await?;
    s.create("/w/a", v("1")).await?; // b+1
    s.create("/other", v("o")).await?; // b+2
    s.update("/w/a", v("2"), b + 1).await?; // b+3
    let mut w = s.watch("/w/", b).await?;
    let mut late = s.watch("/w/", b + 3).await?;
    s.delete("/w/a", Some(b + 3)).await?; // b+4
    s.create("/other2", v("o")).await?; // b+5
    s.create("/w/b", v("b")).await?; // b+6

    let kv = |value: &str, c: Revision, m: Revision, key: &str| KeyValue {
        key: key.into(),
        value: v(value),
        create_revision: c,
        mod_revision: m,
    };
    let expected = vec![
        Event::Put { kv: kv("1", b + 1, b + 1, "/w/a"), prev: None },
        Event::Put { kv: kv("2", b + 1, b + 3, "/w/a"), prev: Some(kv("1", b + 1, b + 1, "/w/a")) },
        Event::Delete { prev: kv("2", b + 1, b + 3, "/w/a"), revision: b + 4 },
        Event::Put { kv: kv("b", b + 6, b + 6, "/w/b"), prev: None },
    ];
    for want in &expected {
        assert_eq!(&next_event(&mut w).await?, want);
    }
    for want in &expected[2..] {
        assert_eq!(&next_event(&mut late).await?, want);
    }
    // Watching the future: only events after `after`.
    let mut future = s.watch("/w/", b + 7).await?;
    s.update("/w/b", v("b2"), b + 6).await?; // b+7
    s.update("/w/b", v("b3"), b + 7).await?; // b+8
    match next_event(&mut future).await? {
        Event::Put { kv, prev: Some(prev) } => {
            assert_eq!((kv.mod_revision, kv.value, prev.mod_revision, prev.value), (b + 8, v("b3"), b + 7, v("b2")))
        }
        other => panic!("unexpected {other:?}"),
    }
    Ok(())
}

pub async fn watch_from_compacted_revision_fails<S: Store>(s: &S) -> TestResult {
    let b = s.current_revision().await?;
    for i in 0..10 {
        s.create(&format!("/w/{i}"), v("x")).await?;
    }
    s.compact(b + 6).await?;
    assert!(
        matches!(s.watch("/w/", b + 5).await, Err(Error::Compacted { requested, compacted }) if requested == b + 5 && compacted == b + 6)
    );
    let mut w = s.watch("/w/", b + 6).await?;
    assert_eq!(next_event(&mut w).await?.revision(), b + 7);
    Ok(())
}

/// Events until revision `until`, asserting strictly increasing revisions.
/// A progress watch reports, on request, a revision up to which it has
/// yielded everything: past writes under other prefixes, and never ahead of
/// an event under its own prefix it has not yielded yet.
pub async fn watch_progress_on_request<S: Store>(s: &S) -> TestResult {
    let b = s.current_revision().await?;
    let progress = ProgressRequests::default();
    let mut w = s.watch_with_progress("/mine/", b, progress.clone()).await?;
    s.create("/mine/1", v("1")).await?; // b+1
    for i in 0..5 {
        s.create(&format!("/other/{i}"), v("x")).await?; // b+2..=b+6
    }
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // A request may go unanswered while the watch catches up: ask again, as
    // the watch cache does.
    let reached = loop {
        progress.request();
        match tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)), w.next())
            .await
        {
            Ok(Some(Ok(WatchItem::Event(ev)))) => seen.push(ev.revision()),
            Ok(Some(Ok(WatchItem::Progress(r)))) => {
                assert!(seen.iter().all(|&e| e <= r), "progress {r} before or with its events {seen:?}");
                if r >= b + 6 {
                    break r;
                }
                assert!(r < b + 1 || seen == vec![b + 1], "progress {r} passed /mine/1 unseen ({seen:?})");
            }
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => panic!("watch stream ended"),
            Err(_) if tokio::time::Instant::now() >= deadline => panic!("no progress to {} within 10s", b + 6),
            Err(_) => {}
        }
    };
    assert_eq!(seen, vec![b + 1], "only the own prefix's event");
    assert!(reached >= b + 6);
    // The plain watch never shows progress.
    let mut plain = s.watch("/mine/", b).await?;
    assert_eq!(next_event(&mut plain).await?.revision(), b + 1);
    Ok(())
}

pub async fn collect_until(mut w: WatchStream, until: Revision) -> store::Result<Vec<Event>> {
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

/// Writers on several tasks; watchers from the start, joining midway from
/// the start, and from the middle each see every revision exactly once.
pub async fn concurrent_writers_no_gaps<S: Store + Clone>(s: &S, writers: usize, keys: usize) -> TestResult {
    let b = s.current_revision().await?;
    let total = b + (writers * keys) as Revision;
    let from_start = tokio::spawn(collect_until(s.watch("/c/", b).await?, total));
    let mut tasks = Vec::new();
    for t in 0..writers {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..keys {
                s.create(&format!("/c/{t}/{i:04}"), vec![b'x'; 200]).await?;
            }
            store::Result::Ok(())
        }));
    }
    while s.current_revision().await? < b + (total - b) / 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mid = tokio::spawn(collect_until(s.watch("/c/", b).await?, total));
    let mid_after = s.current_revision().await?;
    let mid2 = tokio::spawn(collect_until(s.watch("/c/", mid_after).await?, total));
    for t in tasks {
        t.await??;
    }
    assert_eq!(s.current_revision().await?, total);
    let want: Vec<Revision> = (b + 1..=total).collect();
    let got: Vec<Revision> = from_start.await??.iter().map(Event::revision).collect();
    assert_eq!(got, want);
    let got: Vec<Revision> = mid.await??.iter().map(Event::revision).collect();
    assert_eq!(got, want);
    let got: Vec<Revision> = mid2.await??.iter().map(Event::revision).collect();
    assert_eq!(got, (mid_after + 1..=total).collect::<Vec<_>>());
    Ok(())
}

pub async fn concurrent_updates_conflict_exactly_once<S: Store + Clone>(s: &S) -> TestResult {
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
