//! LoadBalancer address allocation: every `type: LoadBalancer` Service without a
//! `spec.loadBalancerClass` gets `status.loadBalancer.ingress`.
//!
//! - With `IPAddressPool`s (`metallb.io/v1beta1`, any namespace, or the `--lb-pool`
//!   flag's `kube-system/rkube-lb-pool`): an address from a pool, as MetalLB's
//!   controller does (`controller/service.go` `convergeBalancer`): the address the
//!   status already shows is kept while it is still valid; `spec.loadBalancerIP` or
//!   `metallb.io/loadBalancerIPs` ask for one, `metallb.io/address-pool` for a pool,
//!   `metallb.io/allow-shared-ip` lets Services share one when their ports differ.
//!   What fails leaves the Service `<pending>` with a Warning Event `AllocationFailed`.
//!   The pool is written to the annotation `metallb.io/ip-allocated-from-pool`.
//! - Without any pool: k3s ServiceLB behaviour (`pkg/cloudprovider/servicelb.go`):
//!   the ingress is the addresses of the Nodes that can serve (Ready, not labelled
//!   `node.kubernetes.io/exclude-from-external-load-balancers`, and with a ready local
//!   endpoint for `externalTrafficPolicy: Local`), ExternalIP before InternalIP; a
//!   Service whose port another ServiceLB Service already uses stays pending.
//!
//! Addresses are never handed to two Services: the allocator is rebuilt from every
//! Service's status (oldest first) before the first sync, and all allocation goes
//! through it under one lock.

mod allocator;

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::{Informers, Key};
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, util, Ctx, SyncError};
use allocator::{Allocator, Pool, Port, Request};
use apimachinery::loadbalancer::{self as lbrules, is_handled as is_ours, node_addresses, SERVICE_NAME_LABEL};
use apimachinery::metallb::{self, IPAddressPool};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

const COMPONENT: &str = "rkube-loadbalancer-controller";

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Lbc {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("loadbalancer")),
        alloc: Mutex::new(Allocator::default()),
        pools_dirty: AtomicBool::new(true),
        recorder,
    });
    ctx.inf.services.on_change_weak(&c, |h, old, new| {
        if let Some(s) = new.or(old) {
            h.queue.add(Key::of(s));
        }
    });
    ctx.inf.ip_pools.on_change_weak(&c, |h, _, _| {
        h.pools_dirty.store(true, Ordering::SeqCst);
        h.enqueue_all();
    });
    ctx.inf.nodes.on_change_weak(&c, |h, old, new| {
        // Addresses and readiness matter; heartbeats do not.
        let view = |n: Option<&Node>| n.map(|n| (node_addresses(n), node_can_serve(n), n.metadata.labels.clone()));
        if view(old) != view(new) {
            h.pools_dirty.store(true, Ordering::SeqCst);
            h.enqueue_all();
        }
    });
    ctx.inf.slices.on_change_weak(&c, |h, old, new| {
        // Local-policy ServiceLB ingress follows where the endpoints are.
        if let Some(name) = new.or(old).and_then(|s| s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL).cloned()) {
            let ns = new.or(old).and_then(|s| s.metadata.namespace.clone()).unwrap_or_default();
            h.queue.add(Key::new(&ns, &name));
        }
    });
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        c.rebuild();
        let k = c.clone();
        let keys = move || k.inf.services.list().iter().map(|s| Key::of(&**s)).collect();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), workers, sync), resync(c.queue.clone(), period, keys));
    }));
}

struct Lbc {
    client: kube::Client,
    inf: Arc<Informers>,
    queue: Arc<Queue>,
    alloc: Mutex<Allocator>,
    /// Pools or node addresses changed since the allocator last saw them.
    pools_dirty: AtomicBool,
    recorder: Recorder,
}

fn ingress_ips(svc: &Service) -> Vec<String> {
    lbrules::ingress(svc).iter().filter_map(|i| i.ip.clone()).collect()
}

fn first_v4(ips: &[String]) -> Option<Ipv4Addr> {
    ips.iter().find_map(|s| s.parse().ok())
}

fn ports(svc: &Service) -> Vec<Port> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
        .collect()
}

fn request(svc: &Service) -> Request {
    let ann = svc.metadata.annotations.as_ref();
    let spec = svc.spec.as_ref();
    let backend = if lbrules::is_local(svc) {
        // metallb `k8salloc.BackendKey`: the selector as `labels.Set.String()`.
        let sel = spec.and_then(|s| s.selector.clone()).unwrap_or_default();
        sel.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    } else {
        String::new()
    };
    Request {
        ports: ports(svc),
        sharing: metallb::annotation(ann, metallb::ANNOTATION_ALLOW_SHARED_IP).map(str::to_string),
        backend,
        pool: metallb::annotation(ann, metallb::ANNOTATION_ADDRESS_POOL).map(str::to_string),
    }
}

