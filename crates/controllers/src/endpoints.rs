//! Endpoints controller (upstream `pkg/controller/endpoint/endpoints_controller.go`,
//! `pkg/api/v1/endpoints/util.go` for the subset packing,
//! `staging/src/k8s.io/endpointslice/util` for the pod rules): for every
//! Service with a selector, an Endpoints object of the same name listing the
//! pods it selects, ready ones in `addresses` and the others in
//! `notReadyAddresses`. Deleted with its Service.

use crate::events::{Recorder, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, util, Ctx, SyncError};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

const COMPONENT: &str = "endpoint-controller";
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Upstream `maxCapacity`: addresses kept in one Endpoints object.
const MAX_CAPACITY: usize = 1000;

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Epc {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("endpoint")),
        tracker: TriggerTimeTracker::default(),
        recorder,
    });
    ctx.inf.services.on_change_weak(&c, |h, old, new| {
        if let Some(s) = new.or(old) {
            h.queue.add(Key::of(s));
        }
    });
    ctx.inf.pods.on_change_weak(&c, |h, old, new| {
        if let (Some(o), Some(n)) = (old, new) {
            if o.metadata.resource_version == n.metadata.resource_version {
                return;
            }
        }
        for key in services_for_pods(&h.inf, old, new) {
            h.queue.add(key);
        }
    });
    ctx.inf.endpoints.on_change_weak(&c, |h, old, new| {
        // A deleted Endpoints object is recreated if its Service still wants it.
        if let (Some(ep), None) = (old, new) {
            h.queue.add(Key::of(ep));
        }
    });
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
        // `checkLeftoverEndpoints`: Endpoints whose Service is gone get deleted.
        for ep in c.inf.endpoints.list() {
            if ep.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(LEADER_ANNOTATION)) {
                continue;
            }
            c.queue.add(Key::of(&*ep));
        }
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

/// The Services (with a selector) selecting the old or new version of a pod.
pub(crate) fn services_for_pods(inf: &crate::informer::Informers, old: Option<&Pod>, new: Option<&Pod>) -> Vec<Key> {
    let Some(ns) = new.or(old).and_then(|p| p.metadata.namespace.clone()) else { return Vec::new() };
    let mut keys = Vec::new();
    for svc in inf.services.list_ns(&ns) {
        let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else { continue };
        let selects = |p: Option<&Pod>| p.is_some_and(|p| util::map_selector_matches(sel, p.metadata.labels.as_ref()));
        if selects(old) || selects(new) {
            keys.push(Key::of(&*svc));
        }
    }
    keys
}

struct Epc {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    tracker: TriggerTimeTracker,
    recorder: Recorder,
}

