//! LoadBalancer Services carrying real traffic in a sandbox (see `common/mod.rs`): ingress
//! IPs, `loadBalancerSourceRanges` and health check node ports. The LAN client reaches the
//! LoadBalancer IPs through a route via the node (in production another component answers
//! ARP for them). Needs root; each test skips with a message otherwise.

mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{
    all_ok, clients_in, pods_in, proxier_for, refused_fast, root_or_skip, sync, Sandbox, BRIDGE_IP, CLIENT_IP, NODE_IP,
};
use proxy::{
    health_checks, Endpoint, HealthServer, Protocol, Proxier, ServiceName, ServicePortInfo, ServiceType, TrafficPolicy,
};

const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 200);
const LB_IP_EMPTY: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 201);
const LB_IP_LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 202);

fn lb(
    name: &str,
    port_name: &str,
    cluster_ip: [u8; 4],
    port: u16,
    protocol: Protocol,
    lb_ip: Ipv4Addr,
) -> ServicePortInfo {
    ServicePortInfo {
        namespace: "default".into(),
        name: name.into(),
        port_name: port_name.into(),
        service_type: ServiceType::LoadBalancer,
        cluster_ip: Ipv4Addr::from(cluster_ip),
        port,
        protocol,
        load_balancer_ips: vec![lb_ip],
        ..ServicePortInfo::default()
    }
}

fn ranges(v: &[&str]) -> Vec<ipnet::Ipv4Net> {
    v.iter().map(|r| r.parse().expect("test CIDR")).collect()
}

/// A proxier for the sandbox's node, and the client's routes to the LoadBalancer IPs and
/// the service CIDR (via the node).
fn setup(sb: &Sandbox) -> Proxier {
    let p = proxier_for(sb);
    for dst in ["192.168.122.200/31", "192.168.122.202/32", "10.96.0.0/12"] {
        let out = sb.exec(&sb.client, "ip", &["route", "add", dst, "via", &NODE_IP.to_string()]);
        assert!(out.status.success(), "route {dst}: {}", String::from_utf8_lossy(&out.stderr));
    }
    p
}

#[test]
fn load_balancer_ips_reach_every_port_and_reject_without_endpoints() {
    if !root_or_skip("load_balancer_ips_reach_every_port_and_reject_without_endpoints") {
        return;
    }
    let sb = Sandbox::new(3);
    let mut p = setup(&sb);
    let http =
        ServicePortInfo { node_port: Some(31300), ..lb("web", "http", [10, 96, 0, 80], 80, Protocol::Tcp, LB_IP) };
    let dns = ServicePortInfo { node_port: Some(31301), ..lb("web", "dns", [10, 96, 0, 80], 53, Protocol::Udp, LB_IP) };
    let empty = lb("empty", "", [10, 96, 0, 81], 80, Protocol::Tcp, LB_IP_EMPTY);
    let local = ServicePortInfo {
        external_traffic_policy: TrafficPolicy::Local,
        ..lb("local", "", [10, 96, 0, 82], 80, Protocol::Tcp, LB_IP_LOCAL)
    };
    let remote = Endpoint::ready(Ipv4Addr::new(10, 244, 1, 9), 8080, Some("node-b"), false);
    let desired = vec![
        (http, (0..3).map(|i| sb.endpoint(i, 8080)).collect()),
        (dns, (0..3).map(|i| sb.endpoint(i, 5300)).collect()),
        (empty, vec![]),
        (local, vec![sb.endpoint(0, 8080), remote]),
    ];
    sync(&mut p, &desired);

    let lines = sb.http_get(&sb.client, LB_IP, 80, 40, 2.0);
    assert!(all_ok(&lines), "client -> LB IP tcp/80: {lines:?}");
    assert_eq!(pods_in(&lines).len(), 3, "{lines:?}");
    assert_eq!(clients_in(&lines), [BRIDGE_IP.to_string()].into(), "Cluster policy masquerades");
    let lines = sb.udp_query(&sb.client, LB_IP, 53, 20, 2.0, 0);
    assert!(all_ok(&lines), "client -> LB IP udp/53: {lines:?}");
    assert!(pods_in(&lines).len() >= 2, "{lines:?}");

    let lines = sb.http_get(&sb.client, LB_IP_EMPTY, 80, 1, 3.0);
    assert!(refused_fast(&lines), "LB IP of a Service without endpoints: TCP reset at once: {lines:?}");
    // A port no Service uses on an LB IP is refused, not forwarded (the node does not own it).
    let lines = sb.http_get(&sb.client, LB_IP, 8081, 1, 3.0);
    assert!(refused_fast(&lines), "LB IP, unused port: TCP reset at once: {lines:?}");

    let lines = sb.http_get(&sb.client, LB_IP_LOCAL, 80, 10, 2.0);
    assert!(all_ok(&lines), "client -> Local-policy LB IP: {lines:?}");
    assert_eq!(pods_in(&lines), ["p1".to_string()].into(), "only the local endpoint: {lines:?}");
    assert_eq!(clients_in(&lines), [CLIENT_IP.to_string()].into(), "Local policy keeps the client IP");
}

