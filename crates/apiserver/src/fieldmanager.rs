//! Field ownership on every write (`metadata.managedFields`) and server-side
//! apply, the API server's side of `apimachinery::smd`. Upstream:
//! `k8s.io/apiserver/pkg/endpoints/handlers/{patch,update,create}.go` and
//! `k8s.io/apimachinery/pkg/util/managedfields`.

use crate::error::{ApiError, ApiResult, Subject};
use crate::resources::Resource;
use apimachinery::field::FieldError;
use apimachinery::smd::{managed, scale, schema};
use serde_json::{json, Value};

/// How a write records field ownership.
#[derive(Clone, Debug)]
pub enum Tracking {
    /// An Update operation by this manager (create, PUT, non-apply PATCH).
    Update(String),
    /// The object's `managedFields` were set by an apply; store them as they are.
    Applied,
    /// Not tracked (upstream's binding subresource writes without a field manager).
    Untracked,
}

/// Server-side apply's view of `r`'s objects: the CRD schema's for custom
/// resources, the built-in table otherwise.
fn shape_of(r: &Resource) -> &'static schema::Shape {
    match crate::crd::custom(r) {
        Some(c) => c.shape,
        None => schema::for_kind(r.group, r.kind),
    }
}

/// Upstream's longest manager name (`ValidateFieldManager`).
const MAX_MANAGER_LEN: usize = 128;

/// The manager of a request: `?fieldManager=`, else the user agent up to its
/// first `/` (`prefixFromUserAgent`), else "unknown".
pub fn manager_name(field_manager: Option<&str>, user_agent: &str) -> ApiResult<String> {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        validate_manager(m)?;
        return Ok(m.to_string());
    }
    let prefix: String = user_agent.split('/').next().unwrap_or_default().chars().take(MAX_MANAGER_LEN).collect();
    Ok(if prefix.is_empty() { "unknown".into() } else { prefix })
}

fn patch_options_invalid(errs: &[FieldError]) -> ApiError {
    ApiError::invalid(Subject { group: "meta.k8s.io", plural: "patchoptions", kind: "PatchOptions", name: "" }, errs)
}

fn validate_manager(m: &str) -> ApiResult<()> {
    if m.chars().count() > MAX_MANAGER_LEN {
        return Err(patch_options_invalid(&[FieldError::too_long("fieldManager", MAX_MANAGER_LEN)]));
    }
    if m.chars().any(|c| c.is_control()) {
        return Err(patch_options_invalid(&[FieldError::invalid(
            "fieldManager",
            m,
            "must only contain printable characters",
        )]));
    }
    Ok(())
}

/// The apply-only options: a manager is required; `force` is only for apply.
pub fn apply_manager(field_manager: Option<&str>) -> ApiResult<String> {
    match field_manager.filter(|m| !m.is_empty()) {
        None => Err(patch_options_invalid(&[FieldError::required("fieldManager", "is required for apply patch")])),
        Some(m) => {
            validate_manager(m)?;
            Ok(m.to_string())
        }
    }
}

pub fn check_force_only_for_apply(force: Option<&str>, apply: bool) -> ApiResult<()> {
    if force.is_some() && !apply {
        return Err(patch_options_invalid(&[FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        )]));
    }
    Ok(())
}

fn writer<'a>(manager: &'a str, api_version: &'a str, sub: Option<&'a str>, now: &'a str) -> managed::Writer<'a> {
    managed::Writer { manager, api_version, subresource: sub.unwrap_or_default(), now }
}

/// Record an Update of `old` (absent on create) into `new` by `manager`: sets
/// `new.metadata.managedFields`. A body's own `managedFields` replace the live
/// ones when valid, and `[{}]` resets them (`decodeLiveOrNew`).
pub fn track_update(r: &Resource, manager: &str, sub: Option<&str>, old: Option<&Value>, new: &mut Value) {
    let live_entries = match old {
        Some(o) => managed::decode(o.pointer("/metadata/managedFields")).unwrap_or_default(),
        None => Vec::new(),
    };
    let entries = managed::requested_or_live(new.pointer("/metadata/managedFields"), live_entries.clone());
    let shape = shape_of(r);
    let live = match old {
        Some(o) => managed::strip(o),
        None => schema::zero_object(r.group, r.kind),
    };
    let now = crate::registry::now_rfc3339();
    let api_version = r.api_version();
    let entries = match managed::update(
        entries,
        &live,
        &managed::strip(new),
        shape,
        &writer(manager, &api_version, sub, &now),
    ) {
        Ok(es) => es,
        Err(e) => {
            // Upstream logs and leaves the fields as they were (`UpdateNoErrors`).
            tracing::warn!(kind = r.kind, error = %e, "managed fields not updated: the object does not fit its schema");
            live_entries
        }
    };
    set_entries(new, &entries);
}

