//! The LoadBalancer address allocator: which Service holds which pool address.
//! Pure state, no I/O (upstream: metallb `internal/allocator/allocator.go`).
//!
//! - An address is held by one Service, or shared by several that carry the same
//!   `allow-shared-ip` key, the same backend key (the pod selector, for
//!   `externalTrafficPolicy: Local`) and no common port.
//! - Requested addresses may come from any pool (also `autoAssign: false`), an
//!   automatic one only from `autoAssign` pools, pools tried in name order (MetalLB
//!   walks a Go map, so its order is random), addresses in range order.
//! - Addresses of Nodes are never handed out.

use apimachinery::metallb::{confuses_buggy_firmware, AddressRange};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

/// A port a Service uses on its address: protocol and number.
pub type Port = (String, i32);

/// One address pool (an `IPAddressPool`), IPv4 ranges only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub ranges: Vec<AddressRange>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
}

impl Pool {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = IpAddr::V4(ip);
        !(self.avoid_buggy_ips && confuses_buggy_firmware(ip)) && self.ranges.iter().any(|r| r.contains(ip))
    }
}

/// What a Service asks of the allocator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub ports: Vec<Port>,
    /// `metallb.io/allow-shared-ip`.
    pub sharing: Option<String>,
    /// Pods behind the address when the policy is Local (they must be the same to share).
    pub backend: String,
    /// `metallb.io/address-pool`.
    pub pool: Option<String>,
}

#[derive(Clone, Debug)]
struct Holding {
    ip: Ipv4Addr,
    pool: String,
    request: Request,
}

/// Which Service holds which address.
#[derive(Debug, Default)]
pub struct Allocator {
    pools: Vec<Pool>,
    by_service: HashMap<String, Holding>,
    by_ip: HashMap<Ipv4Addr, BTreeSet<String>>,
    /// Node addresses: never handed out.
    reserved: HashSet<Ipv4Addr>,
}

impl Allocator {
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// Replaces the pools (sorted by name). Services whose address no longer lies in
    /// a pool lose it; the keys of those are returned.
    pub fn set_pools(&mut self, mut pools: Vec<Pool>) -> Vec<String> {
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        self.pools = pools;
        let mut lost = Vec::new();
        let keys: Vec<String> = self.by_service.keys().cloned().collect();
        for key in keys {
            let Some(h) = self.by_service.get(&key) else { continue };
            match self.pool_for(h.ip) {
                Some(p) => {
                    let p = p.name.clone();
                    if let Some(h) = self.by_service.get_mut(&key) {
                        h.pool = p;
                    }
                }
                None => {
                    self.release(&key);
                    lost.push(key);
                }
            }
        }
        lost
    }

    /// Sets the node addresses; Services holding one of them lose it (keys returned).
    pub fn set_reserved(&mut self, reserved: HashSet<Ipv4Addr>) -> Vec<String> {
        self.reserved = reserved;
        let lost: Vec<String> =
            self.by_service.iter().filter(|(_, h)| self.reserved.contains(&h.ip)).map(|(k, _)| k.clone()).collect();
        for k in &lost {
            self.release(k);
        }
        lost
    }

    fn pool_for(&self, ip: Ipv4Addr) -> Option<&Pool> {
        self.pools.iter().find(|p| p.contains(ip))
    }

    /// The address and pool `svc` holds.
    pub fn held(&self, svc: &str) -> Option<(Ipv4Addr, &str)> {
        self.by_service.get(svc).map(|h| (h.ip, h.pool.as_str()))
    }

    /// Frees what `svc` holds; true if it held something.
    pub fn release(&mut self, svc: &str) -> bool {
        let Some(h) = self.by_service.remove(svc) else { return false };
        if let Some(set) = self.by_ip.get_mut(&h.ip) {
            set.remove(svc);
            if set.is_empty() {
                self.by_ip.remove(&h.ip);
            }
        }
        true
    }

