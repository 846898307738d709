//! EndpointSlice controller (upstream `pkg/controller/endpointslice/` and
//! `staging/src/k8s.io/endpointslice/reconciler.go`): for every Service with
//! a selector, EndpointSlices (`<service>-xxxxx`, at most
//! `--max-endpoints-per-slice` endpoints each, grouped by the set of ports the
//! pods resolve) labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`,
//! owned by the Service. A Service without endpoints gets one empty
//! placeholder slice.

use crate::endpoints::{
    find_port, format_time, is_service_ip_set, pod_ref, should_pod_be_in_endpoints, should_set_hostname,
    TriggerTimeTracker, HEADLESS_LABEL, TRIGGER_TIME_ANNOTATION,
};
use crate::events::{Recorder, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, util, Ctx, SyncError};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const COMPONENT: &str = "endpoint-slice-controller";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Esc {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("endpointslice")),
        triggers: TriggerTimeTracker::default(),
        tracker: SliceTracker::default(),
        recorder,
        max_per_slice: ctx.config.max_endpoints_per_slice.max(1),
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
        for key in crate::endpoints::services_for_pods(&h.inf, old, new) {
            h.queue.add(key);
        }
    });
    ctx.inf.slices.on_change_weak(&c, |h, old, new| {
        let Some(slice) = new.or(old) else { return };
        if label(slice, LABEL_MANAGED_BY) != Some(CONTROLLER_NAME) {
            return;
        }
        let Some(svc) = label(slice, LABEL_SERVICE_NAME) else { return };
        let key = Key::new(slice.metadata.namespace.as_deref().unwrap_or_default(), svc);
        h.tracker.observe(&key, slice, new.is_none());
        h.queue.add(key);
    });
    ctx.inf.nodes.on_change_weak(&c, |h, old, new| {
        // Pods on a node not seen yet were left out; a node's zone is in its endpoints.
        let zone_changed = old.and_then(|o| o.metadata.labels.as_ref()?.get(LABEL_ZONE).cloned())
            != new.and_then(|n| n.metadata.labels.as_ref()?.get(LABEL_ZONE).cloned());
        if old.is_none() || new.is_none() || zone_changed {
            for svc in h.inf.services.list() {
                h.queue.add(Key::of(&*svc));
            }
        }
    });
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
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

pub(crate) fn label<'a>(slice: &'a EndpointSlice, key: &str) -> Option<&'a str> {
    slice.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Slices this controller wrote or deleted but the store has not shown yet
/// (upstream `EndpointSliceTracker`, which compares generations; here the
/// resourceVersion returned by the write).
#[derive(Default)]
pub(crate) struct SliceTracker {
    inner: Mutex<Tracked>,
}

/// Per Service, per slice name: the resourceVersion written (`None`: deleted) and when.
type Tracked = HashMap<Key, HashMap<String, (Option<u64>, Instant)>>;

/// How long an unconfirmed write is waited for before it is ignored.
const TRACKER_TIMEOUT: Duration = Duration::from_secs(60);

fn rv(slice: &EndpointSlice) -> Option<u64> {
    slice.metadata.resource_version.as_deref()?.parse().ok()
}

impl SliceTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slice was created or updated by us.
    pub fn written(&self, svc: &Key, slice: &EndpointSlice) {
        let (Some(name), Some(rv)) = (slice.metadata.name.clone(), rv(slice)) else { return };
        self.lock().entry(svc.clone()).or_default().insert(name, (Some(rv), Instant::now()));
    }

    /// A slice was deleted by us.
    pub fn expect_deletion(&self, svc: &Key, name: &str) {
        self.lock().entry(svc.clone()).or_default().insert(name.to_string(), (None, Instant::now()));
    }

    /// The store shows `slice` (or its deletion).
    pub fn observe(&self, svc: &Key, slice: &EndpointSlice, deleted: bool) {
        let mut inner = self.lock();
        let Some(m) = inner.get_mut(svc) else { return };
        let Some(name) = slice.metadata.name.as_deref() else { return };
        let done = match m.get(name) {
            None => false,
            Some((_, _)) if deleted => true,
            Some((Some(want), _)) => rv(slice).is_some_and(|have| have >= *want),
            Some((None, _)) => false,
        };
        if done {
            m.remove(name);
        }
        if m.is_empty() {
            inner.remove(svc);
        }
    }

    /// Whether the store is behind what we wrote for `svc`.
    pub fn stale(&self, svc: &Key, slices: &[Arc<EndpointSlice>]) -> bool {
        let inner = self.lock();
        let Some(m) = inner.get(svc) else { return false };
        m.iter().any(|(name, (want, at))| {
            if at.elapsed() > TRACKER_TIMEOUT {
                return false;
            }
            let have = slices.iter().find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            match (want, have) {
                (Some(w), Some(s)) => rv(s).is_some_and(|r| r < *w),
                (Some(_), None) => true,
                (None, Some(_)) => true,
                (None, None) => false,
            }
        })
    }

    pub fn delete_service(&self, svc: &Key) {
        self.lock().remove(svc);
    }
}

