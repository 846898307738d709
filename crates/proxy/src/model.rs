//! The pure model: what one node's data plane must implement, computed from `Service`
//! and `EndpointSlice` objects. No I/O here.
//!
//! Upstream: `pkg/proxy/serviceport.go` + `pkg/proxy/service.go` (ServicePortInfo),
//! `pkg/proxy/endpointslicecache.go` (matching slices to service ports, endpoint
//! conditions, de-duplication) and `pkg/proxy/topology.go` (`CategorizeEndpoints`).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label on an EndpointSlice naming its Service (`discovery.k8s.io/v1`).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Services with this label are handled by another proxy (upstream skips them).
pub const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// Annotation on EndpointSlices: when the change that produced this version happened.
pub const ANNOTATION_LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// The annotation that lists source ranges when `spec.loadBalancerSourceRanges` is empty
/// (upstream `v1.AnnotationLoadBalancerSourceRangesKey`, comma-separated CIDRs).
pub const ANNOTATION_LOAD_BALANCER_SOURCE_RANGES: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";
/// Default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// L4 protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The lower-case name nftables uses (`tcp`, `udp`, `sctp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The IP protocol number (`IPPROTO_TCP`, `IPPROTO_UDP`, `IPPROTO_SCTP`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Parses a Kubernetes protocol (`TCP`, `UDP`, `SCTP`); `None` means TCP (the API default).
    pub fn from_k8s(p: Option<&str>) -> Option<Protocol> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `spec.type` of the Service (ExternalName and headless Services never reach the model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

/// `sessionAffinity` (+ `sessionAffinityConfig.clientIP.timeoutSeconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIP {
        timeout_seconds: u32,
    },
}

/// One port of one Service, as the proxy sees it (upstream `BaseServicePortInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServicePortInfo {
    pub namespace: String,
    pub name: String,
    /// `spec.ports[].name` (may be empty for single-port Services).
    pub port_name: String,
    pub service_type: ServiceType,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// `spec.ports[].nodePort` (NodePort and LoadBalancer Services).
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` (type LoadBalancer, `ipMode` not `Proxy`).
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `spec.loadBalancerSourceRanges` (or the annotation; see [`load_balancer_source_ranges`]),
    /// IPv4 only, aggregated: traffic to `load_balancer_ips` from elsewhere is dropped.
    /// Empty means no filtering. Only kept for type LoadBalancer.
    pub load_balancer_source_ranges: Vec<Ipv4Net>,
    /// `spec.healthCheckNodePort` of a LoadBalancer Service with `externalTrafficPolicy:
    /// Local` (upstream `apiservice.NeedsHealthCheck`): the node answers health checks there.
    pub health_check_node_port: Option<u16>,
    pub session_affinity: SessionAffinity,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
}

impl Default for ServicePortInfo {
    fn default() -> Self {
        ServicePortInfo {
            namespace: String::new(),
            name: String::new(),
            port_name: String::new(),
            service_type: ServiceType::ClusterIP,
            cluster_ip: Ipv4Addr::UNSPECIFIED,
            port: 0,
            protocol: Protocol::Tcp,
            node_port: None,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            load_balancer_source_ranges: Vec::new(),
            health_check_node_port: None,
            session_affinity: SessionAffinity::None,
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
        }
    }
}

impl ServicePortInfo {
    /// `namespace/name:port` like upstream's `ServicePortName.String()`.
    pub fn port_name_string(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }

    /// The identity of this service port: namespace, name, port name and protocol.
    pub fn key(&self) -> ServicePortKey {
        ServicePortKey {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            port_name: self.port_name.clone(),
            protocol: self.protocol,
        }
    }

    /// Upstream `apiservice.ExternallyAccessible`: NodePort, LoadBalancer, or ClusterIP with externalIPs.
    pub fn externally_accessible(&self) -> bool {
        match self.service_type {
            ServiceType::NodePort | ServiceType::LoadBalancer => true,
            ServiceType::ClusterIP => !self.external_ips.is_empty(),
        }
    }

    /// Upstream `ExternalPolicyLocal`: `externalTrafficPolicy: Local` on an externally accessible Service.
    pub fn external_policy_local(&self) -> bool {
        self.externally_accessible() && self.external_traffic_policy == TrafficPolicy::Local
    }

    /// Upstream `InternalPolicyLocal`.
    pub fn internal_policy_local(&self) -> bool {
        self.internal_traffic_policy == TrafficPolicy::Local
    }

    /// Upstream `UsesClusterEndpoints`: internal policy Cluster, or any external traffic
    /// (even `Local` external policy needs cluster endpoints for the short-circuit rules).
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local() || self.externally_accessible()
    }

    /// Upstream `UsesLocalEndpoints`.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local() || self.external_policy_local()
    }
}

