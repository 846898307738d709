//! LoadBalancer benchmark (issue 10), in a 3-node network-namespace sandbox
//! (`tests/support/lb_cluster.rs`):
//! - failover: the node announcing a Local-policy LoadBalancer address is lost
//!   (agent SIGKILLed, LAN link down); time from the last answer of the old node to
//!   the first answer of the other, the client trying every 10 ms; 20 failovers,
//!   alternating between node2 and node3 (the lost node is restored in between).
//!   Reported against the lease duration (600 ms), the detection window it cannot beat.
//! - Service create -> first successful request from the client, for LoadBalancer
//!   Services (allocation + proxy rules + ARP), against the same for NodePort Services
//!   measured in the same run (proxy rules only).
//!
//! Run: `cargo bench -p rkube --bench lb_failover` (as root).

#[path = "../tests/support/lb_cluster.rs"]
mod lb_cluster;

use lb_cluster::{pct, LbCluster};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const FAILOVERS: usize = 20;
const CREATES: usize = 20;
const LEASE: Duration = Duration::from_millis(600);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if let Some(why) = testkit::sandbox_unavailable() {
        println!("skipping the LoadBalancer benchmark: {why}");
        return;
    }
    let mut c = LbCluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_rkube")));
    c.wait("an ingress address", Duration::from_secs(30), || c.ingress("web").is_some());
    let ip = c.ingress("web").expect("ingress");
    c.wait("the address answering", Duration::from_secs(30), || c.holder(ip).is_some());

    let mut gaps = Vec::new();
    for i in 0..FAILOVERS {
        let (old, gap) = c.failover(ip);
        println!("failover {:2}: node{old} lost, answered again after {:.0} ms", i + 1, ms(gap));
        gaps.push(gap);
        c.restore(old);
    }
    let (p50, p99, max) = (pct(&mut gaps, 0.5), pct(&mut gaps, 0.99), pct(&mut gaps, 1.0));
    println!(
        "failover over {FAILOVERS}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; p99 / lease duration {:.2}",
        ms(p50),
        ms(p99),
        ms(max),
        p99.as_secs_f64() / LEASE.as_secs_f64()
    );

    // Create -> first answer from outside: LoadBalancer vs NodePort (baseline).
    let k = c.k();
    let node_ip = c.sandbox.node_ip(2);
    let mut lb = Vec::new();
    let mut np = Vec::new();
    for i in 0..CREATES {
        let nodeport = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: np{i}\nspec:\n  type: NodePort\n  externalTrafficPolicy: Local\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n");
        let t = Instant::now();
        let port: u16 = k
            .ok_with_stdin(["create", "-f", "-", "-o", "jsonpath={.spec.ports[0].nodePort}"], &nodeport)
            .trim()
            .parse()
            .expect("nodePort");
        while c.probe_addr(node_ip, port).is_none() {
            assert!(t.elapsed() < Duration::from_secs(20), "NodePort {port} never answered");
            std::thread::sleep(Duration::from_millis(5));
        }
        np.push(t.elapsed());

        let svc = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: lb{i}\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  allocateLoadBalancerNodePorts: false\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n");
        let t = Instant::now();
        k.ok_with_stdin(["create", "-f", "-"], &svc);
        let mut addr: Option<Ipv4Addr> = None;
        loop {
            assert!(t.elapsed() < Duration::from_secs(20), "lb{i} never answered");
            if addr.is_none() {
                addr = c.ingress(&format!("lb{i}"));
            }
            if let Some(a) = addr {
                if c.probe(a, Duration::from_millis(50)).is_some() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        lb.push(t.elapsed());
    }
    let (lb50, lb99) = (pct(&mut lb, 0.5), pct(&mut lb, 0.99));
    let (np50, np99) = (pct(&mut np, 0.5), pct(&mut np, 0.99));
    println!(
        "create -> first answer over {CREATES}: LoadBalancer p50 {:.0} ms p99 {:.0} ms; NodePort (baseline) p50 {:.0} ms p99 {:.0} ms; ratio p50 {:.2} p99 {:.2}",
        ms(lb50),
        ms(lb99),
        ms(np50),
        ms(np99),
        lb50.as_secs_f64() / np50.as_secs_f64(),
        lb99.as_secs_f64() / np99.as_secs_f64()
    );
}
