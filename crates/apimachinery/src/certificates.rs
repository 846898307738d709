//! `certificates.k8s.io/v1` CertificateSigningRequest rules: the registry
//! strategies (`pkg/registry/certificates/certificates/strategy.go`: the main
//! resource, `/status` and `/approval`) and validation
//! (`pkg/apis/certificates/validation/validation.go`), plus parsing of the
//! PKCS#10 request (`pkg/apis/certificates/helpers.go` `ParseCSR`) that the
//! approver and signer controllers also use. Objects are the v1 JSON form.

use crate::field::FieldError;
use base64::Engine;
use serde_json::{json, Value};

/// `certificatesv1.KubeAPIServerClientKubeletSignerName`: node client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// `certificatesv1.KubeAPIServerClientSignerName`: any client certificate (needs a human's approval).
pub const KUBE_APISERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// `certificatesv1.KubeletServingSignerName`.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// `certificates.KeyUsage` values, in upstream's order.
pub const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The shortest certificate a CSR may ask for (`expirationSeconds`).
const MIN_EXPIRATION_SECONDS: i64 = 600;

/// What a PKCS#10 request asks for: its subject and SANs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// Why a request is not a valid PKCS#10 CSR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("PEM block type must be CERTIFICATE REQUEST")]
    NotPem,
    #[error("{0}")]
    Parse(String),
    #[error("the request's signature does not verify: {0}")]
    Signature(String),
}

/// Decodes `spec.request` (PEM bytes) and checks its self-signature (`ParseCSR`
/// and `CheckSignature`).
pub fn parse_request(pem: &[u8]) -> Result<Request, RequestError> {
    let text = std::str::from_utf8(pem).map_err(|_| RequestError::NotPem)?;
    let der = pem_block(text, "CERTIFICATE REQUEST").ok_or(RequestError::NotPem)?;
    use x509_parser::prelude::FromDer;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| RequestError::Parse(format!("parsing the certificate request: {e}")))?;
    csr.verify_signature().map_err(|e| RequestError::Signature(format!("{e:?}")))?;
    let info = &csr.certification_request_info;
    let text_of = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().map(str::to_string).ok();
    let mut out = Request {
        common_name: info.subject.iter_common_name().filter_map(text_of).next().unwrap_or_default(),
        organizations: info.subject.iter_organization().filter_map(text_of).collect(),
        ..Default::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                use x509_parser::extensions::GeneralName;
                match name {
                    GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                    GeneralName::RFC822Name(e) => out.emails.push(e.to_string()),
                    GeneralName::URI(u) => out.uris.push(u.to_string()),
                    GeneralName::IPAddress(ip) => out.ip_addresses.push(format!("{ip:?}")),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// The DER of the first PEM block labelled `label` in `text`.
pub fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// `spec.request` as bytes (the JSON form is base64).
pub fn request_bytes(obj: &Value) -> Option<Vec<u8>> {
    let s = obj.pointer("/spec/request")?.as_str()?;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The condition of `type_` in `status.conditions`, if any.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == type_)
}

/// Whether the CSR carries a condition of `type_` (Approved, Denied, Failed).
pub fn has_condition(obj: &Value, type_: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] != "False")
}

/// The requester a CSR records (`spec.username`, `uid`, `groups`), set from the
/// authenticated user on create; clients cannot choose them.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// `csrStrategy.PrepareForCreate`: the status is cleared and the requester
/// fields come from the authenticated user.
pub fn prepare_create(obj: &mut Value, who: &Requester) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    if let Some(m) = spec.as_object_mut() {
        m.remove("uid");
        m.remove("extra");
    }
    spec["username"] = json!(who.username);
    if !who.uid.is_empty() {
        spec["uid"] = json!(who.uid);
    }
    spec["groups"] = json!(who.groups);
    obj["status"] = json!({});
}

/// `csrStrategy.PrepareForUpdate`: spec and status never change through the
/// main resource.
pub fn prepare_update(obj: &mut Value, old: &Value) {
    for key in ["spec", "status"] {
        match old.get(key) {
            Some(v) => obj[key] = v.clone(),
            None => {
                if let Some(m) = obj.as_object_mut() {
                    m.remove(key);
                }
            }
        }
    }
}

