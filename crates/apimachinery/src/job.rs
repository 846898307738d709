//! Job API rules: v1 defaults (`pkg/apis/batch/v1/defaults.go` `SetDefaults_Job`),
//! the registry strategy's selector generation (`pkg/registry/batch/job/strategy.go`
//! `generateSelector`) and validation (`pkg/apis/batch/validation/validation.go`
//! `ValidateJob`, `ValidateJobUpdate`). Objects are the v1 JSON form; the pod
//! template's own defaults are applied by the caller before [`validate`].

use crate::defaulting::set_if_absent;
use crate::field::FieldError;
use crate::names::validate_nonnegative;
use crate::selector::LabelSelector;
use serde_json::{json, Map, Value};

/// `batch.LegacyControllerUid`.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// `batch.ControllerUidLabel`.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// `batch.LegacyJobNameLabel`.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// `batch.JobNameLabel`.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// `batch.JobCompletionIndexAnnotation` (also the pod label of the same name).
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// `batch.JobTrackingFinalizer`.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// `maxParallelismForIndexedJob`.
const MAX_PARALLELISM_INDEXED: i64 = 100_000;

fn present(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

fn object_at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = v;
    for key in path {
        if !cur.get(*key).is_some_and(Value::is_object) {
            cur[*key] = json!({});
        }
        cur = &mut cur[*key];
    }
    cur.as_object_mut().expect("an object was just put here")
}

/// `SetDefaults_Job`.
pub fn set_defaults(obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    if !present(spec, "completions") && !present(spec, "parallelism") {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    set_if_absent(spec, "parallelism", json!(1));
    let backoff = if present(spec, "backoffLimitPerIndex") { i64::from(i32::MAX) } else { 6 };
    set_if_absent(spec, "backoffLimit", json!(backoff));
    set_if_absent(spec, "completionMode", json!("NonIndexed"));
    set_if_absent(spec, "suspend", json!(false));
    let has_pfp = present(spec, "podFailurePolicy");
    if let Some(rules) = spec.pointer_mut("/podFailurePolicy/rules").and_then(Value::as_array_mut) {
        for rule in rules {
            if let Some(patterns) = rule.get_mut("onPodConditions").and_then(Value::as_array_mut) {
                for p in patterns {
                    set_if_absent(p, "status", json!("True"));
                }
            }
        }
    }
    set_if_absent(spec, "podReplacementPolicy", json!(if has_pfp { "Failed" } else { "TerminatingOrFailed" }));
    copy_template_labels(obj);
}

/// A Job without labels takes its template's (part of `SetDefaults_Job`).
fn copy_template_labels(obj: &mut Value) {
    let empty = obj.pointer("/metadata/labels").and_then(Value::as_object).is_none_or(|m| m.is_empty());
    let template = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object).cloned();
    if let (true, Some(t)) = (empty, template) {
        if !t.is_empty() {
            object_at(obj, &["metadata"]).insert("labels".into(), Value::Object(t));
        }
    }
}

fn manual_selector(obj: &Value) -> bool {
    obj.pointer("/spec/manualSelector").and_then(Value::as_bool).unwrap_or(false)
}

/// `PrepareForCreate`: generate the selector and template labels (unless
/// `manualSelector`), an empty status. Needs `metadata.name` and `metadata.uid`.
pub fn prepare_create(obj: &mut Value) {
    if !manual_selector(obj) {
        generate_selector(obj);
    }
    obj["status"] = json!({});
    // Defaulting again when the object is read back gives a Job without labels
    // its template's, generated ones included.
    copy_template_labels(obj);
}

/// `generateSelector`: template labels `job-name`/`batch.kubernetes.io/job-name` =
/// name and `controller-uid`/`batch.kubernetes.io/controller-uid` = uid (labels the
/// user set are kept, validation rejects wrong ones), and a selector on the uid.
fn generate_selector(obj: &mut Value) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let labels = object_at(obj, &["spec", "template", "metadata", "labels"]);
    for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
        labels.entry(key).or_insert_with(|| json!(name));
    }
    for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
        labels.entry(key).or_insert_with(|| json!(uid));
    }
    let match_labels = object_at(obj, &["spec", "selector", "matchLabels"]);
    match_labels.entry(CONTROLLER_UID_LABEL).or_insert_with(|| json!(uid));
}

/// `ValidateHasLabel`.
fn has_label(obj: &Value, key: &str, expected: &str) -> Vec<FieldError> {
    let path = format!("spec.template.metadata.labels[{key}]");
    let labels = obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or_else(|| json!({}));
    match labels.get(key).and_then(Value::as_str) {
        None => vec![FieldError::required(path, expected)],
        Some(v) if v != expected => vec![FieldError::invalid(path, labels.clone(), format!("must be '{expected}'"))],
        Some(_) => Vec::new(),
    }
}

