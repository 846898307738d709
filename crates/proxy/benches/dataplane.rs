//! Data-plane cost (issue 5): the request rate of short HTTP connections from
//! the node to a pod, straight to the pod IP (the baseline) and through a
//! ClusterIP, first with 1 Service programmed and then with 10,000 Services x 10
//! endpoints, all measured in one run with the same client, the pod IP alternating with
//! the ClusterIP in each phase. Needs root; runs
//! in network namespaces it creates (see `tests/common`).
//! Run: `cargo bench -p proxy --bench dataplane`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{root_or_skip, Sandbox};
use proxy::{setup_node, Endpoint, NodeSetup, Protocol, Proxier, ServicePortInfo};
use std::net::Ipv4Addr;
use std::time::Instant;

const REQUESTS: usize = 400;
const ROUNDS: usize = 5;

/// The client: `n` one-connection GETs, timed inside the client (interpreter start-up and
/// `ip netns exec` excluded); prints the elapsed seconds, or the first failure.
const TIMED_CLIENT: &str = r#"
import sys, http.client, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.monotonic()
for i in range(n):
    c = http.client.HTTPConnection(host, port, timeout=2)
    c.request("GET", "/")
    c.getresponse().read()
    c.close()
print(time.monotonic() - t0)
"#;

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

/// Requests per second of one round of `REQUESTS` one-connection GETs.
fn round(sb: &Sandbox, ip: Ipv4Addr, port: u16) -> f64 {
    let out =
        sb.exec(&sb.node, "python3", &["-c", TIMED_CLIENT, &ip.to_string(), &port.to_string(), &REQUESTS.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<f64>() {
        Ok(secs) if out.status.success() && secs > 0.0 => REQUESTS as f64 / secs,
        _ => panic!("client failed against {ip}:{port}: {text}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Best rate of `ROUNDS` rounds for each of two paths, measured alternately so that load
/// from elsewhere on the machine hits both alike.
fn interleaved(sb: &Sandbox, a: (Ipv4Addr, u16), b: (Ipv4Addr, u16)) -> (f64, f64) {
    let (mut best_a, mut best_b) = (0.0f64, 0.0f64);
    for _ in 0..ROUNDS {
        best_a = best_a.max(round(sb, a.0, a.1));
        best_b = best_b.max(round(sb, b.0, b.1));
    }
    (best_a, best_b)
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
    let (direct, one) = interleaved(&sb, (pod, 8080), (web_ip, 80));

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
    // The pod IP again, alternating with the ClusterIP: 10,000 vs 1 is compared with each
    // phase normalised by its own baseline, so a change of machine load between the phases
    // does not count as rule cost.
    let (direct_after, many) = interleaved(&sb, (pod, 8080), (web_ip, 80));
    let many_vs_one = (many / direct_after) / (one / direct);

    println!(
        "data-plane cost: {REQUESTS} one-connection HTTP GETs from the node, best of {ROUNDS} rounds, paths alternating"
    );
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
        "straight to the pod IP, 10,000 Services programmed",
        direct_after,
        direct_after / direct,
        ""
    );
    println!(
        "{:<52} {:>10.0} {:>8.2} {:>8}",
        "through a ClusterIP, 10,000 Services programmed (vs 1)", many, many_vs_one, ">= 0.95"
    );
    println!("(10,000 Services x 10 endpoints loaded in {:.2} s)", load.as_secs_f64());
}