#[test]
fn load_balancer_source_ranges_filter_only_the_load_balancer_ip() {
    if !root_or_skip("load_balancer_source_ranges_filter_only_the_load_balancer_ip") {
        return;
    }
    let sb = Sandbox::new(2);
    let mut p = setup(&sb);
    let mut fw = ServicePortInfo {
        node_port: Some(31400),
        load_balancer_source_ranges: ranges(&["10.9.0.0/16"]),
        ..lb("fw", "", [10, 96, 0, 90], 80, Protocol::Tcp, LB_IP)
    };
    // A second port (the pods' TCP echo on 9000) under the same ranges.
    let mut echo = ServicePortInfo { port_name: "echo".into(), port: 9000, node_port: Some(31401), ..fw.clone() };
    fw.port_name = "http".into();
    let eps = vec![sb.endpoint(0, 8080), sb.endpoint(1, 8080)];
    let echo_eps = vec![sb.endpoint(0, 9000), sb.endpoint(1, 9000)];
    let mut desired = vec![(fw.clone(), eps.clone()), (echo.clone(), echo_eps)];
    sync(&mut p, &desired);

    let lines = sb.http_get(&sb.client, LB_IP, 80, 1, 1.0);
    assert_eq!(lines, vec!["TIMEOUT".to_string()], "a client outside the ranges is dropped: {lines:?}");
    let lines = sb.http_get(&sb.client, fw.cluster_ip, 80, 5, 2.0);
    assert!(all_ok(&lines), "the ClusterIP of the same Service is not filtered: {lines:?}");
    let lines = sb.http_get(&sb.client, NODE_IP, 31400, 5, 2.0);
    assert!(all_ok(&lines), "its NodePort is not filtered either (as upstream): {lines:?}");

    // The client's address added to the ranges: a partial sync lets it in.
    fw.load_balancer_source_ranges = ranges(&["10.9.0.0/16", "192.168.122.100/32"]);
    echo.load_balancer_source_ranges = fw.load_balancer_source_ranges.clone();
    desired[0].0 = fw.clone();
    desired[1].0 = echo.clone();
    let s = sync(&mut p, &desired);
    assert!(!s.full && s.changed_services == 2, "a range change is a partial sync: {s:?}");
    let lines = sb.http_get(&sb.client, LB_IP, 80, 10, 2.0);
    assert!(all_ok(&lines), "the client is inside the ranges now: {lines:?}");

    // An established connection is not cut when the ranges shrink (only new connections
    // are checked), but new ones are dropped again.
    let mut session = sb.tcp_session(&sb.client, LB_IP, 9000);
    let first = session.send("a");
    assert!(first.starts_with("OK p"), "{first}");
    fw.load_balancer_source_ranges = ranges(&["10.9.0.0/16"]);
    echo.load_balancer_source_ranges = fw.load_balancer_source_ranges.clone();
    desired[0].0 = fw.clone();
    desired[1].0 = echo.clone();
    sync(&mut p, &desired);
    let lines = sb.http_get(&sb.client, LB_IP, 80, 1, 1.0);
    assert_eq!(lines, vec!["TIMEOUT".to_string()], "dropped again: {lines:?}");
    assert_eq!(session.send("b"), first.replace(":a", ":b"), "the established connection still flows");

    // No ranges: no filter, and the firewall chain is gone.
    fw.load_balancer_source_ranges.clear();
    desired[0].0 = fw.clone();
    let s = sync(&mut p, &desired);
    assert!(!s.full);
    let lines = sb.http_get(&sb.client, LB_IP, 80, 5, 2.0);
    assert!(all_ok(&lines), "no ranges, no filter: {lines:?}");
    let out = sb.exec(&sb.node, "nft", &["list", "table", "ip", "rkube"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let fw_chains: Vec<&str> = table.lines().map(str::trim).filter(|l| l.starts_with("chain firewall-")).collect();
    assert_eq!(fw_chains.len(), 2, "firewall-check and the echo port's chain: {fw_chains:?}");
    assert!(fw_chains.iter().any(|c| c.contains("default/fw/tcp/echo")), "{fw_chains:?}");
    assert!(table.contains("chain firewall-check"), "the skeleton keeps its chain: {table}");
}

fn health_get(sb: &Sandbox, port: u16) -> String {
    sb.http_status(&sb.client, NODE_IP, port)
}

/// Polls until the answer satisfies `want` (a listener closes asynchronously).
fn health_until(sb: &Sandbox, port: u16, what: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = health_get(sb, port);
        if want(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: port {port} answers {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One proxy sync as the runner does it: rules, then health checks.
fn step(p: &mut Proxier, health: &mut HealthServer, desired: &[(ServicePortInfo, Vec<Endpoint>)]) {
    sync(p, desired);
    let errors = health.sync(&health_checks(desired));
    assert!(errors.is_empty(), "{errors:?}");
}

fn body(ns: &str, name: &str, n: usize) -> String {
    format!(
        "{{\"localEndpoints\": {n}, \"service\": {{\"name\": \"{name}\", \"namespace\": \"{ns}\"}}, \"serviceProxyHealthy\": true}}"
    )
}

#[test]
fn health_check_node_ports_follow_local_endpoints_and_services() {
    if !root_or_skip("health_check_node_ports_follow_local_endpoints_and_services") {
        return;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let _in_runtime = rt.enter();
    let sb = Sandbox::new(3);
    let mut p = setup(&sb);
    let mut health = HealthServer::new(sb.proxy_config().netns);
    let local = |name: &str, hc: Option<u16>, cluster_ip: [u8; 4], lb_ip: Ipv4Addr| ServicePortInfo {
        external_traffic_policy: if hc.is_some() { TrafficPolicy::Local } else { TrafficPolicy::Cluster },
        health_check_node_port: hc,
        node_port: Some(31500 + u16::from(cluster_ip[3])),
        ..lb(name, "", cluster_ip, 80, Protocol::Tcp, lb_ip)
    };
    let remote = Endpoint::ready(Ipv4Addr::new(10, 244, 1, 9), 8080, Some("node-b"), false);
    let mut desired = vec![
        (
            local("a", Some(32000), [10, 96, 0, 100], LB_IP),
            vec![sb.endpoint(0, 8080), sb.endpoint(1, 8080), remote.clone()],
        ),
        (local("b", Some(32001), [10, 96, 0, 101], LB_IP_EMPTY), vec![remote.clone()]),
    ];
    step(&mut p, &mut health, &desired);
    let want: BTreeMap<ServiceName, u16> = [
        (ServiceName { namespace: "default".into(), name: "a".into() }, 32000),
        (ServiceName { namespace: "default".into(), name: "b".into() }, 32001),
    ]
    .into();
    assert_eq!(health.listening(), want);

    let got = health_get(&sb, 32000);
    assert_eq!(got, format!("200 application/json nosniff {}", body("default", "a", 2)), "two local endpoints");
    let got = health_get(&sb, 32001);
    assert_eq!(got, format!("503 application/json nosniff {}", body("default", "b", 0)), "only a remote endpoint");

    // Endpoints move: the counts follow without reopening anything.
    desired[0].1 = vec![remote.clone()];
    desired[1].1 = vec![sb.endpoint(2, 8080)];
    step(&mut p, &mut health, &desired);
    assert!(health_get(&sb, 32000).starts_with("503 "), "no local endpoint left");
    assert_eq!(health_get(&sb, 32001), format!("200 application/json nosniff {}", body("default", "b", 1)));

    // Policy Cluster: no health check any more; the port closes.
    desired[1].0 = local("b", None, [10, 96, 0, 101], LB_IP_EMPTY);
    step(&mut p, &mut health, &desired);
    health_until(&sb, 32001, "after the policy changed to Cluster", |g| g == "REFUSED");
    assert!(health_get(&sb, 32000).starts_with("503 "), "the other health check stays");
    // And back to Local: open again.
    desired[1].0 = local("b", Some(32001), [10, 96, 0, 101], LB_IP_EMPTY);
    step(&mut p, &mut health, &desired);
    assert!(health_get(&sb, 32001).starts_with("200 "));

    // The Service is deleted: its port closes.
    desired.remove(0);
    step(&mut p, &mut health, &desired);
    health_until(&sb, 32000, "after the Service was deleted", |g| g == "REFUSED");
    assert_eq!(health.listening().len(), 1);

    // An unhealthy proxy (its last sync failed) answers 503 everywhere.
    health.set_proxy_healthy(false);
    let got = health_get(&sb, 32001);
    assert!(got.starts_with("503 ") && got.contains("\"serviceProxyHealthy\": false"), "{got}");
    let m = proxy::metrics();
    assert!(m.contains("kubeproxy_service_health_check_listeners 1"), "{m}");
    assert!(m.contains("kubeproxy_service_health_check_responses_total{code=\"503\"}"), "{m}");
    drop(health);
}
