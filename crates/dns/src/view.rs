//! [`ClusterView`]: the in-memory index of Services, EndpointSlices, Pods and
//! Namespaces that cluster DNS answers from, and the record logic of the
//! Kubernetes DNS-Based Service Discovery specification (kubernetes/dns
//! `docs/specification.md`, schema 1.1.0) as CoreDNS's `kubernetes` plugin
//! implements it (`plugin/kubernetes/kubernetes.go` `findServices`/`findPods`,
//! `parse.go` `parseRequest`, `reverse.go`).
//!
//! The view is fed by watches ([`crate::run`]) or directly (tests, benchmarks).
//! Every change is visible to the next query: nothing inside the cluster zone is
//! cached, positively or negatively.

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The schema version served as `dns-version.<zone>. TXT`.
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";

/// The label EndpointSlices carry naming their Service (discovery.k8s.io/v1).
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Pre-`publishNotReadyAddresses` way to publish unready endpoints; the spec still
/// names it in its definition of _ready_.
const TOLERATE_UNREADY_ANNOTATION: &str = "service.alpha.kubernetes.io/tolerate-unready-endpoints";
/// CoreDNS's maximum number of CNAMEs it follows inside its own zone.
const MAX_CNAME_DEPTH: usize = 8;

/// The cluster zone and how records in it are served.
#[derive(Clone, Debug)]
pub struct Zone {
    name: Name,
    ascii: String,
    ttl: u32,
}

impl Zone {
    /// `zone` like `cluster.local` (a trailing dot is optional), `ttl` in seconds for
    /// every record (CoreDNS's `ttl`, default 5).
    pub fn new(zone: &str, ttl: u32) -> Result<Zone, crate::Error> {
        let trimmed = zone.trim().trim_end_matches('.').to_ascii_lowercase();
        if trimmed.is_empty() {
            return Err(crate::Error::Config(format!("invalid cluster zone {zone:?}")));
        }
        let ascii = format!("{trimmed}.");
        let name = Name::from_ascii(&ascii)
            .map_err(|e| crate::Error::Config(format!("invalid cluster zone {zone:?}: {e}")))?;
        Ok(Zone { name, ascii, ttl })
    }

    /// The zone as a fully qualified, lower-case name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The TTL of every record in the zone.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Whether `name` is the zone or below it (case-insensitive).
    pub fn contains(&self, name: &Name) -> bool {
        self.name.zone_of(name)
    }

    fn fqdn(&self, relative: &str) -> Option<Name> {
        Name::from_ascii(format!("{relative}.{}", self.ascii)).ok()
    }
}

/// What the view says about one question.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// A CNAME target outside the zone (an ExternalName Service) whose records of
    /// this type should be looked up upstream and appended to the answer.
    pub chase: Option<(Name, RecordType)>,
}

/// Counts of what the view holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewStats {
    pub services: usize,
    pub endpoint_slices: usize,
    pub pods: usize,
    pub namespaces: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PortRec {
    name: Box<str>,
    /// Lower case: `tcp`, `udp`, `sctp`.
    proto: Box<str>,
    port: u16,
}

#[derive(Clone, Debug)]
enum SvcKind {
    ClusterIp(Box<[IpAddr]>),
    Headless,
    /// Lower case, no trailing dot.
    External(Box<str>),
}

#[derive(Clone, Debug)]
struct SvcRec {
    kind: SvcKind,
    ports: Box<[PortRec]>,
    publish_not_ready: bool,
}

#[derive(Clone, Debug)]
struct EpRec {
    addrs: Box<[IpAddr]>,
    hostname: Option<Box<str>>,
    ready: bool,
}

#[derive(Clone, Debug)]
struct SliceRec {
    service: String,
    ports: Box<[PortRec]>,
    endpoints: Box<[EpRec]>,
}

#[derive(Default, Debug)]
struct NsIndex {
    /// A Namespace object was seen.
    object: bool,
    services: HashMap<String, SvcRec>,
    slices: HashMap<String, SliceRec>,
    slices_by_svc: HashMap<String, Vec<String>>,
    pods: HashMap<String, Box<[IpAddr]>>,
    pod_ips: HashMap<IpAddr, u32>,
}

impl NsIndex {
    fn is_empty(&self) -> bool {
        !self.object && self.services.is_empty() && self.slices.is_empty() && self.pods.is_empty()
    }
}

#[derive(Default, Debug)]
struct Index {
    namespaces: HashMap<String, NsIndex>,
    /// ClusterIP -> (namespace, service).
    svc_by_ip: HashMap<IpAddr, Vec<(String, String)>>,
    /// Endpoint address -> (namespace, slice).
    slice_by_ip: HashMap<IpAddr, Vec<(String, String)>>,
}

