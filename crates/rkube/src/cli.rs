//! Command-line interface.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "rkube",
    version,
    about = "A Kubernetes-compatible cluster in one binary, built around Service networking."
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RKUBE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start-up and matched once: the size of the biggest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a single-node cluster in this process: API server, controllers and the node agent.
    Up(UpArgs),
    /// Stop and remove a multi-node cluster made by `rkube up --nodes N`: its
    /// processes, pods, network namespaces and bridge.
    Down(DownArgs),
    /// Start the control plane: API server and controllers.
    Server(ServerArgs),
    /// Start a node agent that joins an existing cluster (`rkube server` or `rkube up`).
    Agent(AgentArgs),
    /// Manage join tokens (bootstrap tokens) on a running server.
    Token(TokenArgs),
    /// Print the rkube and Kubernetes versions.
    Version,
    /// Run a built-in image's program (used inside pods).
    #[command(hide = true)]
    Image {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        argv: Vec<String>,
    },
    /// Hold a pod's namespaces (the pod infra process).
    #[command(hide = true)]
    PodInfra {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run one container, write its log and record its exit (the container shim).
    #[command(hide = true)]
    ContainerShim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub local: LocalClusterArgs,
}

/// A multi-node cluster on this machine (`rkube up --nodes 4`).
#[derive(Args, Debug, Clone)]
pub struct LocalClusterArgs {
    /// Run this many nodes on this machine, each in a network namespace on a bridge
    /// (node1: control plane and node, the others joined agents), like the lesson's
    /// 1 master + 3 nodes. Needs root; `rkube down` removes them.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// The nodes' LAN with --nodes: this machine gets `.1` on the bridge, node i
    /// gets `.1<i>` (192.168.122.11, .12, ...); without --lb-pool, LoadBalancer
    /// Services get `.200-.250`. A /24 or larger.
    #[arg(long, default_value = "192.168.122.0/24")]
    pub lan: Ipv4Net,
    /// Prefix of the bridge (`<name>-lan`) and namespaces (`<name>-node<i>`) with --nodes.
    #[arg(long, default_value = "rkube")]
    pub name: String,
}

