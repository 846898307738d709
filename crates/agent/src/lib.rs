//! `agent`: the node agent (rkube's kubelet). Registers its Node and renews
//! its Lease, runs the pods bound to it as processes in their own namespaces
//! (`runtime`), reports their status, and serves logs and exec to the API
//! server. It is an API client only (kube-rs); it never assumes it is the only
//! node.
//!
//! Depends on: kube, k8s-openapi, images, hyper, rustls.

mod dns_config;
mod envvars;
mod node;
mod pods;
mod probes;
pub mod runtime;
mod server;

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
    /// Bearer token the API server presents to the agent.
    pub token: String,
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
}

/// A running node agent.
pub struct Agent {
    tasks: Vec<JoinHandle<()>>,
}

impl Agent {
    /// Register the node, set up pod networking, and start the pod workers,
    /// heartbeats and the agent API. Returns once the node is Ready.
    pub async fn start(client: kube::Client, cfg: AgentConfig) -> Result<Agent, AgentError> {
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
        let rt = runtime::Runtime::new(runtime::RuntimeConfig {
            data_dir: cfg.data_dir.join("runtime"),
            bridge: cfg.bridge.clone(),
            pod_cidr,
            self_exe: cfg.self_exe.clone(),
        })
        .await?;
        rt.recover().await?;
        let mut tasks = Vec::new();
        let (c, k) = (client.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(node::LEASE_RENEW).await;
                if let Err(e) = node::renew_lease(&c, &k).await {
                    tracing::warn!(error = %e, "renewing node lease failed");
                }
                if let Err(e) = node::report(&c, &k, true).await {
                    tracing::warn!(error = %e, "node status update failed");
                }
            }
        }));
        tasks.push(tokio::spawn(pods::run(client.clone(), cfg.clone(), rt.clone())));
        let srv = server::start(cfg.clone(), rt, client.clone()).await.map_err(AgentError::Server)?;
        tasks.push(srv);
        Ok(Agent { tasks })
    }

    /// Stop the agent's loops. Pods keep running until the process exits (as
    /// with kubelet); the next start recovers them.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
