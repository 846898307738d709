//! Turning a request path and query into what it asks for (upstream
//! `k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`).

use crate::resources::{self, Resource};
use std::collections::HashMap;

/// A request for a resource: which collection, which object, which subresource.
#[derive(Debug)]
pub struct ResourceRequest {
    pub resource: &'static Resource,
    /// Namespace from the path (`None` for cluster-scoped or all-namespaces requests).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// What a path names.
#[derive(Debug)]
pub enum Target {
    Resource(ResourceRequest),
    /// `/api`, `/apis`, `/api/v1`, `/apis/<g>`, `/apis/<g>/<v>`.
    Discovery(DiscoveryPath),
    /// `/openapi/v2`, `/openapi/v3`, `/openapi/v3/<gv path>`.
    OpenApi(String),
    Version,
    Health(&'static str),
    Metrics,
    /// `/cacerts`: the cluster CA bundle, unauthenticated (as k3s serves it), so a
    /// joining agent can check it against its token's CA hash.
    CaCerts,
    /// `/.well-known/openid-configuration` and `/openid/v1/jwks`: the
    /// ServiceAccount issuer's discovery document and public keys.
    OpenIdConfiguration,
    Jwks,
    NotFound,
}

#[derive(Debug)]
pub enum DiscoveryPath {
    Api,
    Apis,
    CoreVersion(String),
    Group(String),
    GroupVersion(String, String),
}

/// Parse a URL path (already percent-decoded segments are not needed:
/// Kubernetes names cannot contain `/` or `%`).
pub fn parse_path(path: &str) -> Target {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["healthz", ..] => Target::Health("healthz"),
        ["livez", ..] => Target::Health("livez"),
        ["readyz", ..] => Target::Health("readyz"),
        ["version"] => Target::Version,
        ["metrics"] => Target::Metrics,
        ["cacerts"] => Target::CaCerts,
        [".well-known", "openid-configuration"] => Target::OpenIdConfiguration,
        ["openid", "v1", "jwks"] => Target::Jwks,
        ["openapi", rest @ ..] => Target::OpenApi(rest.join("/")),
        ["api"] => Target::Discovery(DiscoveryPath::Api),
        ["apis"] => Target::Discovery(DiscoveryPath::Apis),
        ["api", v] => Target::Discovery(DiscoveryPath::CoreVersion(v.to_string())),
        ["apis", g] => Target::Discovery(DiscoveryPath::Group(g.to_string())),
        ["apis", g, v] => Target::Discovery(DiscoveryPath::GroupVersion(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => resource_target("", v, rest),
        ["apis", g, v, rest @ ..] => resource_target(g, v, rest),
        _ => Target::NotFound,
    }
}

fn resource_target(group: &str, version: &str, rest: &[&str]) -> Target {
    // `/namespaces/<ns>/<resource>...`, except `/namespaces/<name>/status|finalize`,
    // which are subresources of the namespace object itself.
    let namespace_sub = group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize");
    let (namespace, rest) = if rest.len() >= 3 && rest[0] == "namespaces" && !namespace_sub {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Target::NotFound,
    };
    let Some(resource) = resources::find(group, version, plural) else {
        return Target::NotFound;
    };
    if namespace.is_some() && !resource.namespaced {
        return Target::NotFound;
    }
    Target::Resource(ResourceRequest { resource, namespace, name, subresource: sub })
}

/// Query parameters, decoded.
#[derive(Debug, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut map = HashMap::new();
        if let Some(q) = q {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                map.insert(k.into_owned(), v.into_owned());
            }
        }
        Query(map)
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }
    /// `true`, `1` and the like, as Go's strconv.ParseBool.
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
    }
    pub fn int(&self, k: &str) -> Option<i64> {
        self.get(k).and_then(|v| v.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceRequest {
        match parse_path(path) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_resource_paths() {
        let r = res("/api/v1/namespaces/default/services/mynapp-svc");
        assert_eq!(
            (r.resource.plural, r.namespace.as_deref(), r.name.as_deref()),
            ("services", Some("default"), Some("mynapp-svc"))
        );
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!((r.resource.plural, r.namespace, r.name.as_deref()), ("namespaces", None, Some("kube-system")));
        let r = res("/api/v1/namespaces/x/status");
        assert_eq!(
            (r.resource.plural, r.name.as_deref(), r.subresource.as_deref()),
            ("namespaces", Some("x"), Some("status"))
        );
        let r = res("/api/v1/namespaces");
        assert!(r.name.is_none());
        let r = res("/apis/apps/v1/namespaces/default/replicasets/rs/scale");
        assert_eq!((r.resource.plural, r.subresource.as_deref()), ("replicasets", Some("scale")));
        let r = res("/apis/apps/v1/replicasets");
        assert!(r.namespace.is_none() && r.name.is_none());
        let r = res("/api/v1/services");
        assert_eq!(r.resource.plural, "services");
        assert!(matches!(parse_path("/api/v1/namespaces/default/nope"), Target::NotFound));
        assert!(matches!(parse_path("/api/v1/namespaces/default/nodes/x"), Target::NotFound));
    }
}
