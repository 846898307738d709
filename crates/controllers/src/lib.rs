//! `controllers`: the control loops of the cluster, each a Kubernetes API
//! client (kube-rs) that reconciles from a full view of its objects: garbage
//! collector, namespace lifecycle, replicaset, deployment, daemonset, job (and
//! ttl-after-finished), statefulset, cronjob, endpoints,
//! endpointslice, endpointslice mirroring, LoadBalancer address allocation, node
//! IPAM, node lifecycle (health, taints, taint-based eviction) and the scheduler.
//!
//! Shape (upstream `kube-controller-manager`): one shared reflector store per
//! kind ([`informer`]), and per controller a coalescing work queue keyed by
//! object ([`queue`]) fed by change handlers and a periodic resync; a worker
//! reconciles one object from the stores and writes the difference.
//!
//! Depends on: kube, k8s-openapi. Never on `store` or `apiserver`.

pub mod certificates;
mod cronjob;
mod daemonset;
mod deployment;
mod endpoints;
mod endpointslice;
mod events;
mod gc;
mod history;
mod informer;
mod job;
mod kinds;
mod lb;
pub mod leader;
mod metrics;
mod mirroring;
mod namespace;
mod nodeipam;
mod nodelifecycle;
mod podcontrol;
mod queue;
mod rbac_aggregation;
mod replicaset;
mod scheduler;
mod serviceaccounts;
mod statefulset;
mod util;

use ipnet::{Ipv4Net, Ipv6Net};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("creating API client: {0}")]
    Client(#[from] kube::Error),
    #[error("invalid controller configuration: {0}")]
    Config(String),
}

/// Why one reconciliation failed (the key is retried with backoff).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SyncError(String);

impl From<kube::Error> for SyncError {
    fn from(e: kube::Error) -> Self {
        SyncError(e.to_string())
    }
}

impl From<String> for SyncError {
    fn from(s: String) -> Self {
        SyncError(s)
    }
}

impl From<&str> for SyncError {
    fn from(s: &str) -> Self {
        SyncError(s.to_string())
    }
}

/// Settings of the controllers (the `kube-controller-manager` flags that matter here).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `--cluster-cidr`: the pod address range (default `10.244.0.0/16`).
    pub cluster_cidr: Ipv4Net,
    /// The IPv6 pod range of a dual-stack cluster (`--cluster-cidr v4,v6` upstream).
    pub cluster_cidr_ipv6: Option<Ipv6Net>,
    /// `--node-cidr-mask-size-ipv4` (default 24).
    pub node_cidr_mask_size_ipv4: u8,
    /// `--node-cidr-mask-size-ipv6` (default 64).
    pub node_cidr_mask_size_ipv6: u8,
    /// `--allocate-node-cidrs`: run node IPAM (default true).
    pub allocate_node_cidrs: bool,
    /// Run the built-in scheduler (`default-scheduler`).
    pub scheduler: bool,
    /// Concurrent syncs per controller (upstream `--concurrent-*-syncs`).
    pub workers: usize,
    /// Every object is reconciled again at least this often.
    pub resync_period: Duration,
    /// `--max-endpoints-per-slice` (default 100).
    pub max_endpoints_per_slice: usize,
    /// Node health checking: `--node-monitor-period` (5 s),
    /// `--node-monitor-grace-period` (40 s), `--node-startup-grace-period` (60 s).
    pub node_monitor: NodeMonitor,
    /// The CA the CSR signer signs node certificates with; without it
    /// approved requests wait for another signer.
    pub signing: Option<certificates::Signing>,
    /// The cluster CA (PEM) published as `kube-root-ca.crt` in every namespace.
    pub root_ca: Option<String>,
}

pub use nodelifecycle::Timing as NodeMonitor;

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            cluster_cidr: Ipv4Net::new(std::net::Ipv4Addr::new(10, 244, 0, 0), 16).unwrap_or_default(),
            cluster_cidr_ipv6: None,
            node_cidr_mask_size_ipv4: 24,
            node_cidr_mask_size_ipv6: 64,
            allocate_node_cidrs: true,
            scheduler: true,
            workers: 2,
            resync_period: Duration::from_secs(60),
            max_endpoints_per_slice: 100,
            node_monitor: NodeMonitor {
                period: Duration::from_secs(5),
                grace: Duration::from_secs(40),
                startup_grace: Duration::from_secs(60),
            },
            signing: None,
            root_ca: None,
        }
    }
}

