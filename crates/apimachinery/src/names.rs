//! Name, label and ObjectMeta validation, ported from upstream:
//! - `staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go`
//!   (`IsDNS1123Label`, `IsDNS1123Subdomain`, `IsDNS1035Label`, `IsQualifiedName`,
//!   `IsValidLabelValue`, `IsValidPortName`, `IsValidPortNum`, their messages);
//! - `staging/src/k8s.io/apimachinery/pkg/util/validation/ip.go` (`IsValidIP`, `IsValidCIDR`);
//! - `staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation` (`ValidateLabels`);
//! - `staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go` and `generic.go`
//!   (`ValidateObjectMeta`, `ValidateObjectMetaUpdate`, `ValidateAnnotations`, name functions);
//! - `pkg/apis/core/validation/validation.go` (`ValidateObjectMeta` adds `validateKubeFinalizerName`).
//!
//! Every `is_*` function returns upstream's list of messages (empty = valid). The
//! regexes are matched by hand (no regex dependency); the regex text still appears
//! in the messages exactly as upstream prints it.
//!
//! Known difference: `field::FieldError` prints non-scalar values as JSON, where Go
//! prints `%#v` (e.g. a creationTimestamp is shown quoted).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::field::FieldError;

/// Upstream `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE_ERROR_MSG: &str = "field is immutable";
/// Upstream `IsNegativeErrorMsg`.
pub const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";
/// Upstream `TotalAnnotationSizeLimitB` (256 kB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * (1 << 10);

pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Upstream `MaxLenError`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Upstream `EmptyError`.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// Upstream `InclusiveRangeError`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Upstream `RegexError` (including its double space before ` or`).
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push('\'');
        s.push_str(ex);
        s.push_str("', ");
    }
    s.push_str("regex used for validation is '");
    s.push_str(fmt);
    s.push_str("')");
    s
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f) && is_lower_alnum(l) && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `^[a-z]([-a-z0-9]*[a-z0-9])?$`
fn matches_dns1035_label(s: &str) -> bool {
    matches_dns1123_label(s) && s.as_bytes().first().is_some_and(|b| b.is_ascii_lowercase())
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn matches_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        }
        _ => false,
    }
}

/// Upstream `IsDNS1123Label`.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // It was a valid subdomain and not a valid label. Since we already
            // checked length, it must be dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_ERR_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// Upstream `IsDNS1123Subdomain`.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Upstream `IsDNS1035Label`.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(DNS1035_LABEL_ERR_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// Upstream `IsQualifiedName` (label keys, annotation keys, finalizers, appProtocol).
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Upstream `IsValidLabelValue`.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !(value.is_empty() || matches_qualified_name(value)) {
        errs.push(regex_error(LABEL_VALUE_ERR_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Upstream `IsValidPortName` (IANA_SVC_NAME, RFC 6335, lower case only).
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty() || !port.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Upstream `IsValidPortNum`: 1..=65535.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// Upstream `NameIsDNSSubdomain` for an already generated name.
pub fn name_is_dns_subdomain(name: &str) -> Vec<String> {
    is_dns1123_subdomain(name)
}

/// Upstream `NameIsDNSLabel` (also `ValidateNamespaceName`).
pub fn name_is_dns_label(name: &str) -> Vec<String> {
    is_dns1123_label(name)
}

/// Upstream `NameIsDNS1035Label` (also `ValidateServiceName`).
pub fn name_is_dns1035_label(name: &str) -> Vec<String> {
    is_dns1035_label(name)
}

/// Upstream `maskTrailingDash`, applied to a `generateName` prefix before the name
/// function checks it (upstream drops two characters and appends `a`).
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let cut = name.len() - 2;
        if name.is_char_boundary(cut) {
            return format!("{}a", &name[..cut]);
        }
    }
    name.to_string()
}

// ---------------------------------------------------------------------------
// IP helpers (Go's "sloppy" parsers, as `netutils.ParseIPSloppy`/`ParseCIDRSloppy`)
// ---------------------------------------------------------------------------

/// Go's legacy `net.ParseIP`: IPv4 octets may carry leading zeros (decimal).
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        return parse_ipv6_sloppy(s).map(IpAddr::V6);
    }
    parse_ipv4_sloppy(s).map(IpAddr::V4)
}

