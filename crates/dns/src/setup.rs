//! The node-local DNS address. The `nodelocaldns` pod puts it on the node
//! (`program::node_cache`: a dummy `nodelocaldns` interface as upstream, or `lo`
//! where the kernel has no dummy driver).

use std::net::Ipv4Addr;

/// Upstream's default node-local DNS address (k8s.io/dns `node-cache`).
pub const NODE_LOCAL_DNS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);
