//! Service defaults: decode-time `SetDefaults_Service`, the strategy's
//! PrepareForCreate/PrepareForUpdate, IP family fields, defaults on read.

#[allow(unused_imports)]
use super::*;

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

pub(super) fn empty_status() -> ServiceStatus {
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
pub(super) fn normalize_cluster_ips(spec: &mut ServiceSpec, old: Option<&ServiceSpec>) {
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
pub(super) fn patch_allocated_values(spec: &mut ServiceSpec, old: &ServiceSpec) {
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
pub(super) fn drop_type_dependent_fields(new: &mut Service, old: &ServiceSpec) {
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
pub(super) fn is_matching_prefer_dual_stack(spec: &ServiceSpec, old: Option<&ServiceSpec>) -> bool {
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
pub(super) fn init_ip_family_fields(spec: &mut ServiceSpec, old: Option<&ServiceSpec>) -> Result<(), Vec<FieldError>> {
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
