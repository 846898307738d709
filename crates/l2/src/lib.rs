//! `l2`: L2 announcement of LoadBalancer addresses, run by every node agent
//! (MetalLB's layer2 mode, `speaker/layer2_controller.go`, with faster failover).
//!
//! Exactly one node answers ARP for each `status.loadBalancer.ingress` address:
//! - [`election`]: who may announce an address (pure rules) and what this node does.
//! - [`lease`]: the per-address Lease in `kube-system` (`rkube-lb-<ip>`, holder = the
//!   announcing node, written only on change, compare-and-swap) and the per-node
//!   heartbeat Lease (`rkube-l2-<node>`, renewed every `renew` while the node holds an
//!   address). Peers judge a heartbeat by local observation (no change seen within the
//!   holder's lease duration), as client-go's leader election does, so clocks need not
//!   agree. A holder stops answering once its own last successful renew is older than
//!   3/4 of the duration, before anyone may take over.
//! - [`arp`]: `AF_PACKET` ARP replies and gratuitous ARP on take-over; the address is
//!   never added to an interface.
//! - [`interfaces`]: where to answer: the advertisement's `interfaces`, else the
//!   interfaces with an IPv4 subnet holding the address (never `lo` or the pod bridge).
//!
//! Depends on: kube, k8s-openapi, apimachinery (the MetalLB kinds), libc, and the
//! `ip` binary (iproute2) for the interface list. Never on `store` or `apiserver`.

pub mod arp;
pub mod election;
pub mod interfaces;
pub mod lease;
mod metrics;
mod run;

pub use metrics::metrics;
pub use run::run;

use std::net::Ipv4Addr;
use std::time::Duration;

/// How one node announces.
#[derive(Clone, Debug)]
pub struct L2Config {
    pub node_name: String,
    /// This node's InternalIP (its interface is the fallback announcing interface).
    pub node_ip: Ipv4Addr,
    /// Interfaces never announced on (the pod bridge; `lo` always).
    pub exclude_interfaces: Vec<String>,
    /// How long a holder's heartbeat may go unseen before others take over.
    pub lease_duration: Duration,
    /// How often a holder renews its heartbeat.
    pub renew: Duration,
}

impl L2Config {
    pub fn new(node_name: &str, node_ip: Ipv4Addr) -> L2Config {
        L2Config {
            node_name: node_name.to_string(),
            node_ip,
            exclude_interfaces: Vec::new(),
            lease_duration: Duration::from_millis(600),
            renew: Duration::from_millis(150),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    #[error("invalid L2 announcement settings: {0}")]
    Config(String),
}
