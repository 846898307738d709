//! The DNS add-ons as programs run inside pods: rkube's built-in images
//! `registry.k8s.io/coredns/coredns` ([`coredns`]) and
//! `registry.k8s.io/dns/k8s-dns-node-cache` ([`node_cache`]) run these with the
//! image's usual arguments (`-conf /etc/coredns/Corefile`; `-localip 169.254.20.10
//! -conf /etc/Corefile -upstreamsvc kube-dns`), read the Corefile of their ConfigMap,
//! and talk to the API server as their pod's ServiceAccount (in-cluster config).

pub mod corefile;

use crate::{CacheConfig, ClusterDnsServer, ClusterView, DnsConfig, NodeLocalCache, NodeLocalConfig};
use corefile::{Directive, ServerBlock};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Why an add-on program stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("{0}")]
    Usage(String),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Corefile(#[from] corefile::CorefileError),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Dns(#[from] crate::Error),
}

/// Go-style flags (`-name value`, `-name=value`, `--name value`, bare booleans).
#[derive(Debug, Default)]
struct Flags(Vec<(String, Option<String>)>);

impl Flags {
    fn parse(args: &[String], booleans: &[&str]) -> Result<Flags, ProgramError> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
                return Err(ProgramError::Usage(format!("unexpected argument {a:?}")));
            };
            match name.split_once('=') {
                Some((n, v)) => out.push((n.to_string(), Some(v.to_string()))),
                None if booleans.contains(&name) => out.push((name.to_string(), None)),
                None => {
                    let v = it.next().ok_or_else(|| ProgramError::Usage(format!("flag -{name} needs a value")))?;
                    out.push((name.to_string(), Some(v.clone())));
                }
            }
        }
        Ok(Flags(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    /// A boolean flag: bare means true; `=false` turns it off.
    fn on(&self, name: &str, default: bool) -> bool {
        match self.0.iter().rev().find(|(n, _)| n == name) {
            Some((_, None)) => true,
            Some((_, Some(v))) => !matches!(v.as_str(), "false" | "0" | "f" | "F" | "FALSE" | "False"),
            None => default,
        }
    }
}

fn read(path: &str) -> Result<String, ProgramError> {
    std::fs::read_to_string(path).map_err(|source| ProgramError::Read { path: path.to_string(), source })
}

/// `:9153` -> `0.0.0.0:9153`; `169.254.20.10:8080` as is.
fn listen_addr(text: &str, default_port: u16) -> Option<SocketAddr> {
    let text = text.trim();
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (text, default_port),
    };
    let ip: IpAddr = if host.is_empty() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { host.parse().ok()? };
    Some(SocketAddr::new(ip, port))
}

/// `forward . TO...`: each target an address (`IP[:PORT]`, `dns://IP`) or a
/// resolv.conf-style file, as CoreDNS's forward plugin.
fn forward_targets(d: &Directive) -> Vec<SocketAddr> {
    d.args
        .iter()
        .skip(1)
        .flat_map(|t| {
            let t = t.strip_prefix("dns://").unwrap_or(t);
            match listen_addr(t, 53) {
                Some(a) => vec![a],
                None => crate::resolv_conf_nameservers(t),
            }
        })
        .collect()
}

/// `cache [TTL]` (the longest a positive answer is kept).
fn cache_config(d: &Directive) -> CacheConfig {
    let mut c = CacheConfig::default();
    if let Some(ttl) = d.args.first().and_then(|s| s.parse().ok()) {
        c.max_ttl = Duration::from_secs(ttl);
    }
    c
}

/// Plugins that change nothing here (rkube's servers do it anyway or it does not
/// apply): not worth a warning.
const QUIET: &[&str] = &["errors", "log", "loop", "reload", "loadbalance", "bind", "health", "ready", "prometheus"];

fn note_unsupported(block: &ServerBlock, known: &[&str]) {
    for d in &block.directives {
        if !known.contains(&d.name.as_str()) && !QUIET.contains(&d.name.as_str()) {
            tracing::warn!(plugin = %d.name, "this CoreDNS plugin is not supported by rkube; ignored");
        }
    }
}