pub fn set_entries(obj: &mut Value, entries: &[managed::Entry]) {
    if let Some(meta) = crate::object::meta_mut(obj) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), managed::encode(entries));
        }
    }
}

/// An apply request's configuration, checked as upstream does before merging.
#[derive(Debug)]
pub struct ApplyConfig {
    /// The typed configuration (unknown fields dropped), reset fields removed.
    pub object: Value,
    pub warnings: Vec<String>,
}

/// Check an apply body: an object of this endpoint's kind and version, no
/// `managedFields`, fields known to the type (`fieldValidation`), and only
/// the fields the endpoint writes (`status` on `/status`, the rest elsewhere:
/// upstream's reset fields).
pub fn apply_config(
    r: &'static Resource,
    name: &str,
    ns: Option<&str>,
    body: Value,
    mode: crate::decode::FieldValidation,
    sub: Option<&str>,
) -> ApiResult<ApplyConfig> {
    if !body.is_object() {
        return Err(ApiError::bad_request("error decoding patch: the apply configuration is not a JSON object"));
    }
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version != r.api_version() {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {}",
            r.api_version()
        )));
    }
    if kind != r.kind {
        return Err(ApiError::bad_request(format!(
            "invalid object type: {}, Kind={kind}",
            if r.group.is_empty() { r.version.to_string() } else { r.api_version() }
        )));
    }
    if body.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let body_name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(ns), Some(b)) = (ns, body.pointer("/metadata/namespace").and_then(Value::as_str)) {
        if !b.is_empty() && b != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let (mut object, warnings) = crate::decode::check_object(r, body, mode).map_err(|e| {
        // Upstream's wording for fields the type does not have.
        match e.message.split_once("strict decoding error: ") {
            Some((_, fields)) => ApiError::bad_request(format!(
                "failed to create typed patch object ({}; {}, Kind={}): {}",
                match ns {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.to_string(),
                },
                r.api_version(),
                r.kind,
                fields
                    .replace("unknown field \"", ".")
                    .replace('"', "")
                    .replace(", ", ": field not declared in schema, ")
                    + ": field not declared in schema"
            )),
            None => e,
        }
    })?;
    if let Some(m) = object.as_object_mut() {
        match sub {
            Some("status") => m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")),
            _ if r.status => {
                m.remove("status");
            }
            _ => {}
        }
    }
    Ok(ApplyConfig { object, warnings })
}

