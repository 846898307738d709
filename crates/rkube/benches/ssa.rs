//! Server-side apply benchmark (issue 11): applying 1,000 Deployments
//! (`application/apply-patch+yaml`, one manager) against replacing the same
//! objects with PUT, in the same run, against `rkube server --api-only` on
//! loopback through kube-rs. Both rounds change every object (a new image and
//! annotation), so both write; both track managedFields (Update vs. Apply).
//! Target: apply costs at most 3x an update.
//! Run: `cargo bench -p rkube --bench ssa` (release build). `RKUBE_BENCH_N`
//! changes the number of Deployments (default 1,000).

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::TestServer;

fn deployment(name: &str, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name }, "annotations": { "round": image } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{
                    "name": "web", "image": image,
                    "ports": [{ "containerPort": 80 }],
                    "env": [{ "name": "A", "value": "1" }, { "name": "B", "value": "2" }],
                    "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } }
                }] }
            }
        }
    })
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
    let n: usize = std::env::var("RKUBE_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    println!(
        "rkube server-side apply benchmark: {n} Deployments, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let server = TestServer::start_with_args(env!("CARGO_BIN_EXE_rkube"), &["--api-only"]).expect("rkube server");
    let client = controllers::client_from_kubeconfig(&server.kubeconfig_path()).await.expect("client");
    let put_api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let raw: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client, "default", &kube::api::ApiResource::erase::<Deployment>(&()));
    let names: Vec<String> = (0..n).map(|i| format!("d{i:05}")).collect();

    // Setup: the objects, created by the applier so both rounds start alike.
    let apply = PatchParams::apply("bench").force();
    for name in &names {
        raw.patch(name, &apply, &Patch::Apply(&deployment(name, "nginx:1.0"))).await.expect("initial apply");
    }

    // Round 1: update (GET, change, PUT), timing the PUT only.
    let mut update = Vec::with_capacity(n);
    for name in &names {
        let mut d = put_api.get(name).await.expect("get");
        let want: Deployment = serde_json::from_value(deployment(name, "nginx:2.0")).expect("typed");
        d.metadata.annotations = want.metadata.annotations;
        d.spec = want.spec;
        let t = Instant::now();
        put_api.replace(name, &PostParams::default(), &d).await.expect("put");
        update.push(t.elapsed());
    }

    // Round 2: apply the next configuration.
    let mut applied = Vec::with_capacity(n);
    for name in &names {
        let cfg = deployment(name, "nginx:3.0");
        let t = Instant::now();
        raw.patch(name, &apply, &Patch::Apply(&cfg)).await.expect("apply");
        applied.push(t.elapsed());
    }
    let check = put_api.get(&names[0]).await.expect("get");
    let image = check.spec.and_then(|s| s.template.spec).map(|s| s.containers[0].image.clone());
    assert_eq!(image.flatten().as_deref(), Some("nginx:3.0"), "the apply round wrote");

    let total = |v: &[Duration]| v.iter().sum::<Duration>();
    let (tu, ta) = (total(&update), total(&applied));
    println!("{:<28} {:>12} {:>12} {:>8} {:>8} {:>4}", "operation", "apply", "update (PUT)", "ratio", "target", "ok");
    let line = |what: &str, a: Duration, u: Duration| {
        let ratio = a.as_secs_f64() / u.as_secs_f64();
        println!(
            "{what:<28} {:>10.3}ms {:>10.3}ms {:>7.2}x {:>7}x {:>4}",
            ms(a),
            ms(u),
            ratio,
            3,
            if ratio <= 3.0 { "yes" } else { "NO" }
        );
    };
    line(&format!("total of {n}"), ta, tu);
    line("p50", pct(&mut applied.clone(), 0.5), pct(&mut update.clone(), 0.5));
    line("p99", pct(&mut applied, 0.99), pct(&mut update, 0.99));
}