struct Esc {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    triggers: TriggerTimeTracker,
    tracker: SliceTracker,
    recorder: Recorder,
    max_per_slice: usize,
}

/// Identity of an endpoint in a set (upstream `hashEndpoint`): addresses,
/// hostname and target pod.
type EndpointId = (Vec<String>, Option<String>, Option<String>, Option<String>);

fn endpoint_id(ep: &Endpoint) -> EndpointId {
    let mut addresses = ep.addresses.clone();
    addresses.sort();
    let r = ep.target_ref.as_ref();
    (addresses, ep.hostname.clone(), r.and_then(|r| r.namespace.clone()), r.and_then(|r| r.name.clone()))
}

/// `EndpointsEqualBeyondHash`.
fn endpoint_equal(a: &Endpoint, b: &Endpoint) -> bool {
    let strip = |r: &Option<k8s_openapi::api::core::v1::ObjectReference>| {
        r.clone().map(|mut r| {
            r.resource_version = None;
            r
        })
    };
    let cond = |e: &Endpoint| {
        let c = e.conditions.clone().unwrap_or_default();
        (c.ready, c.serving, c.terminating)
    };
    a.node_name == b.node_name && a.zone == b.zone && cond(a) == cond(b) && strip(&a.target_ref) == strip(&b.target_ref)
}

/// A canonical key of a port list (upstream `NewPortMapKey`).
fn port_map_key(ports: &[EndpointPort]) -> String {
    let mut v: Vec<String> =
        ports.iter().map(|p| format!("{:?}", (&p.name, p.port, &p.protocol, &p.app_protocol))).collect();
    v.sort();
    v.join(",")
}

/// `getEndpointPorts`: the service ports this pod serves.
fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    if ports.is_empty() && spec.cluster_ip.as_deref() == Some("None") {
        return Vec::new();
    }
    ports
        .iter()
        .filter_map(|sp| {
            let port = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// `podToEndpoint`.
fn pod_to_endpoint(pod: &Pod, zone: Option<String>, svc: &Service, address_type: &str) -> Endpoint {
    let serving = util::is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let ready = publish || (serving && !terminating);
    let v6 = address_type == "IPv6";
    let addresses = util::pod_ips(pod)
        .into_iter()
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_ipv6() == v6))
        .collect();
    let node = util::node_name(pod);
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(pod_ref(pod)),
        node_name: (!node.is_empty()).then(|| node.to_string()),
        zone,
        hostname: should_set_hostname(pod, svc).then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone())).flatten(),
        ..Default::default()
    }
}

