//! Service health checks (upstream `pkg/proxy/healthcheck/service_health.go`): every
//! LoadBalancer Service with `externalTrafficPolicy: Local` gets an HTTP server on its
//! `healthCheckNodePort`, on all of the node's addresses. Any request answers 200 when this
//! node has a local ready endpoint of the Service and 503 when it has none, so an external
//! load balancer only sends traffic to nodes that can keep the client IP.
//!
//! [`health_checks`] computes what should be served from the desired state (pure);
//! [`HealthServer::sync`] opens and closes the listeners to match, like upstream's
//! `SyncServices` + `SyncEndpoints`. A listener is created inside `ProxyConfig::netns` when
//! one is set (a socket belongs to the namespace it was created in) and then served by tokio.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::exec;
use crate::metrics;
use crate::proxier::DesiredPort;

/// How long a client may take to send its request head, and we to write the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read (Go's default `MaxHeaderBytes` is 1 MiB; a health checker
/// sends a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;

/// A Service's namespace and name (upstream `types.NamespacedName`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What one Service's health check serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// `spec.healthCheckNodePort`.
    pub port: u16,
    /// Ready endpoints on this node, counted by IP across the Service's ports (upstream
    /// `EndpointsMap.LocalReadyEndpoints`: 10.0.0.1:80 and 10.0.0.1:443 are one endpoint;
    /// serving-but-terminating endpoints do not count).
    pub local_endpoints: usize,
}

/// The health checks `desired` asks for: Services whose ports carry a
/// `health_check_node_port` (upstream `ServicePortMap.HealthCheckNodePorts`).
pub fn health_checks<D: Borrow<DesiredPort>>(desired: &[D]) -> BTreeMap<ServiceName, HealthCheck> {
    let mut local: HashMap<ServiceName, HashSet<Ipv4Addr>> = HashMap::new();
    let mut out: BTreeMap<ServiceName, HealthCheck> = BTreeMap::new();
    for d in desired {
        let (info, eps) = d.borrow();
        let Some(port) = info.health_check_node_port else { continue };
        let name = ServiceName { namespace: info.namespace.clone(), name: info.name.clone() };
        let ips = local.entry(name.clone()).or_default();
        ips.extend(eps.iter().filter(|e| e.is_local && e.ready).map(|e| e.ip));
        out.entry(name).or_insert(HealthCheck { port, local_endpoints: 0 });
    }
    for (name, check) in out.iter_mut() {
        check.local_endpoints = local.get(name).map(HashSet::len).unwrap_or(0);
    }
    out
}

/// The answer's body, byte for byte upstream's (`hcHandler.ServeHTTP`: a tab-indented
/// JSON object without a trailing newline).
pub fn response_body(name: &ServiceName, local_endpoints: usize, proxy_healthy: bool) -> String {
    format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {local_endpoints},\n\t\"serviceProxyHealthy\": {proxy_healthy}\n}}",
        json_string(&name.namespace),
        json_string(&name.name)
    )
}

/// Go's `%q` for the characters a namespace or name can hold (DNS labels): quoted, with
/// `"` and `\` escaped for safety.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The whole HTTP/1.1 answer: 200 with local endpoints and a healthy proxy, else 503;
/// `Content-Type: application/json` and `X-Content-Type-Options: nosniff` as upstream.
/// One request per connection (`Connection: close`); no body for HEAD.
pub fn response(name: &ServiceName, local_endpoints: usize, proxy_healthy: bool, head: bool) -> Vec<u8> {
    let ok = local_endpoints != 0 && proxy_healthy;
    let status = if ok { "200 OK" } else { "503 Service Unavailable" };
    let body = response_body(name, local_endpoints, proxy_healthy);
    let date = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&jiff::Timestamp::now())
        .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nDate: {date}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Why a health check listener could not be opened (retried by the next sync).
#[derive(Debug, thiserror::Error)]
pub enum HealthCheckError {
    #[error("health check of {service} on port {port}: {source}")]
    Listen {
        service: ServiceName,
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("health checks need a tokio runtime: {0}")]
    NoRuntime(String),
}

/// One open listener; dropping it closes the port (the accept task and its connections
/// are aborted).
struct Instance {
    port: u16,
    local_endpoints: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The health check listeners of one proxy (upstream `ServiceHealthServer`).
pub struct HealthServer {
    netns: Option<PathBuf>,
    /// Upstream's `serviceProxyHealthy`: here, whether the last sync succeeded.
    healthy: Arc<AtomicBool>,
    instances: HashMap<ServiceName, Instance>,
}

impl HealthServer {
    /// No listener until the first [`HealthServer::sync`]; sockets are created in `netns`
    /// (a `/var/run/netns/<name>` file) when given.
    pub fn new(netns: Option<PathBuf>) -> HealthServer {
        HealthServer { netns, healthy: Arc::new(AtomicBool::new(true)), instances: HashMap::new() }
    }

    /// Sets the `serviceProxyHealthy` answer (false: every health check says 503).
    pub fn set_proxy_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// The Services and ports listened on now.
    pub fn listening(&self) -> BTreeMap<ServiceName, u16> {
        self.instances.iter().map(|(n, i)| (n.clone(), i.port)).collect()
    }

