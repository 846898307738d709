//! `podnet`: the pod network across nodes, after flannel's VXLAN backend
//! (`pkg/backend/vxlan` in flannel-io/flannel), so a flannel user finds the
//! same device, port, annotations and entries.
//!
//! Every node has one VXLAN device [`DEVICE`] (VNI [`VNI`], UDP port [`PORT`],
//! no learning) on the interface that holds its node IP, addressed with the
//! network address of its pod CIDR as a `/32` (the source of the node's own
//! traffic to remote pods, so replies come back through the overlay), and an
//! MTU [`ENCAP_OVERHEAD`] bytes below that interface's, which the node's pods
//! get too. The node publishes its device on its Node with flannel's
//! annotations ([`annotations`]). For every other node with a pod CIDR and
//! those annotations it keeps, like flannel's "newest scheme" (no L2/L3 miss
//! callouts):
//!
//! - a route `<their pod CIDR> via <its network address> dev rkube.1 onlink`,
//! - a permanent neighbour entry `<its network address> lladdr <their VTEP MAC>`,
//! - a permanent FDB entry `<their VTEP MAC> dst <their public IP>`,
//!
//! and removes those of nodes that left. Traffic from pods leaving the cluster
//! network is masqueraded (flannel's `postrtg` rules, [`masq`]); traffic
//! between pods, and traffic the Service proxy already marked, is not.
//!
//! Depends on: kube, k8s-openapi, iproute2 (`ip`, `bridge`) and `nft`.

pub mod annotations;
mod device;
mod exec;
pub mod masq;
mod run;
pub mod state;

pub use annotations::{Mac, Peer};
pub use run::PodNet;

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The VXLAN device's name: flannel's `flannel.<VNI>`, in rkube's namespace.
pub const DEVICE: &str = "rkube.1";
/// The VXLAN network identifier (flannel's default).
pub const VNI: u32 = 1;
/// UDP port of the overlay: Linux's VXLAN default, flannel's 8472.
pub const PORT: u16 = 8472;
/// Bytes VXLAN adds to every packet (outer IPv4 20 + UDP 8 + VXLAN 8 + Ethernet
/// 14), flannel's `encapOverhead`.
pub const ENCAP_OVERHEAD: u32 = 50;

/// How this node joins the pod network.
#[derive(Clone, Debug)]
pub struct PodNetConfig {
    pub node_name: String,
    /// The node's address on the nodes' network: the VXLAN tunnel's source and
    /// the `public-ip` other nodes send to.
    pub node_ip: Ipv4Addr,
    /// This node's pod CIDR (the Node's `spec.podCIDR`).
    pub pod_cidr: Ipv4Net,
    /// The whole pod network (all nodes' pod CIDRs).
    pub cluster_cidr: Ipv4Net,
    /// The interface to tunnel over (k3s `--flannel-iface`); by default the
    /// one holding `node_ip`.
    pub iface: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PodNetError {
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error(
        "no interface holds the node IP {0}: the pod network tunnels over the node IP's interface (set --node-ip to one of this host's addresses, or --flannel-iface)"
    )]
    NoInterface(Ipv4Addr),
    #[error("interface {0:?} does not exist (--flannel-iface)")]
    MissingInterface(String),
    #[error("unexpected output of {command}: {message}")]
    Parse { command: String, message: String },
    #[error("API error: {0}")]
    Api(#[from] kube::Error),
}
