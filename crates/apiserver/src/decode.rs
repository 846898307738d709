//! Request bodies: JSON or YAML into an object, checked against its
//! Kubernetes type. Unknown fields are reported (Strict), warned about (Warn)
//! or dropped (Ignore), as upstream's `fieldValidation` does.

use crate::error::{ApiError, ApiResult};
use crate::resources::Resource;
use serde_json::Value;

/// Largest request body accepted (upstream's 3 MiB limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    /// The `fieldValidation` query parameter; upstream's default is Warn.
    pub fn parse(v: Option<&str>) -> ApiResult<FieldValidation> {
        match v {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn, or Strict, got {other:?}"
            ))),
        }
    }
}

/// Parse a body by content type (JSON, YAML; merge/json/strategic patch types are JSON).
pub fn parse_body(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    match ct {
        // Apply configurations are YAML (JSON is a subset).
        "application/yaml" | "application/apply-patch+yaml" => serde_yaml::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: yaml: {e}"))),
        // kubectl's typed commands (`create configmap|deployment|service ...`) send protobuf.
        apimachinery::protobuf::MEDIA_TYPE => apimachinery::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("decoding protobuf body: {e}"))),
        ""
        | "application/json"
        | "*/*"
        | "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json" => {
            serde_json::from_slice::<Value>(body).map_err(|e| ApiError::bad_request(format!("json: {e}")))
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Check an object posted to `r`: it is a JSON object of the right kind, and
/// decodes into the Kubernetes type. Returns the object as the type encodes
/// it (unknown fields dropped) and the warnings for Warn mode.
pub fn check_object(r: &Resource, obj: Value, mode: FieldValidation) -> ApiResult<(Value, Vec<String>)> {
    let cannot_handle = |why: String| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {why}",
            r.kind, r.version, r.kind
        ))
    };
    let mut obj = obj;
    let Some(m) = obj.as_object_mut() else {
        return Err(cannot_handle("the object is not a JSON object".into()));
    };
    // A typed endpoint defaults what the body leaves out from the URL
    // (`handlers/create.go`: `defaultGVK`).
    let kind = m.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let api_version = m.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    if kind.is_empty() {
        m.insert("kind".into(), Value::String(r.kind.to_string()));
    }
    if api_version.is_empty() {
        m.insert("apiVersion".into(), Value::String(r.api_version()));
    }
    if !kind.is_empty() && kind != r.kind {
        // The decoder reads the body's own kind, then cannot convert it into
        // the endpoint's type (`transformDecodeError`).
        let version = if api_version.is_empty() { r.api_version() } else { api_version.clone() };
        let short = version.rsplit('/').next().unwrap_or_default().to_string();
        let internal = if r.group.is_empty() { "core" } else { r.group.split('.').next().unwrap_or(r.group) };
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{short}\" cannot be handled as a {}: converting ({short}.{kind}) to ({internal}.{}): unknown conversion",
            r.kind, r.kind
        )));
    }
    if !api_version.is_empty() && api_version != r.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            r.api_version()
        )));
    }
    let typed = match crate::crd::custom(r) {
        // Custom objects: what the CRD's structural schema does not declare is
        // pruned (and reported like unknown fields of built-in types).
        Some(c) => {
            let mut t = obj.clone();
            if let Some(schema) = &c.version.schema {
                apimachinery::crd::schema::prune(&mut t, schema);
            }
            t
        }
        None => roundtrip(r.group, r.kind, &obj).map_err(cannot_handle)?,
    };
    let mut unknown = Vec::new();
    unknown_fields(&obj, &typed, String::new(), &mut unknown);
    if unknown.is_empty() || mode == FieldValidation::Ignore {
        return Ok((typed, Vec::new()));
    }
    let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    match mode {
        FieldValidation::Strict => Err(cannot_handle(format!("strict decoding error: {}", msgs.join(", ")))),
        _ => Ok((typed, msgs)),
    }
}

/// Decode into the k8s-openapi type of (group, kind) and encode back.
fn roundtrip(group: &str, kind: &str, obj: &Value) -> Result<Value, String> {
    use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc};
    fn rt<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Value, String> {
        let t: T = serde_json::from_value(v.clone()).map_err(|e| format!("json: {e}"))?;
        serde_json::to_value(&t).map_err(|e| e.to_string())
    }
    match (group, kind) {
        ("", "Namespace") => rt::<core::Namespace>(obj),
        ("", "Pod") => rt::<core::Pod>(obj),
        ("", "Service") => rt::<core::Service>(obj),
        ("", "Endpoints") => rt::<core::Endpoints>(obj),
        ("", "Node") => rt::<core::Node>(obj),
        ("", "Event") => rt::<core::Event>(obj),
        ("", "ConfigMap") => rt::<core::ConfigMap>(obj),
        ("", "Secret") => rt::<core::Secret>(obj),
        ("", "ServiceAccount") => rt::<core::ServiceAccount>(obj),
        ("apps", "ReplicaSet") => rt::<apps::ReplicaSet>(obj),
        ("apps", "Deployment") => rt::<apps::Deployment>(obj),
        ("apps", "DaemonSet") => rt::<apps::DaemonSet>(obj),
        ("apps", "ControllerRevision") => rt::<apps::ControllerRevision>(obj),
        ("batch", "Job") => rt::<k8s_openapi::api::batch::v1::Job>(obj),
        ("apps", "StatefulSet") => rt::<apps::StatefulSet>(obj),
        ("batch", "CronJob") => rt::<k8s_openapi::api::batch::v1::CronJob>(obj),
        ("discovery.k8s.io", "EndpointSlice") => rt::<disc::EndpointSlice>(obj),
        ("coordination.k8s.io", "Lease") => rt::<coord::Lease>(obj),
        ("autoscaling", "Scale") => rt::<k8s_openapi::api::autoscaling::v1::Scale>(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            rt::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(obj)
        }
        _ => Ok(obj.clone()),
    }
}

/// Paths (`spec.foo`, `spec.ports[0].bar`) present in `input` but not in `typed`.
fn unknown_fields(input: &Value, typed: &Value, path: String, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(tv) => unknown_fields(v, tv, p, out),
                    // Explicit nulls and empty values decode to "absent".
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                unknown_fields(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> &'static Resource {
        crate::resources::find("", "v1", "services").unwrap()
    }

    #[test]
    fn strict_reports_unknown_fields() {
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"foo": 1, "ports": [{"port": 80, "bar": true}]}});
        let err = check_object(svc(), obj.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "Service in version \"v1\" cannot be handled as a Service: strict decoding error: unknown field \"spec.foo\", unknown field \"spec.ports[0].bar\""
        );
        let (v, warnings) = check_object(svc(), obj, FieldValidation::Warn).unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(v.pointer("/spec/foo").is_none());
    }

    #[test]
    fn wrong_kind_is_refused() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "a"}});
        let e = check_object(svc(), obj, FieldValidation::Strict).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "ReplicaSet in version \"v1\" cannot be handled as a Service: converting (v1.ReplicaSet) to (core.Service): unknown conversion"
        );
        let obj = json!({"apiVersion": "v2", "kind": "Service", "metadata": {"name": "a"}});
        assert_eq!(
            check_object(svc(), obj, FieldValidation::Strict).unwrap_err().message,
            "the API version in the data (v2) does not match the expected API version (v1)"
        );
    }

    #[test]
    fn kind_and_version_default_from_the_url() {
        let (v, _) = check_object(svc(), json!({"metadata": {"name": "a"}}), FieldValidation::Strict).unwrap();
        assert_eq!(v["kind"], "Service");
        assert_eq!(v["apiVersion"], "v1");
    }
}
