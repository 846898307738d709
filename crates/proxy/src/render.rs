//! Rule rendering: the static skeleton of the table and, per service port, a
//! [`Fragment`] (its chains, its map/set elements, its affinity sets, its endpoint slots).
//! Pure functions; the text is `nft -f` input (one command per line).
//!
//! Upstream: `pkg/proxy/nftables/proxier.go` (`setupNFTables`, `syncProxyRules`,
//! `writeServiceToEndpointRules`). Differences are listed in the crate docs.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::{categorize_endpoints, Endpoint, Protocol, ServicePortInfo, SessionAffinity};
use crate::ProxyConfig;

/// Bit of `meta mark` that asks `masquerading` to SNAT a packet (upstream `--masquerade-bit` 14).
pub const MASQUERADE_MARK: u32 = 0x4000;
/// Endpoint slots: `ct mark` = group id << SLOT_BITS | slot index.
pub const SLOT_BITS: u32 = 16;
/// Largest endpoint group id (so at most 65535 chains use the shared `endpoints` map; more
/// fall back to an anonymous map in their rule).
pub const MAX_GROUP_ID: u32 = 0xffff;
/// Largest number of endpoints one chain picks from.
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// Elements per `add element` command in a full load.
const ELEMENT_BATCH: usize = 1000;

/// The table's maps and sets whose elements the proxy manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapId {
    /// set `cluster-ips`: every live ClusterIP.
    ClusterIps,
    /// vmap `service-ips`: `ip . proto . port` -> goto the service's chain.
    ServiceIps,
    /// vmap `service-nodeports`: `proto . port` -> goto the service's external chain.
    ServiceNodePorts,
    /// vmap `no-endpoint-services`: `ip . proto . port` -> reject or drop.
    NoEndpointServices,
    /// vmap `no-endpoint-nodeports`: `proto . port` -> reject or drop.
    NoEndpointNodePorts,
    /// map `endpoints`: `ct mark` slot -> `ip . port` (the DNAT target).
    Endpoints,
    /// set `hairpin`: `ip . ip` for every endpoint IP (masquerade a pod reaching itself).
    Hairpin,
    /// vmap `firewall-ips`: LoadBalancer `ip . proto . port` -> goto the service's
    /// `firewall-…` chain (`loadBalancerSourceRanges`).
    FirewallIps,
    /// set `lb-ips`: every LoadBalancer ingress IP (packets to a port no Service uses
    /// are rejected instead of being forwarded: the node answers ARP for these
    /// addresses without owning them).
    LoadBalancerIps,
}

impl MapId {
    pub const ALL: [MapId; 9] = [
        MapId::ClusterIps,
        MapId::ServiceIps,
        MapId::ServiceNodePorts,
        MapId::NoEndpointServices,
        MapId::NoEndpointNodePorts,
        MapId::Endpoints,
        MapId::Hairpin,
        MapId::FirewallIps,
        MapId::LoadBalancerIps,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MapId::ClusterIps => "cluster-ips",
            MapId::ServiceIps => "service-ips",
            MapId::ServiceNodePorts => "service-nodeports",
            MapId::NoEndpointServices => "no-endpoint-services",
            MapId::NoEndpointNodePorts => "no-endpoint-nodeports",
            MapId::Endpoints => "endpoints",
            MapId::Hairpin => "hairpin",
            MapId::FirewallIps => "firewall-ips",
            MapId::LoadBalancerIps => "lb-ips",
        }
    }

    /// A map (elements have a value) rather than a set.
    pub fn is_map(self) -> bool {
        !matches!(self, MapId::ClusterIps | MapId::Hairpin | MapId::LoadBalancerIps)
    }
}

/// One chain that picks among endpoints through the shared `endpoints` map: its id and
/// the endpoint in each slot (`ct mark` = id << 16 | index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub chain: String,
    pub id: u32,
    pub slots: Vec<(Ipv4Addr, u16)>,
}

/// Everything one service port puts into the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// Chains owned by this service port, with their rules (without the `add rule ...` prefix).
    pub chains: Vec<(String, Vec<String>)>,
    /// Elements: map, key, value (None for sets).
    pub elements: Vec<(MapId, String, Option<String>)>,
    /// Per-endpoint ClientIP affinity sets: name, timeout in seconds.
    pub affinity_sets: Vec<(String, u32)>,
    /// Endpoint groups in the shared `endpoints` map.
    pub groups: Vec<Group>,
    /// Endpoints some chain of this service DNATs to.
    pub reachable: Vec<(Ipv4Addr, u16)>,
    /// The service has usable endpoints somewhere.
    pub has_any: bool,
}

