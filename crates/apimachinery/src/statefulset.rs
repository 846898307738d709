//! StatefulSet API rules: v1 defaults (`pkg/apis/apps/v1/defaults.go`
//! `SetDefaults_StatefulSet`, with the GA gates of v1.33: StatefulSetAutoDeletePVC
//! on, MaxUnavailableStatefulSet off), the registry strategy's empty status
//! (`pkg/registry/apps/statefulset/strategy.go`) and validation
//! (`pkg/apis/apps/validation/validation.go` `ValidateStatefulSet*`). Objects are
//! the v1 JSON form; the pod template's own defaults are applied by the caller.
//!
//! `volumeClaimTemplates` are accepted and stored but nothing provisions volumes
//! yet (rkube has no PersistentVolumeClaims): the controller ignores them.

use crate::defaulting::set_if_unset;
use crate::field::FieldError;
use crate::names::{is_dns1123_label, validate_nonnegative};
use crate::selector::LabelSelector;
use serde_json::{json, Value};

/// `SetDefaults_StatefulSet`: podManagementPolicy OrderedReady, updateStrategy
/// RollingUpdate with partition 0, PVC retention Retain/Retain, replicas 1,
/// revisionHistoryLimit 10.
pub fn set_defaults(obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    set_if_unset(spec, "podManagementPolicy", json!("OrderedReady"));
    set_if_unset(spec, "updateStrategy", json!({}));
    let strategy = &mut spec["updateStrategy"];
    if strategy.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
        strategy["type"] = json!("RollingUpdate");
        set_if_unset(strategy, "rollingUpdate", json!({}));
    }
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
        && strategy.get("rollingUpdate").is_some_and(Value::is_object)
    {
        set_if_unset(&mut strategy["rollingUpdate"], "partition", json!(0));
    }
    set_if_unset(spec, "persistentVolumeClaimRetentionPolicy", json!({}));
    let policy = &mut spec["persistentVolumeClaimRetentionPolicy"];
    set_if_unset(policy, "whenDeleted", json!("Retain"));
    set_if_unset(policy, "whenScaled", json!("Retain"));
    set_if_unset(spec, "replicas", json!(1));
    set_if_unset(spec, "revisionHistoryLimit", json!(10));
}

/// `PrepareForCreate`: an empty status (`replicas` and `availableReplicas` are
/// not omitempty in v1).
pub fn prepare_create(obj: &mut Value) {
    obj["status"] = json!({ "replicas": 0, "availableReplicas": 0 });
}

fn validate_retention(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(policy) = spec.get("persistentVolumeClaimRetentionPolicy").filter(|p| !p.is_null()) else {
        return errs;
    };
    for field in ["whenDeleted", "whenScaled"] {
        let v = policy.get(field).and_then(Value::as_str).unwrap_or_default();
        if v != "Retain" && v != "Delete" {
            errs.push(FieldError::not_supported(
                format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                v,
                &["Retain", "Delete"],
            ));
        }
    }
    errs
}

