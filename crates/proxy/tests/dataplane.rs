//! The data plane carrying real traffic in a sandbox of network namespaces (see
//! `common/mod.rs`). Needs root; each test skips with a message otherwise.

mod common;

use common::{
    all_ok, clients_in, pods_in, proxier_for, refused_fast, root_or_skip, sync, Sandbox, BRIDGE_IP, CLIENT_IP, NODE_IP,
};
use proxy::{
    setup_node, Endpoint, NodeSetup, Protocol, Proxier, ServicePortInfo, ServiceType, SessionAffinity, TrafficPolicy,
};
use std::net::Ipv4Addr;

fn svc(name: &str, ip: [u8; 4], port: u16, protocol: Protocol) -> ServicePortInfo {
    ServicePortInfo {
        namespace: "default".into(),
        name: name.into(),
        port_name: String::new(),
        cluster_ip: Ipv4Addr::from(ip),
        port,
        protocol,
        ..ServicePortInfo::default()
    }
}

#[test]
fn clusterip_from_node_and_pod_reaches_all_endpoints() {
    if !root_or_skip("clusterip_from_node_and_pod_reaches_all_endpoints") {
        return;
    }
    let web = svc("web", [10, 96, 0, 10], 80, Protocol::Tcp);
    let sb = Sandbox::new(3);
    let mut p = proxier_for(&sb);
    let eps: Vec<Endpoint> = (0..3).map(|i| sb.endpoint(i, 8080)).collect();
    let first = sync(&mut p, &[(web.clone(), eps)]);
    assert!(first.full, "the first sync writes the whole table");
    let cip = web.cluster_ip;

    // From the node: masqueraded (the source is outside the pod CIDR).
    let lines = sb.http_get(&sb.node, cip, 80, 60, 2.0);
    assert!(all_ok(&lines), "node -> ClusterIP: {lines:?}");
    assert_eq!(pods_in(&lines).len(), 3, "node reaches all endpoints: {lines:?}");
    assert_eq!(clients_in(&lines), [BRIDGE_IP.to_string()].into(), "node traffic is masqueraded");

    // From pod p1, itself an endpoint: hairpin traffic is masqueraded, other traffic keeps the pod IP.
    let lines = sb.http_get(&sb.pods[0].ns, cip, 80, 60, 2.0);
    assert!(all_ok(&lines), "pod -> ClusterIP: {lines:?}");
    assert_eq!(pods_in(&lines).len(), 3, "pod reaches all endpoints, itself included: {lines:?}");
    for l in &lines {
        let mut f = l.split_whitespace().skip(1);
        let (pod, client) = (f.next().unwrap_or_default(), f.next().unwrap_or_default());
        let want = if pod == "p1" { BRIDGE_IP.to_string() } else { sb.pods[0].ip.to_string() };
        assert_eq!(client, want, "client address seen by {pod}");
    }
}

#[test]
fn session_affinity_keeps_client_on_one_endpoint() {
    if !root_or_skip("session_affinity_keeps_client_on_one_endpoint") {
        return;
    }
    let mut sticky = svc("sticky", [10, 96, 0, 11], 80, Protocol::Tcp);
    sticky.session_affinity = SessionAffinity::ClientIP { timeout_seconds: 600 };
    let sb = Sandbox::new(3);
    let eps: Vec<Endpoint> = (0..3).map(|i| sb.endpoint(i, 8080)).collect();
    let mut p = proxier_for(&sb);
    sync(&mut p, &[(sticky.clone(), eps.clone())]);
    for ns in [sb.node.clone(), sb.pods[1].ns.clone()] {
        let lines = sb.http_get(&ns, sticky.cluster_ip, 80, 20, 2.0);
        assert!(all_ok(&lines), "{ns}: {lines:?}");
        assert_eq!(pods_in(&lines).len(), 1, "one client, one endpoint: {lines:?}");
    }
    // Partial syncs switching the layout of the service: affinity off (endpoint chains and
    // sets go away), then on again with another timeout (new sets), then an endpoint less.
    let mut plain = sticky.clone();
    plain.session_affinity = SessionAffinity::None;
    let s = sync(&mut p, &[(plain, eps.clone())]);
    assert!(!s.full);
    let lines = sb.http_get(&sb.node, sticky.cluster_ip, 80, 40, 2.0);
    assert!(all_ok(&lines) && pods_in(&lines).len() == 3, "without affinity: {lines:?}");
    let mut again = sticky.clone();
    again.session_affinity = SessionAffinity::ClientIP { timeout_seconds: 30 };
    sync(&mut p, &[(again.clone(), eps.clone())]);
    let lines = sb.http_get(&sb.node, sticky.cluster_ip, 80, 20, 2.0);
    assert!(all_ok(&lines) && pods_in(&lines).len() == 1, "affinity again: {lines:?}");
    sync(&mut p, &[(again, eps[..2].to_vec())]);
    let lines = sb.http_get(&sb.node, sticky.cluster_ip, 80, 20, 2.0);
    assert!(all_ok(&lines) && pods_in(&lines).len() == 1, "affinity, one endpoint less: {lines:?}");
    assert!(!pods_in(&lines).contains("p3"), "{lines:?}");
}

