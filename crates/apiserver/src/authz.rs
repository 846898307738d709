//! What a user may do. Until RBAC lands this is a fixed table of upstream's
//! bootstrap roles (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`):
//!
//! - `system:masters`: everything (as upstream, which never asks RBAC for them);
//! - `system:nodes`: everything for now (upstream narrows nodes with the Node
//!   authorizer and NodeRestriction; that comes with RBAC);
//! - `system:bootstrappers`: `system:node-bootstrapper`, i.e. create, get, list
//!   and watch CertificateSigningRequests — enough to trade a join token for
//!   the node's own certificate and nothing else;
//! - every authenticated user: discovery, `/version`, `/healthz`, OpenAPI
//!   (`system:discovery`, `system:public-info-viewer`), which the server
//!   answers before asking here.

use crate::authn::{User, BOOTSTRAPPERS, MASTERS, NODES};

/// `authorizer.Attributes` of a resource request.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// The Kubernetes verb of a request (`endpoints/request.RequestInfoFactory`).
pub fn verb(method: &http::Method, named: bool, watch: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
}

/// Allowed, or upstream's forbidden message (`forbiddenMessage` in
/// `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`).
pub fn authorize(user: &User, a: &Attributes<'_>) -> Result<(), String> {
    if user.in_group(MASTERS) || user.in_group(NODES) {
        return Ok(());
    }
    if user.in_group(BOOTSTRAPPERS)
        && a.group == "certificates.k8s.io"
        && a.resource == "certificatesigningrequests"
        && a.subresource.is_none()
        && matches!(a.verb, "create" | "get" | "list" | "watch")
    {
        return Ok(());
    }
    Err(forbidden_message(user, a))
}

fn forbidden_message(user: &User, a: &Attributes<'_>) -> String {
    let mut qualified = a.resource.to_string();
    if !a.group.is_empty() {
        qualified = format!("{qualified}.{}", a.group);
    }
    let resource = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let who = match a.namespace {
        Some(ns) => format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} in the namespace {ns:?}",
            user.name, a.verb, a.group
        ),
        None => format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            user.name, a.verb, a.group
        ),
    };
    match a.name {
        Some(n) => format!("{qualified} {n:?} is forbidden: {who}"),
        None => format!("{qualified} is forbidden: {who}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(verb: &'a str, group: &'a str, resource: &'a str, ns: Option<&'a str>) -> Attributes<'a> {
        Attributes { verb, group, resource, subresource: None, namespace: ns, name: None }
    }

    #[test]
    fn bootstrappers_only_ask_for_certificates() {
        let b = User::new("system:bootstrap:abcdef", [BOOTSTRAPPERS.to_string()]);
        assert!(authorize(&b, &attrs("create", "certificates.k8s.io", "certificatesigningrequests", None)).is_ok());
        assert!(authorize(&b, &attrs("watch", "certificates.k8s.io", "certificatesigningrequests", None)).is_ok());
        let mut approve = attrs("update", "certificates.k8s.io", "certificatesigningrequests", None);
        approve.subresource = Some("approval");
        assert!(authorize(&b, &approve).is_err());
        assert_eq!(
            authorize(&b, &attrs("list", "", "secrets", Some("kube-system"))).unwrap_err(),
            "secrets is forbidden: User \"system:bootstrap:abcdef\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
        );
        let mut named = attrs("get", "", "nodes", None);
        named.name = Some("n1");
        assert_eq!(
            authorize(&b, &named).unwrap_err(),
            "nodes \"n1\" is forbidden: User \"system:bootstrap:abcdef\" cannot get resource \"nodes\" in API group \"\" at the cluster scope"
        );
        assert!(authorize(&User::admin(), &attrs("delete", "", "secrets", Some("x"))).is_ok());
        let nobody = User::new("jane", []);
        assert!(authorize(&nobody, &attrs("get", "", "pods", Some("default"))).is_err());
    }

    #[test]
    fn verbs() {
        assert_eq!(verb(&http::Method::GET, false, true), "watch");
        assert_eq!(verb(&http::Method::GET, true, false), "get");
        assert_eq!(verb(&http::Method::DELETE, false, false), "deletecollection");
    }
}
