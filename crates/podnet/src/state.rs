//! The overlay entries of the VXLAN device: what the peers call for, what the
//! kernel has (iproute2's JSON), and the commands that turn one into the other.
//! Only entries this crate owns are ever removed: routes into the cluster CIDR,
//! permanent neighbours in it, and FDB entries with a remote `dst`.

use crate::annotations::{Mac, Peer};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The device's routes, neighbours and FDB entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    /// Pod CIDR -> next hop (onlink).
    pub routes: BTreeMap<Ipv4Net, Ipv4Addr>,
    /// Next hop -> VTEP MAC (permanent).
    pub neighbours: BTreeMap<Ipv4Addr, Mac>,
    /// VTEP MAC -> the peer's public IP (permanent, `self`).
    pub fdb: BTreeMap<Mac, Ipv4Addr>,
}

impl Entries {
    /// What the peers call for (flannel's `handleSubnetEvents`, added leases):
    /// every peer other than this node, with a pod CIDR inside the cluster's.
    /// Of two peers claiming one pod CIDR or one MAC, the first by name wins.
    pub fn desired(peers: &[Peer], own_node: &str, own_cidr: Ipv4Net, cluster: Ipv4Net) -> Entries {
        let mut e = Entries::default();
        let mut peers: Vec<&Peer> = peers.iter().collect();
        peers.sort_by(|a, b| a.node.cmp(&b.node));
        for p in peers {
            if p.node == own_node || p.pod_cidr == own_cidr || !cluster.contains(&p.pod_cidr) {
                continue;
            }
            if e.routes.contains_key(&p.pod_cidr) || e.fdb.contains_key(&p.vtep_mac) {
                tracing::warn!(node = %p.node, cidr = %p.pod_cidr, mac = %p.vtep_mac, "pod CIDR or VTEP MAC already claimed by another node; skipped");
                continue;
            }
            e.routes.insert(p.pod_cidr, p.gateway());
            e.neighbours.insert(p.gateway(), p.vtep_mac);
            e.fdb.insert(p.vtep_mac, p.public_ip);
        }
        e
    }

    /// The entries of `ip -j route show dev D`, `ip -j neigh show dev D` and
    /// `bridge -j fdb show dev D` that this crate owns.
    pub fn parse(routes: &str, neighbours: &str, fdb: &str, cluster: Ipv4Net) -> Result<Entries, String> {
        let mut e = Entries::default();
        for r in json_array(routes, "ip route")? {
            let dst = r.get("dst").and_then(|d| d.as_str()).and_then(parse_net);
            let gw = r.get("gateway").and_then(|g| g.as_str()).and_then(|g| g.parse().ok());
            if let (Some(dst), Some(gw)) = (dst, gw) {
                if cluster.contains(&dst) {
                    e.routes.insert(dst, gw);
                }
            }
        }
        for n in json_array(neighbours, "ip neigh")? {
            let dst: Option<Ipv4Addr> = n.get("dst").and_then(|d| d.as_str()).and_then(|d| d.parse().ok());
            let mac: Option<Mac> = n.get("lladdr").and_then(|m| m.as_str()).and_then(|m| m.parse().ok());
            let permanent = n
                .get("state")
                .and_then(|s| s.as_array())
                .is_some_and(|s| s.iter().any(|v| v.as_str() == Some("PERMANENT")));
            if let (Some(dst), Some(mac), true) = (dst, mac, permanent) {
                if cluster.contains(&dst) {
                    e.neighbours.insert(dst, mac);
                }
            }
        }
        for f in json_array(fdb, "bridge fdb")? {
            let mac: Option<Mac> = f.get("mac").and_then(|m| m.as_str()).and_then(|m| m.parse().ok());
            let dst: Option<Ipv4Addr> = f.get("dst").and_then(|d| d.as_str()).and_then(|d| d.parse().ok());
            if let (Some(mac), Some(dst)) = (mac, dst) {
                e.fdb.insert(mac, dst);
            }
        }
        Ok(e)
    }
}