#[test]
fn nodeport_and_loadbalancer_from_lan_client() {
    if !root_or_skip("nodeport_and_loadbalancer_from_lan_client") {
        return;
    }
    let sb = Sandbox::new(3);
    let mut p = proxier_for(&sb);

    // externalTrafficPolicy: Cluster, LoadBalancer IP = the node IP (ServiceLB style).
    let mut np = svc("np", [10, 96, 0, 12], 80, Protocol::Tcp);
    np.service_type = ServiceType::LoadBalancer;
    np.node_port = Some(31111);
    np.load_balancer_ips = vec![NODE_IP];
    // externalTrafficPolicy: Local with two local endpoints and one on another node.
    let mut local = svc("local", [10, 96, 0, 13], 80, Protocol::Tcp);
    local.service_type = ServiceType::NodePort;
    local.node_port = Some(31112);
    local.external_traffic_policy = TrafficPolicy::Local;
    let remote = Endpoint::ready(Ipv4Addr::new(10, 244, 1, 9), 8080, Some("node-b"), false);
    // externalTrafficPolicy: Local with only a remote endpoint: external traffic is dropped.
    let mut none_local = svc("none-local", [10, 96, 0, 14], 80, Protocol::Tcp);
    none_local.service_type = ServiceType::NodePort;
    none_local.node_port = Some(31113);
    none_local.external_traffic_policy = TrafficPolicy::Local;

    let all: Vec<Endpoint> = (0..3).map(|i| sb.endpoint(i, 8080)).collect();
    let desired = vec![
        (np, all),
        (local, vec![sb.endpoint(0, 8080), sb.endpoint(1, 8080), remote.clone()]),
        (none_local, vec![remote]),
    ];
    sync(&mut p, &desired);

    let lines = sb.http_get(&sb.client, NODE_IP, 31111, 60, 2.0);
    assert!(all_ok(&lines), "client -> NodePort: {lines:?}");
    assert_eq!(pods_in(&lines).len(), 3, "{lines:?}");
    assert_eq!(clients_in(&lines), [BRIDGE_IP.to_string()].into(), "Cluster policy masquerades");

    let lines = sb.http_get(&sb.client, NODE_IP, 80, 30, 2.0);
    assert!(all_ok(&lines), "client -> LoadBalancer IP: {lines:?}");
    assert_eq!(pods_in(&lines).len(), 3, "{lines:?}");

    let lines = sb.http_get(&sb.client, NODE_IP, 31112, 40, 2.0);
    assert!(all_ok(&lines), "client -> Local NodePort (the remote endpoint is never picked): {lines:?}");
    assert_eq!(pods_in(&lines), ["p1".to_string(), "p2".to_string()].into(), "{lines:?}");
    assert_eq!(clients_in(&lines), [CLIENT_IP.to_string()].into(), "Local policy keeps the client IP");

    let lines = sb.http_get(&sb.client, NODE_IP, 31113, 1, 1.0);
    assert_eq!(lines, vec!["TIMEOUT".to_string()], "Local policy without local endpoints drops");
}

