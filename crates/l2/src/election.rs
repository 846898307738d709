//! Which node announces an address: pure rules, no I/O.
//!
//! Eligible nodes (upstream: metallb `speaker/layer2_controller.go` `ShouldAnnounce`):
//! Ready, not being deleted, not labelled
//! `node.kubernetes.io/exclude-from-external-load-balancers`, matching the
//! `nodeSelectors` of an `L2Advertisement` that applies to the address's pool, and,
//! for `externalTrafficPolicy: Local`, holding a ready endpoint of the Service.
//! Differences from MetalLB, on purpose:
//! - With no `L2Advertisement` at all every pool is announced from every node
//!   (MetalLB announces nothing), so `--lb-pool` works alone.
//! - A Cluster-policy Service without endpoints is still announced, so clients get
//!   the proxy's TCP reset at once instead of ARP silence.
//! - The holder keeps its address while it is alive and eligible (sticky): a
//!   better-ranked node joining does not move it and break connections. Ranking
//!   (a hash of `node#ip`, like MetalLB's sha256 ordering) only decides who takes
//!   a free address, and in which order the others try when the first does not.

use apimachinery::metallb::{selector_matches, L2AdvertisementSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use apimachinery::loadbalancer::EXCLUDE_LABEL;

/// What the election needs of one Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Ready and not being deleted.
    pub ready: bool,
}

/// What the election needs of one Service using the address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceView {
    /// `externalTrafficPolicy: Local`.
    pub local: bool,
    /// Nodes with a ready endpoint of the Service.
    pub endpoint_nodes: BTreeSet<String>,
    /// The pool the address came from (`metallb.io/ip-allocated-from-pool`).
    pub pool: Option<String>,
}

/// The advertisements that apply to a pool (metallb: by name, by pool selector, or
/// to every pool when an advertisement names none and selects none).
pub fn ads_for_pool<'a>(
    ads: &'a [L2AdvertisementSpec],
    pool: Option<&str>,
    pool_labels: Option<&BTreeMap<String, String>>,
) -> Vec<&'a L2AdvertisementSpec> {
    ads.iter()
        .filter(|a| {
            let all = a.ip_address_pools.is_empty() && a.ip_address_pool_selectors.is_empty();
            let named = pool.is_some_and(|p| a.ip_address_pools.iter().any(|n| n == p));
            let selected =
                pool.is_some() && a.ip_address_pool_selectors.iter().any(|s| selector_matches(s, pool_labels));
            all || named || selected
        })
        .collect()
}

/// The nodes that may announce an address used by `services`, ranked for `ip`.
/// `ads` are the advertisements for the pool, `any_ads` whether any exist at all.
pub fn eligible(
    nodes: &[NodeView],
    services: &[ServiceView],
    ads: &[&L2AdvertisementSpec],
    any_ads: bool,
    ip: &str,
) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .iter()
        .filter(|n| n.ready && !n.labels.contains_key(EXCLUDE_LABEL))
        .filter(|n| {
            !any_ads
                || ads.iter().any(|a| {
                    a.node_selectors.is_empty() || a.node_selectors.iter().any(|s| selector_matches(s, Some(&n.labels)))
                })
        })
        .filter(|n| services.iter().all(|s| !s.local || s.endpoint_nodes.contains(&n.name)))
        .map(|n| n.name.clone())
        .collect();
    rank(&mut out, ip);
    out
}

/// FNV-1a 64 with splitmix64's finalizer (stable across nodes and runs; FNV alone
/// orders names that differ early the same way for every address).
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58476d1ce4e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d049bb133111eb);
    h ^ (h >> 31)
}

/// Orders nodes for an address by the hash of `node#ip` (metallb `sortL2Candidates`).
pub fn rank(nodes: &mut [String], ip: &str) {
    nodes.sort_by_key(|n| (fnv(&format!("{n}#{ip}")), n.clone()));
}

/// What this node does about one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// It holds the address and may go on announcing it.
    Keep,
    /// It holds the address but may no longer serve it: give it up now.
    Release,
    /// Take the free address (compare-and-swap on its Lease).
    Acquire,
    /// Someone else holds it, or another node is to try first.
    Wait,
}

/// The Lease of an address as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    pub node: Option<String>,
    /// The holder's heartbeat was seen to change within its lease duration.
    pub alive: bool,
}

