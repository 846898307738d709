//! The UDP and TCP listeners, and the two servers built on them:
//! [`ClusterDnsServer`] and [`NodeLocalCache`].

use crate::cache::{CacheConfig, DnsCache};
use crate::error::{Error, Result};
use crate::metrics::{serve_http, Metrics, Proto};
use crate::resolver::{Handled, Resolver};
use crate::upstream::{resolv_conf_nameservers, Upstream};
use crate::view::{ClusterView, Zone};
use crate::wire::{encode, parse_request, udp_limit, Parsed, TCP_LIMIT};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// How long an idle TCP connection is kept (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// The default wait for one upstream server.
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Configuration of the cluster DNS.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Addresses to serve on, each over UDP and TCP (port 0: one free port, the
    /// same for both).
    pub listen: Vec<SocketAddr>,
    /// The cluster domain, `cluster.local` by default.
    pub zone: String,
    /// TTL of the records in the zone, 5 s by default (CoreDNS).
    pub ttl: u32,
    /// Where names outside the zone go; by default the node's `/etc/resolv.conf`.
    pub upstream: Vec<SocketAddr>,
    /// The wait for one upstream server before trying the next.
    pub upstream_timeout: Duration,
    /// The cache for forwarded names (CoreDNS's default Corefile: `cache 30`);
    /// `None` forwards every query.
    pub cache: Option<CacheConfig>,
    /// Serve `/metrics`, `/health` and `/ready` over HTTP here (production: `:9153`).
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53))],
            zone: crate::DEFAULT_ZONE.to_string(),
            ttl: crate::DEFAULT_TTL,
            upstream: resolv_conf_nameservers("/etc/resolv.conf"),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            cache: Some(CacheConfig::default()),
            metrics_listen: None,
        }
    }
}

/// Configuration of the node-local DNS cache.
#[derive(Clone, Debug)]
pub struct NodeLocalConfig {
    /// Production: `169.254.20.10:53` (see [`crate::link_local_setup`]).
    pub listen: SocketAddr,
    pub cluster_zone: String,
    /// TTL of cluster records answered from `cluster_view`.
    pub ttl: u32,
    /// Answer the cluster zone (and reverse names of cluster addresses) from this
    /// node's own watch-fed view; without one they are forwarded to `cluster_dns`.
    pub cluster_view: Option<ClusterView>,
    /// The cluster DNS (kube-dns Service, e.g. `10.96.0.10:53`), asked over TCP.
    pub cluster_dns: Vec<SocketAddr>,
    /// Where other names go; by default the node's `/etc/resolv.conf`.
    pub upstream: Vec<SocketAddr>,
    pub upstream_timeout: Duration,
    pub cache: CacheConfig,
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for NodeLocalConfig {
    fn default() -> Self {
        NodeLocalConfig {
            listen: SocketAddr::from((crate::NODE_LOCAL_DNS_ADDR, 53)),
            cluster_zone: crate::DEFAULT_ZONE.to_string(),
            ttl: crate::DEFAULT_TTL,
            cluster_view: None,
            cluster_dns: Vec::new(),
            upstream: resolv_conf_nameservers("/etc/resolv.conf"),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            cache: CacheConfig::default(),
            metrics_listen: None,
        }
    }
}

/// Bound sockets and their tasks; the tasks end when this is dropped.
struct Listeners {
    addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    // With port 0, UDP picks a port and TCP must get the same one; retry if taken.
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr).await.map_err(|e| Error::io(format!("bind udp {addr}"), e))?;
        let bound = udp.local_addr().map_err(|e| Error::io("udp local address", e))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(Error::io(format!("bind tcp {bound}"), e)),
        }
    }
    Err(Error::Config(format!("no port free for both UDP and TCP on {}", addr.ip())))
}