/// The commands that take the device from `have` to `want`: FDB lines for
/// `bridge -batch -`, then neighbour and route lines for `ip -batch -`.
/// Additions go neighbour, FDB, route (flannel: the route last, so the kernel
/// never ARPs for the next hop); removals go route first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub bridge: Vec<String>,
    pub ip: Vec<String>,
}

impl Plan {
    pub fn new(have: &Entries, want: &Entries, dev: &str) -> Plan {
        let mut p = Plan::default();
        for (gw, mac) in &want.neighbours {
            if have.neighbours.get(gw) != Some(mac) {
                p.ip.push(format!("neigh replace {gw} lladdr {mac} dev {dev} nud permanent"));
            }
        }
        for (mac, dst) in &want.fdb {
            if have.fdb.get(mac) != Some(dst) {
                p.bridge.push(format!("fdb replace {mac} dev {dev} dst {dst} self permanent"));
            }
        }
        for (cidr, gw) in &want.routes {
            if have.routes.get(cidr) != Some(gw) {
                p.ip.push(format!("route replace {cidr} via {gw} dev {dev} onlink"));
            }
        }
        for cidr in have.routes.keys().filter(|c| !want.routes.contains_key(c)) {
            p.ip.push(format!("route del {cidr} dev {dev}"));
        }
        for gw in have.neighbours.keys().filter(|g| !want.neighbours.contains_key(g)) {
            p.ip.push(format!("neigh del {gw} dev {dev}"));
        }
        for (mac, dst) in have.fdb.iter().filter(|(m, _)| !want.fdb.contains_key(m)) {
            p.bridge.push(format!("fdb del {mac} dev {dev} dst {dst} self"));
        }
        p
    }

    pub fn is_empty(&self) -> bool {
        self.bridge.is_empty() && self.ip.is_empty()
    }
}

