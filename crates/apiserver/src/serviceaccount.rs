//! ServiceAccount tokens on the server side: the signing key
//! (`<data-dir>/pki/sa.key`, ES256), the TokenRequest subresource
//! `serviceaccounts/<name>/token` (upstream
//! `pkg/registry/core/serviceaccount/storage/token.go`), and the token
//! authenticator (`pkg/serviceaccount/jwt.go` + `claims.go`): a token counts
//! only while its ServiceAccount, and the pod or Secret it is bound to, exist
//! with the UIDs it names.

use crate::authn::User;
use crate::decode;
use crate::error::{ApiError, ApiResult, Subject};
use crate::registry::Registry;
use crate::resources;
use apimachinery::serviceaccount::{self as sa, Bound, ObjectRef};
use pki::jwt::{Signer, Verifier};
use serde_json::{json, Value};
use std::path::Path;

/// kube-apiserver's `--service-account-issuer` as kubeadm and k3s set it; also
/// the default audience (`--api-audiences`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The key and the names tokens are issued under.
#[derive(Debug)]
pub struct Tokens {
    signer: Signer,
    verifier: Verifier,
    issuer: String,
    audiences: Vec<String>,
}

impl Tokens {
    /// The signing key in `pki_dir/sa.key`, made on first start.
    pub fn load_or_create(pki_dir: &Path) -> Result<Tokens, pki::jwt::JwtError> {
        let signer = Signer::load_or_create(&pki_dir.join("sa.key"))?;
        let verifier = signer.verifier();
        Ok(Tokens { signer, verifier, issuer: ISSUER.to_string(), audiences: vec![ISSUER.to_string()] })
    }

    /// The public key set (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.signer.jwk()]})
    }

    /// The issuer's OpenID discovery document (`/.well-known/openid-configuration`).
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }
}

fn uid(obj: &Value) -> String {
    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn reference(obj: &Value) -> ObjectRef {
    ObjectRef {
        name: obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
        uid: uid(obj),
    }
}

fn get_resource(group: &'static str, plural: &'static str) -> ApiResult<&'static resources::Resource> {
    resources::find(group, "v1", plural).ok_or_else(|| ApiError::internal(format!("resource {plural} is not served")))
}

/// `POST .../serviceaccounts/<name>/token`: a signed token for the
/// ServiceAccount, bound to a pod or Secret if the request names one.
pub async fn token_request(
    registry: &Registry,
    tokens: &Tokens,
    namespace: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> ApiResult<Value> {
    let mut req = decode::parse_body(content_type, body)?;
    if let Some(kind) = req.get("kind").and_then(Value::as_str).filter(|k| *k != "TokenRequest") {
        return Err(ApiError::bad_request(format!("{kind} is not a TokenRequest")));
    }
    if !req["spec"].is_object() {
        req["spec"] = json!({});
    }
    if req["spec"]["expirationSeconds"].is_null() {
        req["spec"]["expirationSeconds"] = json!(sa::DEFAULT_EXPIRATION_SECONDS);
    }
    let errs = sa::validate_token_request(&req);
    if !errs.is_empty() {
        let s = Subject { group: "authentication.k8s.io", plural: "tokenrequests", kind: "TokenRequest", name };
        return Err(ApiError::invalid(s, &errs));
    }
    let account = registry.get(get_resource("", "serviceaccounts")?, Some(namespace), name).await?.object;
    let bound = match req["spec"].get("boundObjectRef").filter(|r| !r.is_null()) {
        None => None,
        Some(r) => Some(bound_object(registry, namespace, name, r).await?),
    };
    let mut audiences: Vec<String> = req["spec"]["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = tokens.audiences.clone();
    }
    let now = jiff::Timestamp::now().as_second();
    let expiration = req["spec"]["expirationSeconds"].as_i64().unwrap_or(sa::DEFAULT_EXPIRATION_SECONDS);
    let claims = sa::claims(&sa::Issue {
        issuer: &tokens.issuer,
        audiences: &audiences,
        namespace,
        service_account: reference(&account),
        bound,
        now,
        expiration_seconds: expiration,
        id: uuid::Uuid::new_v4().to_string(),
    });
    let token =
        tokens.signer.sign(&claims).map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))?;
    let expires = jiff::Timestamp::from_second(now + expiration)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    req["spec"]["audiences"] = json!(audiences);
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
        "spec": req["spec"],
        "status": {"token": token, "expirationTimestamp": expires},
    }))
}

