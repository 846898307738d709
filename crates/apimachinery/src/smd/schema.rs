//! How server-side apply sees each served kind: which objects are granular,
//! which maps, lists and structs are atomic, and the keys of associative
//! lists. Transcribed from the `+listType`, `+listMapKey`, `+mapType` and
//! `+structType` markers of `k8s.io/api/{core,apps,batch,discovery}/v1/types.go`
//! and `k8s.io/apimachinery/pkg/apis/meta/v1/types.go` (the same markers become
//! `x-kubernetes-list-type` etc. in upstream's OpenAPI).
//!
//! What is not listed follows upstream's rules for unmarked fields: objects are
//! granular, lists are atomic. Kinds without a table (custom objects) get
//! structured-merge-diff's deduced schema, which is the same rule.

/// The merge behaviour of one value.
#[derive(Debug)]
pub enum Shape {
    /// A struct: each field is owned on its own; listed fields have the given
    /// shape, others are [`Shape::Default`].
    Struct(&'static [(&'static str, &'static Shape)]),
    /// A map (`map[string]T`): each key is owned on its own (`mapType=granular`).
    Map(&'static Shape),
    /// Owned and replaced as a whole: scalars, `listType=atomic`,
    /// `mapType=atomic`, `structType=atomic`.
    Atomic,
    /// `listType=map`: items are identified by their key fields. A key field may
    /// have a default (upstream's OpenAPI default) used when an item omits it.
    ListMap { keys: &'static [(&'static str, Option<&'static str>)], item: &'static Shape },
    /// `listType=set`: items are scalars identified by their value.
    ListSet,
    /// No marker: objects granular with default fields, lists atomic.
    Default,
}

impl Shape {
    /// The shape of field or map key `name` below this one.
    pub fn field(&'static self, name: &str) -> &'static Shape {
        match self {
            Shape::Struct(fields) => fields.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap_or(&DEFAULT),
            Shape::Map(elem) => elem,
            _ => &DEFAULT,
        }
    }

    /// Whether object keys here are map keys (owned as members) rather than
    /// struct fields.
    pub fn is_map(&self) -> bool {
        matches!(self, Shape::Map(_))
    }
}

static DEFAULT: Shape = Shape::Default;
static ATOMIC: Shape = Shape::Atomic;
static GRANULAR_MAP: Shape = Shape::Map(&DEFAULT);

const NAME: &[(&str, Option<&str>)] = &[("name", None)];
const TYPE: &[(&str, Option<&str>)] = &[("type", None)];
const IP: &[(&str, Option<&str>)] = &[("ip", None)];

/// `ObjectMeta`: labels/annotations granular maps, ownerReferences by uid
/// (each `OwnerReference` is `structType=atomic`), finalizers a set.
static OBJECT_META: Shape = Shape::Struct(&[
    ("labels", &GRANULAR_MAP),
    ("annotations", &GRANULAR_MAP),
    ("ownerReferences", &Shape::ListMap { keys: &[("uid", None)], item: &ATOMIC }),
    ("finalizers", &Shape::ListSet),
    ("managedFields", &ATOMIC),
]);

static CONDITIONS: Shape = Shape::ListMap { keys: TYPE, item: &DEFAULT };
static CONDITIONS_STATUS: Shape = Shape::Struct(&[("conditions", &CONDITIONS)]);

// --- core/v1: pods ---------------------------------------------------------

static ENV_VAR: Shape = Shape::Struct(&[(
    "valueFrom",
    &Shape::Struct(&[
        ("configMapKeyRef", &ATOMIC),
        ("secretKeyRef", &ATOMIC),
        ("fieldRef", &ATOMIC),
        ("resourceFieldRef", &ATOMIC),
        ("fileKeyRef", &ATOMIC),
    ]),
)]);

static RESOURCES: Shape = Shape::Struct(&[
    ("limits", &GRANULAR_MAP),
    ("requests", &GRANULAR_MAP),
    ("claims", &Shape::ListMap { keys: NAME, item: &DEFAULT }),
]);

static VOLUME_MOUNT: Shape = Shape::Struct(&[("bindMountOptions", &Shape::ListSet)]);

/// Container and EphemeralContainer.
static CONTAINER: Shape = Shape::Struct(&[
    ("ports", &Shape::ListMap { keys: &[("containerPort", None), ("protocol", Some("TCP"))], item: &DEFAULT }),
    ("env", &Shape::ListMap { keys: NAME, item: &ENV_VAR }),
    ("volumeMounts", &Shape::ListMap { keys: &[("mountPath", None)], item: &VOLUME_MOUNT }),
    ("volumeDevices", &Shape::ListMap { keys: &[("devicePath", None)], item: &DEFAULT }),
    ("resources", &RESOURCES),
]);

static CONTAINERS: Shape = Shape::ListMap { keys: NAME, item: &CONTAINER };

static AFFINITY_TERM: Shape = Shape::Struct(&[("labelSelector", &ATOMIC), ("namespaceSelector", &ATOMIC)]);

static AFFINITY: Shape = Shape::Struct(&[
    ("nodeAffinity", &Shape::Struct(&[("requiredDuringSchedulingIgnoredDuringExecution", &ATOMIC)])),
    ("podAffinity", &Shape::Default),
    ("podAntiAffinity", &Shape::Default),
]);

static POD_SPEC: Shape = Shape::Struct(&[
    ("volumes", &Shape::ListMap { keys: NAME, item: &DEFAULT }),
    ("initContainers", &CONTAINERS),
    ("containers", &CONTAINERS),
    ("ephemeralContainers", &CONTAINERS),
    ("nodeSelector", &ATOMIC),
    ("imagePullSecrets", &Shape::ListMap { keys: NAME, item: &ATOMIC }),
    ("hostAliases", &Shape::ListMap { keys: IP, item: &DEFAULT }),
    (
        "topologySpreadConstraints",
        &Shape::ListMap { keys: &[("topologyKey", None), ("whenUnsatisfiable", None)], item: &AFFINITY_TERM },
    ),
    ("schedulingGates", &Shape::ListMap { keys: NAME, item: &DEFAULT }),
    ("resourceClaims", &Shape::ListMap { keys: NAME, item: &DEFAULT }),
    ("affinity", &AFFINITY),
    ("overhead", &GRANULAR_MAP),
]);

static POD_STATUS: Shape = Shape::Struct(&[
    ("conditions", &CONDITIONS),
    ("podIPs", &Shape::ListMap { keys: IP, item: &DEFAULT }),
    ("resourceClaimStatuses", &Shape::ListMap { keys: NAME, item: &DEFAULT }),
]);

static POD: Shape = Shape::Struct(&[("metadata", &OBJECT_META), ("spec", &POD_SPEC), ("status", &POD_STATUS)]);

static POD_TEMPLATE_SPEC: Shape = Shape::Struct(&[("metadata", &OBJECT_META), ("spec", &POD_SPEC)]);

// --- core/v1: the rest -----------------------------------------------------

static SERVICE: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    (
        "spec",
        &Shape::Struct(&[
            ("ports", &Shape::ListMap { keys: &[("port", None), ("protocol", Some("TCP"))], item: &DEFAULT }),
            ("selector", &ATOMIC),
        ]),
    ),
    ("status", &CONDITIONS_STATUS),
]);

static NODE: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &Shape::Struct(&[("podCIDRs", &Shape::ListSet)])),
    (
        "status",
        &Shape::Struct(&[
            ("conditions", &CONDITIONS),
            ("addresses", &Shape::ListMap { keys: TYPE, item: &DEFAULT }),
            ("capacity", &GRANULAR_MAP),
            ("allocatable", &GRANULAR_MAP),
        ]),
    ),
]);

