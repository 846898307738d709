//! The syncer: desired model -> one transaction, full (`nft -f -`) or incremental (a
//! netlink batch, or `nft -f -` outside the encoder's subset), plus the UDP conntrack
//! cleanup upstream does after each sync.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::adopt;
use crate::exec;
use crate::fnv::{hash_parts, FastMap};
use crate::metrics;
use crate::model::{Endpoint, Protocol, ServicePortInfo};
use crate::netlink::{self, Batch};
use crate::render::{self, element_text, Fragment, Groups, MapId, Script};
use crate::{ProxyConfig, ProxyError};

/// One service port and its endpoints: an element of the desired state.
pub type DesiredPort = (ServicePortInfo, Vec<Endpoint>);

/// What one [`Proxier::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The whole table was rewritten (first sync, or the one after a failure).
    pub full: bool,
    /// The first sync adopted the table an earlier run left (only the difference was sent;
    /// `changed_services` is not counted then).
    pub adopted: bool,
    /// Wall time of the sync (compute + `nft` + conntrack cleanup).
    pub duration: Duration,
    /// Of which running `nft` (zero when there was nothing to send).
    pub nft_duration: Duration,
    /// Elementary nft statements sent: commands, counting each element of an element command.
    pub statements: usize,
    /// Service ports in the desired state.
    pub services: usize,
    /// Endpoints the table DNATs to (sum over service ports).
    pub endpoints: usize,
    /// Service ports whose rules or elements changed (all of them on a full sync).
    pub changed_services: usize,
    /// Rules in the table after the sync.
    pub rules: usize,
    /// Chains in the table after the sync.
    pub chains: usize,
    /// `conntrack -D` invocations for stale UDP flows.
    pub conntrack_deletions: usize,
}

/// Hash of a service port's identity (namespace, name, port name, protocol), computed
/// without allocating.
fn identity_hash(info: &ServicePortInfo) -> u64 {
    hash_parts(&[info.namespace.as_str(), info.name.as_str(), info.port_name.as_str(), info.protocol.as_str()])
}

fn same_identity(a: &ServicePortInfo, b: &ServicePortInfo) -> bool {
    a.protocol == b.protocol && a.port_name == b.port_name && a.name == b.name && a.namespace == b.namespace
}

pub(crate) struct SvcState {
    /// The sync that last saw this service port in the desired state.
    generation: u64,
    owner: u32,
    pub(crate) info: ServicePortInfo,
    eps: Vec<Endpoint>,
    pub(crate) frag: Fragment,
}

/// Elements of the managed maps/sets, with the service ports that want each key (the
/// first one's value is in the table; later ones take over when it goes away).
#[derive(Default)]
pub(crate) struct ElemStore {
    pub(crate) entries: FastMap<ElemKey, Vec<(u32, Option<String>)>>,
}

/// A map or set and an element key in it.
pub(crate) type ElemKey = (MapId, String);

pub(crate) type Effective = Option<Option<String>>;

impl ElemStore {
    pub(crate) fn effective(&self, k: &(MapId, String)) -> Effective {
        self.entries.get(k).and_then(|v| v.first()).map(|(_, val)| val.clone())
    }

    fn insert(&mut self, owner: u32, k: (MapId, String), val: Option<String>) {
        let v = self.entries.entry(k).or_default();
        match v.iter_mut().find(|(o, _)| *o == owner) {
            Some(e) => e.1 = val,
            None => v.push((owner, val)),
        }
    }

    fn remove(&mut self, owner: u32, k: &(MapId, String)) {
        if let Some(v) = self.entries.get_mut(k) {
            v.retain(|(o, _)| *o != owner);
            if v.is_empty() {
                self.entries.remove(k);
            }
        }
    }