/// The IPv4 address the Service asks for (`metallb.io/loadBalancerIPs`, else the
/// deprecated `spec.loadBalancerIP`), or why the request cannot be read.
fn requested_ip(svc: &Service) -> Result<Option<Ipv4Addr>, String> {
    let ann = metallb::annotation(svc.metadata.annotations.as_ref(), metallb::ANNOTATION_LOAD_BALANCER_IPS);
    if let Some(list) = ann {
        let mut v4 = None;
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(a)) => v4 = v4.or(Some(a)),
                Ok(std::net::IpAddr::V6(_)) => {}
                Err(_) => {
                    return Err(format!(
                        "invalid address {part:?} in annotation {}",
                        metallb::ANNOTATION_LOAD_BALANCER_IPS
                    ))
                }
            }
        }
        return v4
            .map(Some)
            .ok_or_else(|| format!("no IPv4 address in annotation {}", metallb::ANNOTATION_LOAD_BALANCER_IPS));
    }
    let spec_ip = svc.spec.as_ref().and_then(|s| s.load_balancer_ip.clone()).filter(|s| !s.is_empty());
    match spec_ip {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| format!("invalid spec.loadBalancerIP {s:?}")),
    }
}

fn node_can_serve(n: &Node) -> bool {
    lbrules::node_ready(n) && !lbrules::node_excluded(n)
}

fn creation_order(s: &Service) -> (String, String) {
    let ts = s.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    (ts, Key::of(s).to_string())
}

impl Lbc {
    fn lock(&self) -> std::sync::MutexGuard<'_, Allocator> {
        self.alloc.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue_all(&self) {
        for s in self.inf.services.list() {
            if is_ours(&s) || !ingress_ips(&s).is_empty() {
                self.queue.add(Key::of(&*s));
            }
        }
    }

    /// The pools from the `IPAddressPool` objects; a name seen in several namespaces
    /// counts once (the first namespace in order).
    fn pools(&self) -> Vec<Pool> {
        let mut objs: Vec<Arc<IPAddressPool>> = self.inf.ip_pools.list();
        objs.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for p in objs {
            let Some(name) = p.metadata.name.clone() else { continue };
            if p.metadata.deletion_timestamp.is_some() || !seen.insert(name.clone()) {
                continue;
            }
            out.push(Pool {
                name,
                ranges: metallb::pool_ranges(&p.spec),
                auto_assign: p.spec.auto_assign(),
                avoid_buggy_ips: p.spec.avoid_buggy_ips,
            });
        }
        out
    }

    fn node_ips(&self) -> HashSet<Ipv4Addr> {
        self.inf
            .nodes
            .list()
            .iter()
            .flat_map(|n| {
                let (i, e) = node_addresses(n);
                i.into_iter().chain(e)
            })
            .collect()
    }

    /// Brings pools and node addresses into the allocator; Services that lost their
    /// address are queued.
    fn refresh(&self, alloc: &mut Allocator) {
        if !self.pools_dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut lost = alloc.set_pools(self.pools());
        lost.extend(alloc.set_reserved(self.node_ips()));
        for k in lost {
            if let Some((ns, name)) = k.split_once('/') {
                self.queue.add(Key::new(ns, name));
            }
        }
    }

