//! Prometheus-text counters named after CoreDNS's (`coredns_dns_requests_total`,
//! `coredns_dns_responses_total`, `coredns_dns_request_duration_seconds`,
//! `coredns_cache_*`, `coredns_forward_*`), and a small HTTP listener serving
//! `/metrics`, `/health` and `/ready` (CoreDNS's port 9153 / 8080 / 8181).

use crate::error::{Error, Result};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const TYPES: [&str; 11] = ["A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "SOA", "NS", "MX", "ANY", "other"];
const RCODES: [&str; 8] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other"];
const PROTOS: [&str; 2] = ["udp", "tcp"];
/// CoreDNS: `prometheus.ExponentialBuckets(0.00025, 2, 16)`.
const BUCKETS: usize = 16;

fn type_index(t: RecordType) -> usize {
    match t {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::SRV => 2,
        RecordType::PTR => 3,
        RecordType::TXT => 4,
        RecordType::CNAME => 5,
        RecordType::SOA => 6,
        RecordType::NS => 7,
        RecordType::MX => 8,
        RecordType::ANY => 9,
        _ => 10,
    }
}

fn rcode_index(r: ResponseCode) -> usize {
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

/// The transport a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Udp = 0,
    Tcp = 1,
}

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// The counters of one DNS server.
#[derive(Debug)]
pub struct Metrics {
    server: String,
    requests: [[AtomicU64; TYPES.len()]; PROTOS.len()],
    responses: [AtomicU64; RCODES.len()],
    buckets: [AtomicU64; BUCKETS],
    duration_count: AtomicU64,
    duration_sum_nanos: AtomicU64,
    truncated: AtomicU64,
    pub(crate) cache_hits_success: AtomicU64,
    pub(crate) cache_hits_denial: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) cache_served_stale: AtomicU64,
    pub(crate) cache_entries: AtomicU64,
    pub(crate) upstream_requests: AtomicU64,
    pub(crate) upstream_failures: AtomicU64,
    pub(crate) cluster_answers: AtomicU64,
}

impl Metrics {
    pub(crate) fn new(server: impl Into<String>) -> Metrics {
        Metrics {
            server: server.into(),
            requests: std::array::from_fn(|_| counters()),
            responses: counters(),
            buckets: counters(),
            duration_count: AtomicU64::new(0),
            duration_sum_nanos: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            cache_hits_success: AtomicU64::new(0),
            cache_hits_denial: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_served_stale: AtomicU64::new(0),
            cache_entries: AtomicU64::new(0),
            upstream_requests: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
            cluster_answers: AtomicU64::new(0),
        }
    }

    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// One request answered.
    pub(crate) fn observe(
        &self,
        proto: Proto,
        qtype: RecordType,
        rcode: ResponseCode,
        truncated: bool,
        took: Duration,
    ) {
        Self::inc(&self.requests[proto as usize][type_index(qtype)]);
        Self::inc(&self.responses[rcode_index(rcode)]);
        if truncated {
            Self::inc(&self.truncated);
        }
        let secs = took.as_secs_f64();
        let mut bound = 0.00025;
        for b in &self.buckets {
            if secs <= bound {
                Self::inc(b);
                break;
            }
            bound *= 2.0;
        }
        Self::inc(&self.duration_count);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.duration_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Requests counted so far, all types and transports.
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().flatten().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Requests sent to upstream servers (or to the cluster DNS).
    pub fn upstream_requests(&self) -> u64 {
        self.upstream_requests.load(Ordering::Relaxed)
    }

    /// Cache hits (positive and negative).
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits_success.load(Ordering::Relaxed) + self.cache_hits_denial.load(Ordering::Relaxed)
    }

    pub fn cache_misses(&self) -> u64 {
        self.cache_misses.load(Ordering::Relaxed)
    }

