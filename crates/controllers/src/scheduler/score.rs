//! Scoring the nodes that passed the filters, as upstream's default profile
//! does (`pkg/scheduler/apis/config/v1/default_plugins.go`): each plugin gives
//! every node 0..100, the weighted sum wins.
//!
//! | plugin | weight | rule |
//! |---|---|---|
//! | TaintToleration | 3 | fewer untolerated `PreferNoSchedule` taints |
//! | NodeAffinity | 2 | sum of matching preferred terms' weights |
//! | NodeResourcesFit (LeastAllocated) | 1 | free cpu/memory after placing the pod |
//! | NodeResourcesBalancedAllocation | 1 | cpu and memory used evenly |
//! | InterPodAffinity | 2 | preferred pod (anti-)affinity of both sides (`interpod.rs`) |
//! | PodTopologySpread | 2 | fewer matching pods in the node's domain (the pod's `ScheduleAnyway` constraints, else the system defaults: hostname maxSkew 3, zone maxSkew 5, over the pods of the same Service/ReplicaSet/StatefulSet) |
//!
//! Everything here is pure: the caller gathers nodes, their pods and the
//! selectors.

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// `framework.MaxNodeScore`.
pub const MAX_SCORE: i64 = 100;
/// `schedutil.DefaultMilliCPURequest`: what a container without a cpu request counts as.
const DEFAULT_MILLI_CPU: f64 = 100.0;
/// `schedutil.DefaultMemoryRequest` (200 MiB).
const DEFAULT_MEMORY: f64 = 200.0 * 1024.0 * 1024.0;

const WEIGHT_TAINT: i64 = 3;
const WEIGHT_AFFINITY: i64 = 2;
const WEIGHT_FIT: i64 = 1;
const WEIGHT_BALANCED: i64 = 1;
const WEIGHT_SPREAD: i64 = 2;

pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A node that passed the filters, with the pods on it (bound or assumed).
pub struct Candidate<'a> {
    pub node: &'a Node,
    pub pods: Vec<&'a Pod>,
}

/// A spreading constraint to score with.
#[derive(Debug, Clone)]
pub struct Spread {
    pub topology_key: String,
    pub max_skew: i64,
    pub selector: LabelSelector,
}

/// The constraints the pod is scored with: its own `ScheduleAnyway` ones, or,
/// if it has none at all, the system defaults over `default_selector` (the
/// selectors of the Services, ReplicaSets and StatefulSets that select it,
/// `helper.DefaultSelector`). Returns (constraints, system defaulted).
pub fn spread_constraints(pod: &Pod, default_selector: Option<LabelSelector>) -> (Vec<Spread>, bool) {
    let own = pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref());
    if let Some(own) = own.filter(|c| !c.is_empty()) {
        let list = own
            .iter()
            .filter(|c| c.when_unsatisfiable == "ScheduleAnyway")
            .map(|c| Spread {
                topology_key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew),
                selector: c.label_selector.clone().unwrap_or_default(),
            })
            .collect();
        return (list, false);
    }
    let Some(selector) = default_selector else { return (Vec::new(), true) };
    let list = [(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)]
        .into_iter()
        .map(|(k, skew)| Spread { topology_key: k.into(), max_skew: skew, selector: selector.clone() })
        .collect();
    (list, true)
}

fn quantity(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<f64> {
    q.and_then(apimachinery::quantity::value)
}

/// The pod's (cpu millicores, memory bytes) requests; with `non_zero`, a
/// container without a request counts as the scheduler's defaults
/// (`GetNonzeroRequests`).
pub fn requests(pod: &Pod, non_zero: bool) -> (f64, f64) {
    let Some(spec) = pod.spec.as_ref() else { return (0.0, 0.0) };
    let one = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let cpu = quantity(r.and_then(|r| r.get("cpu"))).map(|v| v * 1000.0);
        let mem = quantity(r.and_then(|r| r.get("memory")));
        if non_zero {
            (cpu.unwrap_or(DEFAULT_MILLI_CPU), mem.unwrap_or(DEFAULT_MEMORY))
        } else {
            (cpu.unwrap_or(0.0), mem.unwrap_or(0.0))
        }
    };
    let (mut cpu, mut mem) = (0.0, 0.0);
    for c in &spec.containers {
        let (a, b) = one(c);
        cpu += a;
        mem += b;
    }
    for c in spec.init_containers.iter().flatten() {
        let (a, b) = one(c);
        cpu = f64::max(cpu, a);
        mem = f64::max(mem, b);
    }
    (cpu, mem)
}