async fn listen(addrs: &[SocketAddr], resolver: Arc<Resolver>) -> Result<Listeners> {
    let mut out = Listeners { addrs: Vec::new(), tasks: Vec::new() };
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    for addr in addrs {
        let (udp, tcp) = bind_pair(*addr).await?;
        out.addrs.push(udp.local_addr().map_err(|e| Error::io("udp local address", e))?);
        let udp = Arc::new(udp);
        for _ in 0..workers {
            out.tasks.push(tokio::spawn(serve_udp(udp.clone(), resolver.clone())));
        }
        out.tasks.push(tokio::spawn(serve_tcp(tcp, resolver.clone())));
    }
    Ok(out)
}

fn rcode_of(bytes: &[u8]) -> ResponseCode {
    ResponseCode::from(0, bytes.get(3).map(|b| b & 0x0f).unwrap_or(0))
}

fn qtype_of(msg: &Message) -> RecordType {
    msg.queries.first().map(|q| q.query_type()).unwrap_or(RecordType::NULL)
}

fn finish(
    metrics: &Metrics,
    proto: Proto,
    qtype: RecordType,
    resp: &Message,
    limit: usize,
    start: Instant,
) -> Option<Vec<u8>> {
    let bytes = encode(resp, limit)?;
    let truncated = bytes.get(2).is_some_and(|b| b & 0x02 != 0);
    metrics.observe(proto, qtype, resp.response_code, truncated, start.elapsed());
    Some(bytes)
}

async fn serve_udp(sock: Arc<UdpSocket>, resolver: Arc<Resolver>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let start = Instant::now();
        match parse_request(&buf[..n]) {
            Parsed::Drop => {}
            Parsed::Reply(bytes) => {
                resolver.metrics.observe(Proto::Udp, RecordType::NULL, rcode_of(&bytes), false, start.elapsed());
                let _ = sock.send_to(&bytes, peer).await;
            }
            Parsed::Query(req) => {
                let limit = udp_limit(&req);
                let qtype = qtype_of(&req);
                match resolver.handle(*req) {
                    Handled::Ready(resp) => {
                        if let Some(bytes) = finish(&resolver.metrics, Proto::Udp, qtype, &resp, limit, start) {
                            let _ = sock.send_to(&bytes, peer).await;
                        }
                    }
                    Handled::Pending(fut) => {
                        let sock = sock.clone();
                        let resolver = resolver.clone();
                        tokio::spawn(async move {
                            let resp = fut.await;
                            if let Some(bytes) = finish(&resolver.metrics, Proto::Udp, qtype, &resp, limit, start) {
                                let _ = sock.send_to(&bytes, peer).await;
                            }
                        });
                    }
                }
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_tcp_conn(stream, resolver.clone()));
            }
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn serve_tcp_conn(mut stream: TcpStream, resolver: Arc<Resolver>) {
    let _ = stream.set_nodelay(true);
    loop {
        let mut lenbuf = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut lenbuf)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(lenbuf))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut body)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let start = Instant::now();
        let bytes = match parse_request(&body) {
            Parsed::Drop => return,
            Parsed::Reply(bytes) => {
                resolver.metrics.observe(Proto::Tcp, RecordType::NULL, rcode_of(&bytes), false, start.elapsed());
                bytes
            }
            Parsed::Query(req) => {
                let qtype = qtype_of(&req);
                let resp = match resolver.handle(*req) {
                    Handled::Ready(resp) => resp,
                    Handled::Pending(fut) => fut.await,
                };
                match finish(&resolver.metrics, Proto::Tcp, qtype, &resp, TCP_LIMIT, start) {
                    Some(b) => b,
                    None => return,
                }
            }
        };
        let Ok(len) = u16::try_from(bytes.len()) else { return };
        let mut frame = Vec::with_capacity(bytes.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&bytes);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn start_http(
    addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    view: Option<ClusterView>,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>> {
    let Some(addr) = addr else { return Ok(None) };
    let render = Arc::new(move || metrics.render());
    let ready = Arc::new(move || view.as_ref().is_none_or(ClusterView::is_synced));
    Ok(Some(serve_http(addr, render, ready).await?))
}

/// Drop upstreams that are this server itself (a forwarding loop).
fn without_self(upstream: Vec<SocketAddr>, listen: &[SocketAddr]) -> Vec<SocketAddr> {
    upstream.into_iter().filter(|u| !listen.contains(u)).collect()
}

/// The cluster DNS: the cluster zone from a [`ClusterView`], other names forwarded
/// upstream (and cached). Stops when dropped.
pub struct ClusterDnsServer {
    resolver: Arc<Resolver>,
    listeners: Listeners,
    http: Option<(SocketAddr, JoinHandle<()>)>,
}

impl ClusterDnsServer {
    pub async fn start(cfg: DnsConfig, view: ClusterView) -> Result<ClusterDnsServer> {
        let zone = Zone::new(&cfg.zone, cfg.ttl)?;
        if cfg.listen.is_empty() {
            return Err(Error::Config("no listen address".into()));
        }
        let metrics = Arc::new(Metrics::new("cluster-dns"));
        let resolver = Arc::new(Resolver {
            zone,
            view: Some(view.clone()),
            cluster_dns: None,
            upstream: Upstream::new(without_self(cfg.upstream, &cfg.listen), cfg.upstream_timeout, false),
            cache: cfg.cache.map(DnsCache::new),
            metrics: metrics.clone(),
        });
        let listeners = listen(&cfg.listen, resolver.clone()).await?;
        let http = start_http(cfg.metrics_listen, metrics, Some(view)).await?;
        tracing::info!(addrs = ?listeners.addrs, zone = %resolver.zone.name(), "cluster DNS serving");
        Ok(ClusterDnsServer { resolver, listeners, http })
    }

    /// The bound addresses (UDP and TCP share each).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.listeners.addrs
    }

    /// The bound address of the HTTP metrics listener, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(a, _)| *a)
    }

    /// The Prometheus text of this server's counters.
    pub fn metrics(&self) -> String {
        self.resolver.metrics.render()
    }

    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.resolver.metrics.clone()
    }

    pub fn view(&self) -> Option<&ClusterView> {
        self.resolver.view.as_ref()
    }
}

