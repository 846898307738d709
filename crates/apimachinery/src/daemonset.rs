//! DaemonSet API rules: v1 defaults (`pkg/apis/apps/v1/defaults.go`
//! `SetDefaults_DaemonSet`), the registry strategy's template generation
//! (`pkg/registry/apps/daemonset/strategy.go`) and validation
//! (`pkg/apis/apps/validation/validation.go` `ValidateDaemonSet*`). Objects are
//! the v1 JSON form; the pod template's own defaults are applied by the caller.

use crate::defaulting::set_if_absent;
use crate::field::FieldError;
use crate::names::validate_nonnegative;
use crate::selector::LabelSelector;
use serde_json::{json, Value};

/// `extensions/v1beta1`'s `spec.templateGeneration`, kept in apps/v1 as an annotation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// `SetDefaults_DaemonSet`: updateStrategy RollingUpdate with maxUnavailable 1 and
/// maxSurge 0, revisionHistoryLimit 10.
pub fn set_defaults(obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    set_if_absent(spec, "updateStrategy", json!({}));
    let strategy = &mut spec["updateStrategy"];
    set_if_absent(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        set_if_absent(strategy, "rollingUpdate", json!({}));
        set_if_absent(&mut strategy["rollingUpdate"], "maxUnavailable", json!(1));
        set_if_absent(&mut strategy["rollingUpdate"], "maxSurge", json!(0));
    }
    set_if_absent(spec, "revisionHistoryLimit", json!(10));
}

fn template_generation(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
}

fn set_template_generation(obj: &mut Value, generation: i64) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = &mut obj["metadata"];
    if !meta.get("annotations").is_some_and(Value::is_object) {
        meta["annotations"] = json!({});
    }
    meta["annotations"][TEMPLATE_GENERATION_ANNOTATION] = json!(generation.to_string());
}

/// `PrepareForCreate`: template generation 1, an empty status.
pub fn prepare_create(obj: &mut Value) {
    set_template_generation(obj, 1);
    obj["status"] = json!({
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    });
}

/// `PrepareForUpdate`: the template generation is the server's, bumped when the
/// template changes.
pub fn prepare_update(obj: &mut Value, old: &Value) {
    let mut generation = template_generation(old).unwrap_or(0);
    if obj.pointer("/spec/template") != old.pointer("/spec/template") {
        generation += 1;
    }
    set_template_generation(obj, generation);
}

