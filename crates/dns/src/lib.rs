//! `dns`: rkube's cluster DNS and node-local DNS cache.
//!
//! - [`ClusterView`]: an in-memory index of Services, EndpointSlices, Pods and
//!   Namespaces, fed by kube-rs watchers ([`watch`], [`run`]) or directly, that
//!   answers the names of the Kubernetes DNS-Based Service Discovery specification
//!   (kubernetes/dns `docs/specification.md`, schema 1.1.0) as CoreDNS's
//!   `kubernetes` plugin does (`pods verified`, `fallthrough in-addr.arpa ip6.arpa`).
//! - [`ClusterDnsServer`]: the cluster DNS (kube-dns Service) over UDP and TCP;
//!   names outside the zone are forwarded to upstream servers and cached.
//! - [`NodeLocalCache`]: the per-node cache on a link-local address, answering the
//!   cluster zone from its own view (or forwarding it to the cluster DNS over TCP)
//!   and caching everything else, serving stale answers when upstreams fail.
//!
//! Wire format: hickory-proto. Depends on: hickory-proto, kube, k8s-openapi, tokio.
//! Never on the store or the API server: the view is fed through the REST API.

mod cache;
mod error;
mod metrics;
pub mod program;
mod resolver;
mod server;
mod setup;
mod upstream;
mod view;
mod watch;
mod wire;

pub use cache::CacheConfig;
pub use error::{Error, Result};
pub use metrics::{serve_http, Metrics};
pub use server::{ClusterDnsServer, DnsConfig, NodeLocalCache, NodeLocalConfig};
pub use setup::NODE_LOCAL_DNS_ADDR;
pub use upstream::resolv_conf_nameservers;
pub use view::{ClusterView, Resolution, ViewStats, Zone, DNS_SCHEMA_VERSION};
pub use watch::{run, watch};

/// The cluster domain Kubernetes uses unless told otherwise.
pub const DEFAULT_ZONE: &str = "cluster.local";
/// CoreDNS's default TTL for the records of the `kubernetes` plugin.
pub const DEFAULT_TTL: u32 = 5;
