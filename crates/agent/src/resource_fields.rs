//! `resourceFieldRef` (downward API env vars and volume files): a
//! container's limits and requests in units of a divisor, as kubelet
//! computes them (`pkg/api/v1/resource/helpers.go`
//! `ExtractContainerResourceValue`: CPU and memory are rounded up; kubelet
//! first fills unset limits with the node's allocatable,
//! `pkg/kubelet/kubelet_resources.go`).

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The node's allocatable resources (what an unset limit reads as).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allocatable {
    pub cpu_cores: f64,
    pub memory_bytes: f64,
    pub ephemeral_storage_bytes: f64,
}

impl Allocatable {
    /// This machine's CPUs and memory (what the agent reports on its Node).
    pub fn of_node() -> Allocatable {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map(|kib| kib * 1024.0)
            .unwrap_or(0.0);
        Allocatable { cpu_cores: cpus, memory_bytes: mem, ephemeral_storage_bytes: 0.0 }
    }
}

/// The value of `resource` (`limits.cpu`, `requests.memory`, ...) of `c` in
/// units of `divisor` (default 1), as text.
pub fn value(c: &Container, resource: &str, divisor: Option<&Quantity>, node: &Allocatable) -> Result<String, String> {
    let divisor = match divisor.map(|d| d.0.as_str()).filter(|d| !d.is_empty()) {
        Some(d) => apimachinery::quantity::parse(d).ok_or_else(|| format!("invalid divisor {d:?}"))?,
        None => 1.0,
    };
    if divisor <= 0.0 {
        return Err(format!("the divisor of {resource} must be positive"));
    }
    let res = c.resources.clone().unwrap_or_default();
    let get = |map: &Option<std::collections::BTreeMap<String, Quantity>>, key: &str| {
        map.as_ref().and_then(|m| m.get(key)).and_then(apimachinery::quantity::value)
    };
    let (kind, amount) = match resource {
        "limits.cpu" => ("cpu", get(&res.limits, "cpu").unwrap_or(node.cpu_cores)),
        "limits.memory" => ("memory", get(&res.limits, "memory").unwrap_or(node.memory_bytes)),
        "limits.ephemeral-storage" => {
            ("memory", get(&res.limits, "ephemeral-storage").unwrap_or(node.ephemeral_storage_bytes))
        }
        "requests.cpu" => ("cpu", get(&res.requests, "cpu").unwrap_or(0.0)),
        "requests.memory" => ("memory", get(&res.requests, "memory").unwrap_or(0.0)),
        "requests.ephemeral-storage" => ("memory", get(&res.requests, "ephemeral-storage").unwrap_or(0.0)),
        other => return Err(format!("unsupported container resource : {other}")),
    };
    let n = match kind {
        // In millicores, as upstream divides MilliValue()s.
        "cpu" => ((amount * 1000.0).round() / (divisor * 1000.0).round()).ceil(),
        _ => (amount.round() / divisor.round().max(1.0)).ceil(),
    };
    Ok(format!("{}", n as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let q = |v: &[(&str, &str)]| Some(v.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect());
        Container {
            name: "c".into(),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                limits: q(limits),
                requests: q(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn values_as_kubelet_computes_them() {
        let node =
            Allocatable { cpu_cores: 2.0, memory_bytes: 4.0 * 1024.0 * 1024.0 * 1024.0, ephemeral_storage_bytes: 0.0 };
        let c = container(&[("cpu", "500m"), ("memory", "64Mi")], &[("cpu", "250m")]);
        let v = |r: &str, d: Option<&str>| value(&c, r, d.map(|d| Quantity(d.into())).as_ref(), &node);
        assert_eq!(v("limits.cpu", None), Ok("1".into()), "0.5 cores rounds up to 1");
        assert_eq!(v("limits.cpu", Some("1m")), Ok("500".into()));
        assert_eq!(v("requests.cpu", Some("1m")), Ok("250".into()));
        assert_eq!(v("limits.memory", None), Ok("67108864".into()));
        assert_eq!(v("limits.memory", Some("1Mi")), Ok("64".into()));
        assert_eq!(v("requests.memory", None), Ok("0".into()));
        let unset = container(&[], &[]);
        let u = |r: &str, d: Option<&str>| value(&unset, r, d.map(|d| Quantity(d.into())).as_ref(), &node);
        assert_eq!(u("limits.cpu", None), Ok("2".into()), "an unset limit is the node's allocatable");
        assert_eq!(u("limits.memory", Some("1Gi")), Ok("4".into()));
        assert_eq!(u("limits.gpu", None), Err("unsupported container resource : limits.gpu".into()));
        assert!(u("limits.cpu", Some("0")).is_err());
    }
}
