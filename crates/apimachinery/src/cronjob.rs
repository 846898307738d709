//! CronJob API rules: v1 defaults (`pkg/apis/batch/v1/defaults.go`
//! `SetDefaults_CronJob`), the registry strategy's empty status
//! (`pkg/registry/batch/cronjob/strategy.go`) and validation
//! (`pkg/apis/batch/validation/validation.go` `ValidateCronJobCreate`,
//! `ValidateCronJobUpdate`, `validateScheduleFormat`, `validateTimeZone`,
//! `ValidateJobTemplateSpec`). The schedule is parsed by [`crate::cron`].
//! Objects are the v1 JSON form; the pod template's own defaults are applied by
//! the caller.

use crate::defaulting::set_if_unset;
use crate::field::FieldError;
use crate::names::validate_nonnegative;
use serde_json::{json, Value};

/// `batchv1.CronJobScheduledTimestampAnnotation`.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// `SetDefaults_CronJob`: concurrencyPolicy Allow, suspend false, history
/// limits 3 successful and 1 failed. (The job template's JobSpec gets no Job
/// defaults: those apply when the controller creates the Job.)
pub fn set_defaults(obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    set_if_unset(spec, "concurrencyPolicy", json!("Allow"));
    set_if_unset(spec, "suspend", json!(false));
    set_if_unset(spec, "successfulJobsHistoryLimit", json!(3));
    set_if_unset(spec, "failedJobsHistoryLimit", json!(1));
}

/// `PrepareForCreate`: an empty status.
pub fn prepare_create(obj: &mut Value) {
    obj["status"] = json!({});
}

/// `validateScheduleFormat`: the schedule parses, and `TZ`/`CRON_TZ` in it are
/// refused (unless the old schedule already had one, and then never together
/// with `timeZone`).
fn validate_schedule(schedule: &str, allow_tz: bool, time_zone: Option<&str>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Err(e) = crate::cron::parse_standard(schedule) {
        errs.push(FieldError::invalid("spec.schedule", schedule, e.0));
    }
    let tz = schedule.contains("TZ");
    if allow_tz && tz && time_zone.is_some() {
        errs.push(FieldError::invalid(
            "spec.schedule",
            schedule,
            "cannot use both timeZone field and TZ or CRON_TZ in schedule",
        ));
    } else if !allow_tz && tz {
        errs.push(FieldError::invalid(
            "spec.schedule",
            schedule,
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    }
    errs
}

/// `validTimeZoneCharacters` for one `/`-separated part of a zone name.
fn valid_zone_part(part: &str) -> bool {
    (1..=14).contains(&part.len())
        && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
        && part != "."
        && part != ".."
        && !part.starts_with('-')
}

/// `validateTimeZone`: an IANA name the time zone database knows.
fn validate_time_zone(tz: &str) -> Vec<FieldError> {
    let path = "spec.timeZone";
    if tz.is_empty() {
        return vec![FieldError::invalid(path, tz, "timeZone must be nil or non-empty string")];
    }
    if !tz.split('/').all(valid_zone_part) {
        return vec![FieldError::invalid(path, tz, format!("unknown time zone {tz}"))];
    }
    let mut errs = Vec::new();
    if tz.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    } else if let Err(e) = crate::cron::load_location(tz) {
        errs.push(FieldError::invalid(path, tz, e));
    }
    errs
}

/// `ValidateJobTemplateSpec`: the Job rules on `jobTemplate.spec`, and no
/// selector (it is generated for each Job).
fn validate_job_template(spec: &Value) -> Vec<FieldError> {
    let job_spec = spec.pointer("/jobTemplate/spec").cloned().unwrap_or_else(|| json!({}));
    let mut errs: Vec<FieldError> = crate::job::validate_spec(&job_spec)
        .into_iter()
        .map(|mut e| {
            e.field = format!("spec.jobTemplate.{}", e.field);
            e
        })
        .collect();
    if let Some(sel) = job_spec.get("selector").filter(|s| !s.is_null()) {
        errs.push(FieldError::invalid(
            "spec.jobTemplate.spec.selector",
            sel.clone(),
            "`selector` will be auto-generated",
        ));
    }
    if job_spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errs.push(FieldError::not_supported("spec.jobTemplate.spec.manualSelector", true, &["nil", "false"]));
    }
    errs
}