/// The index cluster DNS answers from. Cheap to clone (a handle); safe to update
/// from one task while any number of others query it.
#[derive(Clone, Debug)]
pub struct ClusterView {
    inner: Arc<ViewInner>,
}

#[derive(Debug)]
struct ViewInner {
    index: RwLock<Index>,
    synced: AtomicBool,
    serial: AtomicU32,
}

impl Default for ClusterView {
    fn default() -> Self {
        Self::new()
    }
}

fn now_serial() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1)
}

fn meta_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<(String, String)> {
    let name = meta.name.as_deref().filter(|n| !n.is_empty())?;
    let ns = meta.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
    Some((ns.to_ascii_lowercase(), name.to_ascii_lowercase()))
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}

impl ClusterView {
    /// An empty view that counts as synced (answers NXDOMAIN for unknown names).
    pub fn new() -> ClusterView {
        let view = Self::new_unsynced();
        view.set_synced(true);
        view
    }

    /// An empty view that answers SERVFAIL instead of NXDOMAIN until
    /// [`ClusterView::set_synced`] (as CoreDNS does before its informers sync).
    pub fn new_unsynced() -> ClusterView {
        ClusterView {
            inner: Arc::new(ViewInner {
                index: RwLock::new(Index::default()),
                synced: AtomicBool::new(false),
                serial: AtomicU32::new(now_serial()),
            }),
        }
    }

    pub fn set_synced(&self, synced: bool) {
        self.inner.synced.store(synced, Ordering::Release);
    }

    pub fn is_synced(&self) -> bool {
        self.inner.synced.load(Ordering::Acquire)
    }

    /// The SOA serial: the time (unix seconds) of the last change, strictly increasing.
    pub fn serial(&self) -> u32 {
        self.inner.serial.load(Ordering::Relaxed)
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.inner.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        let now = now_serial();
        let _ = self.inner.serial.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(now.max(s + 1)));
        self.inner.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Add or replace a Service.
    pub fn apply_service(&self, svc: &Service) {
        let Some((ns, name)) = meta_key(&svc.metadata) else { return };
        let rec = service_rec(svc);
        self.write().put_service(&ns, &name, rec);
    }

    pub fn delete_service(&self, svc: &Service) {
        if let Some((ns, name)) = meta_key(&svc.metadata) {
            self.write().remove_service(&ns, &name);
        }
    }

    /// Add or replace an EndpointSlice (discovery.k8s.io/v1); slices without the
    /// `kubernetes.io/service-name` label, or of address type FQDN, are ignored.
    pub fn apply_endpoint_slice(&self, slice: &EndpointSlice) {
        let Some((ns, name)) = meta_key(&slice.metadata) else { return };
        let rec = slice_rec(slice);
        let mut idx = self.write();
        match rec {
            Some(rec) => idx.put_slice(&ns, &name, rec),
            None => idx.remove_slice(&ns, &name),
        }
    }

    pub fn delete_endpoint_slice(&self, slice: &EndpointSlice) {
        if let Some((ns, name)) = meta_key(&slice.metadata) {
            self.write().remove_slice(&ns, &name);
        }
    }

    /// Add or replace a Pod (its `status.podIPs`; pods being deleted are dropped,
    /// as CoreDNS ignores them).
    pub fn apply_pod(&self, pod: &Pod) {
        let Some((ns, name)) = meta_key(&pod.metadata) else { return };
        let ips = pod_ips(pod);
        let mut idx = self.write();
        if ips.is_empty() || pod.metadata.deletion_timestamp.is_some() {
            idx.remove_pod(&ns, &name);
        } else {
            idx.put_pod(&ns, &name, ips);
        }
    }

    pub fn delete_pod(&self, pod: &Pod) {
        if let Some((ns, name)) = meta_key(&pod.metadata) {
            self.write().remove_pod(&ns, &name);
        }
    }

    /// A Namespace makes `<ns>.svc.<zone>` and `<ns>.pod.<zone>` exist (NOERROR,
    /// no data) even when it holds no Service or Pod yet.
    pub fn apply_namespace(&self, ns: &Namespace) {
        if let Some(name) = ns.metadata.name.as_deref().filter(|n| !n.is_empty()) {
            self.write().set_namespace(&name.to_ascii_lowercase(), true);
        }
    }

    pub fn delete_namespace(&self, ns: &Namespace) {
        if let Some(name) = ns.metadata.name.as_deref().filter(|n| !n.is_empty()) {
            self.write().set_namespace(&name.to_ascii_lowercase(), false);
        }
    }

