//! Node death -> endpoints benchmark (issue 12), in the 3-node sandbox of
//! `tests/support/lb_cluster.rs`: node2 and node3 run one `web` pod each behind the
//! Service `web`. A node is lost (agent SIGKILLed, LAN link down); measured is the
//! time until its pod's address leaves the Service's Endpoints, read every 50 ms.
//! Upstream's chain: the node's Lease stops renewing, the node lifecycle controller
//! marks it Unknown after the grace period, sets its pods' Ready condition false, and
//! the endpoints controllers drop them. Target: p99 < grace period + 2 s.
//! Baseline in the same run: a pod deleted outright (`--grace-period=0 --force`),
//! the endpoints pipeline without the detection.
//!
//! The grace period is shortened to keep the run short (`--node-monitor-grace-period
//! 4s`, agents' Leases of 2 s renewed every 0.5 s, `--node-monitor-period 500ms`);
//! what is compared is the time beyond it.
//!
//! Run: `cargo bench -p rkube --bench node_death` (as root).

#[path = "../tests/support/lb_cluster.rs"]
mod lb_cluster;

use lb_cluster::{pct, LbCluster};
use std::time::{Duration, Instant};

const DEATHS: usize = 10;
const GRACE: Duration = Duration::from_secs(4);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nodes whose pods are in `web`'s ready endpoints.
fn endpoint_nodes(c: &LbCluster) -> Vec<String> {
    let out = c.k().run(["get", "endpoints", "web", "-o", "jsonpath={.subsets[*].addresses[*].nodeName}"]);
    out.stdout.split_whitespace().map(String::from).collect()
}

/// Time until `gone(nodes)` holds, reading the Endpoints every 50 ms.
fn until(c: &LbCluster, what: &str, start: Instant, mut gone: impl FnMut(&[String]) -> bool) -> Duration {
    loop {
        if gone(&endpoint_nodes(c)) {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no {what} within 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    if let Some(why) = testkit::sandbox_unavailable() {
        println!("skipping the node death benchmark: {why}");
        return;
    }
    let grace = format!("{}s", GRACE.as_secs());
    let mut c = LbCluster::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_rkube")),
        &["--node-monitor-grace-period", &grace, "--node-monitor-period", "500ms", "--disable", "coredns,nodelocaldns"],
        &["--node-lease-duration-seconds", "2"],
    );
    let k = c.k();
    let both = |c: &LbCluster| {
        c.wait("both web endpoints", Duration::from_secs(90), || {
            let n = endpoint_nodes(c);
            n.contains(&"node2".to_string()) && n.contains(&"node3".to_string())
        })
    };
    both(&c);

    let mut deaths = Vec::new();
    for i in 0..DEATHS {
        let n = 2 + i % 2;
        let node = format!("node{n}");
        let start = Instant::now();
        c.lose(n);
        let took = until(&c, "endpoint removal", start, |nodes| !nodes.contains(&node));
        println!(
            "death {:2}: {node} lost, its endpoint left after {:.0} ms ({:+.0} ms beyond the grace period)",
            i + 1,
            ms(took),
            ms(took) - ms(GRACE)
        );
        deaths.push(took);
        c.restore(n);
        both(&c);
    }

    // Baseline: the same pod removed by deleting it.
    let mut deletes = Vec::new();
    for i in 0..DEATHS {
        let n = 2 + i % 2;
        let node = format!("node{n}");
        let pod = format!("web-node{n}");
        let start = Instant::now();
        k.ok(["delete", "pod", &pod, "--grace-period=0", "--force", "--wait=false"]);
        let took = until(&c, "endpoint removal", start, |nodes| !nodes.contains(&node));
        deletes.push(took);
        let manifest = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  labels:\n    app: web\nspec:\n  nodeName: {node}\n  containers:\n  - name: web\n    image: minjulee226/myweb\n");
        c.wait("the deleted pod gone", Duration::from_secs(60), || {
            k.run(["get", "pod", &pod]).stderr.contains("NotFound")
        });
        k.ok_with_stdin(["create", "-f", "-"], &manifest);
        both(&c);
    }

    let (d50, d99) = (pct(&mut deaths, 0.5), pct(&mut deaths, 0.99));
    let (b50, b99) = (pct(&mut deletes, 0.5), pct(&mut deletes, 0.99));
    let beyond = d99.saturating_sub(GRACE);
    println!(
        "node death -> endpoints over {DEATHS}: p50 {:.0} ms, p99 {:.0} ms (grace {:.0} ms; p99 beyond it {:.0} ms, target < 2000 ms)",
        ms(d50),
        ms(d99),
        ms(GRACE),
        ms(beyond)
    );
    println!("baseline, pod deleted -> endpoints: p50 {:.0} ms, p99 {:.0} ms", ms(b50), ms(b99));
    println!(
        "p99 beyond the grace period / baseline p99: {:.2}; p99 / (grace + 2 s): {:.2}",
        beyond.as_secs_f64() / b99.as_secs_f64().max(1e-3),
        d99.as_secs_f64() / (GRACE + Duration::from_secs(2)).as_secs_f64()
    );
}