impl Fragment {
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|(_, r)| r.len()).sum()
    }
}

/// Allocator of endpoint group ids (1..=MAX_GROUP_ID).
#[derive(Clone, Debug, Default)]
pub struct Groups {
    next: u32,
    free: Vec<u32>,
}

impl Groups {
    pub fn alloc(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop() {
            return Some(id);
        }
        if self.next >= MAX_GROUP_ID {
            return None;
        }
        self.next += 1;
        Some(self.next)
    }

    pub fn release(&mut self, id: u32) {
        self.free.push(id);
    }

    /// An allocator where `used` ids are taken (a table adopted from an earlier run).
    pub fn with_used(used: &HashSet<u32>) -> Groups {
        let next = used.iter().copied().filter(|id| *id <= MAX_GROUP_ID).max().unwrap_or(0);
        let free = (1..=next).rev().filter(|id| !used.contains(id)).collect();
        Groups { next, free }
    }
}

/// A short stable hash (8 base32 characters) prefixed to chain names, as upstream's
/// `hashAndTruncate` does (FNV-1a here instead of SHA-256: only uniqueness matters).
pub fn hash8(s: &str) -> String {
    let h = crate::fnv::fnv1a(s.as_bytes());
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..8).map(|i| ALPHABET[((h >> (59 - 5 * i)) & 31) as usize] as char).collect()
}

/// `HASH-namespace/name/protocol/portname` (upstream `servicePortChainNameBase`). Namespace,
/// name and port name are DNS labels, so the result only holds `[a-z0-9./-]` and stays
/// far below nftables' 256-byte name limit.
pub fn chain_name_base(svc: &ServicePortInfo) -> String {
    let name = format!("{}/{}/{}/{}", svc.namespace, svc.name, svc.protocol, svc.port_name);
    format!("{}-{}", hash8(&name), name)
}

fn endpoint_name_base(svc: &ServicePortInfo, ip: Ipv4Addr, port: u16, extra: &str) -> String {
    let name = format!("{}/{}/{}/{}__{}/{}", svc.namespace, svc.name, svc.protocol, svc.port_name, ip, port);
    format!("{}-{}", hash8(&format!("{name}{extra}")), name)
}

/// `service-…`: the chain for `Cluster` traffic policy.
pub fn cluster_chain_name(svc: &ServicePortInfo) -> String {
    format!("service-{}", chain_name_base(svc))
}

/// `local-…`: the chain for `Local` traffic policy.
pub fn local_chain_name(svc: &ServicePortInfo) -> String {
    format!("local-{}", chain_name_base(svc))
}

/// `external-…`: the chain for NodePort, externalIP and LoadBalancer traffic.
pub fn external_chain_name(svc: &ServicePortInfo) -> String {
    format!("external-{}", chain_name_base(svc))
}

/// `firewall-…`: drops LoadBalancer traffic from outside `loadBalancerSourceRanges`.
pub fn firewall_chain_name(svc: &ServicePortInfo) -> String {
    format!("firewall-{}", chain_name_base(svc))
}

/// The rule of a service's `firewall-…` chain (upstream `syncProxyRules`, "usesFWChain"):
/// `ip saddr != { ranges } drop`. When a range holds one of this node's IPs, the
/// LoadBalancer IPs are allowed too: a node reaching a VIP that is a local address uses
/// the VIP as its source. `None` when the service needs no firewall (no LoadBalancer IP
/// or no ranges).
pub fn firewall_rule(cfg: &ProxyConfig, svc: &ServicePortInfo) -> Option<String> {
    if svc.load_balancer_ips.is_empty() || svc.load_balancer_source_ranges.is_empty() {
        return None;
    }
    let mut sources: Vec<Ipv4Net> = svc.load_balancer_source_ranges.clone();
    let from_node = sources.iter().any(|r| cfg.node_ips.iter().any(|ip| r.contains(ip)));
    if from_node {
        sources.extend(svc.load_balancer_ips.iter().map(|ip| Ipv4Net::from(*ip)));
    }
    // Aggregated: an anonymous interval set must not hold overlapping elements.
    let sources: Vec<String> = Ipv4Net::aggregate(&sources).iter().map(Ipv4Net::to_string).collect();
    Some(format!("ip saddr != {{ {} }} drop", sources.join(", ")))
}

