//! The announcer loop: reflectors on the objects the election reads, a short tick
//! that decides per address, the Lease writes, and the ARP sockets.

use crate::arp::{self, Announced, ArpSocket, Fence};
use crate::election::{self, Action, Holder, NodeView, ServiceView};
use crate::interfaces::{self, IfAddr};
use crate::lease;
use crate::metrics as m;
use crate::{L2Config, L2Error};
use apimachinery::loadbalancer as lbrules;
use apimachinery::metallb::{self, IPAddressPool, L2Advertisement};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(25);
const INTERFACE_REFRESH: Duration = Duration::from_secs(2);
/// When the gratuitous ARPs of a take-over go out, after it.
const GARP_SCHEDULE: [u64; 3] = [0, 100, 500];

/// Watch tasks, aborted when the announcer goes.
#[derive(Default)]
struct Tasks(std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default() {
            t.abort();
        }
    }
}

/// Bumped on every event of the watches the election's inputs come from, so the
/// 25 ms tick rebuilds them only after a change.
type Changes = Arc<std::sync::atomic::AtomicU64>;

fn reflect<K>(tasks: &Tasks, changes: Option<&Changes>, api: Api<K>, config: watcher::Config) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(api, config).default_backoff().reflect(writer);
    let changes = changes.cloned();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Some(ev) = s.next().await {
            match ev {
                Ok(_) => {
                    if let Some(c) = &changes {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "l2 watch error"),
            }
        }
    });
    if let Ok(mut v) = tasks.0.lock() {
        v.push(task);
    }
    store
}

struct Stores {
    changes: Changes,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    pools: Store<IPAddressPool>,
    ads: Store<L2Advertisement>,
    leases: Store<Lease>,
}

/// The election's inputs, rebuilt from the stores after a change.
struct View {
    addresses: BTreeMap<Ipv4Addr, Address>,
    nodes: Vec<NodeView>,
    ad_specs: Vec<apimachinery::metallb::L2AdvertisementSpec>,
    pool_labels: HashMap<String, BTreeMap<String, String>>,
}

/// One address as the Services use it.
#[derive(Default)]
struct Address {
    services: Vec<ServiceView>,
    pool: Option<String>,
    /// The Services, for their Events.
    refs: Vec<k8s_openapi::api::core::v1::ObjectReference>,
}

/// MetalLB's `nodeAssigned` Event on each Service of a taken-over address.
async fn record_assigned(client: kube::Client, node: String, refs: Vec<k8s_openapi::api::core::v1::ObjectReference>) {
    use k8s_openapi::api::core::v1::{Event, EventSource};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    for r in refs {
        let ns = r.namespace.clone().unwrap_or_else(|| "default".into());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let nanos = k8s_openapi::jiff::Timestamp::now().as_nanosecond().max(0);
        let ev = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{}.{nanos:x}", r.name.as_deref().unwrap_or("service"))),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: r,
            reason: Some("nodeAssigned".into()),
            message: Some(format!("announcing from node \"{node}\" with protocol \"layer2\"")),
            type_: Some("Normal".into()),
            source: Some(EventSource { component: Some("rkube-l2".into()), host: Some(node.clone()) }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some("rkube-l2".into()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = api.create(&kube::api::PostParams::default(), &ev).await {
            tracing::debug!(error = %e, "could not record the nodeAssigned event");
        }
    }
}

/// What this node knows beyond the stores.
struct State {
    cfg: L2Config,
    client: kube::Client,
    api: Api<Lease>,
    /// Heartbeat observations: node -> (what was seen, when it changed).
    seen: HashMap<String, (String, Instant)>,
    /// When each address was first seen free.
    free_since: HashMap<Ipv4Addr, Instant>,
    /// Addresses this node won and has not given up, with the resourceVersion of the
    /// Lease it replaced: while the store still shows that version (it lags our own
    /// write), the win stands.
    won: HashMap<Ipv4Addr, Option<String>>,
    last_renew_ok: Option<Instant>,
    last_renew_try: Option<Instant>,
    ifaddrs: Vec<IfAddr>,
    ifaddrs_at: Option<Instant>,
    sockets: HashMap<String, (Arc<ArpSocket>, Announced)>,
    /// What is being answered now, per interface.
    announcing: BTreeSet<(String, Ipv4Addr)>,
    /// Shared with the ARP threads: no answers once the heartbeat is stale.
    fence: Arc<Fence>,
    /// The last [`View`] and the change count it was built at.
    view: Option<(u64, Arc<View>)>,
}

/// An API call bounded by `limit` (the client has no read timeout), so a silent API
/// server cannot stall the loop past the fence.
async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from the API server within {limit:?}")),
    }
}