fn parse_ipv4_sloppy(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = p.trim_start_matches('0');
        if digits.len() > 3 {
            return None;
        }
        let n: u32 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        *octet = u8::try_from(n).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

fn parse_ipv6_sloppy(s: &str) -> Option<Ipv6Addr> {
    if let Ok(ip) = s.parse::<Ipv6Addr>() {
        return Some(ip);
    }
    // Embedded IPv4 with leading zeros, e.g. "::ffff:010.0.0.1".
    let idx = s.rfind(':')?;
    let (head, tail) = s.split_at(idx + 1);
    if !tail.contains('.') {
        return None;
    }
    let v4 = parse_ipv4_sloppy(tail)?;
    format!("{head}{v4}").parse::<Ipv6Addr>().ok()
}

/// Go's `net.ParseCIDR` with sloppy IPv4: returns the address and prefix length.
pub fn parse_cidr_sloppy(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip = parse_ip_sloppy(ip)?;
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = bits.trim_start_matches('0');
    let n: u32 = if digits.is_empty() {
        0
    } else if digits.len() > 3 {
        return None;
    } else {
        digits.parse().ok()?
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if n > max {
        return None;
    }
    Some((ip, n as u8))
}

/// Upstream `validation.IsValidIP`.
pub fn validate_ip(path: &str, value: &str) -> Vec<FieldError> {
    if parse_ip_sloppy(value).is_none() {
        vec![FieldError::invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    } else {
        Vec::new()
    }
}

/// Upstream `validation.IsValidCIDR`.
pub fn validate_cidr(path: &str, value: &str) -> Vec<FieldError> {
    if parse_cidr_sloppy(value).is_none() {
        vec![FieldError::invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------
// Labels, annotations, ObjectMeta
// ---------------------------------------------------------------------------

/// Upstream `ValidateLabelName`.
pub fn validate_label_name(name: &str, path: &str) -> Vec<FieldError> {
    is_qualified_name(name).into_iter().map(|m| FieldError::invalid(path, name, m)).collect()
}

/// Upstream `v1validation.ValidateLabels` (also used for `spec.selector`). Errors
/// name the map's path, not the key, as upstream does.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(validate_label_name(k, path));
        errs.extend(is_valid_label_value(v).into_iter().map(|m| FieldError::invalid(path, v.as_str(), m)));
    }
    errs
}

/// Upstream `ValidateAnnotations`: keys are qualified names (case-insensitive), and
/// the total size of keys and values is at most 256 kB.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for k in annotations.keys() {
        errs.extend(is_qualified_name(&k.to_lowercase()).into_iter().map(|m| FieldError::invalid(path, k.as_str(), m)));
    }
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_B));
    }
    errs
}

/// Upstream `ValidateNonnegativeField`.
pub fn validate_nonnegative(value: i64, path: &str) -> Vec<FieldError> {
    if value < 0 {
        vec![FieldError::invalid(path, value, IS_NEGATIVE_ERROR_MSG)]
    } else {
        Vec::new()
    }
}

fn owner_reference_json(r: &OwnerReference) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or(serde_json::Value::Null)
}

