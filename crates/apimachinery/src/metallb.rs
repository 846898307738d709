//! MetalLB's address-pool kinds (`metallb.io/v1beta1` `IPAddressPool` and
//! `L2Advertisement`), served by rkube itself so a MetalLB user's manifests work
//! unchanged, plus the pure rules around them: parsing address ranges (a CIDR or
//! `A-B`), MetalLB's "buggy IP" rule, and validation with field errors.
//!
//! Upstream: metallb `api/v1beta1/ipaddresspool_types.go`,
//! `api/v1beta1/l2advertisement_types.go`, `internal/config/config.go` (`ParseCIDR`).
//! The Service annotations are those of metallb `controller/service.go`.

use crate::field::FieldError;
use crate::selector::LabelSelector as Selector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const GROUP: &str = "metallb.io";
pub const VERSION: &str = "v1beta1";
pub const API_VERSION: &str = "metallb.io/v1beta1";

/// Service annotation: the pool to allocate from.
pub const ANNOTATION_ADDRESS_POOL: &str = "metallb.io/address-pool";
/// Service annotation: the addresses wanted, comma separated (one per family).
pub const ANNOTATION_LOAD_BALANCER_IPS: &str = "metallb.io/loadBalancerIPs";
/// Service annotation: Services with the same key may share an address when their
/// ports do not collide.
pub const ANNOTATION_ALLOW_SHARED_IP: &str = "metallb.io/allow-shared-ip";
/// Service annotation written by the allocator: the pool the address came from.
pub const ANNOTATION_ALLOCATED_FROM_POOL: &str = "metallb.io/ip-allocated-from-pool";
/// The older annotation prefix MetalLB still reads.
pub const DEPRECATED_PREFIX: &str = "metallb.universe.tf";

/// `metallb.io/v1beta1` `IPAddressPool`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct IPAddressPool {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: IPAddressPoolSpec,
    #[serde(default)]
    pub status: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Default true: addresses are handed out without being asked for by pool name or IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_assign: Option<bool>,
    /// Skip addresses ending in `.0` and `.255`.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// MetalLB's namespace / Service selectors and priority; kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<Value>,
}

impl IPAddressPoolSpec {
    pub fn auto_assign(&self) -> bool {
        self.auto_assign.unwrap_or(true)
    }
}

/// `metallb.io/v1beta1` `L2Advertisement`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct L2Advertisement {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: L2AdvertisementSpec,
    #[serde(default)]
    pub status: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools announced, by name; with no names and no selectors: every pool.
    #[serde(default, rename = "ipAddressPools")]
    pub ip_address_pools: Vec<String>,
    #[serde(default, rename = "ipAddressPoolSelectors")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes that may announce; empty: every node.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces to announce on; empty: the interfaces on the address's subnet.
    #[serde(default)]
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

macro_rules! resource {
    ($ty:ident, $kind:literal, $plural:literal) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = API_VERSION;
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = VERSION;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::ListableResource for $ty {
            const LIST_KIND: &'static str = concat!($kind, "List");
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                #[derive(Serialize)]
                struct Repr<'a, T> {
                    #[serde(rename = "apiVersion")]
                    api_version: &'static str,
                    kind: &'static str,
                    metadata: &'a ObjectMeta,
                    spec: &'a T,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    status: &'a Option<Value>,
                }
                Repr {
                    api_version: API_VERSION,
                    kind: $kind,
                    metadata: &self.metadata,
                    spec: &self.spec,
                    status: &self.status,
                }
                .serialize(s)
            }
        }
    };
}

resource!(IPAddressPool, "IPAddressPool", "ipaddresspools");
resource!(L2Advertisement, "L2Advertisement", "l2advertisements");

/// A Service annotation under `metallb.io/`, or its deprecated `metallb.universe.tf/` twin.
pub fn annotation<'a>(
    annotations: Option<&'a std::collections::BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    let a = annotations?;
    let old = key.strip_prefix("metallb.io/").map(|k| format!("{DEPRECATED_PREFIX}/{k}"));
    a.get(key).or_else(|| old.and_then(|o| a.get(&o))).map(String::as_str).filter(|v| !v.trim().is_empty())
}

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(v4: bool, b: u128) -> Option<IpAddr> {
    if v4 {
        u32::try_from(b).ok().map(|b| IpAddr::V4(Ipv4Addr::from(b)))
    } else {
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    }
}