/// (cpu millicores, memory bytes) allocatable on the node.
fn allocatable(node: &Node) -> (f64, f64) {
    let a = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let cpu = quantity(a.and_then(|a| a.get("cpu"))).map(|v| v * 1000.0).unwrap_or(0.0);
    let mem = quantity(a.and_then(|a| a.get("memory"))).unwrap_or(0.0);
    (cpu, mem)
}

/// `leastRequestedScore`.
fn least_requested(requested: f64, capacity: f64) -> i64 {
    if capacity <= 0.0 || requested > capacity {
        return 0;
    }
    (((capacity - requested) * MAX_SCORE as f64) / capacity) as i64
}

/// NodeResourcesFit with the LeastAllocated strategy (cpu and memory, weight 1 each).
pub fn least_allocated(pod: &Pod, c: &Candidate<'_>) -> i64 {
    let (cap_cpu, cap_mem) = allocatable(c.node);
    let (mut cpu, mut mem) = requests(pod, true);
    for p in &c.pods {
        let (a, b) = requests(p, true);
        cpu += a;
        mem += b;
    }
    let scores: Vec<i64> = [(cpu, cap_cpu), (mem, cap_mem)]
        .into_iter()
        .filter(|(_, cap)| *cap > 0.0)
        .map(|(r, cap)| least_requested(r, cap))
        .collect();
    if scores.is_empty() {
        0
    } else {
        scores.iter().sum::<i64>() / scores.len() as i64
    }
}

/// NodeResourcesBalancedAllocation (`balancedResourceScorer`), on actual requests.
pub fn balanced_allocation(pod: &Pod, c: &Candidate<'_>) -> i64 {
    let (cap_cpu, cap_mem) = allocatable(c.node);
    let (mut cpu, mut mem) = requests(pod, false);
    for p in &c.pods {
        let (a, b) = requests(p, false);
        cpu += a;
        mem += b;
    }
    let fractions: Vec<f64> = [(cpu, cap_cpu), (mem, cap_mem)]
        .into_iter()
        .filter(|(_, cap)| *cap > 0.0)
        .map(|(r, cap)| (r / cap).min(1.0))
        .collect();
    let std = if fractions.len() == 2 { ((fractions[0] - fractions[1]) / 2.0).abs() } else { 0.0 };
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// Untolerated `PreferNoSchedule` taints (TaintToleration's raw score).
fn intolerable_prefer_no_schedule(pod: &Pod, node: &Node) -> i64 {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|tol| super::tolerates(tol, t)))
        .count() as i64
}

/// NodeAffinity's raw score: the weights of the preferred terms the node matches.
fn preferred_affinity(pod: &Pod, node: &Node) -> i64 {
    let terms = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref());
    terms.into_iter().flatten().filter(|t| super::term_matches(&t.preference, node)).map(|t| i64::from(t.weight)).sum()
}

