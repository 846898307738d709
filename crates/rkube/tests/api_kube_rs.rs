//! kube-rs against rkube (issue 2): a watcher + reflector sees every create,
//! update and delete; after compaction a watch from an old resourceVersion
//! gets 410 Gone and the watcher relists; list pagination; lists served
//! from the watch cache keep upstream's resourceVersion semantics.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use std::collections::BTreeMap;
use std::time::Duration;
use testkit::TestServer;

/// The test's own ConfigMaps carry this label: every namespace also holds
/// `kube-root-ca.crt`, as on any cluster.
const MINE: &str = "test=kube-rs";

fn cm(name: &str, v: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("test".to_string(), "kube-rs".to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), v.to_string())])),
        ..Default::default()
    }
}

async fn client(s: &TestServer) -> kube::Client {
    controllers::client_from_kubeconfig(&s.kubeconfig_path()).await.expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_sees_every_change() {
    let s = TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("server");
    let api: Api<ConfigMap> = Api::namespaced(client(&s).await, "default");
    let (reader, writer) = reflector::store();
    let stream = watcher(api.clone(), watcher::Config::default().labels(MINE)).reflect(writer).applied_objects();
    let seen = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut n = 0;
        while let Some(Ok(_)) = stream.next().await {
            n += 1;
        }
        n
    });
    reader.wait_until_ready().await.expect("reflector ready");
    for i in 0..20 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), "1")).await.expect("create");
    }
    for i in 0..20 {
        let mut c = api.get(&format!("c{i}")).await.expect("get");
        c.data = Some(BTreeMap::from([("v".to_string(), "2".to_string())]));
        api.replace(&format!("c{i}"), &PostParams::default(), &c).await.expect("replace");
    }
    for i in 0..10 {
        api.delete(&format!("c{i}"), &DeleteParams::default()).await.expect("delete");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = reader.state();
        let done = state.len() == 10
            && state.iter().all(|c| c.data.as_ref().and_then(|d| d.get("v")).map(String::as_str) == Some("2"));
        if done {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "reflector has {} objects", state.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut names: Vec<String> = reader.state().iter().filter_map(|c| c.metadata.name.clone()).collect();
    names.sort();
    let mut want: Vec<String> = (10..20).map(|i| format!("c{i}")).collect();
    want.sort();
    assert_eq!(names, want);
    seen.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_resource_version_gives_410_and_watcher_relists() {
    let s =
        TestServer::start_with_args(env!("CARGO_BIN_EXE_rkube"), &["--compaction-interval", "500ms"]).expect("server");
    let api: Api<ConfigMap> = Api::namespaced(client(&s).await, "default");
    let first = api.create(&PostParams::default(), &cm("old", "1")).await.expect("create");
    let old_rv = first.metadata.resource_version.clone().expect("rv");
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("n{i}"), "1")).await.expect("create");
    }
    // Two compaction ticks put `old_rv` below the compacted revision.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    api.create(&PostParams::default(), &cm("after", "1")).await.expect("create");

    let mut stream = api.watch(&WatchParams::default(), &old_rv).await.expect("watch call").boxed();
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Some(Ok(WatchEvent::Error(e)))) => assert_eq!(e.code, 410, "{e:?}"),
        Ok(Some(Err(kube::Error::Api(e)))) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // A list at an exact, compacted revision is 410 Expired too.
    let lp = ListParams::default().at(&old_rv).matching(kube::api::VersionMatch::Exact);
    match api.list(&lp).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    // kube-runtime's watcher handles the 410 by relisting.
    let (reader, writer) = reflector::store();
    let w = tokio::spawn(
        watcher(api.clone(), watcher::Config::default().labels(MINE))
            .reflect(writer)
            .applied_objects()
            .for_each(|_| async {}),
    );
    reader.wait_until_ready().await.expect("ready");
    assert_eq!(reader.state().len(), 7);
    w.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_limit_and_continue() {
    let s = TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("server");
    let api: Api<ConfigMap> = Api::namespaced(client(&s).await, "default");
    for i in 0..25 {
        api.create(&PostParams::default(), &cm(&format!("p{i:02}"), "1")).await.expect("create");
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels(MINE).limit(10);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.expect("list");
        pages += 1;
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = ListParams::default().labels(MINE).limit(10).continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..25).map(|i| format!("p{i:02}")).collect::<Vec<_>>());
    // Label selectors filter server-side.
    let mut labelled = cm("labelled", "1");
    labelled.metadata.labels = Some(BTreeMap::from([("app".to_string(), "web".to_string())]));
    api.create(&PostParams::default(), &labelled).await.expect("create");
    let only = api.list(&ListParams::default().labels("app=web")).await.expect("list");
    assert_eq!(only.items.len(), 1);
    let none = api.list(&ListParams::default().labels("app notin (web)").limit(5)).await.expect("list");
    assert_eq!(none.items.len(), 5);
}