fn node_view(n: &Node) -> NodeView {
    NodeView {
        name: n.metadata.name.clone().unwrap_or_default(),
        labels: n.metadata.labels.clone().unwrap_or_default(),
        ready: lbrules::node_ready(n),
    }
}

impl Stores {
    fn view(&self) -> View {
        View {
            addresses: self.addresses(),
            nodes: self.nodes.state().iter().map(|n| node_view(n)).collect(),
            ad_specs: self
                .ads
                .state()
                .iter()
                .filter(|a| a.metadata.deletion_timestamp.is_none())
                .map(|a| a.spec.clone())
                .collect(),
            pool_labels: self
                .pools
                .state()
                .iter()
                .filter_map(|p| Some((p.metadata.name.clone()?, p.metadata.labels.clone().unwrap_or_default())))
                .collect(),
        }
    }

    /// Every announced address: LoadBalancer ingress IPs that are not a Node's own (the
    /// allocator's ServiceLB mode hands out node addresses, which need no announcing).
    fn addresses(&self) -> BTreeMap<Ipv4Addr, Address> {
        let node_ips: HashSet<Ipv4Addr> = self
            .nodes
            .state()
            .iter()
            .flat_map(|n| {
                let (internal, external) = lbrules::node_addresses(n);
                internal.into_iter().chain(external)
            })
            .collect();
        let mut slices_by_svc: HashMap<(String, String), Vec<Arc<EndpointSlice>>> = HashMap::new();
        for s in self.slices.state() {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            if let Some(name) = s.metadata.labels.as_ref().and_then(|l| l.get(lbrules::SERVICE_NAME_LABEL)) {
                slices_by_svc.entry((ns, name.clone())).or_default().push(s.clone());
            }
        }
        let mut out: BTreeMap<Ipv4Addr, Address> = BTreeMap::new();
        for svc in self.services.state().iter().filter(|s| lbrules::is_handled(s)) {
            let ips: Vec<Ipv4Addr> = lbrules::ingress(svc)
                .iter()
                .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                .filter_map(|i| i.ip.as_deref().and_then(|ip| ip.parse().ok()))
                .filter(|ip| !node_ips.contains(ip))
                .collect();
            if ips.is_empty() {
                continue;
            }
            let key =
                (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
            let endpoint_nodes =
                lbrules::ready_endpoint_nodes(slices_by_svc.get(&key).into_iter().flatten().map(|s| &**s));
            let pool =
                svc.metadata.annotations.as_ref().and_then(|a| a.get(metallb::ANNOTATION_ALLOCATED_FROM_POOL)).cloned();
            let local = lbrules::is_local(svc);
            let r = kube::Resource::object_ref(&**svc, &());
            for ip in ips {
                let a = out.entry(ip).or_default();
                a.refs.push(r.clone());
                a.pool = a.pool.clone().or(pool.clone());
                a.services.push(ServiceView { local, endpoint_nodes: endpoint_nodes.clone(), pool: pool.clone() });
            }
        }
        out
    }
}

/// Runs the announcer until the task is dropped.
pub async fn run(client: kube::Client, cfg: L2Config) -> Result<(), L2Error> {
    if cfg.renew.is_zero() || cfg.renew >= cfg.lease_duration {
        return Err(L2Error::Config(format!(
            "the renew period ({:?}) must be shorter than the lease duration ({:?})",
            cfg.renew, cfg.lease_duration
        )));
    }
    let label = watcher::Config::default().labels(lease::LABEL);
    let tasks = Tasks::default();
    let all = watcher::Config::default;
    let changes: Changes = Default::default();
    let c = Some(&changes);
    let stores = Stores {
        services: reflect(&tasks, c, Api::all(client.clone()), all()),
        slices: reflect(&tasks, c, Api::all(client.clone()), all()),
        nodes: reflect(&tasks, c, Api::all(client.clone()), all()),
        pools: reflect(&tasks, c, Api::all(client.clone()), all()),
        ads: reflect(&tasks, c, Api::all(client.clone()), all()),
        // Heartbeats change every renew period; they are read each tick anyway.
        leases: reflect(&tasks, None, Api::namespaced(client.clone(), lease::NAMESPACE), label),
        changes,
    };
    for ready in [
        stores.services.wait_until_ready().await.is_ok(),
        stores.slices.wait_until_ready().await.is_ok(),
        stores.nodes.wait_until_ready().await.is_ok(),
        stores.pools.wait_until_ready().await.is_ok(),
        stores.ads.wait_until_ready().await.is_ok(),
        stores.leases.wait_until_ready().await.is_ok(),
    ] {
        if !ready {
            tracing::warn!("an l2 watch stopped before its first listing");
        }
    }
    let mut st = State {
        api: Api::namespaced(client.clone(), lease::NAMESPACE),
        client,
        cfg,
        seen: HashMap::new(),
        free_since: HashMap::new(),
        won: HashMap::new(),
        last_renew_ok: None,
        last_renew_try: None,
        ifaddrs: Vec::new(),
        ifaddrs_at: None,
        sockets: HashMap::new(),
        announcing: BTreeSet::new(),
        fence: Arc::new(Fence::default()),
        view: None,
    };
    tracing::info!(node = %st.cfg.node_name, lease = ?st.cfg.lease_duration, renew = ?st.cfg.renew, "L2 announcer started");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        st.step(&stores).await;
    }
}

