//! `apiserver`: the Kubernetes REST API over HTTPS, backed by `store`.
//!
//! Generic machinery (discovery, OpenAPI, list/watch, patch, Table output,
//! errors, authentication) is driven by the resource table in [`resources`];
//! per-resource rules live in `strategy` and `services`. This is the only
//! crate that touches `store`; every other component is an API client.
//!
//! Depends on: store, apimachinery, hyper, rustls, k8s-openapi.

mod access_review;
pub mod authn;
pub mod authz;
mod bootstrap;
mod claims;
mod crd;
mod decode;
mod discovery;
pub mod error;
mod escalation;
mod fieldmanager;
mod handlers;
mod join;
mod master_leases;
mod metrics;
mod negotiate;
mod node_graph;
mod node_proxy;
mod object;
mod openapi;
mod rbac;
mod registry;
mod request;
pub mod resources;
mod server;
mod serviceaccount;
mod services;
mod store_view;
mod strategy;
pub mod tls;
mod watch;
mod watch_cache;

use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

/// The Kubernetes version rkube speaks.
pub const KUBE_VERSION: &str = "v1.33.0";

pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "major": "1",
        "minor": "33",
        "gitVersion": format!("{KUBE_VERSION}+rkube-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// How to run the API server.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The cluster's shared secrets: the CA (`ca.crt`, `ca.key`), the
    /// ServiceAccount signing key (`sa.key`) and the admin token
    /// (`admin.token`). Several API servers on one etcd use copies of one such
    /// directory; `None` = `<data_dir>/pki` (and `<data_dir>/admin.token`).
    pub pki_dir: Option<PathBuf>,
    pub bind_address: IpAddr,
    pub port: u16,
    /// Address other components and the `kubernetes` Endpoints use.
    pub advertise_address: IpAddr,
    pub service_cidr: Ipv4Net,
    /// The pod network (LoadBalancer pools may not overlap it).
    pub cluster_cidr: Ipv4Net,
    /// `--lb-pool`: kept as the `IPAddressPool` [`bootstrap::FLAG_POOL`] in `kube-system`.
    pub lb_pools: Vec<apimachinery::metallb::AddressRange>,
    pub node_port_range: std::ops::RangeInclusive<u16>,
    /// How often history older than the previous tick is compacted.
    pub compaction_interval: Duration,
    /// Serve watches from one shared cache per resource (kube-apiserver's `--watch-cache`).
    pub watch_cache: bool,
    /// How long pods tolerate the `node.kubernetes.io/not-ready:NoExecute`
    /// taint unless they say otherwise (kube-apiserver's flag; 300).
    pub default_not_ready_toleration_seconds: i64,
    /// The same for `node.kubernetes.io/unreachable:NoExecute` (300).
    pub default_unreachable_toleration_seconds: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("binding {addr}: {source} (is another API server running on this port? choose another with --port)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bootstrapping cluster objects: {0}")]
    Bootstrap(String),
}