/// `endpoint-…`: per-endpoint chain (ClientIP affinity services only).
pub fn endpoint_chain_name(svc: &ServicePortInfo, ip: Ipv4Addr, port: u16) -> String {
    format!("endpoint-{}", endpoint_name_base(svc, ip, port, ""))
}

/// `affinity-…`: per-endpoint set of client IPs. The timeout is part of the hash so a new
/// timeout makes a new set (set properties cannot be changed in place).
pub fn affinity_set_name(svc: &ServicePortInfo, ip: Ipv4Addr, port: u16, timeout: u32) -> String {
    format!("affinity-{}", endpoint_name_base(svc, ip, port, &format!("/{timeout}")))
}

/// The `ct mark` of slot `index` of group `id`.
pub fn slot_mark(id: u32, index: usize) -> u32 {
    (id << SLOT_BITS) | (index as u32)
}

/// Stable slot assignment: endpoints that stay keep their slot, new ones fill the holes,
/// and leftover holes are closed by moving the last slot in, so one endpoint change
/// rewrites about one element.
pub fn assign_slots(old: &[(Ipv4Addr, u16)], new: &[(Ipv4Addr, u16)]) -> Vec<(Ipv4Addr, u16)> {
    let wanted: HashSet<(Ipv4Addr, u16)> = new.iter().copied().collect();
    let mut slots: Vec<Option<(Ipv4Addr, u16)>> = Vec::with_capacity(new.len());
    let mut present: HashSet<(Ipv4Addr, u16)> = HashSet::new();
    for e in old {
        if wanted.contains(e) && present.insert(*e) {
            slots.push(Some(*e));
        } else {
            slots.push(None);
        }
    }
    let mut to_add: VecDeque<(Ipv4Addr, u16)> = VecDeque::new();
    for e in new {
        if !present.contains(e) {
            present.insert(*e);
            to_add.push_back(*e);
        }
    }
    for s in slots.iter_mut() {
        if s.is_none() {
            match to_add.pop_front() {
                Some(e) => *s = Some(e),
                None => break,
            }
        }
    }
    let mut i = 0;
    while i < slots.len() {
        if slots[i].is_some() {
            i += 1;
            continue;
        }
        let last = slots.len() - 1;
        if i != last {
            slots.swap(i, last);
        }
        slots.pop();
    }
    let mut out: Vec<(Ipv4Addr, u16)> = slots.into_iter().flatten().collect();
    out.extend(to_add);
    out
}