impl Drop for State {
    /// The announcer stopped (agent shutdown or task aborted): answer nothing more.
    fn drop(&mut self) {
        self.fence.stop();
    }
}

impl State {
    fn me(&self) -> &str {
        &self.cfg.node_name
    }

    /// Heartbeats seen: a change (or a first sighting) is "now".
    fn observe(&mut self, leases: &[Arc<Lease>], now: Instant) -> HashMap<String, Duration> {
        let mut durations = HashMap::new();
        for l in leases {
            if l.metadata.labels.as_ref().and_then(|x| x.get(lease::LABEL)).map(String::as_str) != Some("heartbeat") {
                continue;
            }
            let Some(node) = lease::holder(l) else { continue };
            let marker = lease::renew_marker(l);
            let e = self.seen.entry(node.to_string()).or_insert_with(|| (marker.clone(), now));
            if e.0 != marker {
                *e = (marker, now);
            }
            durations.insert(node.to_string(), lease::duration_of(l, self.cfg.lease_duration));
        }
        durations
    }

    fn alive(&mut self, node: &str, durations: &HashMap<String, Duration>, now: Instant) -> bool {
        if node == self.cfg.node_name {
            return true;
        }
        let d = durations.get(node).copied().unwrap_or(self.cfg.lease_duration);
        // No heartbeat seen yet: count from now (first sighting).
        let (_, at) = self.seen.entry(node.to_string()).or_insert_with(|| ("missing".into(), now));
        now.duration_since(*at) < d
    }

    fn fenced_ok(&self) -> bool {
        self.last_renew_ok.is_some_and(|t| t.elapsed() < self.cfg.lease_duration * 3 / 4)
    }

    async fn renew(&mut self, force: bool) {
        let due = self.last_renew_try.is_none_or(|t| t.elapsed() >= self.cfg.renew);
        if !force && !due {
            return;
        }
        let started = Instant::now();
        self.last_renew_try = Some(started);
        let limit = self.cfg.lease_duration / 2;
        match bounded(limit, lease::renew_heartbeat(&self.api, &self.cfg.node_name, self.cfg.lease_duration)).await {
            Ok(()) => {
                self.last_renew_ok = Some(started);
                self.fence.extend(started + self.cfg.lease_duration * 3 / 4);
            }
            Err(e) => tracing::warn!(error = %e, "renewing the L2 heartbeat failed"),
        }
    }

    /// The election's inputs, rebuilt only when a watched object changed.
    fn view(&mut self, stores: &Stores) -> Arc<View> {
        let gen = stores.changes.load(Ordering::SeqCst);
        match &self.view {
            Some((g, v)) if *g == gen => v.clone(),
            _ => {
                let v = Arc::new(stores.view());
                self.view = Some((gen, v.clone()));
                v
            }
        }
    }

