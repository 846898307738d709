//! Cluster DNS benchmark: 10,000 Services (each with an EndpointSlice and a Pod)
//! in a [`ClusterView`], the cluster DNS and the node-local cache serving them on
//! loopback, and `dnsperf` (Debian `dnsperf`) against each, side by side with
//! dnsmasq (Debian `dnsmasq-base`) serving the same 10,000 names from a static
//! hosts file in the same run. Prints queries/s, latency and the ratios, and the
//! process's RSS with everything loaded next to CoreDNS's published sizing
//! formula, (pods + services) / 1000 + 54 MB.
//!
//! `cargo bench -p dns --bench dnsperf`; `RKUBE_BENCH_SECONDS` sets the length of
//! each dnsperf run (default 5). Loopback only: 127.0.0.1 and 127.0.3.x.

use dns::{CacheConfig, ClusterDnsServer, ClusterView, DnsConfig, NodeLocalCache, NodeLocalConfig};
use k8s_openapi::api::core::v1::{Pod, PodIP, PodStatus, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SERVICES: usize = 10_000;
const NAMESPACE: &str = "bench";

fn main() {
    if let Err(e) = run() {
        eprintln!("dnsperf bench: {e}");
        std::process::exit(1);
    }
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn rss_kib() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn service_ip(i: usize) -> String {
    format!("10.96.{}.{}", 10 + i / 250, 1 + i % 250)
}

fn pod_ip(i: usize) -> String {
    format!("10.244.{}.{}", 10 + i / 250, 1 + i % 250)
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some(NAMESPACE.into()), ..Default::default() }
}

/// Load Service `i`, its EndpointSlice and its Pod; the objects are dropped right
/// away, as a watch would.
fn load(view: &ClusterView, i: usize) {
    let name = format!("svc-{i}");
    view.apply_service(&Service {
        metadata: meta(&name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(service_ip(i)),
            cluster_ips: Some(vec![service_ip(i)]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut m = meta(&format!("{name}-abcde"));
    m.labels = Some(BTreeMap::from([("kubernetes.io/service-name".to_string(), name.clone())]));
    view.apply_endpoint_slice(&EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![pod_ip(i)],
            conditions: Some(EndpointConditions { ready: Some(true), ..Default::default() }),
            ..Default::default()
        }],
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    });
    view.apply_pod(&Pod {
        metadata: meta(&format!("{name}-pod")),
        status: Some(PodStatus { pod_ips: Some(vec![PodIP { ip: pod_ip(i) }]), ..Default::default() }),
        ..Default::default()
    });
}

fn free_port(ip: &str) -> Result<u16, String> {
    // A port free for both UDP and TCP on `ip`.
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind(format!("{ip}:0")).map_err(|e| e.to_string())?;
        let port = udp.local_addr().map_err(|e| e.to_string())?.port();
        if std::net::TcpListener::bind(format!("{ip}:{port}")).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port".into())
}

struct Perf {
    qps: f64,
    avg_latency_ms: f64,
    lost: String,
}

fn dnsperf(server: SocketAddr, data: &Path, seconds: u64) -> Result<Perf, String> {
    let out = Command::new("dnsperf")
        .args(["-s", &server.ip().to_string(), "-p", &server.port().to_string()])
        .arg("-d")
        .arg(data)
        .args(["-l", &seconds.to_string(), "-c", "4", "-T", "1", "-q", "200", "-t", "2"])
        .output()
        .map_err(|e| format!("run dnsperf: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| -> Option<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split_once(':').map(|(_, v)| v.split_whitespace().next().unwrap_or("").to_string()))
    };
    let qps = value("Queries per second").and_then(|v| v.parse().ok());
    let lat = value("Average Latency (s)").and_then(|v| v.parse::<f64>().ok());
    let lost = text
        .lines()
        .find(|l| l.trim_start().starts_with("Queries lost"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    match (qps, lat) {
        (Some(qps), Some(lat)) => Ok(Perf { qps, avg_latency_ms: lat * 1000.0, lost }),
        _ => Err(format!("unexpected dnsperf output:\n{text}\n{}", String::from_utf8_lossy(&out.stderr))),
    }
}

struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dnsmasq(dir: &Path, port: u16) -> Result<Dnsmasq, String> {
    let hosts = dir.join("hosts");
    let mut f = std::fs::File::create(&hosts).map_err(|e| e.to_string())?;
    for i in 0..SERVICES {
        writeln!(f, "{} svc-{i}.{NAMESPACE}.svc.cluster.local", service_ip(i)).map_err(|e| e.to_string())?;
        writeln!(f, "{} host-{i}.example.test", pod_ip(i)).map_err(|e| e.to_string())?;
    }
    drop(f);
    let child = Command::new("dnsmasq")
        .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root"])
        .arg(format!("--addn-hosts={}", hosts.display()))
        .args(["--listen-address=127.0.0.1", "--bind-interfaces", "--cache-size=20000", "--local-ttl=30"])
        .arg(format!("--port={port}"))
        .arg("--pid-file")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start dnsmasq: {e}"))?;
    let d = Dnsmasq(child);
    // Ready when it answers one of its names.
    for _ in 0..100 {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "svc-0.bench.svc.cluster.local",
                "+short",
                "+time=1",
                "+tries=1",
            ])
            .output();
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == service_ip(0)) {
            return Ok(d);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("dnsmasq did not come up".into())
}

fn write_queries(path: &Path, name: impl Fn(usize) -> String) -> Result<(), String> {
    let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    // Every name once, in a scrambled order (dnsperf loops over the file).
    for k in 0..SERVICES {
        let i = (k * 7919) % SERVICES;
        writeln!(f, "{} A", name(i)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn run() -> Result<(), String> {
    if !have("dnsperf", "-h") || !have("dnsmasq", "--version") || !have("dig", "-v") {
        println!(
            "dnsperf bench skipped: needs dnsperf, dnsmasq and dig (apt-get install dnsperf dnsmasq-base dnsutils)"
        );
        return Ok(());
    }
    let seconds: u64 = std::env::var("RKUBE_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;

    let (rss_before, _) = rss_kib();
    let view = ClusterView::new();
    let t = std::time::Instant::now();
    for i in 0..SERVICES {
        load(&view, i);
    }
    let load_time = t.elapsed();
    let (rss_loaded, _) = rss_kib();
    let stats = view.stats();

    let dnsmasq_port = free_port("127.0.0.1")?;
    let _dnsmasq = start_dnsmasq(dir.path(), dnsmasq_port)?;
    let dnsmasq_addr: SocketAddr = ([127, 0, 0, 1], dnsmasq_port).into();

    let (cluster, node_view, node_fwd) = rt.block_on(async {
        let cluster = ClusterDnsServer::start(
            DnsConfig {
                listen: vec!["127.0.3.1:0".parse().map_err(|e| format!("{e}"))?],
                upstream: vec![dnsmasq_addr],
                ..DnsConfig::default()
            },
            view.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let node_view = NodeLocalCache::start(NodeLocalConfig {
            listen: "127.0.3.2:0".parse().map_err(|e| format!("{e}"))?,
            cluster_view: Some(view.clone()),
            upstream: vec![dnsmasq_addr],
            cache: CacheConfig { capacity: 20_000, ..CacheConfig::default() },
            ..NodeLocalConfig::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        let node_fwd = NodeLocalCache::start(NodeLocalConfig {
            listen: "127.0.3.3:0".parse().map_err(|e| format!("{e}"))?,
            cluster_view: None,
            cluster_dns: cluster.local_addrs().to_vec(),
            upstream: vec![dnsmasq_addr],
            ..NodeLocalConfig::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((cluster, node_view, node_fwd))
    })?;

    let cluster_names = dir.path().join("cluster.txt");
    write_queries(&cluster_names, |i| format!("svc-{i}.{NAMESPACE}.svc.cluster.local"))?;
    let outside_names = dir.path().join("outside.txt");
    write_queries(&outside_names, |i| format!("host-{i}.example.test"))?;

    println!("dnsperf: {seconds} s per run, 4 clients, 200 outstanding, {SERVICES} names in random order, UDP");
    println!("{:<58} {:>10} {:>12} {:>8}  lost", "server", "queries/s", "avg lat ms", "vs base");
    let row = |label: &str, addr: SocketAddr, data: &Path, base: Option<&Perf>| -> Result<Perf, String> {
        let p = dnsperf(addr, data, seconds)?;
        let ratio = base.map(|b| format!("{:.2}x", p.qps / b.qps)).unwrap_or_else(|| "1.00x".into());
        println!("{label:<58} {:>10.0} {:>12.3} {:>8}  {}", p.qps, p.avg_latency_ms, ratio, p.lost);
        Ok(p)
    };
    let base = row("dnsmasq 2.90, static hosts file (baseline)", dnsmasq_addr, &cluster_names, None)?;
    let c = row("rkube cluster DNS, view of 10k Services", cluster.local_addrs()[0], &cluster_names, Some(&base))?;
    let n = row("rkube node-local cache, own view", node_view.local_addr(), &cluster_names, Some(&base))?;
    let f = row("rkube node-local cache -> cluster DNS over TCP", node_fwd.local_addr(), &cluster_names, Some(&base))?;
    // Outside names: the first pass fills the cache, then every query is a hit.
    let _warm = dnsperf(node_view.local_addr(), &outside_names, 1);
    let base_out = row("dnsmasq 2.90, outside names (baseline)", dnsmasq_addr, &outside_names, None)?;
    let o = row(
        "rkube node-local cache, outside names (cache hits)",
        node_view.local_addr(),
        &outside_names,
        Some(&base_out),
    )?;

    println!();
    println!("latency vs dnsmasq: cluster DNS {:.2}x, node-local (view) {:.2}x, node-local -> cluster DNS {:.2}x, node-local cached outside {:.2}x",
        c.avg_latency_ms / base.avg_latency_ms,
        n.avg_latency_ms / base.avg_latency_ms,
        f.avg_latency_ms / base.avg_latency_ms,
        o.avg_latency_ms / base_out.avg_latency_ms);
    let nm = node_view.metrics_handle();
    println!(
        "node-local (view) cache: {} hits, {} misses, {} upstream queries",
        nm.cache_hits(),
        nm.cache_misses(),
        nm.upstream_requests()
    );

    let (rss_end, hwm) = rss_kib();
    let formula_mb = (stats.pods + stats.services) as f64 / 1000.0 + 54.0;
    println!();
    println!(
        "view: {} Services, {} EndpointSlices, {} Pods loaded in {:.0} ms",
        stats.services,
        stats.endpoint_slices,
        stats.pods,
        load_time.as_secs_f64() * 1000.0
    );
    println!(
        "RSS: {:.1} MB before loading, {:.1} MB loaded (+{:.1} MB for the view), {:.1} MB after the runs (peak {:.1} MB)",
        rss_before as f64 / 1024.0,
        rss_loaded as f64 / 1024.0,
        (rss_loaded.saturating_sub(rss_before)) as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "CoreDNS sizing formula (pods + services)/1000 + 54 MB = {formula_mb:.0} MB; rkube DNS process: {:.1} MB ({:.2}x)",
        rss_end as f64 / 1024.0,
        rss_end as f64 / 1024.0 / formula_mb
    );
    drop((cluster, node_view, node_fwd));
    Ok(())
}
