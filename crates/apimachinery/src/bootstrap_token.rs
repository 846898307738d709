//! Bootstrap token Secrets (`k8s.io/cluster-bootstrap/token/api`): how a join
//! token is stored in `kube-system`, and read back for `rkube token list`.

use base64::Engine;
use serde_json::{json, Value};

/// `bootstrapapi.SecretTypeBootstrapToken`.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// `bootstrapapi.BootstrapTokenSecretPrefix`.
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The namespace bootstrap token Secrets live in.
pub const NAMESPACE: &str = "kube-system";
/// The extra group of tokens rkube makes for joining nodes (kubeadm's
/// `system:bootstrappers:kubeadm:default-node-token`).
pub const NODE_TOKEN_GROUP: &str = "system:bootstrappers:rkube:default-node-token";

/// What a bootstrap token Secret says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenInfo {
    pub id: String,
    pub secret: String,
    /// RFC 3339, if the token expires.
    pub expiration: Option<String>,
    pub description: String,
    pub usages: Vec<String>,
    pub extra_groups: Vec<String>,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The Secret holding `info` (`bootstraputil` / kubeadm's `BootstrapTokenToSecret`).
pub fn secret(info: &TokenInfo) -> Value {
    let mut data = json!({
        "token-id": b64(&info.id),
        "token-secret": b64(&info.secret),
    });
    if let Some(exp) = &info.expiration {
        data["expiration"] = json!(b64(exp));
    }
    if !info.description.is_empty() {
        data["description"] = json!(b64(&info.description));
    }
    for u in &info.usages {
        data[format!("usage-bootstrap-{u}")] = json!(b64("true"));
    }
    if !info.extra_groups.is_empty() {
        data["auth-extra-groups"] = json!(b64(&info.extra_groups.join(",")));
    }
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": format!("{SECRET_PREFIX}{}", info.id), "namespace": NAMESPACE },
        "type": SECRET_TYPE,
        "data": data,
    })
}

fn field(secret: &Value, key: &str) -> Option<String> {
    let v = secret.get("data")?.get(key)?.as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).ok()?).ok()
}

/// Reads a bootstrap token Secret back; `None` if it is not one.
pub fn parse_secret(secret: &Value) -> Option<TokenInfo> {
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return None;
    }
    let mut usages: Vec<String> = secret
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("usage-bootstrap-").map(str::to_string))
        .filter(|u| field(secret, &format!("usage-bootstrap-{u}")).as_deref() == Some("true"))
        .collect();
    usages.sort();
    Some(TokenInfo {
        id: field(secret, "token-id")?,
        secret: field(secret, "token-secret")?,
        expiration: field(secret, "expiration"),
        description: field(secret, "description").unwrap_or_default(),
        usages,
        extra_groups: field(secret, "auth-extra-groups")
            .map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default(),
    })
}

/// A join token for nodes: authentication and signing usages, the node group.
pub fn node_token(id: &str, secret: &str, expiration: Option<String>, description: &str) -> TokenInfo {
    TokenInfo {
        id: id.to_string(),
        secret: secret.to_string(),
        expiration,
        description: description.to_string(),
        usages: vec!["authentication".into(), "signing".into()],
        extra_groups: vec![NODE_TOKEN_GROUP.into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip() {
        let info = node_token("abcdef", "0123456789abcdef", Some("2027-01-01T00:00:00Z".into()), "for n2");
        let s = secret(&info);
        assert_eq!(s["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(s["type"], SECRET_TYPE);
        assert_eq!(s["data"]["usage-bootstrap-authentication"], b64("true"));
        assert_eq!(parse_secret(&s), Some(info));
        assert_eq!(parse_secret(&json!({"type": "Opaque"})), None);
    }
}