/// `csrApprovalStrategy.PrepareForUpdate`: only the Approved/Denied conditions
/// change; the certificate and other conditions stay as stored.
pub fn prepare_approval(obj: &mut Value, old: &Value, now: &str) {
    let wanted: Vec<Value> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter(|c| c["type"] == "Approved" || c["type"] == "Denied").cloned().collect())
        .unwrap_or_default();
    let mut kept: Vec<Value> = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter(|c| c["type"] != "Approved" && c["type"] != "Denied").cloned().collect())
        .unwrap_or_default();
    kept.extend(wanted);
    *obj = json!({ "metadata": obj.get("metadata").cloned().unwrap_or(json!({})), "spec": old.get("spec").cloned().unwrap_or(json!({})), "status": old.get("status").cloned().unwrap_or(json!({})), "apiVersion": old.get("apiVersion").cloned().unwrap_or(json!("certificates.k8s.io/v1")), "kind": "CertificateSigningRequest" });
    obj["status"]["conditions"] = json!(kept);
    stamp_conditions(obj, old, now);
}

/// `csrStatusStrategy.PrepareForUpdate`: spec stays; Approved/Denied
/// conditions come from the stored object (they change only through /approval).
pub fn prepare_status(obj: &mut Value, old: &Value, now: &str) {
    obj["spec"] = old.get("spec").cloned().unwrap_or(json!({}));
    let mut conds: Vec<Value> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter(|c| c["type"] != "Approved" && c["type"] != "Denied").cloned().collect())
        .unwrap_or_default();
    conds.extend(
        old.pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter().filter(|c| c["type"] == "Approved" || c["type"] == "Denied").cloned().collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    obj["status"]["conditions"] = json!(conds);
    stamp_conditions(obj, old, now);
}

/// `populateConditionTimestamps`: new or changed conditions get
/// `lastUpdateTime` and, when their status changed, `lastTransitionTime`.
fn stamp_conditions(obj: &mut Value, old: &Value, now: &str) {
    let old_conds: Vec<Value> =
        old.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(conds) = obj.pointer_mut("/status/conditions").and_then(Value::as_array_mut) else { return };
    for c in conds.iter_mut() {
        if c.get("status").is_none_or(|s| s.as_str().is_none_or(str::is_empty)) {
            c["status"] = json!("True");
        }
        let prior = old_conds.iter().find(|o| o["type"] == c["type"]);
        match prior {
            Some(p) if p == c => {}
            Some(p) => {
                c["lastUpdateTime"] = json!(now);
                if p["status"] != c["status"] || c.get("lastTransitionTime").is_none() {
                    c["lastTransitionTime"] = json!(now);
                }
            }
            None => {
                if c.get("lastUpdateTime").is_none() {
                    c["lastUpdateTime"] = json!(now);
                }
                if c.get("lastTransitionTime").is_none() {
                    c["lastTransitionTime"] = json!(now);
                }
            }
        }
    }
}

/// `ValidateCertificateRequestCreate`.
pub fn validate_create(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_spec(obj);
    errs.extend(validate_conditions(obj));
    errs
}

/// `ValidateCertificateRequestUpdate` / `...StatusUpdate` / `...ApprovalUpdate`.
pub fn validate_update(obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_conditions(obj);
    for kind in ["Approved", "Denied"] {
        if has_condition(old, kind) && !has_condition(obj, kind) {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type \"{kind}\""),
            ));
        }
    }
    let old_cert = old.pointer("/status/certificate").and_then(Value::as_str).unwrap_or_default();
    let cert = obj.pointer("/status/certificate").and_then(Value::as_str).unwrap_or_default();
    if !old_cert.is_empty() && cert != old_cert {
        errs.push(FieldError::invalid("status.certificate", json!(cert), "field is immutable"));
    } else if !cert.is_empty() && old_cert.is_empty() {
        if !has_condition(obj, "Approved") {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "certificate can only be set if an Approved condition is present",
            ));
        } else if has_condition(obj, "Denied") || has_condition(obj, "Failed") {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "certificate cannot be set if a Denied or Failed condition is present",
            ));
        }
        let pem = base64::engine::general_purpose::STANDARD.decode(cert).unwrap_or_default();
        let text = String::from_utf8_lossy(&pem);
        if pem_block(&text, "CERTIFICATE").is_none() {
            errs.push(FieldError::invalid(
                "status.certificate",
                json!("<certificate data>"),
                "must contain at least one CERTIFICATE PEM block",
            ));
        }
    }
    errs
}

