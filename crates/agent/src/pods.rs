//! Pod workers: one task per pod bound to this node that creates its sandbox,
//! runs its containers with restarts and back-off, probes them, reports status,
//! and tears everything down on deletion (upstream `pkg/kubelet/pod_workers.go`,
//! `kuberuntime_manager.go`, `status/status_manager.go`). After an agent
//! restart, workers continue from the sandboxes and containers the runtime
//! adopted, and sandboxes of pods that no longer exist are removed.

use crate::image_service::{self, ImageService, Resolved};
use crate::probes::{self, ProbeKind, ProbeResult};
use crate::runtime::{Container, ContainerSpec, ExitInfo, RootfsConfig, Runtime, Sandbox, SandboxSpec};
use crate::{dns_config, envvars, AgentConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container as ContainerDef, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Back-off of a crashing container, and of a failing image pull: 10 s
/// doubling to 5 min (kubelet's).
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

pub struct Shared {
    pub client: kube::Client,
    pub cfg: AgentConfig,
    pub runtime: Runtime,
    pub pods: reflector::Store<Pod>,
    pub services: reflector::Store<Service>,
    pub images: Arc<ImageService>,
}

/// Run the pod workers until the task is dropped.
pub async fn run(client: kube::Client, cfg: AgentConfig, runtime: Runtime, images: Arc<ImageService>) {
    let pod_api: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.node_name));
    let (pods, pod_writer) = reflector::store();
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(1);
    let pod_stream = watcher(pod_api, wc).default_backoff().reflect(pod_writer);
    let tx = changed_tx.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(pod_stream);
        while s.next().await.is_some() {
            let _ = tx.try_send(());
        }
    });
    let (services, svc_writer) = reflector::store();
    let svc_stream =
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(svc_writer);
    tokio::spawn(async move {
        let mut s = std::pin::pin!(svc_stream);
        while s.next().await.is_some() {}
    });
    let _ = pods.wait_until_ready().await;
    let _ = services.wait_until_ready().await;
    let shared = Arc::new(Shared { client, cfg, runtime, pods, services, images });
    let gc = shared.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(image_service::GC_PERIOD).await;
            let in_use: Vec<String> = gc
                .pods
                .state()
                .iter()
                .filter_map(|p| p.spec.as_ref())
                .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
                .filter_map(|c| c.image.clone())
                .collect();
            let images = gc.images.clone();
            // Walks the store's files: off the async threads.
            let _ = tokio::task::spawn_blocking(move || images.collect_garbage(&in_use)).await;
        }
    });
    let mut workers: HashMap<String, mpsc::Sender<()>> = HashMap::new();
    loop {
        let live: HashMap<String, Arc<Pod>> =
            shared.pods.state().into_iter().filter_map(|p| Some((p.metadata.uid.clone()?, p))).collect();
        // Sandboxes without a Pod (deleted while the agent was down) get a
        // worker too: it finds no Pod and removes the sandbox.
        let sandboxes = shared.runtime.sandboxes().into_iter().map(|sb| sb.uid);
        let uids: Vec<String> = live.keys().cloned().chain(sandboxes).collect();
        for uid in uids {
            if !workers.contains_key(&uid) {
                if !live.contains_key(&uid) {
                    tracing::info!(uid = %uid, "removing the sandbox of a pod that no longer exists");
                }
                let (tx, rx) = mpsc::channel(1);
                workers.insert(uid.clone(), tx);
                tokio::spawn(PodWorker::new(shared.clone(), uid).run(rx));
            }
        }
        // Tell every worker to look again; workers of pods gone from the API
        // notice and clean up, then end.
        workers.retain(|_, tx| match tx.try_send(()) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if changed_rx.recv().await.is_none() {
            return;
        }
    }
}

#[derive(Default)]
struct ContainerState {
    running: Option<Arc<Container>>,
    started_at: Option<String>,
    restart_count: i32,
    last_exit: Option<(ExitInfo, String)>,
    /// Not restarted before this instant (CrashLoopBackOff).
    backoff_until: Option<Instant>,
    backoff: Duration,
    ready: bool,
    started: bool,
    probe_state: probes::State,
    waiting: Option<(String, String)>,
    terminated_for_good: bool,
    /// The image the next start runs (looked up, pulled if need be).
    image: Option<Resolved>,
    /// `imageID` of the running image (`name@sha256:...`), and its canonical reference.
    image_id: String,
    image_ref: Option<String>,
    /// Image pull back-off (`ImagePullBackOff`).
    pull_backoff: Duration,
    pull_backoff_until: Option<Instant>,
}

struct PodWorker {
    shared: Arc<Shared>,
    uid: String,
    sandbox: Option<Sandbox>,
    containers: BTreeMap<String, ContainerState>,
    /// Container exits, reported by one waiter task per running container.
    exit_tx: mpsc::Sender<(String, ExitInfo)>,
    exit_rx: mpsc::Receiver<(String, ExitInfo)>,
    last_status: Option<Value>,
    start_time: Option<String>,
    /// Whether containers the runtime adopted from a previous agent run were taken over.
    adopted: bool,
    /// Projected volumes (the ServiceAccount token) and when they are due.
    volumes: crate::volumes::PodVolumes,
    /// Why the pod was evicted (an emptyDir over its `sizeLimit`); its
    /// containers are stopped and never restarted.
    evicted: Option<String>,
    /// When the emptyDir usage was last measured.
    storage_checked: Option<Instant>,
}

