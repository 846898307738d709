//! Node IPAM, range allocator (upstream `pkg/controller/nodeipam/ipam/range_allocator.go`
//! and `cidrset/cidr_set.go`): every Node without `spec.podCIDR` gets the next
//! free subnet (`/24` by default) of each cluster CIDR, in `spec.podCIDR` and
//! `spec.podCIDRs`. The allocation map is rebuilt from the Nodes on start, and
//! a deleted Node's subnets are free again.

use crate::events::{Recorder, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, util, ControllerConfig, Ctx, Error, SyncError};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

const COMPONENT: &str = "cidrAllocator";
/// Upstream `clusterSubnetMaxDiff`: at most 2^16 node subnets per cluster CIDR.
const MAX_DIFF: u8 = 16;

/// The subnets of one cluster CIDR (upstream `CidrSet`).
#[derive(Debug)]
struct CidrSet {
    cluster: IpNet,
    node_prefix: u8,
    used: Vec<bool>,
    allocated: usize,
    next: usize,
}

fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl CidrSet {
    fn new(cluster: IpNet, node_prefix: u8) -> Result<Self, String> {
        let cluster = cluster.trunc();
        if node_prefix < cluster.prefix_len() || node_prefix > cluster.max_prefix_len() {
            return Err(format!("node CIDR mask size /{node_prefix} does not fit cluster CIDR {cluster}"));
        }
        if node_prefix - cluster.prefix_len() > MAX_DIFF {
            return Err(format!(
                "cluster CIDR {cluster} with node mask size /{node_prefix} has too many subnets (at most 2^{MAX_DIFF})"
            ));
        }
        let max = 1usize << (node_prefix - cluster.prefix_len());
        Ok(CidrSet { cluster, node_prefix, used: vec![false; max], allocated: 0, next: 0 })
    }

    fn host_bits(&self) -> u32 {
        u32::from(self.cluster.max_prefix_len() - self.node_prefix)
    }

    fn subnet(&self, index: usize) -> Option<IpNet> {
        let base = addr_bits(self.cluster.network()) + ((index as u128) << self.host_bits());
        let ip = match self.cluster {
            IpNet::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(u32::try_from(base).ok()?)),
            IpNet::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(base)),
        };
        IpNet::new(ip, self.node_prefix).ok()
    }

    /// The subnet indexes `net` covers, if it lies in the cluster CIDR.
    fn indexes(&self, net: &IpNet) -> Option<std::ops::Range<usize>> {
        if !self.cluster.contains(net) && !net.contains(&self.cluster) {
            return None;
        }
        let base = addr_bits(self.cluster.network());
        let (first, last) = if net.prefix_len() >= self.node_prefix {
            let i = ((addr_bits(net.network()) - base) >> self.host_bits()) as usize;
            (i, i)
        } else if self.cluster.contains(net) {
            let i = ((addr_bits(net.network()) - base) >> self.host_bits()) as usize;
            let n = 1usize << (self.node_prefix - net.prefix_len());
            (i, i + n - 1)
        } else {
            (0, self.used.len() - 1)
        };
        Some(first..(last + 1).min(self.used.len()))
    }

    /// `AllocateNext`: the next free subnet after the last one handed out.
    fn allocate_next(&mut self) -> Option<IpNet> {
        if self.allocated == self.used.len() {
            return None;
        }
        let max = self.used.len();
        let mut candidate = self.next;
        for _ in 0..max {
            if !self.used[candidate] {
                break;
            }
            candidate = (candidate + 1) % max;
        }
        self.next = (candidate + 1) % max;
        self.used[candidate] = true;
        self.allocated += 1;
        self.subnet(candidate)
    }

    /// `Occupy`: marks a subnet in use; false if it is not in this set.
    fn occupy(&mut self, net: &IpNet) -> bool {
        let Some(r) = self.indexes(net) else { return false };
        for i in r {
            if !self.used[i] {
                self.used[i] = true;
                self.allocated += 1;
            }
        }
        true
    }

    fn release(&mut self, net: &IpNet) {
        let Some(r) = self.indexes(net) else { return };
        for i in r {
            if self.used[i] {
                self.used[i] = false;
                self.allocated -= 1;
            }
        }
    }
}

/// One `CidrSet` per cluster CIDR (one per IP family).
pub struct Allocators {
    sets: Vec<CidrSet>,
}

impl Allocators {
    pub fn new(config: &ControllerConfig) -> Result<Self, Error> {
        let mut sets =
            vec![CidrSet::new(IpNet::V4(config.cluster_cidr), config.node_cidr_mask_size_ipv4).map_err(Error::Config)?];
        if let Some(v6) = config.cluster_cidr_ipv6 {
            sets.push(CidrSet::new(IpNet::V6(v6), config.node_cidr_mask_size_ipv6).map_err(Error::Config)?);
        }
        Ok(Allocators { sets })
    }

    fn allocate(&mut self) -> Option<Vec<IpNet>> {
        let mut got = Vec::new();
        for i in 0..self.sets.len() {
            match self.sets[i].allocate_next() {
                Some(n) => got.push(n),
                None => {
                    for (j, n) in got.iter().enumerate() {
                        self.sets[j].release(n);
                    }
                    return None;
                }
            }
        }
        Some(got)
    }

    fn occupy(&mut self, nets: &[IpNet]) {
        for n in nets {
            for s in &mut self.sets {
                if s.occupy(n) {
                    break;
                }
            }
        }
    }

    fn release(&mut self, nets: &[IpNet]) {
        for n in nets {
            for s in &mut self.sets {
                s.release(n);
            }
        }
    }
}

