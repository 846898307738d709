//! Per-controller counters in the Prometheus text format. Names follow
//! upstream's work-queue metrics (`workqueue_adds_total`, `workqueue_depth`,
//! `workqueue_retries_total`, label `name`) plus sync counters.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub struct ControllerMetrics {
    pub name: &'static str,
    syncs: AtomicU64,
    errors: AtomicU64,
    adds: AtomicU64,
    retries: AtomicU64,
    depth: AtomicU64,
}

impl ControllerMetrics {
    pub fn add(&self) {
        self.adds.fetch_add(1, Ordering::Relaxed);
    }
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn set_depth(&self, n: usize) {
        self.depth.store(n as u64, Ordering::Relaxed);
    }
    pub fn sync(&self, ok: bool) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn registry() -> &'static Mutex<Vec<Arc<ControllerMetrics>>> {
    static R: OnceLock<Mutex<Vec<Arc<ControllerMetrics>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

/// The counters of controller `name` (shared if registered twice).
pub fn register(name: &'static str) -> Arc<ControllerMetrics> {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = r.iter().find(|m| m.name == name) {
        return m.clone();
    }
    let m = Arc::new(ControllerMetrics {
        name,
        syncs: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        adds: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        depth: AtomicU64::new(0),
    });
    r.push(m.clone());
    m
}

/// Every controller's counters, Prometheus text exposition format.
pub fn render() -> String {
    let r = registry().lock().unwrap_or_else(|e| e.into_inner());
    let mut ms: Vec<&Arc<ControllerMetrics>> = r.iter().collect();
    ms.sort_by_key(|m| m.name);
    let mut out = String::new();
    type Getter = fn(&ControllerMetrics) -> u64;
    let families: [(&str, &str, &str, Getter); 5] = [
        ("rkube_controller_syncs_total", "counter", "Reconciliations run, by controller.", |m| {
            m.syncs.load(Ordering::Relaxed)
        }),
        ("rkube_controller_sync_errors_total", "counter", "Reconciliations that failed (and were retried).", |m| {
            m.errors.load(Ordering::Relaxed)
        }),
        ("workqueue_adds_total", "counter", "Total number of adds handled by workqueue.", |m| {
            m.adds.load(Ordering::Relaxed)
        }),
        ("workqueue_retries_total", "counter", "Total number of retries handled by workqueue.", |m| {
            m.retries.load(Ordering::Relaxed)
        }),
        ("workqueue_depth", "gauge", "Current depth of workqueue.", |m| m.depth.load(Ordering::Relaxed)),
    ];
    for (name, kind, help, get) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let label = if name.starts_with("workqueue") { "name" } else { "controller" };
        for m in &ms {
            let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {}", m.name, get(m));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_registered_controllers() {
        let m = super::register("metrics-test");
        m.sync(true);
        m.sync(false);
        m.add();
        let text = super::render();
        assert!(text.contains("rkube_controller_syncs_total{controller=\"metrics-test\"} 2"), "{text}");
        assert!(text.contains("rkube_controller_sync_errors_total{controller=\"metrics-test\"} 1"), "{text}");
        assert!(text.contains("workqueue_adds_total{name=\"metrics-test\"} 1"), "{text}");
        assert!(text.contains("# TYPE workqueue_depth gauge"), "{text}");
    }
}
