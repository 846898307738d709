//! The CustomResourceDefinition object itself: defaults, validation with
//! upstream's messages (`apiextensions-apiserver/pkg/apis/apiextensions/validation`,
//! `.../apiserver/schema` structural checks), its status (`NamesAccepted`,
//! `Established`; upstream's naming and establishing controllers), and the
//! versions it serves.

use crate::field::FieldError;
use serde_json::{json, Value};

/// One served version of a CRD.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedVersion {
    pub name: String,
    /// `schema.openAPIV3Schema`.
    pub schema: Option<Value>,
    pub printer_columns: Vec<Value>,
    pub status: bool,
    /// `subresources.scale`: (specReplicasPath, statusReplicasPath, labelSelectorPath).
    pub scale: Option<(String, String, Option<String>)>,
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// Defaults of `spec.names` (singular, listKind) as upstream's `SetDefaults`.
pub fn default(obj: &mut Value) {
    let kind = str_at(obj, "/spec/names/kind").to_string();
    if let Some(names) = obj.pointer_mut("/spec/names").and_then(Value::as_object_mut) {
        if !names.contains_key("singular") && !kind.is_empty() {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if !names.contains_key("listKind") && !kind.is_empty() {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    if obj.pointer("/spec/conversion").is_none() {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("conversion".into(), json!({ "strategy": "None" }));
        }
    }
}

/// Validate a CRD (create and update).
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = str_at(obj, "/spec/group");
    let plural = str_at(obj, "/spec/names/plural");
    let kind = str_at(obj, "/spec/names/kind");
    let name = str_at(obj, "/metadata/name");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid("spec.group", group, "should be a domain with at least one dot"));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    } else if plural != plural.to_lowercase() {
        errs.push(FieldError::invalid(
            "spec.names.plural",
            plural,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ));
    }
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid("metadata.name", name, "must be spec.names.plural+\".\"+spec.group"));
    }
    match str_at(obj, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => errs.push(FieldError::required("spec.scope", "")),
        other => errs.push(FieldError::not_supported("spec.scope", other, &["Cluster", "Namespaced"])),
    }
    let versions = obj.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count();
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                Value::Array(versions.clone()),
                "must have exactly one version marked as storage version",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let mut unique = true;
        for (i, v) in versions.iter().enumerate() {
            let base = format!("spec.versions[{i}]");
            let name = str_at(v, "/name");
            unique &= seen.insert(name);
            if name.is_empty() {
                errs.push(FieldError::required(format!("{base}.name"), ""));
            } else {
                let msgs = crate::names::is_dns1035_label(name);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(format!("{base}.name"), name, msgs.join(",")));
                }
            }
            if let Some(scale) = v.pointer("/subresources/scale") {
                errs.extend(validate_scale(scale, &format!("{base}.subresources.scale")));
            }
            match v.pointer("/schema/openAPIV3Schema") {
                None => {
                    errs.push(FieldError::required(format!("{base}.schema.openAPIV3Schema"), "schemas are required"))
                }
                Some(s) => structural(s, &format!("{base}.schema.openAPIV3Schema"), true, &mut errs),
            }
        }
        if !unique {
            errs.push(FieldError::invalid(
                "spec.versions",
                Value::Array(versions.clone()),
                "must contain unique version names",
            ));
        }
    }
    errs
}

/// `subresources.scale`: the replica paths must be simple dot paths under
/// `.spec` / `.status` (`ValidateCustomResourceDefinitionSubresources`).
fn validate_scale(scale: &Value, base: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut path = |key: &str, under: &[&str], what: &str, required: bool| {
        let field = format!("{base}.{key}");
        let value = str_at(scale, &format!("/{key}"));
        if value.is_empty() {
            if required {
                errs.push(FieldError::required(field, ""));
            }
            return;
        }
        if !value.starts_with('.') {
            errs.push(FieldError::invalid(field, value, "must be a simple json path starting with ."));
        } else if !under.iter().any(|u| value.starts_with(u)) {
            errs.push(FieldError::invalid(field, value, format!("should be a json path under {what}")));
        }
    };
    path("specReplicasPath", &[".spec."], ".spec", true);
    path("statusReplicasPath", &[".status."], ".status", true);
    path("labelSelectorPath", &[".spec.", ".status."], "either .spec or .status", false);
    errs
}