    /// Replace every Service with `services` (a watch's initial list).
    pub fn replace_services<'a>(&self, services: impl IntoIterator<Item = &'a Service>) {
        let recs: Vec<_> =
            services.into_iter().filter_map(|s| Some((meta_key(&s.metadata)?, service_rec(s)))).collect();
        let mut idx = self.write();
        idx.svc_by_ip.clear();
        for nsi in idx.namespaces.values_mut() {
            nsi.services.clear();
        }
        for ((ns, name), rec) in recs {
            idx.put_service(&ns, &name, rec);
        }
        idx.gc_all();
    }

    /// Replace every EndpointSlice with `slices`.
    pub fn replace_endpoint_slices<'a>(&self, slices: impl IntoIterator<Item = &'a EndpointSlice>) {
        let recs: Vec<_> = slices.into_iter().filter_map(|s| Some((meta_key(&s.metadata)?, slice_rec(s)?))).collect();
        let mut idx = self.write();
        idx.slice_by_ip.clear();
        for nsi in idx.namespaces.values_mut() {
            nsi.slices.clear();
            nsi.slices_by_svc.clear();
        }
        for ((ns, name), rec) in recs {
            idx.put_slice(&ns, &name, rec);
        }
        idx.gc_all();
    }

    /// Replace every Pod with `pods`.
    pub fn replace_pods<'a>(&self, pods: impl IntoIterator<Item = &'a Pod>) {
        let recs: Vec<_> = pods
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| Some((meta_key(&p.metadata)?, pod_ips(p))))
            .filter(|(_, ips)| !ips.is_empty())
            .collect();
        let mut idx = self.write();
        for nsi in idx.namespaces.values_mut() {
            nsi.pods.clear();
            nsi.pod_ips.clear();
        }
        for ((ns, name), ips) in recs {
            idx.put_pod(&ns, &name, ips);
        }
        idx.gc_all();
    }

    /// Replace every Namespace with `namespaces`.
    pub fn replace_namespaces<'a>(&self, namespaces: impl IntoIterator<Item = &'a Namespace>) {
        let names: Vec<String> = namespaces
            .into_iter()
            .filter_map(|n| n.metadata.name.as_deref().filter(|n| !n.is_empty()).map(|n| n.to_ascii_lowercase()))
            .collect();
        let mut idx = self.write();
        for nsi in idx.namespaces.values_mut() {
            nsi.object = false;
        }
        for name in names {
            idx.namespaces.entry(name).or_default().object = true;
        }
        idx.gc_all();
    }

    /// Replace every Service, EndpointSlice and Pod (Namespace objects are kept).
    pub fn rebuild(&self, services: &[Service], slices: &[EndpointSlice], pods: &[Pod]) {
        self.replace_services(services);
        self.replace_endpoint_slices(slices);
        self.replace_pods(pods);
    }

    pub fn stats(&self) -> ViewStats {
        let idx = self.read();
        let mut s = ViewStats { namespaces: idx.namespaces.len(), ..Default::default() };
        for nsi in idx.namespaces.values() {
            s.services += nsi.services.len();
            s.endpoint_slices += nsi.slices.len();
            s.pods += nsi.pods.len();
        }
        s
    }

    /// Answer `query` from the view, or `None` when the name is not the view's to
    /// answer (outside `zone`, or a reverse name of an address the view doesn't
    /// know): the caller forwards it upstream.
    pub fn resolve(&self, zone: &Zone, query: &Query) -> Option<Resolution> {
        let qname = query.name();
        let qtype = query.query_type();
        if zone.contains(qname) {
            let idx = self.read();
            let mut res = idx.resolve_in_zone(zone, qname, qtype, self.serial(), 0);
            if res.rcode == ResponseCode::NXDomain && !self.is_synced() {
                res.rcode = ResponseCode::ServFail;
                res.authorities.clear();
            }
            return Some(res);
        }
        if qtype == RecordType::PTR || qtype == RecordType::ANY {
            let ip = reverse_ip(qname)?;
            let idx = self.read();
            let targets = idx.ptr_targets(zone, ip);
            if targets.is_empty() {
                return None;
            }
            let answers =
                targets.into_iter().map(|t| Record::from_rdata(qname.clone(), zone.ttl, RData::PTR(PTR(t)))).collect();
            return Some(Resolution { answers, ..Default::default() });
        }
        None
    }
}

