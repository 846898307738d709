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

mod allocation;
mod defaults;
mod validation;

pub use allocation::*;
pub use defaults::*;
pub use validation::*;

#[cfg(test)]
mod tests;
