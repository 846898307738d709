//! `kubectl get cronjobs` (upstream `printCronJob` and `cronJobColumnDefinitions`
//! in `pkg/printers/internalversion/printers.go`): NAME SCHEDULE TIMEZONE SUSPEND
//! ACTIVE LAST SCHEDULE AGE, and CONTAINERS IMAGES SELECTOR when wide.

use super::{age, age_col, arr_at, col, count, desc, format_label_selector, get, layout_container_cells, name};
use super::{name_col, s, since, str_at, time_at};
use jiff::Timestamp;
use serde_json::Value;

const SCHEDULE: &str = "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.";
const TIME_ZONE: &str = "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones";
const SUSPEND: &str = "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions. Defaults to false.";
const ACTIVE: &str = "A list of pointers to currently running jobs.";
const LAST_SCHEDULE: &str = "Information when was the last time the job was successfully scheduled.";
const SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

pub(super) fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Schedule", "string", "", SCHEDULE, 0),
        col("Timezone", "string", "", TIME_ZONE, 0),
        col("Suspend", "boolean", "", SUSPEND, 0),
        col("Active", "integer", "", ACTIVE, 0),
        col("Last Schedule", "string", "", LAST_SCHEDULE, 0),
        age_col(),
        col("Containers", "string", "", desc::TEMPLATE_CONTAINERS, 1),
        col("Images", "string", "", desc::TEMPLATE_IMAGES, 1),
        col("Selector", "string", "", SELECTOR, 1),
    ]
}

/// `printBoolPtr`.
fn bool_ptr(v: Option<&Value>) -> &'static str {
    match v.and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

pub(super) fn cells(cj: &Value, now: Timestamp) -> Vec<Value> {
    let last = match time_at(cj, "/status/lastScheduleTime") {
        Some(t) => since(Some(t), now),
        None => "<none>".to_string(),
    };
    let zone = match get(cj, "/spec/timeZone").and_then(Value::as_str) {
        Some(z) => z.to_string(),
        None => "<none>".to_string(),
    };
    let (names, images) = layout_container_cells(arr_at(cj, "/spec/jobTemplate/spec/template/spec/containers"));
    vec![
        name(cj),
        s(str_at(cj, "/spec/schedule")),
        s(zone),
        s(bool_ptr(get(cj, "/spec/suspend"))),
        count(arr_at(cj, "/status/active").len()),
        s(last),
        age(cj, now),
        s(names),
        s(images),
        s(format_label_selector(get(cj, "/spec/jobTemplate/spec/selector"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cronjob_rows() {
        let now: Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        let cj = json!({
            "metadata": {"name": "hello", "creationTimestamp": "2024-06-01T11:00:00Z"},
            "spec": {"schedule": "*/1 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "hello", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "hello-28620719"}], "lastScheduleTime": "2024-06-01T11:59:00Z"}
        });
        assert_eq!(
            cells(&cj, now),
            vec![
                json!("hello"),
                json!("*/1 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("60s"),
                json!("60m"),
                json!("hello"),
                json!("busybox"),
                json!("<none>"),
            ]
        );
        let zoned = json!({"metadata": {"name": "z"}, "spec": {"schedule": "@daily", "timeZone": "Europe/Berlin", "suspend": true}});
        let row = cells(&zoned, now);
        assert_eq!(
            (row[2].clone(), row[3].clone(), row[4].clone(), row[5].clone()),
            (json!("Europe/Berlin"), json!("True"), json!(0), json!("<none>"))
        );
        assert_eq!(cells(&json!({}), now)[3], json!("<unset>"));
        assert_eq!(row.len(), columns().len());
    }
}