    /// Why `svc` may not use `ip` with `req`, if it may not (metallb `checkSharing`).
    fn conflict(&self, svc: &str, ip: Ipv4Addr, req: &Request) -> Option<String> {
        if self.reserved.contains(&ip) {
            return Some(format!("{ip} is the address of a node"));
        }
        let others: Vec<&String> = self.by_ip.get(&ip).into_iter().flatten().filter(|s| s.as_str() != svc).collect();
        for other in others {
            let Some(h) = self.by_service.get(other) else { continue };
            let (a, b) = (&h.request, req);
            match (&a.sharing, &b.sharing) {
                (None, _) | (_, None) => return Some(format!("{ip} is already in use by Service {other}")),
                (Some(x), Some(y)) if x != y => {
                    return Some(format!(
                        "{ip} is used by Service {other} with sharing key {x:?}, not {y:?} (metallb.io/allow-shared-ip)"
                    ))
                }
                _ => {}
            }
            if a.backend != b.backend {
                return Some(format!(
                    "{ip} is shared with Service {other}, which selects other pods (externalTrafficPolicy: Local needs the same selector)"
                ));
            }
            if let Some(p) = b.ports.iter().find(|p| a.ports.contains(p)) {
                return Some(format!("port {}/{} is already in use on {ip} by Service {other}", p.1, p.0));
            }
        }
        None
    }

    /// Gives `svc` the address `ip` (a requested one, or the one its status shows).
    /// Returns the pool's name.
    pub fn assign(&mut self, svc: &str, ip: Ipv4Addr, req: &Request) -> Result<String, String> {
        let pool = match &req.pool {
            Some(name) => {
                let p = self.pools.iter().find(|p| &p.name == name).ok_or_else(|| format!("unknown pool {name:?}"))?;
                if !p.contains(ip) {
                    return Err(format!("requested address {ip} is not in pool {name:?}"));
                }
                p.name.clone()
            }
            None => {
                self.pool_for(ip).map(|p| p.name.clone()).ok_or_else(|| format!("{ip} is not in any IPAddressPool"))?
            }
        };
        if let Some(c) = self.conflict(svc, ip, req) {
            return Err(c);
        }
        self.release(svc);
        self.by_service.insert(svc.to_string(), Holding { ip, pool: pool.clone(), request: req.clone() });
        self.by_ip.entry(ip).or_default().insert(svc.to_string());
        Ok(pool)
    }