fn service_rec(svc: &Service) -> SvcRec {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            Some(PortRec {
                name: p.name.unwrap_or_default().to_ascii_lowercase().into(),
                proto: p.protocol.unwrap_or_else(|| "TCP".into()).to_ascii_lowercase().into(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    let tolerate = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TOLERATE_UNREADY_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false) || tolerate;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        SvcKind::External(spec.external_name.unwrap_or_default().trim_end_matches('.').to_ascii_lowercase().into())
    } else if spec.cluster_ip.as_deref() == Some("None") {
        SvcKind::Headless
    } else {
        let mut ips: Vec<IpAddr> = spec.cluster_ips.unwrap_or_default().iter().filter_map(|s| parse_ip(s)).collect();
        if ips.is_empty() {
            ips.extend(spec.cluster_ip.as_deref().and_then(parse_ip));
        }
        SvcKind::ClusterIp(ips.into())
    };
    SvcRec { kind, ports, publish_not_ready }
}

fn slice_rec(slice: &EndpointSlice) -> Option<SliceRec> {
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.to_ascii_lowercase();
    if slice.address_type.eq_ignore_ascii_case("FQDN") {
        return None;
    }
    let ports = slice
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some(PortRec {
                name: p.name.clone().unwrap_or_default().to_ascii_lowercase().into(),
                proto: p.protocol.clone().unwrap_or_else(|| "TCP".into()).to_ascii_lowercase().into(),
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .map(|e| EpRec {
            addrs: e.addresses.iter().filter_map(|a| parse_ip(a)).collect(),
            hostname: e.hostname.as_deref().filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase().into()),
            // discovery/v1: "nil should be interpreted as true".
            ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
        })
        .filter(|e| !e.addrs.is_empty())
        .collect();
    Some(SliceRec { service, ports, endpoints })
}

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let mut ips: Vec<IpAddr> =
        status.pod_ips.as_deref().unwrap_or_default().iter().filter_map(|p| parse_ip(&p.ip)).collect();
    if ips.is_empty() {
        ips.extend(status.pod_ip.as_deref().and_then(parse_ip));
    }
    ips
}

/// The address of a full `in-addr.arpa` / `ip6.arpa` name.
pub(crate) fn reverse_ip(name: &Name) -> Option<IpAddr> {
    let labels: Vec<String> = name.iter().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect::<Vec<_>>();
    let n = labels.len();
    if n == 6 && labels[4] == "in-addr" && labels[5] == "arpa" {
        let mut octets = [0u8; 4];
        for (i, l) in labels[..4].iter().enumerate() {
            if l.len() > 1 && l.starts_with('0') {
                return None;
            }
            octets[3 - i] = l.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if n == 34 && labels[32] == "ip6" && labels[33] == "arpa" {
        let mut v: u128 = 0;
        for l in labels[..32].iter().rev() {
            if l.len() != 1 {
                return None;
            }
            v = (v << 4) | u128::from(u8::from_str_radix(l, 16).ok()?);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(v)));
    }
    None
}

/// CoreDNS's `endpointHostname`: the endpoint's hostname, or its address with the
/// dots (colons) replaced by dashes.
fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// Parse the `<a>-<b>-<c>-<d>` label of a pod name (CoreDNS `findPods`).
fn undash(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".").parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    }
}

fn strip_underscore(s: &str) -> &str {
    s.strip_prefix('_').unwrap_or(s)
}

/// Sets kept as small sorted vectors: most hold one element, and a `BTreeSet`
/// node costs hundreds of bytes.
fn set_insert<T: Ord>(set: &mut Vec<T>, x: T) {
    if let Err(i) = set.binary_search(&x) {
        set.insert(i, x);
    }
}

fn set_remove<T: Ord>(set: &mut Vec<T>, x: &T) {
    if let Ok(i) = set.binary_search(x) {
        set.remove(i);
    }
}

/// One candidate answer, as CoreDNS's `msg.Service`: an address and/or port under
/// a target name, or a CNAME.
struct Item {
    ip: Option<IpAddr>,
    port: Option<u16>,
    /// Relative to the zone, e.g. `web.default.svc` or `pod-0.web.default.svc`.
    target: String,
}

enum Found {
    Items(Vec<Item>),
    Cname(String),
    /// The name exists but holds nothing (an empty non-terminal).
    Empty,
    NxDomain,
}

impl Index {
    fn ns_mut(&mut self, ns: &str) -> &mut NsIndex {
        self.namespaces.entry(ns.to_string()).or_default()
    }

    fn gc(&mut self, ns: &str) {
        if self.namespaces.get(ns).is_some_and(NsIndex::is_empty) {
            self.namespaces.remove(ns);
        }
    }

    fn gc_all(&mut self) {
        self.namespaces.retain(|_, n| !n.is_empty());
    }

    fn put_service(&mut self, ns: &str, name: &str, rec: SvcRec) {
        self.remove_service(ns, name);
        if let SvcKind::ClusterIp(ips) = &rec.kind {
            for ip in ips {
                set_insert(
                    self.svc_by_ip.entry(*ip).or_insert_with(|| Vec::with_capacity(1)),
                    (ns.to_string(), name.to_string()),
                );
            }
        }
        self.ns_mut(ns).services.insert(name.to_string(), rec);
    }

