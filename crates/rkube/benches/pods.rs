//! Pod start-up benchmark (issue 4), in a network-namespace sandbox with
//! `rkube up`: time from creating a ReplicaSet of 50 pods to all 50 Ready, and
//! create-to-Ready latency of single pods (p50/p99 over 30 pods, one at a
//! time, created through the API and watched until Ready). Needs root.
//!
//! Baseline, measured in the same run: the same number of bare processes
//! started in fresh network/UTS/mount namespaces by `unshare`
//! (what a pod costs without the API, scheduling and status round trips).
//! Run: `cargo bench -p rkube --bench pods`.

use std::time::{Duration, Instant};
use testkit::{Kubectl, Sandbox};

fn ready_count(k: &Kubectl, selector: &str) -> usize {
    k.ok([
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
    ])
    .lines()
    .filter(|l| l.trim() == "True")
    .count()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if let Some(why) = testkit::sandbox_unavailable() {
        println!("skipping the pod benchmark: {why}");
        return;
    }
    let sandbox = Sandbox::new(1).expect("sandbox");
    let node = sandbox
        .start_rkube(std::path::Path::new(env!("CARGO_BIN_EXE_rkube")), 1, &["--node-name", "node1"])
        .expect("rkube up");
    let k = node.kubectl();
    let start = Instant::now();
    while !k.ok(["get", "nodes"]).contains(" Ready ") {
        assert!(start.elapsed() < Duration::from_secs(30), "node not ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Baseline: 50 bare processes in their own network, UTS and mount namespaces.
    let bare =
        || sandbox.exec_ok(sandbox.node_netns(1), "unshare", ["--net", "--uts", "--mount", "true"]).expect("unshare");
    let t = Instant::now();
    for _ in 0..50 {
        bare();
    }
    let baseline_50 = t.elapsed();

    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: bench\nspec:\n  replicas: 50\n  selector:\n    matchLabels: {app: bench}\n  template:\n    metadata:\n      labels: {app: bench}\n    spec:\n      containers:\n      - name: web\n        image: minjulee226/myweb\n        readinessProbe:\n          tcpSocket: {port: 8080}\n          periodSeconds: 1\n";
    let t = Instant::now();
    k.ok_with_stdin(["create", "-f", "-"], rs);
    while ready_count(&k, "app=bench") < 50 {
        assert!(t.elapsed() < Duration::from_secs(120), "50 pods not ready in 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rs_50 = t.elapsed();
    k.ok(["delete", "rs", "bench"]);

    // Single pods through the API as a controller would (kube-rs, watch until
    // Ready), from inside the node's network namespace.
    let kubeconfig = node.kubeconfig_path();
    let mut single: Vec<Duration> = sandbox
        .in_netns(sandbox.node_netns(1), move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(single_pods(kubeconfig))
        })
        .expect("in netns");
    let mut base_single: Vec<Duration> = (0..30)
        .map(|_| {
            let t = Instant::now();
            bare();
            t.elapsed()
        })
        .collect();
    println!(
        "rkube pod start-up benchmark, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("{:<44} {:>10} {:>12} {:>8}", "measurement", "rkube", "baseline", "ratio");
    println!(
        "{:<44} {:>8.0}ms {:>10.0}ms {:>7.1}x",
        "ReplicaSet of 50 pods: create -> all Ready",
        ms(rs_50),
        ms(baseline_50),
        ms(rs_50) / ms(baseline_50)
    );
    let (p50, p99) = (pct(&mut single.clone(), 0.5), pct(&mut single, 0.99));
    let (b50, b99) = (pct(&mut base_single.clone(), 0.5), pct(&mut base_single, 0.99));
    println!(
        "{:<44} {:>8.0}ms {:>10.0}ms {:>7.1}x",
        "single pod create -> Ready, p50",
        ms(p50),
        ms(b50),
        ms(p50) / ms(b50)
    );
    println!(
        "{:<44} {:>8.0}ms {:>10.0}ms {:>7.1}x   (target < 200 ms)",
        "single pod create -> Ready, p99",
        ms(p99),
        ms(b99),
        ms(p99) / ms(b99)
    );
}

async fn single_pods(kubeconfig: std::path::PathBuf) -> Vec<Duration> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams, WatchEvent, WatchParams};
    let client = controllers::client_from_kubeconfig(&kubeconfig).await.expect("client");
    let api: Api<Pod> = Api::namespaced(client, "default");
    let mut out = Vec::new();
    for i in 0..30 {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": format!("p{i}") },
            "spec": { "containers": [{ "name": "c", "image": "registry.k8s.io/pause" }] },
        }))
        .expect("pod");
        let t = Instant::now();
        let created = api.create(&PostParams::default(), &pod).await.expect("create");
        let rv = created.metadata.resource_version.unwrap_or_default();
        let wp = WatchParams::default().fields(&format!("metadata.name=p{i}"));
        let mut events = api.watch(&wp, &rv).await.expect("watch").boxed();
        loop {
            match tokio::time::timeout(Duration::from_secs(30), events.next()).await {
                Ok(Some(Ok(WatchEvent::Modified(p)))) => {
                    let conds = p.status.and_then(|s| s.conditions).unwrap_or_default();
                    if conds.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
                        break;
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("pod p{i} never became Ready: {other:?}"),
            }
        }
        out.push(t.elapsed());
    }
    out
}
