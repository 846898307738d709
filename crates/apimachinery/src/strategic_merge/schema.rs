//! Strategic-merge-patch metadata of the built-in types rkube serves: the Go
//! struct tags `patchStrategy:"..."` / `patchMergeKey:"..."` of
//! `staging/src/k8s.io/api/core/v1/types.go`, `apps/v1/types.go`, and
//! `apimachinery/pkg/apis/meta/v1/types.go` (ObjectMeta), as static data.
//!
//! Only the paths that lead to a field with a patch strategy are spelled out.
//! Every other field behaves the same whether it is listed or not: objects merge
//! recursively, lists are replaced wholesale, scalars are replaced. Checked
//! against upstream: `discovery/v1` (EndpointSlice), `coordination/v1` (Lease),
//! core `Endpoints` (subsets are `listType=atomic`), `ConfigMap`, `Secret` and
//! `Event` carry no patch strategy below `metadata`; `PodSpec.tolerations`,
//! `NodeSpec.taints`, `PodStatus.containerStatuses`, `Container.envFrom` and
//! `Container.resizePolicy` are atomic lists without a strategy.

/// The non-`retainKeys` part of a field's `patchStrategy` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No tag: objects merge, lists are replaced.
    None,
    /// `patchStrategy:"merge"`: lists merge by `merge_key` (or as sets of
    /// primitives when the key is empty).
    Merge,
    /// `patchStrategy:"replace"`: the patch value replaces the field.
    Replace,
}

/// One field of a struct with patch metadata.
#[derive(Debug)]
pub(crate) struct Field {
    /// JSON name of the field.
    pub(crate) name: &'static str,
    pub(crate) strategy: Strategy,
    /// `retainKeys` is part of the tag. The server applies `$retainKeys`
    /// directives wherever they appear; OpenAPI publishes it so kubectl knows
    /// where to generate them.
    pub(crate) retain_keys: bool,
    /// `patchMergeKey`, empty when there is none.
    pub(crate) merge_key: &'static str,
    /// Schema of the value, or of the list elements for list fields.
    pub(crate) schema: &'static Schema,
}

