//! Whether a node is still heard from, and the conditions it gets when it is
//! not (upstream `pkg/controller/nodelifecycle/node_lifecycle_controller.go`,
//! `tryUpdateNodeHealth`). Time is the controller's own: a node is fresh when
//! its Lease `renewTime` or its Ready heartbeat *changed* recently as seen
//! here, so clock skew between nodes does not matter.

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::{Duration, Instant};

/// The condition types the controller sets to Unknown for a lost node.
pub const CONDITION_TYPES: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What was last seen of a node, and when it last changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub lease_renew: Option<String>,
    pub heartbeat: Option<String>,
    /// When a change of either was last observed (the probe timestamp).
    pub at: Instant,
}

/// The probe after seeing `lease_renew` and `heartbeat` at `now`: a node seen
/// for the first time counts as just heard from (upstream assumes "now" for a
/// node without a saved timestamp).
pub fn observe(saved: Option<&Probe>, lease_renew: Option<String>, heartbeat: Option<String>, now: Instant) -> Probe {
    match saved {
        Some(p) if p.lease_renew == lease_renew && p.heartbeat == heartbeat => p.clone(),
        _ => Probe { lease_renew, heartbeat, at: now },
    }
}

/// The status of the node's Ready condition (`None` if never posted).
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The Ready condition's heartbeat, as posted by the node.
pub fn heartbeat(node: &Node) -> Option<String> {
    condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0.to_string())
}

/// The node's conditions once it has gone unheard for longer than its grace
/// period (`startup_grace` while it never posted a Ready condition), or
/// `None` when nothing changes: every watched condition becomes Unknown,
/// `NodeStatusUnknown` ("Kubelet stopped posting node status.") or, if it was
/// never posted, `NodeStatusNeverUpdated`.
pub fn stale_conditions(
    node: &Node,
    unheard_for: Duration,
    grace: Duration,
    startup_grace: Duration,
    now: &Time,
) -> Option<Vec<NodeCondition>> {
    let limit = if ready_status(node).is_none() { startup_grace } else { grace };
    if unheard_for <= limit {
        return None;
    }
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut changed = false;
    for type_ in CONDITION_TYPES {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed.then_some(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(conditions: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": "n1", "creationTimestamp": "2026-12-06T10:00:00Z" },
            "status": { "conditions": conditions },
        }))
        .expect("node")
    }

    fn ready(status: &str) -> serde_json::Value {
        json!([{ "type": "Ready", "status": status, "reason": "KubeletReady", "message": "kubelet is posting ready status",
            "lastHeartbeatTime": "2026-12-06T10:00:05Z", "lastTransitionTime": "2026-12-06T10:00:01Z" }])
    }

    #[test]
    fn probes_move_only_on_change() {
        let t0 = Instant::now();
        let p = observe(None, Some("a".into()), None, t0);
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(observe(Some(&p), Some("a".into()), None, t1).at, t0);
        assert_eq!(observe(Some(&p), Some("b".into()), None, t1).at, t1);
        assert_eq!(observe(Some(&p), Some("a".into()), Some("h".into()), t1).at, t1);
    }

    #[test]
    fn a_lost_node_goes_unknown_once() {
        let now = Time("2026-12-06T10:01:00Z".parse().expect("time"));
        let (grace, startup) = (Duration::from_secs(40), Duration::from_secs(60));
        let n = node(ready("True"));
        assert!(stale_conditions(&n, Duration::from_secs(39), grace, startup, &now).is_none());
        let conds = stale_conditions(&n, Duration::from_secs(41), grace, startup, &now).expect("stale");
        let r = &conds[0];
        assert_eq!((r.status.as_str(), r.reason.as_deref()), ("Unknown", Some("NodeStatusUnknown")));
        assert_eq!(r.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(r.last_transition_time.as_ref(), Some(&now));
        assert_eq!(r.last_heartbeat_time.as_ref().map(|t| t.0.to_string()), Some("2026-12-06T10:00:05Z".into()));
        // The pressure conditions it never posted are added as never updated.
        let types: Vec<(&str, &str, Option<&str>)> =
            conds.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_deref())).collect();
        assert_eq!(
            types,
            [
                ("Ready", "Unknown", Some("NodeStatusUnknown")),
                ("MemoryPressure", "Unknown", Some("NodeStatusNeverUpdated")),
                ("DiskPressure", "Unknown", Some("NodeStatusNeverUpdated")),
                ("PIDPressure", "Unknown", Some("NodeStatusNeverUpdated")),
            ]
        );
        // Already Unknown everywhere: nothing to write.
        let mut gone = n.clone();
        gone.status.as_mut().expect("status").conditions = Some(conds);
        assert!(stale_conditions(&gone, Duration::from_secs(100), grace, startup, &now).is_none());
    }

    #[test]
    fn a_node_that_never_posted_gets_the_startup_grace() {
        let now = Time("2026-12-06T10:01:00Z".parse().expect("time"));
        let n = node(json!([]));
        let (grace, startup) = (Duration::from_secs(40), Duration::from_secs(60));
        assert!(stale_conditions(&n, Duration::from_secs(50), grace, startup, &now).is_none());
        let conds = stale_conditions(&n, Duration::from_secs(61), grace, startup, &now).expect("stale");
        assert_eq!(conds[0].reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(conds[0].message.as_deref(), Some("Kubelet never posted node status."));
        assert_eq!(conds[0].last_heartbeat_time.as_ref().map(|t| t.0.to_string()), Some("2026-12-06T10:00:00Z".into()));
    }
}