/// A running API server.
pub struct ApiServer {
    pub kubeconfig: PathBuf,
    pub url: String,
    pub token: String,
    pub ca_pem: String,
    /// The default join token (`<data-dir>/node-token`), unless it was revoked.
    pub node_token: Option<String>,
    shutdown: signal::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The in-memory views (RBAC policy, node graph): they end only when aborted.
    caches: Vec<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// Bind, bootstrap and start serving; the admin kubeconfig is written when
    /// this returns.
    pub async fn start(cfg: Config, store: Arc<dyn Store>) -> Result<ApiServer, StartError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|source| StartError::DataDir { path: cfg.data_dir.clone(), source })?;
        let pki = cfg.pki_dir.clone().unwrap_or_else(|| cfg.data_dir.join("pki"));
        std::fs::create_dir_all(&pki).map_err(|source| StartError::DataDir { path: pki.clone(), source })?;
        let kubernetes_ip = first_service_ip(cfg.service_cidr);
        let dns_names: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), cfg.advertise_address, IpAddr::V4(kubernetes_ip)];
        if !cfg.bind_address.is_unspecified() {
            ips.push(cfg.bind_address);
        }
        ips.dedup();
        let certs = tls::load_or_create(&pki, &dns_names, &ips)?;
        let token = load_or_create_token(cfg.pki_dir.as_deref().unwrap_or(&cfg.data_dir))?;
        // Build the protobuf schema now rather than in the first request.
        let _ = apimachinery::protobuf::preload();

        let strategies = strategy::Strategies {
            services: services::ServiceAllocator::new(
                apimachinery::service::ServiceConfig {
                    service_cidr: cfg.service_cidr,
                    node_port_range: cfg.node_port_range.clone(),
                },
                store.clone(),
            ),
            lb_reserved: lb_reserved(&cfg),
            default_toleration_seconds: (
                cfg.default_not_ready_toleration_seconds,
                cfg.default_unreachable_toleration_seconds,
            ),
        };
        let registry = registry::Registry {
            store: store.clone(),
            strategies,
            watch_cache: cfg.watch_cache.then(|| watch_cache::WatchCache::new(store.clone())),
        };
        registry
            .reload_crds()
            .await
            .map_err(|e| StartError::Bootstrap(format!("loading custom resource definitions: {e}")))?;
        bootstrap::run(&registry, &cfg, kubernetes_ip).await.map_err(|e| StartError::Bootstrap(e.to_string()))?;
        // Every server's claims keep this server's bitmaps in step.
        let claims_task = store_view::follow(
            store.clone(),
            claims::PREFIX,
            "allocation claims",
            Arc::new(claims::ClaimsView(registry.strategies.services.sink())),
        )
        .await
        .map_err(|e| StartError::Bootstrap(format!("loading the allocation claims: {e}")))?;

        let addr = SocketAddr::new(cfg.bind_address, cfg.port);
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let node_token = join::ensure_node_token(&registry, &cfg.data_dir, &certs.ca_pem)
            .await
            .map_err(|e| StartError::Bootstrap(format!("making the join token: {e}")))?;
        let kubelet_client = tls::issue_kubelet_client(&pki)?;
        let (rbac, rbac_task) = rbac::RbacCache::start(store.clone())
            .await
            .map_err(|e| StartError::Bootstrap(format!("loading the RBAC policy: {e}")))?;
        let (node_graph, node_graph_task) = node_graph::NodeGraph::start(store.clone())
            .await
            .map_err(|e| StartError::Bootstrap(format!("loading the pods for the Node authorizer: {e}")))?;
        let sa_tokens = serviceaccount::Tokens::load_or_create(&pki)
            .map_err(|e| StartError::Bootstrap(format!("the service account signing key: {e}")))?;
        let state = Arc::new(server::State {
            registry,
            sa_tokens,
            rbac,
            node_graph,
            token: token.clone(),
            ca_pem: certs.ca_pem.clone(),
            server_address: format!("{}:{}", cfg.advertise_address, cfg.port),
            metrics: metrics::Metrics::default(),
            ready: Default::default(),
            nodes: node_proxy::NodeClient {
                tls: tls::client_config(&certs.ca_pem, Some(&kubelet_client))?,
                identity: kubelet_client,
            },
        });
        let (shutdown, shutdown_rx) = signal::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config.clone());
        let mut tasks = vec![tokio::spawn(accept_loop(listener, acceptor, state.clone(), shutdown_rx.clone()))];
        tasks.push(tokio::spawn(compaction_loop(store.clone(), cfg.compaction_interval, shutdown_rx.clone())));
        tasks.push(tokio::spawn(claims_repair_loop(store.clone(), shutdown_rx.clone())));
        tasks.push(tokio::spawn(master_lease_loop(
            state.clone(),
            cfg.advertise_address.to_string(),
            cfg.port,
            shutdown_rx.clone(),
        )));
        let caches = vec![rbac_task, node_graph_task, claims_task];

        // 127.0.0.2 is loopback too, but another server may listen on 127.0.0.1.
        let host = if cfg.bind_address.is_unspecified() || cfg.bind_address == IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            cfg.bind_address
        };
        let url = format!("https://{}", SocketAddr::new(host, cfg.port));
        let kubeconfig = cfg.data_dir.join("kubeconfig.yaml");
        write_kubeconfig(&kubeconfig, &url, &certs.ca_pem, &token)?;
        state.ready.store(true, Ordering::Relaxed);
        Ok(ApiServer { kubeconfig, url, token, ca_pem: certs.ca_pem, node_token, shutdown, tasks, caches })
    }

    /// Stop accepting, end watches, and wait for the server tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Waiting for them would only run out each one's timeout.
        for t in &self.caches {
            t.abort();
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// `.1` of the service range: the `kubernetes` Service's ClusterIP.
/// What a LoadBalancer pool may not cover: the service and pod CIDRs.
pub fn lb_reserved(cfg: &Config) -> apimachinery::metallb::Reserved {
    apimachinery::metallb::Reserved {
        nets: vec![
            (cfg.service_cidr.into(), "the service CIDR".to_string()),
            (cfg.cluster_cidr.into(), "the pod CIDR".to_string()),
        ],
    }
}

pub fn first_service_ip(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(1))
}