fn node_cidrs(node: &Node) -> Vec<IpNet> {
    let spec = node.spec.as_ref();
    let mut v: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if v.is_empty() {
        v.extend(spec.and_then(|s| s.pod_cidr.clone()).filter(|c| !c.is_empty()));
    }
    v.iter().filter_map(|c| c.parse::<IpNet>().ok()).collect()
}

pub fn start(ctx: &Ctx, alloc: Allocators, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Ipam {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("node_ipam")),
        state: Mutex::new((alloc, HashMap::new())),
        recorder,
    });
    ctx.inf.nodes.on_change_weak(&c, |h, old, new| {
        if let Some(n) = new.or(old) {
            h.queue.add(Key::of(n));
        }
    });
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.nodes.wait_ready().await;
        // Rebuild the map from the Nodes before allocating anything.
        {
            let mut st = c.lock();
            let (alloc, by_node) = &mut *st;
            for node in c.inf.nodes.list() {
                let cidrs = node_cidrs(&node);
                if !cidrs.is_empty() {
                    alloc.occupy(&cidrs);
                    by_node.insert(Key::of(&*node).name, cidrs);
                }
            }
        }
        let k = c.clone();
        let keys = move || k.inf.nodes.list().iter().map(|n| Key::of(&**n)).collect();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), workers, sync), resync(c.queue.clone(), period, keys));
    }));
}

type State = (Allocators, HashMap<String, Vec<IpNet>>);

struct Ipam {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    /// The allocators and what each Node holds.
    state: Mutex<State>,
    recorder: Recorder,
}

impl Ipam {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(node) = self.inf.nodes.get("", &key.name) else {
            // Deleted: its subnets are free again.
            let mut st = self.lock();
            let (alloc, by_node) = &mut *st;
            if let Some(cidrs) = by_node.remove(&key.name) {
                alloc.release(&cidrs);
            }
            return Ok(());
        };
        let cidrs = node_cidrs(&node);
        if !cidrs.is_empty() {
            let mut st = self.lock();
            let (alloc, by_node) = &mut *st;
            if by_node.get(&key.name) != Some(&cidrs) {
                if let Some(old) = by_node.remove(&key.name) {
                    alloc.release(&old);
                }
                alloc.occupy(&cidrs);
                by_node.insert(key.name.clone(), cidrs);
            }
            return Ok(());
        }
        // A subnet we assigned but the store does not show yet is assigned again,
        // not replaced.
        let allocated = {
            let mut st = self.lock();
            let (alloc, by_node) = &mut *st;
            match by_node.get(&key.name) {
                Some(held) => Some(held.clone()),
                None => alloc.allocate().inspect(|a| {
                    by_node.insert(key.name.clone(), a.clone());
                }),
            }
        };
        let Some(allocated) = allocated else {
            self.recorder.event(
                &*node,
                WARNING,
                "CIDRNotAvailable",
                format!("Node {} status is now: CIDRNotAvailable", key.name),
            );
            return Err(format!("failed to allocate cidr from cluster cidr for node {}", key.name).into());
        };
        let strs: Vec<String> = allocated.iter().map(ToString::to_string).collect();
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({
            "metadata": { "resourceVersion": node.metadata.resource_version },
            "spec": { "podCIDR": strs.first(), "podCIDRs": strs },
        });
        match api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                tracing::info!(node = %key.name, cidrs = ?strs, "allocated pod CIDR");
                Ok(())
            }
            Err(e) if util::is_not_found(&e) => {
                let mut st = self.lock();
                let (alloc, by_node) = &mut *st;
                if let Some(held) = by_node.remove(&key.name) {
                    alloc.release(&held);
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    #[test]
    fn allocates_in_order_and_reuses_released() {
        let mut s = CidrSet::new(net("10.244.0.0/16"), 24).expect("set");
        assert_eq!(s.allocate_next(), Some(net("10.244.0.0/24")));
        assert_eq!(s.allocate_next(), Some(net("10.244.1.0/24")));
        assert!(s.occupy(&net("10.244.2.0/24")));
        assert_eq!(s.allocate_next(), Some(net("10.244.3.0/24")));
        s.release(&net("10.244.1.0/24"));
        // Round robin: the next candidate comes after the last one handed out.
        assert_eq!(s.allocate_next(), Some(net("10.244.4.0/24")));
        assert!(!s.occupy(&net("10.0.0.0/24")));
    }

    #[test]
    fn exhausts_and_wraps() {
        let mut s = CidrSet::new(net("10.0.0.0/23"), 24).expect("set");
        assert_eq!(s.allocate_next(), Some(net("10.0.0.0/24")));
        assert_eq!(s.allocate_next(), Some(net("10.0.1.0/24")));
        assert_eq!(s.allocate_next(), None);
        s.release(&net("10.0.0.0/24"));
        assert_eq!(s.allocate_next(), Some(net("10.0.0.0/24")));
    }

    #[test]
    fn dual_stack_and_bad_config() {
        let cfg = ControllerConfig {
            cluster_cidr: "10.244.0.0/16".parse().expect("v4"),
            cluster_cidr_ipv6: Some("fd00:10:244::/56".parse().expect("v6")),
            ..Default::default()
        };
        let mut a = Allocators::new(&cfg).expect("allocators");
        assert_eq!(a.allocate(), Some(vec![net("10.244.0.0/24"), net("fd00:10:244::/64")]));
        assert_eq!(a.allocate(), Some(vec![net("10.244.1.0/24"), net("fd00:10:244:1::/64")]));
        let bad = ControllerConfig { node_cidr_mask_size_ipv4: 8, ..Default::default() };
        assert!(Allocators::new(&bad).is_err());
        let too_many = ControllerConfig { cluster_cidr: "10.0.0.0/7".parse().expect("v4"), ..Default::default() };
        assert!(Allocators::new(&too_many).is_err());
    }
}