    fn by_map(&self) -> BTreeMap<MapId, Vec<String>> {
        let mut out: BTreeMap<MapId, Vec<String>> = BTreeMap::new();
        for ((map, key), owners) in &self.entries {
            if let Some((_, val)) = owners.first() {
                out.entry(*map).or_default().push(element_text(*map, key, val.as_deref()));
            }
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }
}

#[derive(Default)]
pub(crate) struct State {
    /// Service ports by `identity_hash` (a bucket holds the rare collisions).
    pub(crate) services: FastMap<u64, Vec<SvcState>>,
    pub(crate) elems: ElemStore,
    next_owner: u32,
    generation: u64,
}

impl State {
    pub(crate) fn all(&self) -> impl Iterator<Item = &SvcState> {
        self.services.values().flatten()
    }
}

/// The changes of one partial sync, in the order they go into the transaction.
#[derive(Default)]
pub(crate) struct Ops {
    pub(crate) add_sets: Vec<(String, u32)>,
    pub(crate) add_chains: Vec<String>,
    pub(crate) flush_chains: Vec<String>,
    pub(crate) rules: Vec<(String, Vec<String>)>,
    pub(crate) del_chains: Vec<String>,
    pub(crate) del_sets: Vec<String>,
    /// Elements that may have changed, with their value before the transaction.
    pub(crate) touched: FastMap<(MapId, String), Effective>,
}

/// A stale UDP conntrack entry filter (upstream `pkg/proxy/conntrack/cleanup.go`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CtJob {
    /// Flows to a service VIP that had no endpoints before (they were not DNATed).
    Dst {
        ip: Ipv4Addr,
        port: u16,
    },
    NodePort {
        port: u16,
    },
    /// Flows DNATed to an endpoint that went away.
    DstEndpoint {
        ip: Ipv4Addr,
        port: u16,
        ep: (Ipv4Addr, u16),
    },
    NodePortEndpoint {
        port: u16,
        ep: (Ipv4Addr, u16),
    },
}

impl CtJob {
    fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["-D".into(), "-p".into(), "udp".into()];
        let mut push = |k: &str, v: String| {
            a.push(k.to_string());
            a.push(v);
        };
        match self {
            CtJob::Dst { ip, port } => {
                push("--orig-dst", ip.to_string());
                push("--orig-port-dst", port.to_string());
            }
            CtJob::NodePort { port } => push("--orig-port-dst", port.to_string()),
            CtJob::DstEndpoint { ip, port, ep } => {
                push("--orig-dst", ip.to_string());
                push("--orig-port-dst", port.to_string());
                push("--reply-src", ep.0.to_string());
                push("--reply-port-src", ep.1.to_string());
            }
            CtJob::NodePortEndpoint { port, ep } => {
                push("--orig-port-dst", port.to_string());
                push("--reply-src", ep.0.to_string());
                push("--reply-port-src", ep.1.to_string());
            }
        }
        a
    }
}

fn vips(info: &ServicePortInfo) -> impl Iterator<Item = Ipv4Addr> + '_ {
    std::iter::once(info.cluster_ip)
        .chain(info.external_ips.iter().copied())
        .chain(info.load_balancer_ips.iter().copied())
}

fn conntrack_jobs(
    old: Option<(&ServicePortInfo, &Fragment)>,
    new: Option<(&ServicePortInfo, &Fragment)>,
    out: &mut Vec<CtJob>,
) {
    let proto = new.or(old).map(|(i, _)| i.protocol);
    if proto != Some(Protocol::Udp) {
        return;
    }
    let old_active = old.is_some_and(|(_, f)| f.has_any);
    if let Some((info, f)) = new {
        if f.has_any && !old_active {
            out.extend(vips(info).map(|ip| CtJob::Dst { ip, port: info.port }));
            if let Some(port) = info.node_port {
                out.push(CtJob::NodePort { port });
            }
        }
    }
    if let Some((info, f)) = old {
        let still: HashSet<(Ipv4Addr, u16)> =
            new.map(|(_, n)| n.reachable.iter().copied().collect()).unwrap_or_default();
        for ep in f.reachable.iter().filter(|e| !still.contains(e)) {
            out.extend(vips(info).map(|ip| CtJob::DstEndpoint { ip, port: info.port, ep: *ep }));
            if let Some(port) = info.node_port {
                out.push(CtJob::NodePortEndpoint { port, ep: *ep });
            }
        }
    }
}