impl Epc {
    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(svc) = self.inf.services.get_key(key) else {
            // The Service is gone: so is its Endpoints object.
            match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
            self.tracker.delete(key);
            return Ok(());
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            return Ok(());
        }
        let Some(selector) = spec.selector.as_ref() else { return Ok(()) };
        let pods: Vec<Arc<Pod>> = self.inf.pods_selected_by(&key.namespace, selector);
        let trigger = self.tracker.compute(key, &svc, &pods);
        let publish = spec.publish_not_ready_addresses.unwrap_or(false);
        let ports = spec.ports.clone().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let mut subsets = Vec::new();
        for pod in &pods {
            if !should_pod_be_in_endpoints(pod, publish) {
                continue;
            }
            let Some(mut epa) = pod_to_address(&svc, pod) else { continue };
            if should_set_hostname(pod, &svc) {
                epa.hostname = pod.spec.as_ref().and_then(|s| s.hostname.clone());
            }
            if ports.is_empty() {
                if headless {
                    add_subset(&mut subsets, pod, epa, None, publish);
                }
                continue;
            }
            for sp in &ports {
                let Some(port) = find_port(pod, sp) else { continue };
                let epp = EndpointPort {
                    name: sp.name.clone(),
                    port,
                    protocol: sp.protocol.clone(),
                    app_protocol: sp.app_protocol.clone(),
                };
                add_subset(&mut subsets, pod, epa.clone(), Some(epp), publish);
            }
        }
        let subsets = repack_subsets(subsets);
        let svc_labels = svc.metadata.labels.clone().unwrap_or_default();
        let current = self.inf.endpoints.get_key(key);
        if let Some(cur) = &current {
            let mut labels = cur.metadata.labels.clone().unwrap_or_default();
            labels.remove(HEADLESS_LABEL);
            let same_subsets = strip_rv(cur.subsets.clone().unwrap_or_default()) == subsets;
            if same_subsets && labels == svc_labels && capacity_annotation_ok(cur) {
                self.tracker.commit(trigger);
                return Ok(());
            }
        }
        let mut ep = match &current {
            Some(cur) => (**cur).clone(),
            None => Endpoints {
                metadata: ObjectMeta {
                    name: Some(key.name.clone()),
                    namespace: Some(key.namespace.clone()),
                    ..Default::default()
                },
                subsets: None,
            },
        };
        ep.subsets = (!subsets.is_empty()).then_some(subsets);
        let mut labels = svc_labels;
        let annotations = ep.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match &trigger.time {
            Some(t) => {
                annotations.insert(TRIGGER_TIME_ANNOTATION.into(), format_time(t));
            }
            None => {
                annotations.remove(TRIGGER_TIME_ANNOTATION);
            }
        }
        if truncate_endpoints(&mut ep) {
            ep.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
        } else if let Some(a) = ep.metadata.annotations.as_mut() {
            a.remove(OVER_CAPACITY_ANNOTATION);
        }
        if ep.metadata.annotations.as_ref().is_some_and(|a| a.is_empty()) {
            ep.metadata.annotations = None;
        }
        if is_service_ip_set(&svc) {
            labels.remove(HEADLESS_LABEL);
        } else {
            labels.insert(HEADLESS_LABEL.into(), String::new());
        }
        ep.metadata.labels = (!labels.is_empty()).then_some(labels);
        let creating = current.is_none();
        let result = match current {
            None => api.create(&PostParams::default(), &ep).await,
            Some(_) => api.replace(&key.name, &PostParams::default(), &ep).await,
        };
        if let Err(e) = result {
            // The namespace is going away: creates keep failing, drop the item.
            if creating && util::is_namespace_terminating(&e) {
                return Ok(());
            }
            let (reason, msg) = if creating {
                (
                    "FailedToCreateEndpoint",
                    format!("Failed to create endpoint for service {key}: {}", util::api_message(&e)),
                )
            } else {
                ("FailedToUpdateEndpoint", format!("Failed to update endpoint {key}: {}", util::api_message(&e)))
            };
            if !util::is_conflict(&e) {
                self.recorder.event(&ep, WARNING, reason, msg);
            }
            return Err(e.into());
        }
        self.tracker.commit(trigger);
        Ok(())
    }
}

/// RFC 3339 with nanoseconds trimmed, as Go's `time.RFC3339Nano`.
pub(crate) fn format_time(t: &Time) -> String {
    t.0.to_string()
}

/// `ShouldPodBeInEndpoints`.
pub(crate) fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if util::is_pod_terminal(pod) {
        return false;
    }
    if util::pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// `ShouldSetHostname`: the pod's `hostname` under a `subdomain` equal to the Service.
pub(crate) fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.hostname.as_deref()).is_some_and(|h| !h.is_empty())
        && spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
        && svc.metadata.namespace == pod.metadata.namespace
}

/// `IsServiceIPSet`: a ClusterIP other than `None`.
pub(crate) fn is_service_ip_set(svc: &Service) -> bool {
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or_default();
    !ip.is_empty() && ip != "None"
}

/// `podutil.FindPort`: the service port's targetPort on this pod (a named
/// port is looked up in the containers', and restartable init containers',
/// ports with the same protocol).
pub(crate) fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars =
                spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers.iter().chain(sidecars).flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                    .then_some(p.container_port)
            })
        }
    }
}