/// Lists come from the watch cache (issue 14) and still read the writes
/// just made, whatever resource was written last; an exact revision reads
/// the past from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_from_the_watch_cache_read_their_writes() {
    let s = TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("server");
    let client = client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels(MINE);
    let mut first_rv = String::new();
    for i in 0..30 {
        api.create(&PostParams::default(), &cm(&format!("c{i:02}"), "1")).await.expect("create");
        // A write elsewhere moves the revision past every configmap event.
        let mut secret = k8s_openapi::api::core::v1::Secret::default();
        secret.metadata.name = Some(format!("s{i:02}"));
        secrets.create(&PostParams::default(), &secret).await.expect("create secret");
        let list = api.list(&lp).await.expect("list");
        assert_eq!(list.items.len(), i + 1, "a consistent list sees the create just made");
        if i == 0 {
            first_rv = list.metadata.resource_version.clone().unwrap_or_default();
        }
    }
    api.delete("c00", &DeleteParams::default()).await.expect("delete");
    assert_eq!(api.list(&lp).await.expect("list").items.len(), 29, "and the delete");
    // Any state (rv=0) and not older than a revision: served from memory too.
    assert_eq!(
        api.list(&ListParams { resource_version: Some("0".into()), ..lp.clone() }).await.expect("rv=0").items.len(),
        29
    );
    let latest = api.list(&lp).await.expect("list").metadata.resource_version.unwrap_or_default();
    let not_older = ListParams { resource_version: Some(latest.clone()), ..lp.clone() };
    assert_eq!(api.list(&not_older).await.expect("not older than").items.len(), 29);
    // Exact (and the legacy rv=N with a limit) read the store's past.
    let exact = lp.clone().at(&first_rv).matching(kube::api::VersionMatch::Exact);
    assert_eq!(api.list(&exact).await.expect("exact").items.len(), 1);
    let legacy = ListParams { resource_version: Some(first_rv.clone()), limit: Some(100), ..lp.clone() };
    assert_eq!(api.list(&legacy).await.expect("legacy exact").items.len(), 1);
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, msg) = status_code(
        raw(&client, "GET", &format!("{path}?resourceVersion=0&resourceVersionMatch=Exact"), "", vec![]).await,
    );
    assert_eq!(code, 400, "{msg}");
    let (code, msg) = status_code(
        raw(&client, "GET", &format!("{path}?resourceVersion=1&resourceVersionMatch=Newest"), "", vec![]).await,
    );
    assert_eq!((code, msg.contains("supported values")), (400, true), "{msg}");
    let metrics = raw(&client, "GET", "/metrics", "", vec![]).await.expect("metrics");
    let served = metrics
        .lines()
        .find(|l| {
            l.starts_with("apiserver_watch_cache_list_total{prefix=\"/registry/core/configmaps/\",fallback=\"false\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(served >= 33, "lists served from the watch cache: {served}\n{metrics}");
}

/// Metadata informers (client-go's, and kube-rs's `Api<PartialObjectMeta<K>>`)
/// get PartialObjectMetadata in lists and in every watch event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_watches_get_partial_object_metadata() {
    use kube::core::PartialObjectMeta;
    let s = TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("server");
    let client = client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut c = cm("meta1", "secret-ish");
    c.metadata.annotations = Some(BTreeMap::from([("a".to_string(), "b".to_string())]));
    api.create(&PostParams::default(), &c).await.expect("create");
    let rv = api.get("meta1").await.expect("get").metadata.resource_version.expect("rv");
    api.create(&PostParams::default(), &cm("meta2", "secret-ish")).await.expect("create");
    // Raw bytes, to see what went over the wire.
    let req = http::Request::builder()
        .uri(format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"))
        .header("Accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(req).await.expect("watch");
    let events: Vec<serde_json::Value> =
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("event")).collect();
    assert!(!events.is_empty(), "{text}");
    for ev in &events {
        assert_eq!(ev["object"]["kind"], "PartialObjectMetadata", "{ev}");
        assert!(ev["object"].get("data").is_none(), "no data in a metadata watch: {ev}");
    }
    assert!(events.iter().any(|e| e["object"]["metadata"]["name"] == "meta2"), "{text}");
    // kube-rs's metadata watcher and reflector.
    let meta: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client, "default");
    let (reader, writer) = reflector::store();
    let stream = watcher(meta, watcher::Config::default().labels(MINE)).reflect(writer).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    reader.wait_until_ready().await.expect("ready");
    let mut names: Vec<String> = reader.state().iter().filter_map(|m| m.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["meta1", "meta2"]);
    let m1 = reader.state().into_iter().find(|m| m.metadata.name.as_deref() == Some("meta1")).expect("meta1");
    assert_eq!(m1.metadata.annotations.as_ref().and_then(|a| a.get("a")).map(String::as_str), Some("b"));
    task.abort();
}

async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<String, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(body)
        .expect("request");
    client.request_text(req).await
}

