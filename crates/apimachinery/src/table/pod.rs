//! `kubectl get pods` (upstream `printPod`, `podColumnDefinitions` in `pkg/printers/internalversion/printers.go`).

use super::*;

pub(super) fn pod_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Ready", "string", "", desc::POD_READY, 0),
        col("Status", "string", "", desc::POD_STATUS, 0),
        col("Restarts", "string", "", desc::POD_RESTARTS, 0),
        age_col(),
        col("IP", "string", "", desc::POD_STATUS_POD_IP, 1),
        col("Node", "string", "", desc::POD_SPEC_NODE_NAME, 1),
        col("Nominated Node", "string", "", desc::POD_STATUS_NOMINATED_NODE_NAME, 1),
        col("Readiness Gates", "string", "", desc::POD_SPEC_READINESS_GATES, 1),
    ]
}

/// Upstream `IsRestartableInitContainer`.
pub(super) fn is_restartable(container: Option<&Value>) -> bool {
    container.is_some_and(|c| str_at(c, "/restartPolicy") == "Always")
}

/// `lastRestartDate.Before(&terminatedDate)` then assign, with `None` as Go's zero time.
pub(super) fn bump_last_restart(last: &mut Option<Timestamp>, finished: Option<Timestamp>) {
    if let Some(f) = finished {
        if last.is_none_or(|l| l < f) {
            *last = Some(f);
        }
    }
}

pub(super) fn has_condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions.iter().any(|c| str_at(c, "/type") == ty && str_at(c, "/status") == "True")
}

/// Upstream `isPodInitializedConditionTrue`: the first `Initialized` condition decides.
pub(super) fn is_pod_initialized_condition_true(conditions: &[Value]) -> bool {
    conditions.iter().find(|c| str_at(c, "/type") == "Initialized").is_some_and(|c| str_at(c, "/status") == "True")
}

/// Upstream `printPod`.
pub(super) fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let containers = arr_at(pod, "/spec/containers");
    let init_containers = arr_at(pod, "/spec/initContainers");
    let conditions = arr_at(pod, "/status/conditions");

    let mut restarts: i64 = 0;
    let mut restartable_init_restarts: i64 = 0;
    let mut total_containers = containers.len();
    let mut ready_containers: usize = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_restartable_init_restart: Option<Timestamp> = None;

    let phase = str_at(pod, "/status/phase");
    let mut reason = phase.to_string();
    let status_reason = str_at(pod, "/status/reason");
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }

    // If the Pod carries {type:PodScheduled, reason:SchedulingGated}, say so.
    for c in conditions {
        if str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut init_by_name: HashMap<&str, &Value> = HashMap::new();
    for c in init_containers {
        init_by_name.insert(str_at(c, "/name"), c);
        if is_restartable(Some(c)) {
            total_containers += 1;
        }
    }

    let mut initializing = false;
    for (i, cs) in arr_at(pod, "/status/initContainerStatuses").iter().enumerate() {
        let restart_count = int_at(cs, "/restartCount").unwrap_or(0);
        restarts += restart_count;
        let last_terminated = get(cs, "/lastState/terminated");
        let finished = last_terminated.and_then(|t| time_at(t, "/finishedAt"));
        bump_last_restart(&mut last_restart, finished);
        let restartable = is_restartable(init_by_name.get(str_at(cs, "/name")).copied());
        if restartable {
            restartable_init_restarts += restart_count;
            bump_last_restart(&mut last_restartable_init_restart, finished);
        }
        let terminated = get(cs, "/state/terminated");
        let waiting = get(cs, "/state/waiting");
        if terminated.is_some_and(|t| int_at(t, "/exitCode").unwrap_or(0) == 0) {
            continue;
        }
        if restartable && get(cs, "/started").and_then(Value::as_bool) == Some(true) {
            if bool_at(cs, "/ready") {
                ready_containers += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            // initialization failed
            let t_reason = str_at(t, "/reason");
            reason = if t_reason.is_empty() {
                let signal = int_at(t, "/signal").unwrap_or(0);
                if signal != 0 {
                    format!("Init:Signal:{signal}")
                } else {
                    format!("Init:ExitCode:{}", int_at(t, "/exitCode").unwrap_or(0))
                }
            } else {
                format!("Init:{t_reason}")
            };
        } else if let Some(w) = waiting.filter(|w| {
            let r = str_at(w, "/reason");
            !r.is_empty() && r != "PodInitializing"
        }) {
            reason = format!("Init:{}", str_at(w, "/reason"));
        } else {
            reason = format!("Init:{}/{}", i, init_containers.len());
        }
        initializing = true;
        break;
    }

    if !initializing || is_pod_initialized_condition_true(conditions) {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for cs in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += int_at(cs, "/restartCount").unwrap_or(0);
            let finished = get(cs, "/lastState/terminated").and_then(|t| time_at(t, "/finishedAt"));
            bump_last_restart(&mut last_restart, finished);
            let waiting_reason = get(cs, "/state/waiting").map(|w| str_at(w, "/reason"));
            let terminated = get(cs, "/state/terminated");
            if let Some(r) = waiting_reason.filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(t) = terminated {
                let t_reason = str_at(t, "/reason");
                reason = if !t_reason.is_empty() {
                    t_reason.to_string()
                } else {
                    let signal = int_at(t, "/signal").unwrap_or(0);
                    if signal != 0 {
                        format!("Signal:{signal}")
                    } else {
                        format!("ExitCode:{}", int_at(t, "/exitCode").unwrap_or(0))
                    }
                };
            } else if bool_at(cs, "/ready") && get(cs, "/state/running").is_some() {
                has_running = true;
                ready_containers += 1;
            }
        }

        // change pod status back to "Running" if there is at least one container
        // still reporting as "Running" status
        if reason == "Completed" && has_running {
            reason =
                if has_condition_true(conditions, "Ready") { "Running".to_string() } else { "NotReady".to_string() };
        }
    }

    let deleting = get(pod, "/metadata/deletionTimestamp").is_some();
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_str = match last_restart {
        Some(ts) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(ts), now)),
        _ => restarts.to_string(),
    };

    // Wide columns. The v1 -> internal conversion fills podIPs from podIP.
    let mut pod_ip =
        arr_at(pod, "/status/podIPs").first().map(|p| str_at(p, "/ip")).unwrap_or_else(|| str_at(pod, "/status/podIP"));
    if pod_ip.is_empty() {
        pod_ip = "<none>";
    }
    let readiness_gates = arr_at(pod, "/spec/readinessGates");
    let gates = if readiness_gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_conditions = readiness_gates
            .iter()
            .filter(|gate| {
                let ty = str_at(gate, "/conditionType");
                conditions.iter().find(|c| str_at(c, "/type") == ty).is_some_and(|c| str_at(c, "/status") == "True")
            })
            .count();
        format!("{true_conditions}/{}", readiness_gates.len())
    };

    vec![
        name(pod),
        s(format!("{ready_containers}/{total_containers}")),
        s(reason),
        s(restarts_str),
        age(pod, now),
        s(pod_ip),
        s(none_if_empty(str_at(pod, "/spec/nodeName"))),
        s(none_if_empty(str_at(pod, "/status/nominatedNodeName"))),
        s(gates),
    ]
}
