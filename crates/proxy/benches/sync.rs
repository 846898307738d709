//! Sync cost at scale, in a network namespace created (and deleted) by the benchmark:
//! a full sync of N Services x 10 endpoints (default N = 10,000), then p50/p99 of 200
//! single-endpoint changes (partial syncs), next to a baseline measured in the same run:
//! kube-proxy's layout (a chain per service and per endpoint) rendered here and loaded
//! with `nft -f` in a second namespace (full load, and the transaction upstream sends
//! for one service's endpoint change).
//!
//! `cargo bench -p proxy` (root). Env: `RKUBE_BENCH_SERVICES` (N), `RKUBE_BENCH_BASELINE=0`
//! to skip the (slow, minutes) baseline, `RKUBE_BENCH_NOOPS` (no-change syncs measured,
//! default 20), `RKUBE_BENCH_DUMP=<file>` (write the full-sync transaction there).
//! Prints; asserts nothing about times. Under `cargo test --benches` it runs 100 Services.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proxy::{from_objects, Endpoint, ModelCache, Protocol, Proxier, ProxyConfig, ServicePortInfo};

const ENDPOINTS: usize = 10;
const CHANGES: usize = 200;
const BASELINE_CHANGES: usize = 20;

struct Netns(String);

impl Netns {
    fn new(name: String) -> io::Result<Netns> {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let st = Command::new("ip").args(["netns", "add", &name]).status()?;
        if !st.success() {
            return Err(io::Error::other(format!("ip netns add {name} failed")));
        }
        let ns = Netns(name);
        Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]).status()?;
        Ok(ns)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.0))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// `nft -f -` in `ns`, entering it with setns(2) in the child as the proxy does.
fn nft(ns: &Netns, script: &str) -> io::Result<Duration> {
    let f = File::open(ns.path())?;
    let fd = f.as_raw_fd();
    let mut cmd = Command::new("nft");
    cmd.args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: only setns(2) between fork and exec; the fd outlives spawn.
    unsafe {
        cmd.pre_exec(
            move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            },
        );
    }
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    drop(f);
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).lines().take(5).collect::<Vec<_>>().join("\n"),
        ));
    }
    Ok(took)
}

fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i as u32)
}

fn endpoint_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + 1 + k as u32)
}

fn service(i: usize) -> ServicePortInfo {
    ServicePortInfo {
        namespace: format!("ns-{}", i % 50),
        name: format!("svc-{i}"),
        port_name: "http".into(),
        cluster_ip: cluster_ip(i),
        port: 80,
        protocol: Protocol::Tcp,
        ..ServicePortInfo::default()
    }
}

fn desired(n: usize) -> Vec<(ServicePortInfo, Vec<Endpoint>)> {
    (0..n)
        .map(|i| {
            let eps =
                (0..ENDPOINTS).map(|j| Endpoint::ready(endpoint_ip(i * ENDPOINTS + j), 8080, Some("node-a"), true));
            (service(i), eps.collect())
        })
        .collect()
}

