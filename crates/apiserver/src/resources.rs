//! The table of resources this API server serves: names, scope, discovery
//! metadata. Everything generic (REST handlers, discovery, OpenAPI, tables)
//! is driven from here. Values follow upstream discovery output
//! (`kubectl api-resources` on a v1.33 cluster).

/// One served resource (a REST collection) in one group/version.
#[derive(Debug)]
pub struct Resource {
    /// API group, `""` for core.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Plural lower-case name used in URLs, e.g. `services`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `/status` subresource.
    pub status: bool,
    /// Has a `/scale` subresource (autoscaling/v1 Scale).
    pub scale: bool,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// `ServiceList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    /// URL prefix of the group version: `/api/v1` or `/apis/apps/v1`.
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
    /// Verbs of the main resource, as discovery lists them.
    pub fn verbs(&self) -> &'static [&'static str] {
        if crate::access_review::is_review(self.group, self.plural) {
            return &["create"];
        }
        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }
    /// Storage key prefix of this resource: `/registry/<group>/<plural>/`.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() { "core" } else { self.group };
        format!("/registry/{group}/{}/", self.plural)
    }
    /// Storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }
    /// Storage prefix of all objects in one namespace (or all, if `None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }
}

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr,
     short: [$($short:expr),*], cat: [$($cat:expr),*], status: $status:expr, scale: $scale:expr) => {
        Resource {
            group: $group, version: $version, kind: $kind, plural: $plural, singular: $singular,
            namespaced: $ns, short_names: &[$($short),*], categories: &[$($cat),*],
            status: $status, scale: $scale,
        }
    };
}

/// Every resource served, in discovery order.
pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", "Namespace", "namespaces", "namespace", false, short: ["ns"], cat: [], status: true, scale: false),
    resource!("", "v1", "Pod", "pods", "pod", true, short: ["po"], cat: ["all"], status: true, scale: false),
    resource!("", "v1", "Service", "services", "service", true, short: ["svc"], cat: ["all"], status: true, scale: false),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", true, short: ["ep"], cat: [], status: false, scale: false),
    resource!("", "v1", "Node", "nodes", "node", false, short: ["no"], cat: [], status: true, scale: false),
    resource!("", "v1", "Event", "events", "event", true, short: ["ev"], cat: [], status: false, scale: false),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", true, short: ["cm"], cat: [], status: false, scale: false),
    resource!("", "v1", "Secret", "secrets", "secret", true, short: [], cat: [], status: false, scale: false),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, short: ["sa"], cat: [], status: false, scale: false),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, short: ["rs"], cat: ["all"], status: true, scale: true),
    resource!("apps", "v1", "Deployment", "deployments", "deployment", true, short: ["deploy"], cat: ["all"], status: true, scale: true),
    resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, short: ["ds"], cat: ["all"], status: true, scale: false),
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, short: [], cat: [], status: false, scale: false),
    resource!("batch", "v1", "Job", "jobs", "job", true, short: [], cat: ["all"], status: true, scale: false),
    resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, short: ["sts"], cat: ["all"], status: true, scale: true),
    resource!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, short: ["cj"], cat: ["all"], status: true, scale: false),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, short: [], cat: [], status: false, scale: false),
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, short: [], cat: [], status: false, scale: false),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, short: [], cat: [], status: false, scale: false),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, short: [], cat: [], status: false, scale: false),
    resource!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, short: [], cat: [], status: false, scale: false),
    resource!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, short: [], cat: [], status: false, scale: false),
    resource!("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", false, short: [], cat: [], status: false, scale: false),
    resource!("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", false, short: [], cat: [], status: false, scale: false),
    resource!("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", "localsubjectaccessreview", true, short: [], cat: [], status: false, scale: false),
    resource!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, short: [], cat: [], status: false, scale: false),
    resource!("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", false, short: ["csr"], cat: [], status: true, scale: false),
    // MetalLB's kinds, served built in (as its CRDs declare them: status subresource, no short names).
    resource!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", false, short: ["crd", "crds"], cat: ["api-extensions"], status: true, scale: false),
    resource!("metallb.io", "v1beta1", "IPAddressPool", "ipaddresspools", "ipaddresspool", true, short: [], cat: [], status: true, scale: false),
    resource!("metallb.io", "v1beta1", "L2Advertisement", "l2advertisements", "l2advertisement", true, short: [], cat: [], status: true, scale: false),
];

/// API groups served (besides the core group), with their versions.
pub static GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("batch", "v1"),
    ("discovery.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
    ("certificates.k8s.io", "v1"),
    ("rbac.authorization.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
    ("authentication.k8s.io", "v1"),
    ("apiextensions.k8s.io", "v1"),
    ("metallb.io", "v1beta1"),
];

/// Look a resource up by group, version and plural name (built-in or custom).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
        .or_else(|| crate::crd::find(group, version, plural))
}

/// Look a resource up by apiVersion and kind.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
        .or_else(|| crate::crd::find_kind(api_version, kind))
}

/// Every resource served now: the built-in ones, then the custom ones.
pub fn all() -> Vec<&'static Resource> {
    let mut v: Vec<&'static Resource> = RESOURCES.iter().collect();
    v.extend(crate::crd::all());
    v
}

/// Every API group served now (besides core) with its versions, preferred first.
pub fn groups() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> =
        GROUPS.iter().map(|(g, v)| (g.to_string(), vec![v.to_string()])).collect();
    for r in crate::crd::all() {
        match out.iter_mut().find(|(g, _)| g == r.group) {
            Some((_, vs)) => {
                if !vs.iter().any(|v| v == r.version) {
                    vs.push(r.version.to_string());
                }
            }
            None => out.push((r.group.to_string(), vec![r.version.to_string()])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by_key(|v| std::cmp::Reverse(crate::crd::version_priority(v)));
    }
    out
}