    fn remove_service(&mut self, ns: &str, name: &str) {
        let Some(old) = self.namespaces.get_mut(ns).and_then(|n| n.services.remove(name)) else { return };
        if let SvcKind::ClusterIp(ips) = &old.kind {
            for ip in ips {
                if let Some(set) = self.svc_by_ip.get_mut(ip) {
                    set_remove(set, &(ns.to_string(), name.to_string()));
                    if set.is_empty() {
                        self.svc_by_ip.remove(ip);
                    }
                }
            }
        }
        self.gc(ns);
    }

    fn put_slice(&mut self, ns: &str, name: &str, rec: SliceRec) {
        self.remove_slice(ns, name);
        for ep in &rec.endpoints {
            for ip in &ep.addrs {
                set_insert(
                    self.slice_by_ip.entry(*ip).or_insert_with(|| Vec::with_capacity(1)),
                    (ns.to_string(), name.to_string()),
                );
            }
        }
        let nsi = self.ns_mut(ns);
        set_insert(
            nsi.slices_by_svc.entry(rec.service.clone()).or_insert_with(|| Vec::with_capacity(1)),
            name.to_string(),
        );
        nsi.slices.insert(name.to_string(), rec);
    }

    fn remove_slice(&mut self, ns: &str, name: &str) {
        let Some(nsi) = self.namespaces.get_mut(ns) else { return };
        let Some(old) = nsi.slices.remove(name) else { return };
        if let Some(set) = nsi.slices_by_svc.get_mut(&old.service) {
            set_remove(set, &name.to_string());
            if set.is_empty() {
                nsi.slices_by_svc.remove(&old.service);
            }
        }
        for ep in &old.endpoints {
            for ip in &ep.addrs {
                if let Some(set) = self.slice_by_ip.get_mut(ip) {
                    set_remove(set, &(ns.to_string(), name.to_string()));
                    if set.is_empty() {
                        self.slice_by_ip.remove(ip);
                    }
                }
            }
        }
        self.gc(ns);
    }

    fn put_pod(&mut self, ns: &str, name: &str, ips: Vec<IpAddr>) {
        let ips: Box<[IpAddr]> = ips.into();
        self.remove_pod(ns, name);
        let nsi = self.ns_mut(ns);
        for ip in &ips {
            *nsi.pod_ips.entry(*ip).or_default() += 1;
        }
        nsi.pods.insert(name.to_string(), ips);
    }

    fn remove_pod(&mut self, ns: &str, name: &str) {
        let Some(nsi) = self.namespaces.get_mut(ns) else { return };
        let Some(old) = nsi.pods.remove(name) else { return };
        for ip in old.iter() {
            if let Some(c) = nsi.pod_ips.get_mut(ip) {
                *c -= 1;
                if *c == 0 {
                    nsi.pod_ips.remove(ip);
                }
            }
        }
        self.gc(ns);
    }

    fn set_namespace(&mut self, ns: &str, exists: bool) {
        if exists {
            self.ns_mut(ns).object = true;
        } else if let Some(nsi) = self.namespaces.get_mut(ns) {
            nsi.object = false;
            self.gc(ns);
        }
    }