#[test]
fn service_without_endpoints_refuses_at_once() {
    if !root_or_skip("service_without_endpoints_refuses_at_once") {
        return;
    }
    let empty = svc("empty", [10, 96, 0, 20], 80, Protocol::Tcp);
    let empty_udp = svc("empty-udp", [10, 96, 0, 20], 53, Protocol::Udp);
    let web = svc("web", [10, 96, 0, 21], 80, Protocol::Tcp);
    let sb = Sandbox::new(1);
    let mut p = proxier_for(&sb);
    sync(&mut p, &[(empty, vec![]), (empty_udp, vec![]), (web, vec![sb.endpoint(0, 8080)])]);
    for ns in [sb.node.clone(), sb.pods[0].ns.clone()] {
        let lines = sb.http_get(&ns, Ipv4Addr::new(10, 96, 0, 20), 80, 1, 3.0);
        assert!(refused_fast(&lines), "{ns}: no endpoints -> connection refused at once: {lines:?}");
        // From a pod the ICMP port unreachable comes back; on the node the reject happens in
        // the output path, so send(2) itself fails with EPERM. Either way: at once.
        let lines = sb.udp_query(&ns, Ipv4Addr::new(10, 96, 0, 20), 53, 1, 2.0, 0);
        let want = if ns == sb.node { "ERR 1" } else { "REFUSED" };
        assert_eq!(lines, vec![want.to_string()], "{ns}: UDP without endpoints is rejected");
        let lines = sb.http_get(&ns, Ipv4Addr::new(10, 96, 0, 21), 8081, 1, 3.0);
        assert!(refused_fast(&lines), "{ns}: undefined port on a live ClusterIP -> refused: {lines:?}");
        let lines = sb.http_get(&ns, Ipv4Addr::new(10, 96, 0, 99), 80, 1, 1.0);
        assert_eq!(lines, vec!["TIMEOUT".to_string()], "{ns}: unallocated service IP is dropped");
        let lines = sb.http_get(&ns, Ipv4Addr::new(10, 96, 0, 21), 80, 3, 2.0);
        assert!(all_ok(&lines), "{ns}: the live service still works: {lines:?}");
    }
}

#[test]
fn udp_through_cluster_ip() {
    if !root_or_skip("udp_through_cluster_ip") {
        return;
    }
    let dns = svc("dns", [10, 96, 0, 30], 53, Protocol::Udp);
    let sb = Sandbox::new(3);
    let eps: Vec<Endpoint> = (0..3).map(|i| sb.endpoint(i, 5300)).collect();
    let mut p = proxier_for(&sb);
    sync(&mut p, &[(dns.clone(), eps)]);
    for ns in [sb.node.clone(), sb.pods[2].ns.clone()] {
        let lines = sb.udp_query(&ns, dns.cluster_ip, 53, 30, 2.0, 0);
        assert!(all_ok(&lines), "{ns}: {lines:?}");
        assert!(pods_in(&lines).len() >= 2, "{ns}: UDP is load-balanced: {lines:?}");
    }
}

#[test]
fn udp_conntrack_cleared_when_endpoint_removed() {
    if !root_or_skip("udp_conntrack_cleared_when_endpoint_removed") {
        return;
    }
    let dns = svc("dns", [10, 96, 0, 31], 53, Protocol::Udp);
    let sb = Sandbox::new(2);
    let mut p = proxier_for(&sb);
    let both = vec![sb.endpoint(0, 5300), sb.endpoint(1, 5300)];
    sync(&mut p, &[(dns.clone(), both.clone())]);
    // A fixed source port: the same conntrack entry every time.
    let first = sb.udp_query(&sb.node, dns.cluster_ip, 53, 3, 2.0, 40053);
    assert!(all_ok(&first), "{first:?}");
    let chosen = pods_in(&first);
    assert_eq!(chosen.len(), 1, "one flow, one endpoint: {first:?}");
    let idx = if chosen.contains("p1") { 0 } else { 1 };
    let remaining: Vec<Endpoint> = both.iter().enumerate().filter(|(i, _)| *i != idx).map(|(_, e)| e.clone()).collect();
    let stats = sync(&mut p, &[(dns.clone(), remaining)]);
    assert!(stats.conntrack_deletions > 0, "{stats:?}");
    let after = sb.udp_query(&sb.node, dns.cluster_ip, 53, 3, 2.0, 40053);
    assert!(all_ok(&after), "{after:?}");
    assert!(pods_in(&after).is_disjoint(&chosen), "the stale flow was deleted: before {first:?}, after {after:?}");
}