/// Decides for `me`. `free_for` is how long the address has been free as seen here
/// (no holder, a dead holder past its lease, or a holder that may not serve it);
/// the candidate ranked `r` tries after `r * step`, so the first live one wins.
pub fn decide(me: &str, holder: &Holder, eligible: &[String], free_for: Duration, step: Duration) -> Action {
    let me_ok = eligible.iter().any(|n| n == me);
    match holder.node.as_deref() {
        Some(h) if h == me => {
            if me_ok {
                Action::Keep
            } else {
                Action::Release
            }
        }
        Some(h) if holder.alive && eligible.iter().any(|n| n == h) => Action::Wait,
        h => {
            let candidates: Vec<&String> = eligible.iter().filter(|n| Some(n.as_str()) != h).collect();
            match candidates.iter().position(|n| n.as_str() == me) {
                Some(r) if free_for >= step * u32::try_from(r).unwrap_or(u32::MAX) => Action::Acquire,
                _ => Action::Wait,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeView {
        NodeView {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ready: true,
        }
    }

    #[test]
    fn ranking_is_stable_and_differs_per_address() {
        let mut a = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
        let mut b = a.clone();
        b.reverse();
        rank(&mut a, "192.168.122.200");
        rank(&mut b, "192.168.122.200");
        assert_eq!(a, b);
        let firsts: BTreeSet<String> = (200..220)
            .map(|i| {
                let mut v = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
                rank(&mut v, &format!("192.168.122.{i}"));
                v[0].clone()
            })
            .collect();
        assert!(firsts.len() > 1, "addresses spread over nodes");
    }

    #[test]
    fn eligibility_follows_readiness_selectors_and_local_endpoints() {
        let mut down = node("n3", &[]);
        down.ready = false;
        let nodes = vec![node("n1", &[("lb", "yes")]), node("n2", &[(EXCLUDE_LABEL, "")]), down, node("n4", &[])];
        let svc = ServiceView::default();
        let all = eligible(&nodes, std::slice::from_ref(&svc), &[], false, "10.0.0.1");
        assert_eq!(all.iter().cloned().collect::<BTreeSet<_>>(), ["n1".to_string(), "n4".to_string()].into());

        let sel =
            LabelSelector { match_labels: Some([("lb".to_string(), "yes".to_string())].into()), ..Default::default() };
        let ad = L2AdvertisementSpec { node_selectors: vec![sel], ..Default::default() };
        assert_eq!(eligible(&nodes, std::slice::from_ref(&svc), &[&ad], true, "10.0.0.1"), vec!["n1".to_string()]);
        // Advertisements exist, none for this pool: nobody.
        assert!(eligible(&nodes, std::slice::from_ref(&svc), &[], true, "10.0.0.1").is_empty());

        let local = ServiceView { local: true, endpoint_nodes: ["n4".to_string()].into(), pool: None };
        assert_eq!(eligible(&nodes, &[local], &[], false, "10.0.0.1"), vec!["n4".to_string()]);
    }

    #[test]
    fn advertisements_apply_by_name_selector_or_to_all() {
        let named = L2AdvertisementSpec { ip_address_pools: vec!["a".into()], ..Default::default() };
        let all = L2AdvertisementSpec::default();
        let sel =
            LabelSelector { match_labels: Some([("zone".to_string(), "x".to_string())].into()), ..Default::default() };
        let by_label = L2AdvertisementSpec { ip_address_pool_selectors: vec![sel], ..Default::default() };
        let ads = vec![named.clone(), all.clone(), by_label.clone()];
        let labels: BTreeMap<String, String> = [("zone".to_string(), "x".to_string())].into();
        assert_eq!(ads_for_pool(&ads, Some("a"), None), vec![&named, &all]);
        assert_eq!(ads_for_pool(&ads, Some("b"), Some(&labels)), vec![&all, &by_label]);
    }

    #[test]
    fn decisions() {
        let step = Duration::from_millis(200);
        let el = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
        let held = |n: &str, alive: bool| Holder { node: Some(n.into()), alive };
        assert_eq!(decide("n2", &held("n2", true), &el, Duration::ZERO, step), Action::Keep);
        assert_eq!(decide("n2", &held("n2", true), &el[..1], Duration::ZERO, step), Action::Release);
        // Sticky: an alive eligible holder keeps it even if it is not ranked first.
        assert_eq!(decide("n1", &held("n2", true), &el, Duration::from_secs(9), step), Action::Wait);
        // Free: the first candidate at once, the next ones later.
        let free = Holder::default();
        assert_eq!(decide("n1", &free, &el, Duration::ZERO, step), Action::Acquire);
        assert_eq!(decide("n2", &free, &el, Duration::ZERO, step), Action::Wait);
        assert_eq!(decide("n2", &free, &el, step, step), Action::Acquire);
        // A dead holder is skipped in the ranking: n2 is then first.
        assert_eq!(decide("n2", &held("n1", false), &el, Duration::ZERO, step), Action::Acquire);
        assert_eq!(decide("n3", &held("n1", false), &el, Duration::ZERO, step), Action::Wait);
        // An ineligible holder, alive or not, gives way.
        assert_eq!(decide("n2", &held("n9", true), &el[1..], Duration::ZERO, step), Action::Acquire);
        // Not eligible: never takes it.
        assert_eq!(decide("n9", &free, &el, Duration::from_secs(60), step), Action::Wait);
    }
}