fn parse_net(s: &str) -> Option<Ipv4Net> {
    // A host route prints without a prefix length.
    s.parse().ok().or_else(|| s.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
}

fn json_array(text: &str, what: &str) -> Result<Vec<serde_json::Value>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(v)) => Ok(v),
        Ok(other) => Err(format!("{what}: expected a JSON array, got {other}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    fn peer(node: &str, cidr: &str, ip: [u8; 4]) -> Peer {
        Peer {
            node: node.into(),
            pod_cidr: net(cidr),
            public_ip: Ipv4Addr::from(ip),
            vtep_mac: Mac::derived(node),
            vni: 1,
        }
    }

    const CLUSTER: &str = "10.244.0.0/16";

    #[test]
    fn every_other_node_gets_a_route_a_neighbour_and_an_fdb_entry() {
        let peers = [
            peer("n1", "10.244.0.0/24", [192, 168, 122, 11]),
            peer("n2", "10.244.1.0/24", [192, 168, 122, 12]),
            peer("n3", "10.244.2.0/24", [192, 168, 122, 13]),
        ];
        let e = Entries::desired(&peers, "n1", net("10.244.0.0/24"), net(CLUSTER));
        assert_eq!(e.routes.len(), 2);
        assert_eq!(e.routes[&net("10.244.2.0/24")], Ipv4Addr::new(10, 244, 2, 0));
        assert_eq!(e.neighbours[&Ipv4Addr::new(10, 244, 1, 0)], Mac::derived("n2"));
        assert_eq!(e.fdb[&Mac::derived("n3")], Ipv4Addr::new(192, 168, 122, 13));
        let plan = Plan::new(&Entries::default(), &e, "rkube.1");
        assert_eq!(
            plan.ip,
            [
                format!("neigh replace 10.244.1.0 lladdr {} dev rkube.1 nud permanent", Mac::derived("n2")),
                format!("neigh replace 10.244.2.0 lladdr {} dev rkube.1 nud permanent", Mac::derived("n3")),
                "route replace 10.244.1.0/24 via 10.244.1.0 dev rkube.1 onlink".to_string(),
                "route replace 10.244.2.0/24 via 10.244.2.0 dev rkube.1 onlink".to_string(),
            ]
        );
        assert_eq!(plan.bridge.len(), 2);
        assert!(Plan::new(&e, &e, "rkube.1").is_empty(), "in step: nothing to do");
    }

    #[test]
    fn a_node_that_left_is_removed_and_a_moved_one_replaced() {
        let before =
            [peer("n2", "10.244.1.0/24", [192, 168, 122, 12]), peer("n3", "10.244.2.0/24", [192, 168, 122, 13])];
        let have = Entries::desired(&before, "n1", net("10.244.0.0/24"), net(CLUSTER));
        // n3 left; n2 came back on another address.
        let after = [peer("n2", "10.244.1.0/24", [192, 168, 122, 22])];
        let want = Entries::desired(&after, "n1", net("10.244.0.0/24"), net(CLUSTER));
        let plan = Plan::new(&have, &want, "rkube.1");
        assert_eq!(
            plan.bridge,
            [
                format!("fdb replace {} dev rkube.1 dst 192.168.122.22 self permanent", Mac::derived("n2")),
                format!("fdb del {} dev rkube.1 dst 192.168.122.13 self", Mac::derived("n3")),
            ]
        );
        assert_eq!(
            plan.ip,
            ["route del 10.244.2.0/24 dev rkube.1".to_string(), "neigh del 10.244.2.0 dev rkube.1".to_string()]
        );
    }

    #[test]
    fn foreign_and_clashing_peers_are_left_out() {
        let peers = [
            peer("a", "10.244.1.0/24", [192, 168, 122, 12]),
            peer("b", "10.244.1.0/24", [192, 168, 122, 13]),
            peer("c", "10.99.0.0/24", [192, 168, 122, 14]),
            peer("d", "10.244.0.0/24", [192, 168, 122, 15]),
        ];
        let e = Entries::desired(&peers, "n1", net("10.244.0.0/24"), net(CLUSTER));
        assert_eq!(e.routes.keys().collect::<Vec<_>>(), [&net("10.244.1.0/24")]);
        assert_eq!(e.fdb.values().collect::<Vec<_>>(), [&Ipv4Addr::new(192, 168, 122, 12)], "the first by name wins");
    }

    #[test]
    fn kernel_state_parses_from_iproute2_json() {
        // As printed by iproute2 6.1 for a device set up as above.
        let routes = r#"[{"dst":"10.244.2.0/24","gateway":"10.244.2.0","flags":["onlink"]},{"dst":"192.168.9.0/24","gateway":"10.244.2.0","flags":["onlink"]}]"#;
        let neigh = r#"[{"dst":"10.244.2.0","lladdr":"0a:00:00:00:00:02","state":["PERMANENT"]},{"dst":"10.244.3.0","lladdr":"0a:00:00:00:00:03","state":["STALE"]}]"#;
        let fdb = r#"[{"mac":"0a:00:00:00:00:02","dst":"192.168.50.2","flags":["self"],"state":"permanent"},{"mac":"33:33:00:00:00:01","flags":["self"],"state":"permanent"}]"#;
        let e = Entries::parse(routes, neigh, fdb, net(CLUSTER)).expect("parse");
        assert_eq!(e.routes.len(), 1, "routes outside the cluster CIDR are not ours");
        assert_eq!(e.neighbours.len(), 1, "only permanent neighbours are ours");
        assert_eq!(e.fdb.len(), 1, "only entries with a remote dst are ours");
        assert_eq!(e.fdb[&"0a:00:00:00:00:02".parse::<Mac>().expect("mac")], Ipv4Addr::new(192, 168, 50, 2));
        assert_eq!(Entries::parse("", "", "", net(CLUSTER)), Ok(Entries::default()));
        assert!(Entries::parse("{}", "", "", net(CLUSTER)).is_err());
    }
}