static NAMESPACE: Shape = Shape::Struct(&[("metadata", &OBJECT_META), ("status", &CONDITIONS_STATUS)]);

static SERVICE_ACCOUNT: Shape =
    Shape::Struct(&[("metadata", &OBJECT_META), ("secrets", &Shape::ListMap { keys: NAME, item: &ATOMIC })]);

static DATA_OBJECT: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("data", &GRANULAR_MAP),
    ("binaryData", &GRANULAR_MAP),
    ("stringData", &GRANULAR_MAP),
]);

/// Event: `involvedObject` and `related` are `ObjectReference`s (atomic).
static EVENT: Shape = Shape::Struct(&[("metadata", &OBJECT_META), ("involvedObject", &ATOMIC), ("related", &ATOMIC)]);

static ENDPOINT_SLICE: Shape = Shape::Struct(&[("metadata", &OBJECT_META)]);

static METADATA_ONLY: Shape = Shape::Struct(&[("metadata", &OBJECT_META)]);

// --- apps/v1, batch/v1 -----------------------------------------------------

/// Deployment, ReplicaSet, DaemonSet, StatefulSet specs: a `LabelSelector`
/// (`structType=atomic`) and a pod template.
static WORKLOAD: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &Shape::Struct(&[("selector", &ATOMIC), ("template", &POD_TEMPLATE_SPEC)])),
    ("status", &CONDITIONS_STATUS),
]);

