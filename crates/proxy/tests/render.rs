//! Rendered rule text (no root needed): what a full sync sends for typical services.

use std::net::Ipv4Addr;

use proxy::render::{cluster_chain_name, external_chain_name, firewall_chain_name, local_chain_name};
use proxy::{
    render_full, Endpoint, Protocol, ProxyConfig, ServicePortInfo, ServiceType, SessionAffinity, TrafficPolicy,
};

fn cfg() -> ProxyConfig {
    ProxyConfig { node_name: "node-a".into(), ..ProxyConfig::default() }
}

fn svc(name: &str, ip: [u8; 4], port: u16) -> ServicePortInfo {
    ServicePortInfo {
        namespace: "default".into(),
        name: name.into(),
        port_name: "http".into(),
        cluster_ip: Ipv4Addr::from(ip),
        port,
        protocol: Protocol::Tcp,
        ..ServicePortInfo::default()
    }
}

fn ep(last: u8, local: bool) -> Endpoint {
    Endpoint::ready(Ipv4Addr::new(10, 244, 0, last), 8080, Some(if local { "node-a" } else { "node-b" }), local)
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

fn assert_lines(text: &str, lines: &[&str]) {
    for l in lines {
        assert!(has(text, l), "missing line:\n{l}\nin:\n{text}");
    }
}

#[test]
fn skeleton_hooks_and_helper_chains() {
    let t = render_full(&cfg(), &[]);
    let first: Vec<&str> = t.lines().take(3).collect();
    assert_eq!(
        first,
        vec![
            "add table ip rkube",
            "delete table ip rkube",
            &format!("add table ip rkube {{ comment \"{}\"; }}", proxy::render::table_comment(&cfg()))
        ],
        "a full sync replaces the table in one transaction"
    );
    assert_lines(
        &t,
        &[
            "add chain ip rkube nat-prerouting { type nat hook prerouting priority -100; policy accept; }",
            "add rule ip rkube nat-prerouting jump services",
            "add rule ip rkube nat-prerouting goto endpoint-dnat",
            "add rule ip rkube nat-output goto endpoint-dnat",
            "add rule ip rkube services ip daddr @cluster-ips ip saddr != 10.244.0.0/16 jump mark-for-masquerade comment \"masquerade off-cluster traffic to ClusterIPs\"",
            "add rule ip rkube services accept",
            "add chain ip rkube nat-output { type nat hook output priority -100; policy accept; }",
            "add chain ip rkube nat-postrouting { type nat hook postrouting priority 100; policy accept; }",
            "add rule ip rkube nat-postrouting jump masquerading",
            "add rule ip rkube services ip daddr . meta l4proto . th dport vmap @service-ips",
            "add rule ip rkube services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
            "add rule ip rkube mark-for-masquerade meta mark set meta mark | 0x4000",
            "add rule ip rkube masquerading ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade",
            "add rule ip rkube masquerading meta mark & 0x4000 == 0 return",
            "add rule ip rkube masquerading meta mark set meta mark ^ 0x4000",
            "add rule ip rkube masquerading masquerade fully-random",
            "add rule ip rkube endpoint-dnat meta l4proto tcp dnat ip to ct mark map @endpoints",
            "add rule ip rkube endpoint-dnat meta l4proto udp dnat ip to ct mark map @endpoints",
            "add rule ip rkube reject-chain meta l4proto tcp reject with tcp reset",
            "add rule ip rkube reject-chain reject",
            "add chain ip rkube filter-prerouting-post-dnat { type filter hook prerouting priority -90; policy accept; }",
            "add rule ip rkube filter-prerouting-post-dnat ct state new jump service-endpoints-check",
            "add rule ip rkube filter-prerouting-post-dnat ct state new jump cluster-ips-check",
            "add chain ip rkube filter-output-post-dnat { type filter hook output priority -90; policy accept; }",
            "add chain ip rkube filter-input { type filter hook input priority -110; policy accept; }",
            "add rule ip rkube filter-input ct state new jump nodeport-endpoints-check",
            "add rule ip rkube cluster-ips-check ip daddr @cluster-ips goto reject-chain comment \"Reject traffic to invalid ports of ClusterIPs\"",
            "add rule ip rkube cluster-ips-check ip daddr 10.96.0.0/12 drop comment \"Drop traffic to unallocated ClusterIPs\"",
            "add chain ip rkube raw-prerouting { type filter hook prerouting priority -300; policy accept; }",
            "add rule ip rkube raw-prerouting ip daddr 169.254.20.10 udp dport 53 notrack",
            "add rule ip rkube raw-prerouting ip daddr 169.254.20.10 tcp dport 53 notrack",
            "add rule ip rkube raw-output ip saddr 169.254.20.10 udp sport 53 notrack",
            "add map ip rkube firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict; comment \"destinations that are subject to LoadBalancerSourceRanges\"; }",
            "add rule ip rkube firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
            "add chain ip rkube filter-prerouting { type filter hook prerouting priority -110; policy accept; }",
            "add rule ip rkube filter-prerouting ct state new jump firewall-check",
            "add chain ip rkube filter-output { type filter hook output priority -110; policy accept; }",
            "add rule ip rkube filter-output ct state new jump firewall-check",
        ],
    );
    let no_dns = render_full(&ProxyConfig { node_local_dns: None, ..cfg() }, &[]);
    assert!(!no_dns.contains("notrack"));
}

#[test]
fn cluster_ip_service_picks_an_endpoint_slot() {
    let s = svc("web", [10, 96, 0, 10], 80);
    let t = render_full(&cfg(), &[(s.clone(), vec![ep(2, true), ep(3, true), ep(4, false)])]);
    let chain = cluster_chain_name(&s);
    assert!(chain.starts_with("service-") && chain.ends_with("-default/web/tcp/http"), "{chain}");
    assert_lines(
        &t,
        &[
            &format!("add chain ip rkube {chain}"),
            &format!("add rule ip rkube {chain} ct mark set numgen random mod 3 offset 65536"),
            &format!("add element ip rkube service-ips {{ 10.96.0.10 . tcp . 80 : goto {chain} }}"),
            "add element ip rkube cluster-ips { 10.96.0.10 }",
            "add element ip rkube endpoints { 65536 : 10.244.0.2 . 8080, 65537 : 10.244.0.3 . 8080, 65538 : 10.244.0.4 . 8080 }",
            "add element ip rkube hairpin { 10.244.0.2 . 10.244.0.2, 10.244.0.3 . 10.244.0.3, 10.244.0.4 . 10.244.0.4 }",
        ],
    );
    let rules = t.lines().filter(|l| l.starts_with(&format!("add rule ip rkube {chain} "))).count();
    assert_eq!(rules, 1, "one rule, no verdict: the base chain goes on to endpoint-dnat");
    assert!(!t.contains("external-"), "no external chain for a plain ClusterIP service");
    let per_endpoint =
        t.lines().filter(|l| l.starts_with("add chain ip rkube endpoint-") && !l.ends_with("endpoint-dnat"));
    assert_eq!(per_endpoint.count(), 0, "no per-endpoint chains");
}

#[test]
fn service_without_endpoints_is_rejected() {
    let mut s = svc("empty", [10, 96, 0, 11], 53);
    s.protocol = Protocol::Udp;
    s.service_type = ServiceType::NodePort;
    s.node_port = Some(30053);
    let t = render_full(&cfg(), &[(s, vec![])]);
    assert_lines(
        &t,
        &[
            "add element ip rkube no-endpoint-services { 10.96.0.11 . udp . 53 : goto reject-chain }",
            "add element ip rkube no-endpoint-nodeports { udp . 30053 : goto reject-chain }",
            "add element ip rkube cluster-ips { 10.96.0.11 }",
        ],
    );
    assert!(!t.contains("add element ip rkube service-ips"), "nothing to DNAT to");
    assert!(!t.contains("-default/empty/udp/http"), "no chains for the service");
}

#[test]
fn nodeport_cluster_policy_masquerades() {
    let mut s = svc("np", [10, 96, 0, 12], 80);
    s.service_type = ServiceType::LoadBalancer;
    s.node_port = Some(31111);
    s.external_ips = vec![Ipv4Addr::new(192, 168, 122, 50)];
    s.load_balancer_ips = vec![Ipv4Addr::new(192, 168, 122, 201)];
    let t = render_full(&cfg(), &[(s.clone(), vec![ep(2, true)])]);
    let (ext, cluster) = (external_chain_name(&s), cluster_chain_name(&s));
    assert_lines(
        &t,
        &[
            &format!("add rule ip rkube {ext} jump mark-for-masquerade"),
            &format!("add rule ip rkube {ext} goto {cluster}"),
            &format!("add rule ip rkube {cluster} ct mark set 65536"),
            &format!("add element ip rkube service-nodeports {{ tcp . 31111 : goto {ext} }}"),
        ],
    );
    assert!(t.contains(&format!("192.168.122.50 . tcp . 80 : goto {ext}")), "{t}");
    assert!(t.contains(&format!("192.168.122.201 . tcp . 80 : goto {ext}")), "{t}");
}

#[test]
fn external_local_policy_keeps_client_ip_and_drops_without_local_endpoints() {
    let mut s = svc("local", [10, 96, 0, 13], 80);
    s.service_type = ServiceType::NodePort;
    s.node_port = Some(31112);
    s.external_traffic_policy = TrafficPolicy::Local;
    let (ext, cluster, local) = (external_chain_name(&s), cluster_chain_name(&s), local_chain_name(&s));
    let t = render_full(&cfg(), &[(s.clone(), vec![ep(2, true), ep(3, false)])]);
    assert_lines(
        &t,
        &[
            &format!("add rule ip rkube {ext} ip saddr 10.244.0.0/16 goto {cluster} comment \"short-circuit pod traffic\""),
            &format!("add rule ip rkube {ext} fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\""),
            &format!("add rule ip rkube {ext} fib saddr type local goto {cluster} comment \"short-circuit local traffic\""),
            &format!("add rule ip rkube {ext} goto {local}"),
            &format!("add rule ip rkube {cluster} ct mark set numgen random mod 2 offset 65536"),
            &format!("add rule ip rkube {local} ct mark set 131072"),
        ],
    );
    assert!(!t.contains(&format!("{ext} jump mark-for-masquerade\n")), "no unconditional masquerade");

    // Only a remote endpoint: pod/node traffic is short-circuited, the rest is dropped.
    let t = render_full(&cfg(), &[(s.clone(), vec![ep(3, false)])]);
    assert!(has(&t, "add element ip rkube no-endpoint-nodeports { tcp . 31112 : drop }"), "{t}");
    assert!(has(&t, &format!("add element ip rkube service-nodeports {{ tcp . 31112 : goto {ext} }}")), "{t}");
    assert!(!t.contains(&format!("{ext} goto {local}")), "{t}");
    assert!(has(&t, &format!("add rule ip rkube {ext} accept")), "the rest is not DNATed: {t}");
    assert!(!t.contains(&format!("add chain ip rkube {local}")), "{t}");
}

#[test]
fn internal_local_policy() {
    let mut s = svc("itp", [10, 96, 0, 14], 80);
    s.internal_traffic_policy = TrafficPolicy::Local;
    let (local, cluster) = (local_chain_name(&s), cluster_chain_name(&s));
    let t = render_full(&cfg(), &[(s.clone(), vec![ep(2, true), ep(3, false)])]);
    assert_lines(
        &t,
        &[
            &format!("add element ip rkube service-ips {{ 10.96.0.14 . tcp . 80 : goto {local} }}"),
            &format!("add rule ip rkube {local} ct mark set 65536"),
        ],
    );
    assert!(!t.contains(&cluster), "cluster endpoints unused");
    let t = render_full(&cfg(), &[(s, vec![ep(3, false)])]);
    assert!(has(&t, "add element ip rkube no-endpoint-services { 10.96.0.14 . tcp . 80 : drop }"), "{t}");
}

#[test]
fn client_ip_affinity_uses_per_endpoint_sets() {
    let mut s = svc("sticky", [10, 96, 0, 15], 80);
    s.session_affinity = SessionAffinity::ClientIP { timeout_seconds: 600 };
    let chain = cluster_chain_name(&s);
    let t = render_full(&cfg(), &[(s, vec![ep(2, true), ep(3, true)])]);
    let sets: Vec<&str> = t.lines().filter(|l| l.starts_with("add set ip rkube affinity-")).collect();
    assert_eq!(sets.len(), 2, "{t}");
    assert!(sets[0].ends_with("{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }"), "{}", sets[0]);
    let rules: Vec<&str> = t.lines().filter(|l| l.starts_with(&format!("add rule ip rkube {chain} "))).collect();
    assert_eq!(rules.len(), 3, "2 affinity checks, numgen: {rules:#?}");
    assert!(rules[0].contains("ip saddr @affinity-") && rules[0].contains("goto endpoint-"), "{}", rules[0]);
    assert!(rules[2].contains("numgen random mod 2 vmap { 0 : goto endpoint-"), "{}", rules[2]);
    let ep_rules: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("add rule ip rkube endpoint-") && !l.starts_with("add rule ip rkube endpoint-dnat"))
        .collect();
    assert_eq!(ep_rules.len(), 4, "{ep_rules:#?}");
    assert!(ep_rules.iter().any(|r| r.contains("update @affinity-") && r.ends_with("{ ip saddr }")));
    assert!(ep_rules.iter().any(|r| r.ends_with("meta l4proto tcp dnat to 10.244.0.3:8080")));
    assert!(!t.contains("add element ip rkube endpoints"), "affinity services do not use the slot map");
}