/// The API objects the proxy's reflectors hold for service `i`: the Service and its
/// EndpointSlice (endpoint IPs `ips`), as `run` (the watch loop) sees them.
fn service_object(i: usize) -> Arc<Service> {
    let info = service(i);
    Arc::new(Service {
        metadata: ObjectMeta { namespace: Some(info.namespace), name: Some(info.name), ..ObjectMeta::default() },
        spec: Some(ServiceSpec {
            cluster_ip: Some(info.cluster_ip.to_string()),
            ports: Some(vec![ServicePort {
                name: Some(info.port_name),
                port: 80,
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

fn slice_object(i: usize, ips: &[Ipv4Addr]) -> Arc<EndpointSlice> {
    let info = service(i);
    let labels = BTreeMap::from([("kubernetes.io/service-name".to_string(), info.name.clone())]);
    Arc::new(EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(info.namespace),
            name: Some(format!("{}-abcde", info.name)),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| discovery::Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(discovery::EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some("node-a".into()),
                ..discovery::Endpoint::default()
            })
            .collect(),
        ports: Some(vec![discovery::EndpointPort {
            name: Some(info.port_name),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..discovery::EndpointPort::default()
        }]),
    })
}

/// A small deterministic generator (no dependency on `rand` for a benchmark).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---- kube-proxy's layout (pkg/proxy/nftables, chain per service and per endpoint) ----

fn kp_service_chain(i: usize) -> String {
    format!("service-{i:08}-ns-{}/svc-{i}/tcp/http", i % 50)
}

fn kp_endpoint_chain(i: usize, ip: Ipv4Addr) -> String {
    format!("endpoint-{i:08}-ns-{}/svc-{i}/tcp/http__{ip}/8080", i % 50)
}

fn kp_service_rules(s: &mut String, i: usize, eps: &[Ipv4Addr]) {
    let chain = kp_service_chain(i);
    let _ = writeln!(
        s,
        "add rule ip kube-proxy {chain} ip daddr {} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        cluster_ip(i)
    );
    let vmap: Vec<String> =
        eps.iter().enumerate().map(|(j, ip)| format!("{j} : goto {}", kp_endpoint_chain(i, *ip))).collect();
    let _ =
        writeln!(s, "add rule ip kube-proxy {chain} numgen random mod {} vmap {{ {} }}", eps.len(), vmap.join(", "));
}

fn kp_endpoint_rules(s: &mut String, i: usize, ip: Ipv4Addr) {
    let chain = kp_endpoint_chain(i, ip);
    let _ = writeln!(s, "add rule ip kube-proxy {chain} ip saddr {ip} jump mark-for-masquerade");
    let _ = writeln!(s, "add rule ip kube-proxy {chain} meta l4proto tcp dnat to {ip}:8080");
}

fn kp_full(n: usize) -> String {
    let mut s = String::new();
    let t = "ip kube-proxy";
    let _ = writeln!(s, "add table {t}");
    let _ = writeln!(s, "add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}");
    let _ = writeln!(s, "add chain {t} mark-for-masquerade");
    let _ = writeln!(s, "add rule {t} mark-for-masquerade mark set mark or 0x4000");
    let _ = writeln!(s, "add chain {t} services");
    let _ = writeln!(s, "add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips");
    let _ = writeln!(s, "add chain {t} nat-prerouting {{ type nat hook prerouting priority -100; policy accept; }}");
    let _ = writeln!(s, "add rule {t} nat-prerouting jump services");
    let mut elems = Vec::with_capacity(n);
    for i in 0..n {
        let eps: Vec<Ipv4Addr> = (0..ENDPOINTS).map(|j| endpoint_ip(i * ENDPOINTS + j)).collect();
        let _ = writeln!(s, "add chain {t} {}", kp_service_chain(i));
        for ip in &eps {
            let _ = writeln!(s, "add chain {t} {}", kp_endpoint_chain(i, *ip));
            kp_endpoint_rules(&mut s, i, *ip);
        }
        kp_service_rules(&mut s, i, &eps);
        elems.push(format!("{} . tcp . 80 : goto {}", cluster_ip(i), kp_service_chain(i)));
    }
    for chunk in elems.chunks(1000) {
        let _ = writeln!(s, "add element {t} service-ips {{ {} }}", chunk.join(", "));
    }
    s
}

/// Upstream's partial-sync transaction when one endpoint of service `i` is replaced:
/// ensureChain (add + flush) for the service chain and every endpoint chain, their rules,
/// and a flush of the stale endpoint chain (deleted a second later upstream).
fn kp_change(i: usize, eps: &[Ipv4Addr], stale: Ipv4Addr) -> String {
    let mut s = String::new();
    let t = "ip kube-proxy";
    for c in std::iter::once(kp_service_chain(i)).chain(eps.iter().map(|ip| kp_endpoint_chain(i, *ip))) {
        let _ = writeln!(s, "add chain {t} {c}");
        let _ = writeln!(s, "flush chain {t} {c}");
    }
    for ip in eps {
        kp_endpoint_rules(&mut s, i, *ip);
    }
    kp_service_rules(&mut s, i, eps);
    let _ = writeln!(s, "flush chain {t} {}", kp_endpoint_chain(i, stale));
    s
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("proxy sync benchmark skipped: needs root (network namespaces, nftables)");
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a tiny size then.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("RKUBE_BENCH_SERVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(if bench_mode {
        10_000
    } else {
        100
    });
    let baseline = std::env::var("RKUBE_BENCH_BASELINE").map(|v| v != "0").unwrap_or(true);
    if let Err(e) = run(n, baseline, if bench_mode { CHANGES } else { 10 }) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run(n: usize, baseline: bool, changes: usize) -> Result<(), String> {
    let pid = std::process::id();
    let ns = Netns::new(format!("rkpx{pid}xbench")).map_err(|e| e.to_string())?;
    let nft_version =
        Command::new("nft").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "proxy sync benchmark: {n} Services x {ENDPOINTS} endpoints; {}; kernel {}",
        nft_version.unwrap_or_default(),
        kernel.trim()
    );

    let cfg = ProxyConfig { node_name: "node-a".into(), netns: Some(ns.path()), ..ProxyConfig::default() };
    let mut p = Proxier::new(cfg);
    let mut want = desired(n);
    let full = p.sync(&want).map_err(|e| format!("full sync: {e}"))?;
    if let Ok(path) = std::env::var("RKUBE_BENCH_DUMP") {
        let _ = std::fs::write(path, p.last_transaction());
    }
    println!(
        "rkube layout   full sync:  {:>9.1} ms  (nft {:.1} ms; {} statements, {} chains, {} rules)",
        ms(full.duration),
        ms(full.nft_duration),
        full.statements,
        full.chains,
        full.rules
    );

    // A sync with nothing to do: the cost of comparing the desired state with the committed one.
    let mut noop: Vec<Duration> = Vec::new();
    let noop_runs = std::env::var("RKUBE_BENCH_NOOPS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    for _ in 0..noop_runs {
        let s = p.sync(&want).map_err(|e| format!("no-op sync: {e}"))?;
        noop.push(s.duration);
    }
    noop.sort();
    println!("rkube layout   no-op sync (compare only): p50 {:>7.1} ms", ms(percentile(&noop, 0.5)));

    // Replace one endpoint (a pod restarted with a new IP): same endpoint count.
    let mut rng = Lcg(42);
    let mut fresh = 0usize;
    let mut replace: Vec<Duration> = Vec::with_capacity(changes);
    let mut replace_nft: Vec<Duration> = Vec::with_capacity(changes);
    let mut replace_statements = 0;
    for _ in 0..changes {
        let i = rng.next(n);
        let j = rng.next(ENDPOINTS);
        fresh += 1;
        want[i].1[j].ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + fresh as u32);
        let s = p.sync(&want).map_err(|e| format!("partial sync: {e}"))?;
        if s.full || s.changed_services != 1 {
            return Err(format!("expected a partial sync of one service: {s:?}"));
        }
        replace_statements = replace_statements.max(s.statements);
        replace.push(s.duration);
        replace_nft.push(s.nft_duration);
    }
    replace.sort();
    replace_nft.sort();
    // Remove one endpoint / add it back: the endpoint count changes, so the chain's rules too.
    let mut scale: Vec<Duration> = Vec::with_capacity(changes);
    let mut scale_nft: Vec<Duration> = Vec::with_capacity(changes);
    let mut scale_statements = 0;
    for k in 0..changes {
        let i = rng.next(n);
        if k % 2 == 0 {
            want[i].1.pop();
        } else {
            fresh += 1;
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + fresh as u32);
            want[i].1.push(Endpoint::ready(ip, 8080, Some("node-a"), true));
        }
        let s = p.sync(&want).map_err(|e| format!("partial sync: {e}"))?;
        scale_statements = scale_statements.max(s.statements);
        scale.push(s.duration);
        scale_nft.push(s.nft_duration);
    }
    scale.sort();
    scale_nft.sort();
    let (r50, r99) = (percentile(&replace, 0.5), percentile(&replace, 0.99));
    let (s50, s99) = (percentile(&scale, 0.5), percentile(&scale, 0.99));
    println!(
        "rkube layout   replace one endpoint: p50 {:>7.1} ms  p99 {:>7.1} ms  (nft p50 {:.1} ms; {changes} syncs, <= {replace_statements} statements)",
        ms(r50),
        ms(r99),
        ms(percentile(&replace_nft, 0.5))
    );
    println!(
        "rkube layout   add/remove endpoint:  p50 {:>7.1} ms  p99 {:>7.1} ms  (nft p50 {:.1} ms; {changes} syncs, <= {scale_statements} statements)",
        ms(s50),
        ms(s99),
        ms(percentile(&scale_nft, 0.5))
    );

    // From an EndpointSlice change to the rule being live, as the watch loop does it: the
    // desired state is rebuilt from all Service and EndpointSlice objects (level-triggered),
    // then synced; the sync returns once the kernel acknowledged the commit.
    let services: Vec<Arc<Service>> = (0..n).map(service_object).collect();
    let mut slice_ips: Vec<Vec<Ipv4Addr>> = want.iter().map(|(_, eps)| eps.iter().map(|e| e.ip).collect()).collect();
    let mut slices: Vec<Arc<EndpointSlice>> = (0..n).map(|i| slice_object(i, &slice_ips[i])).collect();
    let mut cache = ModelCache::new("node-a");
    p.sync(&cache.update(&services, &slices)).map_err(|e| format!("sync from objects: {e}"))?;
    // The same conversion done from scratch (what the cache saves), measured in this run.
    let mut from_scratch: Vec<Duration> = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let d = from_objects(&services, &slices, "node-a");
        from_scratch.push(start.elapsed());
        drop(d);
    }
    from_scratch.sort();
    let mut e2e: Vec<Duration> = Vec::with_capacity(changes);
    let mut model_times: Vec<Duration> = Vec::with_capacity(changes);
    for _ in 0..changes {
        let i = rng.next(n);
        let j = rng.next(slice_ips[i].len());
        fresh += 1;
        slice_ips[i][j] = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + fresh as u32);
        slices[i] = slice_object(i, &slice_ips[i]);
        let start = Instant::now();
        let desired = cache.update(&services, &slices);
        model_times.push(start.elapsed());
        let s = p.sync(&desired).map_err(|e| format!("partial sync: {e}"))?;
        e2e.push(start.elapsed());
        if cache.converted() != 1 {
            return Err(format!("expected one Service converted, got {}", cache.converted()));
        }
        if s.full || s.changed_services != 1 || !p.last_sent_via_netlink() {
            return Err(format!("expected a netlink partial sync of one service: {s:?}"));
        }
    }
    e2e.sort();
    let (e50, e99) = (percentile(&e2e, 0.5), percentile(&e2e, 0.99));
    println!(
        "network programming (EndpointSlice change -> objects -> model -> sync -> kernel ACK): p50 {:>7.1} ms  p99 {:>7.1} ms  (target p99 < 50 ms; {changes} changes)",
        ms(e50),
        ms(e99)
    );
    model_times.sort();
    println!(
        "  of which the model update: p50 {:>7.1} ms (converting all objects from scratch instead: p50 {:.1} ms)",
        ms(percentile(&model_times, 0.5)),
        ms(percentile(&from_scratch, 0.5))
    );
    drop(p);

    // A restarted proxy: the first sync reads the table back and adopts it.
    let cfg = ProxyConfig { node_name: "node-a".into(), netns: Some(ns.path()), ..ProxyConfig::default() };
    let mut p = Proxier::new(cfg);
    let s = p.sync(&cache.update(&services, &slices)).map_err(|e| format!("adopting sync: {e}"))?;
    println!(
        "restart, nothing changed: first sync {:>7.1} ms (adopted: {}, {} statements; a full rewrite took {:.1} ms above)",
        ms(s.duration),
        s.adopted,
        s.statements,
        ms(full.duration)
    );
    if !s.adopted || s.statements != 0 {
        return Err(format!("expected the restarted proxy to adopt the table with no statement: {s:?}"));
    }
    drop(p);

    // The same one-endpoint changes sent through `nft -f` (the pre-netlink path), same run.
    let cfg = ProxyConfig {
        node_name: "node-a".into(),
        netns: Some(ns.path()),
        netlink_partial_syncs: false,
        ..ProxyConfig::default()
    };
    let mut p = Proxier::new(cfg);
    p.sync(&want).map_err(|e| format!("full sync (nft path): {e}"))?;
    let mut via_nft: Vec<Duration> = Vec::new();
    for _ in 0..BASELINE_CHANGES.min(changes) {
        let i = rng.next(n);
        let j = rng.next(want[i].1.len());
        fresh += 1;
        want[i].1[j].ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + fresh as u32);
        let s = p.sync(&want).map_err(|e| format!("partial sync (nft path): {e}"))?;
        via_nft.push(s.duration);
    }
    via_nft.sort();
    let (v50, v99) = (percentile(&via_nft, 0.5), percentile(&via_nft, 0.99));
    println!(
        "rkube via nft -f replace one endpoint: p50 {:>7.1} ms  p99 {:>7.1} ms  ({} syncs); netlink is {:.1}x faster (p50)",
        ms(v50),
        ms(v99),
        via_nft.len(),
        v50.as_secs_f64() / r50.as_secs_f64().max(1e-9)
    );
    drop(p);
    drop(ns);

    if !baseline {
        return Ok(());
    }
    let ns = Netns::new(format!("rkpx{pid}xbase")).map_err(|e| e.to_string())?;
    let script = kp_full(n);
    let kp_full_time = nft(&ns, &script).map_err(|e| format!("baseline full load: {e}"))?;
    println!("kube-proxy layout full load: {:>9.1} ms  ({} chains)", ms(kp_full_time), n * (ENDPOINTS + 1) + 3);
    let mut rng = Lcg(7);
    let mut kp: Vec<Duration> = Vec::with_capacity(BASELINE_CHANGES);
    let mut eps_of: Vec<Vec<Ipv4Addr>> =
        (0..n).map(|i| (0..ENDPOINTS).map(|j| endpoint_ip(i * ENDPOINTS + j)).collect()).collect();
    for _ in 0..BASELINE_CHANGES.min(changes) {
        let i = rng.next(n);
        let j = rng.next(ENDPOINTS);
        fresh += 1;
        let stale = eps_of[i][j];
        eps_of[i][j] = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + fresh as u32);
        let tx = kp_change(i, &eps_of[i], stale);
        kp.push(nft(&ns, &tx).map_err(|e| format!("baseline change: {e}"))?);
    }
    kp.sort();
    let (k50, k99) = (percentile(&kp, 0.5), percentile(&kp, 0.99));
    println!(
        "kube-proxy layout one-service change: p50 {:>7.1} ms  p99 {:>7.1} ms  ({} changes)",
        ms(k50),
        ms(k99),
        kp.len()
    );
    println!(
        "ratio (kube-proxy layout / rkube): full {:.1}x, one endpoint change (p50) {:.1}x",
        kp_full_time.as_secs_f64() / full.duration.as_secs_f64().max(1e-9),
        k50.as_secs_f64() / r50.as_secs_f64().max(1e-9)
    );
    Ok(())
}