/// `setEndpointSliceLabels`: the Service's labels plus the reserved ones;
/// also whether the user labels differ from the Service's.
fn slice_labels(slice_labels: Option<&BTreeMap<String, String>>, svc: &Service) -> (BTreeMap<String, String>, bool) {
    let reserved = |k: &str| k == LABEL_SERVICE_NAME || k == LABEL_MANAGED_BY || k == HEADLESS_LABEL;
    let ep: BTreeMap<String, String> =
        slice_labels.into_iter().flatten().filter(|(k, _)| !reserved(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !reserved(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let changed = ep != labels;
    if is_service_ip_set(svc) {
        labels.remove(HEADLESS_LABEL);
    } else {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), svc.metadata.name.clone().unwrap_or_default());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    (labels, changed)
}

/// `getEndpointSlicePrefix`.
pub(crate) fn slice_prefix(name: &str) -> String {
    let prefix = format!("{name}-");
    // A generated name must stay a valid DNS subdomain.
    if prefix.len() > 253 - 5 {
        "slice-".into()
    } else {
        prefix
    }
}

/// `newEndpointSlice`.
fn new_slice(svc: &Service, ports: &[EndpointPort], address_type: &str) -> EndpointSlice {
    let (labels, _) = slice_labels(None, svc);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(slice_prefix(svc.metadata.name.as_deref().unwrap_or_default())),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![util::new_controller_ref(&svc.metadata, "v1", "Service")]),
            ..Default::default()
        },
        address_type: address_type.to_string(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    }
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    util::controller_of(&slice.metadata).is_some_and(|r| Some(&r.uid) == svc.metadata.uid.as_ref())
}

/// `placeholderSliceCompare`: namespace, labels, address type, ports and
/// endpoints (names and owners aside).
fn same_placeholder(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.metadata.namespace == b.metadata.namespace
        && a.metadata.labels.clone().unwrap_or_default() == b.metadata.labels.clone().unwrap_or_default()
        && a.address_type == b.address_type
        && a.endpoints.is_empty()
        && b.endpoints.is_empty()
        && a.ports.as_ref().is_none_or(|p| p.is_empty())
        && b.ports.as_ref().is_none_or(|p| p.is_empty())
}

#[derive(Default)]
struct Changes {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<EndpointSlice>,
}

/// `reconcileByPortMapping`: keep desired endpoints where they are, drop
/// undesired ones, fill slices being updated anyway, then the fullest
/// unchanged slice that fits, then new slices.
fn reconcile_port_mapping(
    svc: &Service,
    existing: &[EndpointSlice],
    mut desired: BTreeMap<EndpointId, Endpoint>,
    ports: &[EndpointPort],
    address_type: &str,
    max: usize,
) -> Changes {
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeSet<String> = BTreeSet::new();
    let mut to_update: BTreeSet<String> = BTreeSet::new();
    let mut to_delete: BTreeSet<String> = BTreeSet::new();
    for slice in existing {
        let name = slice.metadata.name.clone().unwrap_or_default();
        by_name.insert(name.clone(), slice.clone());
        let mut kept = Vec::new();
        let mut updated = false;
        for ep in &slice.endpoints {
            if let Some(want) = desired.remove(&endpoint_id(ep)) {
                if !endpoint_equal(&want, ep) {
                    updated = true;
                }
                kept.push(want);
            }
        }
        let (labels, labels_changed) = slice_labels(slice.metadata.labels.as_ref(), svc);
        if updated || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name);
            } else {
                let mut s = slice.clone();
                s.endpoints = kept;
                s.metadata.labels = Some(labels);
                by_name.insert(name.clone(), s);
                to_update.insert(name);
            }
        } else if labels_changed || slice.metadata.labels.as_ref() != Some(&labels) {
            let mut s = slice.clone();
            s.metadata.labels = Some(labels);
            by_name.insert(name.clone(), s);
            to_update.insert(name);
        } else {
            unchanged.insert(name);
        }
    }
    let pop = |desired: &mut BTreeMap<EndpointId, Endpoint>| desired.pop_first().map(|(_, e)| e);
    // 2. Fill the slices being updated, fullest first.
    if !desired.is_empty() && !to_update.is_empty() {
        let mut names: Vec<String> = to_update.iter().cloned().collect();
        names.sort_by_key(|n| std::cmp::Reverse(by_name.get(n).map_or(0, |s| s.endpoints.len())));
        for n in names {
            let Some(s) = by_name.get_mut(&n) else { continue };
            while s.endpoints.len() < max {
                let Some(e) = pop(&mut desired) else { break };
                s.endpoints.push(e);
            }
        }
    }
    // 3. Then an unchanged slice the rest fits in, then new slices.
    let mut create = Vec::new();
    while !desired.is_empty() {
        let mut fill: Option<String> = None;
        if desired.len() < max && !unchanged.is_empty() {
            let mut closest = max;
            for n in &unchanged {
                let len = by_name.get(n).map_or(0, |s| s.endpoints.len());
                if desired.len() + len <= max {
                    let diff = max - (desired.len() + len);
                    if diff < closest {
                        closest = diff;
                        fill = Some(n.clone());
                    }
                }
            }
        }
        let mut slice = match &fill {
            Some(n) => by_name.get(n).cloned().unwrap_or_else(|| new_slice(svc, ports, address_type)),
            None => new_slice(svc, ports, address_type),
        };
        while slice.endpoints.len() < max {
            let Some(e) = pop(&mut desired) else { break };
            slice.endpoints.push(e);
        }
        match fill {
            Some(n) => {
                unchanged.remove(&n);
                to_update.insert(n.clone());
                by_name.insert(n, slice);
            }
            None => create.push(slice),
        }
    }
    Changes {
        create,
        update: to_update.iter().filter_map(|n| by_name.get(n).cloned()).collect(),
        delete: to_delete.iter().filter_map(|n| by_name.get(n).cloned()).collect(),
    }
}