impl AddressRange {
    /// Parses `192.168.122.200-192.168.122.250` or `192.168.122.0/24` (MetalLB
    /// `ParseCIDR`; a CIDR keeps its network and broadcast addresses).
    pub fn parse(s: &str) -> Result<AddressRange, String> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let first: IpAddr =
                a.trim().parse().map_err(|_| format!("invalid IP range {s:?}: invalid start IP {:?}", a.trim()))?;
            let last: IpAddr =
                b.trim().parse().map_err(|_| format!("invalid IP range {s:?}: invalid end IP {:?}", b.trim()))?;
            if first.is_ipv4() != last.is_ipv4() {
                return Err(format!("invalid IP range {s:?}: start and end are of different IP families"));
            }
            if bits(first) > bits(last) {
                return Err(format!("invalid IP range {s:?}: start IP {first} is after the end IP {last}"));
            }
            return Ok(AddressRange { first, last });
        }
        let net: ipnet::IpNet = s
            .parse()
            .map_err(|_| format!("invalid CIDR {s:?} (expected a range like 192.168.1.240-192.168.1.250 or a CIDR like 192.168.1.240/28)"))?;
        Ok(AddressRange { first: net.network(), last: net.broadcast() })
    }

    pub fn is_ipv4(&self) -> bool {
        self.first.is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4() && bits(self.first) <= bits(ip) && bits(ip) <= bits(self.last)
    }

    /// The ranges share an address.
    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && bits(self.first) <= bits(other.last)
            && bits(other.first) <= bits(self.last)
    }

    /// Number of addresses (saturating).
    pub fn len(&self) -> u128 {
        (bits(self.last) - bits(self.first)).saturating_add(1)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The addresses in order, skipping `.0` and `.255` when `avoid_buggy` is set.
    pub fn iter(&self, avoid_buggy: bool) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.is_ipv4();
        (bits(self.first)..=bits(self.last))
            .filter_map(move |b| from_bits(v4, b))
            .filter(move |ip| !(avoid_buggy && confuses_buggy_firmware(*ip)))
    }

    /// As an `ipnet` range for overlap checks against CIDRs.
    fn overlaps_net(&self, net: &ipnet::IpNet) -> bool {
        self.overlaps(&AddressRange { first: net.network(), last: net.broadcast() })
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// MetalLB `ipConfusesBuggyFirmwares`: IPv4 addresses ending in `.0` or `.255`.
pub fn confuses_buggy_firmware(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => matches!(a.octets()[3], 0 | 255),
        IpAddr::V6(_) => false,
    }
}

/// Ranges a pool may not overlap, with what they are (e.g. `the service CIDR`).
#[derive(Clone, Debug, Default)]
pub struct Reserved {
    pub nets: Vec<(ipnet::IpNet, String)>,
}

impl Reserved {
    /// The first reserved range `range` overlaps, described.
    pub fn conflict(&self, range: &AddressRange) -> Option<String> {
        self.nets.iter().find(|(n, _)| range.overlaps_net(n)).map(|(n, what)| format!("overlaps {what} {n}"))
    }
}

/// Parses pool ranges given on the command line (`--lb-pool`), refusing what a pool
/// must not cover.
pub fn parse_pool_flag(values: &[String], reserved: &Reserved) -> Result<Vec<AddressRange>, String> {
    let mut out: Vec<AddressRange> = Vec::new();
    for v in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
        let r = AddressRange::parse(v).map_err(|e| format!("--lb-pool {v}: {e}"))?;
        if let Some(c) = reserved.conflict(&r) {
            return Err(format!("--lb-pool {v}: {c}; choose addresses on the nodes' network outside it"));
        }
        if let Some(o) = out.iter().find(|o| o.overlaps(&r)) {
            return Err(format!("--lb-pool {v}: overlaps the range {o} given before"));
        }
        out.push(r);
    }
    Ok(out)
}

/// Parses the addresses of a pool's spec (invalid entries are skipped; the API
/// server refuses them on write).
pub fn pool_ranges(spec: &IPAddressPoolSpec) -> Vec<AddressRange> {
    spec.addresses.iter().filter_map(|a| AddressRange::parse(a).ok()).collect()
}

fn selectors(errs: &mut Vec<FieldError>, path: &str, v: &Value) {
    for (i, s) in v.as_array().into_iter().flatten().enumerate() {
        if let Err(e) = Selector::from_label_selector(s) {
            errs.push(FieldError::invalid(format!("{path}[{i}]"), s.clone(), e.0));
        }
    }
}

