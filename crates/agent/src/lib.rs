//! `agent`: the node agent (rkube's kubelet). Registers its Node and renews
//! its Lease, runs the pods bound to it as processes in their own namespaces
//! (`runtime`), reports their status, and serves logs and exec to the API
//! server. It is an API client only (kube-rs); it never assumes it is the only
//! node.
//!
//! Depends on: kube, k8s-openapi, images, proxy, dns, l2 (LoadBalancer ARP
//! announcement), hyper, rustls.

mod dns_config;
mod envvars;
mod image_service;
mod node;
mod pods;
mod portforward;
mod probes;
mod resource_fields;
pub mod runtime;
mod server;
mod upgrade;
mod volumes;

pub use dns_config::DnsSettings;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How the node agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node_name: String,
    /// This node's address on the nodes' network (InternalIP).
    pub node_ip: Ipv4Addr,
    /// Agent state: IPAM, pod logs, sandboxes.
    pub data_dir: PathBuf,
    /// Port of the agent's HTTPS API (logs, exec): kubelet's 10250.
    pub kubelet_port: u16,
    /// The rkube binary (runs built-in images and pod infra processes).
    pub self_exe: PathBuf,
    pub bridge: String,
    pub dns: DnsSettings,
    /// Serving certificate and key (PEM) of the agent's HTTPS API.
    pub tls_cert_pem: String,
    pub tls_key_pem: String,
    /// The cluster CA: the agent's API accepts only the API server's client
    /// certificate (`kube-apiserver-kubelet-client`) signed by it.
    pub client_ca_pem: String,
    /// SHA-256 of a self-signed serving certificate, published on the Node so
    /// the API server can pin it (agents without access to the cluster CA).
    pub serving_cert_pin: Option<String>,
    /// The Service data plane of this node.
    pub proxy: ProxySettings,
    /// ARP announcement of LoadBalancer addresses.
    pub l2: L2Settings,
    /// Duration of the node's Lease in `kube-node-lease` (kubelet's
    /// `--node-lease-duration-seconds`); renewed every quarter of it.
    pub node_lease_duration: Duration,
    /// The pod network across nodes (flannel-compatible VXLAN); `None` leaves
    /// pod traffic between nodes to the user's own network (k3s
    /// `--flannel-backend=none`).
    pub pod_network: Option<PodNetworkSettings>,
    /// Where images come from (`image_service.rs`).
    pub images: ImageSettings,
}

/// Registry settings and the built-in images' precedence.
#[derive(Clone, Debug, Default)]
pub struct ImageSettings {
    /// k3s `registries.yaml`.
    pub registry_config: Option<PathBuf>,
    /// `HOST:PORT`s reached over plain HTTP or unverified HTTPS.
    pub insecure_registries: Vec<String>,
    /// Mirrors only, never a registry's own endpoint.
    pub disable_default_endpoint: bool,
    /// Run built-in images without asking a registry (`--builtin-images=prefer`).
    pub prefer_builtin: bool,
    /// Image GC thresholds: disk usage (percent) that starts and ends it.
    pub gc_high_percent: u8,
    pub gc_low_percent: u8,
}

/// How this node joins the pod network (crate `podnet`).
#[derive(Clone, Debug, Default)]
pub struct PodNetworkSettings {
    /// The interface to tunnel over (k3s `--flannel-iface`); by default the
    /// one holding the node IP.
    pub iface: Option<String>,
}

/// How this node announces LoadBalancer addresses on its LAN (crate `l2`).
#[derive(Clone, Debug)]
pub struct L2Settings {
    pub enabled: bool,
    /// A holder unseen this long is taken over.
    pub lease_duration: Duration,
    /// How often a holder renews its heartbeat.
    pub renew: Duration,
}

impl Default for L2Settings {
    fn default() -> Self {
        L2Settings { enabled: true, lease_duration: Duration::from_millis(600), renew: Duration::from_millis(150) }
    }
}