fn validate_spec(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match request_bytes(obj) {
        None if obj.pointer("/spec/request").is_none_or(Value::is_null) => {
            errs.push(FieldError::required("spec.request", ""));
        }
        None => errs.push(FieldError::invalid("spec.request", json!("<request>"), "must be base64-encoded PEM")),
        Some(bytes) => {
            if let Err(e) = parse_request(&bytes) {
                errs.push(FieldError::invalid("spec.request", json!("<request>"), e.to_string()));
            }
        }
    }
    match obj.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.signerName", "")),
        name => errs.extend(validate_signer_name(name)),
    }
    match obj.pointer("/spec/usages").and_then(Value::as_array) {
        None => errs.push(FieldError::required("spec.usages", "")),
        Some(us) if us.is_empty() => errs.push(FieldError::required("spec.usages", "")),
        Some(us) => {
            let mut seen = std::collections::HashSet::new();
            for (i, u) in us.iter().enumerate() {
                let s = u.as_str().unwrap_or_default();
                if !USAGES.contains(&s) {
                    errs.push(FieldError::not_supported(format!("spec.usages[{i}]"), json!(s), USAGES));
                } else if !seen.insert(s) {
                    errs.push(FieldError::duplicate(format!("spec.usages[{i}]"), json!(s)));
                }
            }
        }
    }
    if let Some(secs) = obj.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
        if secs < MIN_EXPIRATION_SECONDS {
            errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                json!(secs),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    errs
}

/// `ValidateSignerName`: `<domain>/<path>`, the domain a DNS subdomain.
fn validate_signer_name(name: &str) -> Vec<FieldError> {
    let Some((domain, path)) = name.split_once('/') else {
        return vec![FieldError::invalid(
            "spec.signerName",
            json!(name),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )];
    };
    let mut errs = Vec::new();
    if path.is_empty() {
        errs.push(FieldError::invalid("spec.signerName", json!(name), "validating path: may not be an empty string"));
    }
    if !domain.contains('.') || !crate::names::is_dns1123_subdomain(domain).is_empty() {
        errs.push(FieldError::invalid(
            "spec.signerName",
            json!(name),
            "should be a domain with at least two segments separated by dots",
        ));
    }
    errs
}