/// `ValidateDaemonSet` (the spec rules; metadata is validated by the caller).
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            let empty = sel.get("matchLabels").and_then(Value::as_object).is_none_or(|m| m.is_empty())
                && sel.get("matchExpressions").and_then(Value::as_array).is_none_or(|a| a.is_empty());
            if empty {
                errs.push(FieldError::invalid("spec.selector", sel.clone(), "empty selector is invalid for daemonset"));
            }
            match LabelSelector::from_label_selector(sel) {
                Err(e) => errs.push(FieldError::invalid("spec.selector", sel.clone(), e.0)),
                Ok(s) => {
                    let template = spec.get("template").cloned().unwrap_or_default();
                    if !empty && !s.matches_object(&template) {
                        let labels = template.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({}));
                        errs.push(FieldError::invalid(
                            "spec.template.metadata.labels",
                            labels,
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
        }
    }
    let restart = spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str).unwrap_or_default();
    if restart != "Always" {
        errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", restart, &["Always"]));
    }
    if let Some(v) = spec.pointer("/template/spec/activeDeadlineSeconds").filter(|v| !v.is_null()) {
        errs.push(FieldError::invalid(
            "spec.template.spec.activeDeadlineSeconds",
            v.clone(),
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    for field in ["minReadySeconds", "revisionHistoryLimit"] {
        if let Some(n) = spec.get(field).and_then(Value::as_i64) {
            errs.extend(validate_nonnegative(n, &format!("spec.{field}")));
        }
    }
    let strategy = spec.get("updateStrategy").cloned().unwrap_or_default();
    match strategy.get("type").and_then(Value::as_str).unwrap_or_default() {
        "OnDelete" => {}
        "RollingUpdate" => {
            let ru = strategy.get("rollingUpdate").cloned().unwrap_or_default();
            let mut values = [0i64; 2];
            for (i, field) in ["maxUnavailable", "maxSurge"].iter().enumerate() {
                let path = format!("spec.updateStrategy.rollingUpdate.{field}");
                match int_or_percent(ru.get(*field)) {
                    Ok(v) => {
                        values[i] = v;
                        errs.extend(validate_nonnegative(v, &path));
                    }
                    Err(e) => errs.push(e.at(&path, ru.get(*field))),
                }
            }
            if values == [0, 0] {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    ru.get("maxUnavailable").cloned().unwrap_or(json!(0)),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        other => {
            errs.push(FieldError::not_supported("spec.updateStrategy.type", other, &["OnDelete", "RollingUpdate"]))
        }
    }
    errs
}

enum IntOrPercentError {
    NotPercent,
    OverHundred,
}

impl IntOrPercentError {
    fn at(&self, path: &str, v: Option<&Value>) -> FieldError {
        let v = v.cloned().unwrap_or(Value::Null);
        match self {
            IntOrPercentError::NotPercent => FieldError::invalid(
                path,
                v,
                crate::names::regex_error(
                    "a valid percent string must be a numeric string followed by an ending '%'",
                    "[0-9]+%",
                    &["1%", "93%"],
                ),
            ),
            IntOrPercentError::OverHundred => FieldError::invalid(path, v, "must not be greater than 100%"),
        }
    }
}

/// An int-or-percent value (`ValidatePositiveIntOrPercent` + `IsNotMoreThan100Percent`):
/// the number, or the percentage itself.
fn int_or_percent(v: Option<&Value>) -> Result<i64, IntOrPercentError> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => Ok(n.as_i64().unwrap_or(0)),
        Some(Value::String(s)) => {
            let p = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<i64>().ok())
                .ok_or(IntOrPercentError::NotPercent)?;
            if p > 100 {
                return Err(IntOrPercentError::OverHundred);
            }
            Ok(p)
        }
        Some(_) => Err(IntOrPercentError::NotPercent),
    }
}

/// `ValidateDaemonSetUpdate`: the selector is immutable.
pub fn validate_update(obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate(obj);
    let sel = obj.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
    if Some(&sel) != old.pointer("/spec/selector") {
        errs.push(FieldError::invalid("spec.selector", sel, "field is immutable"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds() -> Value {
        json!({"metadata": {"name": "ds"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn defaults_and_generation() {
        let mut d = ds();
        set_defaults(&mut d);
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], json!(10));
        let mut od = json!({"spec": {"updateStrategy": {"type": "OnDelete"}}});
        set_defaults(&mut od);
        assert_eq!(od["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
        prepare_create(&mut d);
        assert_eq!(d["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION], json!("1"));
        assert_eq!(d["status"]["desiredNumberScheduled"], json!(0));
        let old = d.clone();
        let mut same = d.clone();
        same["spec"]["minReadySeconds"] = json!(5);
        prepare_update(&mut same, &old);
        assert_eq!(same["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION], json!("1"));
        let mut changed = d.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("alpine");
        changed["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION] = json!("9");
        prepare_update(&mut changed, &old);
        assert_eq!(changed["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION], json!("2"));
    }

    #[test]
    fn validation_messages() {
        let mut d = ds();
        set_defaults(&mut d);
        assert!(validate(&d).is_empty(), "{:?}", validate(&d));
        let mut bad = d.clone();
        bad["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "b"});
        bad["spec"]["updateStrategy"]["rollingUpdate"] = json!({"maxUnavailable": 0, "maxSurge": "0%"});
        let msgs: Vec<String> = validate(&bad).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "spec.template.metadata.labels: Invalid value: {\"app\":\"b\"}: `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ]
        );
        let mut bad_type = d.clone();
        bad_type["spec"]["updateStrategy"] = json!({"type": "Recreate"});
        assert_eq!(
            validate(&bad_type)[0].to_string(),
            "spec.updateStrategy.type: Unsupported value: \"Recreate\": supported values: \"OnDelete\", \"RollingUpdate\""
        );
        let mut moved = d.clone();
        moved["spec"]["selector"] = json!({"matchLabels": {"app": "a", "x": "y"}});
        moved["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        let errs = validate_update(&moved, &d);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().ends_with("field is immutable"), "{}", errs[0]);
    }
}