#[test]
fn partial_sync_sends_only_the_changed_service() {
    if !root_or_skip("partial_sync_sends_only_the_changed_service") {
        return;
    }
    let sb = Sandbox::new(3);
    let mut p = proxier_for(&sb);
    let mut desired: Vec<(ServicePortInfo, Vec<Endpoint>)> = (0..5u8)
        .map(|i| {
            (
                svc(&format!("svc-{i}"), [10, 96, 1, i + 1], 80, Protocol::Tcp),
                vec![sb.endpoint(0, 8080), sb.endpoint(1, 8080)],
            )
        })
        .collect();
    let full = sync(&mut p, &desired);
    assert!(full.full);
    assert_eq!((full.services, full.endpoints), (5, 10));

    let nothing = sync(&mut p, &desired);
    assert!(!nothing.full);
    assert_eq!((nothing.statements, nothing.changed_services), (0, 0), "no change, no transaction");

    // Replace one endpoint of svc-2 (p2 -> p3): two slot elements and two hairpin elements.
    desired[2].1 = vec![sb.endpoint(0, 8080), sb.endpoint(2, 8080)];
    let s = sync(&mut p, &desired);
    assert!(!s.full);
    assert_eq!(s.changed_services, 1);
    assert!(s.statements <= 4, "replace one endpoint: {s:?}\n{}", p.last_transaction());
    let tx = p.last_transaction().to_string();
    assert!(!tx.contains("chain"), "no chain touched when the endpoint count stays: {tx}");
    for other in [0, 1, 3, 4] {
        assert!(!tx.contains(&format!("svc-{other}")), "svc-{other} not in the transaction: {tx}");
    }
    let lines = sb.http_get(&sb.node, Ipv4Addr::new(10, 96, 1, 3), 80, 40, 2.0);
    assert!(all_ok(&lines), "{lines:?}");
    assert_eq!(pods_in(&lines), ["p1".to_string(), "p3".to_string()].into(), "{lines:?}");

    // Add an endpoint: the chain's rules are rewritten (mod 2 -> mod 3) plus one slot.
    desired[2].1.push(sb.endpoint(1, 8080));
    let s = sync(&mut p, &desired);
    assert_eq!(s.changed_services, 1);
    assert!(s.statements <= 6, "add one endpoint: {s:?}\n{}", p.last_transaction());
    let lines = sb.http_get(&sb.node, Ipv4Addr::new(10, 96, 1, 3), 80, 60, 2.0);
    assert_eq!(pods_in(&lines).len(), 3, "{lines:?}");

    // Remove a service: its chain and elements go, the others stay.
    let removed = desired.remove(4);
    let s = sync(&mut p, &desired);
    assert_eq!((s.changed_services, s.services), (1, 4));
    let lines = sb.http_get(&sb.node, removed.0.cluster_ip, 80, 1, 1.0);
    assert_eq!(lines, vec!["TIMEOUT".to_string()], "a deleted service's IP is unallocated: {lines:?}");
    let lines = sb.http_get(&sb.node, Ipv4Addr::new(10, 96, 1, 1), 80, 5, 2.0);
    assert!(all_ok(&lines), "{lines:?}");

    // All endpoints of a service gone: it rejects.
    desired[0].1.clear();
    sync(&mut p, &desired);
    let lines = sb.http_get(&sb.node, Ipv4Addr::new(10, 96, 1, 1), 80, 1, 2.0);
    assert!(lines.first().is_some_and(|l| l.starts_with("REFUSED")), "{lines:?}");
    let m = proxy::metrics();
    assert!(m.contains("kubeproxy_sync_proxy_rules_duration_seconds_count{sync=\"partial\"}"), "{m}");
    assert!(m.contains("kubeproxy_sync_proxy_rules_nftables_rules"), "{m}");
}