/// Patch metadata of a JSON value.
#[derive(Debug)]
pub(crate) enum Schema {
    /// A struct: listed fields carry metadata; unlisted fields have none.
    Struct(&'static [Field]),
    /// Nothing below carries patch metadata (maps, scalars, unknown types).
    Opaque,
}

impl Schema {
    /// `LookupPatchMetadataForStruct` / `LookupPatchMetadataForSlice`: the schema
    /// of field `key` (its elements for lists), its strategy and merge key.
    ///
    /// Like upstream's forked `encoding/json` field lookup, an exact name match
    /// wins and a case-insensitive one is the fallback. A field that is not
    /// listed has no metadata (upstream would fail on a field its struct lacks;
    /// only fields of the object's own type reach here).
    pub(crate) fn lookup(&'static self, key: &str) -> (&'static Schema, Strategy, &'static str) {
        if let Schema::Struct(fields) = self {
            let found = fields
                .iter()
                .find(|f| f.name == key)
                .or_else(|| fields.iter().find(|f| f.name.eq_ignore_ascii_case(key)));
            if let Some(f) = found {
                return (f.schema, f.strategy, f.merge_key);
            }
        }
        (&OPAQUE, Strategy::None, "")
    }
}

pub(crate) static OPAQUE: Schema = Schema::Opaque;

/// A field without a strategy whose value has metadata below it.
pub(crate) const fn nested(name: &'static str, schema: &'static Schema) -> Field {
    Field { name, strategy: Strategy::None, retain_keys: false, merge_key: "", schema }
}

/// `patchStrategy:"merge" patchMergeKey:"<key>"` on a list of objects.
pub(crate) const fn merge_by(name: &'static str, merge_key: &'static str, schema: &'static Schema) -> Field {
    Field { name, strategy: Strategy::Merge, retain_keys: false, merge_key, schema }
}

/// `patchStrategy:"merge,retainKeys" patchMergeKey:"<key>"`.
pub(crate) const fn merge_by_retain_keys(
    name: &'static str,
    merge_key: &'static str,
    schema: &'static Schema,
) -> Field {
    Field { name, strategy: Strategy::Merge, retain_keys: true, merge_key, schema }
}

/// `patchStrategy:"merge"` on a list of primitives (a set).
pub(crate) const fn merge_set(name: &'static str) -> Field {
    Field { name, strategy: Strategy::Merge, retain_keys: false, merge_key: "", schema: &OPAQUE }
}

/// `patchStrategy:"retainKeys"` on a struct.
pub(crate) const fn retain_keys(name: &'static str, schema: &'static Schema) -> Field {
    Field { name, strategy: Strategy::None, retain_keys: true, merge_key: "", schema }
}

/// `patchStrategy:"replace"`.
#[cfg(test)]
pub(crate) const fn replace(name: &'static str) -> Field {
    Field { name, strategy: Strategy::Replace, retain_keys: false, merge_key: "", schema: &OPAQUE }
}

// --- meta/v1 ---------------------------------------------------------------

/// ObjectMeta: `ownerReferences` merge by `uid`, `finalizers` merge (a set).
static OBJECT_META: Schema = Schema::Struct(&[merge_by("ownerReferences", "uid", &OPAQUE), merge_set("finalizers")]);

static METADATA_ONLY: Schema = Schema::Struct(&[nested("metadata", &OBJECT_META)]);

/// A status whose only strategic field is `conditions` merged by `type`
/// (ReplicaSetStatus, DeploymentStatus, DaemonSetStatus, NamespaceStatus,
/// ReplicationControllerStatus, ServiceStatus).
static CONDITIONS_STATUS: Schema = Schema::Struct(&[merge_by("conditions", "type", &OPAQUE)]);

// --- core/v1: pods -----------------------------------------------------------

/// Container and EphemeralContainer (EphemeralContainerCommon is inlined and
/// carries the same tags).
static CONTAINER: Schema = Schema::Struct(&[
    merge_by("ports", "containerPort", &OPAQUE),
    merge_by("env", "name", &OPAQUE),
    merge_by("volumeMounts", "mountPath", &OPAQUE),
    merge_by("volumeDevices", "devicePath", &OPAQUE),
]);

/// PersistentVolumeClaimTemplate (Volume.ephemeral.volumeClaimTemplate).
static PVC_TEMPLATE: Schema = Schema::Struct(&[nested("metadata", &OBJECT_META)]);
static EPHEMERAL_VOLUME_SOURCE: Schema = Schema::Struct(&[nested("volumeClaimTemplate", &PVC_TEMPLATE)]);
/// Volume (VolumeSource is inlined).
static VOLUME: Schema = Schema::Struct(&[nested("ephemeral", &EPHEMERAL_VOLUME_SOURCE)]);

static POD_SPEC: Schema = Schema::Struct(&[
    merge_by_retain_keys("volumes", "name", &VOLUME),
    merge_by("initContainers", "name", &CONTAINER),
    merge_by("containers", "name", &CONTAINER),
    merge_by("ephemeralContainers", "name", &CONTAINER),
    merge_by("imagePullSecrets", "name", &OPAQUE),
    merge_by("hostAliases", "ip", &OPAQUE),
    merge_by("topologySpreadConstraints", "topologyKey", &OPAQUE),
    merge_by("schedulingGates", "name", &OPAQUE),
    merge_by_retain_keys("resourceClaims", "name", &OPAQUE),
]);

static POD_STATUS: Schema = Schema::Struct(&[
    merge_by("conditions", "type", &OPAQUE),
    merge_by("hostIPs", "ip", &OPAQUE),
    merge_by("podIPs", "ip", &OPAQUE),
    merge_by_retain_keys("resourceClaimStatuses", "name", &OPAQUE),
]);

static POD: Schema =
    Schema::Struct(&[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC), nested("status", &POD_STATUS)]);

static POD_TEMPLATE_SPEC: Schema = Schema::Struct(&[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC)]);

static POD_TEMPLATE: Schema =
    Schema::Struct(&[nested("metadata", &OBJECT_META), nested("template", &POD_TEMPLATE_SPEC)]);