fn load_or_create_token(dir: &Path) -> Result<String, StartError> {
    let path = dir.join("admin.token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    use rand::Rng;
    let token: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(48).map(char::from).collect();
    write_private(&path, &token)?;
    Ok(token)
}

/// Writes `contents` to `path` with mode 0600.
pub fn write_private(path: &Path, contents: &str) -> Result<(), StartError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| StartError::Write { path: path.to_path_buf(), source };
    // Write then rename, so a reader never sees a half-written file.
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Write a kubeconfig (mode 0600, atomically) for `url`, trusting `ca_pem`,
/// authenticating with `token`.
pub fn write_kubeconfig(path: &Path, url: &str, ca_pem: &str, token: &str) -> Result<(), StartError> {
    write_kubeconfig_user(path, url, ca_pem, "admin", &format!("token: {token}"))
}

/// [`write_kubeconfig`] authenticating with a client certificate (`user` names
/// the kubeconfig entry, e.g. `system:node:n2`).
pub fn write_kubeconfig_cert(
    path: &Path,
    url: &str,
    ca_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), StartError> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let auth = format!("client-certificate-data: {}\n    client-key-data: {}", b64(cert_pem), b64(key_pem));
    write_kubeconfig_user(path, url, ca_pem, user, &auth)
}

fn write_kubeconfig_user(path: &Path, url: &str, ca_pem: &str, user: &str, auth: &str) -> Result<(), StartError> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: rkube\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: {user:?}\n  user:\n    {auth}\ncontexts:\n- name: rkube\n  context:\n    cluster: rkube\n    user: {user:?}\n    namespace: default\ncurrent-context: rkube\n"
    );
    write_private(path, &yaml)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<server::State>,
    mut shutdown: signal::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            // Who the verified client certificate (if any) names, for every request on it.
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| authn::user_from_certificate(der.as_ref()))
                .map(Arc::new);
            let service = hyper::service::service_fn(move |req| server::handle(state.clone(), cert_user.clone(), req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                }
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
}

/// How often leaked allocation claims are looked for (upstream's repair loops: 3 min).
const CLAIMS_REPAIR_INTERVAL: Duration = Duration::from_secs(60);

/// Deletes claims no Service holds (left by a server killed between claiming
/// and writing), two passes after they were first seen.
async fn claims_repair_loop(store: Arc<dyn Store>, mut shutdown: signal::Receiver<bool>) {
    let Some(services) = resources::find("", "v1", "services") else { return };
    let prefix = services.key_prefix();
    let mut suspects = claims::Suspects::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CLAIMS_REPAIR_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        match claims::repair(store.as_ref(), &prefix, &suspects).await {
            Ok((next, _)) => suspects = next,
            Err(e) => tracing::warn!(error = %e, "repairing allocation claims"),
        }
    }
}

/// Keeps this server's master lease fresh and the `kubernetes` Endpoints
/// listing every live server; withdraws this server on a clean stop.
async fn master_lease_loop(state: Arc<server::State>, ip: String, port: u16, mut shutdown: signal::Receiver<bool>) {
    loop {
        if let Err(e) = master_leases::reconcile(&state.registry, &ip, port).await {
            tracing::warn!(error = %e, "reconciling the kubernetes endpoints");
        }
        tokio::select! {
            _ = tokio::time::sleep(master_leases::INTERVAL) => {}
            _ = shutdown.changed() => {
                if let Err(e) = master_leases::withdraw(&state.registry, &ip, port).await {
                    tracing::warn!(error = %e, "removing this server from the kubernetes endpoints");
                }
                return;
            }
        }
    }
}

/// Compact history every interval to the revision seen at the previous tick,
/// as kube-apiserver does with etcd (watchers get ~one interval of history).
async fn compaction_loop(store: Arc<dyn Store>, every: Duration, mut shutdown: signal::Receiver<bool>) {
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if let Some(rev) = previous {
            if let Err(e) = store.compact(rev).await {
                tracing::warn!(error = %e, revision = rev, "compaction failed");
            } else {
                tracing::debug!(revision = rev, "compacted");
            }
        }
        previous = store.current_revision().await.ok();
    }
}