    pub fn cache_served_stale(&self) -> u64 {
        self.cache_served_stale.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of these counters.
    pub fn render(&self) -> String {
        let s = &self.server;
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.\n");
        out.push_str("# TYPE coredns_dns_requests_total counter\n");
        for (p, proto) in PROTOS.iter().enumerate() {
            for (t, ty) in TYPES.iter().enumerate() {
                let v = get(&self.requests[p][t]);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "coredns_dns_requests_total{{server=\"{s}\",proto=\"{proto}\",type=\"{ty}\"}} {v}"
                    );
                }
            }
        }
        out.push_str("# HELP coredns_dns_responses_total Counter of response status codes.\n");
        out.push_str("# TYPE coredns_dns_responses_total counter\n");
        for (r, rc) in RCODES.iter().enumerate() {
            let v = get(&self.responses[r]);
            if v > 0 {
                let _ = writeln!(out, "coredns_dns_responses_total{{server=\"{s}\",rcode=\"{rc}\"}} {v}");
            }
        }
        out.push_str(
            "# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took.\n",
        );
        out.push_str("# TYPE coredns_dns_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        let mut bound = 0.00025;
        for b in &self.buckets {
            cumulative += get(b);
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_bucket{{server=\"{s}\",le=\"{bound}\"}} {cumulative}"
            );
            bound *= 2.0;
        }
        let count = get(&self.duration_count);
        let _ = writeln!(out, "coredns_dns_request_duration_seconds_bucket{{server=\"{s}\",le=\"+Inf\"}} {count}");
        let sum = get(&self.duration_sum_nanos) as f64 / 1e9;
        let _ = writeln!(out, "coredns_dns_request_duration_seconds_sum{{server=\"{s}\"}} {sum}");
        let _ = writeln!(out, "coredns_dns_request_duration_seconds_count{{server=\"{s}\"}} {count}");
        let simple: [(&str, &str, &str, u64); 9] = [
            ("coredns_dns_truncated_responses_total", "counter", "", get(&self.truncated)),
            ("coredns_cache_hits_total", "counter", ",type=\"success\"", get(&self.cache_hits_success)),
            ("coredns_cache_hits_total", "counter", ",type=\"denial\"", get(&self.cache_hits_denial)),
            ("coredns_cache_misses_total", "counter", "", get(&self.cache_misses)),
            ("coredns_cache_served_stale_total", "counter", "", get(&self.cache_served_stale)),
            ("coredns_cache_entries", "gauge", "", get(&self.cache_entries)),
            ("coredns_forward_requests_total", "counter", "", get(&self.upstream_requests)),
            ("coredns_forward_failures_total", "counter", "", get(&self.upstream_failures)),
            ("rkube_dns_cluster_answers_total", "counter", "", get(&self.cluster_answers)),
        ];
        let mut last = "";
        for (name, kind, labels, v) in simple {
            if name != last {
                let _ = writeln!(out, "# TYPE {name} {kind}");
                last = name;
            }
            let _ = writeln!(out, "{name}{{server=\"{s}\"{labels}}} {v}");
        }
        out
    }
}

type RenderFn = Arc<dyn Fn() -> String + Send + Sync>;
type ReadyFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// Serve `GET /metrics` (the text of `render`), `GET /health` (always `OK`) and
/// `GET /ready` (200 once `ready` says so, else 503) on `addr`, e.g. `0.0.0.0:9153`.
/// Returns the bound address and the listener's task.
pub async fn serve_http(addr: SocketAddr, render: RenderFn, ready: ReadyFn) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| Error::io(format!("bind metrics listener {addr}"), e))?;
    let local = listener.local_addr().map_err(|e| Error::io("metrics listener address", e))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let render = render.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                // Read up to the end of the request head (no bodies expected).
                while len < buf.len() {
                    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf[len..])).await {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || buf[..len].windows(2).any(|w| w == b"\n\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]);
                let mut words = head.split_whitespace();
                let method = words.next().unwrap_or("");
                let path = words.next().unwrap_or("").split('?').next().unwrap_or("");
                let (status, ctype, body) = match (method, path) {
                    ("GET" | "HEAD", "/metrics") => ("200 OK", "text/plain; version=0.0.4", render()),
                    ("GET" | "HEAD", "/health") => ("200 OK", "text/plain", "OK".to_string()),
                    ("GET" | "HEAD", "/ready") if ready() => ("200 OK", "text/plain", "OK".to_string()),
                    ("GET" | "HEAD", "/ready") => ("503 Service Unavailable", "text/plain", "not ready".to_string()),
                    _ => ("404 Not Found", "text/plain", "not found".to_string()),
                };
                let length = body.len();
                let body = if method == "HEAD" { String::new() } else { body };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}"
                );
                let _ = stream.write_all(resp.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok((local, task))
}
