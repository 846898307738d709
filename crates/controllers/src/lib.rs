//! `controllers`: the control loops of the cluster, each a Kubernetes API
//! client (kube-rs) that reconciles from a full view of its objects: today the
//! garbage collector and namespace lifecycle; replicaset, deployment, endpoints and endpointslice
//! controllers follow.
//!
//! Depends on: kube, k8s-openapi. Never on `store` or `apiserver`.

mod gc;
mod kinds;
mod namespace;

use std::path::Path;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("creating API client: {0}")]
    Client(#[from] kube::Error),
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

/// Start every controller against the API server of `kubeconfig`.
pub async fn start(kubeconfig: &Path) -> Result<Controllers, Error> {
    let client = client_from_kubeconfig(kubeconfig).await?;
    let tasks = vec![tokio::spawn(gc::run(client.clone())), tokio::spawn(namespace::run(client))];
    Ok(Controllers { tasks })
}