fn status_code(r: Result<String, kube::Error>) -> (u16, String) {
    match r {
        Ok(_) => (200, String::new()),
        Err(kube::Error::Api(e)) => (e.code, e.message),
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_http_errors() {
    let s = TestServer::start(env!("CARGO_BIN_EXE_rkube")).expect("server");
    let client = client(&s).await;
    for p in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(raw(&client, "GET", p, "", vec![]).await.expect(p), "ok");
    }
    let version = raw(&client, "GET", "/version", "", vec![]).await.expect("version");
    assert!(version.contains("\"minor\":\"33\""), "{version}");
    let _ = raw(&client, "GET", "/api/v1/namespaces/default/services", "", vec![]).await.expect("list");
    let metrics = raw(&client, "GET", "/metrics", "", vec![]).await.expect("metrics");
    assert!(metrics.contains("apiserver_request_total{verb=\"GET\",code=\"200\"}"), "{metrics}");
    assert!(metrics.contains("apiserver_request_duration_seconds_bucket"), "{metrics}");

    let path = "/api/v1/namespaces/default/configmaps";
    let big = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    assert_eq!(status_code(raw(&client, "POST", path, "application/json", big.into_bytes()).await).0, 413);
    assert_eq!(status_code(raw(&client, "POST", path, "text/plain", b"hello".to_vec()).await).0, 415);
    let (code, msg) = status_code(raw(&client, "POST", path, "application/json", b"{not json".to_vec()).await);
    assert_eq!(code, 400, "{msg}");
    let (code, msg) = status_code(
        raw(
            &client,
            "POST",
            path,
            "application/json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#.to_vec(),
        )
        .await,
    );
    assert_eq!(code, 422, "{msg}");
    assert!(msg.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""), "{msg}");
    assert_eq!(status_code(raw(&client, "PUT", path, "application/json", b"{}".to_vec()).await).0, 405);
    // A stale resourceVersion on update is a conflict.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let c = api.create(&PostParams::default(), &cm("rv", "1")).await.expect("create");
    let mut changed = c.clone();
    changed.data = Some(BTreeMap::from([("v".to_string(), "2".to_string())]));
    api.replace("rv", &PostParams::default(), &changed).await.expect("first replace");
    let mut stale = c.clone();
    stale.data = Some(BTreeMap::from([("v".to_string(), "3".to_string())]));
    match api.replace("rv", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (409, "Conflict")),
        other => panic!("expected 409, got {other:?}"),
    }
    // Unauthenticated requests get 401, except the health endpoints.
    let mut cfg = client_config(&s).await;
    cfg.auth_info = Default::default();
    let anon = kube::Client::try_from(cfg).expect("client");
    assert_eq!(status_code(raw(&anon, "GET", path, "", vec![]).await).0, 401);
    assert_eq!(raw(&anon, "GET", "/healthz", "", vec![]).await.expect("healthz"), "ok");
}

async fn client_config(s: &TestServer) -> kube::Config {
    let kc = kube::config::Kubeconfig::read_from(s.kubeconfig_path()).expect("kubeconfig");
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.expect("config")
}