/// What every controller is built from.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub inf: Arc<informer::Informers>,
    pub config: ControllerConfig,
}

/// Running controllers.
pub struct Controllers {
    tasks: Vec<JoinHandle<()>>,
}

impl Controllers {
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A client for the cluster described by a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let err = |message: String| Error::Kubeconfig { path: path.display().to_string(), message };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(kube::Client::try_from(cfg)?)
}

/// Start every controller against the API server of `kubeconfig`, with the
/// default [`ControllerConfig`].
pub async fn start(kubeconfig: &Path) -> Result<Controllers, Error> {
    start_with(kubeconfig, ControllerConfig::default()).await
}

/// Start every controller against the API server of `kubeconfig`.
pub async fn start_with(kubeconfig: &Path, config: ControllerConfig) -> Result<Controllers, Error> {
    let ipam = if config.allocate_node_cidrs { Some(nodeipam::Allocators::new(&config)?) } else { None };
    let client = client_from_kubeconfig(kubeconfig).await?;
    let inf = informer::Informers::new(&client);
    let ctx = Ctx { client: client.clone(), inf: inf.clone(), config };
    let mut tasks = Vec::new();
    gc::start(&ctx, &mut tasks);
    namespace::start(&ctx, &mut tasks);
    replicaset::start(&ctx, &mut tasks);
    deployment::start(&ctx, &mut tasks);
    daemonset::start(&ctx, &mut tasks);
    job::start(&ctx, &mut tasks);
    statefulset::start(&ctx, &mut tasks);
    cronjob::start(&ctx, &mut tasks);
    endpoints::start(&ctx, &mut tasks);
    endpointslice::start(&ctx, &mut tasks);
    mirroring::start(&ctx, &mut tasks);
    lb::start(&ctx, &mut tasks);
    if let Some(ipam) = ipam {
        nodeipam::start(&ctx, ipam, &mut tasks);
    }
    nodelifecycle::start(&ctx, &mut tasks);
    certificates::approver::start(&ctx, &mut tasks);
    certificates::tokencleaner::start(&ctx, &mut tasks);
    serviceaccounts::start(&ctx, &mut tasks);
    rbac_aggregation::start(&ctx, &mut tasks);
    if let Some(signing) = ctx.config.signing.clone() {
        certificates::signer::start(&ctx, signing, &mut tasks);
    }
    if ctx.config.scheduler {
        scheduler::start(&ctx, &mut tasks);
    }
    tasks.extend(inf.spawn());
    Ok(Controllers { tasks })
}

/// Start the controllers only while this process holds the leader Lease
/// (`--leader-elect` upstream): with several API servers, one instance runs
/// them. Losing the Lease stops them; this process then stands again.
pub async fn start_elected(
    kubeconfig: &Path,
    config: ControllerConfig,
    election: leader::Election,
) -> Result<Controllers, Error> {
    let client = client_from_kubeconfig(kubeconfig).await?;
    let kubeconfig = kubeconfig.to_path_buf();
    let supervisor = tokio::spawn(async move {
        loop {
            let leadership = election.acquire(&client).await;
            // Aborted with the supervisor, the running controllers go with it.
            let running = match start_with(&kubeconfig, config.clone()).await {
                Ok(c) => AbortOnDrop(c.tasks),
                Err(e) => {
                    tracing::error!(error = %e, "starting the controllers");
                    tokio::time::sleep(election.timing.retry_period).await;
                    continue;
                }
            };
            leadership.keep().await;
            tracing::warn!("lost the leader lease: stopping the controllers");
            drop(running);
        }
    });
    Ok(Controllers { tasks: vec![supervisor] })
}

/// Tasks aborted when this is dropped.
pub(crate) struct AbortOnDrop(pub(crate) Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Counters of every controller (syncs, errors, work-queue adds, retries and
/// depth) in the Prometheus text format.
pub fn metrics() -> String {
    metrics::render()
}