/// Apply `config` by `manager` to `live` (None: the object does not exist
/// yet). Returns the object to write, with its `managedFields` set.
pub fn apply(
    r: &'static Resource,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    sub: Option<&str>,
    force: bool,
) -> ApiResult<Value> {
    let shape = shape_of(r);
    let zero = schema::zero_object(r.group, r.kind);
    let now = crate::registry::now_rfc3339();
    let api_version = r.api_version();
    let w = writer(manager, &api_version, sub, &now);
    let cfg = managed::strip(config);
    let (live_stripped, entries) = match live {
        Some(o) => (
            managed::strip(o),
            managed::decode(o.pointer("/metadata/managedFields"))
                .map_err(|e| ApiError::internal(format!("decoding the live object's managedFields: {e}")))?,
        ),
        None => (zero.clone(), Vec::new()),
    };
    let (merged, entries) =
        managed::apply(entries, &live_stripped, &cfg, shape, &zero, &w, force).map_err(apply_error)?;
    // On create the result is the configuration itself, not merged into the
    // Go zero value upstream compares against.
    let mut out = if live.is_none() { cfg } else { merged };
    if let Some(m) = out.as_object_mut() {
        m.insert("apiVersion".into(), json!(r.api_version()));
        m.insert("kind".into(), json!(r.kind));
        if !m.get("metadata").is_some_and(Value::is_object) {
            m.insert("metadata".into(), json!({}));
        }
    }
    // Server-set metadata comes from the live object (or the URL on create).
    let source = live.cloned().unwrap_or_else(|| config.clone());
    if let (Some(meta), Some(src)) = (crate::object::meta_mut(&mut out), source.get("metadata")) {
        for f in ["name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"] {
            match src.get(f) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        // The live resourceVersion is not a precondition of the merge.
        meta.remove("resourceVersion");
    }
    set_entries(&mut out, &entries);
    Ok(out)
}

/// The Scale's `managedFields`: the managers of its parent's replicas field
/// (`ScaleHandler.ToSubresource`).
pub fn scale_entries(parent: &Value, spec_replicas: &str) -> Vec<managed::Entry> {
    let entries = managed::decode(parent.pointer("/metadata/managedFields")).unwrap_or_default();
    scale::to_subresource(&entries, &scale::field_path(spec_replicas))
}

/// Apply `config` (an autoscaling/v1 Scale) by `manager` to `live_scale`,
/// the Scale of `parent`, with conflicts among the Scale's managers as
/// upstream's scale field manager has them. Returns the merged Scale and the
/// parent's new entries (`ScaleHandler.ToParent`).
pub fn apply_scale(
    r: &Resource,
    parent: &Value,
    live_scale: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    spec_replicas: &str,
) -> ApiResult<(Value, Vec<managed::Entry>)> {
    let path = scale::field_path(spec_replicas);
    let parent_entries = managed::decode(parent.pointer("/metadata/managedFields"))
        .map_err(|e| ApiError::internal(format!("decoding the live object's managedFields: {e}")))?;
    let entries = scale::to_subresource(&parent_entries, &path);
    let shape = schema::for_kind("autoscaling", "Scale");
    let zero = json!({ "metadata": {}, "spec": {}, "status": {} });
    let now = crate::registry::now_rfc3339();
    let w = writer(manager, scale::SCALE_API_VERSION, Some("scale"), &now);
    let (merged, entries) =
        managed::apply(entries, &managed::strip(live_scale), &managed::strip(config), shape, &zero, &w, force)
            .map_err(apply_error)?;
    Ok((merged, scale::to_parent(&parent_entries, &entries, &path, &r.api_version())))
}

/// A failed apply as the API answers it: conflicts are 409, a configuration
/// or object that does not fit the schema 500 (upstream's text).
fn apply_error(e: managed::ApplyError) -> ApiError {
    match e {
        managed::ApplyError::Conflicts(list) => conflict_error(&list),
        managed::ApplyError::Type(e) => {
            ApiError::new(500, "InternalError", format!("failed to create typed patch object: {e}"))
        }
    }
}

/// 409 with the conflicting fields as causes (`managedfields/internal/conflict.go`).
fn conflict_error(list: &managed::ConflictList) -> ApiError {
    let causes: Vec<Value> = list
        .0
        .iter()
        .map(|c| {
            json!({ "reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.path_string() })
        })
        .collect();
    ApiError { details: Some(json!({ "causes": causes })), ..ApiError::new(409, "Conflict", list.to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_from_query_or_user_agent() {
        assert_eq!(manager_name(Some("helm"), "x/1").unwrap(), "helm");
        assert_eq!(manager_name(None, "kubectl/v1.33.0 (linux/amd64)").unwrap(), "kubectl");
        assert_eq!(manager_name(None, "").unwrap(), "unknown");
        assert_eq!(apply_manager(None).unwrap_err().code, 422);
        assert_eq!(
            apply_manager(None).unwrap_err().message,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        assert_eq!(check_force_only_for_apply(Some("true"), false).unwrap_err().code, 422);
    }

    #[test]
    fn apply_config_checks_version_kind_and_fields() {
        let r = crate::resources::find("apps", "v1", "deployments").unwrap();
        let mode = crate::decode::FieldValidation::Strict;
        let e =
            apply_config(r, "web", Some("default"), json!({"apiVersion": "apps/v2", "kind": "Deployment"}), mode, None)
                .unwrap_err();
        assert_eq!(
            e.message,
            "Incorrect version specified in apply patch. Specified patch version: apps/v2, expected: apps/v1"
        );
        let body =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "managedFields": []}});
        assert_eq!(
            apply_config(r, "web", None, body, mode, None).unwrap_err().message,
            "metadata.managedFields must be nil"
        );
        let body =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"foo": 1}});
        assert_eq!(
            apply_config(r, "web", Some("default"), body, mode, None).unwrap_err().message,
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.foo: field not declared in schema"
        );
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "status": {"replicas": 1}});
        assert!(apply_config(r, "web", None, body, mode, None).unwrap().object.get("status").is_none());
    }
}