fn is_ipv6(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_ipv6())
}

/// The IP family the Service's endpoints use (`podToEndpointAddressForService`).
pub(crate) fn service_family_v6(svc: &Service, pod: &Pod) -> bool {
    let spec = svc.spec.as_ref();
    if let Some(f) = spec.and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first()) {
        return f == "IPv6";
    }
    match spec.and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() && ip != "None" => is_ipv6(ip),
        _ => pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).is_some_and(is_ipv6),
    }
}

pub(crate) fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// `podToEndpointAddressForService`.
fn pod_to_address(svc: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let v6 = service_family_v6(svc, pod);
    let ip = util::pod_ips(pod).into_iter().find(|ip| is_ipv6(ip) == v6)?;
    let node = util::node_name(pod);
    Some(EndpointAddress {
        ip,
        hostname: None,
        node_name: (!node.is_empty()).then(|| node.to_string()),
        target_ref: Some(pod_ref(pod)),
    })
}

/// `addEndpointSubset`.
fn add_subset(
    subsets: &mut Vec<EndpointSubset>,
    pod: &Pod,
    epa: EndpointAddress,
    epp: Option<EndpointPort>,
    tolerate_unready: bool,
) {
    let ports = epp.map(|p| vec![p]);
    if tolerate_unready || util::is_pod_ready(pod) {
        subsets.push(EndpointSubset { addresses: Some(vec![epa]), not_ready_addresses: None, ports });
    } else {
        subsets.push(EndpointSubset { addresses: None, not_ready_addresses: Some(vec![epa]), ports });
    }
}

fn addr_key(a: &EndpointAddress) -> (String, String) {
    (a.ip.clone(), a.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default())
}

type PortKey = (Option<String>, i32, Option<String>, Option<String>);
/// An address set: (ip, target uid) and whether it is ready.
type AddressSet = Vec<((String, String), bool)>;

fn port_key(p: &EndpointPort) -> PortKey {
    (p.name.clone(), p.port, p.protocol.clone(), p.app_protocol.clone())
}

