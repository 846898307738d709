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

const REQUESTS: usize = 1000;
const ROUNDS: usize = 11;

/// The client: `n` one-connection GETs, timed inside the client (interpreter start-up and
/// `ip netns exec` excluded); prints the elapsed seconds and the p50 and p99 of the
/// per-request times, or fails. Each connection is closed with a reset (SO_LINGER 0):
/// tens of thousands of TIME_WAIT sockets would otherwise make later rounds slower at
/// finding a free local port, which is not what is measured.
const TIMED_CLIENT: &str = r#"
import sys, http.client, socket, struct, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
linger = struct.pack("ii", 1, 0)
times = []
t0 = time.monotonic()
for i in range(n):
    t = time.monotonic()
    c = http.client.HTTPConnection(host, port, timeout=2)
    c.connect()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    c.request("GET", "/")
    c.getresponse().read()
    c.close()
    times.append(time.monotonic() - t)
elapsed = time.monotonic() - t0
times.sort()
print(elapsed, times[len(times) // 2], times[int(len(times) * 0.99)])
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

/// One round of `REQUESTS` one-connection GETs.
#[derive(Clone, Copy, Debug)]
struct Round {
    /// Requests per second.
    rate: f64,
    /// Per-request time, seconds.
    p50: f64,
    p99: f64,
}

fn round(sb: &Sandbox, ip: Ipv4Addr, port: u16) -> Round {
    let out =
        sb.exec(&sb.node, "python3", &["-c", TIMED_CLIENT, &ip.to_string(), &port.to_string(), &REQUESTS.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match v.as_slice() {
        [secs, p50, p99] if out.status.success() && *secs > 0.0 => {
            Round { rate: REQUESTS as f64 / secs, p50: *p50, p99: *p99 }
        }
        _ => panic!("client failed against {ip}:{port}: {text}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Path b against path a, measured alternately for `ROUNDS` rounds so that load from
/// elsewhere on the machine hits both alike. Each figure is the median over rounds; the
/// ratios are medians of per-round ratios (a round's pair ran back to back, which
/// cancels slow drifts), oriented so that 1.0 = no cost and lower = b is worse.
#[derive(Debug)]
struct Compared {
    a: Round,
    b: Round,
    rate: f64,
    p50: f64,
    p99: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn compare(sb: &Sandbox, a: (Ipv4Addr, u16), b: (Ipv4Addr, u16)) -> Compared {
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        rounds.push((round(sb, a.0, a.1), round(sb, b.0, b.1)));
    }
    let med = |f: &dyn Fn(&(Round, Round)) -> f64| median(rounds.iter().map(f).collect());
    Compared {
        a: Round { rate: med(&|r| r.0.rate), p50: med(&|r| r.0.p50), p99: med(&|r| r.0.p99) },
        b: Round { rate: med(&|r| r.1.rate), p50: med(&|r| r.1.p50), p99: med(&|r| r.1.p99) },
        rate: med(&|r| r.1.rate / r.0.rate),
        p50: med(&|r| r.0.p50 / r.1.p50),
        p99: med(&|r| r.0.p99 / r.1.p99),
    }
}

fn row(what: &str, r: Round, ratios: Option<(f64, f64, f64)>) {
    let (rate, p50, p99) = match ratios {
        Some((a, b, c)) => (format!("{a:.2}"), format!("{b:.2}"), format!("{c:.2}")),
        None => ("1.00".into(), "1.00".into(), "1.00".into()),
    };
    println!("{what:<48} {:>7.0} {:>6} {:>8.0} {:>6} {:>8.0} {:>6}", r.rate, rate, r.p50 * 1e6, p50, r.p99 * 1e6, p99);
}

fn main() {
    if !root_or_skip("dataplane benchmark") {
        return;
    }
    let sb = Sandbox::new(1);
    let cfg = sb.proxy_config();
    // As the agent sets the node up: the service CIDR unreachable, the node's own
    // connections to Service IPs routed to the pod bridge (so they leave from the bridge
    // address, inside the pod CIDR, and are not masqueraded).
    let setup = NodeSetup {
        service_cidr_unreachable_route: true,
        local_service_device: Some("rkube0".into()),
        ..NodeSetup::default()
    };
    if let Err(e) = setup_node(&cfg, &setup) {
        panic!("setup_node: {e}");
    }
    let mut p = Proxier::new(cfg);
    let pod = sb.pods[0].ip;
    let web_ip = Ipv4Addr::new(10, 96, 0, 10);
    let web = (svc(0, web_ip), vec![sb.endpoint(0, 8080)]);
    if let Err(e) = p.sync(std::slice::from_ref(&web)) {
        panic!("sync: {e}");
    }
    let one = compare(&sb, (pod, 8080), (web_ip, 80));

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
    // The pod IP again, alternating with the ClusterIP: 10,000 vs 1 is each phase's
    // ClusterIP-to-pod ratio divided by the other's, so a change of machine load between
    // the phases does not count as rule cost.
    let many = compare(&sb, (pod, 8080), (web_ip, 80));

    println!(
        "data-plane cost: {REQUESTS} one-connection HTTP GETs from the node per round, {ROUNDS} rounds with the paths\n\
         alternating; figures are medians over rounds, ratios medians of per-round ratios (1.00 = no cost; target >= 0.95)"
    );
    println!(
        "{:<48} {:>7} {:>6} {:>8} {:>6} {:>8} {:>6}",
        "path", "req/s", "ratio", "p50 us", "ratio", "p99 us", "ratio"
    );
    row("straight to the pod IP (baseline)", one.a, None);
    row("through a ClusterIP, 1 Service programmed", one.b, Some((one.rate, one.p50, one.p99)));
    row(
        "straight to the pod IP, 10,000 Services programmed",
        many.a,
        Some((many.a.rate / one.a.rate, one.a.p50 / many.a.p50, one.a.p99 / many.a.p99)),
    );
    row(
        "through a ClusterIP, 10,000 Services (vs 1 Service)",
        many.b,
        Some((many.rate / one.rate, many.p50 / one.p50, many.p99 / one.p99)),
    );
    println!("(10,000 Services x 10 endpoints loaded in {:.2} s)", load.as_secs_f64());
}