/// Identity of a service port (upstream `ServicePortName` + protocol).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortKey {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    pub protocol: Protocol,
}

/// One endpoint of one service port (upstream `BaseEndpointInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `conditions.ready` (nil means true).
    pub ready: bool,
    /// `conditions.serving` (nil means true).
    pub serving: bool,
    /// `conditions.terminating` (nil means false).
    pub terminating: bool,
    pub node_name: Option<String>,
    /// `node_name` is this proxy's node.
    pub is_local: bool,
    /// `hints.forZones`: the zones whose nodes should use this endpoint (topology aware
    /// routing, KEP-2433; set by the EndpointSlice controller or a slice's owner).
    pub zone_hints: Vec<String>,
}

impl Endpoint {
    /// The endpoint is hinted for `zone`.
    pub fn hinted_for(&self, zone: &str) -> bool {
        self.zone_hints.iter().any(|h| h == zone)
    }

    /// A ready, serving, non-terminating endpoint (handy in tests and benchmarks).
    pub fn ready(ip: Ipv4Addr, port: u16, node_name: Option<&str>, is_local: bool) -> Endpoint {
        Endpoint {
            ip,
            port,
            ready: true,
            serving: true,
            terminating: false,
            node_name: node_name.map(str::to_string),
            is_local,
            zone_hints: Vec::new(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// The desired state of the data plane: every service port with all its endpoints.
pub type Desired = Vec<(ServicePortInfo, Vec<Endpoint>)>;

fn parse_v4(s: &str) -> Option<Ipv4Addr> {
    s.parse::<Ipv4Addr>().ok()
}

/// An IPv4 address as Go's `netutils.ParseIPSloppy` reads it: octets may have leading
/// zeros (decimal, not octal), which `Ipv4Addr::from_str` rejects.
fn parse_v4_sloppy(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in octets.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// An IPv4 CIDR as `netutils.ParseCIDRSloppy` reads it; host bits are cleared
/// (`10.0.0.5/24` is `10.0.0.0/24`). `None` for IPv6 and for anything unparsable.
pub fn parse_cidr_v4(s: &str) -> Option<Ipv4Net> {
    let (addr, prefix) = s.trim().split_once('/')?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let net = Ipv4Net::new(parse_v4_sloppy(addr)?, prefix.parse().ok()?).ok()?;
    Some(net.trunc())
}

/// The IPv4 source ranges of a Service: `spec.loadBalancerSourceRanges`, or when that is
/// empty the comma-separated annotation [`ANNOTATION_LOAD_BALANCER_SOURCE_RANGES`] (as
/// `servicehelper.GetLoadBalancerSourceRanges` in k8s.io/cloud-provider reads it).
/// Entries are trimmed (validation lets whitespace through, upstream `newBaseServiceInfo`);
/// IPv6 entries belong to the IPv6 proxier, and an unparsable entry is skipped, as
/// upstream `proxyutil.MapCIDRsByIPFamily` does. The result is aggregated (sorted, no
/// overlaps), so equal range sets compare equal.
pub fn load_balancer_source_ranges(svc: &Service) -> Vec<Ipv4Net> {
    let spec = svc.spec.as_ref().and_then(|s| s.load_balancer_source_ranges.as_ref()).filter(|r| !r.is_empty());
    let from_annotation;
    let entries: Vec<&str> = match spec {
        Some(r) => r.iter().map(String::as_str).collect(),
        None => {
            from_annotation = svc
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_LOAD_BALANCER_SOURCE_RANGES))
                .cloned()
                .unwrap_or_default();
            from_annotation.split(',').filter(|e| !e.trim().is_empty()).collect()
        }
    };
    let nets: Vec<Ipv4Net> = entries
        .iter()
        .filter_map(|e| {
            let net = parse_cidr_v4(e);
            if net.is_none() && !e.contains(':') {
                tracing::debug!(entry = %e.trim(), "ignoring an unparsable load balancer source range");
            }
            net
        })
        .collect();
    Ipv4Net::aggregate(&nets)
}

fn port_u16(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

/// Builds the model from Services and EndpointSlices, as upstream's ServiceChangeTracker +
/// EndpointSliceCache do for one IPv4 proxier on node `node_name`.
///
/// - Skipped Services: no spec, `ExternalName`, headless (`clusterIP: None`), no IPv4
///   cluster IP, labelled `service.kubernetes.io/service-proxy-name`.
/// - A slice belongs to the Service named by its `kubernetes.io/service-name` label in the
///   same namespace; only `addressType: IPv4`. A slice port feeds the service port with
///   the same name and protocol; each endpoint contributes its first address; an
///   `ip:port` seen in several slices counts once (a local copy wins).
/// - Endpoints keep their conditions; [`categorize_endpoints`] chooses which are used.
///
/// The result is sorted by (namespace, name, port name, protocol); endpoints by (ip, port).
pub fn from_objects<S, E>(services: &[S], slices: &[E], node_name: &str) -> Desired
where
    S: Borrow<Service>,
    E: Borrow<EndpointSlice>,
{
    // Endpoints by (namespace, service name) -> (port name, protocol) -> ip:port -> endpoint.
    type PortEndpoints = BTreeMap<(String, Protocol), BTreeMap<(Ipv4Addr, u16), Endpoint>>;
    let mut by_service: HashMap<(String, String), PortEndpoints> = HashMap::new();
    let mut sorted: Vec<&EndpointSlice> = slices.iter().map(|s| s.borrow()).collect();
    sorted.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
    for slice in sorted {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(ns) = slice.metadata.namespace.clone() else { continue };
        let Some(svc_name) = slice.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SERVICE_NAME)).cloned() else {
            continue;
        };
        if svc_name.is_empty() {
            continue;
        }
        let ports = by_service.entry((ns, svc_name)).or_default();
        for sp in slice.ports.iter().flatten() {
            let Some(port) = sp.port.and_then(port_u16) else { continue };
            let Some(proto) = Protocol::from_k8s(sp.protocol.as_deref()) else { continue };
            let set = ports.entry((sp.name.clone().unwrap_or_default(), proto)).or_default();
            for ep in &slice.endpoints {
                let Some(ip) = ep.addresses.first().and_then(|a| parse_v4(a)) else { continue };
                let cond = ep.conditions.as_ref();
                let is_local = !node_name.is_empty() && ep.node_name.as_deref() == Some(node_name);
                let e = Endpoint {
                    ip,
                    port,
                    ready: cond.and_then(|c| c.ready).unwrap_or(true),
                    serving: cond.and_then(|c| c.serving).unwrap_or(true),
                    terminating: cond.and_then(|c| c.terminating).unwrap_or(false),
                    node_name: ep.node_name.clone(),
                    is_local,
                    zone_hints: ep
                        .hints
                        .as_ref()
                        .and_then(|h| h.for_zones.as_ref())
                        .map(|z| z.iter().map(|z| z.name.clone()).collect())
                        .unwrap_or_default(),
                };
                // endpointslicecache.go addEndpoints: first one wins unless a later copy is local.
                if !set.contains_key(&(ip, port)) || is_local {
                    set.insert((ip, port), e);
                }
            }
        }
    }

    let mut out: Desired = Vec::new();
    for svc in services {
        let svc: &Service = svc.borrow();
        let Some(spec) = svc.spec.as_ref() else { continue };
        let (Some(ns), Some(name)) = (svc.metadata.namespace.clone(), svc.metadata.name.clone()) else { continue };
        if svc.metadata.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_SERVICE_PROXY_NAME)) {
            continue;
        }
        let service_type = match spec.type_.as_deref().unwrap_or("ClusterIP") {
            "ClusterIP" => ServiceType::ClusterIP,
            "NodePort" => ServiceType::NodePort,
            "LoadBalancer" => ServiceType::LoadBalancer,
            _ => continue, // ExternalName: DNS only.
        };
        let cluster_ip = spec.cluster_ips.iter().flatten().chain(spec.cluster_ip.iter()).find_map(|s| parse_v4(s));
        let Some(cluster_ip) = cluster_ip else { continue }; // headless or IPv6-only
        let external_ips: Vec<Ipv4Addr> = dedup(spec.external_ips.iter().flatten().filter_map(|s| parse_v4(s)));
        let load_balancer_ips: Vec<Ipv4Addr> = if service_type == ServiceType::LoadBalancer {
            dedup(
                svc.status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_ref())
                    .into_iter()
                    .flatten()
                    // KEP-1860: ipMode Proxy means the LB delivers to the node, not the VIP.
                    .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                    .filter_map(|i| i.ip.as_deref().and_then(parse_v4)),
            )
        } else {
            Vec::new()
        };
        let load_balancer_source_ranges =
            if service_type == ServiceType::LoadBalancer { load_balancer_source_ranges(svc) } else { Vec::new() };
        let policy = |p: Option<&str>| if p == Some("Local") { TrafficPolicy::Local } else { TrafficPolicy::Cluster };
        let external_traffic_policy = policy(spec.external_traffic_policy.as_deref());
        // Upstream `apiservice.NeedsHealthCheck`: LoadBalancer with external policy Local.
        let health_check_node_port = (service_type == ServiceType::LoadBalancer
            && external_traffic_policy == TrafficPolicy::Local)
            .then(|| spec.health_check_node_port.and_then(port_u16))
            .flatten();
        let session_affinity = if spec.session_affinity.as_deref() == Some("ClientIP") {
            let t = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS);
            SessionAffinity::ClientIP { timeout_seconds: t }
        } else {
            SessionAffinity::None
        };
        let eps_for = by_service.get(&(ns.clone(), name.clone()));
        for p in spec.ports.iter().flatten() {
            let Some(port) = port_u16(p.port) else { continue };
            let Some(protocol) = Protocol::from_k8s(p.protocol.as_deref()) else { continue };
            let port_name = p.name.clone().unwrap_or_default();
            let node_port = match service_type {
                ServiceType::ClusterIP => None,
                _ => p.node_port.and_then(port_u16),
            };
            let info = ServicePortInfo {
                namespace: ns.clone(),
                name: name.clone(),
                port_name: port_name.clone(),
                service_type,
                cluster_ip,
                port,
                protocol,
                node_port,
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                load_balancer_source_ranges: load_balancer_source_ranges.clone(),
                health_check_node_port,
                session_affinity,
                external_traffic_policy,
                internal_traffic_policy: policy(spec.internal_traffic_policy.as_deref()),
            };
            let eps: Vec<Endpoint> = eps_for
                .and_then(|m| m.get(&(port_name, protocol)))
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            out.push((info, eps));
        }
    }
    out.sort_by_key(|a| a.0.key());
    out.dedup_by(|a, b| a.0.key() == b.0.key());
    out
}