/// The rules of a CRD update beyond those of a create
/// (`ValidateCustomResourceDefinitionSpecUpdate`, `...StoredVersions`):
/// group and plural name the storage, so they never change; scope and kind
/// not once the CRD is established; every stored version must stay listed.
/// `new` carries the status it will be stored with.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let established = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, "/type") == "Established" && str_at(c, "/status") == "True");
    let mut immutable = vec![("spec.group", "/spec/group"), ("spec.names.plural", "/spec/names/plural")];
    if established {
        immutable.splice(0..0, [("spec.scope", "/spec/scope"), ("spec.names.kind", "/spec/names/kind")]);
    }
    for (field, pointer) in immutable {
        let value = str_at(new, pointer);
        if value != str_at(old, pointer) {
            errs.push(FieldError::invalid(field, value, "field is immutable"));
        }
    }
    errs.extend(validate_stored_versions(new));
    errs
}

/// `status.storedVersions` names only versions still in `spec.versions`:
/// objects may be stored in them, so a version cannot be dropped before the
/// stored versions were migrated (and the status updated).
pub fn validate_stored_versions(obj: &Value) -> Vec<FieldError> {
    let listed: Vec<&str> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| str_at(v, "/name"))
        .collect();
    obj.pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, v)| {
            let name = v.as_str().unwrap_or_default();
            (!listed.contains(&name)).then(|| {
                FieldError::invalid(format!("status.storedVersions[{i}]"), name, "must appear in spec.versions")
            })
        })
        .collect()
}

/// The structural-schema rule every custom schema must follow: a type on
/// every node (unless int-or-string or preserving unknown fields), `object`
/// at the root (`apiextensions-apiserver/pkg/apiserver/schema/validation.go`).
fn structural(s: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    let ty = str_at(s, "/type");
    let flag = |k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
    if root {
        if ty.is_empty() {
            errs.push(FieldError::required(format!("{path}.type"), "must not be empty at the root"));
        } else if ty != "object" {
            errs.push(FieldError::invalid(format!("{path}.type"), ty, "must be object at the root"));
        }
    } else if ty.is_empty() && !flag("x-kubernetes-int-or-string") && !flag("x-kubernetes-preserve-unknown-fields") {
        errs.push(FieldError::required(format!("{path}.type"), "must not be empty for specified object fields"));
    }
    errs.extend(super::rules::check_schema(s, path));
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            structural(p, &format!("{path}.properties[{k}]"), false, errs);
        }
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        structural(items, &format!("{path}.items"), false, errs);
    }
    if let Some(add) = s.get("additionalProperties").filter(|a| a.is_object()) {
        structural(add, &format!("{path}.additionalProperties"), false, errs);
    }
}