#[test]
fn shared_keys_and_duplicates() {
    // Two ports of one service share the ClusterIP: one cluster-ips element.
    let a = svc("multi", [10, 96, 0, 16], 80);
    let mut b = svc("multi", [10, 96, 0, 16], 443);
    b.port_name = "https".into();
    let t = render_full(&cfg(), &[(a.clone(), vec![ep(2, true)]), (b, vec![ep(2, true)]), (a, vec![])]);
    assert_eq!(t.matches("10.96.0.16 }").count() + t.matches("10.96.0.16,").count(), 1, "{t}");
    assert_eq!(t.matches("10.244.0.2 . 10.244.0.2").count(), 1, "one hairpin element per endpoint IP");
}

#[test]
fn duplicate_endpoints_count_once() {
    let s = svc("dup", [10, 96, 0, 17], 80);
    let chain = cluster_chain_name(&s);
    let t = render_full(&cfg(), &[(s, vec![ep(2, true), ep(3, true), ep(2, true)])]);
    assert!(has(&t, &format!("add rule ip rkube {chain} ct mark set numgen random mod 2 offset 65536")), "{t}");
    assert!(has(&t, "add element ip rkube endpoints { 65536 : 10.244.0.2 . 8080, 65537 : 10.244.0.3 . 8080 }"), "{t}");
}