/// What the node's Service proxy needs to know about the cluster.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// The cluster's pod network (all nodes' pod CIDRs).
    pub cluster_cidr: ipnet::Ipv4Net,
    pub service_cidr: ipnet::Ipv4Net,
    /// Coalescing window of rule syncs (`--min-sync-period`).
    pub min_sync_period: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "node {node} got no podCIDR from the control plane within {waited:?} (is the node IPAM controller running?)"
    )]
    NoPodCidr { node: String, waited: Duration },
    #[error("API error: {0}")]
    Api(#[from] kube::Error),
    #[error("pod runtime: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("agent API server: {0}")]
    Server(String),
    #[error("setting up the pod network: {0}")]
    PodNetwork(#[from] podnet::PodNetError),
    #[error("the image store: {0}")]
    Images(String),
}

/// A running node agent.
pub struct Agent {
    tasks: Vec<JoinHandle<()>>,
}

impl Agent {
    /// Register the node, set up pod networking, and start the pod workers,
    /// heartbeats and the agent API. Returns once the node is Ready.
    pub async fn start(client: kube::Client, cfg: AgentConfig) -> Result<Agent, AgentError> {
        // Bad registry settings fail the start, before the node registers.
        let images = std::sync::Arc::new(
            image_service::ImageService::open(&cfg.data_dir, &cfg.images).map_err(AgentError::Images)?,
        );
        node::register(&client, &cfg)
            .await
            .map_err(|source| AgentError::Register { node: cfg.node_name.clone(), source })?;
        node::renew_lease(&client, &cfg).await?;
        let waited = Duration::from_secs(60);
        let start = tokio::time::Instant::now();
        let pod_cidr = loop {
            if let Some(c) = node::pod_cidr(&client, &cfg).await? {
                break c;
            }
            if start.elapsed() > waited {
                return Err(AgentError::NoPodCidr { node: cfg.node_name.clone(), waited });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let pod_net = match &cfg.pod_network {
            Some(s) => pod_network(&client, &cfg, s, pod_cidr).await?,
            None => None,
        };
        let rt = runtime::Runtime::new(runtime::RuntimeConfig {
            data_dir: cfg.data_dir.join("runtime"),
            bridge: cfg.bridge.clone(),
            pod_cidr,
            self_exe: cfg.self_exe.clone(),
            mtu: pod_net.as_ref().map(podnet::PodNet::mtu),
        })
        .await?;
        rt.recover().await?;
        let mut tasks = Vec::new();
        if let Some(net) = pod_net {
            tasks.push(tokio::spawn(net.run(client.clone())));
        }
        let (c, k) = (client.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(node::lease_renew_interval(&k)).await;
                if let Err(e) = node::renew_lease(&c, &k).await {
                    tracing::warn!(error = %e, "renewing node lease failed");
                }
                if let Err(e) = node::report(&c, &k, true).await {
                    tracing::warn!(error = %e, "node status update failed");
                }
            }
        }));
        tasks.push(tokio::spawn(proxy_task(client.clone(), &cfg)));
        if cfg.l2.enabled {
            let l2cfg = l2::L2Config {
                exclude_interfaces: vec![cfg.bridge.clone(), podnet::DEVICE.to_string()],
                lease_duration: cfg.l2.lease_duration,
                renew: cfg.l2.renew,
                ..l2::L2Config::new(&cfg.node_name, cfg.node_ip)
            };
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = l2::run(c, l2cfg).await {
                    tracing::error!(error = %e, "LoadBalancer L2 announcer stopped");
                }
            }));
        }
        tasks.push(tokio::spawn(pods::run(client.clone(), cfg.clone(), rt.clone(), images)));
        let srv = server::start(cfg.clone(), rt, client.clone()).await.map_err(AgentError::Server)?;
        tasks.push(srv);
        Ok(Agent { tasks })
    }

    /// Stop the agent's loops. Pods keep running, also after the process
    /// exits: their containers run under shims of their own (as containers
    /// outlive kubelet and containerd), and the next start adopts them.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The node's VXLAN device, published on its Node. A node with no interface
/// for its node IP (a machine without a network, node IP 127.0.0.1) runs
/// without one: it has no other node to reach.
async fn pod_network(
    client: &kube::Client,
    cfg: &AgentConfig,
    settings: &PodNetworkSettings,
    pod_cidr: ipnet::Ipv4Net,
) -> Result<Option<podnet::PodNet>, AgentError> {
    let node: k8s_openapi::api::core::v1::Node = kube::Api::all(client.clone()).get(&cfg.node_name).await?;
    let pcfg = podnet::PodNetConfig {
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip,
        pod_cidr,
        cluster_cidr: cfg.proxy.cluster_cidr,
        iface: settings.iface.clone(),
    };
    let net = match podnet::PodNet::setup(pcfg, podnet::annotations::stored_mac(&node)).await {
        Ok(net) => net,
        Err(e @ podnet::PodNetError::NoInterface(_)) => {
            tracing::warn!(error = %e, "running without the pod network across nodes");
            node::warn_event(client, cfg, "PodNetworkUnavailable", &e.to_string()).await;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    net.publish(client).await?;
    Ok(Some(net))
}

/// The node's Service proxy (nftables), with the node set up as rkube wants it:
/// forwarding on, and an `unreachable` route for the service CIDR so a Service IP
/// without rules never leaks to the outside network, while the node's own
/// connections to Service IPs go to the pod bridge and get DNATed there.
fn proxy_task(client: kube::Client, cfg: &AgentConfig) -> impl std::future::Future<Output = ()> + Send + 'static {
    let pcfg = proxy::ProxyConfig {
        node_name: cfg.node_name.clone(),
        node_ips: vec![cfg.node_ip],
        pod_cidr: cfg.proxy.cluster_cidr,
        service_cidr: cfg.proxy.service_cidr,
        // The nodelocaldns pod sets up its own NOTRACK rules (dns::program).
        node_local_dns: None,
        min_sync_period: cfg.proxy.min_sync_period,
        node_setup: proxy::NodeSetup {
            service_cidr_unreachable_route: true,
            local_service_device: Some(cfg.bridge.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    async move {
        if let Err(e) = proxy::run(client, pcfg).await {
            tracing::error!(error = %e, "service proxy stopped");
        }
    }
}
