//! API errors and their `metav1.Status` form, with upstream's codes, reasons
//! and messages (`k8s.io/apimachinery/pkg/api/errors/errors.go`).

use apimachinery::field::{aggregate, FieldError};
use serde_json::{json, Value};

/// A failed API request; becomes a `Status` body with the matching HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    /// `metav1.StatusReason`, e.g. `NotFound`.
    pub reason: &'static str,
    pub message: String,
    /// `details` of the Status (name, group, kind, causes, retryAfterSeconds).
    pub details: Option<Value>,
}

/// Identifies the object an error is about: `services "x"` / `replicasets.apps "x"`.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

impl Subject<'_> {
    /// Upstream's `qualifiedResource.String()`: `services`, `replicasets.apps`.
    fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    /// Upstream's `qualifiedKind.String()`: `Service`, `ReplicaSet.apps`.
    fn kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
    fn details(&self) -> Value {
        let mut d = json!({ "name": self.name, "kind": self.plural });
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }
    pub fn not_found(s: Subject<'_>) -> Self {
        ApiError {
            details: Some(s.details()),
            ..Self::new(404, "NotFound", format!("{} \"{}\" not found", s.resource(), s.name))
        }
    }
    pub fn already_exists(s: Subject<'_>) -> Self {
        ApiError {
            details: Some(s.details()),
            ..Self::new(409, "AlreadyExists", format!("{} \"{}\" already exists", s.resource(), s.name))
        }
    }
    pub fn conflict(s: Subject<'_>, why: &str) -> Self {
        ApiError {
            details: Some(s.details()),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {} \"{}\": {why}", s.resource(), s.name),
            )
        }
    }
    /// The optimistic-concurrency conflict every client knows.
    pub fn modified(s: Subject<'_>) -> Self {
        Self::conflict(s, "the object has been modified; please apply your changes to the latest version and try again")
    }
    /// 422 with field causes: `Service "x" is invalid: spec.ports[0].name: Required value`.
    pub fn invalid(s: Subject<'_>, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({ "reason": e.kind.cause_type(), "message": e.body(), "field": e.field }))
            .collect();
        let mut details = json!({ "name": s.name, "kind": s.kind, "causes": causes });
        if !s.group.is_empty() {
            details["group"] = json!(s.group);
        }
        ApiError {
            details: Some(details),
            ..Self::new(422, "Invalid", format!("{} \"{}\" is invalid: {}", s.kind(), s.name, aggregate(errors)))
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }
    /// 403 from the authorizer: `message` is already upstream's whole sentence.
    pub fn forbidden_message(r: &crate::resources::Resource, name: Option<&str>, message: String) -> Self {
        let mut details = serde_json::json!({ "kind": r.plural });
        if !r.group.is_empty() {
            details["group"] = serde_json::json!(r.group);
        }
        if let Some(n) = name {
            details["name"] = serde_json::json!(n);
        }
        ApiError { details: Some(details), ..Self::new(403, "Forbidden", message) }
    }
    /// 403 for a non-resource URL (`forbiddenMessage` without a resource).
    pub fn forbidden_non_resource(user: &str, verb: &str, path: &str) -> Self {
        Self::new(403, "Forbidden", format!("forbidden: User {user:?} cannot {verb} path {path:?}"))
    }
    pub fn forbidden(s: Subject<'_>, why: &str) -> Self {
        ApiError {
            details: Some(s.details()),
            ..Self::new(403, "Forbidden", format!("{} \"{}\" is forbidden: {why}", s.resource(), s.name))
        }
    }
    pub fn method_not_supported(resource: &str, action: &str) -> Self {
        Self::new(405, "MethodNotAllowed", format!("{action} is not supported on resources of kind \"{resource}\""))
    }
    /// 410 for a list or watch from a compacted revision.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Gone", message)
    }
    pub fn too_large() -> Self {
        Self::new(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
    }
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"))
    }
    pub fn not_acceptable() -> Self {
        Self::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }
    /// Plain 404 for a path that names no resource.
    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// The `metav1.Status` JSON for this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::Compacted { requested, compacted } => {
                ApiError::expired(format!("too old resource version: {requested} ({compacted})"))
            }
            store::Error::FutureRevision { requested, current } => {
                ApiError::timeout(format!("Too large resource version: {requested}, current: {current}"))
            }
            // kube-apiserver answers 503 while etcd has no leader or cannot be reached.
            e @ store::Error::Unavailable { .. } => ApiError::new(503, "ServiceUnavailable", e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