/// `validateCronJobSpec`; `old` is the stored spec on update.
fn validate_spec(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let time_zone = spec.get("timeZone").and_then(Value::as_str);
    match spec.get("schedule").and_then(Value::as_str).unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.schedule", "")),
        schedule => {
            let allow_tz =
                old.and_then(|o| o.pointer("/spec/schedule")).and_then(Value::as_str).is_some_and(|s| s.contains("TZ"));
            errs.extend(validate_schedule(schedule, allow_tz, time_zone));
        }
    }
    if let Some(n) = spec.get("startingDeadlineSeconds").and_then(Value::as_i64) {
        errs.extend(validate_nonnegative(n, "spec.startingDeadlineSeconds"));
    }
    let old_tz = old.and_then(|o| o.pointer("/spec/timeZone")).and_then(Value::as_str);
    if let Some(tz) = time_zone.filter(|tz| old.is_none() || old_tz != Some(tz)) {
        errs.extend(validate_time_zone(tz));
    }
    match spec.get("concurrencyPolicy").and_then(Value::as_str).unwrap_or_default() {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        other => errs.push(FieldError::not_supported("spec.concurrencyPolicy", other, &["Allow", "Forbid", "Replace"])),
    }
    errs.extend(validate_job_template(&spec));
    for field in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        if let Some(n) = spec.get(field).and_then(Value::as_i64) {
            errs.extend(validate_nonnegative(n, &format!("spec.{field}")));
        }
    }
    errs
}

/// `ValidateCronJobCreate` (spec rules and the 52-character name limit: the
/// controller appends `-<minutes since the epoch>` to make Job names).
pub fn validate_create(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_spec(obj, None);
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if name.len() > 63 - 11 {
        errs.push(FieldError::invalid("metadata.name", name, "must be no more than 52 characters"));
    }
    errs
}

/// `ValidateCronJobUpdate` (no name length check, so old objects stay editable).
pub fn validate_update(obj: &Value, old: &Value) -> Vec<FieldError> {
    validate_spec(obj, Some(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cj(schedule: &str) -> Value {
        json!({"metadata": {"name": "hello"}, "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    }

    fn msgs(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn defaults() {
        let mut c = cj("*/1 * * * *");
        set_defaults(&mut c);
        let spec = &c["spec"];
        assert_eq!(spec["concurrencyPolicy"], json!("Allow"));
        assert_eq!(spec["suspend"], json!(false));
        assert_eq!(
            (spec["successfulJobsHistoryLimit"].clone(), spec["failedJobsHistoryLimit"].clone()),
            (json!(3), json!(1))
        );
        assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
        assert!(validate_create(&c).is_empty(), "{:?}", validate_create(&c));
        prepare_create(&mut c);
        assert_eq!(c["status"], json!({}));
    }

    #[test]
    fn schedules_and_zones() {
        let mut bad = cj("bogus");
        set_defaults(&mut bad);
        assert_eq!(
            msgs(validate_create(&bad)),
            vec!["spec.schedule: Invalid value: \"bogus\": expected exactly 5 fields, found 1: [bogus]"]
        );
        let mut tz = cj("TZ=UTC 0 * * * *");
        set_defaults(&mut tz);
        assert_eq!(
            msgs(validate_create(&tz)),
            vec!["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        // An old object with TZ in its schedule stays editable, but not with timeZone too.
        let mut tz2 = tz.clone();
        assert!(validate_update(&tz2, &tz).is_empty());
        tz2["spec"]["timeZone"] = json!("UTC");
        assert_eq!(
            msgs(validate_update(&tz2, &tz)),
            vec!["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use both timeZone field and TZ or CRON_TZ in schedule"]
        );
        for (zone, want) in [
            ("", "spec.timeZone: Invalid value: \"\": timeZone must be nil or non-empty string"),
            ("Local", "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"),
            ("Mars/Olympus", "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"),
            ("../etc/passwd", "spec.timeZone: Invalid value: \"../etc/passwd\": unknown time zone ../etc/passwd"),
        ] {
            let mut c = cj("@daily");
            set_defaults(&mut c);
            c["spec"]["timeZone"] = json!(zone);
            assert_eq!(msgs(validate_create(&c)), vec![want.to_string()], "{zone}");
        }
        let mut ok = cj("@every 1h");
        set_defaults(&mut ok);
        ok["spec"]["timeZone"] = json!("Europe/Berlin");
        assert!(validate_create(&ok).is_empty());
    }

    #[test]
    fn template_and_policy_rules() {
        let mut c = cj("@hourly");
        set_defaults(&mut c);
        c["spec"]["concurrencyPolicy"] = json!("Sometimes");
        c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        c["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        c["spec"]["failedJobsHistoryLimit"] = json!(-1);
        c["metadata"]["name"] = json!("x".repeat(53));
        assert_eq!(
            msgs(validate_create(&c)),
            vec![
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
                "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
                "spec.jobTemplate.spec.selector: Invalid value: {\"matchLabels\":{\"a\":\"b\"}}: `selector` will be auto-generated",
                "spec.failedJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
                &format!("metadata.name: Invalid value: \"{}\": must be no more than 52 characters", "x".repeat(53)),
            ]
        );
        let mut empty = cj("");
        set_defaults(&mut empty);
        assert_eq!(msgs(validate_create(&empty)), vec!["spec.schedule: Required value"]);
    }
}