static JOB: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &Shape::Struct(&[("selector", &ATOMIC), ("template", &POD_TEMPLATE_SPEC)])),
    (
        "status",
        &Shape::Struct(&[
            ("conditions", &CONDITIONS),
            ("uncountedTerminatedPods", &Shape::Struct(&[("succeeded", &Shape::ListSet), ("failed", &Shape::ListSet)])),
        ]),
    ),
]);

/// CronJob: `jobTemplate.spec` is a JobSpec (atomic selector, pod template);
/// `status.active` is `listType=atomic`.
static CRON_JOB: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    (
        "spec",
        &Shape::Struct(&[(
            "jobTemplate",
            &Shape::Struct(&[
                ("metadata", &OBJECT_META),
                ("spec", &Shape::Struct(&[("selector", &ATOMIC), ("template", &POD_TEMPLATE_SPEC)])),
            ]),
        )]),
    ),
    ("status", &Shape::Struct(&[("active", &ATOMIC)])),
]);

static REPLICATION_CONTROLLER: Shape = Shape::Struct(&[
    ("metadata", &OBJECT_META),
    ("spec", &Shape::Struct(&[("selector", &ATOMIC), ("template", &POD_TEMPLATE_SPEC)])),
    ("status", &CONDITIONS_STATUS),
]);

/// The root shape of objects of `(group, kind)`.
pub fn for_kind(group: &str, kind: &str) -> &'static Shape {
    match (group, kind) {
        ("", "Pod") => &POD,
        ("", "Service") => &SERVICE,
        ("", "Node") => &NODE,
        ("", "Namespace") => &NAMESPACE,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "ConfigMap" | "Secret") => &DATA_OBJECT,
        ("", "Event") => &EVENT,
        ("", "ReplicationController") => &REPLICATION_CONTROLLER,
        ("", "PodTemplate") => &POD_TEMPLATE,
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet") => &WORKLOAD,
        ("batch", "Job") => &JOB,
        ("batch", "CronJob") => &CRON_JOB,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        _ => &METADATA_ONLY,
    }
}

static POD_TEMPLATE: Shape = Shape::Struct(&[("metadata", &OBJECT_META), ("template", &POD_TEMPLATE_SPEC)]);

/// Fields that a freshly created object of `(group, kind)` already has in
/// upstream's comparison: its Go zero value (`metadata`, `spec`, `status`, the
/// pod template's `metadata`/`spec` are structs, never absent). The creating
/// manager therefore owns their contents but not these paths themselves.
pub fn zero_object(group: &str, kind: &str) -> serde_json::Value {
    use serde_json::json;
    let template = json!({ "metadata": {}, "spec": { "containers": null } });
    match (group, kind) {
        ("apps", "Deployment") => {
            json!({ "metadata": {}, "spec": { "template": template, "strategy": {} }, "status": {} })
        }
        ("apps", "DaemonSet") => {
            json!({ "metadata": {}, "spec": { "template": template, "updateStrategy": {} }, "status": {} })
        }
        ("apps", "StatefulSet") => {
            json!({ "metadata": {}, "spec": { "template": template, "updateStrategy": {} }, "status": {} })
        }
        ("batch", "CronJob") => json!({
            "metadata": {},
            "spec": { "jobTemplate": { "metadata": {}, "spec": { "template": template } } },
            "status": {},
        }),
        ("apps", "ReplicaSet") | ("batch", "Job") => {
            json!({ "metadata": {}, "spec": { "template": template }, "status": {} })
        }
        ("", "Service") => json!({ "metadata": {}, "spec": {}, "status": { "loadBalancer": {} } }),
        ("", "Pod") => json!({ "metadata": {}, "spec": { "containers": null }, "status": {} }),
        ("", "Node" | "Namespace" | "ReplicationController") => json!({ "metadata": {}, "spec": {}, "status": {} }),
        ("", "Event") => json!({ "metadata": {}, "involvedObject": {}, "source": {} }),
        _ => json!({ "metadata": {} }),
    }
}
