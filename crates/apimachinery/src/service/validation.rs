//! Service validation (`pkg/apis/core/validation/validation.go`:
//! `ValidateService`, `ValidateServiceUpdate` and their helpers).

#[allow(unused_imports)]
use super::*;

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
pub(super) fn pre_allocation_errors(
    spec: &ServiceSpec,
    old: Option<&ServiceSpec>,
    cfg: &ServiceConfig,
) -> Vec<FieldError> {
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
pub(super) fn validate_service_port(
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
pub(super) fn validate_port_num_or_name(port: Option<&IntOrString>, path: &str) -> Vec<FieldError> {
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
pub(super) fn validate_client_ip_affinity_config(config: Option<&SessionAffinityConfig>) -> Vec<FieldError> {
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
pub(super) fn validate_non_special_ip(ip: &str, path: &str) -> Vec<FieldError> {
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
pub(super) fn validate_external_traffic_policy(spec: &ServiceSpec) -> Vec<FieldError> {
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
pub(super) fn validate_load_balancer_class(old: Option<&ServiceSpec>, spec: &ServiceSpec) -> Vec<FieldError> {
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
pub(super) fn validate_cluster_ips_related_fields(spec: &ServiceSpec) -> Vec<FieldError> {
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
pub(super) fn validate_upgrade_downgrade_cluster_ips(old: &ServiceSpec, new: &ServiceSpec) -> Vec<FieldError> {
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
pub(super) fn validate_upgrade_downgrade_ip_families(old: &ServiceSpec, new: &ServiceSpec) -> Vec<FieldError> {
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