fn validate_conditions(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(conds) = obj.pointer("/status/conditions").and_then(Value::as_array) else { return errs };
    let mut seen = std::collections::HashSet::new();
    for (i, c) in conds.iter().enumerate() {
        let t = c["type"].as_str().unwrap_or_default();
        let st = c["status"].as_str().unwrap_or_default();
        if t.is_empty() {
            errs.push(FieldError::required(format!("status.conditions[{i}].type"), ""));
            continue;
        }
        if matches!(t, "Approved" | "Denied" | "Failed") && !seen.insert(t.to_string()) {
            errs.push(FieldError::duplicate(format!("status.conditions[{i}].type"), json!(t)));
        }
        if matches!(t, "Approved" | "Denied") && st != "True" {
            errs.push(FieldError::not_supported(format!("status.conditions[{i}].status"), json!(st), &["True"]));
        } else if !matches!(st, "True" | "False" | "Unknown") {
            errs.push(FieldError::not_supported(
                format!("status.conditions[{i}].status"),
                json!(st),
                &["False", "True", "Unknown"],
            ));
        }
    }
    if seen.contains("Approved") && seen.contains("Denied") {
        errs.push(FieldError::invalid(
            "status.conditions",
            json!("Denied"),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    errs
}

/// `isNodeClientCert` (`pkg/controller/certificates/approver/sarapprove.go`):
/// a request a node may get approved by itself: O exactly `system:nodes`, CN
/// `system:node:<name>`, no SANs, and only the client usages.
pub fn is_node_client_cert(obj: &Value, req: &Request) -> bool {
    if obj.pointer("/spec/signerName").and_then(Value::as_str) != Some(KUBELET_CLIENT_SIGNER) {
        return false;
    }
    if req.organizations != ["system:nodes"] || !req.common_name.starts_with("system:node:") {
        return false;
    }
    if !(req.dns_names.is_empty() && req.ip_addresses.is_empty() && req.emails.is_empty() && req.uris.is_empty()) {
        return false;
    }
    let usages: Vec<&str> =
        obj.pointer("/spec/usages").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    // kubeletClientUsages: key encipherment is optional (ECDSA keys have none).
    usages.contains(&"client auth")
        && usages.iter().all(|u| matches!(*u, "digital signature" | "key encipherment" | "client auth"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(request_b64: &str, usages: Value) -> Value {
        json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "node-csr-1"},
            "spec": {"request": request_b64, "signerName": KUBELET_CLIENT_SIGNER, "usages": usages},
        })
    }

    fn node_request(cn: &str, orgs: &[&str], dns: &[&str]) -> String {
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            dn.push(rcgen::DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = params.serialize_request(&key).expect("csr").pem().expect("pem");
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    #[test]
    fn parses_real_requests_and_spots_node_client_certs() {
        let b64 = node_request("system:node:n2", &["system:nodes"], &[]);
        let obj = csr(&b64, json!(["digital signature", "client auth"]));
        assert!(validate_create(&obj).is_empty(), "{:?}", validate_create(&obj));
        let req = parse_request(&request_bytes(&obj).expect("bytes")).expect("parse");
        assert_eq!(req.common_name, "system:node:n2");
        assert_eq!(req.organizations, ["system:nodes"]);
        assert!(is_node_client_cert(&obj, &req));
        // Wrong group, a SAN, a serving usage, another signer: not a node client cert.
        let other = node_request("system:node:n2", &["system:masters"], &[]);
        let o = csr(&other, json!(["client auth"]));
        assert!(!is_node_client_cert(&o, &parse_request(&request_bytes(&o).expect("b")).expect("p")));
        let san = node_request("system:node:n2", &["system:nodes"], &["evil.example"]);
        let o = csr(&san, json!(["client auth"]));
        let r = parse_request(&request_bytes(&o).expect("b")).expect("p");
        assert_eq!(r.dns_names, ["evil.example"]);
        assert!(!is_node_client_cert(&o, &r));
        let o = csr(&b64, json!(["client auth", "server auth"]));
        assert!(!is_node_client_cert(&o, &req));
        let mut o = csr(&b64, json!(["client auth"]));
        o["spec"]["signerName"] = json!(KUBE_APISERVER_CLIENT_SIGNER);
        assert!(!is_node_client_cert(&o, &req));
        // A tampered request fails its signature check.
        let mut pem = String::from_utf8(request_bytes(&obj).expect("bytes")).expect("utf8");
        let der = pem_block(&pem, "CERTIFICATE REQUEST").expect("der");
        let mut bad = der.clone();
        let n = bad.len();
        bad[n - 5] ^= 0xff;
        pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(bad)
        );
        assert!(parse_request(pem.as_bytes()).is_err());
    }

    #[test]
    fn requests_must_be_pem_csrs() {
        let bad = base64::engine::general_purpose::STANDARD.encode("not pem");
        let errs = validate_create(&csr(&bad, json!(["client auth"])));
        assert!(errs.iter().any(|e| e.body().contains("PEM block type must be CERTIFICATE REQUEST")), "{errs:?}");
        let errs = validate_create(&json!({"spec": {}}));
        let bodies: Vec<String> = errs.iter().map(|e| format!("{}: {}", e.field, e.body())).collect();
        assert!(bodies.iter().any(|b| b.starts_with("spec.request: Required value")), "{bodies:?}");
        assert!(bodies.iter().any(|b| b.starts_with("spec.signerName: Required value")), "{bodies:?}");
        assert!(bodies.iter().any(|b| b.starts_with("spec.usages: Required value")), "{bodies:?}");
    }

    #[test]
    fn signer_names_and_usages() {
        assert!(validate_signer_name("kubernetes.io/kube-apiserver-client").is_empty());
        assert!(!validate_signer_name("nodomain").is_empty());
        assert!(!validate_signer_name("example/x").is_empty());
        let bad = base64::engine::general_purpose::STANDARD.encode("x");
        let errs = validate_create(&csr(&bad, json!(["client auth", "client auth", "flying"])));
        let bodies: Vec<String> = errs.iter().map(|e| format!("{}: {}", e.field, e.body())).collect();
        assert!(bodies.iter().any(|b| b.starts_with("spec.usages[1]: Duplicate value: \"client auth\"")), "{bodies:?}");
        assert!(bodies.iter().any(|b| b.starts_with("spec.usages[2]: Unsupported value: \"flying\"")), "{bodies:?}");
    }

    #[test]
    fn approval_and_status_rules() {
        let old = json!({"spec": {"username": "u"}, "status": {}});
        let mut new = json!({"spec": {"username": "evil"}, "status": {"certificate": "x", "conditions": [
            {"type": "Approved", "status": "True", "reason": "R"}]}});
        prepare_approval(&mut new, &old, "2026-01-01T00:00:00Z");
        assert_eq!(new["spec"]["username"], "u");
        assert!(new["status"].get("certificate").is_none());
        assert_eq!(new["status"]["conditions"][0]["lastUpdateTime"], "2026-01-01T00:00:00Z");
        assert!(validate_update(&new, &old).is_empty());
        // Approved and Denied together; removing Approved.
        let both = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}});
        assert!(validate_update(&both, &old).iter().any(|e| e.body().contains("mutually exclusive")));
        assert!(validate_update(&old, &new).iter().any(|e| e.body().contains("may not remove")));
        // A certificate needs approval.
        let cert = base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let unapproved = json!({"status": {"certificate": cert}});
        assert!(validate_update(&unapproved, &old).iter().any(|e| e.body().contains("Approved condition")));
        let mut status = json!({"spec": {}, "status": {"certificate": cert, "conditions": []}});
        prepare_status(&mut status, &new, "2026-01-01T00:00:01Z");
        assert_eq!(status["spec"]["username"], "u");
        assert!(has_condition(&status, "Approved"));
        assert!(validate_update(&status, &new).is_empty(), "{:?}", validate_update(&status, &new));
    }
}
