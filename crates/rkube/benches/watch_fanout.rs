//! Watch fan-out (issue 14): `rkube server` with its controllers, 50
//! concurrent Service watchers (as many DNS servers and proxies would have),
//! and 1,000 Service creates per second for 3 s. Delivery latency (create
//! sent -> event at a watcher) over every event at every watcher, with the
//! shared watch cache and, as the baseline in the same run, with
//! `--watch-cache=false` (each client watch reads the store). Then the watch
//! cache's memory at 10,000 Services (its own gauge and the server's RSS).
//!
//! Run: `cargo bench -p rkube --bench watch_fanout` (release build).
//! `RKUBE_BENCH_WATCHERS` and `RKUBE_BENCH_RATE` change the load.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::TestServer;

fn svc(name: &str) -> Service {
    Service {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(ServiceSpec {
            selector: Some([("app".to_string(), name.to_string())].into()),
            ports: Some(vec![ServicePort { port: 80, ..Default::default() }]),
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

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Delivery latencies of `total` creates at `rate`/s seen by `watchers` watches.
async fn fanout(server: &TestServer, watchers: usize, rate: u64, total: u64) -> Vec<Duration> {
    let client = controllers::client_from_kubeconfig(&server.kubeconfig_path()).await.expect("client");
    let api: Api<Service> = Api::namespaced(client, "default");
    let rv =
        api.list(&ListParams::default().limit(1)).await.expect("list").metadata.resource_version.unwrap_or_default();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        // A client of its own per watcher, as separate programs would have.
        let client = controllers::client_from_kubeconfig(&server.kubeconfig_path()).await.expect("client");
        let api: Api<Service> = Api::namespaced(client, "default");
        let mut stream = api.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(total as usize);
            while (seen.len() as u64) < total {
                match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
                    Ok(Some(Ok(WatchEvent::Added(s)))) => {
                        let name = s.metadata.name.unwrap_or_default();
                        if let Some(t) = sent.lock().expect("lock").get(&name) {
                            seen.push(t.elapsed());
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    other => panic!("watch ended: {other:?}"),
                }
            }
            seen
        }));
    }
    let tag: String = format!("{:x}", Instant::now().elapsed().as_nanos() % 0xffff);
    let start = Instant::now();
    let mut creates = Vec::new();
    for i in 0..total {
        tokio::time::sleep_until((start + Duration::from_micros(i * 1_000_000 / rate)).into()).await;
        let name = format!("f{tag}-{i:05}");
        sent.lock().expect("lock").insert(name.clone(), Instant::now());
        let api = api.clone();
        creates
            .push(tokio::spawn(async move { api.create(&PostParams::default(), &svc(&name)).await.expect("create") }));
    }
    for c in creates {
        c.await.expect("create task");
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("watcher"));
    }
    all
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let watchers = env("RKUBE_BENCH_WATCHERS", 50);
    let rate = env("RKUBE_BENCH_RATE", 1000) as u64;
    let total = rate * 3;
    println!(
        "watch fan-out: {watchers} watchers, {rate} Service creates/s for 3 s, rkube server with controllers, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let bin = env!("CARGO_BIN_EXE_rkube");
    let mut results = Vec::new();
    for (label, args) in [("watch cache", vec![]), ("store watch per client", vec!["--watch-cache=false"])] {
        let server = TestServer::start_with_args(bin, &args).expect("rkube server");
        let mut lat = fanout(&server, watchers, rate, total).await;
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        println!("{label:<24} events {:>7}  p50 {:>9.2} ms  p99 {:>9.2} ms", lat.len(), ms(p50), ms(p99));
        results.push((p50, p99));
    }
    let ((c50, c99), (b50, b99)) = (results[0], results[1]);
    println!(
        "ratio (cache / baseline): p50 {:.2}x, p99 {:.2}x; target p99 < 50 ms: {}",
        ms(c50) / ms(b50).max(1e-6),
        ms(c99) / ms(b99).max(1e-6),
        if ms(c99) < 50.0 { "yes" } else { "NO" }
    );

    // Memory at 10,000 Services.
    let n = env("RKUBE_BENCH_N", 10_000);
    let server = TestServer::start_with_args(bin, &["--api-only"]).expect("rkube server");
    let client = controllers::client_from_kubeconfig(&server.kubeconfig_path()).await.expect("client");
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let pid = server.pid().expect("pid");
    let before = rss_kib(pid);
    // One watch makes the Services' cacher.
    let _w = api.watch(&WatchParams::default(), "0").await.expect("watch").boxed();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let mut c = Vec::new();
        for i in chunk {
            let api = api.clone();
            let name = format!("m{i:05}");
            c.push(tokio::spawn(async move { api.create(&PostParams::default(), &svc(&name)).await.expect("create") }));
        }
        for t in c {
            t.await.expect("create");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let req = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let metrics = client.request_text(req).await.expect("metrics");
    let bytes = metrics
        .lines()
        .find(|l| l.starts_with("apiserver_watch_cache_bytes{prefix=\"/registry/core/services/\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let after = rss_kib(pid);
    println!(
        "watch cache at {n} Services: {:.1} MiB by its gauge; server RSS {:.1} -> {:.1} MiB",
        bytes / 1048576.0,
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
}