/// Upstream `validateOwnerReference` + `ValidateOwnerReferences`.
pub fn validate_owner_references(refs: &[OwnerReference], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        // schema.FromAPIVersionAndKind: "v1" -> ("", "v1"); "apps/v1" -> ("apps", "v1"); more slashes -> error -> empty.
        let (group, version) = match r.api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => (String::new(), v.to_string()),
            [g, v] => (g.to_string(), v.to_string()),
            _ => (String::new(), String::new()),
        };
        if version.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.apiVersion"),
                r.api_version.as_str(),
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(format!("{path}.kind"), r.kind.as_str(), "must not be empty"));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(format!("{path}.name"), r.name.as_str(), "must not be empty"));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(format!("{path}.uid"), r.uid.as_str(), "must not be empty"));
        }
        if group.is_empty() && version == "v1" && r.kind == "Event" {
            errs.push(FieldError::invalid(
                path,
                owner_reference_json(r),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.controller == Some(true) {
            let cur = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    serde_json::to_value(refs).unwrap_or(serde_json::Value::Null),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {cur}"),
                )),
                None => first_controller = Some(cur),
            }
        }
    }
    errs
}

const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

/// Upstream `ValidateFinalizers` (apimachinery) followed by core's
/// `validateKubeFinalizerName` for each entry.
fn validate_finalizers(finalizers: &[String], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in finalizers {
        errs.extend(is_qualified_name(f).into_iter().map(|m| FieldError::invalid(path, f.as_str(), m)));
    }
    if finalizers.iter().any(|f| f == "orphan") && finalizers.iter().any(|f| f == "foregroundDeletion") {
        errs.push(FieldError::invalid(
            path,
            finalizers.to_vec(),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

fn validate_kube_finalizer_names(finalizers: &[String], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, f) in finalizers.iter().enumerate() {
        let p = format!("{path}[{i}]");
        errs.extend(is_qualified_name(f).into_iter().map(|m| FieldError::invalid(p.as_str(), f.as_str(), m)));
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f.as_str()) {
            errs.push(FieldError::invalid(
                p.as_str(),
                f.as_str(),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

fn opt_str(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// Upstream `ValidateObjectMeta` (core flavour): expects that name generation has
/// already happened, so `name` is validated; `generateName` (if any) is validated as
/// a prefix (trailing dash masked) under `<path>.generateName`. `name_fn` is the
/// type's name rule, e.g. [`name_is_dns1035_label`] for Services.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_fn: fn(&str) -> Vec<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = opt_str(&meta.generate_name);
    if !generate_name.is_empty() {
        for m in name_fn(&mask_trailing_dash(generate_name)) {
            errs.push(FieldError::invalid(format!("{path}.generateName"), generate_name, m));
        }
    }
    let name = opt_str(&meta.name);
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), "name or generateName is required"));
    } else {
        for m in name_fn(name) {
            errs.push(FieldError::invalid(format!("{path}.name"), name, m));
        }
    }
    let namespace = opt_str(&meta.namespace);
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(format!("{path}.namespace"), ""));
        } else {
            for m in name_is_dns_label(namespace) {
                errs.push(FieldError::invalid(format!("{path}.namespace"), namespace, m));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(format!("{path}.namespace"), "not allowed on this type"));
    }
    errs.extend(validate_common(meta, path));
    errs.extend(validate_kube_finalizer_names(
        meta.finalizers.as_deref().unwrap_or(&[]),
        &format!("{path}.finalizers"),
    ));
    errs
}

fn validate_common(meta: &ObjectMeta, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(validate_nonnegative(meta.generation.unwrap_or(0), &format!("{path}.generation")));
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, &format!("{path}.labels")));
    }
    if let Some(annotations) = &meta.annotations {
        errs.extend(validate_annotations(annotations, &format!("{path}.annotations")));
    }
    errs.extend(validate_owner_references(
        meta.owner_references.as_deref().unwrap_or(&[]),
        &format!("{path}.ownerReferences"),
    ));
    errs.extend(validate_finalizers(meta.finalizers.as_deref().unwrap_or(&[]), &format!("{path}.finalizers")));
    errs
}