/// `validateGeneratedSelector`.
fn validate_generated_selector(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if manual_selector(obj) {
        return errs;
    }
    let Some(sel) = obj.pointer("/spec/selector").filter(|s| !s.is_null()) else { return errs };
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid", ""));
    }
    errs.extend(has_label(obj, LEGACY_CONTROLLER_UID_LABEL, uid));
    errs.extend(has_label(obj, LEGACY_JOB_NAME_LABEL, name));
    errs.extend(has_label(obj, CONTROLLER_UID_LABEL, uid));
    errs.extend(has_label(obj, JOB_NAME_LABEL, name));
    let expected = [
        (LEGACY_CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, name),
        (CONTROLLER_UID_LABEL, uid),
        (JOB_NAME_LABEL, name),
    ];
    if let Ok(s) = LabelSelector::from_label_selector(sel) {
        if !s.matches(|k| expected.iter().find(|(ek, _)| *ek == k).map(|(_, v)| *v)) {
            errs.push(FieldError::invalid("spec.selector", sel.clone(), "`selector` not auto-generated"));
        }
    }
    errs
}

/// `ValidateJob` (the spec rules; metadata is validated by the caller).
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_generated_selector(obj);
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    errs.extend(validate_spec(&spec));
    // `ValidateJobSpec`: a Job (not a CronJob's template) needs a selector that
    // matches its template.
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => match LabelSelector::from_label_selector(sel) {
            Err(e) => errs.push(FieldError::invalid("spec.selector", sel.clone(), e.0)),
            Ok(s) => {
                let template = spec.get("template").cloned().unwrap_or_default();
                if !s.matches_object(&template) {
                    let labels = template.pointer("/metadata/labels").cloned().unwrap_or(Value::Null);
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        labels,
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    errs
}

/// `validateJobSpec`: the rules a Job and a CronJob's `jobTemplate.spec` share
/// (paths start with `spec.`; the CronJob rules re-root them).
pub fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for field in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"] {
        if let Some(n) = spec.get(field).and_then(Value::as_i64) {
            errs.extend(validate_nonnegative(n, &format!("spec.{field}")));
        }
    }
    match spec.get("completionMode").and_then(Value::as_str) {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if !present(spec, "completions") {
                errs.push(FieldError::required("spec.completions", "when completion mode is Indexed"));
            }
            if let Some(p) = spec.get("parallelism").and_then(Value::as_i64).filter(|p| *p > MAX_PARALLELISM_INDEXED) {
                errs.push(FieldError::invalid(
                    "spec.parallelism",
                    p,
                    format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported("spec.completionMode", other, &["NonIndexed", "Indexed"])),
    }
    match spec.get("podReplacementPolicy").and_then(Value::as_str) {
        None | Some("TerminatingOrFailed" | "Failed") => {}
        Some(other) => {
            errs.push(FieldError::not_supported("spec.podReplacementPolicy", other, &["TerminatingOrFailed", "Failed"]))
        }
    }
    if spec.pointer("/template/spec/containers").and_then(Value::as_array).is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required("spec.template.spec.containers", ""));
    }
    let restart = spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str).unwrap_or_default();
    if restart != "OnFailure" && restart != "Never" {
        errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", restart, &["OnFailure", "Never"]));
    } else if present(spec, "podFailurePolicy") && restart != "Never" {
        errs.push(FieldError::invalid(
            "spec.template.spec.restartPolicy",
            restart,
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
    errs
}

/// `ValidateJobUpdate`: the selector, the template, the completion mode and (but for
/// elastic Indexed Jobs, completions == parallelism) completions are immutable.
pub fn validate_update(obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate(obj);
    // A suspended Job that never started may change where and how its pods are
    // scheduled (upstream `ValidateJobSpecUpdate`, AllowMutableSchedulingDirectives):
    // compare the template with those directives taken from the new one.
    let mut old = old.clone();
    let suspended = old.pointer("/spec/suspend") == Some(&json!(true));
    if suspended && old.pointer("/status/startTime").is_none() {
        for (parent, field) in [
            ("/spec/template/spec", "nodeSelector"),
            ("/spec/template/spec", "affinity"),
            ("/spec/template/spec", "tolerations"),
            ("/spec/template/spec", "schedulingGates"),
            ("/spec/template/metadata", "labels"),
            ("/spec/template/metadata", "annotations"),
        ] {
            let new_value = obj.pointer(parent).and_then(|p| p.get(field)).cloned();
            if let Some(m) = old.pointer_mut(parent).and_then(Value::as_object_mut) {
                match new_value {
                    Some(v) => m.insert(field.into(), v),
                    None => m.remove(field),
                };
            }
        }
    }
    let old = &old;
    let at = |v: &Value, f: &str| v.pointer(&format!("/spec/{f}")).cloned().unwrap_or(Value::Null);
    let indexed = at(obj, "completionMode") == json!("Indexed");
    let elastic = indexed && at(obj, "completions") == at(obj, "parallelism");
    for field in ["completions", "selector", "template", "completionMode", "podFailurePolicy"] {
        if field == "completions" && elastic {
            continue;
        }
        if at(obj, field) != at(old, field) {
            errs.push(FieldError::invalid(format!("spec.{field}"), at(obj, field), "field is immutable"));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "pi", "image": "busybox"}]}}}})
    }

    #[test]
    fn defaults_and_generated_selector() {
        let mut j = job();
        set_defaults(&mut j);
        prepare_create(&mut j);
        let spec = &j["spec"];
        assert_eq!((spec["completions"].clone(), spec["parallelism"].clone()), (json!(1), json!(1)));
        assert_eq!(spec["backoffLimit"], json!(6));
        assert_eq!(spec["completionMode"], json!("NonIndexed"));
        assert_eq!(spec["suspend"], json!(false));
        assert_eq!(spec["podReplacementPolicy"], json!("TerminatingOrFailed"));
        assert_eq!(spec["selector"], json!({"matchLabels": {CONTROLLER_UID_LABEL: "u1"}}));
        let want = json!({"controller-uid": "u1", "job-name": "pi", CONTROLLER_UID_LABEL: "u1", JOB_NAME_LABEL: "pi"});
        assert_eq!(spec["template"]["metadata"]["labels"], want);
        assert_eq!(j["metadata"]["labels"], want);
        assert_eq!(j["status"], json!({}));
        assert!(validate(&j).is_empty(), "{:?}", validate(&j));

        // Only parallelism given: completions stays unset (a work queue).
        let mut wq = job();
        wq["spec"]["parallelism"] = json!(3);
        wq["metadata"]["labels"] = json!({"team": "a"});
        wq["spec"]["template"]["metadata"] = json!({"labels": {"app": "w"}});
        set_defaults(&mut wq);
        prepare_create(&mut wq);
        assert!(wq["spec"].get("completions").is_none());
        assert_eq!(wq["metadata"]["labels"], json!({"team": "a"}));
        assert_eq!(wq["spec"]["template"]["metadata"]["labels"]["app"], json!("w"));
    }

    #[test]
    fn suspended_jobs_that_never_started_may_change_scheduling() {
        let mut old = job();
        set_defaults(&mut old);
        prepare_create(&mut old);
        old["spec"]["suspend"] = json!(true);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert!(validate_update(&new, &old).is_empty(), "{:?}", validate_update(&new, &old));
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        assert_eq!(validate_update(&new, &old).len(), 1, "the rest of the template stays immutable");
        let mut started = old.clone();
        started["status"]["startTime"] = json!("2026-12-06T00:00:00Z");
        let mut new = started.clone();
        new["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert_eq!(validate_update(&new, &started).len(), 1);
    }

    #[test]
    fn manual_selector_is_kept() {
        let mut j = job();
        j["spec"]["manualSelector"] = json!(true);
        j["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
        j["spec"]["template"]["metadata"] = json!({"labels": {"app": "x"}});
        set_defaults(&mut j);
        prepare_create(&mut j);
        assert_eq!(j["spec"]["selector"], json!({"matchLabels": {"app": "x"}}));
        assert_eq!(j["spec"]["template"]["metadata"]["labels"], json!({"app": "x"}));
        assert!(validate(&j).is_empty(), "{:?}", validate(&j));
        // A wrong selector without manualSelector is refused.
        let mut wrong = job();
        wrong["spec"]["selector"] = json!({"matchLabels": {CONTROLLER_UID_LABEL: "other"}});
        set_defaults(&mut wrong);
        prepare_create(&mut wrong);
        let msgs: Vec<String> = validate(&wrong).iter().map(|e| e.to_string()).collect();
        assert!(msgs.iter().any(|m| m.contains("`selector` not auto-generated")), "{msgs:?}");
    }

    #[test]
    fn restart_policy_and_immutability() {
        let mut j = job();
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        set_defaults(&mut j);
        prepare_create(&mut j);
        let errs = validate(&j);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
        let mut ok = job();
        set_defaults(&mut ok);
        prepare_create(&mut ok);
        let mut changed = ok.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("alpine");
        changed["spec"]["backoffLimit"] = json!(2);
        let msgs: Vec<String> = validate_update(&changed, &ok).iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(msgs[0].starts_with("spec.template: Invalid value: ") && msgs[0].ends_with("field is immutable"));
        let mut neg = ok.clone();
        neg["spec"]["backoffLimit"] = json!(-1);
        assert_eq!(
            validate(&neg)[0].to_string(),
            "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"
        );
        let mut indexed = job();
        indexed["spec"]["completionMode"] = json!("Indexed");
        indexed["spec"]["parallelism"] = json!(2);
        set_defaults(&mut indexed);
        prepare_create(&mut indexed);
        assert_eq!(
            validate(&indexed)[0].to_string(),
            "spec.completions: Required value: when completion mode is Indexed"
        );
    }
}