fn lb(name: &str, ip: [u8; 4], port: u16, lb_ip: [u8; 4], ranges: &[&str]) -> ServicePortInfo {
    ServicePortInfo {
        service_type: ServiceType::LoadBalancer,
        node_port: Some(31200),
        load_balancer_ips: vec![Ipv4Addr::from(lb_ip)],
        external_ips: vec![Ipv4Addr::new(192, 168, 122, 60)],
        load_balancer_source_ranges: ranges.iter().map(|r| r.parse().expect("test CIDR")).collect(),
        ..svc(name, ip, port)
    }
}

#[test]
fn load_balancer_source_ranges_get_a_firewall_chain() {
    let s = lb("fw", [10, 96, 0, 30], 80, [192, 168, 122, 200], &["10.1.0.0/16", "172.16.0.0/12"]);
    let fw = firewall_chain_name(&s);
    assert!(fw.starts_with("firewall-") && fw.ends_with("-default/fw/tcp/http"), "{fw}");
    let t = render_full(&cfg(), &[(s.clone(), vec![ep(2, true)])]);
    assert_lines(
        &t,
        &[
            &format!("add chain ip rkube {fw}"),
            &format!("add rule ip rkube {fw} ip saddr != {{ 10.1.0.0/16, 172.16.0.0/12 }} drop"),
            &format!("add element ip rkube firewall-ips {{ 192.168.122.200 . tcp . 80 : goto {fw} }}"),
        ],
    );
    // Only the LoadBalancer IP is filtered: not the ClusterIP, the externalIP or the NodePort.
    let fw_elements: Vec<&str> = t.lines().filter(|l| l.starts_with("add element ip rkube firewall-ips")).collect();
    assert_eq!(fw_elements.len(), 1, "{fw_elements:?}");
    assert!(!fw_elements[0].contains("10.96.0.30") && !fw_elements[0].contains("192.168.122.60"));

    // Without endpoints the filter still applies (before the reject).
    let t = render_full(&cfg(), &[(s.clone(), vec![])]);
    assert!(has(&t, &format!("add rule ip rkube {fw} ip saddr != {{ 10.1.0.0/16, 172.16.0.0/12 }} drop")), "{t}");
    assert!(has(&t, "add element ip rkube no-endpoint-services { 10.96.0.30 . tcp . 80 : goto reject-chain, 192.168.122.200 . tcp . 80 : goto reject-chain, 192.168.122.60 . tcp . 80 : goto reject-chain }"), "{t}");

    // A range holding the node's IP also allows the VIP itself as a source (upstream allowFromNode).
    let node_cfg = ProxyConfig { node_ips: vec![Ipv4Addr::new(192, 168, 122, 11)], ..cfg() };
    let s2 = lb("fw", [10, 96, 0, 30], 80, [192, 168, 123, 200], &["192.168.122.0/24"]);
    let t = render_full(&node_cfg, &[(s2.clone(), vec![ep(2, true)])]);
    let fw2 = firewall_chain_name(&s2);
    assert!(
        has(&t, &format!("add rule ip rkube {fw2} ip saddr != {{ 192.168.122.0/24, 192.168.123.200/32 }} drop")),
        "{t}"
    );
    // Already inside a range: aggregated away (an interval set must not overlap).
    let s3 = lb("fw", [10, 96, 0, 30], 80, [192, 168, 122, 200], &["192.168.122.0/24"]);
    let t = render_full(&node_cfg, &[(s3, vec![ep(2, true)])]);
    assert!(has(&t, &format!("add rule ip rkube {fw2} ip saddr != {{ 192.168.122.0/24 }} drop")), "{t}");

    // No ranges, or no LoadBalancer IP yet: no firewall.
    for s in [lb("open", [10, 96, 0, 31], 80, [192, 168, 122, 201], &[]), {
        let mut s = lb("pending", [10, 96, 0, 32], 80, [192, 168, 122, 202], &["10.0.0.0/8"]);
        s.load_balancer_ips.clear();
        s
    }] {
        let t = render_full(&cfg(), &[(s, vec![ep(2, true)])]);
        assert!(!t.lines().any(|l| l.starts_with("add chain ip rkube firewall-") && l.contains('/')), "{t}");
        assert!(!t.contains("add element ip rkube firewall-ips"), "{t}");
    }
}