    /// The endpoints of a Service that DNS publishes: ready ones, or all of them
    /// with `publishNotReadyAddresses` (or the tolerate-unready annotation).
    fn endpoints<'a>(&'a self, ns: &'a NsIndex, svc_name: &str, svc: &SvcRec) -> Vec<(&'a EpRec, &'a [PortRec])> {
        let mut out = Vec::new();
        let Some(names) = ns.slices_by_svc.get(svc_name) else { return out };
        for slice in names.iter().filter_map(|n| ns.slices.get(n)) {
            for ep in &slice.endpoints {
                if ep.ready || svc.publish_not_ready {
                    out.push((ep, &slice.ports[..]));
                }
            }
        }
        out
    }

    fn ptr_targets(&self, zone: &Zone, ip: IpAddr) -> Vec<Name> {
        // CoreDNS reverse.go: a ClusterIP first (one name), else every endpoint.
        if let Some((ns, name)) = self.svc_by_ip.get(&ip).and_then(|s| s.iter().next()) {
            return zone.fqdn(&format!("{name}.{ns}.svc")).into_iter().collect();
        }
        let mut out = Vec::new();
        for (ns, slice_name) in self.slice_by_ip.get(&ip).into_iter().flatten() {
            let Some(nsi) = self.namespaces.get(ns) else { continue };
            let Some(slice) = nsi.slices.get(slice_name) else { continue };
            let publish = nsi.services.get(&slice.service).is_some_and(|s| s.publish_not_ready);
            for ep in slice.endpoints.iter().filter(|e| e.ready || publish) {
                if ep.addrs.contains(&ip) {
                    let host = ep.hostname.as_deref().map(str::to_string).unwrap_or_else(|| dashed(&ip));
                    if let Some(n) = zone.fqdn(&format!("{host}.{}.{ns}.svc", slice.service)) {
                        if !out.contains(&n) {
                            out.push(n);
                        }
                    }
                }
            }
        }
        out
    }

    fn soa(&self, zone: &Zone, serial: u32) -> Record {
        let mname = zone.fqdn("ns.dns").unwrap_or_else(|| zone.name.clone());
        let rname = zone.fqdn("hostmaster").unwrap_or_else(|| zone.name.clone());
        // CoreDNS plugin/backend_lookup.go SOA: refresh 7200, retry 1800, expire 86400,
        // minimum = the zone's TTL.
        let soa = SOA::new(mname, rname, serial, 7200, 1800, 86400, zone.ttl);
        Record::from_rdata(zone.name.clone(), zone.ttl, RData::SOA(soa))
    }

    /// The labels of `qname` below the zone, rightmost first (`svc`, `<ns>`, ...).
    fn find(&self, labels: &[&str]) -> Found {
        match labels {
            [] => Found::Empty,
            ["dns-version"] | ["svc"] | ["pod"] | ["dns"] => Found::Empty,
            ["svc", ns, rest @ ..] | ["pod", ns, rest @ ..] => {
                let Some(nsi) = self.namespaces.get(*ns) else { return Found::NxDomain };
                if rest.is_empty() {
                    return Found::Empty;
                }
                if labels[0] == "pod" {
                    return Self::find_pod(ns, nsi, rest);
                }
                self.find_service(ns, nsi, rest)
            }
            _ => Found::NxDomain,
        }
    }

    fn find_pod(ns: &str, nsi: &NsIndex, rest: &[&str]) -> Found {
        let [label] = rest else { return Found::NxDomain };
        match undash(label) {
            Some(ip) if nsi.pod_ips.contains_key(&ip) => {
                Found::Items(vec![Item { ip: Some(ip), port: None, target: format!("{label}.{ns}.pod") }])
            }
            _ => Found::NxDomain,
        }
    }

    fn find_service(&self, ns: &str, nsi: &NsIndex, rest: &[&str]) -> Found {
        let (svc_name, endpoint, port_proto) = match rest {
            [svc] => (*svc, None, None),
            [svc, ep] => (*svc, Some(*ep), None),
            [svc, proto, port] => (*svc, None, Some((strip_underscore(port), strip_underscore(proto)))),
            _ => return Found::NxDomain,
        };
        let Some(svc) = nsi.services.get(svc_name) else { return Found::NxDomain };
        let base = format!("{svc_name}.{ns}.svc");
        if let SvcKind::External(target) = &svc.kind {
            // CoreDNS: an ExternalName Service has no endpoints, and an IP in
            // externalName is not a CNAME target.
            if endpoint.is_some() || port_proto.is_some() || target.is_empty() || parse_ip(target).is_some() {
                return Found::NxDomain;
            }
            return Found::Cname(target.to_string());
        }
        let port_ok = |p: &PortRec| match port_proto {
            None => true,
            Some((port, proto)) => &*p.name == port && &*p.proto == proto,
        };
        let mut items = Vec::new();
        match (&svc.kind, endpoint) {
            (SvcKind::ClusterIp(ips), None) => {
                let ports: Vec<&PortRec> = svc.ports.iter().filter(|p| port_ok(p)).collect();
                if ports.is_empty() && port_proto.is_none() {
                    items.extend(ips.iter().map(|ip| Item { ip: Some(*ip), port: None, target: base.clone() }));
                }
                for p in ports {
                    for ip in ips {
                        items.push(Item { ip: Some(*ip), port: Some(p.port), target: base.clone() });
                    }
                }
            }
            (_, endpoint) => {
                if let Some(ep) = endpoint {
                    if ep.starts_with('_') {
                        // `_<proto>.<svc>...`: the empty non-terminal above the SRV names.
                        let proto = strip_underscore(ep);
                        return if svc.ports.iter().any(|p| !p.name.is_empty() && &*p.proto == proto) {
                            Found::Empty
                        } else {
                            Found::NxDomain
                        };
                    }
                }
                for (ep, ports) in self.endpoints(nsi, svc_name, svc) {
                    for ip in &ep.addrs {
                        let host = ep.hostname.as_deref().map(str::to_string).unwrap_or_else(|| dashed(ip));
                        if endpoint.is_some_and(|e| e != host) {
                            continue;
                        }
                        let target = format!("{host}.{base}");
                        if ports.is_empty() && port_proto.is_none() {
                            items.push(Item { ip: Some(*ip), port: None, target: target.clone() });
                        }
                        for p in ports.iter().filter(|p| port_ok(p)) {
                            items.push(Item { ip: Some(*ip), port: Some(p.port), target: target.clone() });
                        }
                    }
                }
            }
        }
        if items.is_empty() {
            // The spec (2.4.1): a headless Service without ready endpoints is NXDOMAIN.
            Found::NxDomain
        } else {
            Found::Items(items)
        }
    }

    fn kube_dns_ips(&self) -> Vec<IpAddr> {
        match self.namespaces.get("kube-system").and_then(|n| n.services.get("kube-dns")).map(|s| &s.kind) {
            Some(SvcKind::ClusterIp(ips)) => ips.to_vec(),
            _ => Vec::new(),
        }
    }

    fn resolve_in_zone(&self, zone: &Zone, qname: &Name, qtype: RecordType, serial: u32, depth: usize) -> Resolution {
        let lower = qname.to_lowercase();
        let skip = zone.name.num_labels() as usize;
        let all: Vec<&[u8]> = lower.iter().collect();
        let below = all.len().saturating_sub(skip);
        let mut labels: Vec<&str> = Vec::with_capacity(below);
        for l in all[..below].iter().rev() {
            match std::str::from_utf8(l) {
                Ok(s) => labels.push(s),
                Err(_) => return self.negative(zone, serial, ResponseCode::NXDomain),
            }
        }
        let ttl = zone.ttl;
        let mut res = Resolution::default();

        // The apex: SOA and NS (ns.dns.<zone>, CoreDNS's name for itself).
        if labels.is_empty() {
            match qtype {
                RecordType::SOA => res.answers.push(self.soa(zone, serial)),
                RecordType::NS => {
                    if let Some(ns) = zone.fqdn("ns.dns") {
                        res.answers.push(Record::from_rdata(qname.clone(), ttl, RData::NS(NS(ns.clone()))));
                        for ip in self.kube_dns_ips() {
                            res.additionals.push(addr_record(&ns, ttl, ip));
                        }
                    }
                }
                _ => {}
            }
            return self.finish(zone, serial, res);
        }
        if labels == ["dns-version"] {
            if matches!(qtype, RecordType::TXT | RecordType::ANY) {
                let txt = TXT::new(vec![DNS_SCHEMA_VERSION.to_string()]);
                res.answers.push(Record::from_rdata(qname.clone(), ttl, RData::TXT(txt)));
            }
            return self.finish(zone, serial, res);
        }
        if labels == ["dns", "ns"] {
            for ip in self.kube_dns_ips() {
                if type_matches(qtype, ip) {
                    res.answers.push(addr_record(qname, ttl, ip));
                }
            }
            return self.finish(zone, serial, res);
        }

        match self.find(&labels) {
            Found::NxDomain => self.negative(zone, serial, ResponseCode::NXDomain),
            Found::Empty => self.finish(zone, serial, res),
            Found::Cname(target) => {
                let Ok(target_name) = Name::from_ascii(format!("{target}.")) else {
                    return self.negative(zone, serial, ResponseCode::NXDomain);
                };
                res.answers.push(Record::from_rdata(qname.clone(), ttl, RData::CNAME(CNAME(target_name.clone()))));
                if qtype == RecordType::CNAME {
                    return res;
                }
                if zone.contains(&target_name) {
                    if depth < MAX_CNAME_DEPTH && !target_name.eq_ignore_root_case(qname) {
                        let inner = self.resolve_in_zone(zone, &target_name, qtype, serial, depth + 1);
                        res.answers.extend(inner.answers);
                        res.additionals.extend(inner.additionals);
                        res.chase = inner.chase;
                    }
                } else {
                    res.chase = Some((target_name, qtype));
                }
                res
            }
            Found::Items(items) => {
                match qtype {
                    RecordType::A | RecordType::AAAA | RecordType::ANY => {
                        let mut seen = BTreeSet::new();
                        for ip in items.iter().filter_map(|i| i.ip) {
                            if type_matches(qtype, ip) && seen.insert(ip) {
                                res.answers.push(addr_record(qname, ttl, ip));
                            }
                        }
                    }
                    RecordType::SRV => {
                        let mut seen = BTreeSet::new();
                        let srvs: Vec<(u16, &Item)> = items
                            .iter()
                            .filter_map(|i| Some((i.port?, i)))
                            .filter(|(port, i)| seen.insert((*port, i.target.clone())))
                            .collect();
                        // CoreDNS: all in priority 0, weight 100 split evenly.
                        let weight = (100 / srvs.len().max(1)).max(1) as u16;
                        let mut extra = BTreeSet::new();
                        for (port, item) in srvs {
                            let Some(target) = zone.fqdn(&item.target) else { continue };
                            let srv = SRV::new(0, weight, port, target.clone());
                            res.answers.push(Record::from_rdata(qname.clone(), ttl, RData::SRV(srv)));
                            if let Some(ip) = item.ip {
                                if extra.insert((item.target.clone(), ip)) {
                                    res.additionals.push(addr_record(&target, ttl, ip));
                                }
                            }
                        }
                    }
                    _ => {}
                }
                self.finish(zone, serial, res)
            }
        }
    }

    /// NOERROR with answers, or NOERROR/no-data with the SOA in authority.
    fn finish(&self, zone: &Zone, serial: u32, mut res: Resolution) -> Resolution {
        if res.answers.is_empty() {
            res.authorities.push(self.soa(zone, serial));
        }
        res
    }

    fn negative(&self, zone: &Zone, serial: u32, rcode: ResponseCode) -> Resolution {
        Resolution { rcode, authorities: vec![self.soa(zone, serial)], ..Default::default() }
    }
}