/// Compiles one service port. `prev` is its fragment from the last sync (to keep endpoint
/// slots and group ids stable); new groups come from `groups`. The caller releases the ids
/// of `prev` groups that the result no longer uses.
pub fn compile(
    cfg: &ProxyConfig,
    svc: &ServicePortInfo,
    eps: &[Endpoint],
    prev: Option<&Fragment>,
    groups: &mut Groups,
) -> Fragment {
    // The same ip:port twice would skew the random choice (from_objects never does that).
    let mut uniq: HashSet<(Ipv4Addr, u16)> = HashSet::with_capacity(eps.len());
    let deduped: Vec<Endpoint>;
    let eps = if eps.iter().all(|e| uniq.insert((e.ip, e.port))) {
        eps
    } else {
        uniq.clear();
        deduped = eps.iter().filter(|e| uniq.insert((e.ip, e.port))).cloned().collect();
        &deduped
    };
    let cat = categorize_endpoints(svc, eps, cfg.node_zone.as_deref());
    let proto = svc.protocol.as_str();
    let port = svc.port;
    let pod_cidr = cfg.pod_cidr;
    let cluster_chain = cluster_chain_name(svc);
    let local_chain = local_chain_name(svc);
    let ext_chain = external_chain_name(svc);

    let uses_cluster_chain = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
    let uses_local_chain = !cat.local.is_empty() && svc.uses_local_endpoints();
    let (internal_chain, has_internal) = if svc.internal_policy_local() {
        (&local_chain, cat.has_any && !cat.local.is_empty())
    } else {
        (&cluster_chain, cat.has_any)
    };
    let (external_policy_chain, has_external) = if svc.external_policy_local() {
        (&local_chain, cat.has_any && !cat.local.is_empty())
    } else {
        (&cluster_chain, cat.has_any)
    };
    let uses_external_chain = cat.has_any && svc.externally_accessible();
    // No endpoints at all: reject. Endpoints, but none for this policy: drop (upstream).
    let (internal_verdict, external_verdict) = if !cat.has_any {
        ("goto reject-chain", "goto reject-chain")
    } else {
        (if has_internal { "" } else { "drop" }, if has_external { "" } else { "drop" })
    };

    let mut f = Fragment { has_any: cat.has_any, ..Fragment::default() };
    let vip = |ip: Ipv4Addr| format!("{ip} . {proto} . {port}");

    // Elements.
    f.elements.push((MapId::ClusterIps, svc.cluster_ip.to_string(), None));
    if has_internal {
        f.elements.push((MapId::ServiceIps, vip(svc.cluster_ip), Some(format!("goto {internal_chain}"))));
    } else {
        f.elements.push((MapId::NoEndpointServices, vip(svc.cluster_ip), Some(internal_verdict.to_string())));
    }
    for ip in &svc.load_balancer_ips {
        f.elements.push((MapId::LoadBalancerIps, ip.to_string(), None));
    }
    for ip in svc.external_ips.iter().chain(svc.load_balancer_ips.iter()) {
        if cat.has_any {
            f.elements.push((MapId::ServiceIps, vip(*ip), Some(format!("goto {ext_chain}"))));
        }
        if !has_external {
            f.elements.push((MapId::NoEndpointServices, vip(*ip), Some(external_verdict.to_string())));
        }
    }
    // loadBalancerSourceRanges: checked before DNAT (`firewall-check`), whether or not the
    // service has endpoints, for the LoadBalancer IPs only (not NodePorts, not externalIPs).
    if let Some(rule) = firewall_rule(cfg, svc) {
        let fw_chain = firewall_chain_name(svc);
        for ip in &svc.load_balancer_ips {
            f.elements.push((MapId::FirewallIps, vip(*ip), Some(format!("goto {fw_chain}"))));
        }
        f.chains.push((fw_chain, vec![rule]));
    }
    if let Some(np) = svc.node_port {
        if cat.has_any {
            f.elements.push((MapId::ServiceNodePorts, format!("{proto} . {np}"), Some(format!("goto {ext_chain}"))));
        }
        if !has_external {
            f.elements.push((
                MapId::NoEndpointNodePorts,
                format!("{proto} . {np}"),
                Some(external_verdict.to_string()),
            ));
        }
    }

    let affinity = match svc.session_affinity {
        SessionAffinity::ClientIP { timeout_seconds } => Some(timeout_seconds),
        SessionAffinity::None => None,
    };

    // The external chain: masquerade (Cluster policy) or short-circuit pod/node traffic
    // (Local policy), then the policy chain.
    if uses_external_chain {
        let mut rules = Vec::new();
        if !svc.external_policy_local() {
            rules.push("jump mark-for-masquerade".to_string());
        } else {
            rules.push(format!("ip saddr {pod_cidr} goto {cluster_chain} comment \"short-circuit pod traffic\""));
            rules
                .push("fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"".to_string());
            rules.push(format!("fib saddr type local goto {cluster_chain} comment \"short-circuit local traffic\""));
        }
        if has_external {
            rules.push(format!("goto {external_policy_chain}"));
        } else {
            // Nothing for external traffic here: no DNAT (the filter chains drop it).
            rules.push("accept".to_string());
        }
        f.chains.push((ext_chain.clone(), rules));
    }

    let prev_group = |chain: &str| prev.and_then(|p| p.groups.iter().find(|g| g.chain == chain));
    let policy_chain = |name: &String, endpoints: &[Endpoint], f: &mut Fragment, groups: &mut Groups| {
        // Off-cluster clients of the ClusterIP are marked for masquerade by a static rule in
        // `services` (upstream puts `ip daddr <ip> <proto> dport <port> ip saddr != <pod CIDR>
        // jump mark-for-masquerade` here): this chain then holds no verdict and no meta
        // statement, and rewriting it does not make the kernel re-validate the whole table.
        let mut rules = Vec::new();
        let n = endpoints.len().min(MAX_SLOTS);
        let endpoints = &endpoints[..n];
        if let Some(timeout) = affinity {
            for e in endpoints {
                rules.push(format!(
                    "ip saddr @{} goto {}",
                    affinity_set_name(svc, e.ip, e.port, timeout),
                    endpoint_chain_name(svc, e.ip, e.port)
                ));
            }
            let mut vmap = String::new();
            for (i, e) in endpoints.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let _ = write!(vmap, "{sep}{i} : goto {}", endpoint_chain_name(svc, e.ip, e.port));
            }
            rules.push(format!("numgen random mod {n} vmap {{ {vmap} }}"));
        } else {
            let wanted: Vec<(Ipv4Addr, u16)> = endpoints.iter().map(|e| (e.ip, e.port)).collect();
            let (id, slots) = match prev_group(name) {
                Some(g) => (Some(g.id), assign_slots(&g.slots, &wanted)),
                None => (groups.alloc(), wanted.clone()),
            };
            match id {
                Some(id) => {
                    if n == 1 {
                        rules.push(format!("ct mark set {}", slot_mark(id, 0)));
                    } else {
                        rules.push(format!("ct mark set numgen random mod {n} offset {}", slot_mark(id, 0)));
                    }
                    // No verdict: the chain falls back to the base chain, which goes to
                    // `endpoint-dnat`.
                    for (i, (ip, p)) in slots.iter().enumerate() {
                        f.elements.push((MapId::Endpoints, slot_mark(id, i).to_string(), Some(format!("{ip} . {p}"))));
                    }
                    f.groups.push(Group { chain: name.clone(), id, slots });
                }
                None => {
                    // Group ids exhausted: an anonymous map in the rule (slower to update).
                    let mut m = String::new();
                    for (i, (ip, p)) in wanted.iter().enumerate() {
                        let sep = if i == 0 { "" } else { ", " };
                        let _ = write!(m, "{sep}{i} : {ip} . {p}");
                    }
                    rules.push(format!("meta l4proto {proto} dnat ip to numgen random mod {n} map {{ {m} }}"));
                }
            }
        }
        f.chains.push((name.clone(), rules));
    };
    if uses_cluster_chain {
        policy_chain(&cluster_chain, &cat.cluster, &mut f, groups);
    }
    if uses_local_chain {
        policy_chain(&local_chain, &cat.local, &mut f, groups);
    }

    let mut reachable: Vec<&Endpoint> = Vec::new();
    if uses_cluster_chain {
        reachable.extend(cat.cluster.iter());
    }
    if uses_local_chain {
        for e in &cat.local {
            if !reachable.iter().any(|r| r.ip == e.ip && r.port == e.port) {
                reachable.push(e);
            }
        }
    }
    reachable.truncate(MAX_SLOTS);
    let mut hairpin_seen: HashSet<Ipv4Addr> = HashSet::new();
    for e in &reachable {
        f.reachable.push((e.ip, e.port));
        if hairpin_seen.insert(e.ip) {
            f.elements.push((MapId::Hairpin, format!("{} . {}", e.ip, e.ip), None));
        }
        if let Some(timeout) = affinity {
            let set = affinity_set_name(svc, e.ip, e.port, timeout);
            f.chains.push((
                endpoint_chain_name(svc, e.ip, e.port),
                vec![
                    format!("update @{set} {{ ip saddr }}"),
                    format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port),
                ],
            ));
            f.affinity_sets.push((set, timeout));
        }
    }
    // The same key twice in one fragment (e.g. an externalIP equal to the ClusterIP) would
    // make nft fail: keep the first.
    let mut seen: HashSet<(MapId, String)> = HashSet::new();
    f.elements.retain(|(m, k, _)| seen.insert((*m, k.clone())));
    f
}