fn dedup(it: impl Iterator<Item = Ipv4Addr>) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = Vec::new();
    for ip in it {
        if !v.contains(&ip) {
            v.push(ip);
        }
    }
    v
}

/// Which endpoints each traffic policy uses (upstream `CategorizeEndpoints`, without
/// topology-aware routing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Endpoints for `Cluster` policy: the ready ones, else the serving+terminating ones.
    pub cluster: Vec<Endpoint>,
    /// Endpoints for `Local` policy: local ready ones, else local serving+terminating ones.
    pub local: Vec<Endpoint>,
    /// Union of the endpoints some chain of this service jumps to.
    pub all_reachable: Vec<Endpoint>,
    /// The service has a usable endpoint somewhere in the cluster.
    pub has_any: bool,
}

/// Upstream `topologyModeFromHints` (zone hints; the node-hint mode is behind an alpha
/// feature gate in 1.33): the zone to keep Cluster-policy traffic in, when every ready
/// endpoint has a zone hint and at least one is hinted for this node's zone.
fn prefer_same_zone<'a>(endpoints: &[Endpoint], zone: Option<&'a str>) -> Option<&'a str> {
    let zone = zone.filter(|z| !z.is_empty())?;
    let mut ready = endpoints.iter().filter(|e| e.ready).peekable();
    ready.peek()?;
    let mut for_zone = false;
    for e in ready {
        if e.zone_hints.is_empty() {
            return None;
        }
        for_zone |= e.hinted_for(zone);
    }
    for_zone.then_some(zone)
}

