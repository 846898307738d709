//! Server-side Table printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`),
//! so `kubectl get` shows the same columns and cell text as a real cluster.
//!
//! Upstream sources this follows line by line:
//! - `pkg/printers/internalversion/printers.go` (`AddHandlers` column definitions and
//!   the `print*` functions),
//! - `staging/src/k8s.io/apimachinery/pkg/util/duration/duration.go` (`HumanDuration`),
//! - `staging/src/k8s.io/apiserver/pkg/registry/rest/table.go` (the default
//!   `Name` / `Created At` table for resources without a printer),
//! - `staging/src/k8s.io/apimachinery/pkg/labels` (`FormatLabels`, `Selector.String`)
//!   and `pkg/apis/meta/v1/helpers.go` (`LabelSelectorAsSelector`, `FormatLabelSelector`).
//!
//! The API server always generates tables with `GenerateOptions{Wide: true}`
//! (`pkg/printers/storage/storage.go`), so [`cells`] returns every column including
//! the priority-1 ones; `kubectl` hides those unless `-o wide`.
//!
//! Objects are the stored v1 JSON form. Missing fields read as Go zero values, except
//! where the v1 defaulting that upstream applies on decode matters for the output
//! (`spec.replicas` = 1, `spec.type` = `ClusterIP`, port `protocol` = `TCP`,
//! `clusterIPs` from `clusterIP`, `podIPs` from `podIP`).

use jiff::Timestamp;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};

// One module per kind (issue 11 item 7); the kinds still below move out over time.
mod controllerrevision;
mod cronjob;
mod daemonset;
mod endpoints;
mod event;
mod job;
mod node;
mod pod;
mod rbac;
mod service;
mod statefulset;
mod workload;

use {endpoints::*, event::*, node::*, pod::*, service::*, workload::*};

/// `metav1.TableColumnDefinition` descriptions (the `SwaggerDoc()` strings upstream
/// uses; taken from the v1.33 API documentation).
mod desc {
    pub const META_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
    pub const META_CREATION_TIMESTAMP: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
    pub const POD_STATUS_POD_IP: &str =
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
    pub const POD_SPEC_NODE_NAME: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
    pub const POD_STATUS_NOMINATED_NODE_NAME: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
    pub const POD_SPEC_READINESS_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";
    pub const SERVICE_SPEC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
    pub const SERVICE_SPEC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
    pub const SERVICE_SPEC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
    pub const SERVICE_SPEC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
    pub const SERVICE_SPEC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";
    pub const ENDPOINTS_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
    pub const NODE_INFO_KUBELET_VERSION: &str = "Kubelet Version reported by the node.";
    pub const NODE_STATUS_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
    pub const NODE_INFO_OS_IMAGE: &str =
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
    pub const NODE_INFO_KERNEL_VERSION: &str =
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
    pub const NODE_INFO_CONTAINER_RUNTIME_VERSION: &str =
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";
    pub const EVENT_LAST_TIMESTAMP: &str = "The time at which the most recent occurrence of this event was recorded.";
    pub const EVENT_TYPE: &str = "Type of this event (Normal, Warning), new types could be added in the future";
    pub const EVENT_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
    pub const EVENT_INVOLVED_OBJECT: &str = "The object that this event is about.";
    pub const OBJECT_REFERENCE_FIELD_PATH: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";
    pub const EVENT_SOURCE: &str =
        "The component reporting this event. Should be a short machine understandable string.";
    pub const EVENT_MESSAGE: &str = "A human-readable description of the status of this operation.";
    pub const EVENT_FIRST_TIMESTAMP: &str =
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
    pub const EVENT_COUNT: &str = "The number of times this event has occurred.";
    pub const SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
    pub const SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
    pub const SERVICE_ACCOUNT_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";
    pub const CONFIG_MAP_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";
    pub const POOL_AUTO_ASSIGN: &str = "AutoAssign flag used to prevent MetallB from automatic allocation for a pool.";
    pub const POOL_AVOID_BUGGY_IPS: &str =
        "AvoidBuggyIPs prevents addresses ending with .0 and .255 to be used by a pool.";
    pub const POOL_ADDRESSES: &str = "A list of IP address ranges over which MetalLB has authority. You can list multiple ranges in a single pool, they will all share the same settings. Each range can be either a CIDR prefix, or an explicit start-end range of IPs.";
    pub const L2_POOLS: &str = "The list of IPAddressPools to advertise via this advertisement, selected by name.";
    pub const L2_POOL_SELECTORS: &str = "A selector for the IPAddressPools which would get advertised via this advertisement. If no IPAddressPool is selected by this or by the list, the advertisement is applied to all the IPAddressPools.";
    pub const L2_INTERFACES: &str = "A list of interfaces to announce from. The LB IP will be announced only from these interfaces. If the field is not set, we advertise from all the interfaces on the host.";
    pub const L2_NODE_SELECTORS: &str = "NodeSelectors allows to limit the nodes to announce as next hops for the LoadBalancer IP. When empty, all the nodes having  are announced as next hops.";
    pub const CSR_SIGNER_NAME: &str = "signerName indicates the requested signer, and is a qualified name.";
    pub const CSR_REQUEST: &str = "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded.";
    pub const CSR_EXPIRATION_SECONDS: &str = "expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration.";
    pub const CSR_CONDITIONS: &str =
        "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".";
    pub const LEASE_SPEC_HOLDER_IDENTITY: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";
    pub const REPLICA_SET_SPEC_REPLICAS: &str = "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
    pub const REPLICA_SET_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
    pub const REPLICA_SET_STATUS_READY_REPLICAS: &str =
        "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.";
    pub const REPLICA_SET_SPEC_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub const DEPLOYMENT_STATUS_UPDATED_REPLICAS: &str =
        "Total number of non-terminating pods targeted by this deployment that have the desired template spec.";
    pub const DEPLOYMENT_STATUS_AVAILABLE_REPLICAS: &str = "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.";
    pub const DEPLOYMENT_SPEC_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";
    pub const ENDPOINT_SLICE_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.";
    pub const ENDPOINT_SLICE_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.";
    pub const ENDPOINT_SLICE_ENDPOINTS: &str =
        "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";

