//! Process-wide proxy metrics in the Prometheus text format. Names follow upstream's
//! `pkg/proxy/metrics` (subsystem `kubeproxy`), with the full/partial split of
//! `sync_proxy_rules_duration_seconds` as a `sync` label.

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::SyncStats;

/// Upstream: `ExponentialBuckets(0.001, 2, 15)`.
const SYNC_BUCKETS: [f64; 15] =
    [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384];
/// Finer than upstream at the low end: rkube programs a change in milliseconds.
const PROGRAMMING_BUCKETS: [f64; 16] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug)]
struct Metrics {
    sync_full: Histogram,
    sync_partial: Histogram,
    programming: Histogram,
    failures: u64,
    services: usize,
    endpoints: usize,
    rules: usize,
    chains: usize,
    last_sync_unix: f64,
    health_check_listeners: usize,
    /// Health check answers: 200 and 503.
    health_check_responses: [u64; 2],
}

fn registry() -> &'static Mutex<Metrics> {
    static M: OnceLock<Mutex<Metrics>> = OnceLock::new();
    M.get_or_init(|| {
        Mutex::new(Metrics {
            sync_full: Histogram::new(&SYNC_BUCKETS),
            sync_partial: Histogram::new(&SYNC_BUCKETS),
            programming: Histogram::new(&PROGRAMMING_BUCKETS),
            failures: 0,
            services: 0,
            endpoints: 0,
            rules: 0,
            chains: 0,
            last_sync_unix: 0.0,
            health_check_listeners: 0,
            health_check_responses: [0, 0],
        })
    })
}

fn with<T>(f: impl FnOnce(&mut Metrics) -> T) -> T {
    let mut m = registry().lock().unwrap_or_else(|e| e.into_inner());
    f(&mut m)
}

pub(crate) fn record_sync(full: bool, duration: Duration, ok: Option<&SyncStats>) {
    with(|m| {
        let h = if full { &mut m.sync_full } else { &mut m.sync_partial };
        h.observe(duration.as_secs_f64());
        match ok {
            Some(s) => {
                m.services = s.services;
                m.endpoints = s.endpoints;
                m.rules = s.rules;
                m.chains = s.chains;
                m.last_sync_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            }
            None => m.failures += 1,
        }
    });
}

/// Records one endpoint change's network programming latency (trigger time to programmed).
pub fn observe_network_programming(latency: Duration) {
    with(|m| m.programming.observe(latency.as_secs_f64()));
}

/// Records the number of open health check node ports.
pub(crate) fn set_health_check_listeners(n: usize) {
    with(|m| m.health_check_listeners = n);
}

/// Records one health check answer (200 when `ok`, else 503).
pub(crate) fn record_health_check_response(ok: bool) {
    with(|m| m.health_check_responses[usize::from(!ok)] += 1);
}

/// All proxy metrics, Prometheus text exposition format.
pub fn metrics() -> String {
    with(|m| {
        let mut out = String::new();
        let name = "kubeproxy_sync_proxy_rules_duration_seconds";
        let _ = writeln!(out, "# HELP {name} SyncProxyRules latency in seconds, by full or partial sync");
        let _ = writeln!(out, "# TYPE {name} histogram");
        m.sync_full.render(&mut out, name, "sync=\"full\"");
        m.sync_partial.render(&mut out, name, "sync=\"partial\"");
        let name = "kubeproxy_network_programming_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} In Cluster Network Programming Latency in seconds (EndpointSlice last-change-trigger-time to rules programmed)"
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        m.programming.render(&mut out, name, "");
        let gauges: [(&str, &str, f64); 6] = [
            ("kubeproxy_sync_proxy_rules_services", "Service ports programmed", m.services as f64),
            ("kubeproxy_sync_proxy_rules_endpoints", "Endpoints programmed", m.endpoints as f64),
            ("kubeproxy_sync_proxy_rules_nftables_rules", "Rules in the proxy's nftables table", m.rules as f64),
            ("kubeproxy_sync_proxy_rules_nftables_chains", "Chains in the proxy's nftables table", m.chains as f64),
            ("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "The last time rules were synced", m.last_sync_unix),
            (
                "kubeproxy_service_health_check_listeners",
                "healthCheckNodePorts this proxy listens on",
                m.health_check_listeners as f64,
            ),
        ];
        for (n, help, v) in gauges {
            let _ = writeln!(out, "# HELP {n} {help}\n# TYPE {n} gauge\n{n} {v}");
        }
        let n = "kubeproxy_sync_proxy_rules_nftables_sync_failures_total";
        let _ = writeln!(out, "# HELP {n} nftables sync failures\n# TYPE {n} counter\n{n} {}", m.failures);
        let n = "kubeproxy_service_health_check_responses_total";
        let _ = writeln!(out, "# HELP {n} Service health check answers by HTTP status\n# TYPE {n} counter");
        let [ok, unavailable] = m.health_check_responses;
        let _ = writeln!(out, "{n}{{code=\"200\"}} {ok}\n{n}{{code=\"503\"}} {unavailable}");
        out
    })
}