#[test]
fn failed_sync_is_followed_by_a_full_sync() {
    if !root_or_skip("failed_sync_is_followed_by_a_full_sync") {
        return;
    }
    let web = svc("web", [10, 96, 0, 40], 80, Protocol::Tcp);
    let sb = Sandbox::new(2);
    let mut p = proxier_for(&sb);
    sync(&mut p, &[(web.clone(), vec![sb.endpoint(0, 8080)])]);
    // Someone removes the table behind the proxier's back: the next partial sync fails...
    let out = sb.exec(&sb.node, "nft", &["delete", "table", "ip", "rkube"]);
    assert!(out.status.success());
    let desired = vec![(web.clone(), vec![sb.endpoint(0, 8080), sb.endpoint(1, 8080)])];
    assert!(p.sync(&desired).is_err(), "partial sync against a missing table fails");
    assert!(p.needs_full_sync());
    // ...and the one after rewrites everything.
    let s = sync(&mut p, &desired);
    assert!(s.full, "{s:?}");
    let lines = sb.http_get(&sb.node, web.cluster_ip, 80, 30, 2.0);
    assert!(all_ok(&lines) && pods_in(&lines).len() == 2, "{lines:?}");
}

#[test]
fn restart_keeps_established_connections() {
    if !root_or_skip("restart_keeps_established_connections") {
        return;
    }
    let echo = svc("echo", [10, 96, 0, 50], 9000, Protocol::Tcp);
    let sb = Sandbox::new(3);
    let eps: Vec<Endpoint> = (0..3).map(|i| sb.endpoint(i, 9000)).collect();
    let cfg = sb.proxy_config();
    if let Err(e) = setup_node(&cfg, &NodeSetup::default()) {
        panic!("setup_node: {e}");
    }
    let mut p = Proxier::new(cfg.clone());
    sync(&mut p, &[(echo.clone(), eps.clone())]);
    let mut from_node = sb.tcp_session(&sb.node, echo.cluster_ip, 9000);
    let mut from_pod = sb.tcp_session(&sb.pods[1].ns, echo.cluster_ip, 9000);
    let a_node = from_node.send("a");
    let a_pod = from_pod.send("a");
    assert!(a_node.starts_with("OK ") && a_pod.starts_with("OK "), "{a_node} / {a_pod}");

    // A new proxier (a restarted process) adopts the table: nothing changed, nothing sent.
    drop(p);
    let mut p = Proxier::new(cfg);
    let s = sync(&mut p, &[(echo.clone(), eps.clone())]);
    assert!(s.adopted && !s.full && s.statements == 0, "{s:?}\n{}", p.last_transaction());
    let b_node = from_node.send("b");
    let b_pod = from_pod.send("b");
    assert_eq!(b_node, a_node.replace(":a", ":b"), "node connection survives the restart");
    assert_eq!(b_pod, a_pod.replace(":a", ":b"), "pod connection survives the restart");
    let mut again = sb.tcp_session(&sb.pods[0].ns, echo.cluster_ip, 9000);
    assert!(again.send("c").starts_with("OK "), "new connections are DNATed by the adopted table");

    // A full rewrite (what a failed sync leads to) keeps them too.
    p.force_full_sync();
    let s = sync(&mut p, &[(echo.clone(), eps)]);
    assert!(s.full, "{s:?}");
    assert_eq!(from_node.send("d"), a_node.replace(":a", ":d"), "node connection survives a full rewrite");
    assert_eq!(from_pod.send("d"), a_pod.replace(":a", ":d"), "pod connection survives a full rewrite");
}