/// The object of `spec.boundObjectRef`, which must exist (with the UID given).
async fn bound_object(registry: &Registry, namespace: &str, account: &str, r: &Value) -> ApiResult<Bound> {
    let kind = r.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or("v1");
    let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
    let (bound, found) = match (api_version, kind) {
        ("v1", "Pod") => {
            let pod = registry.get(get_resource("", "pods")?, Some(namespace), name).await?.object;
            let runs_as = pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default");
            if runs_as != account {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {account:?} to pod running with serviceaccount {runs_as:?}"
                )));
            }
            let node = match pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                Some(n) => match registry.get(get_resource("", "nodes")?, None, n).await {
                    Ok(node) => Some(reference(&node.object)),
                    Err(_) => None,
                },
                None => None,
            };
            (Bound::Pod { pod: reference(&pod), node }, pod)
        }
        ("v1", "Secret") => {
            let secret = registry.get(get_resource("", "secrets")?, Some(namespace), name).await?.object;
            (Bound::Secret(reference(&secret)), secret)
        }
        _ => {
            let gvk = if api_version.contains('/') {
                format!("{api_version}, Kind={kind}")
            } else {
                format!("/{api_version}, Kind={kind}")
            };
            return Err(ApiError::bad_request(format!("cannot bind token to object of type {gvk}")));
        }
    };
    let want = r.get("uid").and_then(Value::as_str).unwrap_or_default();
    if !want.is_empty() && want != uid(&found) {
        // Upstream names the resource by its Kind here (`Resource: gvk.Kind`).
        let s = Subject { group: "", plural: kind, kind, name };
        return Err(ApiError::conflict(
            s,
            &format!(
                "the UID in the bound object reference ({want}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                uid(&found)
            ),
        ));
    }
    Ok(bound)
}

/// Whether `token` looks like a JWT (three base64url parts), so other
/// authenticators need not be asked.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// The ServiceAccount user of a valid token, or why it is not one (logged by
/// the caller; the client sees 401).
pub async fn authenticate(registry: &Registry, tokens: &Tokens, token: &str) -> Result<User, String> {
    let claims = tokens.verifier.verify(token).map_err(|e| e.to_string())?;
    let now = jiff::Timestamp::now().as_second();
    let info = sa::validate(&claims, &tokens.issuer, &tokens.audiences, now)?;
    let ns = info.namespace.as_str();
    let lookup = |plural: &'static str, name: String| async move {
        let r = get_resource("", plural).map_err(|e| e.message.clone())?;
        registry.get(r, Some(ns), &name).await.map(|s| s.object).map_err(|e| e.message.clone())
    };
    let account = lookup("serviceaccounts", info.service_account.name.clone()).await?;
    alive(&account, &info.service_account.uid, now, "service account")?;
    if let Some(pod) = &info.pod {
        let found = lookup("pods", pod.name.clone()).await.map_err(|_| "service account token has been invalidated")?;
        alive(&found, &pod.uid, now, "pod")?;
    }
    if let Some(secret) = &info.secret {
        let found =
            lookup("secrets", secret.name.clone()).await.map_err(|_| "service account token has been invalidated")?;
        alive(&found, &secret.uid, now, "secret")?;
    }
    let mut user = User::new(sa::username(ns, &info.service_account.name), sa::groups(ns));
    user.uid = info.service_account.uid;
    Ok(user)
}

/// The object is the one the token names and not deleted longer than the leeway ago.
fn alive(obj: &Value, want_uid: &str, now: i64, what: &str) -> Result<(), String> {
    if uid(obj) != want_uid {
        return Err(format!("{what} UID ({}) does not match claim ({want_uid})", uid(obj)));
    }
    let deleted = obj
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second());
    if deleted.is_some_and(|d| d < now - sa::LEEWAY_SECONDS) {
        return Err(format!("{what} has been deleted"));
    }
    Ok(())
}

