//! Data-plane cost (issue 5): the request rate of short HTTP connections from
//! the node to a pod, straight to the pod IP (the baseline) and through a
//! ClusterIP, first with 1 Service programmed and then with 10,000 Services x 10
//! endpoints, all measured in one run with the same client. Needs root; runs
//! in network namespaces it creates (see `tests/common`).
//! Run: `cargo bench -p proxy --bench dataplane`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{root_or_skip, Sandbox};
use proxy::{setup_node, Endpoint, NodeSetup, Protocol, Proxier, ServicePortInfo};
use std::net::Ipv4Addr;
use std::time::Instant;

const REQUESTS: usize = 400;
const ROUNDS: usize = 3;

fn svc(i: u32, ip: Ipv4Addr) -> ServicePortInfo {
    ServicePortInfo {
        namespace: "default".into(),
        name: format!("s{i}"),
        port_name: String::new(),
        cluster_ip: ip,
        port: 80,
        protocol: Protocol::Tcp,
        ..ServicePortInfo::default()
    }
}

/// Requests per second of `REQUESTS` one-connection GETs (best of `ROUNDS`).
fn rate(sb: &Sandbox, ip: Ipv4Addr, port: u16) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let lines = sb.http_get(&sb.node, ip, port, REQUESTS, 2.0);
        let elapsed = t.elapsed();
        let ok = lines.iter().filter(|l| l.starts_with("OK ")).count();
        assert_eq!(ok, REQUESTS, "every request answered: {:?}", lines.iter().find(|l| !l.starts_with("OK ")));
        best = best.max(REQUESTS as f64 / elapsed.as_secs_f64());
    }
    best
}

fn main() {
    if !root_or_skip("dataplane benchmark") {
        return;
    }
    let sb = Sandbox::new(1);
    let cfg = sb.proxy_config();
    if let Err(e) = setup_node(&cfg, &NodeSetup::default()) {
        panic!("setup_node: {e}");
    }
    let mut p = Proxier::new(cfg);
    let pod = sb.pods[0].ip;
    let web_ip = Ipv4Addr::new(10, 96, 0, 10);
    let web = (svc(0, web_ip), vec![sb.endpoint(0, 8080)]);
    if let Err(e) = p.sync(std::slice::from_ref(&web)) {
        panic!("sync: {e}");
    }
    let direct = rate(&sb, pod, 8080);
    let one = rate(&sb, web_ip, 80);

    // 10,000 Services x 10 endpoints (on unused pod addresses) besides `web`.
    let mut desired = vec![web];
    for i in 1..10_000u32 {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 97, 0, 0)) + i);
        let eps: Vec<Endpoint> = (0..10u32)
            .map(|e| {
                Endpoint::ready(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 245, 0, 0)) + i * 10 + e), 8080, None, true)
            })
            .collect();
        desired.push((svc(i, ip), eps));
    }
    let t = Instant::now();
    if let Err(e) = p.sync(&desired) {
        panic!("sync of 10,000 Services: {e}");
    }
    let load = t.elapsed();
    let many = rate(&sb, web_ip, 80);

    println!("data-plane cost: {REQUESTS} one-connection HTTP GETs from the node, best of {ROUNDS} rounds");
    println!("{:<52} {:>10} {:>8} {:>8}", "path", "req/s", "ratio", "target");
    println!("{:<52} {:>10.0} {:>8} {:>8}", "straight to the pod IP (baseline)", direct, "1.00", "");
    println!(
        "{:<52} {:>10.0} {:>8.2} {:>8}",
        "through a ClusterIP, 1 Service programmed",
        one,
        one / direct,
        ">= 0.95"
    );
    println!(
        "{:<52} {:>10.0} {:>8.2} {:>8}",
        "through a ClusterIP, 10,000 Services programmed (vs 1)",
        many,
        many / one,
        ">= 0.95"
    );
    println!("(10,000 Services x 10 endpoints loaded in {:.2} s)", load.as_secs_f64());
}