/// `helper.DefaultNormalizeScore`: scale to 0..100 by the maximum, reversed if asked.
fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = match (max, reverse) {
            (0, true) => MAX_SCORE,
            (0, false) => 0,
            (m, false) => MAX_SCORE * *s / m,
            (m, true) => MAX_SCORE - MAX_SCORE * *s / m,
        };
    }
}

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// PodTopologySpread's scores (`scoring.go`: `scoreForCount` summed over the
/// constraints, then `NormalizeScore`), already 0..100.
pub fn topology_spread(
    pod: &Pod,
    candidates: &[Candidate<'_>],
    constraints: &[Spread],
    system_default: bool,
) -> Vec<i64> {
    if constraints.is_empty() {
        return vec![0; candidates.len()];
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    // With the pod's own constraints every node must carry every key.
    let require_all = !system_default;
    let ignored: Vec<bool> = candidates
        .iter()
        .map(|c| require_all && constraints.iter().any(|s| label(c.node, &s.topology_key).is_none()))
        .collect();
    let mut raw = vec![0f64; candidates.len()];
    for s in constraints {
        // Matching pods per domain value, over the scored nodes.
        let mut per_domain: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for (i, c) in candidates.iter().enumerate() {
            if ignored[i] {
                continue;
            }
            let Some(domain) = label(c.node, &s.topology_key) else { continue };
            let n = c
                .pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.metadata.namespace.as_deref().unwrap_or_default() == ns)
                .filter(|p| crate::util::selector_matches(&s.selector, p.metadata.labels.as_ref()))
                .count() as i64;
            *per_domain.entry(domain).or_default() += n;
        }
        // `topologyNormalizingWeight`: log(size + 2).
        let weight = ((per_domain.len() + 2) as f64).ln();
        for (i, c) in candidates.iter().enumerate() {
            if ignored[i] {
                continue;
            }
            let Some(domain) = label(c.node, &s.topology_key) else { continue };
            let count = per_domain.get(domain).copied().unwrap_or(0);
            raw[i] += count as f64 * weight + (s.max_skew - 1) as f64;
        }
    }
    let scores: Vec<i64> = raw.iter().map(|r| r.round() as i64).collect();
    let live = scores.iter().zip(&ignored).filter(|(_, ig)| !**ig).map(|(s, _)| *s);
    let min = live.clone().min().unwrap_or(0);
    let max = live.max().unwrap_or(0);
    scores
        .iter()
        .zip(&ignored)
        .map(|(s, ig)| match (*ig, max) {
            (true, _) => 0,
            (false, 0) => MAX_SCORE,
            (false, m) => MAX_SCORE * (m + min - s) / m,
        })
        .collect()
}

/// The weighted total of every plugin, per candidate.
pub fn totals(pod: &Pod, candidates: &[Candidate<'_>], constraints: &[Spread], system_default: bool) -> Vec<i64> {
    let mut taint: Vec<i64> = candidates.iter().map(|c| intolerable_prefer_no_schedule(pod, c.node)).collect();
    default_normalize(&mut taint, true);
    let mut affinity: Vec<i64> = candidates.iter().map(|c| preferred_affinity(pod, c.node)).collect();
    default_normalize(&mut affinity, false);
    let spread = topology_spread(pod, candidates, constraints, system_default);
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            WEIGHT_TAINT * taint[i]
                + WEIGHT_AFFINITY * affinity[i]
                + WEIGHT_FIT * least_allocated(pod, c)
                + WEIGHT_BALANCED * balanced_allocation(pod, c)
                + WEIGHT_SPREAD * spread[i]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str, mem: &str, extra: serde_json::Value) -> Node {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}},
        });
        if let Some(m) = extra.as_object() {
            for (k, x) in m {
                v[k] = x.clone();
            }
        }
        serde_json::from_value(v).expect("node")
    }

    fn pod(labels: serde_json::Value, cpu: Option<&str>, mem: Option<&str>) -> Pod {
        let mut requests = serde_json::Map::new();
        if let Some(c) = cpu {
            requests.insert("cpu".into(), json!(c));
        }
        if let Some(m) = mem {
            requests.insert("memory".into(), json!(m));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": requests}}]},
        }))
        .expect("pod")
    }

    // Upstream least_allocated_test.go: "nothing scheduled, resources requested,
    // differently sized nodes": cpu 3000m/mem 5000 on 4000m/10000 and 6000m/10000.
    #[test]
    fn least_allocated_matches_upstream() {
        let p = pod(json!({}), Some("3"), Some("5000"));
        let n1 = node("n1", "4", "10000", json!({}));
        let n2 = node("n2", "6", "10000", json!({}));
        // ((4000-3000)*100/4000 + (10000-5000)*100/10000) / 2 = (25 + 50) / 2 = 37
        assert_eq!(least_allocated(&p, &Candidate { node: &n1, pods: vec![] }), 37);
        // ((6000-3000)*100/6000 + 50) / 2 = 50
        assert_eq!(least_allocated(&p, &Candidate { node: &n2, pods: vec![] }), 50);
        // Requests beyond capacity score 0 for that resource.
        let big = pod(json!({}), Some("5"), Some("5000"));
        assert_eq!(least_allocated(&big, &Candidate { node: &n1, pods: vec![] }), 25);
    }

    // Upstream balanced_allocation_test.go: cpu 3000/4000 vs mem 5000/10000
    // fractions 0.75 and 0.5, std 0.125 -> 87.
    #[test]
    fn balanced_allocation_matches_upstream() {
        let p = pod(json!({}), Some("3"), Some("5000"));
        let n1 = node("n1", "4", "10000", json!({}));
        assert_eq!(balanced_allocation(&p, &Candidate { node: &n1, pods: vec![] }), 87);
        let even = pod(json!({}), Some("2"), Some("5000"));
        assert_eq!(balanced_allocation(&even, &Candidate { node: &n1, pods: vec![] }), 100);
    }

    #[test]
    fn replicas_spread_over_nodes_by_default() {
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "web"}})).expect("sel");
        let incoming = pod(json!({"app": "web"}), None, None);
        let (constraints, defaulted) = spread_constraints(&incoming, Some(sel));
        assert!(defaulted);
        assert_eq!(constraints.len(), 2);
        let n1 = node("n1", "4", "8Gi", json!({}));
        let n2 = node("n2", "4", "8Gi", json!({}));
        let web = pod(json!({"app": "web"}), None, None);
        let other = pod(json!({"app": "db"}), None, None);
        // n1 already runs two replicas (and an unrelated pod on n2).
        let cands = vec![Candidate { node: &n1, pods: vec![&web, &web] }, Candidate { node: &n2, pods: vec![&other] }];
        let spread = topology_spread(&incoming, &cands, &constraints, defaulted);
        assert!(spread[1] > spread[0], "{spread:?}");
        assert_eq!(spread[1], MAX_SCORE);
        let totals = totals(&incoming, &cands, &constraints, defaulted);
        assert!(totals[1] > totals[0], "{totals:?}");
        // No selector (a bare pod): spreading does not score.
        let (none, _) = spread_constraints(&incoming, None);
        assert_eq!(topology_spread(&incoming, &cands, &none, true), vec![0, 0]);
    }

    #[test]
    fn preferred_affinity_and_prefer_no_schedule_taints() {
        let mut p = pod(json!({}), None, None);
        p.spec.as_mut().expect("spec").affinity = Some(
            serde_json::from_value(json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}
            ]}}))
            .expect("affinity"),
        );
        let ssd = node("ssd", "4", "8Gi", json!({"metadata": {"name": "ssd", "labels": {"disk": "ssd"}}}));
        let plain = node("plain", "4", "8Gi", json!({}));
        let tainted = node(
            "tainted",
            "4",
            "8Gi",
            json!({"metadata": {"name": "tainted", "labels": {"disk": "ssd"}}, "spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
        );
        let cands = vec![
            Candidate { node: &ssd, pods: vec![] },
            Candidate { node: &plain, pods: vec![] },
            Candidate { node: &tainted, pods: vec![] },
        ];
        let t = totals(&p, &cands, &[], true);
        assert!(t[0] > t[1], "preferred node wins: {t:?}");
        assert!(t[0] > t[2], "the untainted one of the preferred: {t:?}");
    }
}
