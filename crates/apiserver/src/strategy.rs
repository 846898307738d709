//! Per-resource rules applied by the registry on create, update and delete:
//! defaults, validation, status handling and allocation (upstream: each
//! resource's `strategy.go` under `pkg/registry`).

use crate::resources::Resource;
use crate::services::{Allocation, ServiceAllocator};
use apimachinery::field::FieldError;
use serde_json::{json, Value};

/// Strategies of every resource, with the state some of them need.
pub struct Strategies {
    pub services: ServiceAllocator,
    /// Ranges a LoadBalancer address pool may not cover (service and pod CIDRs).
    pub lb_reserved: apimachinery::metallb::Reserved,
    /// `--default-not-ready-toleration-seconds` and
    /// `--default-unreachable-toleration-seconds` (300 each).
    pub default_toleration_seconds: (i64, i64),
}

type Errors = Vec<FieldError>;

impl Strategies {
    /// Whether `metadata.generation` is maintained (bumped on spec changes).
    pub fn has_generation(&self, r: &Resource) -> bool {
        matches!(r.plural, "replicasets" | "deployments" | "daemonsets" | "jobs" | "statefulsets" | "cronjobs")
            || (r.group == "apiextensions.k8s.io" && r.plural == "customresourcedefinitions")
            || crate::crd::custom(r).is_some()
    }

