//! `authorization.k8s.io/v1` reviews, answered by the authorizer without
//! storing anything (`pkg/registry/authorization/*`): SelfSubjectAccessReview
//! (`kubectl auth can-i`), SubjectAccessReview and LocalSubjectAccessReview
//! (what an arbitrary user may do), and `authentication.k8s.io/v1`
//! SelfSubjectReview (`kubectl auth whoami`).

use crate::authn::User;
use crate::authz::{self, Attributes};
use crate::error::{ApiError, ApiResult};
use apimachinery::rbac::Policy;
use serde_json::{json, Value};

/// The review kinds, by plural.
pub fn is_review(group: &str, plural: &str) -> bool {
    matches!(
        (group, plural),
        ("authorization.k8s.io", "selfsubjectaccessreviews" | "subjectaccessreviews" | "localsubjectaccessreviews")
            | ("authentication.k8s.io", "selfsubjectreviews")
    )
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Answers a review `body` of `plural` (namespace of the URL for the local one)
/// asked by `asker`.
pub fn answer(
    asker: &User,
    policy: &Policy,
    plural: &str,
    namespace: Option<&str>,
    mut body: Value,
) -> ApiResult<Value> {
    if plural == "selfsubjectreviews" {
        let mut info = json!({"username": asker.name, "groups": asker.groups});
        if !asker.uid.is_empty() {
            info["uid"] = json!(asker.uid);
        }
        body["status"] = json!({"userInfo": info});
        body["metadata"] = json!({"creationTimestamp": null});
        return Ok(body);
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let subject = match plural {
        "selfsubjectaccessreviews" => asker.clone(),
        _ => {
            let user = s(&spec, "user");
            let groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            if user.is_empty() && groups.is_empty() {
                return Err(ApiError::invalid(
                    crate::error::Subject {
                        group: "authorization.k8s.io",
                        plural,
                        kind: "SubjectAccessReview",
                        name: "",
                    },
                    &[apimachinery::field::FieldError::invalid(
                        "spec.user",
                        "",
                        "at least one of user or group must be specified",
                    )],
                ));
            }
            User { name: user.to_string(), uid: s(&spec, "uid").to_string(), groups }
        }
    };
    let (allowed, reason) = if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let ns = match (plural, namespace) {
            ("localsubjectaccessreviews", Some(ns)) => Some(ns),
            _ => Some(s(r, "namespace")).filter(|n| !n.is_empty()),
        };
        let sub = Some(s(r, "subresource")).filter(|x| !x.is_empty());
        let name = Some(s(r, "name")).filter(|x| !x.is_empty());
        let a = Attributes {
            verb: s(r, "verb"),
            group: s(r, "group"),
            resource: s(r, "resource"),
            subresource: sub,
            namespace: ns,
            name,
        };
        match authz::authorize(&subject, &a, policy, None) {
            Ok(why) => (true, why),
            Err(_) => (false, String::new()),
        }
    } else if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
        let ok = authz::authorize_path(&subject, s(n, "verb"), s(n, "path"), policy);
        (ok, String::new())
    } else {
        return Err(ApiError::bad_request("a review needs spec.resourceAttributes or spec.nonResourceAttributes"));
    };
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    body["status"] = status;
    body["metadata"] = json!({"creationTimestamp": null});
    Ok(body)
}
