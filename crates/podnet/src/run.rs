//! The node's part of the overlay: set up once ([`PodNet::setup`]), published
//! on the Node ([`PodNet::publish`]), then kept in step with every Node
//! ([`PodNet::run`]): a reflector on Nodes, and a reconcile after each change
//! and every [`RESYNC`] (which also recreates a deleted device).

use crate::annotations::{self, Mac, Peer};
use crate::device::{self, Spec};
use crate::exec::run;
use crate::state::{Entries, Plan};
use crate::{masq, PodNetConfig, PodNetError, DEVICE, ENCAP_OVERHEAD, PORT, VNI};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector;
use kube::runtime::{watcher, WatchStreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often the entries are checked against the kernel without a change.
pub const RESYNC: Duration = Duration::from_secs(30);
/// Changes arriving this close together are applied in one pass.
const COALESCE: Duration = Duration::from_millis(50);

/// This node's VXLAN device, set up.
#[derive(Clone, Debug)]
pub struct PodNet {
    cfg: PodNetConfig,
    parent: String,
    mac: Mac,
    mtu: u32,
}

impl PodNet {
    /// Creates (or adopts) the device on the node IP's interface with the MTU
    /// of that interface less [`ENCAP_OVERHEAD`], and loads the masquerade
    /// table. `stored_mac` is the VTEP MAC the Node already publishes, kept so
    /// the other nodes' entries stay right across a re-creation.
    pub async fn setup(cfg: PodNetConfig, stored_mac: Option<Mac>) -> Result<PodNet, PodNetError> {
        let underlay = device::underlay(cfg.node_ip, cfg.iface.as_deref()).await?;
        let mtu = underlay.mtu.saturating_sub(ENCAP_OVERHEAD);
        let wanted = stored_mac.unwrap_or_else(|| Mac::derived(&format!("{}/{}", cfg.node_name, cfg.node_ip)));
        let net = PodNet { parent: underlay.name, mac: wanted, mtu, cfg };
        let mac = device::ensure(&net.spec()).await?;
        masq::apply(net.cfg.cluster_cidr, net.cfg.pod_cidr).await?;
        tracing::info!(device = DEVICE, parent = %net.parent, mtu, mac = %mac, "pod network ready");
        Ok(PodNet { mac, ..net })
    }

    fn spec(&self) -> Spec<'_> {
        Spec {
            name: DEVICE,
            vni: VNI,
            port: PORT,
            local: self.cfg.node_ip,
            parent: &self.parent,
            mtu: self.mtu,
            mac: self.mac,
            address: self.cfg.pod_cidr.network(),
        }
    }

    /// The MTU of the device, which pods' interfaces must not exceed.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The device's MAC (the VTEP MAC the other nodes send to).
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// This node as the other nodes see it.
    pub fn as_peer(&self) -> Peer {
        Peer {
            node: self.cfg.node_name.clone(),
            pod_cidr: self.cfg.pod_cidr.trunc(),
            public_ip: self.cfg.node_ip,
            vtep_mac: self.mac,
            vni: VNI,
        }
    }

    /// Writes flannel's annotations on this node's Node.
    pub async fn publish(&self, client: &kube::Client) -> Result<(), PodNetError> {
        let ann = annotations::for_node(self.cfg.node_ip, VNI, self.mac);
        let patch = serde_json::json!({"metadata": {"annotations": ann}});
        Api::<Node>::all(client.clone())
            .patch(&self.cfg.node_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Keeps the entries in step with the Nodes until the task is aborted.
    pub async fn run(self, client: kube::Client) {
        let (store, writer) = reflector::store::<Node>();
        let changed = Arc::new(Notify::new());
        let notify = changed.clone();
        let watch = tokio::spawn(async move {
            let stream =
                watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff().reflect(writer);
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => notify.notify_one(),
                    Err(e) => tracing::warn!(error = %e, "watching Nodes for the pod network"),
                }
            }
        });
        let _stop_watch = AbortOnDrop(watch);
        if store.wait_until_ready().await.is_err() {
            tracing::error!("the Node watch ended before its first list; the pod network is not kept");
            return;
        }
        let mut last_error: Option<String> = None;
        loop {
            match self.sync(&peers(&store.state())).await {
                Ok(_) => last_error = None,
                Err(e) => {
                    let e = e.to_string();
                    // Said once per distinct failure; the next pass retries.
                    if last_error.as_ref() != Some(&e) {
                        tracing::warn!(error = %e, "updating the pod network's routes failed");
                    }
                    last_error = Some(e);
                }
            }
            let _ = tokio::time::timeout(RESYNC, changed.notified()).await;
            tokio::time::sleep(COALESCE).await;
        }
    }

    /// One pass: the device (recreated if gone), then the difference between
    /// the kernel's entries and those `peers` call for. Returns how many
    /// commands it ran (0: already in step).
    pub async fn sync(&self, peers: &[Peer]) -> Result<usize, PodNetError> {
        if !device::exists(DEVICE).await {
            tracing::warn!(device = DEVICE, "VXLAN device missing; recreating it");
            device::ensure(&self.spec()).await?;
            masq::apply(self.cfg.cluster_cidr, self.cfg.pod_cidr).await?;
        }
        let want = Entries::desired(peers, &self.cfg.node_name, self.cfg.pod_cidr, self.cfg.cluster_cidr);
        let have = Entries::parse(
            &run("ip", &["-j", "route", "show", "dev", DEVICE], None).await?,
            &run("ip", &["-j", "neigh", "show", "dev", DEVICE], None).await?,
            &run("bridge", &["-j", "fdb", "show", "dev", DEVICE], None).await?,
            self.cfg.cluster_cidr,
        )
        .map_err(|message| PodNetError::Parse { command: format!("listing {DEVICE}'s entries"), message })?;
        let plan = Plan::new(&have, &want, DEVICE);
        if plan.is_empty() {
            return Ok(0);
        }
        // FDB first: a neighbour and route are only useful once frames can go.
        if !plan.bridge.is_empty() {
            run("bridge", &["-force", "-batch", "-"], Some(&lines(&plan.bridge))).await?;
        }
        if !plan.ip.is_empty() {
            run("ip", &["-force", "-batch", "-"], Some(&lines(&plan.ip))).await?;
        }
        let removed = have.routes.keys().filter(|c| !want.routes.contains_key(c)).count();
        tracing::info!(
            peers = want.routes.len(),
            removed,
            commands = plan.bridge.len() + plan.ip.len(),
            "pod network routes updated"
        );
        Ok(plan.bridge.len() + plan.ip.len())
    }
}

/// The overlay data of every Node that has set up its device.
fn peers(nodes: &[Arc<Node>]) -> Vec<Peer> {
    let mut out = Vec::new();
    for n in nodes {
        match annotations::peer(n) {
            Ok(Some(p)) => out.push(p),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "node left out of the pod network"),
        }
    }
    out
}

fn lines(cmds: &[String]) -> String {
    cmds.iter().map(|c| format!("{c}\n")).collect()
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
