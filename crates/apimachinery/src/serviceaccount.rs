//! ServiceAccount tokens: the claims of a bound token (upstream
//! `pkg/serviceaccount/claims.go`), what a presented token must say to
//! authenticate, and the TokenRequest rules
//! (`pkg/apis/authentication/validation`, `pkg/registry/core/serviceaccount/storage/token.go`).
//! Signing and signature checks are `pki::jwt`'s; the lookups of the
//! ServiceAccount and bound object are the API server's.

use crate::field::FieldError;
use serde_json::{json, Value};

/// `system:serviceaccount:<namespace>:<name>`.
pub const USERNAME_PREFIX: &str = "system:serviceaccount:";
/// Every ServiceAccount's group; each also has `system:serviceaccounts:<namespace>`.
pub const ALL_GROUP: &str = "system:serviceaccounts";
/// A TokenRequest's lifetime when it gives none.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The lifetime kubelet asks for on projected tokens (`WarnOnlyBoundTokenExpirationSeconds`).
pub const KUBELET_EXPIRATION_SECONDS: i64 = 3607;
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// Clock skew allowed on `exp`/`nbf` and on deletions (`jwt.DefaultLeeway`).
pub const LEEWAY_SECONDS: i64 = 60;
/// Where pods find their token, CA and namespace.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub fn username(namespace: &str, name: &str) -> String {
    format!("{USERNAME_PREFIX}{namespace}:{name}")
}

/// The groups of a ServiceAccount user (`MakeGroupNames`), before `system:authenticated`.
pub fn groups(namespace: &str) -> Vec<String> {
    vec![ALL_GROUP.to_string(), format!("{ALL_GROUP}:{namespace}")]
}

/// A name and UID, as the claims carry them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The object a token is bound to: it dies with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    /// A pod, with the node it runs on if it has one.
    Pod {
        pod: ObjectRef,
        node: Option<ObjectRef>,
    },
    Secret(ObjectRef),
}

/// What a token is issued for.
#[derive(Clone, Debug)]
pub struct Issue<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub namespace: &'a str,
    pub service_account: ObjectRef,
    pub bound: Option<Bound>,
    /// Seconds since the epoch.
    pub now: i64,
    pub expiration_seconds: i64,
    /// A unique ID (`jti`), the credential ID of audit logs.
    pub id: String,
}

/// The claims of a token (`Claims`): registered ones plus `kubernetes.io`.
pub fn claims(i: &Issue<'_>) -> Value {
    let mut k = json!({
        "namespace": i.namespace,
        "serviceaccount": {"name": i.service_account.name, "uid": i.service_account.uid},
    });
    match &i.bound {
        Some(Bound::Pod { pod, node }) => {
            k["pod"] = json!({"name": pod.name, "uid": pod.uid});
            if let Some(n) = node {
                k["node"] = json!({"name": n.name, "uid": n.uid});
            }
        }
        Some(Bound::Secret(s)) => k["secret"] = json!({"name": s.name, "uid": s.uid}),
        None => {}
    }
    json!({
        "iss": i.issuer,
        "sub": username(i.namespace, &i.service_account.name),
        "aud": i.audiences,
        "iat": i.now,
        "nbf": i.now,
        "exp": i.now + i.expiration_seconds,
        "jti": i.id,
        "kubernetes.io": k,
    })
}

/// What a verified token says; the caller still checks that the
/// ServiceAccount and the bound object exist with these UIDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub namespace: String,
    pub service_account: ObjectRef,
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
    pub id: Option<String>,
}

/// Checks the claims of a token whose signature verified: our issuer, one of
/// `audiences`, not expired and already valid (with [`LEEWAY_SECONDS`]), and
/// a complete `kubernetes.io` claim. The error is what upstream logs.
pub fn validate(claims: &Value, issuer: &str, audiences: &[String], now: i64) -> Result<TokenInfo, String> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err("the token's issuer is not this cluster's".into());
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !aud.iter().any(|a| audiences.iter().any(|want| want == a)) {
        return Err("token audiences do not match the API server's".into());
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or("the token has no expiry")?;
    if now > exp + LEEWAY_SECONDS {
        return Err("service account token has expired".into());
    }
    if claims.get("nbf").and_then(Value::as_i64).is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err("service account token is not valid yet".into());
    }
    let k = claims.get("kubernetes.io").ok_or("not a service account token (no kubernetes.io claim)")?;
    let reference = |key: &str| -> Option<ObjectRef> {
        let r = k.get(key)?;
        Some(ObjectRef {
            name: r.get("name")?.as_str()?.to_string(),
            uid: r.get("uid").and_then(Value::as_str).unwrap_or_default().to_string(),
        })
    };
    let namespace = k.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty());
    let (Some(namespace), Some(sa)) = (namespace, reference("serviceaccount")) else {
        return Err("the token names no service account".into());
    };
    let sub = username(namespace, &sa.name);
    if claims.get("sub").and_then(Value::as_str) != Some(sub.as_str()) {
        return Err("the token's subject does not match its service account".into());
    }
    Ok(TokenInfo {
        namespace: namespace.to_string(),
        service_account: sa,
        pod: reference("pod"),
        secret: reference("secret"),
        node: reference("node"),
        id: claims.get("jti").and_then(Value::as_str).map(str::to_string),
    })
}