/// The status the naming and establishing controllers would write: names
/// accepted, established, the stored versions.
pub fn status(obj: &Value, now: &str) -> Value {
    let names = obj.pointer("/spec/names").cloned().unwrap_or_else(|| json!({}));
    let storage: Vec<&str> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .collect();
    let mut stored: Vec<String> = obj
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    for s in storage {
        if !stored.iter().any(|x| x == s) {
            stored.push(s.to_string());
        }
    }
    json!({
        "conditions": [
            { "type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found" },
            { "type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted" },
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    })
}

/// The versions a CRD serves, in its order.
pub fn served_versions(obj: &Value) -> Vec<ServedVersion> {
    obj.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .map(|v| ServedVersion {
            name: str_at(v, "/name").to_string(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns: v.get("additionalPrinterColumns").and_then(Value::as_array).cloned().unwrap_or_default(),
            status: v.pointer("/subresources/status").is_some(),
            scale: v.pointer("/subresources/scale").map(|s| {
                (
                    str_at(s, "/specReplicasPath").to_string(),
                    str_at(s, "/statusReplicasPath").to_string(),
                    s.get("labelSelectorPath").and_then(Value::as_str).map(String::from),
                )
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::aggregate;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wg"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}}]}
        })
    }

    #[test]
    fn a_good_crd_defaults_and_validates() {
        let mut c = crd();
        default(&mut c);
        assert_eq!(c["spec"]["names"]["singular"], "widget");
        assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
        assert!(validate(&c).is_empty(), "{:?}", validate(&c));
        let st = status(&c, "2026-12-06T00:00:00Z");
        assert_eq!(st["storedVersions"], json!(["v1"]));
        assert_eq!(st["conditions"][1]["type"], "Established");
        let v = served_versions(&c);
        assert_eq!(v.len(), 1);
        assert!(v[0].status);
    }

    #[test]
    fn bad_crds_get_upstreams_messages() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong");
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = json!({"properties": {}});
        assert_eq!(
            aggregate(&validate(&c)),
            "[metadata.name: Invalid value: \"wrong\": must be spec.names.plural+\".\"+spec.group, spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields]"
        );
        let mut c = crd();
        c["spec"]["versions"][0]["storage"] = json!(false);
        assert!(aggregate(&validate(&c)).contains("must have exactly one version marked as storage version"));
    }

    #[test]
    fn scale_paths_and_version_names_are_checked() {
        let mut c = crd();
        c["spec"]["versions"][0]["name"] = json!("V1");
        c["spec"]["versions"][0]["subresources"]["scale"] = json!({"specReplicasPath": ".status.replicas", "statusReplicasPath": "status.replicas", "labelSelectorPath": ".metadata.labels"});
        let text = aggregate(&validate(&c));
        assert!(
            text.contains("spec.versions[0].name: Invalid value: \"V1\": a DNS-1035 label must consist of lower case"),
            "{text}"
        );
        assert!(text.contains("spec.versions[0].subresources.scale.specReplicasPath: Invalid value: \".status.replicas\": should be a json path under .spec"), "{text}");
        assert!(text.contains("spec.versions[0].subresources.scale.statusReplicasPath: Invalid value: \"status.replicas\": must be a simple json path starting with ."), "{text}");
        assert!(text.contains("spec.versions[0].subresources.scale.labelSelectorPath: Invalid value: \".metadata.labels\": should be a json path under either .spec or .status"), "{text}");
        let mut c = crd();
        c["spec"]["versions"][0]["subresources"]["scale"] = json!({});
        let text = aggregate(&validate(&c));
        assert!(text.contains("spec.versions[0].subresources.scale.specReplicasPath: Required value"), "{text}");
        assert!(text.contains("spec.versions[0].subresources.scale.statusReplicasPath: Required value"), "{text}");
        let mut c = crd();
        let v = c["spec"]["versions"][0].clone();
        c["spec"]["versions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "v1", "served": true, "storage": false, "schema": v["schema"]}));
        assert!(aggregate(&validate(&c)).contains("must contain unique version names"));
    }

    #[test]
    fn updates_keep_names_scope_and_stored_versions() {
        let mut old = crd();
        default(&mut old);
        old["status"] = status(&old, "2026-12-06T00:00:00Z");
        let mut new = old.clone();
        new["spec"]["scope"] = json!("Cluster");
        new["spec"]["names"]["plural"] = json!("gadgets");
        assert_eq!(
            aggregate(&validate_update(&new, &old)),
            "[spec.scope: Invalid value: \"Cluster\": field is immutable, spec.names.plural: Invalid value: \"gadgets\": field is immutable]"
        );
        // v1 is stored; replacing it by v2 alone would orphan stored objects.
        let mut new = old.clone();
        new["spec"]["versions"][0]["name"] = json!("v2");
        new["status"] = status(&new, "2026-12-06T00:00:00Z");
        assert_eq!(
            aggregate(&validate_update(&new, &old)),
            "status.storedVersions[0]: Invalid value: \"v1\": must appear in spec.versions"
        );
        // Adding v2 as the new storage version next to v1 is fine.
        let mut new = old.clone();
        new["spec"]["versions"][0]["storage"] = json!(false);
        let mut v2 = new["spec"]["versions"][0].clone();
        v2["name"] = json!("v2");
        v2["storage"] = json!(true);
        new["spec"]["versions"].as_array_mut().unwrap().push(v2);
        new["status"] = status(&new, "2026-12-06T00:00:00Z");
        assert!(validate_update(&new, &old).is_empty());
        assert_eq!(new["status"]["storedVersions"], json!(["v1", "v2"]));
    }
}
