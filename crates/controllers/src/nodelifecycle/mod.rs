//! Node lifecycle (upstream `pkg/controller/nodelifecycle`): every
//! `--node-monitor-period` each Node is checked against its Lease in
//! `kube-node-lease`; one unheard for `--node-monitor-grace-period` gets
//! Unknown conditions, its pods are marked not ready (so their endpoints
//! leave the Services), and the node gets the `not-ready`/`unreachable`
//! taints (NoSchedule for the scheduler, NoExecute for [`eviction`]), plus the
//! condition and `unschedulable` (cordon) NoSchedule taints. A node heard from
//! again loses the taints; its agent puts its pods' readiness back.
//!
//! Not done as upstream: no per-zone rate limiting of evictions (upstream
//! slows them down when a large share of a zone is unhealthy).

pub(crate) mod eviction;
pub(crate) mod health;
pub(crate) mod taints;

use crate::events::{Recorder, NORMAL, WARNING};
use crate::{util, Ctx};
use health::Probe;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// `--node-monitor-period`, `--node-monitor-grace-period`, `--node-startup-grace-period`.
#[derive(Clone, Debug)]
pub struct Timing {
    pub period: Duration,
    pub grace: Duration,
    pub startup_grace: Duration,
}

struct Monitor {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    timing: Timing,
    recorder: Recorder,
    probes: HashMap<String, Probe>,
    /// The Ready status last seen per node (for the NodeReady/NodeNotReady events).
    ready: HashMap<String, String>,
}

pub(crate) fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), "node-controller");
    tasks.push(rec_task);
    let mut m = Monitor {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        timing: ctx.config.node_monitor.clone(),
        recorder,
        probes: HashMap::new(),
        ready: HashMap::new(),
    };
    tasks.push(tokio::spawn(async move {
        m.inf.nodes.wait_ready().await;
        m.inf.leases.wait_ready().await;
        m.inf.pods.wait_ready().await;
        let mut tick = tokio::time::interval(m.timing.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            m.pass().await;
        }
    }));
    eviction::start(ctx, tasks);
}

impl Monitor {
    /// `monitorNodeHealth`: one look at every node.
    async fn pass(&mut self) {
        let nodes = self.inf.nodes.list();
        let names: Vec<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
        self.probes.retain(|n, _| names.contains(n));
        self.ready.retain(|n, _| names.contains(n));
        for node in nodes {
            if let Err(e) = self.check(&node).await {
                tracing::debug!(node = ?node.metadata.name, error = %e, "node health check failed; next pass retries");
            }
        }
    }

    async fn check(&mut self, node: &Node) -> Result<(), kube::Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lease = self.inf.leases.get("kube-node-lease", &name);
        let renew = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0.to_string()));
        let now = Instant::now();
        let probe = health::observe(self.probes.get(&name), renew, health::heartbeat(node), now);
        let unheard = now.duration_since(probe.at);
        self.probes.insert(name.clone(), probe);
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = node.clone();
        let t = &self.timing;
        if let Some(conditions) = health::stale_conditions(&node, unheard, t.grace, t.startup_grace, &util::now()) {
            tracing::info!(node = %name, unheard = ?unheard, "node stopped posting its status; conditions set to Unknown");
            let patch = json!({
                "metadata": { "resourceVersion": node.metadata.resource_version },
                "status": { "conditions": conditions },
            });
            node = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let ready = health::ready_status(&node).unwrap_or("Unknown").to_string();
        match self.ready.insert(name.clone(), ready.clone()).as_deref() {
            Some("True") if ready != "True" => {
                self.recorder.event(&node, NORMAL, "NodeNotReady", format!("Node {name} status is now: NodeNotReady"))
            }
            Some(before) if before != "True" && ready == "True" => {
                self.recorder.event(&node, NORMAL, "NodeReady", format!("Node {name} status is now: NodeReady"))
            }
            _ => {}
        }
        if ready != "True" {
            self.mark_pods_not_ready(&name).await;
        }
        let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        if let Some(taints) = taints::reconcile(&current, &taints::wanted(&node), &util::now()) {
            let patch = json!({
                "metadata": { "resourceVersion": node.metadata.resource_version },
                "spec": { "taints": taints },
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        Ok(())
    }

    /// `MarkPodsNotReady`: the Ready condition of every pod on the node goes
    /// False, so the endpoint controllers take them out of the Services.
    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self.inf.pods.list().iter().filter(|p| util::node_name(p) == node) {
            if util::ready_condition(pod).is_none_or(|c| c.status == "False") || util::is_pod_terminal(pod) {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let conditions = with_condition(pod, "Ready", "False", "", "");
            let patch = json!({
                "metadata": { "resourceVersion": pod.metadata.resource_version },
                "status": { "conditions": conditions },
            });
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(p) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), node, "marked not ready: its node is not ready");
                    self.recorder.event(&p, WARNING, "NodeNotReady", "Node is not ready".into());
                }
                Err(e) => tracing::debug!(pod = %name, error = %e, "marking pod not ready failed; next pass retries"),
            }
        }
    }
}

/// The pod's conditions with `type_` set (`podutil.UpdatePodCondition`: the
/// transition time moves only when the status changes; an existing
/// condition keeps its reason and message when none is given).
pub(crate) fn with_condition(pod: &Pod, type_: &str, status: &str, reason: &str, message: &str) -> Vec<Value> {
    let now = serde_json::to_value(util::now()).unwrap_or(Value::Null);
    let mut conds: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| c.iter().filter_map(|c| serde_json::to_value(c).ok()).collect())
        .unwrap_or_default();
    match conds.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(type_)) {
        Some(c) => {
            if c.get("status").and_then(Value::as_str) != Some(status) {
                c["lastTransitionTime"] = now;
            }
            c["status"] = json!(status);
            if !reason.is_empty() {
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
        }
        None => {
            let mut c = json!({ "type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now });
            if !reason.is_empty() {
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
            conds.push(c);
        }
    }
    conds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_change_in_place() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "p" },
            "status": { "conditions": [
                { "type": "Ready", "status": "True", "lastTransitionTime": "2026-12-06T10:00:00Z" },
                { "type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-06T09:00:00Z" },
            ] },
        }))
        .expect("pod");
        let c = with_condition(&pod, "Ready", "False", "", "");
        assert_eq!(c[0]["status"], "False");
        assert_ne!(c[0]["lastTransitionTime"], "2026-12-06T10:00:00Z");
        assert_eq!(c[1]["lastTransitionTime"], "2026-12-06T09:00:00Z");
        let c = with_condition(
            &pod,
            "DisruptionTarget",
            "True",
            "DeletionByTaintManager",
            "Taint manager: deleting due to NoExecute taint",
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c[2]["reason"], "DeletionByTaintManager");
        let c = with_condition(&pod, "Ready", "True", "", "");
        assert_eq!(c[0]["lastTransitionTime"], "2026-12-06T10:00:00Z");
    }
}
