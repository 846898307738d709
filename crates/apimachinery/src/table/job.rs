//! `kubectl get jobs` (upstream `printJob` and `jobColumnDefinitions` in
//! `pkg/printers/internalversion/printers.go`, v1.33: the STATUS column).

use super::{age, age_col, arr_at, col, desc, format_label_selector, get, human_duration_nanos, int_at};
use super::{layout_container_cells, name, name_col, s, since, str_at, time_at};
use jiff::Timestamp;
use serde_json::Value;

const SUCCEEDED: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";
const SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

pub(super) fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Status", "string", "", "Status of the job.", 0),
        col("Completions", "string", "", SUCCEEDED, 0),
        col("Duration", "string", "", "Time required to complete the job.", 0),
        age_col(),
        col("Containers", "string", "", desc::TEMPLATE_CONTAINERS, 1),
        col("Images", "string", "", desc::TEMPLATE_IMAGES, 1),
        col("Selector", "string", "", SELECTOR, 1),
    ]
}

/// Upstream `hasJobCondition`: the first condition of the type is True.
fn has_condition(job: &Value, ty: &str) -> bool {
    arr_at(job, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == ty)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

/// The STATUS cell.
pub(super) fn status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if get(job, "/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

pub(super) fn cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(job, "/status/succeeded").unwrap_or(0);
    let completions = match get(job, "/spec/completions") {
        Some(c) => format!("{succeeded}/{}", c.as_i64().unwrap_or(0)),
        None => match int_at(job, "/spec/parallelism").unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (time_at(job, "/status/startTime"), time_at(job, "/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start), now),
        (Some(start), Some(end)) => human_duration_nanos(end.as_nanosecond() - start.as_nanosecond()),
    };
    let (names, images) = layout_container_cells(arr_at(job, "/spec/template/spec/containers"));
    vec![
        name(job),
        s(status(job)),
        s(completions),
        s(duration),
        age(job, now),
        s(names),
        s(images),
        s(format_label_selector(get(job, "/spec/selector"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn job_rows() {
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2024-06-01T11:58:00Z"},
            "spec": {"completions": 3, "parallelism": 1,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                "template": {"spec": {"containers": [{"name": "pi", "image": "busybox"}]}}},
            "status": {"succeeded": 3, "startTime": "2024-06-01T11:58:00Z", "completionTime": "2024-06-01T11:58:42Z",
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}
        });
        assert_eq!(
            cells(&job, now()),
            vec![
                json!("pi"),
                json!("Complete"),
                json!("3/3"),
                json!("42s"),
                json!("2m"),
                json!("pi"),
                json!("busybox"),
                json!("batch.kubernetes.io/controller-uid=u1"),
            ]
        );
        let running = json!({"metadata": {"name": "r"}, "spec": {"parallelism": 2},
            "status": {"startTime": "2024-06-01T11:59:30Z", "active": 2}});
        let row = cells(&running, now());
        assert_eq!(
            (row[1].as_str(), row[2].as_str(), row[3].as_str()),
            (Some("Running"), Some("0/1 of 2"), Some("30s"))
        );
        let failed = json!({"metadata": {"name": "f"}, "spec": {"completions": 1},
            "status": {"failed": 7, "conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]}});
        assert_eq!(status(&failed), "Failed");
        let target = json!({"status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}});
        assert_eq!(status(&target), "FailureTarget");
        let deleting = json!({"metadata": {"deletionTimestamp": "2024-06-01T11:59:30Z"}});
        assert_eq!(status(&deleting), "Terminating");
        let suspended = json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(status(&suspended), "Suspended");
        assert_eq!(cells(&json!({}), now())[3], json!(""));
        assert_eq!(cells(&json!({}), now()).len(), columns().len());
    }
}
