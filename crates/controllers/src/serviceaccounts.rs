//! Per-namespace objects every pod's credentials rely on:
//! - `serviceaccounts-controller` (`pkg/controller/serviceaccount/serviceaccounts_controller.go`):
//!   every active namespace has the ServiceAccount `default`, re-created if deleted;
//! - `root-ca-cert-publisher` (`pkg/controller/certificates/rootcacertpublisher/publisher.go`):
//!   every active namespace has the ConfigMap `kube-root-ca.crt` whose `ca.crt` is
//!   the cluster CA, so pods can check the API server's certificate.

use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, Ctx, SyncError};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The ServiceAccount every namespace has.
pub const DEFAULT_ACCOUNT: &str = "default";
/// The ConfigMap with the cluster CA.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Accounts {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    /// The cluster CA (PEM); without it no ConfigMap is published.
    root_ca: Option<String>,
}

pub(crate) fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let c = Arc::new(Accounts {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("serviceaccount")),
        root_ca: ctx.config.root_ca.clone(),
    });
    ctx.inf.namespaces.on_change_weak(&c, |h, _old, new| {
        if let Some(ns) = new {
            h.queue.add(Key::of(ns));
        }
    });
    ctx.inf.serviceaccounts.on_change_weak(&c, |h, old, new| {
        // A deleted `default` account is made again.
        if let (Some(sa), None) = (old, new) {
            if sa.metadata.name.as_deref() == Some(DEFAULT_ACCOUNT) {
                h.queue.add(Key::new("", sa.metadata.namespace.as_deref().unwrap_or_default()));
            }
        }
    });
    let period = ctx.config.resync_period;
    tasks.push(tokio::spawn(async move {
        c.inf.namespaces.wait_ready().await;
        c.inf.serviceaccounts.wait_ready().await;
        let k = c.clone();
        let keys = move || k.inf.namespaces.list().iter().map(|n| Key::of(&**n)).collect();
        let w = c.clone();
        let sync = move |key: Key| {
            let w = w.clone();
            async move { w.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), 2, sync), resync(c.queue.clone(), period, keys));
    }));
}

impl Accounts {
    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(ns) = self.inf.namespaces.get("", &key.name) else { return Ok(()) };
        let terminating = ns.metadata.deletion_timestamp.is_some()
            || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating {
            return Ok(());
        }
        let namespace = key.name.as_str();
        if self.inf.serviceaccounts.get(namespace, DEFAULT_ACCOUNT).is_none() {
            let sa = ServiceAccount {
                metadata: ObjectMeta { name: Some(DEFAULT_ACCOUNT.into()), ..Default::default() },
                ..Default::default()
            };
            match Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
                .create(&PostParams::default(), &sa)
                .await
            {
                Ok(_) => tracing::debug!(namespace, "created the default ServiceAccount"),
                Err(e) if crate::util::is_already_exists(&e) || is_terminating(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(ca) = &self.root_ca {
            self.publish_root_ca(namespace, ca).await?;
        }
        Ok(())
    }

    async fn publish_root_ca(&self, namespace: &str, ca: &str) -> Result<(), SyncError> {
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), namespace);
        let data = BTreeMap::from([("ca.crt".to_string(), ca.to_string())]);
        let annotations = BTreeMap::from([("kubernetes.io/description".to_string(), DESCRIPTION.to_string())]);
        match api.get_opt(ROOT_CA_CONFIGMAP).await? {
            Some(cm) if cm.data.as_ref() == Some(&data) => Ok(()),
            Some(mut cm) => {
                cm.data = Some(data);
                cm.metadata.annotations.get_or_insert_with(Default::default).extend(annotations);
                api.replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &cm).await?;
                Ok(())
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(ROOT_CA_CONFIGMAP.into()),
                        annotations: Some(annotations),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => Ok(()),
                    Err(e) if crate::util::is_already_exists(&e) || is_terminating(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// A create refused because the namespace is going away (409/403 NamespaceTerminating).
fn is_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.message.contains("because it is being terminated"))
}
