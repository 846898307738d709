//! `proxy`: rkube's Service data plane. It turns `Service` + `EndpointSlice` objects into
//! one nftables table (`ip rkube`), modelled on kube-proxy's nftables mode
//! (`pkg/proxy/nftables/proxier.go`, KEP-3866). The first (full) sync is one atomic
//! `nft -f -` transaction; later syncs send only the difference as one nf_tables netlink
//! batch ([`netlink`]), falling back to `nft -f -` for statements outside the encoder's
//! subset (ClientIP affinity sets and rules, Local-policy external chains,
//! `loadBalancerSourceRanges` rules).
//!
//! Depends on: kube, k8s-openapi (it is an API client like every other component), the
//! `nft` binary (Debian `nftables`), and for UDP flow cleanup the `conntrack` binary
//! (Debian `conntrack`). Never on `store` or `apiserver`.
//!
//! - [`model`]: the pure model ([`ServicePortInfo`], [`Endpoint`], [`from_objects`],
//!   [`categorize_endpoints`]).
//! - [`render`]: rule text (static skeleton + one [`render::Fragment`] per service port).
//! - [`Proxier`]: keeps the last committed state in memory and syncs full or partial; a
//!   new proxier first adopts the table an earlier run left (`adopt`: read back over
//!   netlink, checked against the skeleton hash in the table comment) and sends only the
//!   difference, so a restart rewrites nothing when nothing changed.
//! - [`netlink`]: nf_tables transactions and read-back over netlink.
//! - [`ModelCache`]: `from_objects` converting only the Services whose objects changed.
//! - [`run`]: reflectors on Services and EndpointSlices, coalesced syncs; [`metrics()`].
//! - [`healthcheck`]: the `healthCheckNodePort` HTTP servers of LoadBalancer Services with
//!   `externalTrafficPolicy: Local` ([`HealthServer`], upstream `service_health.go`).
//! - [`setup_node`]: sysctls and the optional unreachable route; [`cleanup`].
//!
//! # Table layout
//!
//! ```text
//! nat-prerouting / nat-output (dstnat -100):  jump services ; goto endpoint-dnat
//! services:
//!     ip daddr @cluster-ips ip saddr != <pod CIDR> jump mark-for-masquerade
//!     ip daddr . meta l4proto . th dport vmap @service-ips      ClusterIP / externalIP / LB IP
//!     fib daddr type local ip daddr != 127.0.0.0/8
//!         meta l4proto . th dport vmap @service-nodeports        NodePort
//!     accept                                                     (no service: no DNAT)
//! service-<hash>-ns/name/proto/port   (Cluster policy)  one rule, then falls back to the
//! local-<hash>-…                      (Local policy)    base chain (-> endpoint-dnat):
//!     ct mark set numgen random mod N offset <group id << 16>
//! endpoint-dnat:  meta l4proto tcp|udp|sctp dnat ip to ct mark map @endpoints
//! external-<hash>-…  NodePort/externalIP/LB traffic: mark for masquerade and go to
//!     service-… (Cluster policy), or short-circuit pod/node traffic to service-… and go
//!     to local-… or accept un-DNATed (Local policy)
//! nat-postrouting (srcnat 100) -> masquerading: hairpin (`ct status dnat ip saddr .
//!     ip daddr @hairpin`) and packets marked 0x4000 are masqueraded (fully-random)
//! filter-prerouting-post-dnat / filter-output-post-dnat (-90), ct state new:
//!     @no-endpoint-services (reject: tcp reset / icmp port-unreachable, or drop for a
//!     Local policy without local endpoints), @cluster-ips and @lb-ips reject (undefined port),
//!     service CIDR drop (unallocated IP)
//! filter-input (-110): @no-endpoint-nodeports
//! filter-prerouting / filter-output (dstnat -10 = -110, before DNAT), ct state new:
//!     jump firewall-check: ip daddr . meta l4proto . th dport vmap @firewall-ips
//!     (LoadBalancer IP . proto . port of Services with loadBalancerSourceRanges)
//! firewall-<hash>-…  ip saddr != { ranges [, LB IPs when a range holds a node IP] } drop
//! raw-prerouting / raw-output (raw -300): notrack for the node-local DNS address:port
//! ```
//! ClientIP session affinity uses upstream's layout for that service only: per-endpoint
//! chains and `affinity-…` sets (`flags dynamic,timeout`), `ip saddr @affinity-X goto
//! endpoint-X` before `numgen random mod N vmap { … }`, `update @affinity-X { ip saddr }`,
//! `dnat to`.
//!
//! # Why this layout (measured on the 2-core test machine, 10,000 Services x 10 endpoints)
//!
//! Three costs dominate a sync, none of them the size of the transaction itself:
//! 1. `nft` lists every chain (and every set, anonymous ones included) before it
//!    applies anything: ~30-45 ms per call with 10,000 chains, 10x that for kube-proxy's
//!    chain per endpoint (110,000 chains). Partial syncs therefore skip `nft` and send
//!    netlink batches built from the state kept in memory (~0.7 ms for a one-endpoint
//!    change).
//! 2. The kernel re-validates the whole jump graph at commit when the transaction adds a
//!    rule with a verdict (`goto`, `jump`) or a `meta … set`: +20-30 ms at 10,000 chains.
//!    A rule with only `ct mark set numgen …` does not trigger it (nor do data-map
//!    element updates).
//! 3. A map bound by many rules is quadratic in the kernel: each element insert walks
//!    the bindings, each new binding walks the elements. One shared DNAT map referenced
//!    from 10,000 service chains took 14 s (elements after rules) to 65 s (rules after
//!    elements); 10,000 anonymous maps took 22 s (their names are allocated by a scan of
//!    all sets).
//!
//! Hence: one chain per service port (per traffic policy in use), holding a single
//! verdict-free rule that writes an endpoint *slot* into `ct mark`; the chain falls back
//! to the base chain, whose next rule goes to `endpoint-dnat`, the only user of the
//! `endpoints` map (3 bindings). Endpoints keep their slot across changes (a removed one
//! is replaced by the last), so:
//!
//! | change | statements |
//! |---|---|
//! | an endpoint replaced (pod restarted with a new IP) | 2 `endpoints` elements + 2 `hairpin` elements |
//! | an endpoint added / removed | `flush chain` + 1 rule + 1-2 elements |
//! | a Service added / removed | its chain(s) + `service-ips`, `cluster-ips`, slot and hairpin elements |
//!
//! Measured by `cargo bench -p proxy --bench sync` (one run, load average 1-3; the
//! numbers and method are in `docs/performance.md`):
//!
//! | 10,000 Services x 10 endpoints | rkube | kube-proxy's layout (same run) |
//! |---|---|---|
//! | full sync | 1.6 s (nft 1.2 s, 240k statements) | 116 s (110k chains) |
//! | one endpoint replaced, p50 / p99 of 200 | 6.6 / 9.6 ms (netlink 0.5 ms, 4 statements) | 721 / 1,255 ms (20 changes) |
//! | one endpoint added or removed, p50 / p99 of 200 | 7.7 / 9.5 ms | |
//! | EndpointSlice object changed -> rule live (model cache + sync), p50 / p99 | 20.7 / 28.6 ms | |
//! | the same one-endpoint change through `nft -f` instead of netlink | 40 / 44 ms | |
//! | restart with nothing changed (adopt the table) | 1.0 s, 0 statements | |
//!
//! `ct mark` is only written on the first packet of a connection going to a Service and
//! is not used by anything else in rkube. Group ids are 16 bits (65,535 endpoint-picking
//! chains); past that a chain falls back to an anonymous `numgen … map { … }` in its rule.
//! What is left of a partial sync at this scale is comparing all 10,000 service ports
//! with the committed state (~6 ms) and rebuilding the desired list (~8 ms); passing only
//! the changed Services down would remove both.
//!
//! # Differences from upstream, on purpose
//! - No chain per endpoint (except ClientIP affinity services): the DNAT target comes from
//!   the `endpoints` map; hairpin masquerade is a postrouting check
//!   `ct status dnat ip saddr . ip daddr @hairpin` instead of `ip saddr <ep>` per endpoint
//!   chain (same condition: the client is the chosen endpoint).
//! - Off-cluster clients of a ClusterIP are marked for masquerade by one static rule
//!   (`ip daddr @cluster-ips ip saddr != <pod CIDR>`) instead of one rule per service
//!   chain; packets it marks that are not DNATed are rejected or dropped by the filter
//!   chains anyway.
//! - Full syncs replace the table (`add table` + `delete table` + content, one
//!   transaction): established connections keep their conntrack NAT bindings (tested), but
//!   ClientIP affinity entries start over.
//! - Bridged pods: with `br_netfilter`, a pod DNATed to itself is bridged back out of its
//!   own port, so pod ports need hairpin mode (kubelet's `hairpin-veth`; the agent's job).
//! - The no-endpoint / cluster-ips checks run in prerouting and output *after* DNAT
//!   (priority -90; kernel >= 5.9 allows `reject` in prerouting) instead of
//!   input/forward/output: this keeps upstream's semantics (a packet short-circuited and
//!   DNATed by a Local-policy external chain is not dropped) and works whether or not the
//!   service CIDR has an `unreachable` route (with one, forwarded packets never reach the
//!   forward hook).
//! - Deleted chains are deleted in the same transaction as the map elements pointing to
//!   them (kernel >= 6.2; upstream delays it for older kernels).
//! - Topology aware routing follows zone hints on EndpointSlices (the node's zone comes
//!   from its Node, watched), but rkube's EndpointSlice controller does not write hints
//!   yet (`service.kubernetes.io/topology-mode: Auto`); node hints (PreferSameNode, an
//!   alpha gate in 1.33) are not used.
//! - `loadBalancerSourceRanges`: as upstream (only the LoadBalancer IPs are filtered, not
//!   the ClusterIP, externalIPs or NodePorts; IPv6 and unparsable entries are ignored), and
//!   when the field is empty the `service.beta.kubernetes.io/load-balancer-source-ranges`
//!   annotation counts (as cloud providers read it; kube-proxy itself ignores it). The
//!   ranges are aggregated before rendering. A firewall rule is outside the netlink
//!   encoder's subset, so a partial sync that changes one goes through `nft -f`, and an
//!   adopting restart rewrites each firewall chain (one flush + one rule) instead of
//!   reading it back.
//! - Health check node ports answer one request per connection (`Connection: close`);
//!   `serviceProxyHealthy` is false while the last sync failed (upstream compares sync
//!   timestamps with the queued changes).
//! - Not implemented: IPv6, `--nodeport-addresses` (NodePorts and health check ports
//!   answer on every local address, except 127/8 for NodePorts, the upstream default).

