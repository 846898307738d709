//! What kube-apiserver does to a Service at create/update time, minus storage.
//!
//! Ported from upstream (kubernetes v1.33):
//! - `pkg/apis/core/v1/defaults.go` (`SetDefaults_Service`) -> [`set_object_defaults`];
//! - `pkg/registry/core/service/storage/storage.go` (`normalizeClusterIPs`,
//!   `patchAllocatedValues`) and `storage/alloc.go` (`initIPFamilyFields`,
//!   `allocClusterIPs`, `initNodePorts`, `updateNodePorts`, health-check ports) for a
//!   single-stack IPv4 cluster -> [`set_defaults`], [`prepare_for_update`],
//!   [`allocate_create`], [`allocate_update`], [`release_all`];
//! - `pkg/registry/core/service/strategy.go` (`PrepareForCreate`,
//!   `dropTypeDependentFields`) -> [`prepare_for_create`], [`prepare_for_update`];
//! - `pkg/apis/core/validation/validation.go` (`ValidateService`,
//!   `ValidateServiceUpdate`, `validateServicePort`, `ValidateServiceClusterIPsRelatedFields`,
//!   `validateUpgradeDowngradeClusterIPs`, ...) -> [`validate`], [`validate_update`].
//!
//! The API server's order mirrors upstream's generic registry:
//! - create: decode -> [`set_defaults`] -> [`prepare_for_create`] -> [`allocate_create`]
//!   (422/500 on error) -> [`validate`] (422; release the allocation) -> store (release on failure);
//! - update: decode -> [`set_object_defaults`] -> `names::prepare_object_meta_update` ->
//!   [`prepare_for_update`] -> [`allocate_update`] -> [`validate_update`] -> store; on
//!   success release `to_release`, on failure release `allocated`;
//! - delete: [`release_all`]. At start the server rebuilds its allocators from
//!   [`allocated_resources`] of every stored Service.
//! - read (GET/LIST/watch): [`default_on_read`].
//!
//! [`validate`] also runs the allocation-phase checks that do not need allocator
//! state (ipFamily/ipFamilyPolicy consistency, requested clusterIP inside the service
//! CIDR, requested nodePorts inside the range), returning them alone as upstream does
//! (allocation happens before validation there).
//!
//! Known difference: `FieldError` prints list/struct values as JSON (`["10.96.0.5"]`)
//! where Go prints `%#v` (`[]string{"10.96.0.5"}`, `core.ServicePort{...}`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::allocator::{AllocError, IpAllocator, PortAllocator};
use crate::field::FieldError;
use crate::names;

pub const TYPE_CLUSTER_IP: &str = "ClusterIP";
pub const TYPE_NODE_PORT: &str = "NodePort";
pub const TYPE_LOAD_BALANCER: &str = "LoadBalancer";
pub const TYPE_EXTERNAL_NAME: &str = "ExternalName";
pub const CLUSTER_IP_NONE: &str = "None";
pub const AFFINITY_NONE: &str = "None";
pub const AFFINITY_CLIENT_IP: &str = "ClientIP";
/// `v1.DefaultClientIPServiceAffinitySeconds` (3 hours).
pub const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i32 = 10800;
/// `core.MaxClientIPServiceAffinitySeconds` (1 day).
pub const MAX_CLIENT_IP_AFFINITY_SECONDS: i32 = 86400;
pub const IPV4: &str = "IPv4";
pub const IPV6: &str = "IPv6";
pub const SINGLE_STACK: &str = "SingleStack";
pub const PREFER_DUAL_STACK: &str = "PreferDualStack";
pub const REQUIRE_DUAL_STACK: &str = "RequireDualStack";
pub const POLICY_CLUSTER: &str = "Cluster";
pub const POLICY_LOCAL: &str = "Local";

const ANNOTATION_LB_SOURCE_RANGES: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";
const ANNOTATION_TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";

// `sets.List(...)` of upstream's supported-value sets: sorted.
const SUPPORTED_AFFINITY: [&str; 2] = ["ClientIP", "None"];
const SUPPORTED_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SUPPORTED_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const SUPPORTED_TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];
const SUPPORTED_IP_FAMILIES: [&str; 2] = ["IPv4", "IPv6"];
const SUPPORTED_IP_FAMILY_POLICIES: [&str; 3] = ["PreferDualStack", "RequireDualStack", "SingleStack"];
const SUPPORTED_TRAFFIC_DISTRIBUTION: [&str; 1] = ["PreferClose"];

/// The cluster's Service networking configuration (single-stack IPv4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    pub service_cidr: Ipv4Net,
    pub node_port_range: RangeInclusive<u16>,
}

impl Default for ServiceConfig {
    /// `10.96.0.0/12` and `30000-32767`, as in DESIGN.md.
    fn default() -> Self {
        ServiceConfig {
            service_cidr: Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or_default(),
            node_port_range: 30000..=32767,
        }
    }
}

// ---------------------------------------------------------------------------
// Small accessors
// ---------------------------------------------------------------------------

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn type_of(spec: &ServiceSpec) -> &str {
    s(&spec.type_)
}

fn cluster_ips(spec: &ServiceSpec) -> &[String] {
    spec.cluster_ips.as_deref().unwrap_or(&[])
}

fn ip_families(spec: &ServiceSpec) -> &[String] {
    spec.ip_families.as_deref().unwrap_or(&[])
}

fn ports(spec: &ServiceSpec) -> &[ServicePort] {
    spec.ports.as_deref().unwrap_or(&[])
}

fn node_port(p: &ServicePort) -> i32 {
    p.node_port.unwrap_or(0)
}

fn selector_is_empty(spec: &ServiceSpec) -> bool {
    spec.selector.as_ref().is_none_or(|m| m.is_empty())
}

/// Upstream `isHeadlessService`: `clusterIPs == ["None"]`.
fn is_headless(spec: &ServiceSpec) -> bool {
    cluster_ips(spec) == [CLUSTER_IP_NONE]
}

/// Upstream `apiservice.ExternallyAccessible`.
pub fn externally_accessible(spec: &ServiceSpec) -> bool {
    let t = type_of(spec);
    t == TYPE_LOAD_BALANCER
        || t == TYPE_NODE_PORT
        || (t == TYPE_CLUSTER_IP && spec.external_ips.as_ref().is_some_and(|v| !v.is_empty()))
}

/// Upstream `apiservice.NeedsHealthCheck`: LoadBalancer with `externalTrafficPolicy: Local`.
pub fn needs_health_check(spec: &ServiceSpec) -> bool {
    type_of(spec) == TYPE_LOAD_BALANCER && s(&spec.external_traffic_policy) == POLICY_LOCAL
}

fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    type_of(spec) != TYPE_EXTERNAL_NAME
}

fn needs_node_port(spec: &ServiceSpec) -> bool {
    matches!(type_of(spec), TYPE_NODE_PORT | TYPE_LOAD_BALANCER)
}

/// Upstream `shouldAllocateNodePorts`.
fn should_allocate_node_ports(spec: &ServiceSpec) -> bool {
    match type_of(spec) {
        TYPE_NODE_PORT => true,
        TYPE_LOAD_BALANCER => spec.allocate_load_balancer_node_ports.unwrap_or(true),
        _ => false,
    }
}

/// Go's `netutils.IsIPv6String`: parses and is not IPv4 (nor IPv4-mapped).
fn is_ipv6_string(ip: &str) -> bool {
    matches!(names::parse_ip_sloppy(ip), Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none())
}

fn parse_ipv4(ip: &str) -> Option<Ipv4Addr> {
    match names::parse_ip_sloppy(ip)? {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

fn family_of(ip: &str) -> &'static str {
    if is_ipv6_string(ip) {
        IPV6
    } else {
        IPV4
    }
}

fn list(v: &[String]) -> serde_json::Value {
    serde_json::Value::from(v.to_vec())
}

fn opt_value(v: &Option<String>) -> serde_json::Value {
    v.as_ref().map_or(serde_json::Value::Null, |s| serde_json::Value::String(s.clone()))
}

fn spec_or_default(svc: &Service) -> std::borrow::Cow<'_, ServiceSpec> {
    match &svc.spec {
        Some(spec) => std::borrow::Cow::Borrowed(spec),
        None => std::borrow::Cow::Owned(ServiceSpec::default()),
    }
}

// ---------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------

/// Upstream `SetDefaults_Service` (decode-time defaults; safe on create and update).
pub fn set_object_defaults(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    if s(&spec.session_affinity).is_empty() {
        spec.session_affinity = Some(AFFINITY_NONE.into());
    }
    if s(&spec.session_affinity) == AFFINITY_NONE {
        spec.session_affinity_config = None;
    }
    if s(&spec.session_affinity) == AFFINITY_CLIENT_IP {
        let has_timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .is_some_and(|c| c.timeout_seconds.is_some());
        if !has_timeout {
            spec.session_affinity_config = Some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig { timeout_seconds: Some(DEFAULT_CLIENT_IP_AFFINITY_SECONDS) }),
            });
        }
    }
    if type_of(spec).is_empty() {
        spec.type_ = Some(TYPE_CLUSTER_IP.into());
    }
    for p in spec.ports.iter_mut().flatten() {
        if s(&p.protocol).is_empty() {
            p.protocol = Some("TCP".into());
        }
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(t)) => t.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if externally_accessible(spec) && s(&spec.external_traffic_policy).is_empty() {
        spec.external_traffic_policy = Some(POLICY_CLUSTER.into());
    }
    if spec.internal_traffic_policy.is_none()
        && matches!(type_of(spec), TYPE_NODE_PORT | TYPE_LOAD_BALANCER | TYPE_CLUSTER_IP)
    {
        spec.internal_traffic_policy = Some(POLICY_CLUSTER.into());
    }
    let is_lb = type_of(spec) == TYPE_LOAD_BALANCER;
    if is_lb && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }
    if is_lb {
        let ingress = svc.status.as_mut().and_then(|st| st.load_balancer.as_mut()).and_then(|lb| lb.ingress.as_mut());
        for ing in ingress.into_iter().flatten() {
            if !s(&ing.ip).is_empty() && ing.ip_mode.is_none() {
                ing.ip_mode = Some("VIP".into());
            }
        }
    }
}

/// Create-time defaults: [`set_object_defaults`], then the registry's
/// `normalizeClusterIPs` (a lone `clusterIP` becomes `clusterIPs: [clusterIP]`; a lone
/// `clusterIPs` is left for validation to reject, as upstream) and the single-stack
/// part of `initIPFamilyFields` (`ipFamilyPolicy: SingleStack` — or
/// `RequireDualStack` for a headless Service without selector — and
/// `ipFamilies: [IPv4]`, `[IPv4, IPv6]` for headless without selector). Inputs that
/// `initIPFamilyFields` would reject keep their ipFamilies; [`validate`] reports them.
pub fn set_defaults(svc: &mut Service) {
    set_object_defaults(svc);
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    normalize_cluster_ips(spec, None);
    let families = spec.ip_families.clone();
    if init_ip_family_fields(spec, None).is_err() {
        spec.ip_families = families;
    }
}

/// Upstream `PrepareForCreate`: status is cleared (stored as `status: {loadBalancer: {}}`).
pub fn prepare_for_create(svc: &mut Service) {
    svc.status = Some(empty_status());
}

fn empty_status() -> ServiceStatus {
    ServiceStatus { load_balancer: Some(LoadBalancerStatus::default()), conditions: None }
}

/// Upstream's update preparation, in order: status is kept from `old`
/// (`PrepareForUpdate`), values allocated earlier are patched in when the client
/// omitted them (`patchAllocatedValues`), clusterIP/clusterIPs are synced
/// (`normalizeClusterIPs`), ipFamilyPolicy/ipFamilies are initialised
/// (`initIPFamilyFields`, policy adopted from `old`), and fields the new type does
/// not use are dropped when the client left them unchanged (`dropTypeDependentFields`:
/// clusterIP(s)/ipFamilies/ipFamilyPolicy on a change to ExternalName, nodePorts on a
/// change to ClusterIP/ExternalName, healthCheckNodePort, allocateLoadBalancerNodePorts,
/// loadBalancerClass, externalTrafficPolicy, the load-balancer status).
/// Expects [`set_object_defaults`] to have run on `new`.
pub fn prepare_for_update(new: &mut Service, old: &Service) {
    new.status = old.status.clone();
    let old_spec = spec_or_default(old);
    let spec = new.spec.get_or_insert_with(ServiceSpec::default);
    patch_allocated_values(spec, &old_spec);
    normalize_cluster_ips(spec, Some(&old_spec));
    let families = spec.ip_families.clone();
    if init_ip_family_fields(spec, Some(&old_spec)).is_err() {
        spec.ip_families = families;
    }
    drop_type_dependent_fields(new, &old_spec);
}