/// The cluster DNS as a Corefile describes it.
#[derive(Debug, Clone)]
pub struct CoreDnsPlan {
    pub dns: DnsConfig,
    /// `health` and `ready` listeners (CoreDNS: `:8080` and `:8181`).
    pub health: Option<SocketAddr>,
    pub ready: Option<SocketAddr>,
}

/// Reads the server block that has the `kubernetes` plugin (else the root block).
pub fn coredns_plan(blocks: &[ServerBlock]) -> Result<CoreDnsPlan, ProgramError> {
    let block = blocks
        .iter()
        .find(|b| b.directive("kubernetes").is_some())
        .or_else(|| blocks.iter().find(|b| b.is_root()))
        .ok_or_else(|| ProgramError::Usage("the Corefile has no server block with the kubernetes plugin".into()))?;
    note_unsupported(block, &["kubernetes", "forward", "cache"]);
    let mut dns =
        DnsConfig { listen: vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, block.port))], ..Default::default() };
    if let Some(k) = block.directive("kubernetes") {
        if let Some(zone) = k.args.iter().find(|z| !z.ends_with(".arpa")) {
            dns.zone = zone.trim_end_matches('.').to_string();
        }
        if let Some(ttl) = k.block.iter().find(|d| d.name == "ttl").and_then(|d| d.args.first()) {
            dns.ttl =
                ttl.parse().map_err(|_| ProgramError::Usage(format!("kubernetes ttl {ttl:?} is not a number")))?;
        }
    }
    dns.upstream = block.directive("forward").map(forward_targets).unwrap_or_default();
    dns.cache = block.directive("cache").map(cache_config);
    dns.metrics_listen = block.directive("prometheus").map(|d| {
        d.args.first().and_then(|a| listen_addr(a, 9153)).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9153)))
    });
    let addr_of = |name: &str, port: u16| {
        block.directive(name).map(|d| {
            d.args.first().and_then(|a| listen_addr(a, port)).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port)))
        })
    };
    Ok(CoreDnsPlan { dns, health: addr_of("health", 8080), ready: addr_of("ready", 8181) })
}

async fn in_cluster_client() -> Result<kube::Client, String> {
    let config = kube::Config::incluster().map_err(|e| format!("reading the pod's ServiceAccount credentials: {e}"))?;
    kube::Client::try_from(config).map_err(|e| format!("building the API client: {e}"))
}

/// Until SIGTERM or SIGINT (the pod is being stopped).
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => futures::future::pending::<()>().await,
    }
}

/// Extra `/health` + `/ready` listeners sharing a server's metrics and view.
async fn serve_probes(
    addrs: impl IntoIterator<Item = SocketAddr>,
    metrics: Arc<crate::Metrics>,
    view: Option<ClusterView>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ProgramError> {
    let mut tasks = Vec::new();
    for addr in addrs {
        let m = metrics.clone();
        let v = view.clone();
        let (_, task) = crate::serve_http(
            addr,
            Arc::new(move || m.render()),
            Arc::new(move || v.as_ref().is_none_or(ClusterView::is_synced)),
        )
        .await?;
        tasks.push(task);
    }
    Ok(tasks)
}

/// `coredns -conf FILE`: rkube's cluster DNS, answering the `kubernetes` zone from
/// its own watches.
pub async fn coredns(args: Vec<String>) -> i32 {
    match coredns_inner(&args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("coredns: {e}");
            1
        }
    }
}