/// `RepackSubsets`: groups addresses that offer the same ports into one
/// subset (an address is ready for a port if any subset says so), sorted.
pub(crate) fn repack_subsets(subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    let mut all: BTreeMap<(String, String), EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<PortKey, BTreeMap<(String, String), bool>> = BTreeMap::new();
    let mut port_of: HashMap<PortKey, EndpointPort> = HashMap::new();
    for s in subsets {
        let ports = match s.ports.as_ref().filter(|p| !p.is_empty()) {
            Some(p) => p.clone(),
            // A sentinel keeps addresses without ports.
            None => vec![EndpointPort { port: -1, ..Default::default() }],
        };
        for port in &ports {
            let pk = port_key(port);
            port_of.entry(pk.clone()).or_insert_with(|| port.clone());
            let set = by_port.entry(pk).or_default();
            for (addr, ready) in s
                .addresses
                .iter()
                .flatten()
                .map(|a| (a, true))
                .chain(s.not_ready_addresses.iter().flatten().map(|a| (a, false)))
            {
                let k = addr_key(addr);
                all.entry(k.clone()).or_insert_with(|| addr.clone());
                let e = set.entry(k).or_insert(ready);
                if !*e {
                    *e = ready;
                }
            }
        }
    }
    // Ports that share an address set share a subset.
    let mut groups: BTreeMap<AddressSet, Vec<EndpointPort>> = BTreeMap::new();
    for (pk, set) in by_port {
        let key: AddressSet = set.into_iter().collect();
        let ports = groups.entry(key).or_default();
        if pk.1 > 0 {
            if let Some(p) = port_of.remove(&pk) {
                ports.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for (set, ports) in groups {
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for (k, r) in set {
            if let Some(a) = all.get(&k) {
                if r {
                    ready.push(a.clone());
                } else {
                    not_ready.push(a.clone());
                }
            }
        }
        out.push(EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        });
    }
    out
}

/// Subsets as written by a controller that set targetRef resourceVersions.
fn strip_rv(mut subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    for s in &mut subsets {
        for a in s.addresses.iter_mut().flatten().chain(s.not_ready_addresses.iter_mut().flatten()) {
            if let Some(r) = a.target_ref.as_mut() {
                r.resource_version = None;
            }
        }
    }
    subsets
}

fn count_addresses(ep: &Endpoints) -> (usize, usize) {
    ep.subsets.iter().flatten().fold((0, 0), |(r, n), s| {
        (r + s.addresses.as_ref().map_or(0, Vec::len), n + s.not_ready_addresses.as_ref().map_or(0, Vec::len))
    })
}

/// `capacityAnnotationSetCorrectly`.
fn capacity_annotation_ok(ep: &Endpoints) -> bool {
    let (r, n) = count_addresses(ep);
    if r + n > MAX_CAPACITY {
        return false;
    }
    !ep.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(OVER_CAPACITY_ANNOTATION))
}

/// `truncateEndpoints`: at most 1000 addresses, not-ready ones dropped first,
/// each subset keeping its proportion.
fn truncate_endpoints(ep: &mut Endpoints) -> bool {
    let (total_ready, total_not_ready) = count_addresses(ep);
    if total_ready + total_not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_CAPACITY;
    let (max, num_total) =
        if truncate_ready { (MAX_CAPACITY, total_ready) } else { (MAX_CAPACITY - total_ready, total_not_ready) };
    let mut can_be_added = max;
    for s in ep.subsets.iter_mut().flatten() {
        let n = if truncate_ready {
            s.addresses.as_ref().map_or(0, Vec::len)
        } else {
            s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        };
        let to_add = ((n as f64 / num_total as f64) * max as f64).ceil() as usize;
        let to_add = to_add.min(can_be_added);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(to_add);
                can_be_added -= a.len();
            }
            s.not_ready_addresses = None;
        } else if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(to_add);
            can_be_added -= a.len();
        }
    }
    true
}

/// Upstream `TriggerTimeTracker` (`pkg/controller/util/endpoint`): the time
/// of the earliest change (a pod's Ready transition, the Service's creation)
/// not yet reflected in the Endpoints, for the last-change-trigger-time
/// annotation.
#[derive(Default)]
pub(crate) struct TriggerTimeTracker {
    states: Mutex<HashMap<Key, TrackerState>>,
}

#[derive(Default)]
struct TrackerState {
    pods: HashMap<String, Timestamp>,
    service: Option<Timestamp>,
}

/// A computed trigger time and the tracker state to keep once the write
/// that carries it succeeded.
pub(crate) struct Trigger {
    pub time: Option<Time>,
    key: Key,
    state: TrackerState,
}

