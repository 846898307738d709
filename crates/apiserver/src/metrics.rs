//! Prometheus metrics of the API server (text exposition format).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Request counts by verb and code, and latency by verb.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    pub fn observe(&self, verb: &str, code: u16, elapsed: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((verb.to_string(), code)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l
                .entry(verb.to_string())
                .or_insert_with(|| Histogram { counts: vec![0; BUCKETS.len()], ..Default::default() });
            let secs = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of API requests by verb and HTTP code.\n# TYPE apiserver_request_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((verb, code), n) in r.iter() {
                out.push_str(&format!("apiserver_request_total{{verb=\"{verb}\",code=\"{code}\"}} {n}\n"));
            }
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency by verb.\n# TYPE apiserver_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (verb, h) in l.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    out.push_str(&format!(
                        "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"{b}\"}} {}\n",
                        h.counts[i]
                    ));
                }
                out.push_str(&format!(
                    "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"+Inf\"}} {}\n",
                    h.count
                ));
                out.push_str(&format!("apiserver_request_duration_seconds_sum{{verb=\"{verb}\"}} {}\n", h.sum));
                out.push_str(&format!("apiserver_request_duration_seconds_count{{verb=\"{verb}\"}} {}\n", h.count));
            }
        }
        out
    }
}