impl Drop for ClusterDnsServer {
    fn drop(&mut self) {
        if let Some((_, t)) = &self.http {
            t.abort();
        }
    }
}

/// The node-local DNS cache. Stops when dropped.
pub struct NodeLocalCache {
    resolver: Arc<Resolver>,
    listeners: Listeners,
    http: Option<(SocketAddr, JoinHandle<()>)>,
}

impl NodeLocalCache {
    pub async fn start(cfg: NodeLocalConfig) -> Result<NodeLocalCache> {
        let zone = Zone::new(&cfg.cluster_zone, cfg.ttl)?;
        let listen_addrs = [cfg.listen];
        let cluster_dns = match &cfg.cluster_view {
            Some(_) => None,
            None if cfg.cluster_dns.is_empty() => {
                return Err(Error::Config("node-local cache needs a cluster view or a cluster DNS address".into()))
            }
            None => Some(Upstream::new(without_self(cfg.cluster_dns, &listen_addrs), cfg.upstream_timeout, true)),
        };
        let metrics = Arc::new(Metrics::new("node-local-dns"));
        let resolver = Arc::new(Resolver {
            zone,
            view: cfg.cluster_view.clone(),
            cluster_dns,
            upstream: Upstream::new(without_self(cfg.upstream, &listen_addrs), cfg.upstream_timeout, false),
            cache: Some(DnsCache::new(cfg.cache)),
            metrics: metrics.clone(),
        });
        if resolver.upstream.is_empty() {
            tracing::warn!("node-local cache has no upstream servers: names outside the cluster fail");
        }
        let listeners = listen(&listen_addrs, resolver.clone()).await?;
        let http = start_http(cfg.metrics_listen, metrics, cfg.cluster_view).await?;
        tracing::info!(addrs = ?listeners.addrs, "node-local DNS cache serving");
        Ok(NodeLocalCache { resolver, listeners, http })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listeners.addrs.first().copied().unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(a, _)| *a)
    }

    pub fn metrics(&self) -> String {
        self.resolver.metrics.render()
    }

    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.resolver.metrics.clone()
    }
}

impl Drop for NodeLocalCache {
    fn drop(&mut self) {
        if let Some((_, t)) = &self.http {
            t.abort();
        }
    }
}