/// Upstream `defaultOnReadService` (storage.go), for GET/LIST/watch output: syncs
/// clusterIPs from a lone clusterIP, fills ipFamilies/ipFamilyPolicy of objects
/// stored without them, and hides `internalTrafficPolicy` on ExternalName Services
/// (upstream defaulted it there by mistake and drops it on read).
pub fn default_on_read(svc: &mut Service) {
    let Some(spec) = svc.spec.as_mut() else { return };
    normalize_cluster_ips(spec, None);
    if needs_cluster_ip(spec) && ip_families(spec).is_empty() {
        if s(&spec.cluster_ip) == CLUSTER_IP_NONE {
            if selector_is_empty(spec) {
                spec.ip_family_policy = Some(REQUIRE_DUAL_STACK.into());
                spec.ip_families = Some(vec![IPV4.into(), IPV6.into()]);
            } else {
                spec.ip_family_policy = Some(SINGLE_STACK.into());
                spec.ip_families = Some(vec![IPV4.into()]);
            }
        } else {
            let fams: Vec<String> = cluster_ips(spec).iter().map(|ip| family_of(ip).to_string()).collect();
            match fams.len() {
                1 => spec.ip_family_policy = Some(SINGLE_STACK.into()),
                2 => spec.ip_family_policy = Some(REQUIRE_DUAL_STACK.into()),
                _ => {}
            }
            spec.ip_families = Some(fams);
        }
    }
    if type_of(spec) == TYPE_EXTERNAL_NAME {
        spec.internal_traffic_policy = None;
    }
}

/// Upstream `normalizeClusterIPs` (storage.go).
fn normalize_cluster_ips(spec: &mut ServiceSpec, old: Option<&ServiceSpec>) {
    let Some(old) = old else {
        // Create: a client that only knows the singular field.
        if !s(&spec.cluster_ip).is_empty() && cluster_ips(spec).is_empty() {
            spec.cluster_ips = Some(vec![s(&spec.cluster_ip).to_string()]);
        }
        return;
    };
    // ClusterIPs cleared by an old client that patched some other field.
    if !cluster_ips(old).is_empty() && cluster_ips(spec).is_empty() && s(&old.cluster_ip) == s(&spec.cluster_ip) {
        spec.cluster_ips = old.cluster_ips.clone();
    }
    if s(&old.cluster_ip) != s(&spec.cluster_ip) {
        if !s(&old.cluster_ip).is_empty() && s(&spec.cluster_ip).is_empty() {
            // Clearing it: clear the plural on the client's behalf if it is unchanged.
            if cluster_ips(old) == cluster_ips(spec) {
                spec.cluster_ips = None;
            }
        } else if cluster_ips(old) == cluster_ips(spec) {
            spec.cluster_ips = Some(vec![s(&spec.cluster_ip).to_string()]);
        }
    }
}

/// Upstream `patchAllocatedValues`: keep what was allocated when the client resubmits
/// a manifest without it (so `kubectl replace -f` of the original file works).
fn patch_allocated_values(spec: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && needs_cluster_ip(spec) {
        if s(&spec.cluster_ip).is_empty() {
            spec.cluster_ip = old.cluster_ip.clone();
        }
        if cluster_ips(spec).is_empty() && !cluster_ips(old).is_empty() {
            spec.cluster_ips = old.cluster_ips.clone();
        }
    }
    if needs_node_port(old) && needs_node_port(spec) {
        let used_old: BTreeSet<i32> = ports(old).iter().map(node_port).filter(|&n| n != 0).collect();
        let used_new: BTreeSet<i32> = ports(spec).iter().map(node_port).filter(|&n| n != 0).collect();
        let used: BTreeSet<i32> = used_old.intersection(&used_new).copied().collect();
        let by_name: BTreeMap<&str, i32> = ports(old).iter().map(|p| (s(&p.name), node_port(p))).collect();
        for p in spec.ports.iter_mut().flatten() {
            if node_port(p) == 0 {
                let old_val = by_name.get(s(&p.name)).copied().unwrap_or(0);
                if !used.contains(&old_val) && old_val != 0 {
                    p.node_port = Some(old_val);
                }
            }
        }
    }
    if needs_health_check(old) && needs_health_check(spec) && spec.health_check_node_port.unwrap_or(0) == 0 {
        spec.health_check_node_port = old.health_check_node_port;
    }
}

/// Upstream `dropTypeDependentFields` (strategy.go), update only.
fn drop_type_dependent_fields(new: &mut Service, old: &ServiceSpec) {
    let Some(spec) = new.spec.as_mut() else { return };
    if needs_cluster_ip(old) && !needs_cluster_ip(spec) {
        if s(&old.cluster_ip) == s(&spec.cluster_ip) && cluster_ips(old) == cluster_ips(spec) {
            spec.cluster_ip = None;
            spec.cluster_ips = None;
        }
        if old.ip_families == spec.ip_families {
            spec.ip_families = None;
        }
        if s(&old.ip_family_policy) == s(&spec.ip_family_policy) {
            spec.ip_family_policy = None;
        }
    }
    if needs_node_port(old) && !needs_node_port(spec) {
        let old_ports: BTreeSet<i32> = ports(old).iter().map(node_port).filter(|&n| n != 0).collect();
        let same = ports(spec).iter().map(node_port).filter(|&n| n != 0).all(|n| old_ports.contains(&n));
        if same {
            for p in spec.ports.iter_mut().flatten() {
                p.node_port = None;
            }
        }
    }
    if needs_health_check(old) && !needs_health_check(spec) && old.health_check_node_port == spec.health_check_node_port
    {
        spec.health_check_node_port = None;
    }
    if type_of(old) == TYPE_LOAD_BALANCER && type_of(spec) != TYPE_LOAD_BALANCER {
        if let (Some(n), Some(o)) = (spec.allocate_load_balancer_node_ports, old.allocate_load_balancer_node_ports) {
            if n == o {
                spec.allocate_load_balancer_node_ports = None;
            }
        }
        if old.load_balancer_class == spec.load_balancer_class {
            spec.load_balancer_class = None;
        }
    }
    if externally_accessible(old)
        && !externally_accessible(spec)
        && old.external_traffic_policy == spec.external_traffic_policy
    {
        spec.external_traffic_policy = None;
    }
    let is_lb = type_of(spec) == TYPE_LOAD_BALANCER;
    if !is_lb {
        if let Some(status) = new.status.as_mut() {
            status.load_balancer = Some(LoadBalancerStatus::default());
        }
    }
}

/// Upstream `isMatchingPreferDualStackClusterIPFields`.
fn is_matching_prefer_dual_stack(spec: &ServiceSpec, old: Option<&ServiceSpec>) -> bool {
    let Some(old) = old else { return false };
    s(&spec.ip_family_policy) == PREFER_DUAL_STACK
        && s(&old.ip_family_policy) == PREFER_DUAL_STACK
        && type_of(old) == type_of(spec)
        && matches!(type_of(spec), TYPE_CLUSTER_IP | TYPE_NODE_PORT | TYPE_LOAD_BALANCER)
        && !is_headless(spec)
        && !is_headless(old)
        && cluster_ips(old) == cluster_ips(spec)
        && ip_families(old) == ip_families(spec)
}

