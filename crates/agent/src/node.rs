//! The Node object of this agent: registration, status heartbeats and the
//! Lease in `kube-node-lease` (upstream `pkg/kubelet/kubelet_node_status.go`,
//! `pkg/kubelet/nodelease`).

use crate::AgentConfig;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

/// How often the Lease is renewed: a quarter of its duration, as kubelet
/// (`pkg/kubelet/nodelease`: 10 s for the default 40 s).
pub fn lease_renew_interval(cfg: &AgentConfig) -> Duration {
    (cfg.node_lease_duration / 4).max(Duration::from_millis(100))
}

fn lease_seconds(cfg: &AgentConfig) -> i32 {
    i32::try_from(cfg.node_lease_duration.as_secs()).unwrap_or(i32::MAX).max(1)
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "Linux".into())
}

/// The status the agent reports (Ready while it runs).
pub fn status(cfg: &AgentConfig, ready: bool) -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = format!("{}Ki", memory_bytes() / 1024);
    let t = now();
    let cond = |type_: &str, status: &str, reason: &str, message: &str| json!({ "type": type_, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": t, "lastTransitionTime": t });
    json!({
        "capacity": { "cpu": cpus.to_string(), "memory": mem, "pods": "110", "ephemeral-storage": "0" },
        "allocatable": { "cpu": cpus.to_string(), "memory": mem, "pods": "110", "ephemeral-storage": "0" },
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            if ready { cond("Ready", "True", "KubeletReady", "kubelet is posting ready status") } else { cond("Ready", "False", "KubeletNotReady", "node agent is starting") },
        ],
        "addresses": [
            { "type": "InternalIP", "address": cfg.node_ip.to_string() },
            { "type": "Hostname", "address": cfg.node_name },
        ],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": cfg.kubelet_port } },
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": kernel(), "osImage": os_image(),
            "containerRuntimeVersion": format!("rkube://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": "v1.33.0", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH },
        },
    })
}

/// Create the Node (or take it over after a restart) and report it Ready.
pub async fn register(client: &kube::Client, cfg: &AgentConfig) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let labels = json!({
        "kubernetes.io/hostname": cfg.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH },
    });
    // The API server pins a self-signed serving certificate by this annotation.
    let annotations = match &cfg.serving_cert_pin {
        Some(pin) => json!({ "rkube.io/serving-cert-sha256": pin }),
        None => json!({ "rkube.io/serving-cert-sha256": null }),
    };
    if api.get_opt(&cfg.node_name).await?.is_none() {
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": cfg.node_name, "labels": labels, "annotations": cfg.serving_cert_pin.as_ref().map(|p| json!({ "rkube.io/serving-cert-sha256": p })) },
        }))
        .map_err(kube::Error::SerdeError)?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    } else {
        let patch = json!({ "metadata": { "labels": labels, "annotations": annotations } });
        api.patch(&cfg.node_name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    report(client, cfg, true).await
}

/// Write the node status.
pub async fn report(client: &kube::Client, cfg: &AgentConfig, ready: bool) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    api.patch_status(&cfg.node_name, &PatchParams::default(), &Patch::Merge(json!({ "status": status(cfg, ready) })))
        .await?;
    Ok(())
}

/// Renew the node's Lease (create it first if needed).
pub async fn renew_lease(client: &kube::Client, cfg: &AgentConfig) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(jiff::Timestamp::now());
    match api.get_opt(&cfg.node_name).await? {
        None => {
            let lease = Lease {
                metadata: kube::api::ObjectMeta { name: Some(cfg.node_name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.node_name.clone()),
                    lease_duration_seconds: Some(lease_seconds(cfg)),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(_) => {
            let patch = json!({ "spec": { "holderIdentity": cfg.node_name, "leaseDurationSeconds": lease_seconds(cfg), "renewTime": now } });
            api.patch(&cfg.node_name, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ())
        }
    }
}

/// The podCIDR the node IPAM controller gave this node, once it has one.
pub async fn pod_cidr(client: &kube::Client, cfg: &AgentConfig) -> Result<Option<ipnet::Ipv4Net>, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let node = api.get(&cfg.node_name).await?;
    Ok(node.spec.and_then(|s| s.pod_cidr).and_then(|c| c.parse().ok()))
}

/// A Warning Event about this Node (what `kubectl describe node` shows).
pub async fn warn_event(client: &kube::Client, cfg: &AgentConfig, reason: &str, message: &str) {
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let now = now();
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": { "generateName": format!("{}.", cfg.node_name), "namespace": "default" },
        "involvedObject": { "kind": "Node", "name": cfg.node_name, "uid": cfg.node_name, "apiVersion": "v1" },
        "reason": reason, "message": message, "type": "Warning",
        "source": { "component": "rkube-agent", "host": cfg.node_name },
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let Ok(ev) = serde_json::from_value(ev) else { return };
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::warn!(error = %e, reason, "could not record node event");
    }
}