async fn coredns_inner(args: &[String]) -> Result<(), ProgramError> {
    let flags = Flags::parse(args, &["version", "plugins", "quiet"])?;
    if flags.on("version", false) {
        println!("CoreDNS-1.12.0 (rkube {})", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let path = flags.get("conf").unwrap_or("Corefile");
    let env = |k: &str| std::env::var(k).ok();
    let plan = coredns_plan(&corefile::parse(&read(path)?, &env)?)?;
    let client = in_cluster_client().await.map_err(ProgramError::Setup)?;
    let view = ClusterView::new_unsynced();
    let server = ClusterDnsServer::start(plan.dns.clone(), view.clone()).await?;
    let _probes =
        serve_probes(plan.health.into_iter().chain(plan.ready), server.metrics_handle(), Some(view.clone())).await?;
    println!(
        ".:{} on {:?}, zone {}, upstream {:?}",
        server.local_addrs().first().map(|a| a.port()).unwrap_or_default(),
        server.local_addrs(),
        plan.dns.zone,
        plan.dns.upstream
    );
    println!("CoreDNS-1.12.0 (rkube {}) linux/{}", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH);
    tokio::select! {
        r = crate::watch(client, view) => r.map_err(ProgramError::from),
        _ = terminated() => {
            println!("[INFO] SIGTERM: Shutting down servers then terminating");
            Ok(())
        }
    }
}

/// What `node-cache` sets up and serves.
#[derive(Debug, Clone)]
pub struct NodeCachePlan {
    pub local_ips: Vec<Ipv4Addr>,
    pub cluster_zone: String,
    /// The cluster DNS Service (`-upstreamsvc`), for the zone when no view is fed.
    pub cluster_dns: Vec<SocketAddr>,
    pub upstream: Vec<SocketAddr>,
    pub cache: CacheConfig,
    pub metrics: Option<SocketAddr>,
    pub health: Option<SocketAddr>,
    pub interface: Option<String>,
    pub rules: bool,
    pub teardown: bool,
}

/// `node-cache`'s flags and Corefile, with upstream's placeholders
/// (`__PILLAR__CLUSTER__DNS__` = the `-upstreamsvc` Service's ClusterIP from its
/// `<NAME>_SERVICE_HOST` variable, `__PILLAR__UPSTREAM__SERVERS__` = this node's
/// resolv.conf). Anchor: kubernetes/dns `cmd/node-cache/app/cache_app.go`.
pub fn node_cache_plan(
    args: &[String],
    read_file: &dyn Fn(&str) -> Result<String, ProgramError>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<NodeCachePlan, ProgramError> {
    let flags = Flags::parse(args, &["setupinterface", "setupiptables", "skipteardown"])?;
    let local_ips = flags
        .get("localip")
        .ok_or_else(|| ProgramError::Usage("-localip IP[,IP...] is required".into()))?
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| ProgramError::Usage(format!("-localip: {s:?} is not an IPv4 address"))))
        .collect::<Result<Vec<Ipv4Addr>, _>>()?;
    let first = local_ips.first().copied().ok_or_else(|| ProgramError::Usage("-localip is empty".into()))?;
    let svc_host = flags.get("upstreamsvc").and_then(|svc| {
        let var = format!("{}_SERVICE_HOST", svc.to_uppercase().replace('-', "_"));
        env(&var)
    });
    let conf = read_file(flags.get("conf").unwrap_or("/etc/Corefile"))?
        .replace("__PILLAR__CLUSTER__DNS__", svc_host.as_deref().unwrap_or(""))
        .replace("__PILLAR__UPSTREAM__SERVERS__", "/etc/resolv.conf")
        .replace("__PILLAR__LOCAL__DNS__", &first.to_string())
        .replace("__PILLAR__DNS__DOMAIN__", crate::DEFAULT_ZONE);
    let blocks = corefile::parse(&conf, env)?;
    let cluster = blocks.iter().find(|b| b.zones.iter().any(|z| z != "." && !z.ends_with(".arpa")));
    let root = blocks.iter().find(|b| b.is_root());
    for b in cluster.iter().chain(root.iter()) {
        note_unsupported(b, &["forward", "cache"]);
    }
    let cluster_zone = cluster
        .and_then(|b| b.zones.iter().find(|z| z.as_str() != "." && !z.ends_with(".arpa")))
        .cloned()
        .unwrap_or_else(|| crate::DEFAULT_ZONE.to_string());
    let mut cluster_dns = cluster.and_then(|b| b.directive("forward")).map(forward_targets).unwrap_or_default();
    if cluster_dns.is_empty() {
        cluster_dns.extend(svc_host.and_then(|h| h.parse::<Ipv4Addr>().ok()).map(|ip| SocketAddr::from((ip, 53))));
    }
    let upstream = match root.and_then(|b| b.directive("forward")) {
        Some(f) => forward_targets(f),
        None => crate::resolv_conf_nameservers("/etc/resolv.conf"),
    };
    let cache = cluster.or(root).and_then(|b| b.directive("cache")).map(cache_config).unwrap_or_default();
    let metrics = blocks
        .iter()
        .find_map(|b| b.directive("prometheus"))
        .and_then(|d| d.args.first().and_then(|a| listen_addr(a, 9253)))
        .or_else(|| flags.get("metrics-listen-address").and_then(|a| listen_addr(a, 9353)));
    let health_port = match flags.get("health-port") {
        Some(p) => p.parse().map_err(|_| ProgramError::Usage(format!("-health-port {p:?} is not a port")))?,
        None => 8080,
    };
    let health = blocks
        .iter()
        .find_map(|b| b.directive("health"))
        .and_then(|d| d.args.first().and_then(|a| listen_addr(a, health_port)))
        .or(Some(SocketAddr::from((first, health_port))));
    Ok(NodeCachePlan {
        local_ips,
        cluster_zone,
        cluster_dns,
        upstream,
        cache,
        metrics,
        health,
        interface: flags
            .on("setupinterface", true)
            .then(|| flags.get("interfacename").unwrap_or("nodelocaldns").to_string()),
        rules: flags.on("setupiptables", true),
        teardown: !flags.on("skipteardown", false),
    })
}

/// The nftables table that keeps DNS to the local addresses out of conntrack
/// (upstream's NOTRACK rules, `cache_app.go` `initIptables`).
pub const NFT_TABLE: &str = "rkube-nodelocaldns";

/// The nft script of [`NFT_TABLE`] for these addresses (replacing any old one).
pub fn notrack_rules(ips: &[Ipv4Addr]) -> String {
    let mut pre = String::new();
    let mut out = String::new();
    for ip in ips {
        for p in ["udp", "tcp"] {
            pre.push_str(&format!("    ip daddr {ip} {p} dport 53 notrack\n"));
            out.push_str(&format!("    ip daddr {ip} {p} dport 53 notrack\n"));
            out.push_str(&format!("    ip saddr {ip} {p} sport 53 notrack\n"));
        }
    }
    format!(
        "table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\ntable ip {NFT_TABLE} {{\n  chain prerouting {{\n    type filter hook prerouting priority raw; policy accept;\n{pre}  }}\n  chain output {{\n    type filter hook output priority raw; policy accept;\n{out}  }}\n}}\n"
    )
}

async fn run_cmd(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<(), ProgramError> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| ProgramError::Setup(format!("running {prog}: {e}")))?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes()).await.map_err(|e| ProgramError::Setup(format!("writing to {prog}: {e}")))?;
    }
    let out = child.wait_with_output().await.map_err(|e| ProgramError::Setup(format!("running {prog}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProgramError::Setup(format!("{prog} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Where the local addresses went: upstream's dummy interface, or `lo` on kernels
/// without the dummy driver (every network namespace has `lo`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attached {
    Dummy(String),
    Lo,
}

async fn set_up(plan: &NodeCachePlan) -> Result<Option<Attached>, ProgramError> {
    let attached = match &plan.interface {
        None => None,
        Some(ifname) => {
            let exists = run_cmd("ip", &["link", "show", ifname], None).await.is_ok();
            let created = exists || run_cmd("ip", &["link", "add", ifname, "type", "dummy"], None).await.is_ok();
            let at = if created {
                Attached::Dummy(ifname.clone())
            } else {
                eprintln!("node-cache: no dummy interface driver on this kernel; the addresses go on lo");
                Attached::Lo
            };
            let dev = match &at {
                Attached::Dummy(n) => n.as_str(),
                Attached::Lo => "lo",
            };
            run_cmd("ip", &["link", "set", dev, "up"], None).await?;
            for ip in &plan.local_ips {
                run_cmd("ip", &["-4", "addr", "replace", &format!("{ip}/32"), "dev", dev], None).await?;
            }
            Some(at)
        }
    };
    if plan.rules {
        run_cmd("nft", &["-f", "-"], Some(&notrack_rules(&plan.local_ips))).await?;
    }
    Ok(attached)
}

async fn tear_down(plan: &NodeCachePlan, attached: Option<&Attached>) {
    let mut steps: Vec<Vec<String>> = Vec::new();
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if plan.rules {
        steps.push(argv(&["nft", "delete", "table", "ip", NFT_TABLE]));
    }
    match attached {
        Some(Attached::Dummy(ifname)) => steps.push(argv(&["ip", "link", "del", ifname])),
        Some(Attached::Lo) => {
            for ip in &plan.local_ips {
                steps.push(argv(&["ip", "-4", "addr", "del", &format!("{ip}/32"), "dev", "lo"]));
            }
        }
        None => {}
    }
    for step in steps {
        let (prog, args) = (step[0].as_str(), step[1..].iter().map(String::as_str).collect::<Vec<_>>());
        if let Err(e) = run_cmd(prog, &args, None).await {
            eprintln!("node-cache: teardown: {e}");
        }
    }
}

/// `node-cache -localip 169.254.20.10 -conf /etc/Corefile -upstreamsvc kube-dns`:
/// the node-local DNS cache on a link-local address of a dummy interface
/// (NodeLocal DNSCache, KEP-1024), run in a `hostNetwork` pod of the
/// `nodelocaldns` DaemonSet. It answers the cluster zone from its own watches and
/// forwards it to the cluster DNS Service while those are unavailable.
pub async fn node_cache(args: Vec<String>) -> i32 {
    let env = |k: &str| std::env::var(k).ok();
    let plan = match node_cache_plan(&args, &read, &env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("node-cache: {e}");
            return 1;
        }
    };
    let attached = match set_up(&plan).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("node-cache: setting up the local addresses: {e}");
            return 1;
        }
    };
    let code = match node_cache_serve(&plan).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("node-cache: {e}");
            1
        }
    };
    if plan.teardown {
        tear_down(&plan, attached.as_ref()).await;
    }
    code
}

