//! Partial syncs sent over netlink leave the kernel with exactly the table that `nft -f`
//! leaves: two node namespaces get the same sequence of desired states, one proxier with
//! `netlink_partial_syncs` on and one with it off, and `nft list table` must print the
//! same after every step. Needs root; skips otherwise.

mod common;

use common::{root_or_skip, Sandbox};
use proxy::{Endpoint, Protocol, Proxier, ProxyConfig, ServicePortInfo, ServiceType, SessionAffinity, TrafficPolicy};
use std::net::Ipv4Addr;

type Desired = Vec<(ServicePortInfo, Vec<Endpoint>)>;

fn svc(name: &str, ip: [u8; 4], port: u16, protocol: Protocol) -> ServicePortInfo {
    ServicePortInfo {
        namespace: "default".into(),
        name: name.into(),
        port_name: "http".into(),
        cluster_ip: Ipv4Addr::from(ip),
        port,
        protocol,
        ..ServicePortInfo::default()
    }
}

fn cidrs(v: &[&str]) -> Vec<ipnet::Ipv4Net> {
    v.iter().map(|c| c.parse().expect("test CIDR")).collect()
}

fn ep(last: u8, port: u16, local: bool) -> Endpoint {
    let node = if local { "node-a" } else { "node-b" };
    Endpoint::ready(Ipv4Addr::new(10, 244, 0, last), port, Some(node), local)
}