fn add_trigger_annotation(slice: &mut EndpointSlice, trigger: Option<&Time>) {
    let a = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger {
        Some(t) => {
            a.insert(TRIGGER_TIME_ANNOTATION.into(), format_time(t));
        }
        None => {
            a.remove(TRIGGER_TIME_ANNOTATION);
        }
    }
    if a.is_empty() {
        slice.metadata.annotations = None;
    }
}

/// The address types a Service's slices have (`getAddressTypesForService`).
fn address_types(svc: &Service) -> BTreeSet<String> {
    let spec = svc.spec.as_ref();
    let families: BTreeSet<String> = spec.and_then(|s| s.ip_families.clone()).into_iter().flatten().collect();
    if !families.is_empty() {
        return families;
    }
    let v6 = spec
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .is_some_and(|a| a.is_ipv6());
    BTreeSet::from([if v6 { "IPv6".to_string() } else { "IPv4".to_string() }])
}

impl Esc {
    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(svc) = self.inf.services.get_key(key) else {
            // The garbage collector deletes the slices (they are owned by the Service).
            self.triggers.delete(key);
            self.tracker.delete_service(key);
            return Ok(());
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            return Ok(());
        }
        let Some(selector) = spec.selector.as_ref() else { return Ok(()) };
        let pods: Vec<Arc<Pod>> = self.inf.pods_selected_by(&key.namespace, selector);
        let slices: Vec<Arc<EndpointSlice>> = self
            .inf
            .slices
            .list_ns(&key.namespace)
            .into_iter()
            .filter(|s| {
                label(s, LABEL_SERVICE_NAME) == Some(key.name.as_str())
                    && label(s, LABEL_MANAGED_BY) == Some(CONTROLLER_NAME)
                    && s.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if self.tracker.stale(key, &slices) {
            return Err("EndpointSlice informer cache is out of date".into());
        }
        let trigger = self.triggers.compute(key, &svc, &pods);
        if let Err(e) = self.reconcile(key, &svc, &pods, &slices, trigger.time.as_ref()).await {
            self.recorder.event(
                &*svc,
                WARNING,
                "FailedToUpdateEndpointSlices",
                format!("Error updating Endpoint Slices for Service {key}: {e}"),
            );
            return Err(e);
        }
        self.triggers.commit(trigger);
        Ok(())
    }

    /// `Reconcile`.
    async fn reconcile(
        &self,
        key: &Key,
        svc: &Service,
        pods: &[Arc<Pod>],
        slices: &[Arc<EndpointSlice>],
        trigger: Option<&Time>,
    ) -> Result<(), SyncError> {
        let types = address_types(svc);
        let mut errors: Vec<String> = Vec::new();
        let mut by_type: BTreeMap<String, Vec<EndpointSlice>> = BTreeMap::new();
        let mut unsupported = Vec::new();
        for s in slices {
            if types.contains(&s.address_type) {
                by_type.entry(s.address_type.clone()).or_default().push((**s).clone());
            } else {
                unsupported.push((**s).clone());
            }
        }
        for t in &types {
            let existing = by_type.remove(t).unwrap_or_default();
            if let Err(e) = self.reconcile_address_type(key, svc, pods, existing, trigger, t).await {
                errors.push(e.to_string());
            }
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        for s in unsupported {
            let name = s.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.tracker.expect_deletion(key, &name),
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => errors.push(format!("error deleting {name} EndpointSlice for Service {key}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join(", ").into())
        }
    }

    /// `reconcileByAddressType`.
    async fn reconcile_address_type(
        &self,
        key: &Key,
        svc: &Service,
        pods: &[Arc<Pod>],
        existing: Vec<EndpointSlice>,
        trigger: Option<&Time>,
        address_type: &str,
    ) -> Result<(), SyncError> {
        let mut changes = Changes::default();
        let mut existing_by_ports: BTreeMap<String, Vec<EndpointSlice>> = BTreeMap::new();
        for s in &existing {
            if owned_by(s, svc) {
                existing_by_ports
                    .entry(port_map_key(s.ports.as_deref().unwrap_or_default()))
                    .or_default()
                    .push(s.clone());
            } else {
                changes.delete.push(s.clone());
            }
        }
        let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
        let mut desired: BTreeMap<String, (Vec<EndpointPort>, BTreeMap<EndpointId, Endpoint>)> = BTreeMap::new();
        let mut missing_node = None;
        for pod in pods {
            if !should_pod_be_in_endpoints(pod, true) {
                continue;
            }
            let ports = endpoint_ports(svc, pod);
            let pk = port_map_key(&ports);
            let node_name = util::node_name(pod);
            let mut zone = None;
            if !node_name.is_empty() {
                match self.inf.nodes.get("", node_name) {
                    Some(node) => zone = node.metadata.labels.as_ref().and_then(|l| l.get(LABEL_ZONE)).cloned(),
                    None if !publish => {
                        // Requeue until the node shows up; publish the others meanwhile.
                        missing_node.get_or_insert_with(|| {
                            format!(
                                "skipping Pod {} for Service {key}: node {node_name} not found",
                                Key::of(&**pod).name
                            )
                        });
                        continue;
                    }
                    None => {}
                }
            }
            let ep = pod_to_endpoint(pod, zone, svc, address_type);
            let entry = desired.entry(pk).or_insert_with(|| (ports, BTreeMap::new()));
            if !ep.addresses.is_empty() {
                entry.1.insert(endpoint_id(&ep), ep);
            }
        }
        for (pk, (ports, eps)) in &desired {
            let existing = existing_by_ports.get(pk).cloned().unwrap_or_default();
            let c = reconcile_port_mapping(svc, &existing, eps.clone(), ports, address_type, self.max_per_slice);
            changes.create.extend(c.create);
            changes.update.extend(c.update);
            changes.delete.extend(c.delete);
        }
        for (pk, slices) in existing_by_ports {
            if !desired.contains_key(&pk) {
                changes.delete.extend(slices);
            }
        }
        // A Service without endpoints keeps one placeholder slice.
        if existing.len() == changes.delete.len() && changes.create.is_empty() {
            let placeholder = new_slice(svc, &[], address_type);
            if changes.delete.len() == 1 && same_placeholder(&changes.delete[0], &placeholder) {
                changes.delete.clear();
            } else {
                changes.create.push(placeholder);
            }
        }
        self.finalize(key, svc, changes, trigger).await?;
        match missing_node {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// `finalize`: creates become updates of slices that would be deleted.
    async fn finalize(
        &self,
        key: &Key,
        svc: &Service,
        mut c: Changes,
        trigger: Option<&Time>,
    ) -> Result<(), SyncError> {
        let mut i = 0;
        while i < c.delete.len() && !c.create.is_empty() {
            if c.delete[i].address_type == c.create[c.create.len() - 1].address_type && owned_by(&c.delete[i], svc) {
                let victim = c.delete.remove(i);
                if let Some(mut s) = c.create.pop() {
                    s.metadata.name = victim.metadata.name.clone();
                    s.metadata.generate_name = victim.metadata.generate_name.clone();
                    s.metadata.resource_version = victim.metadata.resource_version.clone();
                    s.metadata.uid = victim.metadata.uid.clone();
                    s.metadata.creation_timestamp = victim.metadata.creation_timestamp.clone();
                    c.update.push(s);
                }
            } else {
                i += 1;
            }
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        if svc.metadata.deletion_timestamp.is_none() {
            for mut s in c.create {
                add_trigger_annotation(&mut s, trigger);
                match api.create(&PostParams::default(), &s).await {
                    Ok(created) => self.tracker.written(key, &created),
                    Err(e) if util::is_namespace_terminating(&e) => return Ok(()),
                    Err(e) => return Err(format!("failed to create EndpointSlice for Service {key}: {e}").into()),
                }
            }
        }
        for mut s in c.update {
            add_trigger_annotation(&mut s, trigger);
            let name = s.metadata.name.clone().unwrap_or_default();
            match api.replace(&name, &PostParams::default(), &s).await {
                Ok(updated) => self.tracker.written(key, &updated),
                Err(e) => return Err(format!("failed to update {name} EndpointSlice for Service {key}: {e}").into()),
            }
        }
        for s in c.delete {
            let name = s.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.tracker.expect_deletion(key, &name),
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(format!("failed to delete {name} EndpointSlice for Service {key}: {e}").into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }))
        .expect("svc")
    }

    fn ep(ip: &str) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions { ready: Some(true), serving: Some(true), terminating: Some(false) }),
            target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("default".into()),
                name: Some(format!("pod-{ip}")),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn desired(n: usize) -> BTreeMap<EndpointId, Endpoint> {
        (0..n).map(|i| ep(&format!("10.244.{}.{}", i / 200, i % 200 + 1))).map(|e| (endpoint_id(&e), e)).collect()
    }

    #[test]
    fn slices_hold_at_most_max_endpoints() {
        let s = svc();
        let c = reconcile_port_mapping(&s, &[], desired(250), &[], "IPv4", 100);
        let sizes: Vec<usize> = c.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        let labels = c.create[0].metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(LABEL_SERVICE_NAME).map(String::as_str), Some("web"));
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(CONTROLLER_NAME));
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(c.create[0].metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(c.create[0].metadata.owner_references.as_ref().map(|r| r[0].uid.as_str()), Some("svc-uid"));
    }

    #[test]
    fn unchanged_slices_stay_and_removed_endpoints_update() {
        let s = svc();
        let mut existing = new_slice(&s, &[], "IPv4");
        existing.metadata.name = Some("web-abcde".into());
        existing.endpoints = desired(3).into_values().collect();
        let c = reconcile_port_mapping(&s, std::slice::from_ref(&existing), desired(3), &[], "IPv4", 100);
        assert!(c.create.is_empty() && c.update.is_empty() && c.delete.is_empty());
        let c = reconcile_port_mapping(&s, std::slice::from_ref(&existing), desired(2), &[], "IPv4", 100);
        assert_eq!(c.update.len(), 1);
        assert_eq!(c.update[0].endpoints.len(), 2);
        // A new endpoint goes into the existing slice.
        let c = reconcile_port_mapping(&s, std::slice::from_ref(&existing), desired(4), &[], "IPv4", 100);
        assert_eq!((c.create.len(), c.update.len()), (0, 1));
        assert_eq!(c.update[0].endpoints.len(), 4);
    }

    #[test]
    fn tracker_detects_stale_store() {
        let t = SliceTracker::default();
        let key = Key::new("default", "web");
        let mut s = new_slice(&svc(), &[], "IPv4");
        s.metadata.name = Some("web-1".into());
        s.metadata.resource_version = Some("10".into());
        t.written(&key, &s);
        assert!(t.stale(&key, &[]));
        let mut old = s.clone();
        old.metadata.resource_version = Some("9".into());
        assert!(t.stale(&key, &[Arc::new(old)]));
        t.observe(&key, &s, false);
        assert!(!t.stale(&key, &[Arc::new(s.clone())]));
        t.expect_deletion(&key, "web-1");
        assert!(t.stale(&key, &[Arc::new(s.clone())]));
        t.observe(&key, &s, true);
        assert!(!t.stale(&key, &[]));
    }
}
