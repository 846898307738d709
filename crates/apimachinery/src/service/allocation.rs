//! ClusterIP, NodePort and health-check port allocation
//! (`pkg/registry/core/service/storage/alloc.go`).

#[allow(unused_imports)]
use super::*;

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
pub(super) trait NodePortOp {
    fn allocate(&mut self, port: i64) -> Result<(), AllocError>;
    /// `Ok(None)` means "leave it to the real allocation".
    fn allocate_next(&mut self) -> Result<Option<i64>, AllocError>;
}

pub(super) struct StaticPorts {
    pub(super) range: RangeInclusive<u16>,
    pub(super) taken: BTreeSet<i64>,
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

pub(super) struct RealPorts<'a> {
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

pub(super) fn node_port_invalid(i: usize, np: i64, e: AllocError) -> AllocateError {
    AllocateError::Invalid(vec![FieldError::invalid(format!("spec.ports[{i}].nodePort"), np, e.to_string())])
}

/// Upstream `initNodePorts` (create): ports with the same port number share one
/// NodePort (e.g. TCP and UDP 53); user-requested values are reserved.
pub(super) fn init_node_ports(spec: &mut ServiceSpec, op: &mut dyn NodePortOp) -> Result<(), AllocateError> {
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
pub(super) fn update_node_ports(
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
pub(super) fn alloc_cluster_ips(
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
pub(super) fn alloc_health_check_node_port(
    spec: &mut ServiceSpec,
    op: &mut RealPorts<'_>,
) -> Result<(), AllocateError> {
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

pub(super) fn ports_of(spec: &ServiceSpec) -> BTreeSet<i32> {
    ports(spec).iter().map(node_port).filter(|&n| n != 0).collect()
}