fn table(sb: &Sandbox) -> String {
    let out = sb.exec(&sb.node, "nft", &["list", "table", "ip", "rkube"]);
    assert!(out.status.success(), "nft list table: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Pair {
    nl: (Sandbox, Proxier),
    text: (Sandbox, Proxier),
    /// What the netlink side's last sync did.
    last: Option<proxy::SyncStats>,
}

impl Pair {
    fn new() -> Pair {
        let mk = |netlink: bool| {
            let sb = Sandbox::new(0);
            let cfg = ProxyConfig { node_name: "node-a".into(), netlink_partial_syncs: netlink, ..sb.proxy_config() };
            (sb, Proxier::new(cfg))
        };
        Pair { nl: mk(true), text: mk(false), last: None }
    }

    /// Syncs both; asserts the same table, and returns whether netlink carried the
    /// netlink side's transaction.
    fn step(&mut self, what: &str, desired: &Desired) -> bool {
        for (i, (sb, p)) in [&mut self.nl, &mut self.text].into_iter().enumerate() {
            match p.sync(desired) {
                Ok(s) if i == 0 => self.last = Some(s),
                Ok(_) => {}
                Err(e) => panic!("{what}: sync in {}: {e}\n{}", sb.node, p.last_transaction()),
            }
        }
        let (a, b) = (table(&self.nl.0), table(&self.text.0));
        if a != b {
            let diff: Vec<String> = a
                .lines()
                .zip(b.lines())
                .filter(|(x, y)| x != y)
                .take(10)
                .map(|(x, y)| format!("netlink: {x}\nnft -f:  {y}"))
                .collect();
            panic!("{what}: tables differ\n{}\n--- transaction:\n{}", diff.join("\n"), self.nl.1.last_transaction());
        }
        assert!(!self.text.1.last_sent_via_netlink(), "{what}: the nft side must not use netlink");
        self.nl.1.last_sent_via_netlink()
    }
}

#[test]
fn netlink_partial_syncs_match_nft() {
    if !root_or_skip("netlink_partial_syncs_match_nft") {
        return;
    }
    let mut pair = Pair::new();
    let web = svc("web", [10, 96, 0, 10], 80, Protocol::Tcp);
    let dns = svc("dns", [10, 96, 0, 11], 53, Protocol::Udp);
    let mut desired: Desired =
        vec![(web.clone(), vec![ep(2, 8080, true), ep(3, 8080, true)]), (dns.clone(), vec![ep(4, 53, true)])];
    assert!(!pair.step("full sync", &desired), "the first sync is a full nft -f load");

    desired[0].1 = vec![ep(2, 8080, true), ep(5, 8080, true)];
    assert!(pair.step("replace an endpoint", &desired));

    desired[0].1.push(ep(6, 8080, false));
    assert!(pair.step("add an endpoint", &desired));

    desired[0].1.remove(0);
    assert!(pair.step("remove an endpoint", &desired));

    desired[1].1.clear();
    assert!(pair.step("no endpoints left (reject)", &desired));

    let np = ServicePortInfo {
        service_type: ServiceType::NodePort,
        node_port: Some(31111),
        external_ips: vec![Ipv4Addr::new(192, 168, 122, 50)],
        ..svc("np", [10, 96, 0, 12], 80, Protocol::Tcp)
    };
    desired.push((np.clone(), vec![ep(7, 8080, true), ep(8, 8080, false)]));
    assert!(pair.step("a NodePort service with an external IP (Cluster policy)", &desired));

    let sctp = svc("sctp", [10, 96, 0, 13], 9999, Protocol::Sctp);
    desired.push((sctp, vec![ep(9, 9999, true)]));
    assert!(pair.step("an SCTP service", &desired));

    // Local policy: the external chain has fib and CIDR matches, which stay with nft.
    let i = desired.len() - 2;
    desired[i].0.external_traffic_policy = TrafficPolicy::Local;
    assert!(!pair.step("externalTrafficPolicy Local", &desired), "Local policy rules go through nft");

    desired[i].1 = vec![ep(8, 8080, false)];
    // The external chain is rewritten (its fib rules again): nft.
    assert!(!pair.step("Local policy, no local endpoint left (drop)", &desired));
    desired[i].1 = vec![ep(7, 8080, true), ep(8, 8080, false), ep(11, 8080, true)];
    assert!(!pair.step("Local policy, local endpoints back", &desired));
    desired[i].1.pop();
    assert!(pair.step("Local policy, one local endpoint fewer", &desired), "only the local chain changes");

    // ClientIP affinity: new timeout sets go through nft; switching it off is netlink.
    desired[0].0.session_affinity = SessionAffinity::ClientIP { timeout_seconds: 10 };
    assert!(!pair.step("affinity on", &desired));
    desired[0].0.session_affinity = SessionAffinity::None;
    assert!(pair.step("affinity off", &desired));

    desired.remove(0);
    assert!(pair.step("remove a service", &desired));

    // loadBalancerSourceRanges: the firewall chain's rule (an anonymous interval set) goes
    // through nft; element-only changes and removals stay on netlink.
    let fw = ServicePortInfo {
        service_type: ServiceType::LoadBalancer,
        node_port: Some(31120),
        load_balancer_ips: vec![Ipv4Addr::new(192, 168, 122, 210)],
        load_balancer_source_ranges: cidrs(&["10.9.0.0/16", "172.16.0.0/12"]),
        ..svc("fw", [10, 96, 0, 20], 80, Protocol::Tcp)
    };
    desired.push((fw, vec![ep(20, 8080, true)]));
    assert!(!pair.step("a LoadBalancer with source ranges", &desired), "the firewall rule needs nft");
    let i = desired.len() - 1;
    desired[i].0.load_balancer_source_ranges = cidrs(&["10.9.0.0/16", "192.168.122.0/24"]);
    assert!(!pair.step("source ranges changed (and now hold the node IP)", &desired));
    desired[i].0.load_balancer_ips = vec![Ipv4Addr::new(192, 168, 123, 211)];
    assert!(!pair.step("another LoadBalancer IP (in the rule: the node is in a range)", &desired));
    desired[i].0.load_balancer_source_ranges = cidrs(&["10.9.0.0/16"]);
    assert!(!pair.step("ranges without the node", &desired));
    desired[i].0.load_balancer_ips.push(Ipv4Addr::new(192, 168, 122, 212));
    assert!(pair.step("a second LoadBalancer IP (elements only)", &desired));
    desired[i].1.clear();
    assert!(pair.step("no endpoints: the firewall stays", &desired));
    desired[i].0.load_balancer_source_ranges.clear();
    assert!(pair.step("source ranges removed", &desired));

    // Many changes at once span several element messages.
    let many: Desired = (0..900u32)
        .map(|k| {
            let ip = [10, 97, (k / 250) as u8, (k % 250) as u8 + 1];
            (svc(&format!("bulk-{k}"), ip, 80, Protocol::Tcp), vec![ep(10 + (k % 200) as u8, 8080, true)])
        })
        .collect();
    desired.extend(many);
    assert!(pair.step("900 services at once", &desired));
    desired.truncate(3);
    assert!(pair.step("900 services removed", &desired));

    // No change: nothing is sent, and the tables still match.
    pair.step("no change", &desired);
}

#[test]
fn netlink_error_leads_to_full_resync() {
    if !root_or_skip("netlink_error_leads_to_full_resync") {
        return;
    }
    let sb = Sandbox::new(0);
    let mut p = Proxier::new(ProxyConfig { node_name: "node-a".into(), ..sb.proxy_config() });
    let web = svc("web", [10, 96, 0, 10], 80, Protocol::Tcp);
    if let Err(e) = p.sync(&[(web.clone(), vec![ep(2, 8080, true)])]) {
        panic!("full sync: {e}");
    }
    // The chain disappears behind the proxier's back: the netlink transaction that
    // rewrites it is refused, says which statement failed, and the next sync is full.
    let out = sb.exec(&sb.node, "nft", &["delete", "table", "ip", "rkube"]);
    assert!(out.status.success());
    let err = match p.sync(&[(web.clone(), vec![ep(2, 8080, true), ep(3, 8080, true)])]) {
        Ok(s) => panic!("a transaction against a missing table must fail: {s:?}"),
        Err(e) => e.to_string(),
    };
    assert!(p.last_sent_via_netlink(), "the failed transaction went over netlink");
    assert!(err.contains("refused") && err.contains("No such file or directory"), "{err}");
    assert!(p.needs_full_sync());
    match p.sync(&[(web, vec![ep(2, 8080, true), ep(3, 8080, true)])]) {
        Ok(s) => assert!(s.full, "{s:?}"),
        Err(e) => panic!("full resync: {e}"),
    }
    assert!(table(&sb).contains("numgen random mod 2"));
}

#[test]
fn restart_adopts_the_table_and_sends_only_the_difference() {
    if !root_or_skip("restart_adopts_the_table_and_sends_only_the_difference") {
        return;
    }
    let mut pair = Pair::new();
    let web = svc("web", [10, 96, 0, 10], 80, Protocol::Tcp);
    let sticky = ServicePortInfo {
        session_affinity: SessionAffinity::ClientIP { timeout_seconds: 60 },
        ..svc("sticky", [10, 96, 0, 11], 80, Protocol::Tcp)
    };
    let local = ServicePortInfo {
        service_type: ServiceType::NodePort,
        node_port: Some(31000),
        external_traffic_policy: TrafficPolicy::Local,
        ..svc("local", [10, 96, 0, 12], 80, Protocol::Tcp)
    };
    let np = ServicePortInfo {
        service_type: ServiceType::NodePort,
        node_port: Some(31001),
        ..svc("np", [10, 96, 0, 13], 53, Protocol::Udp)
    };
    let fw = ServicePortInfo {
        service_type: ServiceType::LoadBalancer,
        node_port: Some(31002),
        load_balancer_ips: vec![Ipv4Addr::new(192, 168, 122, 210)],
        load_balancer_source_ranges: cidrs(&["10.9.0.0/16", "192.168.122.0/24"]),
        ..svc("fw", [10, 96, 0, 16], 80, Protocol::Tcp)
    };
    let mut desired: Desired = vec![
        (web.clone(), vec![ep(2, 8080, true), ep(3, 8080, true), ep(4, 8080, false)]),
        (fw, vec![ep(13, 8080, true)]),
        (sticky, vec![ep(5, 8080, true), ep(6, 8080, true)]),
        (local, vec![ep(7, 8080, true), ep(8, 8080, false)]),
        (np, vec![ep(9, 53, true)]),
        (svc("gone", [10, 96, 0, 14], 80, Protocol::Tcp), vec![ep(10, 80, true)]),
    ];
    pair.step("full sync", &desired);
    // Move slots around so the kernel's slots are not what a fresh build would pick.
    desired[0].1.remove(0);
    desired[0].1.push(ep(11, 8080, true));
    pair.step("endpoints replaced", &desired);

    // The netlink side restarts: it adopts the table, and only the chains whose rules it
    // cannot read back (ClientIP affinity, Local external policy) are re-added.
    let cfg = pair.nl.1.config().clone();
    pair.nl.1 = Proxier::new(cfg.clone());
    let s = match pair.nl.1.sync(&desired) {
        Ok(s) => s,
        Err(e) => panic!("adopting sync: {e}"),
    };
    let tx = pair.nl.1.last_transaction().to_string();
    assert!(s.adopted && !s.full, "{s:?}\n{tx}");
    assert!(!tx.contains("table"), "no table rewrite: {tx}");
    for name in ["default/web/", "default/np/", "default/gone/"] {
        assert!(!tx.contains(name), "{name} unchanged, not in the transaction: {tx}");
    }
    assert!(tx.contains("default/sticky/") && tx.contains("default/local/"), "{tx}");
    // The firewall rule is not read back either: its chain is rewritten, its element kept.
    assert!(tx.contains("flush chain ip rkube firewall-") && tx.contains("default/fw/"), "{tx}");
    assert!(!tx.contains("element"), "no element changes: {tx}");
    assert_eq!(table(&pair.nl.0), table(&pair.text.0), "same table after the restart");

    // Restart again while services changed: only the difference goes out, and the result
    // is the table of the proxier that never restarted.
    desired[0].1.remove(1);
    desired.remove(5);
    desired[1].0.load_balancer_source_ranges = cidrs(&["10.10.0.0/16"]);
    desired.push((svc("new", [10, 96, 0, 15], 80, Protocol::Tcp), vec![ep(12, 80, true)]));
    pair.nl.1 = Proxier::new(cfg.clone());
    pair.step("restart after changes", &desired);
    assert!(pair.last.as_ref().is_some_and(|s| s.adopted), "{:?}", pair.last);
    let s = pair.nl.1.sync(&desired).map_err(|e| e.to_string());
    assert!(matches!(s, Ok(ref s) if s.statements == 0 && !s.full), "next sync has nothing to do: {s:?}");

    // A table with another skeleton (another configuration) is rewritten, not adopted.
    let other = ProxyConfig { pod_cidr: "10.245.0.0/16".parse().expect("cidr"), ..cfg };
    let mut p = Proxier::new(other);
    match p.sync(&desired) {
        Ok(s) => assert!(s.full && !s.adopted, "{s:?}"),
        Err(e) => panic!("sync with another skeleton: {e}"),
    }
}