/// Validates an `IPAddressPool` object (JSON as stored): every address a range or CIDR,
/// at least one, none overlapping a reserved range (service CIDR, pod CIDR).
pub fn validate_pool(obj: &Value, reserved: &Reserved) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec");
    let addrs = spec.and_then(|s| s.get("addresses"));
    match addrs.and_then(Value::as_array) {
        None => errs.push(FieldError::required("spec.addresses", "")),
        Some(a) if a.is_empty() => errs.push(FieldError::required("spec.addresses", "at least one address range")),
        Some(a) => {
            let mut seen: Vec<AddressRange> = Vec::new();
            for (i, v) in a.iter().enumerate() {
                let path = format!("spec.addresses[{i}]");
                let Some(s) = v.as_str() else {
                    errs.push(FieldError::invalid(path, v.clone(), "must be a string"));
                    continue;
                };
                match AddressRange::parse(s) {
                    Err(e) => errs.push(FieldError::invalid(path, s, e)),
                    Ok(r) => {
                        if let Some(c) = reserved.conflict(&r) {
                            errs.push(FieldError::invalid(path, s, c));
                        } else if let Some(o) = seen.iter().find(|o| o.overlaps(&r)) {
                            errs.push(FieldError::invalid(path, s, format!("overlaps {o} of the same pool")));
                        }
                        seen.push(r);
                    }
                }
            }
        }
    }
    for field in ["autoAssign", "avoidBuggyIPs"] {
        if let Some(v) = spec.and_then(|s| s.get(field)) {
            if !v.is_boolean() && !v.is_null() {
                errs.push(FieldError::invalid(format!("spec.{field}"), v.clone(), "must be true or false"));
            }
        }
    }
    errs
}

/// Validates an `L2Advertisement` object (JSON as stored).
pub fn validate_l2_advertisement(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = obj.get("spec") else { return errs };
    for field in ["ipAddressPoolSelectors", "nodeSelectors", "serviceSelectors"] {
        if let Some(v) = spec.get(field) {
            selectors(&mut errs, &format!("spec.{field}"), v);
        }
    }
    for (i, v) in spec.get("interfaces").and_then(Value::as_array).into_iter().flatten().enumerate() {
        // Linux IFNAMSIZ: at most 15 bytes, no '/' or whitespace.
        let ok = v.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 15 && !s.contains(['/', ' ', '\t', '\n']));
        if !ok {
            errs.push(FieldError::invalid(
                format!("spec.interfaces[{i}]"),
                v.clone(),
                "must be a network interface name",
            ));
        }
    }
    for (i, v) in spec.get("ipAddressPools").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if v.as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::invalid(format!("spec.ipAddressPools[{i}]"), v.clone(), "must be a pool name"));
        }
    }
    errs
}