/// `rkube down`: remove a local cluster made by `rkube up --nodes N`.
#[derive(Args, Debug, Clone)]
pub struct DownArgs {
    /// The data dir given to `rkube up --nodes N`.
    #[arg(long, default_value = "/var/lib/rkube", env = "RKUBE_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Flags of the node agent.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Name of this node [default: the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// Port of the node agent's API (logs, exec), like kubelet's.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Address of the cluster DNS Service (`.10` of the service range), the
    /// pods' second nameserver.
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns: std::net::Ipv4Addr,
    /// Link-local address of the node-local DNS cache, the pods' nameserver.
    #[arg(long, default_value = "169.254.20.10")]
    pub node_local_dns: std::net::Ipv4Addr,
    /// Bridge the pods are attached to.
    #[arg(long, default_value = "rkube0")]
    pub bridge: String,
    /// The Service proxy waits this long after a change before syncing its rules, so a
    /// burst of changes becomes one sync (kube-proxy's `--min-sync-period`).
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub min_sync_period: std::time::Duration,
    /// Do not answer ARP for LoadBalancer addresses on this node (another announcer,
    /// e.g. MetalLB's speaker, does it).
    #[arg(long)]
    pub no_lb_announce: bool,
    /// A node announcing LoadBalancer addresses that is not heard from for this long
    /// is taken over by another node.
    #[arg(long, default_value = "600ms", value_parser = parse_duration)]
    pub lb_lease_duration: std::time::Duration,
    /// How often the announcing node renews its heartbeat (shorter than --lb-lease-duration).
    #[arg(long, default_value = "150ms", value_parser = parse_duration)]
    pub lb_renew_period: std::time::Duration,
    /// Duration of this node's Lease in kube-node-lease, renewed every quarter of
    /// it (kubelet's --node-lease-duration-seconds).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_lease_duration_seconds: u64,
    /// The pod network between nodes: `vxlan` (flannel-compatible: device
    /// rkube.1, VNI 1, UDP 8472) or `none` (bring your own; pods reach pods
    /// on other nodes only if your network routes the pod CIDRs).
    #[arg(long, default_value = "vxlan", value_parser = ["vxlan", "none"])]
    pub flannel_backend: String,
    /// The interface the pod network tunnels over [default: the node IP's].
    #[arg(long)]
    pub flannel_iface: Option<String>,
    /// Registry settings in k3s's `registries.yaml` form: mirrors (endpoints
    /// tried in order, then the registry itself), and per host `auth`
    /// (username/password or auth) and `tls` (ca_file, insecure_skip_verify).
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// A registry reached over plain HTTP or HTTPS without certificate checks
    /// (Docker's insecure-registries); repeat for more.
    #[arg(long, value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// Only the mirrors of --registry-config, never a registry's own endpoint
    /// (k3s --disable-default-registry-endpoint).
    #[arg(long)]
    pub disable_default_registry_endpoint: bool,
    /// Images rkube has built in (the lesson's myweb, agnhost, and tool images
    /// such as busybox): `fallback` pulls the real image and runs the built-in
    /// only when no registry can be reached; `prefer` runs the built-in
    /// without asking a registry (offline learning). rkube's own DNS and pause
    /// images are always built in.
    #[arg(long, default_value = "fallback", value_parser = ["fallback", "prefer"], env = "RKUBE_BUILTIN_IMAGES")]
    pub builtin_images: String,
    /// Disk usage (percent of the image store's filesystem) above which unused
    /// images are removed, least recently used first (kubelet's flag).
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_high_threshold: u8,
    /// Image garbage collection stops below this disk usage (percent).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
}

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// The admin kubeconfig [default: <data-dir>/kubeconfig.yaml].
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The server's data dir (where its admin kubeconfig is).
    #[arg(long, global = true, default_value = "/var/lib/rkube", env = "RKUBE_DATA_DIR")]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum TokenCommand {
    /// Create a join token and print it (`K10<ca-hash>::<id>.<secret>`).
    Create {
        /// How long the token is valid (`0` = forever), e.g. `30m`, `24h`.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: std::time::Duration,
        /// What the token is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the join tokens.
    List,
    /// Revoke join tokens: agents can no longer join with them (joined nodes keep
    /// their own certificates).
    Delete {
        /// Token IDs (the 6 characters before the dot) or whole tokens.
        #[arg(required = true)]
        tokens: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// URL of the API server, e.g. https://192.168.122.11:6443, or several,
    /// comma separated: the agent fails over between them, and learns the others
    /// from the `kubernetes` Endpoints.
    #[arg(long)]
    pub server: String,
    /// Join token: the server's `<data-dir>/node-token`, or one from `rkube token
    /// create` (`K10<ca-hash>::<id>.<secret>`). Needed for the first join only:
    /// the agent trades it for its own certificate, kept in --data-dir.
    #[arg(long, env = "RKUBE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster CA to trust (the server's `<data-dir>/pki/ca.crt`)
    /// [default: fetched from the server and checked against the token's CA hash].
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Where the agent keeps its state (its certificate and CA, pod IPs, logs).
    #[arg(long, default_value = "/var/lib/rkube-agent", env = "RKUBE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// This node's address on the nodes' network
    /// [default: the first non-loopback IPv4 address of this host].
    #[arg(long)]
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// Range of ClusterIPs (as given to the server).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: Ipv4Net,
    /// Pod network of the cluster (as given to the server).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: Ipv4Net,
    /// This node's pods use the `kube-dns` Service only, not the node-local DNS
    /// cache (for a cluster started with `--disable nodelocaldns`).
    #[arg(long)]
    pub no_node_local_dns: bool,
    /// DNS domain of the cluster.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where the datastore, certificates and the admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/rkube", env = "RKUBE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Address advertised to clients and in the `kubernetes` Endpoints
    /// [default: the first non-loopback IPv4 address of this host, else 127.0.0.1].
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Range of ClusterIPs; `.1` is the `kubernetes` Service, `.10` the cluster DNS.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: Ipv4Net,
    /// Range of NodePorts, `FIRST-LAST`.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub node_port_range: (u16, u16),
    /// Datastore: `sqlite` (embedded, in the data dir), `etcd://HOST:PORT,...` (an etcd
    /// v3 cluster) or `etcd+tls://HOST:PORT,...` (with the `--etcd-*file` flags).
    #[arg(long, default_value = "sqlite", env = "RKUBE_DATASTORE")]
    pub datastore: String,
    /// The cluster's shared secrets: CA (`ca.crt`, `ca.key`), ServiceAccount signing
    /// key (`sa.key`) and admin token (`admin.token`), created on first start. Give
    /// every API server on one etcd a copy of the same directory
    /// [default: `<data-dir>/pki`, with the admin token in `<data-dir>`].
    #[arg(long)]
    pub pki_dir: Option<PathBuf>,
    /// Every key in etcd lives under this prefix, so clusters can share one etcd.
    #[arg(long, default_value = "/rkube")]
    pub etcd_prefix: String,
    /// CA certificate (PEM) that signed the etcd members' serving certificates.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, when it checks clients.
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    /// Key (PEM) of `--etcd-certfile`.
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
    /// DNS servers for names outside the cluster, `IP[:PORT],...`
    /// [default: the nameservers of this host's /etc/resolv.conf].
    #[arg(long, value_delimiter = ',', value_parser = parse_dns_server)]
    pub upstream_dns: Vec<std::net::SocketAddr>,
    /// DNS domain of the cluster.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Leave these add-ons out (comma separated): `coredns` (the cluster DNS
    /// Deployment behind the `kube-dns` Service), `nodelocaldns` (the node-local DNS
    /// cache DaemonSet). Bring your own, or run without.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub disable: Vec<crate::addons::Addon>,
    /// Pod network of the cluster; each node gets a /24 of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: Ipv4Net,
    /// Addresses for LoadBalancer Services on the nodes' network, announced by ARP
    /// (MetalLB-style L2): `A-B` or a CIDR, comma separated or repeated, e.g.
    /// `--lb-pool 192.168.122.200-192.168.122.250`. Kept as the IPAddressPool
    /// `kube-system/rkube-lb-pool`; more pools can be added as IPAddressPool objects.
    /// Without any pool, LoadBalancer Services get the IPs of the nodes (k3s ServiceLB).
    #[arg(long = "lb-pool", value_name = "RANGE")]
    pub lb_pools: Vec<String>,
    /// Run the API server alone: no controllers and no cluster DNS (to measure or
    /// debug the API server by itself).
    #[arg(long)]
    pub api_only: bool,
    /// Controllers run on one API server at a time (Lease `kube-system/kube-controller-manager`):
    /// how long a leader's Lease lasts without renewal before another server takes over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew before it stops its controllers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: std::time::Duration,
    /// How often candidates try to take the Lease and the leader renews it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: std::time::Duration,
    /// Serve watches from one shared in-memory cache per resource (`--watch-cache=false`:
    /// every client watch reads the datastore, as kube-apiserver's flag of that name).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub watch_cache: bool,
    /// How often old revisions are compacted (e.g. `5m`, `30s`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub compaction_interval: std::time::Duration,
    /// How often the node lifecycle controller checks every node's Lease.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: std::time::Duration,
    /// A node whose Lease is not renewed for this long becomes NotReady (Unknown),
    /// its pods not ready, and it gets the node.kubernetes.io/unreachable taints.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// The same for a node that never reported Ready.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub node_startup_grace_period: std::time::Duration,
    /// Pods without their own toleration of node.kubernetes.io/not-ready:NoExecute
    /// tolerate it this long, then are evicted.
    #[arg(long, default_value_t = 300)]
    pub default_not_ready_toleration_seconds: i64,
    /// The same for node.kubernetes.io/unreachable:NoExecute (a lost node).
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
}

/// `192.168.122.1` or `192.168.122.1:5353`.
fn parse_dns_server(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    s.parse::<std::net::SocketAddr>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{s:?} is not an address like 192.168.122.1 or 192.168.122.1:53"))
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not a range like 30000-32767"))?;
    let a: u16 = a.trim().parse().map_err(|_| format!("{a:?} is not a port number"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("{b:?} is not a port number"))?;
    if a == 0 || a > b {
        return Err(format!("{s:?}: the first port must be between 1 and the last port"));
    }
    Ok((a, b))
}

/// `300ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30s or 5m"))?;
    let ms = match unit {
        "ms" => n,
        "s" | "" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        assert_eq!(parse_port_range("30000-32767"), Ok((30000, 32767)));
        assert!(parse_port_range("3-1").is_err());
        assert_eq!(parse_duration("5m"), Ok(std::time::Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn min_sync_period_defaults_small_and_can_be_set() {
        let node = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Up(up)) => up.node.min_sync_period,
            other => panic!("{args:?}: {other:?}"),
        };
        assert_eq!(node(&["rkube", "up"]), std::time::Duration::from_millis(50));
        assert_eq!(node(&["rkube", "up", "--min-sync-period", "1s"]), std::time::Duration::from_secs(1));
        assert!(Cli::try_parse_from(["rkube", "up", "--min-sync-period", "soon"]).is_err());
    }
}