/// `ValidateTokenRequest`, with `spec.expirationSeconds` already defaulted.
pub fn validate_token_request(req: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let exp = &req["spec"]["expirationSeconds"];
    match exp.as_i64() {
        Some(s) if s < MIN_EXPIRATION_SECONDS => errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            s,
            "may not specify a duration less than 10 minutes",
        )),
        Some(s) if s > MAX_EXPIRATION_SECONDS => errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            s,
            "may not specify a duration larger than 2^32 seconds",
        )),
        Some(_) => {}
        None => errs.push(FieldError::invalid("spec.expirationSeconds", exp.clone(), "must be an integer")),
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(bound: Option<Bound>) -> Value {
        claims(&Issue {
            issuer: "https://kubernetes.default.svc.cluster.local",
            audiences: &["https://kubernetes.default.svc.cluster.local".to_string()],
            namespace: "kube-system",
            service_account: ObjectRef { name: "coredns".into(), uid: "sa-uid".into() },
            bound,
            now: 1_000_000,
            expiration_seconds: 3607,
            id: "jti-1".into(),
        })
    }

    const ISS: &str = "https://kubernetes.default.svc.cluster.local";

    #[test]
    fn a_pod_bound_token_says_who_and_what_it_is_bound_to() {
        let pod = ObjectRef { name: "coredns-abc".into(), uid: "pod-uid".into() };
        let node = ObjectRef { name: "node1".into(), uid: "node-uid".into() };
        let c = issue(Some(Bound::Pod { pod: pod.clone(), node: Some(node.clone()) }));
        assert_eq!(c["sub"], "system:serviceaccount:kube-system:coredns");
        assert_eq!(c["exp"], 1_003_607);
        assert_eq!(c["kubernetes.io"]["pod"]["uid"], "pod-uid");
        let info = validate(&c, ISS, &[ISS.to_string()], 1_000_010).expect("valid");
        assert_eq!(info.namespace, "kube-system");
        assert_eq!(info.service_account.uid, "sa-uid");
        assert_eq!((info.pod, info.node, info.secret), (Some(pod), Some(node), None));
        assert_eq!(info.id.as_deref(), Some("jti-1"));
        assert_eq!(groups("kube-system"), ["system:serviceaccounts", "system:serviceaccounts:kube-system"]);
    }

    #[test]
    fn expired_foreign_and_mismatched_tokens_are_refused() {
        let c = issue(None);
        let aud = [ISS.to_string()];
        assert_eq!(validate(&c, ISS, &aud, 1_003_607 + 61), Err("service account token has expired".into()));
        assert!(validate(&c, ISS, &aud, 1_003_607 + 59).is_ok(), "within the leeway");
        assert_eq!(validate(&c, ISS, &aud, 1_000_000 - 61), Err("service account token is not valid yet".into()));
        assert!(validate(&c, "https://other", &aud, 1_000_010).is_err());
        assert!(validate(&c, ISS, &["vault".to_string()], 1_000_010).unwrap_err().contains("audiences"));
        let mut bad = c.clone();
        bad["sub"] = json!("system:serviceaccount:kube-system:admin");
        assert!(validate(&bad, ISS, &aud, 1_000_010).unwrap_err().contains("subject"));
        let mut bare = c;
        bare.as_object_mut().expect("object").remove("kubernetes.io");
        assert!(validate(&bare, ISS, &aud, 1_000_010).is_err());
    }

    #[test]
    fn token_requests_have_upstreams_lifetime_bounds() {
        let req = |s: Value| json!({"spec": {"expirationSeconds": s}});
        assert!(validate_token_request(&req(json!(600))).is_empty());
        let e = validate_token_request(&req(json!(599)));
        assert_eq!(e[0].detail, "may not specify a duration less than 10 minutes");
        let e = validate_token_request(&req(json!((1i64 << 32) + 1)));
        assert_eq!(e[0].detail, "may not specify a duration larger than 2^32 seconds");
    }
}