/// Whether `labels` match a `metav1.LabelSelector` (an empty selector matches all).
pub use crate::selector::label_selector_matches as selector_matches;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn parses_ranges_and_cidrs() {
        let r = AddressRange::parse("192.168.122.200-192.168.122.250").expect("range");
        assert_eq!((r.first, r.last, r.len()), (ip("192.168.122.200"), ip("192.168.122.250"), 51));
        let c = AddressRange::parse("10.0.0.0/30").expect("cidr");
        assert_eq!(
            c.iter(false).collect::<Vec<_>>(),
            vec![ip("10.0.0.0"), ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]
        );
        assert_eq!(c.iter(true).count(), 3);
        assert_eq!(AddressRange::parse("192.168.1.7/32").expect("one").to_string(), "192.168.1.7");
        assert!(AddressRange::parse("fd00::1-fd00::9").expect("v6").len() == 9);
        for bad in ["192.168.1.9-192.168.1.1", "10.0.0.1-fd00::1", "nope", "10.0.0.0/33", "1.2.3.4-x"] {
            assert!(AddressRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            AddressRange::parse("192.168.1.9-192.168.1.1").err().as_deref(),
            Some("invalid IP range \"192.168.1.9-192.168.1.1\": start IP 192.168.1.9 is after the end IP 192.168.1.1")
        );
    }

    #[test]
    fn overlaps_and_reserved() {
        let reserved = Reserved {
            nets: vec![
                ("10.96.0.0/12".parse().expect("net"), "the service CIDR".into()),
                ("192.168.122.11/32".parse().expect("net"), "the node IP of node1".into()),
            ],
        };
        let ok = parse_pool_flag(&["192.168.122.200-192.168.122.250".into(), "192.168.123.0/28".into()], &reserved)
            .expect("pools");
        assert_eq!(ok.len(), 2);
        assert_eq!(
            parse_pool_flag(&["10.100.0.1-10.100.0.9".into()], &reserved).err().as_deref(),
            Some("--lb-pool 10.100.0.1-10.100.0.9: overlaps the service CIDR 10.96.0.0/12; choose addresses on the nodes' network outside it")
        );
        assert!(parse_pool_flag(&["192.168.122.10-192.168.122.20".into()], &reserved)
            .err()
            .is_some_and(|e| e.contains("node IP of node1")));
        assert!(parse_pool_flag(&["192.168.1.0/24,192.168.1.5-192.168.1.6".into()], &reserved)
            .err()
            .is_some_and(|e| e.contains("overlaps the range 192.168.1.0-192.168.1.255")));
        assert!(parse_pool_flag(&["garbage".into()], &reserved).is_err());
    }

    #[test]
    fn validates_pools() {
        let reserved = Reserved { nets: vec![("10.244.0.0/16".parse().expect("net"), "the pod CIDR".into())] };
        let good =
            json!({"spec": {"addresses": ["192.168.122.200-192.168.122.210", "192.168.10.0/24"], "autoAssign": false}});
        assert!(validate_pool(&good, &reserved).is_empty());
        let errs: Vec<String> = validate_pool(
            &json!({"spec": {"addresses": ["192.168.1.1-x", "10.244.3.0/24", "192.168.10.0/24", "192.168.10.5/32"]}}),
            &reserved,
        )
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            errs,
            vec![
                "spec.addresses[0]: Invalid value: \"192.168.1.1-x\": invalid IP range \"192.168.1.1-x\": invalid end IP \"x\"",
                "spec.addresses[1]: Invalid value: \"10.244.3.0/24\": overlaps the pod CIDR 10.244.0.0/16",
                "spec.addresses[3]: Invalid value: \"192.168.10.5/32\": overlaps 192.168.10.0-192.168.10.255 of the same pool",
            ]
        );
        assert_eq!(validate_pool(&json!({"spec": {}}), &reserved)[0].to_string(), "spec.addresses: Required value");
    }

    #[test]
    fn validates_advertisements_and_matches_selectors() {
        let good = json!({"spec": {"ipAddressPools": ["a"], "nodeSelectors": [{"matchLabels": {"lb": "yes"}}], "interfaces": ["eth0"]}});
        assert!(validate_l2_advertisement(&good).is_empty());
        let bad = json!({"spec": {"nodeSelectors": [{"matchExpressions": [{"key": "k", "operator": "Near"}]}], "interfaces": ["a/b"]}});
        let errs: Vec<String> = validate_l2_advertisement(&bad).iter().map(|e| e.field.clone()).collect();
        assert_eq!(errs, vec!["spec.nodeSelectors[0]", "spec.interfaces[0]"]);

        let ad: L2Advertisement = serde_json::from_value(good).expect("ad");
        let yes = [("lb".to_string(), "yes".to_string())].into_iter().collect();
        assert!(selector_matches(&ad.spec.node_selectors[0], Some(&yes)));
        assert!(!selector_matches(&ad.spec.node_selectors[0], None));
        assert!(selector_matches(&LabelSelector::default(), None));
    }

    #[test]
    fn pool_round_trips_with_type_meta() {
        let p: IPAddressPool = serde_json::from_value(json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "first", "namespace": "metallb-system"},
            "spec": {"addresses": ["192.168.10.0/24"], "avoidBuggyIPs": true}
        }))
        .expect("pool");
        assert!(p.spec.auto_assign() && p.spec.avoid_buggy_ips);
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["kind"], "IPAddressPool");
        assert_eq!(v["apiVersion"], "metallb.io/v1beta1");
        assert_eq!(v["spec"]["avoidBuggyIPs"], true);
    }

    #[test]
    fn reads_deprecated_annotations() {
        let a = [("metallb.universe.tf/address-pool".to_string(), "p".to_string())].into_iter().collect();
        assert_eq!(annotation(Some(&a), ANNOTATION_ADDRESS_POOL), Some("p"));
        assert_eq!(annotation(Some(&a), ANNOTATION_ALLOW_SHARED_IP), None);
    }
}