    /// Rebuilds who holds what from the Services' status, oldest Service first, so a
    /// restart never hands out an address twice.
    fn rebuild(&self) {
        let mut alloc = self.lock();
        self.refresh(&mut alloc);
        let mut services: Vec<Arc<Service>> = self.inf.services.list().into_iter().filter(|s| is_ours(s)).collect();
        services.sort_by_key(|s| creation_order(s));
        for s in services {
            if let Some(ip) = first_v4(&ingress_ips(&s)) {
                let key = Key::of(&*s).to_string();
                if let Err(e) = alloc.assign(&key, ip, &request(&s)) {
                    tracing::debug!(service = %key, %ip, error = %e, "status address not kept");
                }
            }
        }
    }

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let skey = key.to_string();
        let svc = self.inf.services.get_key(key);
        let Some(svc) = svc.filter(|s| s.metadata.deletion_timestamp.is_none() || is_ours(s)) else {
            if self.lock().release(&skey) {
                self.enqueue_all();
            }
            return Ok(());
        };
        if !is_ours(&svc) {
            let released = self.lock().release(&skey);
            if released {
                self.enqueue_all();
            }
            // A Service that stopped being a LoadBalancer loses its ingress (upstream
            // service controller `needsCleanup`); a foreign class is left alone.
            let lb_type = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
            if !lb_type && !ingress_ips(&svc).is_empty() {
                self.write(&svc, &[], None).await?;
            }
            return Ok(());
        }
        let pool_mode = {
            let mut alloc = self.lock();
            self.refresh(&mut alloc);
            !alloc.pools().is_empty()
        };
        if pool_mode {
            self.sync_pool(&svc, &skey).await
        } else {
            if self.lock().release(&skey) {
                self.enqueue_all();
            }
            self.sync_node_ips(&svc).await
        }
    }

    /// MetalLB's `convergeBalancer`, for one IPv4 address.
    async fn sync_pool(&self, svc: &Service, skey: &str) -> Result<(), SyncError> {
        let req = request(svc);
        let current = first_v4(&ingress_ips(svc));
        let result = {
            let mut alloc = self.lock();
            match requested_ip(svc) {
                Err(e) => {
                    alloc.release(skey);
                    Err(e)
                }
                Ok(wanted) => {
                    // Keep the address the status shows while it is still valid and
                    // still what was asked for.
                    let keep = current.filter(|ip| wanted.is_none_or(|w| w == *ip));
                    let kept = keep.and_then(|ip| alloc.assign(skey, ip, &req).ok().map(|p| (ip, p)));
                    match (kept, wanted) {
                        (Some(k), _) => Ok(k),
                        (None, Some(ip)) => {
                            alloc.release(skey);
                            alloc.assign(skey, ip, &req).map(|p| (ip, p))
                        }
                        (None, None) => {
                            if current.is_some() {
                                alloc.release(skey);
                            }
                            alloc.allocate(skey, &req)
                        }
                    }
                }
            }
        };
        match result {
            Ok((ip, pool)) => {
                if current != Some(ip) {
                    self.recorder.event(svc, NORMAL, "IPAllocated", format!("Assigned IP [\"{ip}\"]"));
                }
                self.write(svc, &[ip], Some(&pool)).await
            }
            Err(e) => {
                self.recorder.event(
                    svc,
                    WARNING,
                    "AllocationFailed",
                    format!("Failed to allocate IP for \"{skey}\": {e}"),
                );
                if !ingress_ips(svc).is_empty() {
                    self.write(svc, &[], None).await?;
                }
                Ok(())
            }
        }
    }

    /// k3s ServiceLB: the addresses of the Nodes that can serve.
    async fn sync_node_ips(&self, svc: &Service) -> Result<(), SyncError> {
        let mine = ports(svc);
        // An older ServiceLB Service with a common port keeps it (svclb's hostPort).
        let mut others: Vec<Arc<Service>> = self.inf.services.list().into_iter().filter(|s| is_ours(s)).collect();
        others.sort_by_key(|s| creation_order(s));
        let me = creation_order(svc);
        for o in others.iter().take_while(|o| creation_order(o) < me) {
            if let Some(p) = ports(o).iter().find(|p| mine.contains(p)) {
                let msg = format!(
                    "port {}/{} is already used by LoadBalancer Service {} on the node addresses (add an IPAddressPool or use another port)",
                    p.1,
                    p.0,
                    Key::of(&**o)
                );
                self.recorder.event(svc, WARNING, "AllocationFailed", msg);
                if !ingress_ips(svc).is_empty() {
                    self.write(svc, &[], None).await?;
                }
                return Ok(());
            }
        }
        let local = lbrules::is_local(svc);
        let with_endpoints: BTreeSet<String> =
            if local { self.nodes_with_ready_endpoints(svc) } else { BTreeSet::new() };
        let mut ips: Vec<Ipv4Addr> = Vec::new();
        for n in self.inf.nodes.list() {
            let name = n.metadata.name.clone().unwrap_or_default();
            if !node_can_serve(&n) || (local && !with_endpoints.contains(&name)) {
                continue;
            }
            let (internal, external) = node_addresses(&n);
            ips.extend(external.first().or(internal.first()));
        }
        ips.sort();
        ips.dedup();
        self.write(svc, &ips, None).await
    }

    fn nodes_with_ready_endpoints(&self, svc: &Service) -> BTreeSet<String> {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let slices = self.inf.slices.list_ns(ns);
        lbrules::ready_endpoint_nodes(slices.iter().map(|s| &**s).filter(|s| lbrules::slice_of(s, name)))
    }

    /// Writes the ingress (and the pool annotation) if they differ from what is stored.
    async fn write(&self, svc: &Service, ips: &[Ipv4Addr], pool: Option<&str>) -> Result<(), SyncError> {
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
        let have_pool = svc.metadata.annotations.as_ref().and_then(|a| a.get(metallb::ANNOTATION_ALLOCATED_FROM_POOL));
        if have_pool.map(String::as_str) != pool {
            let patch = json!({ "metadata": { "annotations": { metallb::ANNOTATION_ALLOCATED_FROM_POOL: pool } } });
            match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(e) if util::is_not_found(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        let want: Vec<String> = ips.iter().map(ToString::to_string).collect();
        let current = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.clone());
        let current_view: Vec<(Option<String>, Option<String>)> =
            current.iter().flatten().map(|i| (i.ip.clone(), i.ip_mode.clone())).collect();
        let want_view: Vec<(Option<String>, Option<String>)> =
            want.iter().map(|ip| (Some(ip.clone()), Some("VIP".to_string()))).collect();
        if current_view == want_view {
            return Ok(());
        }
        let ingress: Value = if want.is_empty() {
            Value::Null
        } else {
            want.iter().map(|ip| json!({ "ip": ip, "ipMode": "VIP" })).collect::<Vec<_>>().into()
        };
        let patch = json!({ "status": { "loadBalancer": { "ingress": ingress } } });
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                tracing::info!(service = %Key::of(svc), ingress = ?want, pool, "load balancer ingress updated");
                Ok(())
            }
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