/// How often emptyDir usage is measured against `sizeLimit` (kubelet's
/// eviction monitoring interval).
const STORAGE_CHECK_PERIOD: Duration = Duration::from_secs(10);

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn format_time(t: &jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|_| now())
}

impl PodWorker {
    fn new(shared: Arc<Shared>, uid: String) -> PodWorker {
        let (exit_tx, exit_rx) = mpsc::channel(16);
        PodWorker {
            shared,
            uid,
            sandbox: None,
            containers: BTreeMap::new(),
            exit_tx,
            exit_rx,
            last_status: None,
            start_time: None,
            adopted: false,
            volumes: Default::default(),
            evicted: None,
            storage_checked: None,
        }
    }

    fn pod(&self) -> Option<Arc<Pod>> {
        self.shared.pods.state().into_iter().find(|p| p.metadata.uid.as_deref() == Some(self.uid.as_str()))
    }

    async fn run(mut self, mut wake: mpsc::Receiver<()>) {
        loop {
            let Some(pod) = self.pod() else {
                self.teardown(Duration::from_secs(0)).await;
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64;
                self.teardown(Duration::from_secs(grace)).await;
                self.finish_delete(&pod).await;
                return;
            }
            if self.evicted.is_none() {
                if let Err(e) = self.sync(&pod).await {
                    tracing::warn!(pod = ?pod.metadata.name, error = %e, "pod sync failed");
                }
                self.check_local_storage(&pod).await;
            }
            if let Err(e) = self.report(&pod).await {
                tracing::debug!(pod = ?pod.metadata.name, error = %e, "pod status update failed");
            }
            let tick = Duration::from_millis(if self.needs_fast_tick() { 200 } else { 1000 });
            tokio::select! {
                w = wake.recv() => if w.is_none() { return },
                Some((name, exit)) = self.exit_rx.recv() => self.on_exit(&pod, &name, exit),
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    fn needs_fast_tick(&self) -> bool {
        self.containers.values().any(|c| c.running.is_some() && !c.ready)
    }

    fn on_exit(&mut self, pod: &Pod, name: &str, exit: ExitInfo) {
        let policy = match self.evicted {
            // An evicted pod's containers stay down.
            Some(_) => "Never".to_string(),
            None => pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into()),
        };
        let Some(c) = self.containers.get_mut(name) else { return };
        let started = c.started_at.clone().unwrap_or_else(now);
        c.running = None;
        c.ready = false;
        c.started = false;
        let failed = exit.exit_code != 0 || exit.signal.is_some();
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => failed,
            _ => true,
        };
        c.last_exit = Some((exit, started));
        if restart {
            c.backoff = if c.backoff.is_zero() { BACKOFF_START } else { (c.backoff * 2).min(BACKOFF_MAX) };
            c.backoff_until = Some(Instant::now() + c.backoff);
            c.restart_count += 1;
        } else {
            c.terminated_for_good = true;
        }
    }

    async fn sync(&mut self, pod: &Pod) -> Result<(), String> {
        let spec = pod.spec.clone().unwrap_or_default();
        if self.start_time.is_none() {
            // A restarted agent keeps the pod's startTime.
            let reported = pod.status.as_ref().and_then(|s| s.start_time.as_ref());
            self.start_time = Some(reported.map(|t| format_time(&t.0)).unwrap_or_else(now));
        }
        for c in &spec.containers {
            self.containers.entry(c.name.clone()).or_default();
        }
        // Images first (kubelet's EnsureImageExists): a container whose image
        // cannot be had waits in ErrImagePull / ImagePullBackOff.
        for c in &spec.containers {
            let st = self.containers.entry(c.name.clone()).or_default();
            if st.running.is_some() || st.terminated_for_good || st.image.is_some() {
                continue;
            }
            let image = c.image.clone().unwrap_or_default();
            if st.pull_backoff_until.is_some_and(|t| t > Instant::now()) {
                if let Some((reason, message)) = st.waiting.clone().filter(|(r, _)| r == "ErrImagePull") {
                    st.waiting = Some((
                        "ImagePullBackOff".into(),
                        format!("Back-off pulling image {image:?}: {reason}: {message}"),
                    ));
                    let ev = vec![("Normal", "BackOff", format!("Back-off pulling image {image:?}"))];
                    self.record(pod, &c.name, ev);
                }
                return Ok(());
            }
            let creds = self.pull_credentials(pod).await;
            match self.shared.images.resolve(&image, c.image_pull_policy.as_deref(), &creds).await {
                Ok(found) => {
                    self.record(pod, &c.name, found.events);
                    let st = self.containers.entry(c.name.clone()).or_default();
                    st.pull_backoff = Duration::ZERO;
                    st.pull_backoff_until = None;
                    if st.waiting.as_ref().is_some_and(|(r, _)| r.contains("Image")) {
                        st.waiting = None;
                    }
                    st.image = Some(found.resolved);
                }
                Err(f) => {
                    self.record(pod, &c.name, f.events);
                    let st = self.containers.entry(c.name.clone()).or_default();
                    st.waiting = Some((f.reason.into(), f.message));
                    st.pull_backoff =
                        if st.pull_backoff.is_zero() { BACKOFF_START } else { (st.pull_backoff * 2).min(BACKOFF_MAX) };
                    st.pull_backoff_until = Some(Instant::now() + st.pull_backoff);
                    return Ok(());
                }
            }
        }
        // Volumes before the sandbox binds them; tokens renewed when due.
        let data_dir = self.shared.cfg.data_dir.clone();
        if let Err(e) = self.volumes.ensure(&self.shared.client, &data_dir, pod).await {
            if self.sandbox.is_none() {
                for c in &spec.containers {
                    self.containers.entry(c.name.clone()).or_default().waiting =
                        Some(("ContainerCreating".into(), e.clone()));
                }
                return Err(e);
            }
            tracing::warn!(pod = ?pod.metadata.name, error = %e, "refreshing the pod's volumes failed");
        }
        if self.sandbox.is_none() {
            let sb = self.create_sandbox(pod).await?;
            self.sandbox = Some(sb);
        }
        let Some(sandbox) = self.sandbox.clone() else { return Ok(()) };
        if !self.adopted {
            self.adopted = true;
            self.adopt_containers(pod);
        }
        for c in &spec.containers {
            let ready_to_start = {
                let st = self.containers.entry(c.name.clone()).or_default();
                st.running.is_none() && !st.terminated_for_good
            };
            if !ready_to_start {
                continue;
            }
            let wait = self.containers.get(&c.name).and_then(|st| st.backoff_until).filter(|t| *t > Instant::now());
            if wait.is_some() {
                let st = self.containers.entry(c.name.clone()).or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                st.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!(
                        "back-off {}s restarting failed container={} pod={name}_{ns}({})",
                        st.backoff.as_secs(),
                        c.name,
                        self.uid
                    ),
                ));
                continue;
            }
            match self.start_container(pod, &sandbox, c).await {
                Ok(container) => {
                    let st = self.containers.entry(c.name.clone()).or_default();
                    st.waiting = None;
                    st.probe_state = probes::State::default();
                    self.watch_container(&c.name, container);
                }
                Err(e) => {
                    let st = self.containers.entry(c.name.clone()).or_default();
                    st.waiting = Some(("RunContainerError".into(), e.clone()));
                    st.backoff = if st.backoff.is_zero() { BACKOFF_START } else { (st.backoff * 2).min(BACKOFF_MAX) };
                    st.backoff_until = Some(Instant::now() + st.backoff);
                    tracing::warn!(pod = ?pod.metadata.name, container = %c.name, error = %e, "container failed to start");
                }
            }
        }
        self.probe(pod, &sandbox).await;
        Ok(())
    }

    /// Evict the pod when a disk emptyDir holds more than its `sizeLimit`
    /// (kubelet's `emptyDirLimitEviction`): its containers are killed, the pod
    /// is `Failed` with reason `Evicted`, and its controller replaces it.
    async fn check_local_storage(&mut self, pod: &Pod) {
        if self.sandbox.is_none() || self.storage_checked.is_some_and(|t| t.elapsed() < STORAGE_CHECK_PERIOD) {
            return;
        }
        self.storage_checked = Some(Instant::now());
        let (data_dir, p) = (self.shared.cfg.data_dir.clone(), pod.clone());
        let over = tokio::task::spawn_blocking(move || crate::volumes::empty_dir_over_limit(&data_dir, &p))
            .await
            .ok()
            .flatten();
        let Some(message) = over else { return };
        tracing::info!(pod = ?pod.metadata.name, %message, "evicting the pod");
        let first = pod.spec.as_ref().and_then(|s| s.containers.first()).map(|c| c.name.clone()).unwrap_or_default();
        self.record(pod, &first, vec![("Warning", "Evicted", message.clone())]);
        self.evicted = Some(message);
        for st in self.containers.values_mut() {
            st.terminated_for_good = true;
            st.backoff_until = None;
        }
        let stops: Vec<Container> =
            self.shared.runtime.containers(&self.uid).into_iter().filter(Container::is_running).collect();
        let rt = self.shared.runtime.clone();
        futures::future::join_all(stops.iter().map(|c| rt.stop_container(c, Duration::ZERO))).await;
        if let Err(e) = self.shared.runtime.remove_sandbox(&self.uid).await {
            tracing::warn!(uid = %self.uid, error = %e, "removing an evicted pod's sandbox failed");
        }
        self.sandbox = None;
    }

    /// Track a running container and report its exit to the worker loop.
    fn watch_container(&mut self, name: &str, container: Container) {
        let container = Arc::new(container);
        let st = self.containers.entry(name.to_string()).or_default();
        st.running = Some(container.clone());
        st.started_at = Some(rfc3339(container.started_at));
        let tx = self.exit_tx.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let exit = container.wait().await;
            let _ = tx.send((name, exit)).await;
        });
    }

    /// Continue the containers the runtime adopted from a previous agent run
    /// instead of starting new ones (kubelet after a restart: the runtime
    /// still runs them and `computePodActions` keeps what runs), with the
    /// restart count, readiness and last state the previous run reported. A
    /// container that ended while no agent watched goes through the restart
    /// policy now, unless the previous run had already counted that exit.
    fn adopt_containers(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        for c in &spec.containers {
            let Some(container) = self.shared.runtime.container(&self.uid, &c.name) else { continue };
            if self.containers.get(&c.name).is_some_and(|st| st.running.is_some()) {
                continue;
            }
            let reported = statuses.iter().find(|s| s.name == c.name);
            let id = format!("rkube://{}", container.pid);
            let reported_running = reported.is_some_and(|s| {
                s.container_id.as_deref() == Some(id.as_str())
                    && s.state.as_ref().is_some_and(|st| st.running.is_some())
            });
            // A pulled image's identity, from the store (the previous run's is gone with it).
            let pulled = c.image.as_deref().filter(|_| container.own_root()).and_then(|i| self.shared.images.lookup(i));
            let st = self.containers.entry(c.name.clone()).or_default();
            if let Some(img) = pulled {
                st.image_id = img.image_id.clone();
                st.image_ref = Some(img.reference.to_string());
            }
            st.restart_count = reported.map(|s| s.restart_count).unwrap_or(0);
            st.last_exit = reported.and_then(|s| s.last_state.as_ref()?.terminated.as_ref()).map(|t| {
                let finished_at = t.finished_at.as_ref().map(|f| SystemTime::from(f.0)).unwrap_or_else(SystemTime::now);
                let exit = ExitInfo { exit_code: t.exit_code, signal: t.signal, finished_at };
                (exit, t.started_at.as_ref().map(|s| format_time(&s.0)).unwrap_or_else(now))
            });
            tracing::info!(pod = ?pod.metadata.name, container = %c.name, pid = container.pid, running = container.is_running(), "adopting container");
            match container.exit_info() {
                None => {
                    st.ready = reported.is_some_and(|s| s.ready);
                    st.started = reported.and_then(|s| s.started).unwrap_or(false);
                    self.watch_container(&c.name, container);
                }
                Some(exit) if reported_running => {
                    st.started_at = Some(rfc3339(container.started_at));
                    self.on_exit(pod, &c.name, exit);
                }
                Some(exit) => {
                    // Counted by the previous run already: only the policy applies.
                    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
                    let failed = exit.exit_code != 0 || exit.signal.is_some();
                    st.last_exit = Some((exit, rfc3339(container.started_at)));
                    if policy == "Never" || (policy == "OnFailure" && !failed) {
                        st.terminated_for_good = true;
                    } else {
                        st.backoff = BACKOFF_START;
                        st.backoff_until = Some(Instant::now() + BACKOFF_START);
                    }
                }
            }
        }
    }

    async fn probe(&mut self, pod: &Pod, sandbox: &Sandbox) {
        let spec = pod.spec.clone().unwrap_or_default();
        for c in &spec.containers {
            let Some(st) = self.containers.get_mut(&c.name) else { continue };
            let Some(running) = st.running.clone() else { continue };
            let started_at = running.started_at;
            // Startup probe gates the others.
            if !st.started {
                match &c.startup_probe {
                    None => st.started = true,
                    Some(p) => {
                        if probes::run_if_due(
                            ProbeKind::Startup,
                            p,
                            &mut st.probe_state,
                            started_at,
                            sandbox,
                            &self.shared.runtime,
                            c,
                        )
                        .await
                            == ProbeResult::Success
                        {
                            st.started = true;
                        }
                    }
                }
            }
            if !st.started {
                continue;
            }
            if let Some(p) = &c.liveness_probe {
                if probes::run_if_due(
                    ProbeKind::Liveness,
                    p,
                    &mut st.probe_state,
                    started_at,
                    sandbox,
                    &self.shared.runtime,
                    c,
                )
                .await
                    == ProbeResult::Failure
                {
                    tracing::info!(pod = ?pod.metadata.name, container = %c.name, "liveness probe failed, restarting");
                    let grace = Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64);
                    let _ = self.shared.runtime.stop_container(&running, grace).await;
                    continue;
                }
            }
            st.ready = match &c.readiness_probe {
                None => true,
                Some(p) => match probes::run_if_due(
                    ProbeKind::Readiness,
                    p,
                    &mut st.probe_state,
                    started_at,
                    sandbox,
                    &self.shared.runtime,
                    c,
                )
                .await
                {
                    ProbeResult::Success => true,
                    ProbeResult::Failure => false,
                    ProbeResult::Unchanged => st.ready,
                },
            };
        }
    }

    async fn create_sandbox(&self, pod: &Pod) -> Result<Sandbox, String> {
        // Containers of pulled images bind their own volumes (their images
        // were looked up before the sandbox is made).
        let own_root: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, st)| matches!(st.image, Some(Resolved::Oci(_))))
            .map(|(n, _)| n.clone())
            .collect();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
        let resolv = dns_config::resolv_conf(pod, &self.shared.cfg.dns);
        let host_network = spec.host_network.unwrap_or(false);
        let hosts = if host_network {
            let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            dns_config::host_network_hosts(pod, &node_hosts)
        } else {
            dns_config::hosts(pod, crate::runtime::POD_IP_PLACEHOLDER, &self.shared.cfg.dns.cluster_domain)
        };
        let sb_spec = SandboxSpec {
            uid: self.uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: name.clone(),
            hostname,
            resolv_conf: resolv,
            hosts,
            mounts: crate::volumes::mounts(&self.shared.cfg.data_dir, pod, &own_root)?,
            host_network: host_network.then_some(self.shared.cfg.node_ip),
            host_ipc: spec.host_ipc.unwrap_or(false),
        };
        self.shared.runtime.create_sandbox(&sb_spec).await.map_err(|e| e.to_string())
    }

    async fn env_for(&self, pod: &Pod, sandbox: &Sandbox, c: &ContainerDef) -> Vec<(String, String)> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let links = spec.enable_service_links.unwrap_or(true);
        let mut services: Vec<Service> = self
            .shared
            .services
            .state()
            .iter()
            .filter(|s| {
                let sns = s.metadata.namespace.as_deref().unwrap_or_default();
                let name = s.metadata.name.as_deref().unwrap_or_default();
                (links && sns == ns) || (sns == "default" && name == "kubernetes")
            })
            .map(|s| (**s).clone())
            .collect();
        // `kubernetes` from default comes last unless the pod is in default (upstream order).
        services.sort_by_key(|s| s.metadata.name.clone());
        let mut env = envvars::from_services(&services);
        let mut vars: BTreeMap<String, String> = env.iter().cloned().collect();
        let mut own = Vec::new();
        for e in c.env.clone().unwrap_or_default() {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => expand(v, &vars),
                (None, Some(src)) => self.value_from(pod, sandbox, src, &ns, &c.name).await.unwrap_or_default(),
                _ => String::new(),
            };
            vars.insert(e.name.clone(), value.clone());
            own.push((e.name.clone(), value));
        }
        for from in c.env_from.clone().unwrap_or_default() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(r) = &from.config_map_ref {
                if let Ok(cm) = Api::<ConfigMap>::namespaced(self.shared.client.clone(), &ns).get(&r.name).await {
                    for (k, v) in cm.data.unwrap_or_default() {
                        own.push((format!("{prefix}{k}"), v));
                    }
                }
            }
            if let Some(r) = &from.secret_ref {
                if let Ok(s) = Api::<Secret>::namespaced(self.shared.client.clone(), &ns).get(&r.name).await {
                    for (k, v) in s.data.unwrap_or_default() {
                        own.push((format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned()));
                    }
                }
            }
        }
        env.retain(|(k, _)| !own.iter().any(|(o, _)| o == k));
        env.extend(own);
        // A host-network pod is on the node's UTS namespace: its HOSTNAME is the node's.
        let hostname = if sandbox.host_network {
            sandbox.hostname.clone()
        } else {
            spec.hostname.clone().unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default())
        };
        env.push(("HOSTNAME".into(), hostname));
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()));
        }
        env
    }

    async fn value_from(
        &self,
        pod: &Pod,
        sandbox: &Sandbox,
        src: &k8s_openapi::api::core::v1::EnvVarSource,
        ns: &str,
        container: &str,
    ) -> Option<String> {
        if let Some(f) = &src.field_ref {
            return Some(match f.field_path.as_str() {
                "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
                "metadata.namespace" => ns.to_string(),
                "metadata.uid" => self.uid.clone(),
                "spec.nodeName" => self.shared.cfg.node_name.clone(),
                "spec.serviceAccountName" => {
                    pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default()
                }
                "status.podIP" | "status.podIPs" => sandbox.ip.to_string(),
                "status.hostIP" | "status.hostIPs" => self.shared.cfg.node_ip.to_string(),
                other => {
                    let path = other
                        .strip_prefix("metadata.labels['")
                        .or_else(|| other.strip_prefix("metadata.annotations['"))?;
                    let key = path.strip_suffix("']")?;
                    let map = if other.starts_with("metadata.labels") {
                        &pod.metadata.labels
                    } else {
                        &pod.metadata.annotations
                    };
                    map.as_ref().and_then(|m| m.get(key).cloned()).unwrap_or_default()
                }
            });
        }
        if let Some(r) = &src.resource_field_ref {
            // In env, the container defaults to the one being started.
            let name = r.container_name.as_deref().filter(|n| !n.is_empty()).unwrap_or(container);
            let spec = pod.spec.as_ref()?;
            let c = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)?;
            let node = crate::resource_fields::Allocatable::of_node();
            return crate::resource_fields::value(c, &r.resource, r.divisor.as_ref(), &node).ok();
        }
        if let Some(r) = &src.config_map_key_ref {
            let cm = Api::<ConfigMap>::namespaced(self.shared.client.clone(), ns).get(&r.name).await.ok()?;
            return cm.data.and_then(|d| d.get(&r.key).cloned());
        }
        if let Some(r) = &src.secret_key_ref {
            let s = Api::<Secret>::namespaced(self.shared.client.clone(), ns).get(&r.name).await.ok()?;
            return s.data.and_then(|d| d.get(&r.key).map(|v| String::from_utf8_lossy(&v.0).into_owned()));
        }
        None
    }

    async fn start_container(&mut self, pod: &Pod, sandbox: &Sandbox, c: &ContainerDef) -> Result<Container, String> {
        let image = c.image.clone().unwrap_or_default();
        let mut env = self.env_for(pod, sandbox, c).await;
        let vars: BTreeMap<String, String> = env.iter().cloned().collect();
        let command: Vec<String> = c.command.clone().unwrap_or_default().iter().map(|s| expand(s, &vars)).collect();
        let args: Vec<String> = c.args.clone().unwrap_or_default().iter().map(|s| expand(s, &vars)).collect();
        let resolved = match self.containers.get_mut(&c.name).and_then(|st| st.image.take()) {
            Some(r) => r,
            None => return Err(format!("the image {image:?} has not been looked up yet")),
        };
        let mut working_dir = c.working_dir.clone().map(PathBuf::from);
        let (mut image_id, mut image_ref) = (String::new(), None);
        let mut rootfs = None;
        let argv = match resolved {
            Resolved::Builtin(b) => {
                let program = images::argv(b, &command, &args);
                // A builtin image may also be told to run e.g. `sh -c ...`:
                // that comes from the node's filesystem.
                if images::is_builtin_program(&program) {
                    let mut v = vec![self.shared.cfg.self_exe.display().to_string(), "image".into()];
                    v.extend(program);
                    v
                } else {
                    program
                }
            }
            Resolved::Host => images::host_argv(&command, &args),
            Resolved::Oci(img) => {
                let run = &img.config.config;
                let argv = images::image_argv(
                    run.entrypoint.as_deref().unwrap_or_default(),
                    run.cmd.as_deref().unwrap_or_default(),
                    &command,
                    &args,
                );
                if argv.is_empty() {
                    return Err(format!("the image {image:?} has no Entrypoint or Cmd and the container no command"));
                }
                // kubelet: the image's environment, overridden by the container's.
                let mut merged: Vec<(String, String)> =
                    img.config.env().into_iter().filter(|(k, _)| !env.iter().any(|(e, _)| e == k)).collect();
                merged.append(&mut env);
                env = merged;
                if working_dir.is_none() {
                    working_dir = run.working_dir.clone().filter(|w| !w.is_empty()).map(PathBuf::from);
                }
                rootfs = Some(self.rootfs_config(pod, sandbox, c, &img)?);
                image_id = img.image_id.clone();
                image_ref = Some(img.reference.to_string());
                argv
            }
        };
        let restart = self.containers.get(&c.name).map(|s| s.restart_count).unwrap_or(0);
        let log_path = container_log_path(&self.shared.cfg.data_dir, &self.uid, &c.name, restart);
        let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
        let spec = ContainerSpec {
            name: c.name.clone(),
            argv,
            env,
            working_dir,
            memory_limit: limits.get("memory").and_then(|q| apimachinery::quantity::parse(&q.0)).map(|v| v as u64),
            cpu_limit_millis: limits
                .get("cpu")
                .and_then(|q| apimachinery::quantity::parse(&q.0))
                .map(|v| (v * 1000.0) as u64),
            log_path,
            rootfs,
        };
        let started = self.shared.runtime.start_container(sandbox, &spec).await.map_err(|e| e.to_string())?;
        let st = self.containers.entry(c.name.clone()).or_default();
        st.image_id = image_id;
        st.image_ref = image_ref;
        Ok(started)
    }

    /// The root filesystem of a container of a pulled image: its layers, its
    /// volume mounts (bound from where the pod infra mounted them), and its
    /// security context (kubelet's `securityContext` rules: the container's
    /// fields win over the pod's).
    fn rootfs_config(
        &self,
        pod: &Pod,
        sandbox: &Sandbox,
        c: &ContainerDef,
        img: &oci::Image,
    ) -> Result<RootfsConfig, String> {
        let binds = crate::volumes::container_binds(&self.shared.cfg.data_dir, pod, c)?;
        let psc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let as_u32 = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
        let caps = csc.capabilities.clone().unwrap_or_default();
        let capabilities = crate::runtime::capability_mask(
            csc.privileged.unwrap_or(false),
            &caps.add.unwrap_or_default(),
            &caps.drop.unwrap_or_default(),
        )?;
        let mut supplemental: Vec<u32> =
            psc.supplemental_groups.iter().flatten().filter_map(|g| u32::try_from(*g).ok()).collect();
        if let Some(fs) = as_u32(psc.fs_group) {
            supplemental.push(fs);
        }
        Ok(RootfsConfig {
            layers: img.layers.clone(),
            binds,
            hostname: sandbox.hostname.clone(),
            read_only: csc.read_only_root_filesystem.unwrap_or(false),
            image_user: img.config.config.user.clone().unwrap_or_default(),
            run_as_user: as_u32(csc.run_as_user.or(psc.run_as_user)),
            run_as_group: as_u32(csc.run_as_group.or(psc.run_as_group)),
            supplemental_groups: supplemental,
            capabilities,
            run_as_non_root: csc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false),
        })
    }

    /// Registry credentials from the pod's `imagePullSecrets`.
    async fn pull_credentials(&self, pod: &Pod) -> Vec<(String, oci::Credential)> {
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Vec::new();
        }
        let api: Api<Secret> =
            Api::namespaced(self.shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let mut secrets = Vec::new();
        for n in names {
            match api.get_opt(&n).await {
                Ok(Some(s)) => secrets.push(s),
                // kubelet goes on without a missing pull secret (and warns).
                Ok(None) => tracing::warn!(pod = ?pod.metadata.name, secret = %n, "image pull secret not found"),
                Err(e) => {
                    tracing::warn!(pod = ?pod.metadata.name, secret = %n, error = %e, "reading an image pull secret failed")
                }
            }
        }
        image_service::credentials(&secrets)
    }

    /// Record Events about container `container` of the pod (in the background).
    fn record(&self, pod: &Pod, container: &str, events: Vec<image_service::Event>) {
        if events.is_empty() {
            return;
        }
        let client = self.shared.client.clone();
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let node = self.shared.cfg.node_name.clone();
        let uid = self.uid.clone();
        let field_path = format!("spec.containers{{{container}}}");
        tokio::spawn(async move {
            let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, &ns);
            for (type_, reason, message) in events {
                let t = now();
                let ev = json!({
                    "apiVersion": "v1", "kind": "Event",
                    "metadata": { "generateName": format!("{name}."), "namespace": ns },
                    "involvedObject": { "kind": "Pod", "namespace": ns, "name": name, "uid": uid, "apiVersion": "v1", "fieldPath": field_path },
                    "reason": reason, "message": message, "type": type_,
                    "source": { "component": "kubelet", "host": node },
                    "reportingComponent": "kubelet", "reportingInstance": node,
                    "firstTimestamp": t, "lastTimestamp": t, "count": 1,
                });
                let Ok(ev) = serde_json::from_value(ev) else { continue };
                if let Err(e) = api.create(&kube::api::PostParams::default(), &ev).await {
                    tracing::debug!(error = %e, reason, "could not record a pod event");
                }
            }
        });
    }

    /// Build and send the pod status when it changed.
    async fn report(&mut self, pod: &Pod) -> Result<(), kube::Error> {
        let status = self.status(pod);
        if self.last_status.as_ref() == Some(&status) && api_ready(pod) == own_ready(&status) {
            return Ok(());
        }
        let api: Api<Pod> =
            Api::namespaced(self.shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let name = pod.metadata.name.clone().unwrap_or_default();
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
        self.last_status = Some(status);
        Ok(())
    }

    fn status(&self, pod: &Pod) -> Value {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut statuses = Vec::new();
        let (mut running, mut all_ready, mut terminated, mut failed) = (0, true, 0, 0);
        for c in &spec.containers {
            let st = self.containers.get(&c.name);
            let restart = st.map(|s| s.restart_count).unwrap_or(0);
            let last = st.and_then(|s| s.last_exit.as_ref()).map(|(e, started)| terminated_json(e, started));
            let state = match st {
                Some(s) if s.running.is_some() => {
                    running += 1;
                    json!({ "running": { "startedAt": s.started_at } })
                }
                Some(s) if s.terminated_for_good => {
                    terminated += 1;
                    if s.last_exit.as_ref().is_some_and(|(e, _)| e.exit_code != 0 || e.signal.is_some()) {
                        failed += 1;
                    }
                    last.clone().unwrap_or_else(|| json!({ "waiting": { "reason": "ContainerCreating" } }))
                }
                Some(s) => match &s.waiting {
                    Some((reason, message)) => json!({ "waiting": { "reason": reason, "message": message } }),
                    None => json!({ "waiting": { "reason": "ContainerCreating" } }),
                },
                None => json!({ "waiting": { "reason": "ContainerCreating" } }),
            };
            let ready = st.is_some_and(|s| s.running.is_some() && s.ready);
            all_ready &= ready;
            let image = st.and_then(|s| s.image_ref.clone()).or_else(|| c.image.clone());
            let mut cs = json!({
                "name": c.name,
                "image": image,
                "imageID": st.map(|s| s.image_id.clone()).unwrap_or_default(),
                "ready": ready,
                "started": st.is_some_and(|s| s.running.is_some() && s.started),
                "restartCount": restart,
                "state": state,
                "lastState": {},
            });
            if let Some(r) = st.and_then(|s| s.running.as_ref()) {
                cs["containerID"] = json!(format!("rkube://{}", r.pid));
            }
            if st.is_some_and(|s| s.running.is_some() || s.restart_count > 0) {
                if let Some(l) = last {
                    cs["lastState"] = l;
                }
            }
            statuses.push(cs);
        }
        let total = spec.containers.len();
        let phase = if total > 0 && terminated == total {
            if failed > 0 {
                "Failed"
            } else {
                "Succeeded"
            }
        } else if running > 0 || (terminated > 0 && self.sandbox.is_some()) {
            "Running"
        } else {
            "Pending"
        };
        let t = now();
        let ready = all_ready && total > 0 && running == total;
        let cond = |type_: &str, ok: bool, reason: Option<&str>| {
            let mut c = json!({ "type": type_, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": t });
            if let (false, Some(r)) = (ok, reason) {
                c["reason"] = json!(r);
            }
            c
        };
        let conditions = vec![
            cond("PodReadyToStartContainers", self.sandbox.is_some(), None),
            cond("Initialized", true, None),
            cond("Ready", ready, Some("ContainersNotReady")),
            cond("ContainersReady", ready, Some("ContainersNotReady")),
            cond("PodScheduled", true, None),
        ];
        // Keep transition times of unchanged conditions (upstream semantics).
        let old = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let conditions: Vec<Value> = conditions
            .into_iter()
            .map(|mut c| {
                if let Some(o) = old.iter().find(|o| Some(o.type_.as_str()) == c["type"].as_str()) {
                    if Some(o.status.as_str()) == c["status"].as_str() {
                        if let Some(tt) = &o.last_transition_time {
                            c["lastTransitionTime"] = json!(tt.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
                        }
                    }
                }
                c
            })
            .collect();
        let mut s = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.shared.cfg.node_ip.to_string(),
            "hostIPs": [{ "ip": self.shared.cfg.node_ip.to_string() }],
            "startTime": self.start_time,
            "containerStatuses": statuses,
        });
        if let Some(sb) = &self.sandbox {
            s["podIP"] = json!(sb.ip.to_string());
            s["podIPs"] = json!([{ "ip": sb.ip.to_string() }]);
        }
        if let Some(message) = &self.evicted {
            s["phase"] = json!("Failed");
            s["reason"] = json!("Evicted");
            s["message"] = json!(message);
            if let Some(conds) = s["conditions"].as_array_mut() {
                conds.push(json!({
                    "type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                    "message": message, "lastProbeTime": null, "lastTransitionTime": t,
                }));
            }
        }
        s
    }

    async fn teardown(&mut self, grace: Duration) {
        // The runtime's list: it includes containers adopted from a previous
        // run that this worker never took over.
        let stops: Vec<Container> =
            self.shared.runtime.containers(&self.uid).into_iter().filter(Container::is_running).collect();
        let rt = self.shared.runtime.clone();
        futures::future::join_all(stops.iter().map(|c| rt.stop_container(c, grace))).await;
        if let Err(e) = self.shared.runtime.remove_sandbox(&self.uid).await {
            tracing::warn!(uid = %self.uid, error = %e, "removing pod sandbox failed");
        }
        self.sandbox = None;
        let _ = std::fs::remove_dir_all(self.shared.cfg.data_dir.join("logs").join(&self.uid));
        crate::volumes::remove(&self.shared.cfg.data_dir, &self.uid);
    }

    /// The pod's processes are gone: remove the object (grace 0, this uid only).
    async fn finish_delete(&self, pod: &Pod) {
        let api: Api<Pod> =
            Api::namespaced(self.shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name, error = %e, "final pod delete failed"),
        }
    }
}

fn terminated_json(e: &ExitInfo, started: &str) -> Value {
    let reason = if e.exit_code == 0 && e.signal.is_none() { "Completed" } else { "Error" };
    let code = e.signal.map(|s| 128 + s).unwrap_or(e.exit_code);
    json!({ "terminated": { "exitCode": code, "reason": reason, "startedAt": started, "finishedAt": rfc3339(e.finished_at) } })
}

/// `$(VAR)` expansion as kubelet does for env, command and args; `$$` escapes.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(j) => {
                    let name = &inner[..j];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &inner[j + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Where a container's log for one run is kept.
pub fn container_log_path(data_dir: &std::path::Path, uid: &str, container: &str, restart: i32) -> PathBuf {
    data_dir.join("logs").join(uid).join(container).join(format!("{restart}.log"))
}

/// The Ready condition of the pod as the API has it: the node lifecycle
/// controller marks pods of an unreachable node not ready, and the agent must
/// put its own view back once it is heard from again.
fn api_ready(pod: &Pod) -> Option<&str> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    conds.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

/// The Ready condition of a status this agent built.
fn own_ready(status: &Value) -> Option<&str> {
    let conds = status.get("conditions")?.as_array()?;
    conds.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?.get("status")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubelet() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
    }
}