    /// Default propagation policy when the client sends none (Background).
    pub fn default_propagation(&self, _r: &Resource) -> Option<&'static str> {
        None
    }

    pub fn prepare_create(&self, r: &Resource, obj: &mut Value) -> Result<Allocation, Errors> {
        let mut errs = validate_meta(r, obj);
        match r.plural {
            "namespaces" => {
                obj["status"] = json!({ "phase": "Active" });
                obj["spec"] = json!({ "finalizers": ["kubernetes"] });
            }
            "pods" => {
                defaults::pod_spec(&mut obj["spec"]);
                defaults::host_network_ports(&mut obj["spec"]);
                let (not_ready, unreachable) = self.default_toleration_seconds;
                default_toleration_seconds(&mut obj["spec"], not_ready, unreachable);
                obj["status"] = json!({ "phase": "Pending", "qosClass": defaults::qos_class(&obj["spec"]) });
            }
            "replicasets" => {
                defaults::replicaset(obj);
                obj["status"] = json!({ "replicas": 0 });
                errs.extend(validate_selector_matches_template(obj));
            }
            "deployments" => {
                defaults::deployment(obj);
                obj["status"] = json!({});
                errs.extend(validate_selector_matches_template(obj));
            }
            // pkg/registry/apps/daemonset/strategy.go
            "daemonsets" => {
                defaults::daemonset(obj);
                apimachinery::daemonset::prepare_create(obj);
                errs.extend(apimachinery::daemonset::validate(obj));
            }
            // pkg/registry/batch/job/strategy.go
            "jobs" => {
                defaults::job(obj);
                apimachinery::job::prepare_create(obj);
                errs.extend(apimachinery::job::validate(obj));
            }
            // pkg/registry/apps/statefulset/strategy.go
            "statefulsets" => {
                defaults::statefulset(obj);
                apimachinery::statefulset::prepare_create(obj);
                errs.extend(apimachinery::statefulset::validate(obj));
                errs.extend(apimachinery::statefulset::validate_service_name(obj));
            }
            // pkg/registry/batch/cronjob/strategy.go
            "cronjobs" => {
                defaults::cronjob(obj);
                apimachinery::cronjob::prepare_create(obj);
                errs.extend(apimachinery::cronjob::validate_create(obj));
            }
            "services" => {
                if !errs.is_empty() {
                    return Err(errs);
                }
                return self.services.prepare_create(obj);
            }
            "ipaddresspools" => {
                defaults::ip_address_pool(obj);
                errs.extend(apimachinery::metallb::validate_pool(obj, &self.lb_reserved));
            }
            "l2advertisements" => errs.extend(apimachinery::metallb::validate_l2_advertisement(obj)),
            // The handler stamped the requester (it knows the user).
            "certificatesigningrequests" => errs.extend(apimachinery::certificates::validate_create(obj)),
            "customresourcedefinitions" if r.group == "apiextensions.k8s.io" => {
                errs.extend(custom_definition(obj));
            }
            _ => errs.extend(custom_object(r, obj, None)),
        }
        if errs.is_empty() {
            Ok(Allocation::none())
        } else {
            Err(errs)
        }
    }

    pub fn prepare_update(
        &self,
        r: &Resource,
        obj: &mut Value,
        old: &Value,
        sub: Option<&str>,
    ) -> Result<Allocation, Errors> {
        if r.plural == "certificatesigningrequests" && r.group == "certificates.k8s.io" {
            let now = crate::registry::now_rfc3339();
            match sub {
                Some("approval") => apimachinery::certificates::prepare_approval(obj, old, &now),
                Some("status") => apimachinery::certificates::prepare_status(obj, old, &now),
                _ => apimachinery::certificates::prepare_update(obj, old),
            }
            let mut errs = validate_meta(r, obj);
            errs.extend(apimachinery::certificates::validate_update(obj, old));
            return if errs.is_empty() { Ok(Allocation::none()) } else { Err(errs) };
        }
        match sub {
            Some("status") => {
                // Only status changes through /status (upstream ResetObjectMetaForStatus).
                let status = obj.get("status").cloned();
                *obj = old.clone();
                match status {
                    Some(s) => obj["status"] = s,
                    None => {
                        if let Some(m) = obj.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                return Ok(Allocation::none());
            }
            // The binding handler built the object from the stored one: it sets
            // spec.nodeName and the PodScheduled condition together.
            Some("binding") if r.plural == "pods" => return Ok(Allocation::none()),
            Some("finalize") if r.plural == "namespaces" => {
                let spec = obj.get("spec").cloned();
                *obj = old.clone();
                if let Some(s) = spec {
                    obj["spec"] = s;
                }
                return Ok(Allocation::none());
            }
            _ => {}
        }
        if r.status {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        let mut errs = validate_meta(r, obj);
        match r.plural {
            "namespaces" => {
                // spec.finalizers only change through /finalize.
                if let Some(s) = old.get("spec") {
                    obj["spec"] = s.clone();
                }
            }
            "pods" => {
                defaults::pod_spec(&mut obj["spec"]);
                defaults::host_network_ports(&mut obj["spec"]);
            }
            "replicasets" => {
                defaults::replicaset(obj);
                errs.extend(validate_selector_matches_template(obj));
            }
            "deployments" => {
                defaults::deployment(obj);
                errs.extend(validate_selector_matches_template(obj));
            }
            "daemonsets" => {
                defaults::daemonset(obj);
                apimachinery::daemonset::prepare_update(obj, old);
                errs.extend(apimachinery::daemonset::validate_update(obj, old));
            }
            "jobs" => {
                defaults::job(obj);
                errs.extend(apimachinery::job::validate_update(obj, old));
            }
            "statefulsets" => {
                defaults::statefulset(obj);
                errs.extend(apimachinery::statefulset::validate_update(obj, old));
                if obj.pointer("/spec/serviceName") != old.pointer("/spec/serviceName") {
                    errs.extend(apimachinery::statefulset::validate_service_name(obj));
                }
            }
            "cronjobs" => {
                defaults::cronjob(obj);
                errs.extend(apimachinery::cronjob::validate_update(obj, old));
            }
            "services" => {
                if !errs.is_empty() {
                    return Err(errs);
                }
                return self.services.prepare_update(obj, old);
            }
            "ipaddresspools" => {
                defaults::ip_address_pool(obj);
                errs.extend(apimachinery::metallb::validate_pool(obj, &self.lb_reserved));
            }
            "l2advertisements" => errs.extend(apimachinery::metallb::validate_l2_advertisement(obj)),
            "customresourcedefinitions" if r.group == "apiextensions.k8s.io" => {
                errs.extend(custom_definition(obj));
                errs.extend(apimachinery::crd::definition::validate_update(obj, old));
            }
            _ => errs.extend(custom_object(r, obj, Some(old))),
        }
        if errs.is_empty() {
            Ok(Allocation::none())
        } else {
            Err(errs)
        }
    }

    /// Grace period a delete waits for (pods bound to a node); `None` = delete now.
    pub fn grace_period(&self, r: &Resource, obj: &Value, requested: Option<i64>) -> Option<i64> {
        if r.plural != "pods" {
            return None;
        }
        let bound = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let terminal = matches!(obj.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
        if !bound || terminal {
            return None;
        }
        let secs = requested
            .or_else(|| obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64))
            .or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
            .unwrap_or(30);
        (secs > 0).then_some(secs)
    }

    /// Whether an object being deleted must stay although it has no metadata
    /// finalizers: a pod until its grace period is handled by its node, a
    /// namespace until `spec.finalizers` is empty (its content is gone).
    pub fn blocks_deletion(&self, r: &Resource, obj: &Value) -> bool {
        match r.plural {
            "pods" => obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) > 0,
            "namespaces" => obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty()),
            _ => false,
        }
    }

    pub fn before_delete(&self, r: &Resource, obj: &mut Value) {
        if r.plural == "namespaces" {
            obj["status"] = json!({ "phase": "Terminating" });
        }
    }

    /// The object is gone from the store: give back what it held.
    pub async fn released(&self, r: &Resource, obj: &Value) {
        if r.plural == "services" && r.group.is_empty() {
            self.services.release_all(obj).await;
        }
    }
}