    async fn step(&mut self, stores: &Stores) {
        let now = Instant::now();
        let view = self.view(stores);
        let View { addresses, nodes, ad_specs, pool_labels } = &*view;
        let leases = stores.leases.state();
        let durations = self.observe(&leases, now);
        let by_name: HashMap<String, Arc<Lease>> =
            leases.iter().filter_map(|l| l.metadata.name.clone().map(|n| (n, l.clone()))).collect();

        // A hold whose fence lapsed (the process was stalled, or the API unreachable,
        // for most of a lease) may have been taken meanwhile, and the stores can lag
        // behind that: every hold must be confirmed again (see `Action::Keep`).
        if !self.won.is_empty() && !self.fenced_ok() {
            tracing::warn!(addresses = ?self.won.keys().collect::<Vec<_>>(), "the L2 heartbeat lapsed; confirming holds again");
            self.won.clear();
            // Nothing is answered until a hold is confirmed again.
            self.apply(BTreeSet::new());
        }

        // Holding anything: keep the heartbeat going (before any take-over, so peers
        // see this node alive).
        let holds_any = self.won.keys().any(|ip| addresses.contains_key(ip));
        if holds_any {
            self.renew(false).await;
        }

        let mut want: BTreeSet<(String, Ipv4Addr)> = BTreeSet::new();
        let mut interfaces_needed: Vec<(Ipv4Addr, Vec<String>)> = Vec::new();
        for (ip, addr) in addresses {
            let ip_s = ip.to_string();
            let pool_ads = election::ads_for_pool(
                ad_specs,
                addr.pool.as_deref(),
                addr.pool.as_ref().and_then(|p| pool_labels.get(p)),
            );
            let eligible = election::eligible(nodes, &addr.services, &pool_ads, !ad_specs.is_empty(), &ip_s);
            let name = lease::address_lease_name(*ip);
            let current = by_name.get(&name);
            let holder_name = current.and_then(|l| lease::holder(l)).map(str::to_string);
            let holder_alive = holder_name.as_deref().is_some_and(|h| self.alive(h, &durations, now));
            // The store may not show our own win yet.
            let store_rv = current.and_then(|l| l.metadata.resource_version.clone());
            let stale = self.won.get(ip).is_some_and(|replaced| *replaced == store_rv);
            let (holder_name, holder_alive) =
                if stale { (Some(self.me().to_string()), true) } else { (holder_name, holder_alive) };
            if holder_name.as_deref() != Some(self.me()) {
                self.won.remove(ip);
            }
            let holder = Holder { node: holder_name.clone(), alive: holder_alive };
            let free =
                holder.node.is_none() || !holder.alive || !holder.node.as_ref().is_some_and(|h| eligible.contains(h));
            let free_for = if free && holder.node.as_deref() != Some(self.me()) {
                now.duration_since(*self.free_since.entry(*ip).or_insert(now))
            } else {
                self.free_since.remove(ip);
                Duration::ZERO
            };
            let step = self.cfg.renew.max(Duration::from_millis(100));
            match election::decide(self.me(), &holder, &eligible, free_for, step) {
                Action::Keep if stale || self.won.contains_key(ip) => {
                    if !stale {
                        // The store shows our hold: no version to wait for ("" never matches).
                        self.won.insert(*ip, Some(String::new()));
                    }
                }
                Action::Keep => {
                    // A hold this node has not confirmed since it started or since its
                    // fence lapsed: the store may still show a Lease another node has
                    // taken since, so it is read from the API server before answering
                    // (after a heartbeat, so peers see this node alive meanwhile).
                    if !self.fenced_ok() {
                        // At most one try per renew period (a failing API is not hammered).
                        self.renew(false).await;
                        if !self.fenced_ok() {
                            // No heartbeat: nothing to confirm a hold for yet.
                            continue;
                        }
                    }
                    let fresh = bounded(self.cfg.lease_duration / 2, self.api.get_opt(&name)).await;
                    match fresh {
                        Ok(Some(l)) if lease::holder(&l) == Some(self.me()) => {
                            self.won.insert(*ip, Some(String::new()));
                        }
                        Ok(l) => {
                            let now_held_by = l.as_ref().and_then(|l| lease::holder(l)).map(str::to_string);
                            tracing::info!(%ip, holder = ?now_held_by, "the address was taken meanwhile; not announcing");
                        }
                        Err(e) => tracing::warn!(%ip, error = %e, "confirming an L2 hold failed"),
                    }
                }
                Action::Release => {
                    self.won.remove(ip);
                    if let Some(l) = current {
                        if let Err(e) = bounded(self.cfg.lease_duration / 2, lease::release(&self.api, l)).await {
                            tracing::warn!(%ip, error = %e, "releasing an L2 address failed");
                        }
                    }
                    m::RELEASES.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%ip, "no longer allowed to announce; released");
                }
                Action::Acquire => {
                    self.renew(true).await;
                    if !self.fenced_ok() {
                        continue;
                    }
                    let limit = self.cfg.lease_duration / 2;
                    let me = self.cfg.node_name.clone();
                    let acquired = bounded(
                        limit,
                        lease::acquire(&self.api, *ip, &me, self.cfg.lease_duration, current.map(|l| &**l)),
                    )
                    .await;
                    match acquired {
                        Ok(true) => {
                            self.won.insert(*ip, store_rv.clone());
                            self.free_since.remove(ip);
                            m::TAKEOVERS.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(record_assigned(self.client.clone(), me.clone(), addr.refs.clone()));
                            tracing::info!(%ip, previous = ?holder.node, "took over the address");
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(%ip, error = %e, "acquiring an L2 address failed"),
                    }
                }
                Action::Wait => {}
            }
            if self.won.contains_key(ip) && self.fenced_ok() {
                let wanted: Vec<String> = pool_ads.iter().flat_map(|a| a.interfaces.iter().cloned()).collect();
                interfaces_needed.push((*ip, wanted));
            }
        }

        // Addresses no Service uses any more: their Lease goes (by its holder).
        for (name, l) in &by_name {
            let is_address =
                l.metadata.labels.as_ref().and_then(|x| x.get(lease::LABEL)).map(String::as_str) == Some("address");
            let ip: Option<Ipv4Addr> = l
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(lease::ADDRESS_ANNOTATION))
                .and_then(|v| v.parse().ok());
            if is_address && lease::holder(l) == Some(self.me()) && ip.is_some_and(|ip| !addresses.contains_key(&ip)) {
                if let Err(e) = bounded(self.cfg.lease_duration / 2, lease::delete(&self.api, l)).await {
                    tracing::debug!(lease = %name, error = %e, "deleting an unused L2 lease failed");
                }
            }
        }
        self.won.retain(|ip, _| addresses.contains_key(ip));