    /// Makes the listeners match `checks`: closes those of Services gone or moved to
    /// another port, opens the new ones, and updates every endpoint count. Must run inside
    /// a tokio runtime. A listener that cannot be opened is reported and tried again by
    /// the next call (upstream `SyncServices` does the same).
    pub fn sync(&mut self, checks: &BTreeMap<ServiceName, HealthCheck>) -> Vec<HealthCheckError> {
        self.instances.retain(|name, inst| {
            let keep = checks.get(name).is_some_and(|c| c.port == inst.port);
            if !keep {
                tracing::info!(service = %name, port = inst.port, "closing health check");
            }
            keep
        });
        let mut errors = Vec::new();
        for (name, check) in checks {
            if let Some(inst) = self.instances.get(name) {
                inst.local_endpoints.store(check.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match self.open(name, check) {
                Ok(inst) => {
                    tracing::info!(service = %name, port = check.port, "opened health check");
                    self.instances.insert(name.clone(), inst);
                }
                Err(e) => errors.push(e),
            }
        }
        metrics::set_health_check_listeners(self.instances.len());
        errors
    }

    fn open(&self, name: &ServiceName, check: &HealthCheck) -> Result<Instance, HealthCheckError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| HealthCheckError::NoRuntime(e.to_string()))?;
        let listen_err = |source| HealthCheckError::Listen { service: name.clone(), port: check.port, source };
        let std_listener = bind(self.netns.as_deref(), check.port).map_err(listen_err)?;
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(std_listener).map_err(listen_err)?
        };
        let local_endpoints = Arc::new(AtomicUsize::new(check.local_endpoints));
        let state = Served {
            name: Arc::new(name.clone()),
            local_endpoints: local_endpoints.clone(),
            healthy: self.healthy.clone(),
        };
        let task = runtime.spawn(accept_loop(listener, state));
        Ok(Instance { port: check.port, local_endpoints, task })
    }
}

/// Binds `0.0.0.0:port` (upstream listens on every address unless `--nodeport-addresses`)
/// in `netns`. std sets `SO_REUSEADDR`, as Go does, so a port closed a moment ago can be
/// opened again despite connections in TIME_WAIT.
fn bind(netns: Option<&Path>, port: u16) -> io::Result<StdListener> {
    exec::in_netns(netns, || {
        let l = StdListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
}

/// What a listener's connections read when they answer.
#[derive(Clone)]
struct Served {
    name: Arc<ServiceName>,
    local_endpoints: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
}

/// Accepts connections until aborted; the connections live in a `JoinSet`, so aborting
/// this task ends them too.
async fn accept_loop(listener: TcpListener, state: Served) {
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve(stream, state.clone()));
                }
                Err(e) => {
                    // E.g. EMFILE: wait instead of spinning.
                    tracing::warn!(service = %state.name, error = %e, "health check accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Answers one request: any method, any path (upstream's handler looks at neither).
async fn serve(mut stream: TcpStream, state: Served) {
    let method = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(m)) => m,
        _ => return,
    };
    let count = state.local_endpoints.load(Ordering::Relaxed);
    let healthy = state.healthy.load(Ordering::Relaxed);
    metrics::record_health_check_response(count != 0 && healthy);
    let answer = response(&state.name, count, healthy, method == "HEAD");
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
}

/// Reads the request head (up to the blank line) and returns its method.
async fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before the request head"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if head_complete(&buf) {
            break;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
        }
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let method = String::from_utf8_lossy(line).split_whitespace().next().unwrap_or_default().to_string();
    Ok(method)
}

fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, ServicePortInfo};

    fn name() -> ServiceName {
        ServiceName { namespace: "default".into(), name: "web".into() }
    }

    #[test]
    fn body_is_upstreams() {
        assert_eq!(
            response_body(&name(), 2, true),
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        );
    }

    #[test]
    fn status_follows_local_endpoints_and_proxy_health() {
        let text = |n, h, head| String::from_utf8_lossy(&response(&name(), n, h, head)).into_owned();
        let ok = text(1, true, false);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\r\nContent-Type: application/json\r\n"), "{ok}");
        assert!(ok.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{ok}");
        assert!(ok.ends_with("\"serviceProxyHealthy\": true\n}"), "{ok}");
        assert!(text(0, true, false).starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text(3, false, false).starts_with("HTTP/1.1 503 "), "an unhealthy proxy says 503");
        let head = text(1, true, true);
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: "), "HEAD: no body: {head}");
    }

    #[test]
    fn checks_count_local_ready_endpoint_ips_per_service() {
        let port = |p: &str, hc: Option<u16>| ServicePortInfo {
            namespace: "default".into(),
            name: "web".into(),
            port_name: p.into(),
            health_check_node_port: hc,
            ..ServicePortInfo::default()
        };
        let ep = |last: u8, port: u16, local: bool, ready: bool| Endpoint {
            ready,
            ..Endpoint::ready(Ipv4Addr::new(10, 244, 0, last), port, None, local)
        };
        let other = ServicePortInfo { name: "plain".into(), ..port("", None) };
        let desired: Vec<DesiredPort> = vec![
            (
                port("http", Some(32000)),
                vec![ep(2, 8080, true, true), ep(3, 8080, false, true), ep(4, 8080, true, false)],
            ),
            (port("https", Some(32000)), vec![ep(2, 8443, true, true), ep(5, 8443, true, true)]),
            (other, vec![ep(6, 80, true, true)]),
        ];
        let checks = health_checks(&desired);
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert_eq!(checks.get(&name()), Some(&HealthCheck { port: 32000, local_endpoints: 2 }));
    }

    #[test]
    fn head_ends_at_the_blank_line() {
        assert!(head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(head_complete(b"GET / HTTP/1.0\n\n"));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    }
}