fn type_matches(qtype: RecordType, ip: IpAddr) -> bool {
    matches!(
        (qtype, ip),
        (RecordType::A | RecordType::ANY, IpAddr::V4(_)) | (RecordType::AAAA | RecordType::ANY, IpAddr::V6(_))
    )
}

fn addr_record(name: &Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name.clone(), ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(v6))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn svc(ns: &str, n: &str, ip: &str) -> Service {
        Service {
            metadata: ObjectMeta { name: Some(n.into()), namespace: Some(ns.into()), ..Default::default() },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(vec![ServicePort { name: Some("http".into()), port: 80, ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn reverse_names_parse_to_addresses() {
        assert_eq!(reverse_ip(&name("1.0.96.10.in-addr.arpa.")), Some("10.96.0.1".parse().expect("ip")));
        assert_eq!(reverse_ip(&name("1.0.96.10.IN-ADDR.ARPA.")), Some("10.96.0.1".parse().expect("ip")));
        assert_eq!(reverse_ip(&name("0.96.10.in-addr.arpa.")), None, "a partial name is not an address");
        assert_eq!(reverse_ip(&name("01.0.96.10.in-addr.arpa.")), None);
        assert_eq!(reverse_ip(&name("300.0.96.10.in-addr.arpa.")), None);
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(reverse_ip(&name(v6)), Some("fd00::1".parse().expect("ip")));
    }

    #[test]
    fn pod_labels_parse_as_coredns_does() {
        assert_eq!(undash("10-244-1-7"), Some("10.244.1.7".parse().expect("ip")));
        assert_eq!(undash("fd00--1"), Some("fd00::1".parse().expect("ip")));
        assert_eq!(undash("10-244-1"), None);
        assert_eq!(dashed(&"fd00::1".parse().expect("ip")), "fd00--1");
    }

    #[test]
    fn replace_drops_what_the_new_list_lacks_and_keeps_the_reverse_index_right() {
        let view = ClusterView::new();
        view.apply_service(&svc("a", "one", "10.96.0.1"));
        view.apply_service(&svc("b", "two", "10.96.0.2"));
        let serial = view.serial();
        view.replace_services(&[svc("b", "two", "10.96.0.3")]);
        assert!(view.serial() > serial, "every change moves the SOA serial");
        assert_eq!(view.stats(), ViewStats { services: 1, namespaces: 1, ..Default::default() });
        let zone = Zone::new("cluster.local", 5).expect("zone");
        let ptr = |ip: &str| view.read().ptr_targets(&zone, ip.parse().expect("ip"));
        assert!(ptr("10.96.0.1").is_empty());
        assert!(ptr("10.96.0.2").is_empty());
        assert_eq!(ptr("10.96.0.3"), vec![name("two.b.svc.cluster.local.")]);
        // Namespace "a" is gone with its only Service.
        let q = Query::query(name("a.svc.cluster.local."), RecordType::A);
        assert_eq!(view.resolve(&zone, &q).map(|r| r.rcode), Some(ResponseCode::NXDomain));
        // Outside the zone: not the view's to answer.
        let q = Query::query(name("www.google.com."), RecordType::A);
        assert!(view.resolve(&zone, &q).is_none());
    }

    #[test]
    fn zone_names_are_normalised() {
        let z = Zone::new("Cluster.Local.", 5).expect("zone");
        assert_eq!(z.name().to_ascii(), "cluster.local.");
        assert!(z.contains(&name("x.CLUSTER.local.")));
        assert!(!z.contains(&name("cluster.localhost.")));
        assert!(Zone::new("", 5).is_err());
    }
}