    /// Picks a free (or shareable) address for `svc`: from `req.pool` if given, else
    /// from the `autoAssign` pools in name order.
    pub fn allocate(&mut self, svc: &str, req: &Request) -> Result<(Ipv4Addr, String), String> {
        if let Some((ip, _)) = self.held(svc) {
            if let Ok(pool) = self.assign(svc, ip, req) {
                return Ok((ip, pool));
            }
        }
        let candidates: Vec<&Pool> = match &req.pool {
            Some(name) => {
                vec![self.pools.iter().find(|p| &p.name == name).ok_or_else(|| format!("unknown pool {name:?}"))?]
            }
            None => self.pools.iter().filter(|p| p.auto_assign).collect(),
        };
        if candidates.is_empty() {
            return Err("no IPAddressPool with autoAssign".to_string());
        }
        let mut found = None;
        'pools: for p in &candidates {
            for r in p.ranges.iter().filter(|r| r.is_ipv4()) {
                for ip in r.iter(p.avoid_buggy_ips) {
                    let IpAddr::V4(ip) = ip else { continue };
                    if self.conflict(svc, ip, req).is_none() {
                        found = Some((ip, p.name.clone()));
                        break 'pools;
                    }
                }
            }
        }
        let names: Vec<&str> = candidates.iter().map(|p| p.name.as_str()).collect();
        let (ip, _) = found.ok_or_else(|| format!("no available IPs in pool(s) {}", names.join(", ")))?;
        let pool = self.assign(svc, ip, req)?;
        Ok((ip, pool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, ranges: &[&str], auto: bool) -> Pool {
        Pool {
            name: name.into(),
            ranges: ranges.iter().map(|r| AddressRange::parse(r).expect("range")).collect(),
            auto_assign: auto,
            avoid_buggy_ips: false,
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    fn tcp(port: i32) -> Request {
        Request { ports: vec![("TCP".into(), port)], ..Default::default() }
    }

    #[test]
    fn allocates_in_order_and_never_twice() {
        let mut a = Allocator::default();
        a.set_pools(vec![pool("b", &["10.0.1.0-10.0.1.1"], true), pool("a", &["10.0.0.5-10.0.0.6"], true)]);
        assert_eq!(a.allocate("ns/one", &tcp(80)), Ok((ip("10.0.0.5"), "a".into())));
        // Idempotent for the holder.
        assert_eq!(a.allocate("ns/one", &tcp(80)), Ok((ip("10.0.0.5"), "a".into())));
        assert_eq!(a.allocate("ns/two", &tcp(80)), Ok((ip("10.0.0.6"), "a".into())));
        assert_eq!(a.allocate("ns/three", &tcp(80)), Ok((ip("10.0.1.0"), "b".into())));
        assert_eq!(a.allocate("ns/four", &tcp(80)), Ok((ip("10.0.1.1"), "b".into())));
        assert_eq!(a.allocate("ns/five", &tcp(80)), Err("no available IPs in pool(s) a, b".into()));
        assert!(a.release("ns/two"));
        assert_eq!(a.allocate("ns/five", &tcp(80)), Ok((ip("10.0.0.6"), "a".into())));
    }

    #[test]
    fn requested_addresses_pools_and_auto_assign() {
        let mut a = Allocator::default();
        a.set_pools(vec![pool("auto", &["10.0.0.0/30"], true), pool("manual", &["10.9.0.1-10.9.0.3"], false)]);
        a.set_reserved([ip("10.0.0.0")].into_iter().collect());
        // Node addresses are skipped.
        assert_eq!(a.allocate("ns/a", &tcp(80)).map(|r| r.0), Ok(ip("10.0.0.1")));
        // autoAssign: false only on request.
        assert_eq!(a.assign("ns/b", ip("10.9.0.2"), &tcp(80)), Ok("manual".into()));
        let by_pool = Request { pool: Some("manual".into()), ..tcp(80) };
        assert_eq!(a.allocate("ns/c", &by_pool).map(|r| r.0), Ok(ip("10.9.0.1")));
        assert_eq!(
            a.assign("ns/d", ip("10.9.0.2"), &tcp(443)),
            Err("10.9.0.2 is already in use by Service ns/b".into())
        );
        assert_eq!(
            a.assign("ns/d", ip("192.168.1.1"), &tcp(80)),
            Err("192.168.1.1 is not in any IPAddressPool".into())
        );
        assert_eq!(a.assign("ns/d", ip("10.0.0.0"), &tcp(80)), Err("10.0.0.0 is the address of a node".into()));
        let wrong_pool = Request { pool: Some("auto".into()), ..tcp(80) };
        assert_eq!(
            a.assign("ns/d", ip("10.9.0.3"), &wrong_pool),
            Err("requested address 10.9.0.3 is not in pool \"auto\"".into())
        );
        let unknown = Request { pool: Some("nope".into()), ..tcp(80) };
        assert_eq!(a.allocate("ns/d", &unknown), Err("unknown pool \"nope\"".into()));
    }

    #[test]
    fn shares_with_the_same_key_and_other_ports() {
        let mut a = Allocator::default();
        a.set_pools(vec![pool("p", &["10.0.0.1/32"], true)]);
        let shared = |port: i32, key: &str| Request { sharing: Some(key.into()), ..tcp(port) };
        assert_eq!(a.allocate("ns/web", &shared(80, "k")).map(|r| r.0), Ok(ip("10.0.0.1")));
        assert_eq!(a.allocate("ns/dns", &shared(53, "k")).map(|r| r.0), Ok(ip("10.0.0.1")));
        assert_eq!(
            a.allocate("ns/web2", &shared(80, "k")),
            Err("no available IPs in pool(s) p".into()),
            "port 80 is taken on the shared address"
        );
        assert!(a
            .assign("ns/web2", ip("10.0.0.1"), &shared(80, "k"))
            .is_err_and(|e| e.contains("port 80/TCP is already in use on 10.0.0.1")));
        assert!(a.assign("ns/x", ip("10.0.0.1"), &shared(81, "other")).is_err_and(|e| e.contains("sharing key")));
        let local = Request { backend: "app=x".into(), ..shared(82, "k") };
        assert!(a.assign("ns/y", ip("10.0.0.1"), &local).is_err_and(|e| e.contains("selects other pods")));
    }

    #[test]
    fn pool_changes_take_addresses_away() {
        let mut a = Allocator::default();
        a.set_pools(vec![pool("p", &["10.0.0.1-10.0.0.2"], true)]);
        a.allocate("ns/one", &tcp(80)).expect("one");
        a.allocate("ns/two", &tcp(80)).expect("two");
        let lost = a.set_pools(vec![pool("q", &["10.0.0.2/32"], true)]);
        assert_eq!(lost, vec!["ns/one".to_string()]);
        assert_eq!(a.held("ns/two"), Some((ip("10.0.0.2"), "q")));
        let mut buggy = pool("b", &["10.0.0.0/31"], true);
        buggy.avoid_buggy_ips = true;
        let lost = a.set_pools(vec![buggy]);
        assert_eq!(lost, vec!["ns/two".to_string()]);
        assert_eq!(a.allocate("ns/three", &tcp(80)).map(|r| r.0), Ok(ip("10.0.0.1")));
    }
}