/// Go's `time.Time.String()` for a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`.
fn go_time_string(t: &Time) -> String {
    let ts = t.0;
    let secs = ts.strftime("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = ts.subsec_nanosecond();
    if nanos == 0 {
        format!("{secs} +0000 UTC")
    } else {
        let frac = format!("{nanos:09}");
        format!("{secs}.{} +0000 UTC", frac.trim_end_matches('0'))
    }
}

fn time_value(t: &Option<Time>) -> serde_json::Value {
    match t {
        Some(t) => serde_json::Value::String(go_time_string(t)),
        None => serde_json::Value::String("0001-01-01 00:00:00 +0000 UTC".to_string()),
    }
}

/// What upstream's `rest.BeforeUpdate` does to metadata before validation: the
/// server-owned fields of `old` win (generation, uid when empty, creationTimestamp,
/// deletionTimestamp, deletionGracePeriodSeconds when unset). Call this before
/// [`validate_object_meta_update`].
pub fn prepare_object_meta_update(new: &mut ObjectMeta, old: &ObjectMeta) {
    new.generation = old.generation;
    if opt_str(&new.uid).is_empty() {
        new.uid = old.uid.clone();
    }
    if old.creation_timestamp.is_some() {
        new.creation_timestamp = old.creation_timestamp.clone();
    }
    if old.deletion_timestamp.is_some() {
        new.deletion_timestamp = old.deletion_timestamp.clone();
    }
    if old.deletion_grace_period_seconds.is_some() && new.deletion_grace_period_seconds.is_none() {
        new.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
    }
}

/// Upstream `ValidateObjectMetaUpdate` (core flavour): name, namespace, uid,
/// creationTimestamp, deletionTimestamp and deletionGracePeriodSeconds are
/// immutable; resourceVersion must be set; generation may not decrease; no new
/// finalizers once deletion started; labels/annotations/ownerReferences/finalizers
/// of `new` are re-validated.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let new_finalizers = new.finalizers.as_deref().unwrap_or(&[]);
    if old.deletion_timestamp.is_some() {
        let old_set: BTreeSet<&str> = old.finalizers.as_deref().unwrap_or(&[]).iter().map(String::as_str).collect();
        let extra: BTreeSet<&str> =
            new_finalizers.iter().map(String::as_str).filter(|f| !old_set.contains(f)).collect();
        if !extra.is_empty() {
            let list: Vec<String> = extra.iter().map(|f| format!("{f:?}")).collect();
            errs.push(FieldError::forbidden(
                format!("{path}.finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            ));
        }
    }
    if opt_str(&new.resource_version).is_empty() {
        errs.push(FieldError::invalid(
            format!("{path}.resourceVersion"),
            opt_str(&new.resource_version),
            "must be specified for an update",
        ));
    }
    let (new_gen, old_gen) = (new.generation.unwrap_or(0), old.generation.unwrap_or(0));
    if new_gen < old_gen {
        errs.push(FieldError::invalid(format!("{path}.generation"), new_gen, "must not be decremented"));
    }
    if opt_str(&new.name) != opt_str(&old.name) {
        errs.push(FieldError::invalid(format!("{path}.name"), opt_str(&new.name), FIELD_IMMUTABLE_ERROR_MSG));
    }
    if opt_str(&new.namespace) != opt_str(&old.namespace) {
        errs.push(FieldError::invalid(format!("{path}.namespace"), opt_str(&new.namespace), FIELD_IMMUTABLE_ERROR_MSG));
    }
    if opt_str(&new.uid) != opt_str(&old.uid) {
        errs.push(FieldError::invalid(format!("{path}.uid"), opt_str(&new.uid), FIELD_IMMUTABLE_ERROR_MSG));
    }
    if new.creation_timestamp != old.creation_timestamp {
        errs.push(FieldError::invalid(
            format!("{path}.creationTimestamp"),
            time_value(&new.creation_timestamp),
            FIELD_IMMUTABLE_ERROR_MSG,
        ));
    }
    if new.deletion_timestamp != old.deletion_timestamp {
        let v = match &new.deletion_timestamp {
            Some(t) => serde_json::Value::String(go_time_string(t)),
            None => serde_json::Value::Null,
        };
        errs.push(FieldError::invalid(format!("{path}.deletionTimestamp"), v, FIELD_IMMUTABLE_ERROR_MSG));
    }
    if new.deletion_grace_period_seconds != old.deletion_grace_period_seconds {
        errs.push(FieldError::invalid(
            format!("{path}.deletionGracePeriodSeconds"),
            new.deletion_grace_period_seconds.map_or(serde_json::Value::Null, serde_json::Value::from),
            FIELD_IMMUTABLE_ERROR_MSG,
        ));
    }
    if let Some(labels) = &new.labels {
        errs.extend(validate_labels(labels, &format!("{path}.labels")));
    }
    if let Some(annotations) = &new.annotations {
        errs.extend(validate_annotations(annotations, &format!("{path}.annotations")));
    }
    errs.extend(validate_owner_references(
        new.owner_references.as_deref().unwrap_or(&[]),
        &format!("{path}.ownerReferences"),
    ));
    errs.extend(validate_kube_finalizer_names(new_finalizers, &format!("{path}.finalizers")));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL_RE_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn dns1123_label() {
        for ok in ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "0-1", "1-2", "a".repeat(63).as_str()] {
            assert!(is_dns1123_label(ok).is_empty(), "{ok}");
        }
        assert_eq!(is_dns1123_label("A"), vec![LABEL_RE_MSG]);
        assert_eq!(is_dns1123_label("-a"), vec![LABEL_RE_MSG]);
        assert_eq!(is_dns1123_label("a-"), vec![LABEL_RE_MSG]);
        assert_eq!(is_dns1123_label(""), vec![LABEL_RE_MSG]);
        assert_eq!(is_dns1123_label("a_b"), vec![LABEL_RE_MSG]);
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
        assert_eq!(is_dns1123_label("TCP-8080"), vec![LABEL_RE_MSG]);
    }

    #[test]
    fn dns1123_subdomain() {
        for ok in ["a", "a.b", "www.google.com", "1.2.3.4", "a-1.b-2", &"a".repeat(253)] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        for bad in ["", "A", "a..b", ".a", "a.", "a_b", "-a.b"] {
            assert_eq!(is_dns1123_subdomain(bad), vec![SUBDOMAIN_MSG], "{bad}");
        }
        assert_eq!(is_dns1123_subdomain(&"a".repeat(254)), vec!["must be no more than 253 characters"]);
    }

    #[test]
    fn dns1035_label() {
        for ok in ["a", "ab", "a-1", "mynapp-svc", "mynapp-svc-extname-gl"] {
            assert!(is_dns1035_label(ok).is_empty(), "{ok}");
        }
        for bad in ["1a", "", "A", "a-", "-a", "a.b", "a_b", "my_svc"] {
            assert_eq!(is_dns1035_label(bad), vec![DNS1035_MSG], "{bad}");
        }
        assert_eq!(is_dns1035_label(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
        assert_eq!(
            is_dns1035_label(&"1".repeat(64)),
            vec!["must be no more than 63 characters".to_string(), DNS1035_MSG.to_string()]
        );
    }

    #[test]
    fn qualified_name() {
        for ok in [
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "1234",
            "simple/simple",
            "now-with-dashes/simple",
            "now-with-dashes/now-with-dashes",
            "now.with.dots/simple",
            "now-with.dashes-and.dots/simple",
            "1-num.2-num/3-num",
            "1234/5678",
            "1.2.3.4/5678",
            "Uppercase_Is_OK_123",
            "example.com/Uppercase_Is_OK_123",
            "requests.storage-foo",
            &"a".repeat(63),
            &format!("{}/b", "a".repeat(253)),
        ] {
            assert!(is_qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(is_qualified_name("nospecialchars%^=@"), vec![NAME_PART_MSG]);
        assert_eq!(is_qualified_name("cantendwithadash-"), vec![NAME_PART_MSG]);
        assert_eq!(is_qualified_name("-cantstartwithadash-"), vec![NAME_PART_MSG]);
        assert_eq!(is_qualified_name("only/one/slash").len(), 1);
        assert_eq!(
            is_qualified_name("only/one/slash")[0],
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(is_qualified_name("Example.com/abc"), vec![format!("prefix part {SUBDOMAIN_MSG}")]);
        assert_eq!(is_qualified_name("/simple"), vec!["prefix part must be non-empty"]);
        assert_eq!(
            is_qualified_name("simple/"),
            vec!["name part must be non-empty".to_string(), NAME_PART_MSG.to_string()]
        );
        assert_eq!(is_qualified_name(&"a".repeat(64)), vec!["name part must be no more than 63 characters"]);
    }

    #[test]
    fn label_values() {
        for ok in
            ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "", "a_b.c-d", &"a".repeat(63)]
        {
            assert!(is_valid_label_value(ok).is_empty(), "{ok}");
        }
        for bad in [
            "nospecialchars%^=@",
            "Tama-nui-te-rā.is.Māori.sun",
            "\\backslashes\\are\\bad",
            "-starts-with-dash",
            "ends-with-dash-",
            ".starts.with.dot",
            "ends.with.dot.",
            "a b",
        ] {
            assert_eq!(is_valid_label_value(bad), vec![LABEL_VALUE_MSG], "{bad}");
        }
        assert_eq!(is_valid_label_value(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
    }

    #[test]
    fn port_names() {
        for ok in ["telnet", "re-mail-ck", "pop3", "a", "a-1", "1-a", "a-1-b-2-c", "1-a-2-b-3", "http"] {
            assert!(is_valid_port_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(is_valid_port_name("longerthan15characters"), vec!["must be no more than 15 characters"]);
        assert_eq!(
            is_valid_port_name(""),
            vec![
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)"
            ]
        );
        assert_eq!(is_valid_port_name("12345"), vec!["must contain at least one letter (a-z)"]);
        assert_eq!(is_valid_port_name("1-2"), vec!["must contain at least one letter (a-z)"]);
        assert_eq!(is_valid_port_name("a--b"), vec!["must not contain consecutive hyphens"]);
        assert_eq!(is_valid_port_name("-ab"), vec!["must not begin or end with a hyphen"]);
        assert_eq!(is_valid_port_name("ab-"), vec!["must not begin or end with a hyphen"]);
        assert_eq!(
            is_valid_port_name("HTTP"),
            vec![
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)"
            ]
        );
        assert_eq!(
            is_valid_port_name("a_b"),
            vec!["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"]
        );
    }

    #[test]
    fn port_nums() {
        assert!(is_valid_port_num(1).is_empty());
        assert!(is_valid_port_num(65535).is_empty());
        assert_eq!(is_valid_port_num(0), vec!["must be between 1 and 65535, inclusive"]);
        assert_eq!(is_valid_port_num(65536), vec!["must be between 1 and 65535, inclusive"]);
        assert_eq!(is_valid_port_num(-1), vec!["must be between 1 and 65535, inclusive"]);
    }

    #[test]
    fn sloppy_ip_parsing() {
        assert_eq!(parse_ip_sloppy("10.96.0.1"), Some("10.96.0.1".parse().unwrap()));
        assert_eq!(parse_ip_sloppy("010.096.000.001"), Some("10.96.0.1".parse().unwrap()));
        assert_eq!(parse_ip_sloppy("2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(parse_ip_sloppy("::ffff:010.0.0.1"), Some("::ffff:10.0.0.1".parse().unwrap()));
        for bad in ["", "None", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-1", "a.b.c.d", "1.2.3.4/32", "fe80::1%eth0"]
        {
            assert_eq!(parse_ip_sloppy(bad), None, "{bad}");
        }
        assert!(parse_cidr_sloppy("10.0.0.0/8").is_some());
        assert!(parse_cidr_sloppy(" 10.0.0.0/8").is_none());
        assert!(parse_cidr_sloppy("10.0.0.0/33").is_none());
        assert!(parse_cidr_sloppy("10.0.0.0").is_none());
        assert!(parse_cidr_sloppy("2001:db8::/64").is_some());
        assert_eq!(
            validate_ip("spec.clusterIPs[0]", "bogus")[0].to_string(),
            "spec.clusterIPs[0]: Invalid value: \"bogus\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        );
        assert_eq!(
            validate_cidr("spec.LoadBalancerSourceRanges[0]", "foo.bar")[0].to_string(),
            "spec.LoadBalancerSourceRanges[0]: Invalid value: \"foo.bar\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        );
    }

    fn meta(name: &str, ns: &str) -> ObjectMeta {
        ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() }
    }

    fn strings(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn object_meta_name_and_namespace() {
        assert!(
            validate_object_meta(&meta("mynapp-svc", "default"), true, name_is_dns1035_label, "metadata").is_empty()
        );
        assert_eq!(
            strings(&validate_object_meta(&meta("1abc", "default"), true, name_is_dns1035_label, "metadata")),
            vec![format!("metadata.name: Invalid value: \"1abc\": {DNS1035_MSG}")]
        );
        assert_eq!(
            strings(&validate_object_meta(&meta("", "default"), true, name_is_dns1035_label, "metadata")),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        assert_eq!(
            strings(&validate_object_meta(&meta("a", ""), true, name_is_dns1035_label, "metadata")),
            vec!["metadata.namespace: Required value"]
        );
        assert_eq!(
            strings(&validate_object_meta(&meta("a", "Bad_NS"), true, name_is_dns1035_label, "metadata")),
            vec![format!("metadata.namespace: Invalid value: \"Bad_NS\": {LABEL_RE_MSG}")]
        );
        assert_eq!(
            strings(&validate_object_meta(&meta("a", "default"), false, name_is_dns_subdomain, "metadata")),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn object_meta_generate_name() {
        // Name already generated from a valid prefix: fine (trailing dash is masked).
        let mut m = meta("mynapp-x7k2p", "default");
        m.generate_name = Some("mynapp-".into());
        assert!(validate_object_meta(&m, true, name_is_dns1035_label, "metadata").is_empty());
        // Invalid prefix is reported on generateName, and the generated name on name.
        m.generate_name = Some("1bad-".into());
        m.name = Some("1bad-x7k2p".into());
        assert_eq!(
            strings(&validate_object_meta(&m, true, name_is_dns1035_label, "metadata")),
            vec![
                format!("metadata.generateName: Invalid value: \"1bad-\": {DNS1035_MSG}"),
                format!("metadata.name: Invalid value: \"1bad-x7k2p\": {DNS1035_MSG}"),
            ]
        );
    }

    #[test]
    fn labels_and_annotations() {
        let mut m = meta("a", "default");
        m.labels = Some(BTreeMap::from([("app".into(), "my app".into()), ("bad key!".into(), "v".into())]));
        m.annotations = Some(BTreeMap::from([("Example.COM/Upper".into(), "x".into()), ("a/b/c".into(), "x".into())]));
        let errs = strings(&validate_object_meta(&m, true, name_is_dns1035_label, "metadata"));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0], format!("metadata.labels: Invalid value: \"my app\": {LABEL_VALUE_MSG}"));
        assert_eq!(errs[1], format!("metadata.labels: Invalid value: \"bad key!\": {NAME_PART_MSG}"));
        assert!(errs[2].starts_with("metadata.annotations: Invalid value: \"a/b/c\": a qualified name must consist"));
        let big = BTreeMap::from([("k".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B))]);
        assert_eq!(
            strings(&validate_annotations(&big, "metadata.annotations")),
            vec!["metadata.annotations: Too long: must have at most 262144 bytes"]
        );
    }

    #[test]
    fn finalizers_and_owner_references() {
        let mut m = meta("a", "default");
        m.finalizers = Some(vec!["kubernetes".into(), "example.com/x".into(), "custom".into()]);
        assert_eq!(
            strings(&validate_object_meta(&m, true, name_is_dns1035_label, "metadata")),
            vec!["metadata.finalizers[2]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"]
        );
        let mut m = meta("a", "default");
        m.owner_references = Some(vec![
            OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "rs".into(),
                uid: "u".into(),
                controller: Some(true),
                ..Default::default()
            },
            OwnerReference {
                api_version: "".into(),
                kind: "".into(),
                name: "".into(),
                uid: "".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(
            strings(&validate_object_meta(&m, true, name_is_dns1035_label, "metadata")),
            vec![
                "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty",
                "metadata.ownerReferences.kind: Invalid value: \"\": must not be empty",
                "metadata.ownerReferences.name: Invalid value: \"\": must not be empty",
                "metadata.ownerReferences.uid: Invalid value: \"\": must not be empty",
            ]
        );
    }

    #[test]
    fn object_meta_update_immutable_fields() {
        let ts = |s: &str| Some(Time(s.parse().unwrap()));
        let mut old = meta("x", "default");
        old.uid = Some("u1".into());
        old.resource_version = Some("5".into());
        old.creation_timestamp = ts("2024-01-02T03:04:05Z");
        let mut new = old.clone();
        assert!(validate_object_meta_update(&new, &old, "metadata").is_empty());

        new.name = Some("y".into());
        new.namespace = Some("other".into());
        new.uid = Some("u2".into());
        new.creation_timestamp = ts("2024-01-02T03:04:06Z");
        new.resource_version = None;
        assert_eq!(
            strings(&validate_object_meta_update(&new, &old, "metadata")),
            vec![
                "metadata.resourceVersion: Invalid value: \"\": must be specified for an update",
                "metadata.name: Invalid value: \"y\": field is immutable",
                "metadata.namespace: Invalid value: \"other\": field is immutable",
                "metadata.uid: Invalid value: \"u2\": field is immutable",
                "metadata.creationTimestamp: Invalid value: \"2024-01-02 03:04:06 +0000 UTC\": field is immutable",
            ]
        );

        // BeforeUpdate restores the server-owned fields, leaving name/namespace errors.
        prepare_object_meta_update(&mut new, &old);
        new.resource_version = Some("5".into());
        assert_eq!(
            strings(&validate_object_meta_update(&new, &old, "metadata")),
            vec![
                "metadata.name: Invalid value: \"y\": field is immutable",
                "metadata.namespace: Invalid value: \"other\": field is immutable",
                "metadata.uid: Invalid value: \"u2\": field is immutable",
            ]
        );
    }

    #[test]
    fn object_meta_update_finalizers_while_deleting() {
        let mut old = meta("x", "default");
        old.resource_version = Some("1".into());
        old.deletion_timestamp = Some(Time("2024-01-02T03:04:05Z".parse().unwrap()));
        let mut new = old.clone();
        new.finalizers = Some(vec!["example.com/b".into(), "example.com/a".into()]);
        assert_eq!(
            strings(&validate_object_meta_update(&new, &old, "metadata")),
            vec!["metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/a\", \"example.com/b\"}"]
        );
        new.finalizers = None;
        new.generation = Some(-1);
        old.generation = Some(2);
        assert_eq!(
            strings(&validate_object_meta_update(&new, &old, "metadata")),
            vec!["metadata.generation: Invalid value: -1: must not be decremented"]
        );
    }
}