/// An `nft -f` script being built, counting elementary statements (a command, or one
/// element of an element command).
#[derive(Debug, Default)]
pub struct Script {
    pub text: String,
    pub statements: usize,
}

impl Script {
    pub fn cmd(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        self.statements += 1;
    }

    /// `verb element <table> <map> { items }` in batches.
    pub fn elements(&mut self, verb: &str, family_table: &str, map: MapId, items: &[String]) {
        for chunk in items.chunks(ELEMENT_BATCH) {
            let _ = writeln!(self.text, "{verb} element {family_table} {} {{ {} }}", map.name(), chunk.join(", "));
            self.statements += chunk.len();
        }
    }
}

/// `key : value` (map) or `key` (set).
pub fn element_text(map: MapId, key: &str, value: Option<&str>) -> String {
    match value {
        Some(v) if map.is_map() => format!("{key} : {v}"),
        _ => key.to_string(),
    }
}

/// The static part of the table: maps, sets, helper chains and base chains with their rules.
/// Returns the commands (without the leading `add table`).
pub fn base_commands(cfg: &ProxyConfig) -> Vec<String> {
    let t = format!("ip {}", cfg.table);
    let mut c: Vec<String> = Vec::new();
    let mut map = |name: &str, spec: &str, comment: &str| {
        c.push(format!("add map {t} {name} {{ type {spec}; comment \"{comment}\"; }}"));
    };
    map(
        "service-ips",
        "ipv4_addr . inet_proto . inet_service : verdict",
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
    );
    map("service-nodeports", "inet_proto . inet_service : verdict", "NodePort traffic");
    map(
        "no-endpoint-services",
        "ipv4_addr . inet_proto . inet_service : verdict",
        "vmap to drop or reject packets to services with no endpoints",
    );
    map(
        "no-endpoint-nodeports",
        "inet_proto . inet_service : verdict",
        "vmap to drop or reject packets to service nodeports with no endpoints",
    );
    map("endpoints", "mark : ipv4_addr . inet_service", "endpoint slots: ct mark -> DNAT target");
    map(
        "firewall-ips",
        "ipv4_addr . inet_proto . inet_service : verdict",
        "destinations that are subject to LoadBalancerSourceRanges",
    );
    c.push(format!("add set {t} cluster-ips {{ type ipv4_addr; comment \"Active ClusterIPs\"; }}"));
    c.push(format!("add set {t} lb-ips {{ type ipv4_addr; comment \"Active LoadBalancer ingress IPs\"; }}"));
    c.push(format!(
        "add set {t} hairpin {{ type ipv4_addr . ipv4_addr; comment \"endpoint IPs: masquerade a pod reaching itself\"; }}"
    ));

    let mut chain = |name: &str, base: Option<&str>, rules: &[String]| {
        match base {
            Some(spec) => c.push(format!("add chain {t} {name} {{ {spec}; policy accept; }}")),
            None => c.push(format!("add chain {t} {name}")),
        }
        for r in rules {
            c.push(format!("add rule {t} {name} {r}"));
        }
    };
    let mark = format!("{MASQUERADE_MARK:#x}");
    chain("mark-for-masquerade", None, &[format!("meta mark set meta mark | {mark}")]);
    chain(
        "masquerading",
        None,
        &[
            "ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade".to_string(),
            format!("meta mark & {mark} == 0 return"),
            format!("meta mark set meta mark ^ {mark}"),
            "masquerade fully-random".to_string(),
        ],
    );
    // `services` is jumped to; a matching element goes to the service's chain, which sets
    // `ct mark` to an endpoint slot and falls off the end, back to the base chain, whose
    // next rule goes to `endpoint-dnat`. Packets matching no element are accepted here.
    chain(
        "services",
        None,
        &[
            format!(
                "ip daddr @cluster-ips ip saddr != {} jump mark-for-masquerade comment \"masquerade off-cluster traffic to ClusterIPs\"",
                cfg.pod_cidr
            ),
            "ip daddr . meta l4proto . th dport vmap @service-ips".to_string(),
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports".to_string(),
            "accept".to_string(),
        ],
    );
    let dnat: Vec<String> = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
        .iter()
        .map(|p| format!("meta l4proto {p} dnat ip to ct mark map @endpoints"))
        .collect();
    chain("endpoint-dnat", None, &dnat);
    chain("reject-chain", None, &["meta l4proto tcp reject with tcp reset".to_string(), "reject".to_string()]);
    chain(
        "service-endpoints-check",
        None,
        &["ip daddr . meta l4proto . th dport vmap @no-endpoint-services".to_string()],
    );
    chain(
        "nodeport-endpoints-check",
        None,
        &["ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports".to_string()],
    );
    chain(
        "cluster-ips-check",
        None,
        &[
            "ip daddr @cluster-ips goto reject-chain comment \"Reject traffic to invalid ports of ClusterIPs\""
                .to_string(),
            format!("ip daddr {} drop comment \"Drop traffic to unallocated ClusterIPs\"", cfg.service_cidr),
            // Not upstream: kube-proxy leaves this to the cloud LB or to MetalLB's setup.
            // rkube answers ARP for these addresses without owning them, so a packet for
            // another port would be forwarded back out to the LAN. A node's own address
            // (ServiceLB mode, without pools) keeps serving its other ports.
            "ip daddr @lb-ips fib daddr type != local goto reject-chain comment \"Reject traffic to unused ports of LoadBalancer IPs\""
                .to_string(),
        ],
    );
    chain("firewall-check", None, &["ip daddr . meta l4proto . th dport vmap @firewall-ips".to_string()]);
    // loadBalancerSourceRanges are checked on the pre-DNAT destination (upstream
    // `nftablesBaseChains`: filter-prerouting / filter-output at priority dstnat-10).
    let firewall = ["ct state new jump firewall-check".to_string()];
    chain("filter-prerouting", Some("type filter hook prerouting priority -110"), &firewall);
    chain("filter-output", Some("type filter hook output priority -110"), &firewall);
    let checks =
        ["ct state new jump service-endpoints-check".to_string(), "ct state new jump cluster-ips-check".to_string()];
    chain("filter-prerouting-post-dnat", Some("type filter hook prerouting priority -90"), &checks);
    chain("filter-output-post-dnat", Some("type filter hook output priority -90"), &checks);
    chain(
        "filter-input",
        Some("type filter hook input priority -110"),
        &["ct state new jump nodeport-endpoints-check".to_string()],
    );
    let nat = ["jump services".to_string(), "goto endpoint-dnat".to_string()];
    chain("nat-prerouting", Some("type nat hook prerouting priority -100"), &nat);
    chain("nat-output", Some("type nat hook output priority -100"), &nat);
    chain("nat-postrouting", Some("type nat hook postrouting priority 100"), &["jump masquerading".to_string()]);
    if let Some((ip, port)) = cfg.node_local_dns {
        let mut rules = Vec::new();
        for p in ["udp", "tcp"] {
            rules.push(format!("ip daddr {ip} {p} dport {port} notrack"));
            rules.push(format!("ip saddr {ip} {p} sport {port} notrack"));
        }
        chain("raw-prerouting", Some("type filter hook prerouting priority -300"), &rules);
        chain("raw-output", Some("type filter hook output priority -300"), &rules);
    }
    c
}