/// Upstream `pkg/proxy/topology.go` `CategorizeEndpoints`; `zone` is this node's
/// `topology.kubernetes.io/zone` label (topology aware routing by zone hints).
pub fn categorize_endpoints(svc: &ServicePortInfo, endpoints: &[Endpoint], zone: Option<&str>) -> Categorized {
    let mut c = Categorized::default();
    if svc.uses_cluster_endpoints() {
        let same_zone = prefer_same_zone(endpoints, zone);
        c.cluster =
            endpoints.iter().filter(|e| e.ready && same_zone.is_none_or(|z| e.hinted_for(z))).cloned().collect();
        if c.cluster.is_empty() {
            // Fall back to serving+terminating endpoints so connections drain instead of failing.
            c.cluster = endpoints.iter().filter(|e| e.serving && e.terminating).cloned().collect();
        }
        c.has_any = !c.cluster.is_empty();
    }
    if !svc.uses_local_endpoints() {
        c.all_reachable = c.cluster.clone();
        return c;
    }
    let (mut local_ready, mut local_term) = (false, false);
    for e in endpoints {
        if e.ready {
            c.has_any = true;
            local_ready |= e.is_local;
        } else if e.serving && e.terminating {
            c.has_any = true;
            local_term |= e.is_local;
        }
    }
    let mut using_terminating = false;
    if local_ready {
        c.local = endpoints.iter().filter(|e| e.is_local && e.ready).cloned().collect();
    } else if local_term {
        using_terminating = true;
        c.local = endpoints.iter().filter(|e| e.is_local && e.serving && e.terminating).cloned().collect();
    }
    if !svc.uses_cluster_endpoints() {
        c.all_reachable = c.local.clone();
        return c;
    }
    if !using_terminating {
        // cluster holds every ready endpoint, a superset of local.
        c.all_reachable = c.cluster.clone();
        return c;
    }
    let mut all = c.cluster.clone();
    for e in &c.local {
        if !all.iter().any(|a| a.ip == e.ip && a.port == e.port) {
            all.push(e.clone());
        }
    }
    c.all_reachable = all;
    c
}