async fn node_cache_serve(plan: &NodeCachePlan) -> Result<(), ProgramError> {
    let client = match in_cluster_client().await {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("node-cache: {e}; forwarding the cluster zone to {:?}", plan.cluster_dns);
            None
        }
    };
    let view = client.as_ref().map(|_| ClusterView::new_unsynced());
    let mut caches = Vec::new();
    for (i, ip) in plan.local_ips.iter().enumerate() {
        let cfg = NodeLocalConfig {
            listen: SocketAddr::from((*ip, 53)),
            cluster_zone: plan.cluster_zone.clone(),
            cluster_view: view.clone(),
            cluster_dns: plan.cluster_dns.clone(),
            upstream: plan.upstream.clone(),
            cache: plan.cache.clone(),
            // One /metrics for the process (the first cache's counters).
            metrics_listen: if i == 0 { plan.metrics } else { None },
            ..Default::default()
        };
        caches.push(NodeLocalCache::start(cfg).await?);
    }
    let metrics =
        caches.first().map(NodeLocalCache::metrics_handle).ok_or_else(|| ProgramError::Setup("no address".into()))?;
    let _probes = serve_probes(plan.health, metrics, None).await?;
    println!(
        "node-cache (rkube {}): serving {:?} on {:?}, cluster zone {} , upstream {:?}",
        env!("CARGO_PKG_VERSION"),
        plan.local_ips,
        plan.interface,
        plan.cluster_zone,
        plan.upstream
    );
    match (client, view) {
        (Some(client), Some(view)) => {
            tokio::select! {
                r = crate::watch(client, view) => r.map_err(ProgramError::from),
                _ = terminated() => Ok(()),
            }
        }
        _ => {
            terminated().await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coredns_plan_from_kubeadms_corefile() {
        let text = ".:53 {\n errors\n health {\n lameduck 5s\n }\n ready\n kubernetes cluster.local in-addr.arpa ip6.arpa {\n pods insecure\n ttl 30\n }\n prometheus :9153\n forward . 192.168.122.1 10.0.0.2:5353\n cache 30\n loop\n}\n";
        let plan = coredns_plan(&corefile::parse(text, &|_| None).expect("parses")).expect("plan");
        assert_eq!(plan.dns.zone, "cluster.local");
        assert_eq!(plan.dns.ttl, 30);
        assert_eq!(plan.dns.listen, [SocketAddr::from(([0, 0, 0, 0], 53))]);
        assert_eq!(
            plan.dns.upstream,
            [SocketAddr::from(([192, 168, 122, 1], 53)), SocketAddr::from(([10, 0, 0, 2], 5353))]
        );
        assert_eq!(plan.dns.cache.as_ref().map(|c| c.max_ttl), Some(Duration::from_secs(30)));
        assert_eq!(plan.dns.metrics_listen, Some(SocketAddr::from(([0, 0, 0, 0], 9153))));
        assert_eq!(plan.health, Some(SocketAddr::from(([0, 0, 0, 0], 8080))));
        assert_eq!(plan.ready, Some(SocketAddr::from(([0, 0, 0, 0], 8181))));
    }

    #[test]
    fn node_cache_plan_from_upstreams_manifest() {
        // The Corefile of upstream's nodelocaldns.yaml (cluster/addons/dns/nodelocaldns).
        let corefile = "cluster.local:53 {\n    errors\n    cache {\n            success 9984 30\n            denial 9984 5\n    }\n    reload\n    loop\n    bind __PILLAR__LOCAL__DNS__\n    forward . __PILLAR__CLUSTER__DNS__ {\n            force_tcp\n    }\n    prometheus :9253\n    health __PILLAR__LOCAL__DNS__:8080\n    }\n.:53 {\n    errors\n    cache 30\n    bind __PILLAR__LOCAL__DNS__\n    forward . 192.168.122.1\n    prometheus :9253\n    }\n";
        let args: Vec<String> = ["-localip", "169.254.20.10", "-conf", "/etc/Corefile", "-upstreamsvc", "kube-dns"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let read = |p: &str| {
            assert_eq!(p, "/etc/Corefile");
            Ok(corefile.to_string())
        };
        let env = |k: &str| (k == "KUBE_DNS_SERVICE_HOST").then(|| "10.96.0.10".to_string());
        let plan = node_cache_plan(&args, &read, &env).expect("plan");
        assert_eq!(plan.local_ips, [Ipv4Addr::new(169, 254, 20, 10)]);
        assert_eq!(plan.cluster_zone, "cluster.local");
        assert_eq!(plan.cluster_dns, [SocketAddr::from(([10, 96, 0, 10], 53))]);
        assert_eq!(plan.upstream, [SocketAddr::from(([192, 168, 122, 1], 53))]);
        assert_eq!(plan.metrics, Some(SocketAddr::from(([0, 0, 0, 0], 9253))));
        assert_eq!(plan.health, Some(SocketAddr::from(([169, 254, 20, 10], 8080))));
        assert_eq!(plan.interface.as_deref(), Some("nodelocaldns"));
        assert!(plan.rules && plan.teardown);

        let more: Vec<String> =
            args.iter().cloned().chain(["-skipteardown".to_string(), "-setupinterface=false".to_string()]).collect();
        let plan = node_cache_plan(&more, &read, &env).expect("plan");
        assert!(!plan.teardown);
        assert_eq!(plan.interface, None);
        let e =
            node_cache_plan(&["-conf".to_string(), "/etc/Corefile".to_string()], &read, &env).expect_err("no localip");
        assert!(e.to_string().contains("-localip"), "{e}");
    }

    #[test]
    fn notrack_rules_cover_both_directions() {
        let r = notrack_rules(&[Ipv4Addr::new(169, 254, 20, 10)]);
        assert!(r.contains("ip daddr 169.254.20.10 udp dport 53 notrack"), "{r}");
        assert!(r.contains("ip saddr 169.254.20.10 tcp sport 53 notrack"), "{r}");
        assert!(r.starts_with("table ip rkube-nodelocaldns\ndelete table ip rkube-nodelocaldns\n"), "{r}");
    }
}