/// The `DefaultTolerationSeconds` admission plugin: a pod that does not
/// tolerate the node lifecycle controller's NoExecute taints for not-ready
/// and unreachable nodes tolerates them for a while, so it is evicted only
/// after that (`plugin/pkg/admission/defaulttolerationseconds/admission.go`).
fn default_toleration_seconds(spec: &mut Value, not_ready: i64, unreachable: i64) {
    const NOT_READY: &str = "node.kubernetes.io/not-ready";
    const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
    let tolerations: Vec<Value> = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let covers = |key: &str| {
        tolerations.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let e = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let mut add = Vec::new();
    for (key, seconds) in [(NOT_READY, not_ready), (UNREACHABLE, unreachable)] {
        if !covers(key) {
            add.push(json!({ "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds }));
        }
    }
    if add.is_empty() || !spec.is_object() {
        return;
    }
    let mut all = tolerations;
    all.extend(add);
    spec["tolerations"] = Value::Array(all);
}

/// Name rules: a DNS-1123 subdomain for most kinds, a DNS-1035 label for
/// Services, a DNS-1123 label for Namespaces (upstream `ValidateObjectMeta`).
/// A CRD: defaults, validation, and the status the naming and establishing
/// controllers would set (`apiextensions-apiserver/pkg/registry/customresourcedefinition/strategy.go`).
fn custom_definition(obj: &mut Value) -> Errors {
    apimachinery::crd::definition::default(obj);
    let errs = apimachinery::crd::definition::validate(obj);
    if errs.is_empty() {
        obj["status"] = apimachinery::crd::definition::status(obj, &crate::registry::now_rfc3339());
    }
    errs
}

/// A custom object: its CRD version's schema defaults and validates it
/// (unknown fields were pruned when the body was decoded), then its CEL rules
/// run, unless a wrong type or value makes them unsafe to run
/// (`customresource/validator.go` `hasBlockingErr`).
fn custom_object(r: &Resource, obj: &mut Value, old: Option<&Value>) -> Errors {
    use apimachinery::field::ErrorType;
    let Some(schema) = crate::crd::custom(r).and_then(|c| c.version.schema) else { return Vec::new() };
    apimachinery::crd::schema::default(obj, &schema);
    let mut errs = apimachinery::crd::schema::validate(obj, &schema);
    if errs.iter().any(|e| matches!(e.kind, ErrorType::NotSupported | ErrorType::TypeInvalid)) {
        errs.push(FieldError::invalid(
            "<nil>",
            // Go prints a nil value as the string "null".
            "null",
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
    } else {
        errs.extend(apimachinery::crd::rules::validate(obj, old, &schema));
    }
    errs
}

/// `path.IsValidPathSegmentName` (`apimachinery/pkg/api/validation/path`).
fn path_segment_name(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"].iter().filter(|c| name.contains(*c)).map(|c| format!("may not contain '{c}'")).collect()
}

fn validate_meta(r: &Resource, obj: &Value) -> Errors {
    let name = crate::object::name(obj);
    let msgs = match r.plural {
        "services" => apimachinery::names::is_dns1035_label(name),
        // `ValidateStatefulSetName`: pod names and hostnames are built from it.
        "namespaces" | "statefulsets" => apimachinery::names::is_dns1123_label(name),
        // `ValidateRBACName` is `path.IsValidPathSegmentName`: `system:node` is a name.
        "roles" | "rolebindings" | "clusterroles" | "clusterrolebindings" if r.group == "rbac.authorization.k8s.io" => {
            path_segment_name(name)
        }
        _ => apimachinery::names::is_dns1123_subdomain(name),
    };
    let mut errs: Errors = msgs.into_iter().map(|m| FieldError::invalid("metadata.name", name, m)).collect();
    // Decoding through the Kubernetes type already made every label a string.
    let labels: std::collections::BTreeMap<String, String> =
        obj.pointer("/metadata/labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
    errs.extend(apimachinery::names::validate_labels(&labels, "metadata.labels"));
    errs
}

/// ReplicaSet/Deployment: a selector is required and must match the template labels.
fn validate_selector_matches_template(obj: &Value) -> Errors {
    let Some(sel) = obj.pointer("/spec/selector") else {
        return vec![FieldError::required("spec.selector", "")];
    };
    let empty = sel.get("matchLabels").and_then(Value::as_object).is_none_or(|m| m.is_empty())
        && sel.get("matchExpressions").and_then(Value::as_array).is_none_or(|a| a.is_empty());
    if empty {
        return vec![FieldError::invalid("spec.selector", sel.clone(), "empty selector is invalid for deployment")];
    }
    let selector = match apimachinery::selector::LabelSelector::from_label_selector(sel) {
        Ok(s) => s,
        Err(e) => return vec![FieldError::invalid("spec.selector", sel.clone(), e.to_string())],
    };
    let template = obj.pointer("/spec/template").cloned().unwrap_or_default();
    if !selector.matches_object(&template) {
        let labels = template.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({}));
        return vec![FieldError::invalid(
            "spec.template.metadata.labels",
            labels,
            "`selector` does not match template `labels`",
        )];
    }
    Vec::new()
}

/// Upstream defaults for workload types (`pkg/apis/core/v1/defaults.go`,
/// `pkg/apis/apps/v1/defaults.go`).
mod defaults {
    use serde_json::{json, Value};

    fn set_if_absent(obj: &mut Value, key: &str, v: Value) {
        if let Some(m) = obj.as_object_mut() {
            m.entry(key).or_insert(v);
        }
    }

    pub fn pod_spec(spec: &mut Value) {
        if !spec.is_object() {
            *spec = json!({});
        }
        set_if_absent(spec, "restartPolicy", json!("Always"));
        set_if_absent(spec, "terminationGracePeriodSeconds", json!(30));
        set_if_absent(spec, "dnsPolicy", json!("ClusterFirst"));
        set_if_absent(spec, "securityContext", json!({}));
        set_if_absent(spec, "schedulerName", json!("default-scheduler"));
        set_if_absent(spec, "enableServiceLinks", json!(true));
        set_if_absent(spec, "serviceAccountName", json!("default"));
        set_if_absent(spec, "serviceAccount", json!("default"));
        for list in ["containers", "initContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    container(c);
                }
            }
        }
    }

    /// A host-network pod's container ports are ports of the node: `hostPort`
    /// defaults to `containerPort` (upstream `defaultHostNetworkPorts`, applied to
    /// Pods only since the `DefaultHostNetworkHostPortsInPodTemplates` gate went off).
    pub fn host_network_ports(spec: &mut Value) {
        if spec.get("hostNetwork").and_then(Value::as_bool) != Some(true) {
            return;
        }
        for list in ["containers", "initContainers"] {
            let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else { continue };
            for ports in cs.iter_mut().filter_map(|c| c.get_mut("ports").and_then(Value::as_array_mut)) {
                for p in ports {
                    let host = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                    if let (0, Some(cp)) = (host, p.get("containerPort").cloned()) {
                        p["hostPort"] = cp;
                    }
                }
            }
        }
    }

    fn container(c: &mut Value) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        // `:latest` or no tag pulls Always, otherwise IfNotPresent.
        let last = image.rsplit('/').next().unwrap_or_default();
        let policy = if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
            "IfNotPresent"
        } else {
            "Always"
        };
        set_if_absent(c, "imagePullPolicy", json!(policy));
        set_if_absent(c, "terminationMessagePath", json!("/dev/termination-log"));
        set_if_absent(c, "terminationMessagePolicy", json!("File"));
        set_if_absent(c, "resources", json!({}));
        if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                set_if_absent(p, "protocol", json!("TCP"));
            }
        }
    }

    /// QoS class from requests/limits (upstream `GetPodQOS`, simplified to
    /// whole-pod checks: Guaranteed needs limits == requests for cpu and memory).
    pub fn qos_class(spec: &Value) -> &'static str {
        let containers = spec.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut any = false;
        let mut guaranteed = !containers.is_empty();
        for c in &containers {
            let req = c.pointer("/resources/requests");
            let lim = c.pointer("/resources/limits");
            if req.is_some_and(|r| r.as_object().is_some_and(|m| !m.is_empty()))
                || lim.is_some_and(|l| l.as_object().is_some_and(|m| !m.is_empty()))
            {
                any = true;
            }
            for res in ["cpu", "memory"] {
                let l = lim.and_then(|l| l.get(res));
                let r = req.and_then(|r| r.get(res)).or(l);
                if l.is_none() || r != l {
                    guaranteed = false;
                }
            }
        }
        if guaranteed {
            "Guaranteed"
        } else if any {
            "Burstable"
        } else {
            "BestEffort"
        }
    }

    fn template(obj: &mut Value) {
        if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
            pod_spec(spec);
        }
        if let Some(t) = obj.pointer_mut("/spec/template/metadata") {
            if let Some(m) = t.as_object_mut() {
                m.remove("creationTimestamp");
            }
        }
    }

    /// The CRD defaults of MetalLB's `IPAddressPool` (`+kubebuilder:default`).
    pub fn ip_address_pool(obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            return;
        }
        let spec = &mut obj["spec"];
        if spec.get("autoAssign").is_none_or(Value::is_null) {
            spec["autoAssign"] = json!(true);
        }
        if spec.get("avoidBuggyIPs").is_none_or(Value::is_null) {
            spec["avoidBuggyIPs"] = json!(false);
        }
    }

    pub fn replicaset(obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        set_if_absent(&mut obj["spec"], "replicas", json!(1));
        template(obj);
    }

    /// `SetDefaults_DaemonSet` and the template's pod defaults.
    pub fn daemonset(obj: &mut Value) {
        apimachinery::daemonset::set_defaults(obj);
        template(obj);
    }

    /// `SetDefaults_Job` and the template's pod defaults.
    pub fn job(obj: &mut Value) {
        apimachinery::job::set_defaults(obj);
        template(obj);
    }

    /// `SetDefaults_StatefulSet` and the template's pod defaults.
    pub fn statefulset(obj: &mut Value) {
        apimachinery::statefulset::set_defaults(obj);
        template(obj);
    }

    /// `SetDefaults_CronJob` and the job template's pod defaults.
    pub fn cronjob(obj: &mut Value) {
        apimachinery::cronjob::set_defaults(obj);
        if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
            pod_spec(spec);
        }
        for meta in ["/spec/jobTemplate/metadata", "/spec/jobTemplate/spec/template/metadata"] {
            if let Some(m) = obj.pointer_mut(meta).and_then(Value::as_object_mut) {
                m.remove("creationTimestamp");
            }
        }
    }

    pub fn deployment(obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        let spec = &mut obj["spec"];
        set_if_absent(spec, "replicas", json!(1));
        set_if_absent(spec, "revisionHistoryLimit", json!(10));
        set_if_absent(spec, "progressDeadlineSeconds", json!(600));
        set_if_absent(spec, "strategy", json!({}));
        let strategy = &mut spec["strategy"];
        set_if_absent(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            set_if_absent(strategy, "rollingUpdate", json!({}));
            set_if_absent(&mut strategy["rollingUpdate"], "maxSurge", json!("25%"));
            set_if_absent(&mut strategy["rollingUpdate"], "maxUnavailable", json!("25%"));
        }
        template(obj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_tolerate_not_ready_and_unreachable_for_a_while() {
        let mut spec = json!({ "containers": [] });
        default_toleration_seconds(&mut spec, 300, 60);
        assert_eq!(
            spec["tolerations"],
            json!([
                { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
                { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60 },
            ])
        );
        // A pod's own toleration of the taint (any effect) is kept as it is.
        let own = json!({ "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 5 });
        let mut spec = json!({ "tolerations": [own.clone()] });
        default_toleration_seconds(&mut spec, 300, 300);
        assert_eq!(spec["tolerations"].as_array().map(Vec::len), Some(2));
        assert_eq!(spec["tolerations"][0], own);
        // Tolerating every taint (empty key, Exists) needs nothing added.
        let mut spec = json!({ "tolerations": [{ "operator": "Exists" }] });
        default_toleration_seconds(&mut spec, 300, 300);
        assert_eq!(spec["tolerations"], json!([{ "operator": "Exists" }]));
    }

    #[test]
    fn host_network_pods_get_host_ports() {
        let mut spec = json!({ "hostNetwork": true, "containers": [
            { "name": "a", "ports": [{ "containerPort": 53 }, { "containerPort": 9253, "hostPort": 9254 }] },
        ], "initContainers": [{ "name": "i", "ports": [{ "containerPort": 80 }] }] });
        defaults::host_network_ports(&mut spec);
        assert_eq!(spec["containers"][0]["ports"][0]["hostPort"], json!(53));
        assert_eq!(spec["containers"][0]["ports"][1]["hostPort"], json!(9254));
        assert_eq!(spec["initContainers"][0]["ports"][0]["hostPort"], json!(80));
        let mut spec = json!({ "containers": [{ "name": "a", "ports": [{ "containerPort": 53 }] }] });
        defaults::host_network_ports(&mut spec);
        assert!(spec["containers"][0]["ports"][0].get("hostPort").is_none(), "only on the host network");
    }
}