fn validate_strategy(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let strategy = spec.get("updateStrategy").cloned().unwrap_or_else(|| json!({}));
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match strategy.get("type").and_then(Value::as_str).unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(r) = rolling {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    r.clone(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            // `validateRollingUpdateStatefulSet` (maxUnavailable is behind a disabled gate).
            if let Some(p) = rolling.and_then(|r| r.get("partition")).and_then(Value::as_i64) {
                errs.extend(validate_nonnegative(p, "spec.updateStrategy.rollingUpdate.partition"));
            }
        }
        _ => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            strategy.clone(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    errs
}

/// `ValidateStatefulSetSpec` (metadata is validated by the caller; the name
/// must be a DNS-1123 label, `ValidateStatefulSetName`).
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    match spec.get("podManagementPolicy").and_then(Value::as_str).unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => {
            errs.push(FieldError::invalid("spec.podManagementPolicy", other, "must be 'OrderedReady' or 'Parallel'"))
        }
    }
    errs.extend(validate_strategy(&spec));
    errs.extend(validate_retention(&spec));
    for field in ["replicas", "minReadySeconds"] {
        if let Some(n) = spec.get(field).and_then(Value::as_i64) {
            errs.extend(validate_nonnegative(n, &format!("spec.{field}")));
        }
    }
    if let Some(n) = spec.pointer("/ordinals/start").and_then(Value::as_i64) {
        errs.extend(validate_nonnegative(n, "spec.ordinals.start"));
    }
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            let empty = sel.get("matchLabels").and_then(Value::as_object).is_none_or(|m| m.is_empty())
                && sel.get("matchExpressions").and_then(Value::as_array).is_none_or(|a| a.is_empty());
            if empty {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    sel.clone(),
                    "empty selector is invalid for statefulset",
                ));
            }
            match LabelSelector::from_label_selector(sel) {
                Err(e) => errs.push(FieldError::invalid("spec.selector", sel.clone(), e.0)),
                Ok(s) => {
                    // `ValidatePodTemplateSpecForStatefulSet`: only a non-empty selector is checked.
                    let template = spec.get("template").cloned().unwrap_or_default();
                    if !empty && !s.matches_object(&template) {
                        let labels = template.pointer("/metadata/labels").cloned().unwrap_or(Value::Null);
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
    if spec.pointer("/template/spec/activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    errs
}

/// `spec.serviceName`, when set, names a Service (a DNS-1123 label): checked on
/// create, and on update only when it changed (upstream keeps accepting old
/// objects with names that were allowed before).
pub fn validate_service_name(obj: &Value) -> Vec<FieldError> {
    let name = obj.pointer("/spec/serviceName").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Vec::new();
    }
    is_dns1123_label(name).into_iter().map(|m| FieldError::invalid("spec.serviceName", name, m)).collect()
}

/// Fields of `spec` that may change after creation (`ValidateStatefulSetUpdate`,
/// v1.33: `revisionHistoryLimit` became mutable only in v1.34).
const MUTABLE: &[&str] =
    &["replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds"];

/// `ValidateStatefulSetUpdate`: the spec rules, then every field but the
/// mutable ones must be unchanged.
pub fn validate_update(obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate(obj);
    let strip = |v: &Value| {
        let mut spec = v.get("spec").cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = spec.as_object_mut() {
            for f in MUTABLE {
                m.remove(*f);
            }
            // Go's semantic equality: absent and empty are the same.
            m.retain(|_, v| !(v.is_null() || v == &json!("") || v == &json!([]) || v == &json!({})));
        }
        spec
    };
    if strip(obj) != strip(old) {
        errs.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"restartPolicy": "Always",
                "containers": [{"name": "c", "image": "pause"}]}}}})
    }

    #[test]
    fn defaults() {
        let mut s = sts();
        set_defaults(&mut s);
        let spec = &s["spec"];
        assert_eq!(spec["podManagementPolicy"], json!("OrderedReady"));
        assert_eq!(spec["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!((spec["replicas"].clone(), spec["revisionHistoryLimit"].clone()), (json!(1), json!(10)));
        // An explicit RollingUpdate without parameters keeps them unset; OnDelete stays.
        let mut ru = sts();
        ru["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
        set_defaults(&mut ru);
        assert_eq!(ru["spec"]["updateStrategy"], json!({"type": "RollingUpdate"}));
        let mut od = sts();
        od["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        od["spec"]["replicas"] = json!(0);
        set_defaults(&mut od);
        assert_eq!(od["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
        assert_eq!(od["spec"]["replicas"], json!(0));
        prepare_create(&mut od);
        assert_eq!(od["status"], json!({"replicas": 0, "availableReplicas": 0}));
    }

    fn msgs(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn validation_messages() {
        let mut s = sts();
        set_defaults(&mut s);
        assert!(validate(&s).is_empty(), "{:?}", validate(&s));
        assert!(validate_service_name(&s).is_empty());
        let mut bad = s.clone();
        bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        bad["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        bad["spec"]["podManagementPolicy"] = json!("Fast");
        bad["spec"]["replicas"] = json!(-1);
        assert_eq!(
            msgs(validate(&bad)),
            vec![
                "spec.podManagementPolicy: Invalid value: \"Fast\": must be 'OrderedReady' or 'Parallel'",
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
        let mut od = s.clone();
        od["spec"]["updateStrategy"] = json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}});
        assert_eq!(
            msgs(validate(&od)),
            vec!["spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy 'RollingUpdate'"]
        );
        let mut none = s.clone();
        none["spec"]["selector"] = json!({});
        assert_eq!(
            msgs(validate(&none)),
            vec!["spec.selector: Invalid value: {}: empty selector is invalid for statefulset"]
        );
        let mut svc = s.clone();
        svc["spec"]["serviceName"] = json!("Web_1");
        assert!(msgs(validate_service_name(&svc))[0]
            .starts_with("spec.serviceName: Invalid value: \"Web_1\": a lowercase RFC 1123 label"));
    }

    #[test]
    fn only_some_fields_are_mutable() {
        let mut s = sts();
        set_defaults(&mut s);
        let mut scaled = s.clone();
        scaled["spec"]["replicas"] = json!(5);
        scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox");
        scaled["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        scaled["spec"]["minReadySeconds"] = json!(3);
        assert!(validate_update(&scaled, &s).is_empty());
        for (field, value) in [
            ("serviceName", json!("other")),
            ("podManagementPolicy", json!("Parallel")),
            ("revisionHistoryLimit", json!(3)),
        ] {
            let mut changed = s.clone();
            changed["spec"][field] = value;
            assert_eq!(
                msgs(validate_update(&changed, &s)),
                vec!["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"],
                "{field}"
            );
        }
    }
}