        if !interfaces_needed.is_empty() && self.ifaddrs_at.is_none_or(|t| t.elapsed() >= INTERFACE_REFRESH) {
            match interfaces::list().await {
                Ok(a) => self.ifaddrs = a,
                Err(e) => tracing::warn!(error = %e, "listing interfaces failed"),
            }
            self.ifaddrs_at = Some(Instant::now());
        }
        let mut exclude = self.cfg.exclude_interfaces.clone();
        exclude.push("lo".into());
        for (ip, wanted) in interfaces_needed {
            for ifname in interfaces::for_address(&self.ifaddrs, ip, &wanted, self.cfg.node_ip, &exclude) {
                want.insert((ifname, ip));
            }
        }
        self.apply(want);
    }

    /// Updates what each interface answers; a new address gets gratuitous ARP.
    fn apply(&mut self, want: BTreeSet<(String, Ipv4Addr)>) {
        if want == self.announcing {
            return;
        }
        let added: Vec<(String, Ipv4Addr)> = want.difference(&self.announcing).cloned().collect();
        for (ifname, ip) in &added {
            let Some((sock, _)) = self.socket(ifname) else { continue };
            tracing::info!(%ip, interface = %ifname, mac = %arp::mac_string(&sock.mac), "announcing");
            let ip = *ip;
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                for ms in GARP_SCHEDULE {
                    tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
                    match sock.gratuitous(ip) {
                        Ok(()) => {
                            m::GRATUITOUS.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tracing::debug!(%ip, error = %e, "gratuitous ARP failed"),
                    }
                }
            });
        }
        for (ifname, ip) in self.announcing.difference(&want) {
            tracing::info!(%ip, interface = %ifname, "no longer announcing");
        }
        for (ifname, (_, set)) in &self.sockets {
            let ips: HashSet<Ipv4Addr> = want.iter().filter(|(i, _)| i == ifname).map(|(_, ip)| *ip).collect();
            if let Ok(mut s) = set.write() {
                *s = ips;
            }
        }
        m::ANNOUNCED.store(want.iter().map(|(_, ip)| *ip).collect::<HashSet<_>>().len() as u64, Ordering::Relaxed);
        self.announcing = want;
    }

    /// The ARP socket of an interface, opened (with its receiving thread) on first use.
    fn socket(&mut self, ifname: &str) -> Option<(Arc<ArpSocket>, Announced)> {
        if let Some((s, a)) = self.sockets.get(ifname) {
            return Some((s.clone(), a.clone()));
        }
        let sock = match ArpSocket::open(ifname) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(interface = %ifname, error = %e, "cannot open an ARP socket");
                return None;
            }
        };
        let announced: Announced = Default::default();
        let (s, a, fence) = (sock.clone(), announced.clone(), self.fence.clone());
        let spawned = std::thread::Builder::new().name(format!("arp-{ifname}")).spawn(move || {
            let on_reply = |_ip: Ipv4Addr| {
                m::ARP_REPLIES.fetch_add(1, Ordering::Relaxed);
            };
            if let Err(e) = s.serve(&a, &fence, &on_reply) {
                tracing::warn!(interface = %s.ifname, error = %e, "ARP responder stopped");
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(interface = %ifname, error = %e, "cannot start the ARP responder");
            return None;
        }
        self.sockets.insert(ifname.to_string(), (sock.clone(), announced.clone()));
        Some((sock, announced))
    }
}