/// Programs one nftables table from the desired state, keeping the last committed state
/// in memory (it never reads the table back).
pub struct Proxier {
    cfg: ProxyConfig,
    /// The committed state; `None` means unknown (first sync or after a failure): the next
    /// sync rewrites the whole table.
    state: Option<State>,
    groups: Groups,
    last_transaction: String,
    nft_duration: Duration,
    /// The nf_tables netlink socket for partial syncs (opened on first use).
    socket: Option<netlink::Socket>,
    /// Opening the socket failed once: partial syncs use `nft -f` from then on.
    netlink_unavailable: bool,
    /// How the last transaction was sent.
    last_via_netlink: bool,
    /// The next sync may adopt a table left by an earlier run (only the first one).
    may_adopt: bool,
    /// The node's zone changed: the next partial sync recompiles every service port.
    recompile_all: bool,
}

impl Proxier {
    /// A proxier for `cfg`. Nothing is written until the first [`Proxier::sync`].
    pub fn new(cfg: ProxyConfig) -> Proxier {
        Proxier {
            cfg,
            state: None,
            groups: Groups::default(),
            last_transaction: String::new(),
            nft_duration: Duration::ZERO,
            socket: None,
            netlink_unavailable: false,
            last_via_netlink: false,
            may_adopt: true,
            recompile_all: false,
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    /// The text of the last transaction sent to `nft` (for debugging and tests).
    pub fn last_transaction(&self) -> &str {
        &self.last_transaction
    }

    /// The next sync will rewrite the whole table.
    pub fn needs_full_sync(&self) -> bool {
        self.state.is_none()
    }

    /// Sets this node's zone (`topology.kubernetes.io/zone`); services whose endpoints carry
    /// zone hints are reprogrammed by the next sync.
    pub fn set_node_zone(&mut self, zone: Option<String>) {
        if self.cfg.node_zone != zone {
            self.cfg.node_zone = zone;
            self.recompile_all = true;
        }
    }

    /// Forget the committed state so the next sync rewrites the whole table.
    pub fn force_full_sync(&mut self) {
        self.state = None;
        self.may_adopt = false;
    }

    /// Makes the table match `desired` in one atomic transaction: the whole table when the
    /// committed state is unknown (the very first sync adopts a table an earlier run left,
    /// if it can), otherwise only the difference. On failure the state becomes unknown, so
    /// the next sync is a full one.
    pub fn sync<D: Borrow<DesiredPort>>(&mut self, desired: &[D]) -> Result<SyncStats, ProxyError> {
        let start = Instant::now();
        self.nft_duration = Duration::ZERO;
        let may_adopt = std::mem::replace(&mut self.may_adopt, false) && self.cfg.netlink_partial_syncs;
        let (res, full) = match self.state.take() {
            None if may_adopt => match self.adopt(desired) {
                Ok(stats) => (Ok(stats), false),
                Err(why) => {
                    tracing::info!(reason = %why, "not adopting the existing table; rewriting it");
                    (self.sync_full(desired), true)
                }
            },
            None => (self.sync_full(desired), true),
            Some(state) => (self.sync_partial(state, desired), false),
        };
        self.recompile_all = false;
        let duration = start.elapsed();
        metrics::record_sync(full, duration, res.as_ref().ok());
        let nft_duration = self.nft_duration;
        res.map(|s| SyncStats { duration, nft_duration, ..s })
    }

    /// Sends an incremental transaction: as the netlink batch when there is one (and it is
    /// not huge), else as the `nft -f` script.
    fn send(&mut self, script: Script, batch: Option<Batch>) -> Result<(), ProxyError> {
        match batch {
            Some(b) if b.len_bytes() <= netlink::MAX_BATCH_BYTES => self.run_netlink(script, &b),
            _ => self.run_nft(script),
        }
    }

    /// Sends a partial sync over netlink; falls back to `nft -f` when the socket cannot be
    /// opened (e.g. a kernel without nf_tables netlink access for this process).
    fn run_netlink(&mut self, script: Script, batch: &Batch) -> Result<(), ProxyError> {
        let Some(socket) = self.socket() else {
            return self.run_nft(script);
        };
        let start = Instant::now();
        let res = socket.commit(batch);
        self.nft_duration = start.elapsed();
        self.last_transaction = script.text;
        self.last_via_netlink = true;
        res.map_err(|e| {
            // A socket in an unknown state (e.g. answers still queued) is not reused.
            self.socket = None;
            ProxyError::Netlink(e)
        })
    }

    /// The netlink socket, opened on first use; `None` when it cannot be opened.
    fn socket(&mut self) -> Option<&mut netlink::Socket> {
        if self.socket.is_none() && !self.netlink_unavailable {
            match netlink::Socket::open(self.cfg.netns.as_deref()) {
                Ok(s) => self.socket = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open an nf_tables netlink socket; partial syncs use nft -f");
                    self.netlink_unavailable = true;
                }
            }
        }
        self.socket.as_mut()
    }

    /// First sync of a restarted proxy: adopt the table an earlier run left (see
    /// [`crate::adopt`]) by sending only the difference. `Err` says why not (the caller
    /// then rewrites the table).
    fn adopt<D: Borrow<DesiredPort>>(&mut self, desired: &[D]) -> Result<SyncStats, String> {
        let table = self.cfg.table.clone();
        let socket = self.socket().ok_or("no netlink socket")?;
        let kernel = socket
            .read_table(&table)
            .map_err(|e| {
                self.socket = None;
                e.to_string()
            })?
            .ok_or("there is no table yet")?;
        let plan = adopt::plan(&self.cfg, desired, &kernel)?;
        let (script, batch) = self.partial_script(&plan.state, plan.ops);
        let statements = script.statements;
        if statements > 0 {
            self.send(script, batch).map_err(|e| format!("the adopting transaction failed: {e}"))?;
        }
        let services = plan.state.all().count();
        let stats = self.stats(&plan.state, false, statements, services, 0);
        self.groups = plan.groups;
        self.state = Some(plan.state);
        Ok(SyncStats { adopted: true, ..stats })
    }

    /// Whether the last transaction went over netlink (true) or through `nft -f` (false).
    pub fn last_sent_via_netlink(&self) -> bool {
        self.last_via_netlink
    }

    fn run_nft(&mut self, script: Script) -> Result<(), ProxyError> {
        self.last_via_netlink = false;
        let start = Instant::now();
        let out = exec::run(&self.cfg.nft, &["-f", "-"], Some(script.text.as_bytes()), self.cfg.netns.as_deref())
            .map_err(|e| ProxyError::io(format!("running {}", self.cfg.nft.display()), e));
        self.nft_duration = start.elapsed();
        self.last_transaction = script.text;
        let out = out?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr: String = stderr.lines().take(20).collect::<Vec<_>>().join("\n");
        Err(ProxyError::Nft { status: out.status.to_string(), stderr })
    }

    fn sync_full<D: Borrow<DesiredPort>>(&mut self, desired: &[D]) -> Result<SyncStats, ProxyError> {
        let (state, groups, script) = build_full(&self.cfg, desired);
        let statements = script.statements;
        self.run_nft(script)?;
        let services = state.all().count();
        let stats = self.stats(&state, true, statements, services, 0);
        self.groups = groups;
        self.state = Some(state);
        Ok(stats)
    }

    fn sync_partial<D: Borrow<DesiredPort>>(
        &mut self,
        mut state: State,
        desired: &[D],
    ) -> Result<SyncStats, ProxyError> {
        let mut ops = Ops::default();
        let mut ct: Vec<CtJob> = Vec::new();
        let mut changed = 0usize;
        let mut services = 0usize;
        state.generation += 1;
        let generation = state.generation;
        let State { services: by_hash, elems, next_owner, .. } = &mut state;
        for d in desired {
            let (info, eps) = d.borrow();
            let bucket = by_hash.entry(identity_hash(info)).or_default();
            match bucket.iter_mut().find(|s| same_identity(&s.info, info)) {
                Some(s) if s.generation == generation => {} // listed twice: the first one counts
                Some(s) if s.info == *info && s.eps == *eps && !self.recompile_all => {
                    s.generation = generation;
                    services += 1;
                }
                Some(s) => {
                    s.generation = generation;
                    services += 1;
                    let frag = render::compile(&self.cfg, info, eps, Some(&s.frag), &mut self.groups);
                    if diff_fragment(elems, s.owner, Some(&s.frag), Some(&frag), &mut ops) {
                        changed += 1;
                    }
                    release_groups(&mut self.groups, &s.frag, Some(&frag));
                    conntrack_jobs(Some((&s.info, &s.frag)), Some((info, &frag)), &mut ct);
                    s.info = info.clone();
                    s.eps = eps.clone();
                    s.frag = frag;
                }
                None => {
                    services += 1;
                    let frag = render::compile(&self.cfg, info, eps, None, &mut self.groups);
                    let owner = *next_owner;
                    *next_owner += 1;
                    diff_fragment(elems, owner, None, Some(&frag), &mut ops);
                    changed += 1;
                    conntrack_jobs(None, Some((info, &frag)), &mut ct);
                    bucket.push(SvcState { generation, owner, info: info.clone(), eps: eps.clone(), frag });
                }
            }
        }
        // Service ports no longer desired.
        by_hash.retain(|_, bucket| {
            bucket.retain(|s| {
                if s.generation == generation {
                    return true;
                }
                diff_fragment(elems, s.owner, Some(&s.frag), None, &mut ops);
                release_groups(&mut self.groups, &s.frag, None);
                conntrack_jobs(Some((&s.info, &s.frag)), None, &mut ct);
                changed += 1;
                false
            });
            !bucket.is_empty()
        });
        let (script, batch) = self.partial_script(&state, ops);
        let statements = script.statements;
        if statements > 0 {
            if let Err(e) = self.send(script, batch) {
                // The state in memory no longer says what the kernel has: rewrite it all next time.
                self.groups = Groups::default();
                return Err(e);
            }
        }
        let deletions = self.conntrack_cleanup(&ct);
        let stats = self.stats(&state, false, statements, services, deletions);
        self.state = Some(state);
        Ok(SyncStats { changed_services: changed, ..stats })
    }

    /// The partial transaction as `nft -f` text, and as a netlink batch when every
    /// statement is in the encoder's subset (and `netlink_partial_syncs` is on). Both hold
    /// the same statements in the same order.
    fn partial_script(&self, state: &State, ops: Ops) -> (Script, Option<Batch>) {
        let t = format!("ip {}", self.cfg.table);
        let mut s = Script::default();
        let mut b = self.cfg.netlink_partial_syncs.then(|| Batch::new(&self.cfg.table));
        for (name, timeout) in &ops.add_sets {
            s.cmd(&render::affinity_set_command(&t, name, *timeout));
            // Sets with timeouts are not in the encoder's subset.
            b = None;
        }
        for c in &ops.add_chains {
            s.cmd(&format!("add chain {t} {c}"));
            if let Some(b) = b.as_mut() {
                b.add_chain(c);
            }
        }
        for c in &ops.flush_chains {
            s.cmd(&format!("flush chain {t} {c}"));
            if let Some(b) = b.as_mut() {
                b.flush_chain(c);
            }
        }
        for (c, rules) in &ops.rules {
            for r in rules {
                s.cmd(&format!("add rule {t} {c} {r}"));
                if let Some(batch) = b.as_mut() {
                    match netlink::encode_rule(r) {
                        Some(exprs) => batch.add_rule(c, &exprs, r),
                        None => b = None,
                    }
                }
            }
        }
        let mut dels: BTreeMap<MapId, Vec<String>> = BTreeMap::new();
        let mut adds: BTreeMap<MapId, Vec<String>> = BTreeMap::new();
        // The same, as (key, value) for the netlink encoder.
        let mut dels_raw: BTreeMap<MapId, Vec<(&str, Option<String>)>> = BTreeMap::new();
        let mut adds_raw: BTreeMap<MapId, Vec<(&str, Option<String>)>> = BTreeMap::new();
        let mut touched: Vec<(&(MapId, String), &Effective)> = ops.touched.iter().collect();
        touched.sort();
        for (k, before) in touched {
            let after = state.elems.effective(k);
            if *before == after {
                continue;
            }
            if before.is_some() {
                dels.entry(k.0).or_default().push(k.1.clone());
                dels_raw.entry(k.0).or_default().push((k.1.as_str(), None));
            }
            if let Some(v) = after {
                adds.entry(k.0).or_default().push(element_text(k.0, &k.1, v.as_deref()));
                adds_raw.entry(k.0).or_default().push((k.1.as_str(), v));
            }
        }
        for (m, items) in &dels {
            s.elements("delete", &t, *m, items);
        }
        for (m, items) in &adds {
            s.elements("add", &t, *m, items);
        }
        if let Some(batch) = b.as_mut() {
            let ok = encode_elements(batch, false, &dels_raw) && encode_elements(batch, true, &adds_raw);
            if !ok {
                b = None;
            }
        }
        for c in &ops.del_chains {
            s.cmd(&format!("delete chain {t} {c}"));
            if let Some(b) = b.as_mut() {
                b.delete_chain(c);
            }
        }
        for name in &ops.del_sets {
            s.cmd(&format!("delete set {t} {name}"));
            if let Some(b) = b.as_mut() {
                b.delete_set(name);
            }
        }
        (s, b)
    }

    fn stats(&self, state: &State, full: bool, statements: usize, services: usize, deletions: usize) -> SyncStats {
        let (base_rules, base_chains) = render::base_counts(&self.cfg);
        let mut rules = base_rules;
        let mut chains = base_chains;
        let mut endpoints = 0;
        for s in state.all() {
            rules += s.frag.rule_count();
            chains += s.frag.chains.len();
            endpoints += s.frag.reachable.len();
        }
        SyncStats {
            full,
            adopted: false,
            duration: Duration::ZERO,
            nft_duration: Duration::ZERO,
            statements,
            services,
            endpoints,
            changed_services: if full { services } else { 0 },
            rules,
            chains,
            conntrack_deletions: deletions,
        }
    }

    /// Deletes stale UDP conntrack entries; failures are logged, never fatal.
    fn conntrack_cleanup(&self, jobs: &[CtJob]) -> usize {
        let mut done = 0;
        let mut seen: HashSet<&CtJob> = HashSet::new();
        for job in jobs {
            if !seen.insert(job) {
                continue;
            }
            let args = job.args();
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            match exec::run(&self.cfg.conntrack, &argv, None, self.cfg.netns.as_deref()) {
                Ok(out) => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    // conntrack exits 1 when nothing matched ("0 flow entries have been deleted").
                    if out.status.success() || stderr.contains("0 flow entries") {
                        done += 1;
                    } else {
                        tracing::warn!(args = ?args, stderr = %stderr.trim(), "conntrack cleanup failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, conntrack = %self.cfg.conntrack.display(), "cannot run conntrack");
                    break;
                }
            }
        }
        done
    }
}

/// Encodes element changes into `batch`; false when one is outside the encoder's subset.
fn encode_elements(batch: &mut Batch, add: bool, by_map: &BTreeMap<MapId, Vec<(&str, Option<String>)>>) -> bool {
    for (m, items) in by_map {
        let mut elems = Vec::with_capacity(items.len());
        for (key, value) in items {
            let Some(k) = netlink::encode_key(*m, key) else { return false };
            let data = match (add && m.is_map(), value) {
                (true, Some(v)) => match netlink::encode_value(*m, v) {
                    Some(d) => Some(d),
                    None => return false,
                },
                _ => None,
            };
            elems.push((k, data));
        }
        batch.elements(add, m.name(), &elems);
    }
    true
}

/// The transaction a full sync of `desired` sends (pure; for tests and debugging).
pub fn render_full(cfg: &ProxyConfig, desired: &[DesiredPort]) -> String {
    build_full(cfg, desired).2.text
}

fn build_full<D: Borrow<DesiredPort>>(cfg: &ProxyConfig, desired: &[D]) -> (State, Groups, Script) {
    let mut groups = Groups::default();
    let (state, order) = build_state(cfg, desired, &mut groups, |_| None);
    let frags = order.iter().filter_map(|(h, i)| state.services.get(h).and_then(|b| b.get(*i)).map(|s| &s.frag));
    let script = render::full_script(cfg, frags, &state.elems.by_map());
    (state, groups, script)
}

/// Compiles every service port of `desired` (the first of duplicates), with `prev` giving
/// a fragment whose endpoint groups (ids and slots) to keep. Returns the state and the
/// (hash, index in bucket) of each service port in desired order.
pub(crate) fn build_state<D: Borrow<DesiredPort>>(
    cfg: &ProxyConfig,
    desired: &[D],
    groups: &mut Groups,
    mut prev: impl FnMut(&ServicePortInfo) -> Option<Fragment>,
) -> (State, Vec<(u64, usize)>) {
    let mut state = State { generation: 1, ..State::default() };
    // (hash, index in bucket) in desired order, for a deterministic script.
    let mut order: Vec<(u64, usize)> = Vec::with_capacity(desired.len());
    for d in desired {
        let (info, eps) = d.borrow();
        let h = identity_hash(info);
        let bucket = state.services.entry(h).or_default();
        if bucket.iter().any(|s| same_identity(&s.info, info)) {
            continue;
        }
        let frag = render::compile(cfg, info, eps, prev(info).as_ref(), groups);
        let owner = state.next_owner;
        state.next_owner += 1;
        for (m, k, v) in &frag.elements {
            state.elems.insert(owner, (*m, k.clone()), v.clone());
        }
        order.push((h, bucket.len()));
        bucket.push(SvcState { generation: 1, owner, info: info.clone(), eps: eps.clone(), frag });
    }
    (state, order)
}

fn release_groups(groups: &mut Groups, old: &Fragment, new: Option<&Fragment>) {
    for g in &old.groups {
        if !new.is_some_and(|n| n.groups.iter().any(|ng| ng.id == g.id)) {
            groups.release(g.id);
        }
    }
}

/// Records the changes from `old` to `new` for one owner; returns whether anything changed.
fn diff_fragment(
    elems: &mut ElemStore,
    owner: u32,
    old: Option<&Fragment>,
    new: Option<&Fragment>,
    ops: &mut Ops,
) -> bool {
    let empty = Fragment::default();
    let old = old.unwrap_or(&empty);
    let new = new.unwrap_or(&empty);
    let mut changed = false;

    let old_chains: HashMap<&str, &Vec<String>> = old.chains.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let new_names: HashSet<&str> = new.chains.iter().map(|(n, _)| n.as_str()).collect();
    for (name, rules) in &new.chains {
        match old_chains.get(name.as_str()) {
            None => {
                ops.add_chains.push(name.clone());
                ops.rules.push((name.clone(), rules.clone()));
                changed = true;
            }
            Some(r) if *r != rules => {
                ops.flush_chains.push(name.clone());
                ops.rules.push((name.clone(), rules.clone()));
                changed = true;
            }
            Some(_) => {}
        }
    }
    for (name, _) in &old.chains {
        if !new_names.contains(name.as_str()) {
            ops.flush_chains.push(name.clone());
            ops.del_chains.push(name.clone());
            changed = true;
        }
    }

    let old_sets: HashSet<&str> = old.affinity_sets.iter().map(|(n, _)| n.as_str()).collect();
    let new_sets: HashSet<&str> = new.affinity_sets.iter().map(|(n, _)| n.as_str()).collect();
    for (name, timeout) in &new.affinity_sets {
        if !old_sets.contains(name.as_str()) {
            ops.add_sets.push((name.clone(), *timeout));
            changed = true;
        }
    }
    for (name, _) in &old.affinity_sets {
        if !new_sets.contains(name.as_str()) {
            ops.del_sets.push(name.clone());
            changed = true;
        }
    }

    let old_elems: HashMap<(MapId, &str), &Option<String>> =
        old.elements.iter().map(|(m, k, v)| ((*m, k.as_str()), v)).collect();
    let new_elems: HashSet<(MapId, &str)> = new.elements.iter().map(|(m, k, _)| (*m, k.as_str())).collect();
    for (m, k, _) in &old.elements {
        if !new_elems.contains(&(*m, k.as_str())) {
            let key = (*m, k.clone());
            let before = elems.effective(&key);
            ops.touched.entry(key.clone()).or_insert(before);
            elems.remove(owner, &key);
            changed = true;
        }
    }
    for (m, k, v) in &new.elements {
        if old_elems.get(&(*m, k.as_str())).is_some_and(|ov| *ov == v) {
            continue;
        }
        let key = (*m, k.clone());
        let before = elems.effective(&key);
        ops.touched.entry(key.clone()).or_insert(before);
        elems.insert(owner, key, v.clone());
        changed = true;
    }
    changed
}