impl TriggerTimeTracker {
    /// `ComputeEndpointLastChangeTriggerTime`. The state is only kept by
    /// [`TriggerTimeTracker::commit`] (upstream keeps it at once, so a write
    /// that fails loses the trigger time).
    pub fn compute(&self, key: &Key, svc: &Service, pods: &[Arc<Pod>]) -> Trigger {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let known = states.get(key);
        let mut min_changed: Option<Timestamp> = None;
        let mut state = TrackerState::default();
        for pod in pods {
            let Some(t) = util::ready_condition(pod).and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0) else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if known.and_then(|k| k.pods.get(&name)).is_none_or(|last| t > *last) {
                min_changed = Some(min_changed.map_or(t, |m| m.min(t)));
            }
            state.pods.insert(name, t);
        }
        let svc_time = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(t) = svc_time {
            if known.and_then(|k| k.service).is_none_or(|last| t > last) {
                min_changed = Some(min_changed.map_or(t, |m| m.min(t)));
            }
        }
        state.service = svc_time;
        let time = if known.is_none() { svc.metadata.creation_timestamp.clone() } else { min_changed.map(Time) };
        Trigger { time, key: key.clone(), state }
    }

    pub fn commit(&self, trigger: Trigger) {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).insert(trigger.key, trigger.state);
    }

    pub fn delete(&self, key: &Key) {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addr(ip: &str, uid: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            target_ref: Some(ObjectReference { uid: Some(uid.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    fn port(name: &str, p: i32) -> EndpointPort {
        EndpointPort { name: Some(name.into()), port: p, protocol: Some("TCP".into()), app_protocol: None }
    }

    #[test]
    fn repack_merges_addresses_and_ports() {
        let subsets = vec![
            EndpointSubset {
                addresses: Some(vec![addr("10.0.0.2", "b")]),
                ports: Some(vec![port("http", 80)]),
                ..Default::default()
            },
            EndpointSubset {
                addresses: Some(vec![addr("10.0.0.1", "a")]),
                ports: Some(vec![port("http", 80)]),
                ..Default::default()
            },
            EndpointSubset {
                not_ready_addresses: Some(vec![addr("10.0.0.3", "c")]),
                ports: Some(vec![port("http", 80)]),
                ..Default::default()
            },
            EndpointSubset {
                addresses: Some(vec![addr("10.0.0.1", "a")]),
                ports: Some(vec![port("https", 443)]),
                ..Default::default()
            },
        ];
        let out = repack_subsets(subsets);
        assert_eq!(out.len(), 2, "{out:?}");
        let http = out.iter().find(|s| s.ports.as_ref().is_some_and(|p| p[0].port == 80)).expect("http subset");
        let ips: Vec<&str> = http.addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, vec!["10.0.0.1", "10.0.0.2"]);
        assert_eq!(http.not_ready_addresses.as_ref().map(Vec::len), Some(1));
        // Ready wins over not-ready for the same address and port.
        let again = repack_subsets(vec![
            EndpointSubset {
                not_ready_addresses: Some(vec![addr("10.0.0.1", "a")]),
                ports: Some(vec![port("http", 80)]),
                ..Default::default()
            },
            EndpointSubset {
                addresses: Some(vec![addr("10.0.0.1", "a")]),
                ports: Some(vec![port("http", 80)]),
                ..Default::default()
            },
        ]);
        assert_eq!(again.len(), 1);
        assert!(again[0].not_ready_addresses.is_none());
        assert!(repack_subsets(Vec::new()).is_empty());
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}]}
        }))
        .expect("pod");
        let sp = |t: IntOrString| ServicePort {
            port: 80,
            target_port: Some(t),
            protocol: Some("TCP".into()),
            ..Default::default()
        };
        assert_eq!(find_port(&pod, &sp(IntOrString::String("web".into()))), Some(8080));
        assert_eq!(find_port(&pod, &sp(IntOrString::String("other".into()))), None);
        assert_eq!(find_port(&pod, &sp(IntOrString::Int(9000))), Some(9000));
        let mut udp = sp(IntOrString::String("web".into()));
        udp.protocol = Some("UDP".into());
        assert_eq!(find_port(&pod, &udp), None);
    }

    #[test]
    fn truncation_keeps_ready_addresses_first() {
        let ready: Vec<EndpointAddress> =
            (0..900).map(|i| addr(&format!("10.0.{}.{}", i / 250, i % 250), &i.to_string())).collect();
        let not_ready: Vec<EndpointAddress> =
            (0..300).map(|i| addr(&format!("10.1.{}.{}", i / 250, i % 250), &format!("n{i}"))).collect();
        let mut ep = Endpoints {
            subsets: Some(vec![EndpointSubset {
                addresses: Some(ready),
                not_ready_addresses: Some(not_ready),
                ports: None,
            }]),
            ..Default::default()
        };
        assert!(truncate_endpoints(&mut ep));
        assert_eq!(count_addresses(&ep), (900, 100));
    }
}
