//! API server benchmark (issue 2): create, get, list and watch with 10,000
//! Services, against `rkube server` on loopback, through kube-rs.
//!
//! Each figure is printed next to a baseline measured in the same run on the
//! same machine: the same operation straight on the SQLite store (what the
//! API adds on top), and the target.
//! Run: `cargo bench -p rkube --bench api` (release build). `RKUBE_BENCH_N`
//! changes the number of Services (default 10,000).

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;
use testkit::TestServer;

fn svc(name: &str) -> Service {
    Service {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some([("app".to_string(), "bench".to_string())].into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some([("app".to_string(), name.to_string())].into()),
            ports: Some(vec![ServicePort {
                port: 80,
                target_port: Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("RKUBE_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    println!(
        "rkube API benchmark: {n} Services, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    // Baseline: the store alone, same value sizes.
    let dir = tempfile::tempdir().expect("tempdir");
    let st: Arc<dyn Store> = Arc::new(store::SqliteStore::open(&dir.path().join("b.db")).expect("store"));
    let value = serde_json::to_vec(&svc("baseline-service-000")).expect("json");
    let mut store_create = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        st.create(&format!("/registry/core/services/default/s{i:05}"), value.clone()).await.expect("create");
        store_create.push(t.elapsed());
    }
    let t = Instant::now();
    let l = st.list("/registry/core/services/", Default::default()).await.expect("list");
    let store_list = t.elapsed();
    assert_eq!(l.kvs.len(), n);

    // The API server alone: controllers would add their own writes (an
    // Endpoints and an EndpointSlice per Service) to what is measured.
    let server = TestServer::start_with_args(env!("CARGO_BIN_EXE_rkube"), &["--api-only"]).expect("rkube server");
    let client = controllers::client_from_kubeconfig(&server.kubeconfig_path()).await.expect("client");
    let api: Api<Service> = Api::namespaced(client.clone(), "default");

    let mut create = Vec::with_capacity(n);
    for i in 0..n {
        let s = svc(&format!("s{i:05}"));
        let t = Instant::now();
        api.create(&PostParams::default(), &s).await.expect("create");
        create.push(t.elapsed());
    }
    let mut get = Vec::with_capacity(1000);
    for i in 0..1000.min(n) {
        let t = Instant::now();
        api.get(&format!("s{i:05}")).await.expect("get");
        get.push(t.elapsed());
    }
    // The same list as bytes, without kube-rs decoding the items: what the
    // server and the transfer cost.
    let mut raw_list = Vec::new();
    for _ in 0..5 {
        let req = http::Request::get("/api/v1/namespaces/default/services").body(Vec::new()).expect("request");
        let t = Instant::now();
        let body = client.request_text(req).await.expect("raw list");
        raw_list.push(t.elapsed());
        assert!(body.len() > n * 100);
    }
    let mut list = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let items = api.list(&ListParams::default()).await.expect("list").items.len();
        list.push(t.elapsed());
        assert_eq!(items, n + 1);
    }

    // Watch delivery while writing 1,000 objects/s for 3 s.
    let rv =
        api.list(&ListParams::default().limit(1)).await.expect("list").metadata.resource_version.unwrap_or_default();
    let mut stream = api.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let writer = {
        let (api, sent) = (api.clone(), sent.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..3000 {
                let due = start + Duration::from_millis(i);
                tokio::time::sleep_until(due.into()).await;
                let name = format!("w{i:05}");
                sent.lock().unwrap().insert(name.clone(), Instant::now());
                let api = api.clone();
                tokio::spawn(async move { api.create(&PostParams::default(), &svc(&name)).await.expect("create") });
            }
        })
    };
    let mut watch = Vec::with_capacity(3000);
    while watch.len() < 3000 {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(WatchEvent::Added(s)))) => {
                let name = s.metadata.name.unwrap_or_default();
                if let Some(t) = sent.lock().unwrap().get(&name) {
                    watch.push(t.elapsed());
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("watch ended: {other:?}"),
        }
    }
    writer.await.expect("writer");
    // The watch latency includes the create request itself (sent -> event),
    // so its baseline is the create latency under the same load.

    let (sc99, c99, c50) = (pct(&mut store_create, 0.99), pct(&mut create.clone(), 0.99), pct(&mut create, 0.50));
    println!("{:<34} {:>10} {:>14} {:>9} {:>10} {:>8}", "operation", "rkube", "baseline", "ratio", "target", "ok");
    let line = |what: &str, v: Duration, base: Duration, target: f64| {
        println!(
            "{:<34} {:>8.3}ms {:>12.3}ms {:>8.1}x {:>8.1}ms {:>8}",
            what,
            ms(v),
            ms(base),
            ms(v) / ms(base).max(1e-6),
            target,
            if ms(v) < target { "yes" } else { "NO" }
        );
    };
    line("create p99 (vs store create p99)", c99, sc99, 5.0);
    println!("{:<34} {:>8.3}ms", "create p50", ms(c50));
    line("get p99 (vs store create p99)", pct(&mut get, 0.99), sc99, 5.0);
    line(&format!("list {n} (vs store list)"), pct(&mut list, 0.5), store_list, 100.0);
    line(&format!("list {n} bytes only (vs store)"), pct(&mut raw_list, 0.5), store_list, 100.0);
    line("watch delivery p99 @1000/s", pct(&mut watch.clone(), 0.99), c99, 5.0);
    println!("{:<34} {:>8.3}ms", "watch delivery p50", ms(pct(&mut watch, 0.5)));
}