/// A spec whose only strategic path is `template` (ReplicaSetSpec,
/// ReplicationControllerSpec, DaemonSetSpec, StatefulSetSpec, JobSpec).
static TEMPLATE_SPEC: Schema = Schema::Struct(&[nested("template", &POD_TEMPLATE_SPEC)]);

static REPLICATION_CONTROLLER: Schema = Schema::Struct(&[
    nested("metadata", &OBJECT_META),
    nested("spec", &TEMPLATE_SPEC),
    nested("status", &CONDITIONS_STATUS),
]);

// --- core/v1: services, nodes, namespaces, service accounts -------------------

static SERVICE: Schema = Schema::Struct(&[
    nested("metadata", &OBJECT_META),
    nested("spec", &Schema::Struct(&[merge_by("ports", "port", &OPAQUE)])),
    nested("status", &CONDITIONS_STATUS),
]);

static NODE: Schema = Schema::Struct(&[
    nested("metadata", &OBJECT_META),
    nested("spec", &Schema::Struct(&[merge_set("podCIDRs")])),
    nested(
        "status",
        &Schema::Struct(&[merge_by("conditions", "type", &OPAQUE), merge_by("addresses", "type", &OPAQUE)]),
    ),
]);

static NAMESPACE: Schema = Schema::Struct(&[nested("metadata", &OBJECT_META), nested("status", &CONDITIONS_STATUS)]);

/// ServiceAccount: `secrets` merge by `name`; `imagePullSecrets` is atomic.
static SERVICE_ACCOUNT: Schema =
    Schema::Struct(&[nested("metadata", &OBJECT_META), merge_by("secrets", "name", &OPAQUE)]);

// --- apps/v1, batch/v1 ---------------------------------------------------------

static REPLICA_SET: Schema = Schema::Struct(&[
    nested("metadata", &OBJECT_META),
    nested("spec", &TEMPLATE_SPEC),
    nested("status", &CONDITIONS_STATUS),
]);

static DEPLOYMENT: Schema = Schema::Struct(&[
    nested("metadata", &OBJECT_META),
    nested("spec", &Schema::Struct(&[nested("template", &POD_TEMPLATE_SPEC), retain_keys("strategy", &OPAQUE)])),
    nested("status", &CONDITIONS_STATUS),
]);

static DAEMON_SET: Schema = Schema::Struct(&[
    nested("metadata", &OBJECT_META),
    nested("spec", &TEMPLATE_SPEC),
    nested("status", &CONDITIONS_STATUS),
]);

/// StatefulSet and Job: only the pod template path (their status tags are not
/// encoded).
static TEMPLATED: Schema = Schema::Struct(&[nested("metadata", &OBJECT_META), nested("spec", &TEMPLATE_SPEC)]);

/// CronJob: `spec.jobTemplate` is a JobTemplateSpec (metadata + JobSpec).
static CRON_JOB: Schema = Schema::Struct(&[
    nested("metadata", &OBJECT_META),
    nested(
        "spec",
        &Schema::Struct(&[nested(
            "jobTemplate",
            &Schema::Struct(&[nested("metadata", &OBJECT_META), nested("spec", &TEMPLATE_SPEC)]),
        )]),
    ),
]);

/// The patch metadata of kind `kind` in API group `group` (`""` for core).
/// Unknown kinds get no metadata at all: objects merge as in a JSON merge patch
/// and lists are replaced.
pub(crate) fn for_kind(group: &str, kind: &str) -> &'static Schema {
    match (group, kind) {
        ("", "Pod") => &POD,
        ("", "PodTemplate") => &POD_TEMPLATE,
        ("", "ReplicationController") => &REPLICATION_CONTROLLER,
        ("", "Service") => &SERVICE,
        ("", "Node") => &NODE,
        ("", "Namespace") => &NAMESPACE,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "Endpoints" | "ConfigMap" | "Secret" | "Event")
        | ("events.k8s.io", "Event")
        | ("discovery.k8s.io", "EndpointSlice")
        | ("coordination.k8s.io", "Lease") => &METADATA_ONLY,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "DaemonSet") => &DAEMON_SET,
        ("apps", "StatefulSet") | ("batch", "Job") => &TEMPLATED,
        ("batch", "CronJob") => &CRON_JOB,
        _ => &OPAQUE,
    }
}