mod adopt;
mod cache;
mod exec;
mod fnv;
pub mod healthcheck;
pub mod metrics;
pub mod model;
pub mod netlink;
pub mod node;
pub mod proxier;
pub mod render;
pub mod runner;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;

pub use cache::ModelCache;
pub use healthcheck::{health_checks, HealthCheck, HealthServer, ServiceName};
pub use metrics::metrics;
pub use model::{
    categorize_endpoints, from_objects, Categorized, Desired, Endpoint, Protocol, ServicePortInfo, ServicePortKey,
    ServiceType, SessionAffinity, TrafficPolicy,
};
pub use node::{cleanup, setup_node, NodeSetup, NodeSetupReport};
pub use proxier::{render_full, DesiredPort, Proxier, SyncStats};
pub use runner::run;

/// Configuration of one node's proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// nftables table name (family `ip`).
    pub table: String,
    /// This node's name: endpoints with this `nodeName` are local.
    pub node_name: String,
    /// This node's addresses. NodePorts answer on every local address; these only decide
    /// whether a `loadBalancerSourceRanges` range holding the node also admits the
    /// LoadBalancer IPs as sources (upstream `allowFromNode`).
    pub node_ips: Vec<Ipv4Addr>,
    /// This node's `topology.kubernetes.io/zone` label: Cluster-policy traffic stays in the
    /// zone when the endpoints carry zone hints. [`run`] keeps it current from the Node.
    pub node_zone: Option<String>,
    /// The cluster's pod CIDR: traffic from outside it to a ClusterIP is masqueraded, and
    /// pod traffic to a `Local`-policy external IP is short-circuited to all endpoints.
    pub pod_cidr: Ipv4Net,
    /// The service CIDR: unallocated addresses in it are dropped.
    pub service_cidr: Ipv4Net,
    /// Node-local DNS cache address and port: its traffic is not conntracked.
    pub node_local_dns: Option<(Ipv4Addr, u16)>,
    /// The `nft` binary.
    pub nft: PathBuf,
    /// The `conntrack` binary (stale UDP flow cleanup).
    pub conntrack: PathBuf,
    /// Run `nft`, `conntrack`, `ip` and the sysctls in this network namespace
    /// (e.g. `/var/run/netns/<name>`) instead of the process's own.
    pub netns: Option<PathBuf>,
    /// The runner waits this long after a change before syncing, to coalesce bursts.
    pub min_sync_period: Duration,
    /// Send partial syncs as nf_tables netlink batches ([`netlink`]) when they fit the
    /// encoder's subset, instead of through `nft -f` (which lists the whole ruleset first).
    pub netlink_partial_syncs: bool,
    /// What [`run`] prepares on the node before the first sync.
    pub node_setup: NodeSetup,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            table: "rkube".into(),
            node_name: String::new(),
            node_ips: Vec::new(),
            node_zone: None,
            pod_cidr: Ipv4Net::new_assert(Ipv4Addr::new(10, 244, 0, 0), 16),
            service_cidr: Ipv4Net::new_assert(Ipv4Addr::new(10, 96, 0, 0), 12),
            node_local_dns: Some((Ipv4Addr::new(169, 254, 20, 10), 53)),
            nft: PathBuf::from("nft"),
            conntrack: PathBuf::from("conntrack"),
            netns: None,
            min_sync_period: Duration::from_millis(50),
            netlink_partial_syncs: true,
            node_setup: NodeSetup::default(),
        }
    }
}

/// Errors of the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `nft` rejected the transaction (nothing was changed: transactions are atomic).
    #[error("nft failed ({status}): {stderr}")]
    Nft { status: String, stderr: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a netlink transaction, or the socket failed (nothing was changed).
    #[error("nf_tables netlink transaction failed: {0}")]
    Netlink(#[from] netlink::NetlinkError),
    #[error("{0}")]
    Command(String),
}

impl ProxyError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> ProxyError {
        ProxyError::Io { what: what.into(), source }
    }
}