/// The `ServiceAccount` admission plugin on pod create
/// (`plugin/pkg/admission/serviceaccount/admission.go`): the pod runs as
/// `spec.serviceAccountName` (default `default`), which must exist, and unless
/// the pod or its account opts out, every container mounts a projected token
/// volume `kube-api-access-<random>` at [`sa::MOUNT_PATH`]. The `default`
/// account of a namespace so new that its controller has not made it yet is
/// made here, so a pod created right after its namespace is not refused.
pub async fn admit_pod(registry: &Registry, namespace: &str, pod: &mut Value) -> ApiResult<()> {
    let mirror = pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
    if mirror || !pod["spec"].is_object() {
        return Ok(());
    }
    let name = pod["spec"]
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .or_else(|| pod["spec"].get("serviceAccount").and_then(Value::as_str).filter(|n| !n.is_empty()))
        .unwrap_or("default")
        .to_string();
    pod["spec"]["serviceAccountName"] = json!(name);
    pod["spec"]["serviceAccount"] = json!(name);
    let r = get_resource("", "serviceaccounts")?;
    let account = match registry.get(r, Some(namespace), &name).await {
        Ok(a) => a.object,
        Err(e) if e.code == 404 && name == "default" => {
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            match registry.create(r, Some(namespace), sa, false, &crate::fieldmanager::Tracking::Untracked).await {
                Ok(s) => s.object,
                Err(e) if e.code == 409 => registry.get(r, Some(namespace), &name).await?.object,
                Err(e) => return Err(e),
            }
        }
        Err(e) if e.code == 404 => {
            let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let s = Subject { group: "", plural: "pods", kind: "Pod", name: pod_name };
            return Err(ApiError::forbidden(
                s,
                &format!("error looking up service account {namespace}/{name}: serviceaccount {name:?} not found"),
            ));
        }
        Err(e) => return Err(e),
    };
    // The account's pull secrets when the pod names none
    // (plugin/pkg/admission/serviceaccount/admission.go).
    let pod_has_secrets = pod["spec"].get("imagePullSecrets").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if !pod_has_secrets {
        let names: Vec<Value> = account
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("name").and_then(Value::as_str))
            .map(|n| json!({ "name": n }))
            .collect();
        if !names.is_empty() {
            pod["spec"]["imagePullSecrets"] = Value::Array(names);
        }
    }
    let automount = pod["spec"]
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true);
    if automount {
        mount_token(pod);
    }
    Ok(())
}

/// `mountServiceAccountToken`: the projected volume and a read-only mount in
/// every (init) container that does not mount something there already.
fn mount_token(pod: &mut Value) {
    let mounted_at_path = |c: &Value| {
        c.get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|v| v.get("mountPath").and_then(Value::as_str) == Some(sa::MOUNT_PATH)))
    };
    let volumes = pod["spec"].get("volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    let existing = volumes.iter().find_map(|v| {
        let n = v.get("name").and_then(Value::as_str)?;
        n.starts_with("kube-api-access-").then(|| n.to_string())
    });
    let volume = existing.clone().unwrap_or_else(|| crate::registry::generate_name("kube-api-access-"));
    let mut used = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"].get_mut(list).and_then(Value::as_array_mut) else { continue };
        for c in containers.iter_mut().filter(|c| !mounted_at_path(c)) {
            if !c["volumeMounts"].is_array() {
                c["volumeMounts"] = json!([]);
            }
            if let Some(m) = c["volumeMounts"].as_array_mut() {
                m.push(json!({"name": volume, "readOnly": true, "mountPath": sa::MOUNT_PATH}));
                used = true;
            }
        }
    }
    if used && existing.is_none() {
        let mut volumes = volumes;
        volumes.push(json!({
            "name": volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": sa::KUBELET_EXPIRATION_SECONDS, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        }));
        pod["spec"]["volumes"] = json!(volumes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_mounts_one_projected_token_volume() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "a"},
                {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": sa::MOUNT_PATH}]},
            ],
        }});
        mount_token(&mut pod);
        let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().expect("name");
        assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5, "{name}");
        let sources = &volumes[0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(pod["spec"]["initContainers"][0]["volumeMounts"][0]["name"], name);
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"][0]["readOnly"], true);
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"].as_array().expect("mounts").len(),
            1,
            "its own mount stays"
        );
        // Applied again (a re-admitted object): nothing doubles.
        mount_token(&mut pod);
        assert_eq!(pod["spec"]["volumes"].as_array().expect("volumes").len(), 1);
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"].as_array().expect("mounts").len(), 1);
    }
}