/// Upstream `initIPFamilyFields` for a cluster whose only service CIDR is IPv4:
/// defaults ipFamilyPolicy and ipFamilies, or returns the errors upstream returns
/// (before any allocation) as a 422.
fn init_ip_family_fields(spec: &mut ServiceSpec, old: Option<&ServiceSpec>) -> Result<(), Vec<FieldError>> {
    if type_of(spec) == TYPE_EXTERNAL_NAME || is_matching_prefer_dual_stack(spec, old) {
        return Ok(());
    }
    if spec.ip_family_policy.is_none() {
        spec.ip_family_policy = match old.and_then(|o| o.ip_family_policy.clone()) {
            Some(p) => Some(p),
            None if s(&spec.cluster_ip) == CLUSTER_IP_NONE && selector_is_empty(spec) => {
                Some(REQUIRE_DUAL_STACK.into())
            }
            None => Some(SINGLE_STACK.into()),
        };
    }
    let errs = validate_cluster_ips_related_fields(spec);
    if !errs.is_empty() {
        return Err(errs);
    }
    let policy_path = "spec.ipFamilyPolicy";
    let policy = s(&spec.ip_family_policy).to_string();
    let policy_value = opt_value(&spec.ip_family_policy);
    let mut el = Vec::new();
    if let Some(old) = old {
        if policy == SINGLE_STACK {
            if s(&old.cluster_ip) == s(&spec.cluster_ip)
                && cluster_ips(old) == cluster_ips(spec)
                && cluster_ips(spec).len() > 1
            {
                if let Some(v) = spec.cluster_ips.as_mut() {
                    v.truncate(1);
                }
            }
            if old.ip_families == spec.ip_families && ip_families(spec).len() > 1 {
                if let Some(v) = spec.ip_families.as_mut() {
                    v.truncate(1);
                }
            }
        } else {
            if !cluster_ips(spec).is_empty() && cluster_ips(spec).len() < cluster_ips(old).len() {
                el.push(FieldError::invalid(
                    policy_path,
                    policy_value.clone(),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if !ip_families(spec).is_empty() && ip_families(spec).len() < ip_families(old).len() {
                el.push(FieldError::invalid(
                    policy_path,
                    policy_value.clone(),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if policy == SINGLE_STACK {
        if cluster_ips(spec).len() == 2 {
            el.push(FieldError::invalid(
                policy_path,
                policy_value.clone(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if ip_families(spec).len() == 2 {
            el.push(FieldError::invalid(
                policy_path,
                policy_value.clone(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    // Infer ipFamilies[] from clusterIPs[].
    let ips = cluster_ips(spec).to_vec();
    for (i, ip) in ips.iter().enumerate() {
        if ip == CLUSTER_IP_NONE {
            break;
        }
        if i >= ip_families(spec).len() {
            let fam = family_of(ip);
            if fam != IPV4 {
                el.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    list(&ips),
                    format!("{fam} is not configured on this cluster"),
                ));
            } else {
                spec.ip_families.get_or_insert_with(Vec::new).push(fam.to_string());
            }
        }
    }
    if !el.is_empty() {
        return Err(el);
    }
    // Special case: headless + selectorless may be dual-stack even on a single-stack cluster.
    if s(&spec.cluster_ip) == CLUSTER_IP_NONE && selector_is_empty(spec) {
        let fams = spec.ip_families.get_or_insert_with(Vec::new);
        if fams.is_empty() {
            fams.push(IPV4.into());
        }
        if fams.len() < 2 && policy != SINGLE_STACK {
            let other = if fams[0] == IPV4 { IPV6 } else { IPV4 };
            fams.push(other.into());
        }
        return Ok(());
    }
    if policy == REQUIRE_DUAL_STACK {
        el.push(FieldError::invalid(
            policy_path,
            policy_value,
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, fam) in ip_families(spec).iter().enumerate() {
        if fam != IPV4 {
            el.push(FieldError::invalid(
                format!("spec.ipFamilies[{i}]"),
                fam.as_str(),
                "not configured on this cluster",
            ));
        }
    }
    if !el.is_empty() {
        return Err(el);
    }
    if ip_families(spec).is_empty() {
        spec.ip_families = Some(vec![IPV4.into()]);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Create-time validation: the allocation-phase checks that need no allocator state
/// (returned alone if any fail, as upstream allocates before it validates), then
/// upstream `ValidateServiceCreate` (= `ValidateService`).
pub fn validate(svc: &Service, cfg: &ServiceConfig) -> Vec<FieldError> {
    let spec = spec_or_default(svc);
    let pre = pre_allocation_errors(&spec, None, cfg);
    if !pre.is_empty() {
        return pre;
    }
    validate_service(svc)
}

/// Update validation: allocation-phase checks for what the update would newly
/// allocate, then upstream `ValidateServiceUpdate` (metadata immutability, clusterIPs
/// and ipFamilies may not change once set except to/from ExternalName or
/// headless, loadBalancerClass immutable on LoadBalancer, healthCheckNodePort
/// immutable, then `ValidateService` of `new`).
pub fn validate_update(new: &Service, old: &Service, cfg: &ServiceConfig) -> Vec<FieldError> {
    let spec = spec_or_default(new);
    let old_spec = spec_or_default(old);
    let pre = pre_allocation_errors(&spec, Some(&old_spec), cfg);
    if !pre.is_empty() {
        return pre;
    }
    let mut errs = names::validate_object_meta_update(&new.metadata, &old.metadata, "metadata");
    errs.extend(validate_upgrade_downgrade_cluster_ips(&old_spec, &spec));
    errs.extend(validate_upgrade_downgrade_ip_families(&old_spec, &spec));
    errs.extend(validate_load_balancer_class(Some(&old_spec), &spec));
    if needs_health_check(&old_spec)
        && needs_health_check(&spec)
        && old_spec.health_check_node_port != spec.health_check_node_port
    {
        errs.push(FieldError::forbidden("spec.healthCheckNodePort", "field is immutable"));
    }
    errs.extend(validate_service(new));
    errs
}

/// The allocation-phase errors that do not depend on allocator state.
fn pre_allocation_errors(spec: &ServiceSpec, old: Option<&ServiceSpec>, cfg: &ServiceConfig) -> Vec<FieldError> {
    let mut spec = spec.clone();
    if let Err(errs) = init_ip_family_fields(&mut spec, old) {
        return errs;
    }
    let allocating_ips = type_of(&spec) != TYPE_EXTERNAL_NAME
        && !is_headless(&spec)
        && old.is_none_or(|o| type_of(o) == TYPE_EXTERNAL_NAME);
    if allocating_ips {
        let ips = cluster_ips(&spec);
        for (i, fam) in ip_families(&spec).iter().enumerate() {
            let Some(ip) = ips.get(i).filter(|ip| !ip.is_empty()) else { continue };
            if fam != IPV4 {
                continue;
            }
            if let Some(v4) = parse_ipv4(ip) {
                if let Err(e) = IpAllocator::check_in_range(cfg.service_cidr, v4) {
                    return vec![FieldError::invalid(
                        "spec.clusterIPs",
                        list(ips),
                        format!("failed to allocate IP {ip}: {e}"),
                    )];
                }
            }
        }
    }
    if needs_node_port(&spec) {
        let mut op = StaticPorts { range: cfg.node_port_range.clone(), taken: BTreeSet::new() };
        let mut scratch = spec.clone();
        let old_ports: BTreeSet<i32> =
            old.map(|o| ports(o).iter().map(node_port).filter(|&n| n != 0).collect()).unwrap_or_default();
        // Upstream: initNodePorts on create, updateNodePorts on update.
        let res = match old {
            Some(_) => update_node_ports(&mut scratch, &old_ports, &mut op).map(|_| ()),
            None => init_node_ports(&mut scratch, &mut op),
        };
        if let Err(AllocateError::Invalid(errs)) = res {
            return errs;
        }
    }
    Vec::new()
}

/// Upstream `ValidateService`.
pub fn validate_service(svc: &Service) -> Vec<FieldError> {
    let mut errs = names::validate_object_meta(&svc.metadata, true, names::name_is_dns1035_label, "metadata");
    let spec = spec_or_default(svc);
    let spec = spec.as_ref();
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();

    if let (Some(mode), Some(hints)) =
        (annotations.get(ANNOTATION_TOPOLOGY_MODE), annotations.get(ANNOTATION_TOPOLOGY_AWARE_HINTS))
    {
        if mode != hints {
            errs.push(FieldError::invalid(
                format!("metadata.annotations[{ANNOTATION_TOPOLOGY_MODE}]"),
                mode.as_str(),
                format!("must match annotations[{ANNOTATION_TOPOLOGY_AWARE_HINTS}] when both are specified"),
            ));
        }
    }

    let t = type_of(spec);
    if ports(spec).is_empty() && !is_headless(spec) && t != TYPE_EXTERNAL_NAME {
        errs.push(FieldError::required("spec.ports", ""));
    }

    match t {
        TYPE_LOAD_BALANCER if is_headless(spec) => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            CLUSTER_IP_NONE,
            "may not be set to 'None' for LoadBalancer services",
        )),
        TYPE_NODE_PORT if is_headless(spec) => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            CLUSTER_IP_NONE,
            "may not be set to 'None' for NodePort services",
        )),
        TYPE_EXTERNAL_NAME => {
            if !cluster_ips(spec).is_empty() {
                errs.push(FieldError::forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
            }
            if !ip_families(spec).is_empty() {
                errs.push(FieldError::forbidden("spec.ipFamilies", "may not be set for ExternalName services"));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"));
            }
            // The value (a CNAME) may have a trailing dot to denote it as fully qualified.
            let name = s(&spec.external_name);
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                for m in names::is_dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid("spec.externalName", cname, m));
                }
            }
        }
        _ => {}
    }

    let mut all_port_names = BTreeSet::new();
    let multi = ports(spec).len() > 1;
    for (i, p) in ports(spec).iter().enumerate() {
        errs.extend(validate_service_port(p, multi, &mut all_port_names, &format!("spec.ports[{i}]")));
    }

    if let Some(selector) = &spec.selector {
        errs.extend(names::validate_labels(selector, "spec.selector"));
    }

    let affinity = s(&spec.session_affinity);
    if affinity.is_empty() {
        errs.push(FieldError::required("spec.sessionAffinity", ""));
    } else if !SUPPORTED_AFFINITY.contains(&affinity) {
        errs.push(FieldError::not_supported("spec.sessionAffinity", affinity, &SUPPORTED_AFFINITY));
    }
    if affinity == AFFINITY_CLIENT_IP {
        errs.extend(validate_client_ip_affinity_config(spec.session_affinity_config.as_ref()));
    } else if affinity == AFFINITY_NONE && spec.session_affinity_config.is_some() {
        errs.push(FieldError::forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"));
    }

    errs.extend(validate_cluster_ips_related_fields(spec));

    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        let path = format!("spec.externalIPs[{i}]");
        let ip_errs = names::validate_ip(&path, ip);
        if ip_errs.is_empty() {
            errs.extend(validate_non_special_ip(ip, &path));
        } else {
            errs.extend(ip_errs);
        }
    }

    if t.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !SUPPORTED_TYPES.contains(&t) {
        errs.push(FieldError::not_supported("spec.type", t, &SUPPORTED_TYPES));
    }

    if t == TYPE_CLUSTER_IP {
        for (i, p) in ports(spec).iter().enumerate() {
            if node_port(p) != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }

    // Duplicate NodePorts, considering (protocol, nodePort) pairs.
    let mut node_ports = BTreeSet::new();
    for (i, p) in ports(spec).iter().enumerate() {
        let np = node_port(p);
        if np == 0 {
            continue;
        }
        if !node_ports.insert((s(&p.protocol), np)) {
            errs.push(FieldError::duplicate(format!("spec.ports[{i}].nodePort"), np));
        }
    }

    // Duplicate ports, considering (protocol, port) pairs.
    let mut seen_ports = BTreeSet::new();
    for (i, p) in ports(spec).iter().enumerate() {
        if !seen_ports.insert((s(&p.protocol), p.port)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}]"),
                serde_json::json!({ "protocol": s(&p.protocol), "port": p.port }),
            ));
        }
    }

    // loadBalancerSourceRanges (field, or the legacy annotation). Upstream spells the path with a capital L.
    let ranges = spec.load_balancer_source_ranges.as_deref().unwrap_or(&[]);
    if !ranges.is_empty() {
        let path = "spec.LoadBalancerSourceRanges";
        if t != TYPE_LOAD_BALANCER {
            errs.push(FieldError::forbidden(path, "may only be used when `type` is 'LoadBalancer'"));
        }
        for (i, v) in ranges.iter().enumerate() {
            // Due to a historical accident these values may be space-padded.
            errs.extend(names::validate_cidr(&format!("{path}[{i}]"), v.trim()));
        }
    } else if let Some(val) = annotations.get(ANNOTATION_LB_SOURCE_RANGES) {
        let path = format!("metadata.annotations[{ANNOTATION_LB_SOURCE_RANGES}]");
        if t != TYPE_LOAD_BALANCER {
            errs.push(FieldError::forbidden(path.as_str(), "may only be used when `type` is 'LoadBalancer'"));
        }
        let val = val.trim();
        if !val.is_empty() {
            for v in val.split(',') {
                errs.extend(names::validate_cidr(&path, v.trim()));
            }
        }
    }

    if spec.allocate_load_balancer_node_ports.is_some() && t != TYPE_LOAD_BALANCER {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if t == TYPE_LOAD_BALANCER && spec.allocate_load_balancer_node_ports.is_none() {
        // Upstream uses field.NewPath("allocateLoadBalancerNodePorts") here (no "spec.").
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }

    errs.extend(validate_load_balancer_class(None, spec));
    errs.extend(validate_external_traffic_policy(spec));

    match spec.internal_traffic_policy.as_deref() {
        None => {
            if matches!(t, TYPE_NODE_PORT | TYPE_LOAD_BALANCER | TYPE_CLUSTER_IP) {
                errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
            }
        }
        Some(p) if !SUPPORTED_TRAFFIC_POLICIES.contains(&p) => {
            errs.push(FieldError::not_supported("spec.internalTrafficPolicy", p, &SUPPORTED_TRAFFIC_POLICIES));
        }
        Some(_) => {}
    }

    if let Some(td) = spec.traffic_distribution.as_deref() {
        if !SUPPORTED_TRAFFIC_DISTRIBUTION.contains(&td) {
            errs.push(FieldError::not_supported("spec.trafficDistribution", td, &SUPPORTED_TRAFFIC_DISTRIBUTION));
        }
    }
    errs
}

/// Upstream `validateServicePort`.
fn validate_service_port(
    p: &ServicePort,
    require_name: bool,
    all_names: &mut BTreeSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = s(&p.name);
    let name_path = format!("{path}.name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(name_path, ""));
    } else if !name.is_empty() {
        for m in names::is_dns1123_label(name) {
            errs.push(FieldError::invalid(name_path.as_str(), name, m));
        }
        if !all_names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(name_path.as_str(), name));
        }
    }
    for m in names::is_valid_port_num(i64::from(p.port)) {
        errs.push(FieldError::invalid(format!("{path}.port"), p.port, m));
    }
    let protocol = s(&p.protocol);
    if protocol.is_empty() {
        errs.push(FieldError::required(format!("{path}.protocol"), ""));
    } else if !SUPPORTED_PROTOCOLS.contains(&protocol) {
        errs.push(FieldError::not_supported(format!("{path}.protocol"), protocol, &SUPPORTED_PROTOCOLS));
    }
    errs.extend(validate_port_num_or_name(p.target_port.as_ref(), &format!("{path}.targetPort")));
    if let Some(app) = &p.app_protocol {
        for m in names::is_qualified_name(app) {
            errs.push(FieldError::invalid(format!("{path}.appProtocol"), app.as_str(), m));
        }
    }
    errs
}

/// Upstream `ValidatePortNumOrName` (an unset IntOrString is Go's zero value, `0`).
fn validate_port_num_or_name(port: Option<&IntOrString>, path: &str) -> Vec<FieldError> {
    match port {
        None => names::is_valid_port_num(0).into_iter().map(|m| FieldError::invalid(path, 0, m)).collect(),
        Some(IntOrString::Int(n)) => {
            names::is_valid_port_num(i64::from(*n)).into_iter().map(|m| FieldError::invalid(path, *n, m)).collect()
        }
        Some(IntOrString::String(name)) => {
            names::is_valid_port_name(name).into_iter().map(|m| FieldError::invalid(path, name.as_str(), m)).collect()
        }
    }
}

/// Upstream `validateClientIPAffinityConfig` + `validateAffinityTimeout`.
fn validate_client_ip_affinity_config(config: Option<&SessionAffinityConfig>) -> Vec<FieldError> {
    let path = "spec.sessionAffinityConfig";
    let detail = format!("when session affinity type is {AFFINITY_CLIENT_IP}");
    let Some(config) = config else {
        return vec![FieldError::required(path, detail)];
    };
    let Some(client_ip) = &config.client_ip else {
        return vec![FieldError::required(format!("{path}.clientIP"), detail)];
    };
    let Some(timeout) = client_ip.timeout_seconds else {
        return vec![FieldError::required(format!("{path}.clientIP.timeoutSeconds"), detail)];
    };
    if timeout <= 0 || timeout > MAX_CLIENT_IP_AFFINITY_SECONDS {
        return vec![FieldError::invalid(
            format!("{path}.clientIP.timeoutSeconds"),
            timeout,
            format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
        )];
    }
    Vec::new()
}

/// Upstream `ValidateNonSpecialIP` (externalIPs).
fn validate_non_special_ip(ip: &str, path: &str) -> Vec<FieldError> {
    let Some(addr) = names::parse_ip_sloppy(ip) else {
        return vec![FieldError::invalid(path, ip, "must be a valid IP address")];
    };
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let (unspecified, loopback, link_local, ll_multicast) = match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            (a.is_unspecified(), a.is_loopback(), a.is_link_local(), o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(a) => {
            let seg = a.segments();
            (a.is_unspecified(), a.is_loopback(), seg[0] & 0xffc0 == 0xfe80, seg[0] & 0xff0f == 0xff02)
        }
    };
    let mut errs = Vec::new();
    if unspecified {
        errs.push(FieldError::invalid(path, ip, format!("may not be unspecified ({ip})")));
    }
    if loopback {
        errs.push(FieldError::invalid(path, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)"));
    }
    if link_local {
        errs.push(FieldError::invalid(path, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"));
    }
    if ll_multicast {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// Upstream `validateServiceExternalTrafficPolicy`.
fn validate_external_traffic_policy(spec: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let etp = s(&spec.external_traffic_policy);
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !SUPPORTED_TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported("spec.externalTrafficPolicy", etp, &SUPPORTED_TRAFFIC_POLICIES));
    }
    let hc = spec.health_check_node_port.unwrap_or(0);
    if !needs_health_check(spec) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc == 0 {
        errs.push(FieldError::required("spec.healthCheckNodePort", ""));
    } else {
        for m in names::is_valid_port_num(i64::from(hc)) {
            errs.push(FieldError::invalid("spec.healthCheckNodePort", hc, m));
        }
    }
    errs
}

/// Upstream `validateLoadBalancerClassField` (`old` is `None` on create).
fn validate_load_balancer_class(old: Option<&ServiceSpec>, spec: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let is_lb = type_of(spec) == TYPE_LOAD_BALANCER;
    if let Some(old) = old {
        if type_of(old) == TYPE_LOAD_BALANCER && is_lb && old.load_balancer_class != spec.load_balancer_class {
            errs.push(FieldError::invalid(
                "spec.loadBalancerClass",
                opt_value(&spec.load_balancer_class),
                "may not change once set",
            ));
        }
    }
    if is_lb {
        if let Some(class) = &spec.load_balancer_class {
            for m in names::is_qualified_name(class) {
                errs.push(FieldError::invalid("spec.loadBalancerClass", class.as_str(), m));
            }
        }
    } else if spec.load_balancer_class.is_some() {
        errs.push(FieldError::forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"));
    }
    errs
}

/// Upstream `ValidateServiceClusterIPsRelatedFields`.
fn validate_cluster_ips_related_fields(spec: &ServiceSpec) -> Vec<FieldError> {
    if type_of(spec) == TYPE_EXTERNAL_NAME {
        return Vec::new();
    }
    let mut errs = Vec::new();
    let mut has_invalid_ips = false;
    let path = "spec.clusterIPs";
    let ips = cluster_ips(spec);
    // ClusterIP and ClusterIPs must be in sync (see normalize_cluster_ips).
    let cip = s(&spec.cluster_ip);
    if !cip.is_empty() {
        match ips.first() {
            None => errs.push(FieldError::required(path, "")),
            Some(first) if first != cip => {
                errs.push(FieldError::invalid(path, list(ips), "first value must match `clusterIP`"))
            }
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(path, list(ips), "must be empty when `clusterIP` is not specified"));
    }
    let mut seen = BTreeSet::new();
    for (i, fam) in ip_families(spec).iter().enumerate() {
        if !SUPPORTED_IP_FAMILIES.contains(&fam.as_str()) {
            errs.push(FieldError::not_supported(format!("spec.ipFamilies[{i}]"), fam.as_str(), &SUPPORTED_IP_FAMILIES));
        }
        if !seen.insert(fam.as_str()) {
            errs.push(FieldError::duplicate(format!("spec.ipFamilies[{i}]"), fam.as_str()));
        }
    }
    if let Some(policy) = &spec.ip_family_policy {
        if !SUPPORTED_IP_FAMILY_POLICIES.contains(&policy.as_str()) {
            errs.push(FieldError::not_supported("spec.ipFamilyPolicy", policy.as_str(), &SUPPORTED_IP_FAMILY_POLICIES));
        }
    }
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == CLUSTER_IP_NONE {
            if ips.len() > 1 {
                has_invalid_ips = true;
                errs.push(FieldError::invalid(path, list(ips), "'None' must be the first and only value"));
            }
            continue;
        }
        let e = names::validate_ip(&format!("{path}[{i}]"), ip);
        has_invalid_ips |= !e.is_empty();
        errs.extend(e);
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(path, list(ips), "may only hold up to 2 values"));
    }
    if has_invalid_ips {
        return errs;
    }
    if ips.len() > 1 {
        // netutils.IsDualStackIPStrings
        let v6 = ips.iter().filter(|ip| is_ipv6_string(ip)).count();
        if v6 == 0 || v6 == ips.len() {
            errs.push(FieldError::invalid(path, list(ips), "may specify no more than one IP for each IP family"));
        }
    }
    if !is_headless(spec) && !ips.is_empty() && !ip_families(spec).is_empty() {
        for (i, (ip, fam)) in ips.iter().zip(ip_families(spec)).enumerate() {
            if fam == IPV4 && is_ipv6_string(ip) {
                errs.push(FieldError::invalid(
                    format!("{path}[{i}]"),
                    ip.as_str(),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if fam == IPV6 && !is_ipv6_string(ip) {
                errs.push(FieldError::invalid(
                    format!("{path}[{i}]"),
                    ip.as_str(),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

/// Upstream `validateUpgradeDowngradeClusterIPs`.
fn validate_upgrade_downgrade_cluster_ips(old: &ServiceSpec, new: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if type_of(new) == TYPE_EXTERNAL_NAME || type_of(old) == TYPE_EXTERNAL_NAME {
        return errs;
    }
    if is_headless(old) && is_headless(new) {
        return errs;
    }
    let (o, n) = (cluster_ips(old), cluster_ips(new));
    if o.len() == n.len() {
        for (i, ip) in o.iter().enumerate() {
            if Some(ip) != n.get(i) {
                errs.push(FieldError::invalid(format!("spec.clusterIPs[{i}]"), list(n), "may not change once set"));
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(FieldError::invalid("spec.clusterIPs[0]", list(n), "primary clusterIP can not be unset"));
        }
        if let (Some(a), Some(b)) = (o.first(), n.first()) {
            if a != b {
                errs.push(FieldError::invalid("spec.clusterIPs[0]", list(n), "may not change once set"));
            }
        }
        if n.len() == 1 && s(&new.ip_family_policy) != SINGLE_STACK {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                opt_value(&new.ip_family_policy),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if let (Some(a), Some(b)) = (o.first(), n.first()) {
        if a != b {
            errs.push(FieldError::invalid("spec.clusterIPs[0]", list(n), "may not change once set"));
        }
    }
    errs
}

/// Upstream `validateUpgradeDowngradeIPFamilies` (values as upstream passes them,
/// including `clusterIPs` where it does so).
fn validate_upgrade_downgrade_ip_families(old: &ServiceSpec, new: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if type_of(new) == TYPE_EXTERNAL_NAME || type_of(old) == TYPE_EXTERNAL_NAME {
        return errs;
    }
    if is_headless(old) != is_headless(new) || is_headless(new) {
        return errs;
    }
    let (o, n) = (ip_families(old), ip_families(new));
    let path = "spec.ipFamilies[0]";
    if o.len() == n.len() {
        for (i, fam) in o.iter().enumerate() {
            if Some(fam) != n.get(i) {
                errs.push(FieldError::invalid(path, list(n), "may not change once set"));
            }
        }
    } else if o.len() > n.len() {
        if cluster_ips(new).is_empty() {
            errs.push(FieldError::invalid(path, list(n), "primary ipFamily can not be unset"));
        }
        if let (Some(a), Some(b)) = (o.first(), n.first()) {
            if a != b {
                errs.push(FieldError::invalid(path, list(cluster_ips(new)), "may not change once set"));
            }
        }
        if n.len() == 1 && s(&new.ip_family_policy) != SINGLE_STACK {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                opt_value(&new.ip_family_policy),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if let (Some(a), Some(b)) = (o.first(), n.first()) {
        if a != b {
            errs.push(FieldError::invalid(path, list(cluster_ips(new)), "may not change once set"));
        }
    }
    errs
}

// ---------------------------------------------------------------------------
// Allocation
// ---------------------------------------------------------------------------

/// Why an allocation failed: `Invalid` becomes a 422 with these causes
/// (`Service "x" is invalid: ...`), `Internal` a 500 (`Internal error occurred: ...`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AllocateError {
    #[error("{}", crate::field::aggregate(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Internal(String),
}

/// What a Service holds (or an operation newly took) from the allocators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    pub cluster_ips: Vec<Ipv4Addr>,
    pub node_ports: Vec<u16>,
}

impl Allocation {
    /// Gives everything back (rollback, or deletion of the Service).
    pub fn release(&self, ips: &mut IpAllocator, ports: &mut PortAllocator) {
        for ip in &self.cluster_ips {
            ips.release(*ip);
        }
        for p in &self.node_ports {
            ports.release(i64::from(*p));
        }
    }

    fn is_empty(&self) -> bool {
        self.cluster_ips.is_empty() && self.node_ports.is_empty()
    }
}

/// The result of [`allocate_update`]: release `allocated` if the update fails, and
/// `to_release` once it is stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateAllocation {
    pub allocated: Allocation,
    pub to_release: Allocation,
}

/// The resources a stored Service holds (to rebuild allocators at start, or to
/// release on delete): its IPv4 clusterIPs (not for headless/ExternalName), its
/// nodePorts and, for LoadBalancer+Local, its healthCheckNodePort.
pub fn allocated_resources(svc: &Service) -> Allocation {
    let spec = spec_or_default(svc);
    let mut a = Allocation::default();
    if needs_cluster_ip(&spec) && !is_headless(&spec) {
        a.cluster_ips = cluster_ips(&spec).iter().filter_map(|ip| parse_ipv4(ip)).collect();
    }
    let mut ports_set: BTreeSet<u16> =
        ports(&spec).iter().filter_map(|p| u16::try_from(node_port(p)).ok()).filter(|&p| p != 0).collect();
    if needs_health_check(&spec) {
        if let Some(hc) = spec.health_check_node_port.and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0) {
            ports_set.insert(hc);
        }
    }
    a.node_ports = ports_set.into_iter().collect();
    a
}

/// Upstream `releaseAllocatedResources` (after a delete).
pub fn release_all(svc: &Service, ips: &mut IpAllocator, ports: &mut PortAllocator) {
    allocated_resources(svc).release(ips, ports);
}

/// How node ports are taken: from a real allocator, or (for [`validate`]) only checked.
trait NodePortOp {
    fn allocate(&mut self, port: i64) -> Result<(), AllocError>;
    /// `Ok(None)` means "leave it to the real allocation".
    fn allocate_next(&mut self) -> Result<Option<i64>, AllocError>;
}

struct StaticPorts {
    range: RangeInclusive<u16>,
    taken: BTreeSet<i64>,
}

impl NodePortOp for StaticPorts {
    fn allocate(&mut self, port: i64) -> Result<(), AllocError> {
        PortAllocator::check_in_range(&self.range, port)?;
        if self.taken.insert(port) {
            Ok(())
        } else {
            Err(AllocError::PortAlreadyAllocated)
        }
    }
    fn allocate_next(&mut self) -> Result<Option<i64>, AllocError> {
        Ok(None)
    }
}

struct RealPorts<'a> {
    alloc: &'a mut PortAllocator,
    taken: Vec<u16>,
}

impl NodePortOp for RealPorts<'_> {
    fn allocate(&mut self, port: i64) -> Result<(), AllocError> {
        self.alloc.allocate(port)?;
        if let Ok(p) = u16::try_from(port) {
            self.taken.push(p);
        }
        Ok(())
    }
    fn allocate_next(&mut self) -> Result<Option<i64>, AllocError> {
        let p = self.alloc.allocate_next()?;
        self.taken.push(p);
        Ok(Some(i64::from(p)))
    }
}

fn node_port_invalid(i: usize, np: i64, e: AllocError) -> AllocateError {
    AllocateError::Invalid(vec![FieldError::invalid(format!("spec.ports[{i}].nodePort"), np, e.to_string())])
}

/// Upstream `initNodePorts` (create): ports with the same port number share one
/// NodePort (e.g. TCP and UDP 53); user-requested values are reserved.
fn init_node_ports(spec: &mut ServiceSpec, op: &mut dyn NodePortOp) -> Result<(), AllocateError> {
    let allocate_new = should_allocate_node_ports(spec);
    let snapshot: Vec<(i32, i32)> = ports(spec).iter().map(|p| (p.port, node_port(p))).collect();
    let mut by_port: BTreeMap<i32, i64> = BTreeMap::new();
    for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
        let np = i64::from(node_port(p));
        if np == 0 && !allocate_new {
            continue;
        }
        match by_port.get(&p.port).copied() {
            None => {
                let requested =
                    snapshot.iter().find(|(port, n)| *port == p.port && *n != 0).map_or(0, |(_, n)| i64::from(*n));
                if requested != 0 {
                    op.allocate(requested).map_err(|e| node_port_invalid(i, requested, e))?;
                    p.node_port = i32::try_from(requested).ok();
                    by_port.insert(p.port, requested);
                } else {
                    let next = op
                        .allocate_next()
                        .map_err(|e| AllocateError::Internal(format!("failed to allocate a nodePort: {e}")))?;
                    if let Some(next) = next {
                        p.node_port = i32::try_from(next).ok();
                        by_port.insert(p.port, next);
                    }
                }
            }
            Some(allocated) if np != allocated => {
                if np == 0 {
                    p.node_port = i32::try_from(allocated).ok();
                } else {
                    op.allocate(np).map_err(|e| node_port_invalid(i, np, e))?;
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Upstream `updateNodePorts`: returns the old node ports no longer used.
fn update_node_ports(
    spec: &mut ServiceSpec,
    old_ports: &BTreeSet<i32>,
    op: &mut dyn NodePortOp,
) -> Result<Vec<i32>, AllocateError> {
    let allocate_new = should_allocate_node_ports(spec);
    let mut port_allocated = BTreeSet::new();
    let mut new_node_ports: Vec<(String, i64)> = Vec::new();
    for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
        let mut np = i64::from(node_port(p));
        if np == 0 && !allocate_new {
            continue;
        }
        if np != 0 {
            let in_old = i32::try_from(np).is_ok_and(|n| old_ports.contains(&n));
            if !in_old && !port_allocated.contains(&np) {
                op.allocate(np).map_err(|e| node_port_invalid(i, np, e))?;
                port_allocated.insert(np);
            }
        } else {
            match op
                .allocate_next()
                .map_err(|e| AllocateError::Internal(format!("failed to allocate a nodePort: {e}")))?
            {
                Some(next) => {
                    p.node_port = i32::try_from(next).ok();
                    np = next;
                }
                None => continue,
            }
        }
        let key = (s(&p.protocol).to_string(), np);
        if new_node_ports.contains(&key) {
            return Err(AllocateError::Internal(format!("duplicate nodePort: {{{} {}}}", key.0, key.1)));
        }
        new_node_ports.push(key);
    }
    let new_numbers: BTreeSet<i32> = ports(spec).iter().map(node_port).filter(|&n| n != 0).collect();
    Ok(old_ports.iter().copied().filter(|n| !new_numbers.contains(n)).collect())
}

/// Upstream `allocClusterIPs` for the IPv4 family.
fn alloc_cluster_ips(
    spec: &mut ServiceSpec,
    ips: &mut IpAllocator,
    taken: &mut Allocation,
) -> Result<(), AllocateError> {
    if type_of(spec) == TYPE_EXTERNAL_NAME || cluster_ips(spec).first().is_some_and(|ip| ip == CLUSTER_IP_NONE) {
        return Ok(());
    }
    let families = ip_families(spec).to_vec();
    let list_ips = spec.cluster_ips.get_or_insert_with(Vec::new);
    for (i, fam) in families.iter().enumerate() {
        if i >= list_ips.len() {
            list_ips.push(String::new());
        }
        if fam != IPV4 {
            continue; // only reachable for headless Services, handled above
        }
        let requested = list_ips[i].clone();
        let ip = if requested.is_empty() {
            ips.allocate_next().map_err(|e| AllocateError::Internal(format!("failed to allocate a serviceIP: {e}")))?
        } else {
            let invalid = |detail: String| {
                AllocateError::Invalid(vec![FieldError::invalid("spec.clusterIPs", list(list_ips), detail)])
            };
            let Some(v4) = parse_ipv4(&requested) else {
                return Err(invalid(format!("failed to allocate IP {requested}: must be a valid IP address")));
            };
            ips.allocate(v4).map_err(|e| invalid(format!("failed to allocate IP {requested}: {e}")))?;
            v4
        };
        taken.cluster_ips.push(ip);
        list_ips[i] = ip.to_string();
        if i == 0 {
            spec.cluster_ip = Some(ip.to_string());
        }
    }
    Ok(())
}

/// Upstream `allocHealthCheckNodePort`.
fn alloc_health_check_node_port(spec: &mut ServiceSpec, op: &mut RealPorts<'_>) -> Result<(), AllocateError> {
    let hc = spec.health_check_node_port.unwrap_or(0);
    if hc != 0 {
        op.allocate(i64::from(hc)).map_err(|e| {
            AllocateError::Internal(format!("failed to allocate requested HealthCheck NodePort {hc}: {e}"))
        })?;
    } else {
        let next = op
            .allocate_next()
            .map_err(|e| AllocateError::Internal(format!("failed to allocate a HealthCheck NodePort 0: {e}")))?;
        spec.health_check_node_port = next.and_then(|n| i32::try_from(n).ok());
    }
    Ok(())
}

/// Upstream `allocateCreate`: initialises the ipFamily fields, allocates the
/// clusterIP (random, or the requested one), the nodePorts and the healthCheckNodePort,
/// writing them into `svc`. On error nothing stays allocated. Run after
/// [`set_defaults`]; the caller releases the returned [`Allocation`] if the create
/// fails later.
pub fn allocate_create(
    svc: &mut Service,
    ips: &mut IpAllocator,
    ports: &mut PortAllocator,
) -> Result<Allocation, AllocateError> {
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    init_ip_family_fields(spec, None).map_err(AllocateError::Invalid)?;
    let mut taken = Allocation::default();
    let res = (|| -> Result<(), AllocateError> {
        alloc_cluster_ips(spec, ips, &mut taken)?;
        let mut op = RealPorts { alloc: ports, taken: Vec::new() };
        let r = (|| -> Result<(), AllocateError> {
            if needs_node_port(spec) {
                init_node_ports(spec, &mut op)?;
            }
            if needs_health_check(spec) {
                alloc_health_check_node_port(spec, &mut op)?;
            }
            Ok(())
        })();
        taken.node_ports.append(&mut op.taken);
        r
    })();
    match res {
        Ok(()) => Ok(taken),
        Err(e) => {
            taken.release(ips, ports);
            Err(e)
        }
    }
}

/// Upstream `allocateUpdate` for a single-stack cluster: allocates a clusterIP when
/// the type changes from ExternalName, releases it (on commit) when it changes to
/// ExternalName, allocates new nodePorts and releases unused ones, and handles the
/// healthCheckNodePort on `externalTrafficPolicy` changes. Run after
/// [`prepare_for_update`]. On error nothing stays allocated.
pub fn allocate_update(
    new: &mut Service,
    old: &Service,
    ips: &mut IpAllocator,
    ports: &mut PortAllocator,
) -> Result<UpdateAllocation, AllocateError> {
    let old_spec = spec_or_default(old);
    let spec = new.spec.get_or_insert_with(ServiceSpec::default);
    init_ip_family_fields(spec, Some(&old_spec)).map_err(AllocateError::Invalid)?;
    let mut out = UpdateAllocation::default();
    let res = (|| -> Result<(), AllocateError> {
        if !is_matching_prefer_dual_stack(spec, Some(&old_spec)) {
            let (ot, nt) = (type_of(&old_spec), type_of(spec));
            if ot == TYPE_EXTERNAL_NAME && nt != TYPE_EXTERNAL_NAME {
                alloc_cluster_ips(spec, ips, &mut out.allocated)?;
            } else if !is_headless(&old_spec) && ot != TYPE_EXTERNAL_NAME && nt == TYPE_EXTERNAL_NAME {
                out.to_release.cluster_ips = cluster_ips(&old_spec).iter().filter_map(|ip| parse_ipv4(ip)).collect();
            }
        }
        let mut op = RealPorts { alloc: ports, taken: Vec::new() };
        let r = (|| -> Result<(), AllocateError> {
            let old_ports: BTreeSet<i32> = ports_of(&old_spec);
            if needs_node_port(&old_spec) && matches!(type_of(spec), TYPE_EXTERNAL_NAME | TYPE_CLUSTER_IP) {
                out.to_release.node_ports.extend(old_ports.iter().filter_map(|&p| u16::try_from(p).ok()));
            }
            if needs_node_port(spec) {
                let unused = update_node_ports(spec, &old_ports, &mut op)?;
                out.to_release.node_ports.extend(unused.into_iter().filter_map(|p| u16::try_from(p).ok()));
            }
            match (needs_health_check(&old_spec), needs_health_check(spec)) {
                (false, true) => alloc_health_check_node_port(spec, &mut op)?,
                (true, false) => {
                    if let Some(hc) =
                        old_spec.health_check_node_port.and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0)
                    {
                        out.to_release.node_ports.push(hc);
                    }
                }
                _ => {}
            }
            Ok(())
        })();
        out.allocated.node_ports.append(&mut op.taken);
        r
    })();
    out.to_release.node_ports.sort_unstable();
    out.to_release.node_ports.dedup();
    match res {
        Ok(()) => Ok(out),
        Err(e) => {
            if !out.allocated.is_empty() {
                out.allocated.release(ips, ports);
            }
            Err(e)
        }
    }
}

fn ports_of(spec: &ServiceSpec) -> BTreeSet<i32> {
    ports(spec).iter().map(node_port).filter(|&n| n != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> ServiceConfig {
        ServiceConfig::default()
    }

    fn from_json(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("test manifest")
    }

    fn strings(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    /// The lesson's `mynapp-svc.yml`, as the server sees it (namespace from the URL).
    fn mynapp_svc() -> Service {
        from_json(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "mynapp-svc", "namespace": "default"},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "mynapp-rs"}}
        }))
    }

    fn defaulted(mut svc: Service) -> Service {
        set_defaults(&mut svc);
        svc
    }

    fn spec_mut(svc: &mut Service) -> &mut ServiceSpec {
        svc.spec.get_or_insert_with(ServiceSpec::default)
    }

    /// Validates `mynapp-svc` after defaulting and then `mutate`.
    fn check(mutate: impl FnOnce(&mut Service), expected: &[&str]) {
        let mut svc = defaulted(mynapp_svc());
        mutate(&mut svc);
        assert_eq!(strings(&validate(&svc, &cfg())), expected);
    }

    /// Defaults `mynapp-svc` with `mutate` applied *before* defaulting, then validates.
    fn check_raw(mutate: impl FnOnce(&mut Service), expected: &[&str]) {
        let mut svc = mynapp_svc();
        mutate(&mut svc);
        set_defaults(&mut svc);
        assert_eq!(strings(&validate(&svc, &cfg())), expected);
    }

    fn port(name: &str, port: i32, target: i32) -> ServicePort {
        ServicePort {
            name: (!name.is_empty()).then(|| name.to_string()),
            port,
            target_port: Some(IntOrString::Int(target)),
            ..Default::default()
        }
    }

    const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

    // ----- defaults: the lesson's manifests become what a real cluster stores -----

    fn create(manifest: serde_json::Value, seed: u64) -> (Service, IpAllocator, PortAllocator) {
        let mut svc = from_json(manifest);
        svc.metadata.namespace = Some("default".into());
        set_defaults(&mut svc);
        prepare_for_create(&mut svc);
        let mut ips = IpAllocator::with_seed(cfg().service_cidr, seed);
        let mut ports = PortAllocator::with_seed(cfg().node_port_range, seed);
        allocate_create(&mut svc, &mut ips, &mut ports).expect("allocation");
        assert_eq!(strings(&validate(&svc, &cfg())), Vec::<String>::new());
        (svc, ips, ports)
    }

    fn cluster_ip_of(svc: &Service) -> String {
        svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()).expect("clusterIP")
    }

    #[test]
    fn lesson_cluster_ip_service() {
        let (svc, ips, _) = create(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc"},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "mynapp-rs"}}}),
            1,
        );
        let ip = cluster_ip_of(&svc);
        let addr: Ipv4Addr = ip.parse().unwrap();
        assert!(ips.is_allocated(addr));
        // Dynamic allocation stays out of the static block 10.96.0.1-10.96.1.0.
        assert!(u32::from(addr) > u32::from(Ipv4Addr::new(10, 96, 1, 0)), "{ip}");
        assert_eq!(
            serde_json::to_value(&svc).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "mynapp-svc", "namespace": "default"},
                "spec": {
                    "clusterIP": ip, "clusterIPs": [ip],
                    "internalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                    "selector": {"app": "mynapp-rs"},
                    "sessionAffinity": "None", "type": "ClusterIP"
                },
                "status": {"loadBalancer": {}}
            })
        );
    }

    #[test]
    fn lesson_session_affinity_and_multiport() {
        let (svc, _, _) = create(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-ses-aff"},
                "spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80, "targetPort": 8080}],
                    "selector": {"app": "mynapp-rs"}}}),
            2,
        );
        let v = serde_json::to_value(&svc).unwrap();
        assert_eq!(v["spec"]["sessionAffinity"], "ClientIP");
        assert_eq!(v["spec"]["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 10800}}));

        let (svc, _, _) = create(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-mp"},
                "spec": {"ports": [{"name": "mynapp-http", "port": 80, "targetPort": 8080},
                                   {"name": "mynapp-https", "port": 443, "targetPort": 8443}],
                    "selector": {"app": "mynapp-rs"}}}),
            3,
        );
        assert_eq!(
            serde_json::to_value(&svc).unwrap()["spec"]["ports"],
            json!([{"name": "mynapp-http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                   {"name": "mynapp-https", "port": 443, "protocol": "TCP", "targetPort": 8443}])
        );
    }

    #[test]
    fn lesson_node_port_and_load_balancer() {
        let (svc, _, ports) = create(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-ext-np"},
                "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 31111}],
                    "selector": {"app": "mynapp-rs"}}}),
            4,
        );
        assert!(ports.is_allocated(31111));
        let ip = cluster_ip_of(&svc);
        assert_eq!(
            serde_json::to_value(&svc).unwrap()["spec"],
            json!({
                "clusterIP": ip, "clusterIPs": [ip],
                "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "ports": [{"nodePort": 31111, "port": 80, "protocol": "TCP", "targetPort": 8080}],
                "selector": {"app": "mynapp-rs"},
                "sessionAffinity": "None", "type": "NodePort"
            })
        );

        let (svc, _, ports) = create(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-ext-lb"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080}],
                    "selector": {"app": "mynapp-rs"}}}),
            5,
        );
        let ip = cluster_ip_of(&svc);
        let np = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p[0].node_port).unwrap();
        assert!((30086..=32767).contains(&np), "{np}");
        assert!(ports.is_allocated(i64::from(np)));
        assert_eq!(
            serde_json::to_value(&svc).unwrap()["spec"],
            json!({
                "allocateLoadBalancerNodePorts": true,
                "clusterIP": ip, "clusterIPs": [ip],
                "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "ports": [{"nodePort": np, "port": 80, "protocol": "TCP", "targetPort": 8080}],
                "selector": {"app": "mynapp-rs"},
                "sessionAffinity": "None", "type": "LoadBalancer"
            })
        );
    }

    #[test]
    fn lesson_external_name() {
        let (svc, ips, ports) = create(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mynapp-svc-extname-gl"},
                "spec": {"type": "ExternalName", "externalName": "www.google.com"}}),
            6,
        );
        assert_eq!(ips.used_count(), 0);
        assert_eq!(ports.used_count(), 0);
        assert_eq!(
            serde_json::to_value(&svc).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "mynapp-svc-extname-gl", "namespace": "default"},
                "spec": {"externalName": "www.google.com", "sessionAffinity": "None", "type": "ExternalName"},
                "status": {"loadBalancer": {}}
            })
        );
    }

    #[test]
    fn defaults_headless_and_explicit_values() {
        // Headless with selector: single stack.
        let mut svc = mynapp_svc();
        spec_mut(&mut svc).cluster_ip = Some("None".into());
        set_defaults(&mut svc);
        let spec = svc.spec.clone().unwrap();
        assert_eq!(spec.cluster_ips, Some(vec!["None".to_string()]));
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
        assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
        assert!(validate(&svc, &cfg()).is_empty());

        // Headless without selector: RequireDualStack [IPv4, IPv6], even on a single-stack cluster.
        let mut svc = mynapp_svc();
        spec_mut(&mut svc).cluster_ip = Some("None".into());
        spec_mut(&mut svc).selector = None;
        set_defaults(&mut svc);
        let spec = svc.spec.clone().unwrap();
        assert_eq!(spec.ip_family_policy.as_deref(), Some("RequireDualStack"));
        assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string(), "IPv6".to_string()]));
        assert!(validate(&svc, &cfg()).is_empty());

        // Requested clusterIP: clusterIPs follows; named targetPort and ClientIP timeout are kept.
        let mut svc = mynapp_svc();
        let spec = spec_mut(&mut svc);
        spec.cluster_ip = Some("10.96.0.10".into());
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config =
            Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(60) }) });
        spec.ports = Some(vec![ServicePort {
            port: 53,
            protocol: Some("UDP".into()),
            target_port: Some(IntOrString::String("dns".into())),
            ..Default::default()
        }]);
        set_defaults(&mut svc);
        let spec = svc.spec.clone().unwrap();
        assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.10".to_string()]));
        assert_eq!(spec.session_affinity_config.unwrap().client_ip.unwrap().timeout_seconds, Some(60));
        let p = &spec.ports.unwrap()[0];
        assert_eq!(p.protocol.as_deref(), Some("UDP"));
        assert_eq!(p.target_port, Some(IntOrString::String("dns".into())));

        // targetPort 0 / "" are defaulted to port; None clears sessionAffinityConfig.
        let mut svc = mynapp_svc();
        let spec = spec_mut(&mut svc);
        spec.ports = Some(vec![port("", 80, 0)]);
        spec.session_affinity_config =
            Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(60) }) });
        set_defaults(&mut svc);
        let spec = svc.spec.clone().unwrap();
        assert_eq!(spec.ports.unwrap()[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(spec.session_affinity_config, None);

        // ClusterIP with externalIPs is externally accessible: externalTrafficPolicy defaulted.
        let mut svc = mynapp_svc();
        spec_mut(&mut svc).external_ips = Some(vec!["192.168.122.10".into()]);
        set_defaults(&mut svc);
        assert_eq!(svc.spec.unwrap().external_traffic_policy.as_deref(), Some("Cluster"));
    }

    #[test]
    fn default_on_read_hides_itp_for_external_name() {
        let mut svc = from_json(json!({"metadata": {"name": "x"},
            "spec": {"type": "ExternalName", "externalName": "a.b", "internalTrafficPolicy": "Cluster"}}));
        default_on_read(&mut svc);
        assert_eq!(svc.spec.unwrap().internal_traffic_policy, None);
        let mut svc = from_json(json!({"metadata": {"name": "x"}, "spec": {"clusterIP": "10.96.0.7"}}));
        default_on_read(&mut svc);
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.7".to_string()]));
        assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    }

    // ----- validation: ports -----

    #[test]
    fn multi_port_needs_names() {
        check_raw(
            |s| spec_mut(s).ports = Some(vec![port("", 80, 8080), port("", 443, 8443)]),
            &["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"],
        );
        check_raw(
            |s| spec_mut(s).ports = Some(vec![port("http", 80, 8080), port("", 443, 8443)]),
            &["spec.ports[1].name: Required value"],
        );
        // A single port may be unnamed.
        check_raw(|s| spec_mut(s).ports = Some(vec![port("", 80, 8080)]), &[]);
    }

    #[test]
    fn port_names_unique_and_dns_labels() {
        check_raw(
            |s| spec_mut(s).ports = Some(vec![port("x", 80, 8080), port("x", 443, 8443)]),
            &["spec.ports[1].name: Duplicate value: \"x\""],
        );
        let http_upper = format!("spec.ports[0].name: Invalid value: \"HTTP\": {LABEL_MSG}");
        check_raw(|s| spec_mut(s).ports = Some(vec![port("HTTP", 80, 8080)]), &[http_upper.as_str()]);
        check_raw(
            |s| spec_mut(s).ports = Some(vec![port("a.b", 80, 8080)]),
            &["spec.ports[0].name: Invalid value: \"a.b\": must not contain dots"],
        );
    }

    #[test]
    fn port_numbers() {
        check_raw(
            |s| spec_mut(s).ports = Some(vec![port("", 0, 8080)]),
            &["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"],
        );
        check_raw(
            |s| spec_mut(s).ports = Some(vec![port("", 65536, 8080)]),
            &["spec.ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive"],
        );
        // targetPort defaults to port, so a bad port is reported twice, as upstream does.
        check_raw(
            |s| spec_mut(s).ports = Some(vec![ServicePort { port: 70000, ..Default::default() }]),
            &[
                "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ],
        );
        check_raw(
            |s| spec_mut(s).ports = Some(vec![port("", 80, 65536)]),
            &["spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and 65535, inclusive"],
        );
        check(|s| spec_mut(s).ports = None, &["spec.ports: Required value"]);
    }

    #[test]
    fn target_port_names() {
        let named = |name: &str| {
            let name = name.to_string();
            move |s: &mut Service| {
                spec_mut(s).ports = Some(vec![ServicePort {
                    port: 80,
                    target_port: Some(IntOrString::String(name)),
                    ..Default::default()
                }])
            }
        };
        check_raw(named("http-alt"), &[]);
        check_raw(
            named("-bad"),
            &["spec.ports[0].targetPort: Invalid value: \"-bad\": must not begin or end with a hyphen"],
        );
        check_raw(
            named("1234"),
            &["spec.ports[0].targetPort: Invalid value: \"1234\": must contain at least one letter (a-z)"],
        );
        check_raw(
            named("a-very-long-port-name"),
            &["spec.ports[0].targetPort: Invalid value: \"a-very-long-port-name\": must be no more than 15 characters"],
        );
    }

    #[test]
    fn protocols() {
        check(
            |s| spec_mut(s).ports.as_mut().unwrap()[0].protocol = Some("HTTP".into()),
            &["spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""],
        );
        check(|s| spec_mut(s).ports.as_mut().unwrap()[0].protocol = None, &["spec.ports[0].protocol: Required value"]);
        for ok in ["TCP", "UDP", "SCTP"] {
            check(|s| spec_mut(s).ports.as_mut().unwrap()[0].protocol = Some(ok.into()), &[]);
        }
    }

    #[test]
    fn app_protocol() {
        check(|s| spec_mut(s).ports.as_mut().unwrap()[0].app_protocol = Some("kubernetes.io/h2c".into()), &[]);
        check(
            |s| spec_mut(s).ports.as_mut().unwrap()[0].app_protocol = Some("a/b/c".into()),
            &["spec.ports[0].appProtocol: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"],
        );
    }

    #[test]
    fn duplicate_ports_and_node_ports() {
        check_raw(
            |s| spec_mut(s).ports = Some(vec![port("a", 80, 8080), port("b", 80, 8081)]),
            &["spec.ports[1]: Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}"],
        );
        // Same port, different protocols: fine.
        check_raw(
            |s| {
                let mut udp = port("b", 80, 8080);
                udp.protocol = Some("UDP".into());
                spec_mut(s).ports = Some(vec![port("a", 80, 8080), udp]);
            },
            &[],
        );
        check_raw(
            |s| {
                let spec = spec_mut(s);
                spec.type_ = Some("NodePort".into());
                let mut a = port("a", 80, 8080);
                a.node_port = Some(31000);
                let mut b = port("b", 81, 8081);
                b.node_port = Some(31000);
                spec.ports = Some(vec![a, b]);
            },
            // Allocation would take 31000 twice: upstream's allocator reports it first.
            &["spec.ports[1].nodePort: Invalid value: 31000: provided port is already allocated"],
        );
        // Validation alone (as after allocation) reports the duplicate pair.
        let mut svc = mynapp_svc();
        let spec = spec_mut(&mut svc);
        spec.type_ = Some("NodePort".into());
        let mut a = port("a", 80, 8080);
        a.node_port = Some(31000);
        let mut b = port("b", 81, 8081);
        b.node_port = Some(31000);
        spec.ports = Some(vec![a, b]);
        set_defaults(&mut svc);
        assert_eq!(strings(&validate_service(&svc)), vec!["spec.ports[1].nodePort: Duplicate value: 31000"]);
    }

    // ----- validation: node ports and the service CIDR (allocation-phase checks) -----

    #[test]
    fn node_port_range_and_type() {
        let with_node_port = |t: &'static str, np: i32| {
            move |s: &mut Service| {
                let spec = spec_mut(s);
                spec.type_ = Some(t.into());
                spec.ports.as_mut().unwrap()[0].node_port = Some(np);
            }
        };
        check_raw(
            with_node_port("NodePort", 29999),
            &["spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767"],
        );
        check_raw(
            with_node_port("LoadBalancer", 32768),
            &["spec.ports[0].nodePort: Invalid value: 32768: provided port is not in the valid range. The range of valid ports is 30000-32767"],
        );
        check_raw(with_node_port("NodePort", 30000), &[]);
        check_raw(with_node_port("NodePort", 32767), &[]);
        check_raw(
            with_node_port("ClusterIP", 31111),
            &["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        );
    }

    #[test]
    fn cluster_ip_values() {
        let with_ip = |ip: &'static str| move |s: &mut Service| spec_mut(s).cluster_ip = Some(ip.into());
        check_raw(with_ip("10.96.0.10"), &[]);
        check_raw(with_ip("None"), &[]);
        check_raw(
            with_ip("bogus"),
            &["spec.clusterIPs[0]: Invalid value: \"bogus\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"],
        );
        check_raw(
            with_ip("1.2.3.4"),
            &["spec.clusterIPs: Invalid value: [\"1.2.3.4\"]: failed to allocate IP 1.2.3.4: the provided IP (1.2.3.4) is not in the valid range. The range of valid IPs is 10.96.0.0/12"],
        );
        check_raw(
            with_ip("10.96.0.0"),
            &["spec.clusterIPs: Invalid value: [\"10.96.0.0\"]: failed to allocate IP 10.96.0.0: the provided IP (10.96.0.0) is not in the valid range. The range of valid IPs is 10.96.0.0/12"],
        );
        check_raw(
            with_ip("2001:db8::1"),
            &["spec.clusterIPs[0]: Invalid value: [\"2001:db8::1\"]: IPv6 is not configured on this cluster"],
        );
        check_raw(
            |s| spec_mut(s).cluster_ips = Some(vec!["10.96.0.5".into()]),
            &["spec.clusterIPs: Invalid value: [\"10.96.0.5\"]: must be empty when `clusterIP` is not specified"],
        );
        check_raw(
            |s| {
                spec_mut(s).cluster_ip = Some("10.96.0.5".into());
                spec_mut(s).cluster_ips = Some(vec!["10.96.0.6".into()]);
            },
            &["spec.clusterIPs: Invalid value: [\"10.96.0.6\"]: first value must match `clusterIP`"],
        );
        check_raw(
            |s| {
                spec_mut(s).cluster_ip = Some("None".into());
                spec_mut(s).cluster_ips = Some(vec!["None".into(), "10.96.0.6".into()]);
            },
            &["spec.clusterIPs: Invalid value: [\"None\",\"10.96.0.6\"]: 'None' must be the first and only value"],
        );
        check_raw(
            |s| {
                spec_mut(s).cluster_ip = Some("10.96.0.5".into());
                spec_mut(s).cluster_ips = Some(vec!["10.96.0.5".into(), "10.96.0.6".into()]);
            },
            &["spec.clusterIPs: Invalid value: [\"10.96.0.5\",\"10.96.0.6\"]: may specify no more than one IP for each IP family"],
        );
        check_raw(
            |s| {
                spec_mut(s).cluster_ip = Some("None".into());
                spec_mut(s).type_ = Some("NodePort".into());
            },
            &["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"],
        );
        check_raw(
            |s| {
                spec_mut(s).cluster_ip = Some("None".into());
                spec_mut(s).type_ = Some("LoadBalancer".into());
            },
            &["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services"],
        );
        // Headless Services need no ports.
        check_raw(
            |s| {
                spec_mut(s).cluster_ip = Some("None".into());
                spec_mut(s).ports = None;
            },
            &[],
        );
    }

    #[test]
    fn ip_families_and_policy() {
        check_raw(
            |s| spec_mut(s).ip_family_policy = Some("RequireDualStack".into()),
            &["spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"],
        );
        check_raw(|s| spec_mut(s).ip_family_policy = Some("PreferDualStack".into()), &[]);
        check_raw(
            |s| spec_mut(s).ip_families = Some(vec!["IPv6".into()]),
            &["spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"],
        );
        check_raw(
            |s| spec_mut(s).ip_families = Some(vec!["IPv5".into()]),
            &["spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\""],
        );
        check_raw(
            |s| spec_mut(s).ip_family_policy = Some("Both".into()),
            &["spec.ipFamilyPolicy: Unsupported value: \"Both\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""],
        );
        check_raw(
            |s| spec_mut(s).ip_families = Some(vec!["IPv4".into(), "IPv6".into()]),
            &["spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"],
        );
        check_raw(
            |s| {
                spec_mut(s).cluster_ip = Some("10.96.0.5".into());
                spec_mut(s).ip_families = Some(vec!["IPv6".into()]);
                spec_mut(s).ip_family_policy = Some("SingleStack".into());
            },
            &["spec.clusterIPs[0]: Invalid value: \"10.96.0.5\": expected an IPv6 value as indicated by `ipFamilies[0]`"],
        );
    }

    // ----- validation: session affinity -----

    #[test]
    fn session_affinity() {
        check(
            |s| spec_mut(s).session_affinity = Some("Sticky".into()),
            &["spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""],
        );
        check(|s| spec_mut(s).session_affinity = None, &["spec.sessionAffinity: Required value"]);
        let timeout = |t: i32| {
            move |s: &mut Service| {
                spec_mut(s).session_affinity = Some("ClientIP".into());
                spec_mut(s).session_affinity_config =
                    Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(t) }) });
            }
        };
        check_raw(timeout(1), &[]);
        check_raw(timeout(86400), &[]);
        check_raw(
            timeout(0),
            &["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"],
        );
        check_raw(
            timeout(86401),
            &["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400"],
        );
        check(
            |s| {
                spec_mut(s).session_affinity = Some("ClientIP".into());
                spec_mut(s).session_affinity_config = None;
            },
            &["spec.sessionAffinityConfig: Required value: when session affinity type is ClientIP"],
        );
        check(
            |s| {
                spec_mut(s).session_affinity = Some("ClientIP".into());
                spec_mut(s).session_affinity_config = Some(SessionAffinityConfig { client_ip: None });
            },
            &["spec.sessionAffinityConfig.clientIP: Required value: when session affinity type is ClientIP"],
        );
        check(
            |s| {
                spec_mut(s).session_affinity_config =
                    Some(SessionAffinityConfig { client_ip: Some(ClientIPConfig { timeout_seconds: Some(10) }) })
            },
            &["spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"],
        );
    }

    // ----- validation: ExternalName -----

    fn external_name(name: &str) -> Service {
        from_json(json!({"metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": name}}))
    }

    #[test]
    fn external_name_rules() {
        for ok in ["www.google.com", "www.google.com.", "localhost", "a-b.c"] {
            assert!(validate(&defaulted(external_name(ok)), &cfg()).is_empty(), "{ok}");
        }
        assert_eq!(
            strings(&validate(&defaulted(external_name("")), &cfg())),
            vec!["spec.externalName: Required value"]
        );
        assert_eq!(
            strings(&validate(&defaulted(external_name(".")), &cfg())),
            vec!["spec.externalName: Required value"]
        );
        assert_eq!(
            strings(&validate(&defaulted(external_name("www.google.com..")), &cfg())),
            vec!["spec.externalName: Invalid value: \"www.google.com.\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
        );
        assert_eq!(strings(&validate(&defaulted(external_name("Bad_Name")), &cfg())).len(), 1);
        let mut svc = external_name("www.google.com");
        spec_mut(&mut svc).cluster_ip = Some("10.96.0.5".into());
        assert_eq!(
            strings(&validate(&defaulted(svc), &cfg())),
            vec!["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]
        );
        let mut svc = defaulted(external_name("www.google.com"));
        spec_mut(&mut svc).ip_families = Some(vec!["IPv4".into()]);
        spec_mut(&mut svc).ip_family_policy = Some("SingleStack".into());
        assert_eq!(
            strings(&validate(&svc, &cfg())),
            vec![
                "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
                "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services",
            ]
        );
        // An ExternalName Service may carry ports (they are only documentation).
        let mut svc = external_name("www.google.com");
        spec_mut(&mut svc).ports = Some(vec![port("", 80, 80)]);
        assert!(validate(&defaulted(svc), &cfg()).is_empty());
    }

    // ----- validation: selector, traffic policies, LB fields, externalIPs, metadata -----

    #[test]
    fn selector_labels() {
        check(
            |s| spec_mut(s).selector = Some(BTreeMap::from([("app".into(), "my app".into())])),
            &["spec.selector: Invalid value: \"my app\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"],
        );
        check(
            |s| spec_mut(s).selector = Some(BTreeMap::from([("-app".into(), "x".into())])),
            &["spec.selector: Invalid value: \"-app\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"],
        );
        check(|s| spec_mut(s).selector = None, &[]);
    }

    #[test]
    fn traffic_policies() {
        check(
            |s| spec_mut(s).external_traffic_policy = Some("Local".into()),
            &["spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services"],
        );
        check_raw(
            |s| {
                spec_mut(s).type_ = Some("NodePort".into());
                spec_mut(s).external_traffic_policy = Some("Nowhere".into());
            },
            &["spec.externalTrafficPolicy: Unsupported value: \"Nowhere\": supported values: \"Cluster\", \"Local\""],
        );
        check(
            |s| spec_mut(s).internal_traffic_policy = Some("Nowhere".into()),
            &["spec.internalTrafficPolicy: Unsupported value: \"Nowhere\": supported values: \"Cluster\", \"Local\""],
        );
        check(|s| spec_mut(s).internal_traffic_policy = None, &["spec.internalTrafficPolicy: Required value"]);
        check(
            |s| spec_mut(s).health_check_node_port = Some(31000),
            &["spec.healthCheckNodePort: Invalid value: 31000: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"],
        );
        check(
            |s| spec_mut(s).traffic_distribution = Some("Anywhere".into()),
            &["spec.trafficDistribution: Unsupported value: \"Anywhere\": supported values: \"PreferClose\""],
        );
        check(|s| spec_mut(s).traffic_distribution = Some("PreferClose".into()), &[]);
    }

    #[test]
    fn load_balancer_fields() {
        check(
            |s| spec_mut(s).load_balancer_source_ranges = Some(vec!["10.0.0.0/8".into()]),
            &["spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"],
        );
        check_raw(
            |s| {
                spec_mut(s).type_ = Some("LoadBalancer".into());
                spec_mut(s).load_balancer_source_ranges = Some(vec![" 10.0.0.0/8 ".into(), "10.0.0.1".into()]);
            },
            &["spec.LoadBalancerSourceRanges[1]: Invalid value: \"10.0.0.1\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"],
        );
        check(
            |s| {
                s.metadata.annotations =
                    Some(BTreeMap::from([(ANNOTATION_LB_SOURCE_RANGES.to_string(), "10.0.0.0/8, bad".to_string())]))
            },
            &[
                "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Forbidden: may only be used when `type` is 'LoadBalancer'",
                "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Invalid value: \"bad\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ],
        );
        check(
            |s| spec_mut(s).allocate_load_balancer_node_ports = Some(true),
            &["spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"],
        );
        check(
            |s| {
                spec_mut(s).type_ = Some("LoadBalancer".into());
                spec_mut(s).external_traffic_policy = Some("Cluster".into());
            },
            &["allocateLoadBalancerNodePorts: Required value"],
        );
        check(
            |s| spec_mut(s).load_balancer_class = Some("example.com/lb".into()),
            &["spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"],
        );
        check_raw(
            |s| {
                spec_mut(s).type_ = Some("LoadBalancer".into());
                spec_mut(s).load_balancer_class = Some("example.com/lb".into());
            },
            &[],
        );
        // LoadBalancer + Local needs a healthCheckNodePort (allocated before validation upstream).
        check_raw(
            |s| {
                spec_mut(s).type_ = Some("LoadBalancer".into());
                spec_mut(s).external_traffic_policy = Some("Local".into());
            },
            &["spec.healthCheckNodePort: Required value"],
        );
    }

    #[test]
    fn external_ips() {
        let with = |ip: &'static str| move |s: &mut Service| spec_mut(s).external_ips = Some(vec![ip.into()]);
        check_raw(with("192.168.122.201"), &[]);
        check_raw(
            with("127.0.0.1"),
            &["spec.externalIPs[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"],
        );
        check_raw(
            with("0.0.0.0"),
            &["spec.externalIPs[0]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)"],
        );
        check_raw(
            with("169.254.1.1"),
            &["spec.externalIPs[0]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)"],
        );
        check_raw(
            with("224.0.0.5"),
            &["spec.externalIPs[0]: Invalid value: \"224.0.0.5\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"],
        );
        check_raw(
            with("not-an-ip"),
            &["spec.externalIPs[0]: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"],
        );
    }

    #[test]
    fn service_type_and_name() {
        check(
            |s| spec_mut(s).type_ = Some("Foo".into()),
            &["spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""],
        );
        check(|s| spec_mut(s).type_ = None, &["spec.type: Required value"]);
        let one = format!("metadata.name: Invalid value: \"1svc\": {DNS1035_MSG}");
        check(|s| s.metadata.name = Some("1svc".into()), &[one.as_str()]);
        let dotted = format!("metadata.name: Invalid value: \"my.svc\": {DNS1035_MSG}");
        check(|s| s.metadata.name = Some("my.svc".into()), &[dotted.as_str()]);
        check(|s| s.metadata.name = None, &["metadata.name: Required value: name or generateName is required"]);
        check(
            |s| {
                s.metadata.annotations = Some(BTreeMap::from([
                    (ANNOTATION_TOPOLOGY_MODE.to_string(), "Auto".to_string()),
                    (ANNOTATION_TOPOLOGY_AWARE_HINTS.to_string(), "Disabled".to_string()),
                ]))
            },
            &["metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: \"Auto\": must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified"],
        );
    }

    // ----- allocation -----

    fn allocators(seed: u64) -> (IpAllocator, PortAllocator) {
        (IpAllocator::with_seed(cfg().service_cidr, seed), PortAllocator::with_seed(cfg().node_port_range, seed))
    }

    fn node_port_svc(name: &str, np: i32) -> Service {
        let mut svc = from_json(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "nodePort": np}],
                "selector": {"app": "mynapp-rs"}}}));
        set_defaults(&mut svc);
        svc
    }

    #[test]
    fn allocate_requested_and_conflicts() {
        let (mut ips, mut ports) = allocators(1);
        let mut a = node_port_svc("a", 31111);
        let got = allocate_create(&mut a, &mut ips, &mut ports).unwrap();
        assert_eq!(got.node_ports, vec![31111]);
        assert_eq!(got.cluster_ips.len(), 1);

        // Same nodePort again: 422 on spec.ports[0].nodePort and nothing leaks.
        let mut b = node_port_svc("b", 31111);
        let err = allocate_create(&mut b, &mut ips, &mut ports).unwrap_err();
        assert_eq!(err.to_string(), "spec.ports[0].nodePort: Invalid value: 31111: provided port is already allocated");
        assert_eq!(ips.used_count(), 1);
        assert_eq!(ports.used_count(), 1);

        // Requested clusterIP already taken.
        ips.allocate(Ipv4Addr::new(10, 96, 0, 10)).unwrap();
        let mut c = mynapp_svc();
        spec_mut(&mut c).cluster_ip = Some("10.96.0.10".into());
        set_defaults(&mut c);
        assert_eq!(
            allocate_create(&mut c, &mut ips, &mut ports).unwrap_err(),
            AllocateError::Invalid(vec![FieldError::invalid(
                "spec.clusterIPs",
                json!(["10.96.0.10"]),
                "failed to allocate IP 10.96.0.10: provided IP is already allocated"
            )])
        );

        // Deleting `a` frees its IP and port.
        release_all(&a, &mut ips, &mut ports);
        assert_eq!(ips.used_count(), 1);
        assert_eq!(ports.used_count(), 0);
    }

    #[test]
    fn allocate_shares_node_port_for_same_port_number_and_respects_lb_flag() {
        let (mut ips, mut ports) = allocators(2);
        let mut dns = from_json(json!({"metadata": {"name": "dns", "namespace": "kube-system"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}));
        set_defaults(&mut dns);
        let got = allocate_create(&mut dns, &mut ips, &mut ports).unwrap();
        assert_eq!(got.cluster_ips, vec![Ipv4Addr::new(10, 96, 0, 10)]);
        assert_eq!(got.node_ports.len(), 1);
        let p = dns.spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert_eq!(p[0].node_port, p[1].node_port);
        assert!(validate(&dns, &cfg()).is_empty());

        let mut lb = from_json(json!({"metadata": {"name": "lb", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                "ports": [{"port": 80}], "selector": {"app": "x"}}}));
        set_defaults(&mut lb);
        let got = allocate_create(&mut lb, &mut ips, &mut ports).unwrap();
        assert!(got.node_ports.is_empty());
        assert_eq!(lb.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port, None);

        let mut local = from_json(json!({"metadata": {"name": "local", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                "ports": [{"port": 80}], "selector": {"app": "x"}}}));
        set_defaults(&mut local);
        let got = allocate_create(&mut local, &mut ips, &mut ports).unwrap();
        assert_eq!(got.node_ports.len(), 2, "node port and health check node port");
        assert!(local.spec.as_ref().unwrap().health_check_node_port.is_some());
        assert!(validate(&local, &cfg()).is_empty());
        assert_eq!(allocated_resources(&local).node_ports.len(), 2);
    }

    #[test]
    fn allocate_full_range_is_internal_error() {
        let mut ips = IpAllocator::with_seed("10.0.0.0/30".parse().unwrap(), 1);
        let mut ports = PortAllocator::with_seed(30000..=30001, 1);
        let mut made = Vec::new();
        for i in 0..2 {
            let mut svc = node_port_svc(&format!("s{i}"), 0);
            allocate_create(&mut svc, &mut ips, &mut ports).unwrap();
            made.push(svc);
        }
        let mut svc = defaulted(mynapp_svc());
        assert_eq!(
            allocate_create(&mut svc, &mut ips, &mut ports).unwrap_err(),
            AllocateError::Internal("failed to allocate a serviceIP: range is full".into())
        );
        release_all(&made[0], &mut ips, &mut ports);
        let mut svc = node_port_svc("s3", 0);
        allocate_create(&mut svc, &mut ips, &mut ports).unwrap();
        let mut svc = node_port_svc("s4", 0);
        ips.release(Ipv4Addr::new(10, 0, 0, 1));
        ips.release(Ipv4Addr::new(10, 0, 0, 2));
        let err = allocate_create(&mut svc, &mut ips, &mut ports).unwrap_err();
        assert_eq!(err, AllocateError::Internal("failed to allocate a nodePort: range is full".into()));
        assert_eq!(ips.used_count(), 0, "the clusterIP taken before the failure was given back");
    }

    // ----- updates -----

    /// Creates `manifest` for real, then returns (stored, allocators).
    fn stored(manifest: serde_json::Value, seed: u64) -> (Service, IpAllocator, PortAllocator) {
        let (mut svc, ips, ports) = create(manifest, seed);
        svc.metadata.resource_version = Some("1".into());
        svc.metadata.uid = Some("uid-1".into());
        (svc, ips, ports)
    }

    fn update(
        old: &Service,
        manifest: serde_json::Value,
        ips: &mut IpAllocator,
        ports: &mut PortAllocator,
    ) -> (Service, Result<UpdateAllocation, AllocateError>, Vec<String>) {
        let mut new = from_json(manifest);
        new.metadata.namespace = Some("default".into());
        new.metadata.resource_version = Some("1".into());
        set_object_defaults(&mut new);
        names::prepare_object_meta_update(&mut new.metadata, &old.metadata);
        prepare_for_update(&mut new, old);
        let alloc = allocate_update(&mut new, old, ips, ports);
        let errs = strings(&validate_update(&new, old, &cfg()));
        (new, alloc, errs)
    }

    fn np_manifest() -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}}})
    }

    #[test]
    fn resubmitting_the_manifest_keeps_allocated_values() {
        let (old, mut ips, mut ports) = stored(np_manifest(), 7);
        let (new, alloc, errs) = update(&old, np_manifest(), &mut ips, &mut ports);
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!(alloc.unwrap(), UpdateAllocation::default());
        assert_eq!(new.spec, old.spec);
        assert_eq!(new.status, old.status);
    }

    #[test]
    fn cluster_ip_may_not_change() {
        let (old, mut ips, mut ports) = stored(np_manifest(), 8);
        let old_ip = cluster_ip_of(&old);
        let mut m = serde_json::to_value(&old).unwrap();
        m["spec"]["clusterIP"] = json!("10.96.0.5");
        let (_, _, errs) = update(&old, m.clone(), &mut ips, &mut ports);
        assert_eq!(errs, vec!["spec.clusterIPs[0]: Invalid value: [\"10.96.0.5\"]: may not change once set"]);
        m["spec"]["clusterIPs"] = json!(["10.96.0.5"]);
        let (_, _, errs) = update(&old, m, &mut ips, &mut ports);
        assert_eq!(errs, vec!["spec.clusterIPs[0]: Invalid value: [\"10.96.0.5\"]: may not change once set"]);
        assert!(ips.is_allocated(old_ip.parse().unwrap()));
    }

    #[test]
    fn change_to_external_name_drops_and_releases() {
        let (old, mut ips, mut ports) = stored(np_manifest(), 9);
        let old_ip: Ipv4Addr = cluster_ip_of(&old).parse().unwrap();
        let old_np = old.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap();
        // kubectl edit: the whole stored object with only type/externalName changed.
        let mut m = serde_json::to_value(&old).unwrap();
        m["spec"]["type"] = json!("ExternalName");
        m["spec"]["externalName"] = json!("www.google.com");
        m["spec"]["externalTrafficPolicy"] = json!("Cluster");
        let (new, alloc, errs) = update(&old, m, &mut ips, &mut ports);
        assert_eq!(errs, Vec::<String>::new());
        let spec = new.spec.clone().unwrap();
        assert_eq!(
            (spec.cluster_ip, spec.cluster_ips, spec.ip_families, spec.ip_family_policy),
            (None, None, None, None)
        );
        assert_eq!(spec.ports.unwrap()[0].node_port, None);
        assert_eq!(spec.external_traffic_policy, None);
        let alloc = alloc.unwrap();
        assert_eq!(alloc.allocated, Allocation::default());
        assert_eq!(alloc.to_release, Allocation { cluster_ips: vec![old_ip], node_ports: vec![old_np as u16] });
        alloc.to_release.release(&mut ips, &mut ports);
        assert_eq!((ips.used_count(), ports.used_count()), (0, 0));

        // And back: a fresh clusterIP is allocated.
        let mut stored_new = new.clone();
        stored_new.metadata.resource_version = Some("2".into());
        let mut m = serde_json::to_value(&stored_new).unwrap();
        m["spec"]["type"] = json!("ClusterIP");
        m["spec"].as_object_mut().unwrap().remove("externalName");
        let (back, alloc, errs) = update(&stored_new, m, &mut ips, &mut ports);
        assert_eq!(errs, Vec::<String>::new());
        let alloc = alloc.unwrap();
        assert_eq!(alloc.allocated.cluster_ips.len(), 1);
        let spec = back.spec.unwrap();
        assert_eq!(spec.cluster_ip, Some(alloc.allocated.cluster_ips[0].to_string()));
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
        assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
    }

    #[test]
    fn change_node_port_to_cluster_ip_and_new_node_ports() {
        let (old, mut ips, mut ports) = stored(np_manifest(), 10);
        let old_np = old.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap();
        let mut m = serde_json::to_value(&old).unwrap();
        m["spec"]["type"] = json!("ClusterIP");
        let (new, alloc, errs) = update(&old, m, &mut ips, &mut ports);
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!(new.spec.unwrap().ports.unwrap()[0].node_port, None);
        assert_eq!(alloc.unwrap().to_release.node_ports, vec![old_np as u16]);

        // Changing the nodePort allocates the new one and releases the old on commit.
        let mut m = serde_json::to_value(&old).unwrap();
        m["spec"]["ports"][0]["nodePort"] = json!(31500);
        let (_, alloc, errs) = update(&old, m.clone(), &mut ips, &mut ports);
        assert_eq!(errs, Vec::<String>::new());
        let alloc = alloc.unwrap();
        assert_eq!(alloc.allocated.node_ports, vec![31500]);
        assert_eq!(alloc.to_release.node_ports, vec![old_np as u16]);
        // The same change again now conflicts (31500 is taken).
        let (_, alloc, _) = update(&old, m.clone(), &mut ips, &mut ports);
        assert_eq!(
            alloc.unwrap_err().to_string(),
            "spec.ports[0].nodePort: Invalid value: 31500: provided port is already allocated"
        );
        // Out of range is reported by validate_update as well.
        m["spec"]["ports"][0]["nodePort"] = json!(80);
        let (_, _, errs) = update(&old, m, &mut ips, &mut ports);
        assert_eq!(
            errs,
            vec!["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"]
        );
    }

    #[test]
    fn update_metadata_and_lb_rules() {
        let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "loadBalancerClass": "example.com/a",
                "ports": [{"port": 80}], "selector": {"app": "x"}}});
        let (old, mut ips, mut ports) = stored(lb, 11);
        let mut m = serde_json::to_value(&old).unwrap();
        m["metadata"]["name"] = json!("other");
        m["spec"]["loadBalancerClass"] = json!("example.com/b");
        m["spec"]["healthCheckNodePort"] = json!(30001);
        let (_, _, errs) = update(&old, m, &mut ips, &mut ports);
        assert_eq!(
            errs,
            vec![
                "metadata.name: Invalid value: \"other\": field is immutable",
                "spec.loadBalancerClass: Invalid value: \"example.com/b\": may not change once set",
                "spec.healthCheckNodePort: Forbidden: field is immutable",
            ]
        );

        // LoadBalancer -> NodePort drops allocateLoadBalancerNodePorts, loadBalancerClass and
        // the health check port (released on commit).
        let hc = old.spec.as_ref().unwrap().health_check_node_port.unwrap();
        let mut m = serde_json::to_value(&old).unwrap();
        m["spec"]["type"] = json!("NodePort");
        let (new, alloc, errs) = update(&old, m, &mut ips, &mut ports);
        assert_eq!(errs, Vec::<String>::new());
        let spec = new.spec.unwrap();
        assert_eq!(spec.allocate_load_balancer_node_ports, None);
        assert_eq!(spec.load_balancer_class, None);
        assert_eq!(spec.health_check_node_port, None);
        assert_eq!(alloc.unwrap().to_release.node_ports, vec![hc as u16]);
    }

    #[test]
    fn validate_update_headless_and_families() {
        let headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}], "selector": {"app": "x"}}});
        let (old, mut ips, mut ports) = stored(headless, 12);
        // Headless -> headful is a clusterIP change.
        let mut m = serde_json::to_value(&old).unwrap();
        m["spec"]["clusterIP"] = json!("10.96.0.50");
        m["spec"]["clusterIPs"] = json!(["10.96.0.50"]);
        let (_, _, errs) = update(&old, m, &mut ips, &mut ports);
        assert_eq!(errs, vec!["spec.clusterIPs[0]: Invalid value: [\"10.96.0.50\"]: may not change once set"]);
    }
}