    // Literal descriptions written in printers.go itself.
    pub const POD_READY: &str = "The aggregate readiness state of this pod for accepting traffic.";
    pub const POD_STATUS: &str = "The aggregate status of the containers in this pod.";
    pub const POD_RESTARTS: &str = "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.";
    pub const TEMPLATE_CONTAINERS: &str = "Names of each container in the template.";
    pub const TEMPLATE_IMAGES: &str = "Images referenced by each container in the template.";
    pub const NODE_STATUS: &str = "The status of the node";
    pub const NODE_ROLES: &str = "The roles of the node";
    pub const NAMESPACE_STATUS: &str = "The status of the namespace";
    pub const DEPLOYMENT_READY: &str = "Number of the pod with ready state";
}

/// The resources that have a printer here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printer {
    Namespace,
    Pod,
    Service,
    Endpoints,
    Node,
    Event,
    ConfigMap,
    Secret,
    ServiceAccount,
    ReplicaSet,
    Deployment,
    DaemonSet,
    ControllerRevision,
    Job,
    StatefulSet,
    CronJob,
    EndpointSlice,
    Lease,
    CertificateSigningRequest,
    IPAddressPool,
    L2Advertisement,
    RoleBinding,
}

fn printer(group: &str, plural: &str) -> Option<Printer> {
    Some(match (group, plural) {
        ("", "namespaces") => Printer::Namespace,
        ("", "pods") => Printer::Pod,
        ("", "services") => Printer::Service,
        ("", "endpoints") => Printer::Endpoints,
        ("", "nodes") => Printer::Node,
        ("", "events") => Printer::Event,
        ("", "configmaps") => Printer::ConfigMap,
        ("", "secrets") => Printer::Secret,
        ("", "serviceaccounts") => Printer::ServiceAccount,
        ("apps", "replicasets") => Printer::ReplicaSet,
        ("apps", "deployments") => Printer::Deployment,
        ("apps", "daemonsets") => Printer::DaemonSet,
        ("apps", "controllerrevisions") => Printer::ControllerRevision,
        ("batch", "jobs") => Printer::Job,
        ("apps", "statefulsets") => Printer::StatefulSet,
        ("batch", "cronjobs") => Printer::CronJob,
        ("discovery.k8s.io", "endpointslices") => Printer::EndpointSlice,
        ("coordination.k8s.io", "leases") => Printer::Lease,
        ("certificates.k8s.io", "certificatesigningrequests") => Printer::CertificateSigningRequest,
        ("metallb.io", "ipaddresspools") => Printer::IPAddressPool,
        ("metallb.io", "l2advertisements") => Printer::L2Advertisement,
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => Printer::RoleBinding,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------

/// One `metav1.TableColumnDefinition` in its JSON form (all five fields are always
/// serialized upstream: none of them is `omitempty`).
fn col(name: &str, ty: &str, format: &str, description: &str, priority: i32) -> Value {
    json!({
        "name": name,
        "type": ty,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

fn name_col() -> Value {
    col("Name", "string", "name", desc::META_NAME, 0)
}

fn age_col() -> Value {
    col("Age", "string", "", desc::META_CREATION_TIMESTAMP, 0)
}

/// The columns of upstream's `defaultTableConvertor` (apiserver `rest/table.go`), used
/// for resources without a printer: `Name` and `Created At` (type `date`).
pub fn default_columns() -> Vec<Value> {
    vec![name_col(), col("Created At", "date", "", desc::META_CREATION_TIMESTAMP, 0)]
}

/// Column definitions (metav1.TableColumnDefinition JSON) for a resource, or `None`
/// if it has no custom printer (then use [`default_columns`]).
pub fn columns(group: &str, plural: &str) -> Option<Vec<Value>> {
    let p = printer(group, plural)?;
    Some(match p {
        Printer::Namespace => vec![name_col(), col("Status", "string", "", desc::NAMESPACE_STATUS, 0), age_col()],
        Printer::Pod => pod::pod_columns(),
        Printer::Service => service::service_columns(),
        Printer::Endpoints => endpoints::endpoints_columns(),
        Printer::Node => node::node_columns(),
        Printer::Event => event::event_columns(),
        // Upstream declares DATA as type "string" although the cell is an int64.
        Printer::ConfigMap => vec![name_col(), col("Data", "string", "", desc::CONFIG_MAP_DATA, 0), age_col()],
        Printer::Secret => vec![
            name_col(),
            col("Type", "string", "", desc::SECRET_TYPE, 0),
            col("Data", "string", "", desc::SECRET_DATA, 0),
            age_col(),
        ],
        Printer::ServiceAccount => {
            vec![name_col(), col("Secrets", "string", "", desc::SERVICE_ACCOUNT_SECRETS, 0), age_col()]
        }
        Printer::ReplicaSet => workload::replicaset_columns(),
        Printer::Deployment => workload::deployment_columns(),
        Printer::DaemonSet => daemonset::columns(),
        Printer::ControllerRevision => controllerrevision::columns(),
        Printer::Job => job::columns(),
        Printer::StatefulSet => statefulset::columns(),
        Printer::CronJob => cronjob::columns(),
        Printer::EndpointSlice => endpoints::endpointslice_columns(),
        Printer::Lease => vec![name_col(), col("Holder", "string", "", desc::LEASE_SPEC_HOLDER_IDENTITY, 0), age_col()],
        // printers.go `certificateSigningRequestColumnDefinitions`.
        Printer::CertificateSigningRequest => vec![
            name_col(),
            age_col(),
            col("SignerName", "string", "", desc::CSR_SIGNER_NAME, 0),
            col("Requestor", "string", "", desc::CSR_REQUEST, 0),
            col("RequestedDuration", "string", "", desc::CSR_EXPIRATION_SECONDS, 0),
            col("Condition", "string", "", desc::CSR_CONDITIONS, 0),
        ],
        // MetalLB's CRD printer columns (`api/v1beta1/*_types.go` kubebuilder:printcolumn);
        // a CRD with printer columns of its own gets no Age column.
        Printer::IPAddressPool => vec![
            name_col(),
            col("Auto Assign", "boolean", "", desc::POOL_AUTO_ASSIGN, 0),
            col("Avoid Buggy IPs", "boolean", "", desc::POOL_AVOID_BUGGY_IPS, 0),
            col("Addresses", "string", "", desc::POOL_ADDRESSES, 0),
        ],
        Printer::L2Advertisement => vec![
            name_col(),
            col("IPAddressPools", "string", "", desc::L2_POOLS, 0),
            col("IPAddressPool Selectors", "string", "", desc::L2_POOL_SELECTORS, 0),
            col("Interfaces", "string", "", desc::L2_INTERFACES, 0),
            col("Node Selectors", "string", "", desc::L2_NODE_SELECTORS, 10),
        ],
        Printer::RoleBinding => rbac::binding_columns(),
    })
}

// ---------------------------------------------------------------------------
// Cells
// ---------------------------------------------------------------------------

/// The cells of one row, in the order of [`columns`] (or [`default_columns`] when
/// the resource has no printer), with every priority-1 column included (the server
/// prints wide). `now` is the reference time for ages.
pub fn cells(group: &str, plural: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(group, plural) {
        None => default_cells(obj),
        Some(Printer::Namespace) => namespace_cells(obj, now),
        Some(Printer::Pod) => pod_cells(obj, now),
        Some(Printer::Service) => service_cells(obj, now),
        Some(Printer::Endpoints) => endpoints_cells(obj, now),
        Some(Printer::Node) => node_cells(obj, now),
        Some(Printer::Event) => event_cells(obj, now),
        Some(Printer::ConfigMap) => configmap_cells(obj, now),
        Some(Printer::Secret) => secret_cells(obj, now),
        Some(Printer::ServiceAccount) => serviceaccount_cells(obj, now),
        Some(Printer::ReplicaSet) => replicaset_cells(obj, now),
        Some(Printer::Deployment) => deployment_cells(obj, now),
        Some(Printer::DaemonSet) => daemonset::cells(obj, now),
        Some(Printer::ControllerRevision) => controllerrevision::cells(obj, now),
        Some(Printer::Job) => job::cells(obj, now),
        Some(Printer::StatefulSet) => statefulset::cells(obj, now),
        Some(Printer::CronJob) => cronjob::cells(obj, now),
        Some(Printer::EndpointSlice) => endpointslice_cells(obj, now),
        Some(Printer::Lease) => lease_cells(obj, now),
        Some(Printer::CertificateSigningRequest) => csr_cells(obj, now),
        Some(Printer::IPAddressPool) => crd_cells(obj, &["/spec/autoAssign", "/spec/avoidBuggyIPs", "/spec/addresses"]),
        Some(Printer::L2Advertisement) => crd_cells(
            obj,
            &["/spec/ipAddressPools", "/spec/ipAddressPoolSelectors", "/spec/interfaces", "/spec/nodeSelectors"],
        ),
        Some(Printer::RoleBinding) => rbac::binding_cells(obj, now),
    }
}

/// `metav1.TableRowCondition`s of a row (JSON). Only pods have any upstream: a
/// `Completed` condition for Succeeded and Failed pods.
pub fn row_conditions(group: &str, plural: &str, obj: &Value) -> Vec<Value> {
    if printer(group, plural) != Some(Printer::Pod) {
        return Vec::new();
    }
    let (reason, message) = match str_at(obj, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![json!({
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    })]
}

/// Upstream `duration.HumanDuration`: a succinct duration with ~2-3 significant figures.
pub fn human_duration(d: std::time::Duration) -> String {
    let nanos = i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
    human_duration_nanos(nanos)
}

/// [`human_duration`] for a signed duration in nanoseconds (Go's `time.Duration`),
/// so a timestamp slightly in the future prints `0s` and one further ahead
/// `<invalid>`, as upstream.
pub fn human_duration_nanos(nanos: i128) -> String {
    // Go's time.Since saturates at the int64 range.
    let d = nanos.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
    const SEC: i128 = 1_000_000_000;
    const MIN: i128 = 60 * SEC;
    const HOUR: i128 = 60 * MIN;
    // int(d.Seconds()) truncates toward zero, like integer division here.
    let seconds = d / SEC;
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / MIN;
    if minutes < 10 {
        let s = (d / SEC) % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / HOUR;
    if hours < 8 {
        let m = (d / MIN) % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        format!("{hours}h{m}m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        format!("{}d{}h", hours / 24, h)
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        format!("{}y{}d", hours / 24 / 365, dy)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---------------------------------------------------------------------------
// JSON access helpers (missing or null reads as the Go zero value)
// ---------------------------------------------------------------------------

fn get<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    v.pointer(ptr).filter(|x| !x.is_null())
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    get(v, ptr).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, ptr: &str) -> Option<i64> {
    get(v, ptr).and_then(Value::as_i64)
}

fn bool_at(v: &Value, ptr: &str) -> bool {
    get(v, ptr).and_then(Value::as_bool).unwrap_or(false)
}

fn arr_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    get(v, ptr).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn map_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Map<String, Value>> {
    get(v, ptr).and_then(Value::as_object)
}

fn map_len(v: &Value, ptr: &str) -> usize {
    map_at(v, ptr).map_or(0, Map::len)
}

/// A `metav1.Time` / `MicroTime`; `None` is Go's zero time (missing, null, unparsable
/// or literally `0001-01-01T00:00:00Z`).
fn time_at(v: &Value, ptr: &str) -> Option<Timestamp> {
    let ts: Timestamp = get(v, ptr)?.as_str()?.parse().ok()?;
    // Go's zero time.Time, which metav1.Time.IsZero reports as unset.
    const GO_ZERO_SECONDS: i64 = -62_135_596_800;
    if ts.as_second() == GO_ZERO_SECONDS && ts.subsec_nanosecond() == 0 {
        return None;
    }
    Some(ts)
}

/// Upstream `translateTimestampSince`.
fn since(ts: Option<Timestamp>, now: Timestamp) -> String {
    match ts {
        None => "<unknown>".to_string(),
        Some(ts) => human_duration_nanos(now.as_nanosecond() - ts.as_nanosecond()),
    }
}

fn name(obj: &Value) -> Value {
    Value::String(str_at(obj, "/metadata/name").to_string())
}

fn age(obj: &Value, now: Timestamp) -> Value {
    Value::String(since(time_at(obj, "/metadata/creationTimestamp"), now))
}

fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

fn int(n: i64) -> Value {
    Value::from(n)
}

fn count(n: usize) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}

fn none_if_empty(text: &str) -> String {
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text.to_string()
    }
}

// ---------------------------------------------------------------------------
// Labels and selectors
// ---------------------------------------------------------------------------

/// `labels.FormatLabels`: `k1=v1,k2=v2` sorted by key, `<none>` when empty.
fn format_labels(map: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<(&str, &str)> =
        map.map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))).collect()).unwrap_or_default();
    pairs.sort();
    let text = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    none_if_empty(&text)
}

/// `metav1.LabelSelectorAsSelector(sel).String()`; `Err` where upstream returns an
/// error (invalid operator, key or value).
fn label_selector_string(sel: Option<&Value>) -> Result<String, ()> {
    // nil selector -> labels.Nothing(), whose String() is "".
    let Some(sel) = sel.filter(|v| !v.is_null()) else {
        return Ok(String::new());
    };
    // (key, rendered requirement), in insertion order: matchLabels then matchExpressions.
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = map_at(sel, "/matchLabels") {
        for (k, v) in labels {
            let v = v.as_str().unwrap_or("");
            if !is_qualified_name(k) || !is_valid_label_value(v) {
                return Err(());
            }
            reqs.push((k.clone(), format!("{k}={v}")));
        }
    }
    for expr in arr_at(sel, "/matchExpressions") {
        let key = str_at(expr, "/key");
        let mut values: Vec<&str> = arr_at(expr, "/values").iter().map(|v| v.as_str().unwrap_or("")).collect();
        if !is_qualified_name(key) || !values.iter().all(|v| is_valid_label_value(v)) {
            return Err(());
        }
        // Values print sorted (labels.Requirement.String uses safeSort).
        values.sort_unstable();
        let rendered = match str_at(expr, "/operator") {
            "In" | "NotIn" if values.is_empty() => return Err(()),
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(()),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key.to_string(), rendered));
    }
    // internalSelector.Add sorts requirements by key (insertion sort for the small
    // slices involved, i.e. stable).
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// `metav1.FormatLabelSelector`: `<error>` on error, `<none>` when empty.
fn format_label_selector(sel: Option<&Value>) -> String {
    match label_selector_string(sel) {
        Err(()) => "<error>".to_string(),
        Ok(text) => none_if_empty(&text),
    }
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` (empty not allowed).
fn is_qualified_name_part(name: &str) -> bool {
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    name.len() <= 63
        && is_alnum(first)
        && is_alnum(last)
        && name.chars().all(|c| is_alnum(c) || c == '-' || c == '_' || c == '.')
}

/// `validation.IsDNS1123Subdomain`.
fn is_dns1123_subdomain(value: &str) -> bool {
    value.len() <= 253
        && value.split('.').all(|label| {
            let (Some(first), Some(last)) = (label.chars().next(), label.chars().last()) else {
                return false;
            };
            let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            ok(first) && ok(last) && label.chars().all(|c| ok(c) || c == '-')
        })
}

/// `validation.IsQualifiedName`: `[prefix/]name`.
fn is_qualified_name(value: &str) -> bool {
    let parts: Vec<&str> = value.split('/').collect();
    match parts.as_slice() {
        [name] => is_qualified_name_part(name),
        [prefix, name] => is_dns1123_subdomain(prefix) && is_qualified_name_part(name),
        _ => false,
    }
}

/// `validation.IsValidLabelValue`: empty, or a qualified-name part.
fn is_valid_label_value(value: &str) -> bool {
    value.is_empty() || is_qualified_name_part(value)
}

/// Upstream `layoutContainerCells`: names and images joined by ",".
fn layout_container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// Upstream `listWithMoreString`.
fn list_with_more_string(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count.saturating_sub(max));
    }
    if ret.is_empty() {
        return "<unset>".to_string();
    }
    ret
}

/// `net.JoinHostPort`.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// ---------------------------------------------------------------------------
// Printers
// ---------------------------------------------------------------------------

/// Upstream `defaultTableConvertor`: name and the creation time in RFC3339 (UTC).
fn default_cells(obj: &Value) -> Vec<Value> {
    let created = match time_at(obj, "/metadata/creationTimestamp") {
        Some(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".to_string(),
    };
    vec![name(obj), s(created)]
}

fn namespace_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), s(str_at(obj, "/status/phase")), age(obj, now)]
}

fn configmap_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let n = map_len(obj, "/data") + map_len(obj, "/binaryData");
    vec![name(obj), count(n), age(obj, now)]
}

fn secret_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // The v1 -> internal conversion merges stringData into data.
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for ptr in ["/data", "/stringData"] {
        if let Some(m) = map_at(obj, ptr) {
            keys.extend(m.keys().map(String::as_str));
        }
    }
    vec![name(obj), s(str_at(obj, "/type")), count(keys.len()), age(obj, now)]
}

fn serviceaccount_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), count(arr_at(obj, "/secrets").len()), age(obj, now)]
}

/// Cells of CRD printer columns (apiextensions-apiserver `tableconvertor.go`): a missing
/// field is null (`<none>`), a scalar as it is, anything else its JSON text.
fn crd_cells(obj: &Value, pointers: &[&str]) -> Vec<Value> {
    let mut cells = vec![name(obj)];
    for p in pointers {
        cells.push(match obj.pointer(p) {
            None | Some(Value::Null) => Value::Null,
            Some(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => v.clone(),
            Some(v) => Value::String(v.to_string()),
        });
    }
    cells
}

/// `printCertificateSigningRequest` with `extractCSRStatus`.
fn csr_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let has = |t: &str| {
        obj.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| cs.iter().any(|c| c["type"] == t))
    };
    let mut status = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_at(obj, "/status/certificate").is_empty() {
        status.push_str(",Issued");
    }
    let signer = match str_at(obj, "/spec/signerName") {
        "" => "<none>",
        x => x,
    };
    let duration = match obj.pointer("/spec/expirationSeconds").and_then(Value::as_u64) {
        Some(secs) => human_duration(std::time::Duration::from_secs(secs)),
        None => "<none>".to_string(),
    };
    vec![name(obj), age(obj, now), s(signer), s(str_at(obj, "/spec/username")), s(duration), s(status)]
}

fn lease_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), s(str_at(obj, "/spec/holderIdentity")), age(obj, now)]
}

#[cfg(test)]
mod tests;