/// Number of rules and chains in [`base_commands`].
pub fn base_counts(cfg: &ProxyConfig) -> (usize, usize) {
    let cmds = base_commands(cfg);
    let rules = cmds.iter().filter(|c| c.starts_with("add rule ")).count();
    let chains = cmds.iter().filter(|c| c.starts_with("add chain ")).count();
    (rules, chains)
}

/// Renders the whole table from scratch as one transaction: `add table` + `delete table`
/// (drops whatever a previous run left) + everything. Elements are given per map as
/// (key, value) in the order they should be written.
pub fn full_script<'a>(
    cfg: &ProxyConfig,
    fragments: impl Iterator<Item = &'a Fragment> + Clone,
    elements: &BTreeMap<MapId, Vec<String>>,
) -> Script {
    let t = format!("ip {}", cfg.table);
    let mut s = Script::default();
    s.cmd(&format!("add table {t}"));
    s.cmd(&format!("delete table {t}"));
    s.cmd(&format!("add table {t} {{ comment \"{}\"; }}", table_comment(cfg)));
    for c in base_commands(cfg) {
        s.cmd(&c);
    }
    for f in fragments.clone() {
        for (name, timeout) in &f.affinity_sets {
            s.cmd(&affinity_set_command(&t, name, *timeout));
        }
    }
    for f in fragments.clone() {
        for (name, _) in &f.chains {
            s.cmd(&format!("add chain {t} {name}"));
        }
    }
    for f in fragments {
        for (name, rules) in &f.chains {
            for r in rules {
                s.cmd(&format!("add rule {t} {name} {r}"));
            }
        }
    }
    for (map, items) in elements {
        s.elements("add", &t, *map, items);
    }
    s
}

/// The table's comment: names the skeleton ([`base_commands`]) by a hash, so a later run
/// can tell whether a table it finds has the skeleton it would write.
pub fn table_comment(cfg: &ProxyConfig) -> String {
    format!("rkube service proxy; skeleton {}", hash8(&base_commands(cfg).join("\n")))
}

/// Names of the skeleton's chains.
pub fn base_chain_names(cfg: &ProxyConfig) -> Vec<String> {
    let prefix = format!("add chain ip {} ", cfg.table);
    base_commands(cfg)
        .iter()
        .filter_map(|c| c.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `add set` for a ClientIP affinity set (upstream: flags dynamic,timeout).
pub fn affinity_set_command(family_table: &str, name: &str, timeout: u32) -> String {
    format!("add set {family_table} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}")
}