#[test]
fn restart_keeps_client_ip_affinity() {
    if !root_or_skip("restart_keeps_client_ip_affinity") {
        return;
    }
    let sticky = ServicePortInfo {
        session_affinity: SessionAffinity::ClientIP { timeout_seconds: 600 },
        ..svc("sticky", [10, 96, 0, 70], 80, Protocol::Tcp)
    };
    let sb = Sandbox::new(3);
    let eps: Vec<Endpoint> = (0..3).map(|i| sb.endpoint(i, 8080)).collect();
    let mut p = proxier_for(&sb);
    sync(&mut p, &[(sticky.clone(), eps.clone())]);
    let lines = sb.http_get(&sb.pods[0].ns, sticky.cluster_ip, 80, 10, 2.0);
    let chosen = pods_in(&lines);
    assert!(all_ok(&lines) && chosen.len() == 1, "{lines:?}");

    drop(p);
    let mut p = Proxier::new(sb.proxy_config());
    let s = sync(&mut p, &[(sticky.clone(), eps)]);
    assert!(s.adopted && !s.full, "{s:?}");
    let lines = sb.http_get(&sb.pods[0].ns, sticky.cluster_ip, 80, 10, 2.0);
    assert!(all_ok(&lines), "{lines:?}");
    assert_eq!(pods_in(&lines), chosen, "the client's affinity entry survived the restart: {lines:?}");
    // The entry itself is still there (a lost one would be re-created by chance 1 in 3 on
    // the same pod, so the check above alone could pass).
    let out = sb.exec(&sb.node, "nft", &["list", "table", "ip", "rkube"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let client = sb.pods[0].ip.to_string();
    let mut in_affinity = false;
    let mut found = false;
    for line in table.lines().map(str::trim) {
        if line.starts_with("set affinity-") {
            in_affinity = true;
        } else if line == "}" {
            in_affinity = false;
        } else if in_affinity && line.contains(&client) && line.contains("expires") {
            found = true;
        }
    }
    assert!(found, "{client} in an affinity set after the restart:\n{table}");
}

#[test]
fn unreachable_service_route_keeps_pod_traffic() {
    if !root_or_skip("unreachable_service_route_keeps_pod_traffic") {
        return;
    }
    let web = svc("web", [10, 96, 0, 60], 80, Protocol::Tcp);
    let empty = svc("empty", [10, 96, 0, 61], 80, Protocol::Tcp);
    let sb = Sandbox::new(2);
    let cfg = sb.proxy_config();
    let setup = NodeSetup { service_cidr_unreachable_route: true, ..NodeSetup::default() };
    match setup_node(&cfg, &setup) {
        Ok(r) => assert!(r.ip_forward && r.service_cidr_route, "{r:?}"),
        Err(e) => panic!("setup_node: {e}"),
    }
    let routes = sb.exec(&sb.node, "ip", &["route", "show", "type", "unreachable"]);
    assert!(String::from_utf8_lossy(&routes.stdout).contains("10.96.0.0/12"));
    let mut p = Proxier::new(cfg);
    sync(&mut p, &[(web.clone(), vec![sb.endpoint(0, 8080), sb.endpoint(1, 8080)]), (empty, vec![])]);
    let pod = sb.pods[1].ns.clone();
    let lines = sb.http_get(&pod, web.cluster_ip, 80, 20, 2.0);
    assert!(all_ok(&lines), "pod -> ClusterIP (DNAT happens before routing): {lines:?}");
    let lines = sb.http_get(&pod, Ipv4Addr::new(10, 96, 0, 61), 80, 1, 2.0);
    assert!(lines.first().is_some_and(|l| l.starts_with("REFUSED")), "rejected before routing: {lines:?}");
    // The documented cost: the node's own connections to ClusterIPs fail routing.
    let lines = sb.http_get(&sb.node, web.cluster_ip, 80, 1, 2.0);
    assert_eq!(lines, vec!["ERR 113".to_string()], "node -> ClusterIP gets EHOSTUNREACH: {lines:?}");
}

#[test]
fn node_local_dns_traffic_is_not_tracked() {
    if !root_or_skip("node_local_dns_traffic_is_not_tracked") {
        return;
    }
    let sb = Sandbox::new(1);
    let cfg = sb.proxy_config();
    let mut p = Proxier::new(cfg);
    sync(&mut p, &[]);
    let out = sb.exec(&sb.node, "nft", &["list", "chain", "ip", "rkube", "raw-prerouting"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ip daddr 169.254.20.10 udp dport 53 notrack"), "{text}");
    assert!(text.contains("ip daddr 169.254.20.10 tcp dport 53 notrack"), "{text}");
    // cleanup removes the table (and does not mind when it is already gone).
    for _ in 0..2 {
        if let Err(e) = proxy::cleanup(p.config()) {
            panic!("cleanup: {e}");
        }
    }
    let out = sb.exec(&sb.node, "nft", &["list", "tables"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("rkube"));
}
