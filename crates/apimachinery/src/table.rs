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
mod daemonset;
mod job;

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
    Job,
    EndpointSlice,
    Lease,
    IPAddressPool,
    L2Advertisement,
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
        ("batch", "jobs") => Printer::Job,
        ("discovery.k8s.io", "endpointslices") => Printer::EndpointSlice,
        ("coordination.k8s.io", "leases") => Printer::Lease,
        ("metallb.io", "ipaddresspools") => Printer::IPAddressPool,
        ("metallb.io", "l2advertisements") => Printer::L2Advertisement,
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
        Printer::Pod => vec![
            name_col(),
            col("Ready", "string", "", desc::POD_READY, 0),
            col("Status", "string", "", desc::POD_STATUS, 0),
            col("Restarts", "string", "", desc::POD_RESTARTS, 0),
            age_col(),
            col("IP", "string", "", desc::POD_STATUS_POD_IP, 1),
            col("Node", "string", "", desc::POD_SPEC_NODE_NAME, 1),
            col("Nominated Node", "string", "", desc::POD_STATUS_NOMINATED_NODE_NAME, 1),
            col("Readiness Gates", "string", "", desc::POD_SPEC_READINESS_GATES, 1),
        ],
        Printer::Service => vec![
            name_col(),
            col("Type", "string", "", desc::SERVICE_SPEC_TYPE, 0),
            col("Cluster-IP", "string", "", desc::SERVICE_SPEC_CLUSTER_IP, 0),
            col("External-IP", "string", "", desc::SERVICE_SPEC_EXTERNAL_IPS, 0),
            col("Port(s)", "string", "", desc::SERVICE_SPEC_PORTS, 0),
            age_col(),
            col("Selector", "string", "", desc::SERVICE_SPEC_SELECTOR, 1),
        ],
        Printer::Endpoints => vec![name_col(), col("Endpoints", "string", "", desc::ENDPOINTS_SUBSETS, 0), age_col()],
        Printer::Node => vec![
            name_col(),
            col("Status", "string", "", desc::NODE_STATUS, 0),
            col("Roles", "string", "", desc::NODE_ROLES, 0),
            age_col(),
            col("Version", "string", "", desc::NODE_INFO_KUBELET_VERSION, 0),
            col("Internal-IP", "string", "", desc::NODE_STATUS_ADDRESSES, 1),
            col("External-IP", "string", "", desc::NODE_STATUS_ADDRESSES, 1),
            col("OS-Image", "string", "", desc::NODE_INFO_OS_IMAGE, 1),
            col("Kernel-Version", "string", "", desc::NODE_INFO_KERNEL_VERSION, 1),
            col("Container-Runtime", "string", "", desc::NODE_INFO_CONTAINER_RUNTIME_VERSION, 1),
        ],
        Printer::Event => vec![
            col("Last Seen", "string", "", desc::EVENT_LAST_TIMESTAMP, 0),
            col("Type", "string", "", desc::EVENT_TYPE, 0),
            col("Reason", "string", "", desc::EVENT_REASON, 0),
            col("Object", "string", "", desc::EVENT_INVOLVED_OBJECT, 0),
            col("Subobject", "string", "", desc::OBJECT_REFERENCE_FIELD_PATH, 1),
            col("Source", "string", "", desc::EVENT_SOURCE, 1),
            col("Message", "string", "", desc::EVENT_MESSAGE, 0),
            col("First Seen", "string", "", desc::EVENT_FIRST_TIMESTAMP, 1),
            col("Count", "string", "", desc::EVENT_COUNT, 1),
            col("Name", "string", "name", desc::META_NAME, 1),
        ],
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
        Printer::ReplicaSet => vec![
            name_col(),
            col("Desired", "integer", "", desc::REPLICA_SET_SPEC_REPLICAS, 0),
            col("Current", "integer", "", desc::REPLICA_SET_STATUS_REPLICAS, 0),
            col("Ready", "integer", "", desc::REPLICA_SET_STATUS_READY_REPLICAS, 0),
            age_col(),
            col("Containers", "string", "", desc::TEMPLATE_CONTAINERS, 1),
            col("Images", "string", "", desc::TEMPLATE_IMAGES, 1),
            col("Selector", "string", "", desc::REPLICA_SET_SPEC_SELECTOR, 1),
        ],
        Printer::Deployment => vec![
            name_col(),
            col("Ready", "string", "", desc::DEPLOYMENT_READY, 0),
            col("Up-to-date", "string", "", desc::DEPLOYMENT_STATUS_UPDATED_REPLICAS, 0),
            col("Available", "string", "", desc::DEPLOYMENT_STATUS_AVAILABLE_REPLICAS, 0),
            age_col(),
            col("Containers", "string", "", desc::TEMPLATE_CONTAINERS, 1),
            col("Images", "string", "", desc::TEMPLATE_IMAGES, 1),
            col("Selector", "string", "", desc::DEPLOYMENT_SPEC_SELECTOR, 1),
        ],
        Printer::DaemonSet => daemonset::columns(),
        Printer::Job => job::columns(),
        Printer::EndpointSlice => vec![
            name_col(),
            col("AddressType", "string", "", desc::ENDPOINT_SLICE_ADDRESS_TYPE, 0),
            col("Ports", "string", "", desc::ENDPOINT_SLICE_PORTS, 0),
            col("Endpoints", "string", "", desc::ENDPOINT_SLICE_ENDPOINTS, 0),
            age_col(),
        ],
        Printer::Lease => vec![name_col(), col("Holder", "string", "", desc::LEASE_SPEC_HOLDER_IDENTITY, 0), age_col()],
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
        Some(Printer::Job) => job::cells(obj, now),
        Some(Printer::EndpointSlice) => endpointslice_cells(obj, now),
        Some(Printer::Lease) => lease_cells(obj, now),
        Some(Printer::IPAddressPool) => crd_cells(obj, &["/spec/autoAssign", "/spec/avoidBuggyIPs", "/spec/addresses"]),
        Some(Printer::L2Advertisement) => crd_cells(
            obj,
            &["/spec/ipAddressPools", "/spec/ipAddressPoolSelectors", "/spec/interfaces", "/spec/nodeSelectors"],
        ),
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

fn lease_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(obj), s(str_at(obj, "/spec/holderIdentity")), age(obj, now)]
}

/// Upstream `IsRestartableInitContainer`.
fn is_restartable(container: Option<&Value>) -> bool {
    container.is_some_and(|c| str_at(c, "/restartPolicy") == "Always")
}

/// `lastRestartDate.Before(&terminatedDate)` then assign, with `None` as Go's zero time.
fn bump_last_restart(last: &mut Option<Timestamp>, finished: Option<Timestamp>) {
    if let Some(f) = finished {
        if last.is_none_or(|l| l < f) {
            *last = Some(f);
        }
    }
}

fn has_condition_true(conditions: &[Value], ty: &str) -> bool {
    conditions.iter().any(|c| str_at(c, "/type") == ty && str_at(c, "/status") == "True")
}

/// Upstream `isPodInitializedConditionTrue`: the first `Initialized` condition decides.
fn is_pod_initialized_condition_true(conditions: &[Value]) -> bool {
    conditions.iter().find(|c| str_at(c, "/type") == "Initialized").is_some_and(|c| str_at(c, "/status") == "True")
}

/// Upstream `printPod`.
fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let containers = arr_at(pod, "/spec/containers");
    let init_containers = arr_at(pod, "/spec/initContainers");
    let conditions = arr_at(pod, "/status/conditions");

    let mut restarts: i64 = 0;
    let mut restartable_init_restarts: i64 = 0;
    let mut total_containers = containers.len();
    let mut ready_containers: usize = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_restartable_init_restart: Option<Timestamp> = None;

    let phase = str_at(pod, "/status/phase");
    let mut reason = phase.to_string();
    let status_reason = str_at(pod, "/status/reason");
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }

    // If the Pod carries {type:PodScheduled, reason:SchedulingGated}, say so.
    for c in conditions {
        if str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut init_by_name: HashMap<&str, &Value> = HashMap::new();
    for c in init_containers {
        init_by_name.insert(str_at(c, "/name"), c);
        if is_restartable(Some(c)) {
            total_containers += 1;
        }
    }

    let mut initializing = false;
    for (i, cs) in arr_at(pod, "/status/initContainerStatuses").iter().enumerate() {
        let restart_count = int_at(cs, "/restartCount").unwrap_or(0);
        restarts += restart_count;
        let last_terminated = get(cs, "/lastState/terminated");
        let finished = last_terminated.and_then(|t| time_at(t, "/finishedAt"));
        bump_last_restart(&mut last_restart, finished);
        let restartable = is_restartable(init_by_name.get(str_at(cs, "/name")).copied());
        if restartable {
            restartable_init_restarts += restart_count;
            bump_last_restart(&mut last_restartable_init_restart, finished);
        }
        let terminated = get(cs, "/state/terminated");
        let waiting = get(cs, "/state/waiting");
        if terminated.is_some_and(|t| int_at(t, "/exitCode").unwrap_or(0) == 0) {
            continue;
        }
        if restartable && get(cs, "/started").and_then(Value::as_bool) == Some(true) {
            if bool_at(cs, "/ready") {
                ready_containers += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            // initialization failed
            let t_reason = str_at(t, "/reason");
            reason = if t_reason.is_empty() {
                let signal = int_at(t, "/signal").unwrap_or(0);
                if signal != 0 {
                    format!("Init:Signal:{signal}")
                } else {
                    format!("Init:ExitCode:{}", int_at(t, "/exitCode").unwrap_or(0))
                }
            } else {
                format!("Init:{t_reason}")
            };
        } else if let Some(w) = waiting.filter(|w| {
            let r = str_at(w, "/reason");
            !r.is_empty() && r != "PodInitializing"
        }) {
            reason = format!("Init:{}", str_at(w, "/reason"));
        } else {
            reason = format!("Init:{}/{}", i, init_containers.len());
        }
        initializing = true;
        break;
    }

    if !initializing || is_pod_initialized_condition_true(conditions) {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for cs in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += int_at(cs, "/restartCount").unwrap_or(0);
            let finished = get(cs, "/lastState/terminated").and_then(|t| time_at(t, "/finishedAt"));
            bump_last_restart(&mut last_restart, finished);
            let waiting_reason = get(cs, "/state/waiting").map(|w| str_at(w, "/reason"));
            let terminated = get(cs, "/state/terminated");
            if let Some(r) = waiting_reason.filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(t) = terminated {
                let t_reason = str_at(t, "/reason");
                reason = if !t_reason.is_empty() {
                    t_reason.to_string()
                } else {
                    let signal = int_at(t, "/signal").unwrap_or(0);
                    if signal != 0 {
                        format!("Signal:{signal}")
                    } else {
                        format!("ExitCode:{}", int_at(t, "/exitCode").unwrap_or(0))
                    }
                };
            } else if bool_at(cs, "/ready") && get(cs, "/state/running").is_some() {
                has_running = true;
                ready_containers += 1;
            }
        }

        // change pod status back to "Running" if there is at least one container
        // still reporting as "Running" status
        if reason == "Completed" && has_running {
            reason =
                if has_condition_true(conditions, "Ready") { "Running".to_string() } else { "NotReady".to_string() };
        }
    }

    let deleting = get(pod, "/metadata/deletionTimestamp").is_some();
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_str = match last_restart {
        Some(ts) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(ts), now)),
        _ => restarts.to_string(),
    };

    // Wide columns. The v1 -> internal conversion fills podIPs from podIP.
    let mut pod_ip =
        arr_at(pod, "/status/podIPs").first().map(|p| str_at(p, "/ip")).unwrap_or_else(|| str_at(pod, "/status/podIP"));
    if pod_ip.is_empty() {
        pod_ip = "<none>";
    }
    let readiness_gates = arr_at(pod, "/spec/readinessGates");
    let gates = if readiness_gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_conditions = readiness_gates
            .iter()
            .filter(|gate| {
                let ty = str_at(gate, "/conditionType");
                conditions.iter().find(|c| str_at(c, "/type") == ty).is_some_and(|c| str_at(c, "/status") == "True")
            })
            .count();
        format!("{true_conditions}/{}", readiness_gates.len())
    };

    vec![
        name(pod),
        s(format!("{ready_containers}/{total_containers}")),
        s(reason),
        s(restarts_str),
        age(pod, now),
        s(pod_ip),
        s(none_if_empty(str_at(pod, "/spec/nodeName"))),
        s(none_if_empty(str_at(pod, "/status/nominatedNodeName"))),
        s(gates),
    ]
}

/// Upstream `loadBalancerStatusStringer` (wide: never clipped): ingress IPs, else
/// hostnames, sorted and de-duplicated, joined by ",".
fn load_balancer_status_string(svc: &Value) -> String {
    let mut result: BTreeSet<&str> = BTreeSet::new();
    for ingress in arr_at(svc, "/status/loadBalancer/ingress") {
        let ip = str_at(ingress, "/ip");
        let hostname = str_at(ingress, "/hostname");
        if !ip.is_empty() {
            result.insert(ip);
        } else if !hostname.is_empty() {
            result.insert(hostname);
        }
    }
    result.into_iter().collect::<Vec<_>>().join(",")
}

/// Upstream `getServiceExternalIP`.
fn service_external_ip(svc: &Value, svc_type: &str) -> String {
    let external_ips: Vec<&str> = arr_at(svc, "/spec/externalIPs").iter().map(|v| v.as_str().unwrap_or("")).collect();
    match svc_type {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb_ips = load_balancer_status_string(svc);
            if !external_ips.is_empty() {
                let mut results: Vec<&str> = Vec::new();
                if !lb_ips.is_empty() {
                    results.extend(lb_ips.split(','));
                }
                results.extend(external_ips.iter().copied());
                return results.join(",");
            }
            if !lb_ips.is_empty() {
                return lb_ips;
            }
            "<pending>".to_string()
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// Upstream `makePortString`: `80/TCP`, `80:31111/TCP`, joined by ",".
fn make_port_string(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let port = int_at(p, "/port").unwrap_or(0);
            let protocol = match str_at(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            let node_port = int_at(p, "/nodePort").unwrap_or(0);
            if node_port > 0 {
                format!("{port}:{node_port}/{protocol}")
            } else {
                format!("{port}/{protocol}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Upstream `printService`.
fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    let svc_type = match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    // The v1 -> internal conversion fills clusterIPs from clusterIP.
    let internal_ip = match arr_at(svc, "/spec/clusterIPs").first() {
        Some(ip) => ip.as_str().unwrap_or("").to_string(),
        None => none_if_empty(str_at(svc, "/spec/clusterIP")),
    };
    let ports = make_port_string(arr_at(svc, "/spec/ports"));
    vec![
        name(svc),
        s(svc_type),
        s(internal_ip),
        s(service_external_ip(svc, svc_type)),
        s(none_if_empty(&ports)),
        age(svc, now),
        s(format_labels(map_at(svc, "/spec/selector"))),
    ]
}

/// Upstream `formatEndpoints(endpoints, nil)`.
fn format_endpoints(ep: &Value) -> String {
    let subsets = arr_at(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = arr_at(ss, "/addresses");
        let ports = arr_at(ss, "/ports");
        if ports.is_empty() {
            // It's possible to have headless services with no ports.
            count += addresses.len();
            for addr in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(addr, "/ip").to_string());
            }
            continue;
        }
        // "Normal" services with ports defined.
        for port in ports {
            count += addresses.len();
            for addr in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(str_at(addr, "/ip"), int_at(port, "/port").unwrap_or(0)));
            }
        }
    }
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count.saturating_sub(MAX));
    }
    ret
}

fn endpoints_cells(ep: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(ep), s(format_endpoints(ep)), age(ep, now)]
}

/// Upstream `formatDiscoveryPorts`.
fn format_discovery_ports(ports: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    for port in ports {
        if list.len() < MAX {
            let text = if let Some(n) = int_at(port, "/port") {
                n.to_string()
            } else if let Some(name) = get(port, "/name").and_then(Value::as_str) {
                name.to_string()
            } else {
                "*".to_string()
            };
            list.push(text);
        } else if list.len() == MAX {
            more = true;
        }
    }
    list_with_more_string(&list, more, ports.len(), MAX)
}

/// Upstream `formatDiscoveryEndpoints`.
fn format_discovery_endpoints(endpoints: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for endpoint in endpoints {
        for address in arr_at(endpoint, "/addresses") {
            if list.len() < MAX {
                list.push(address.as_str().unwrap_or("").to_string());
            } else if list.len() == MAX {
                more = true;
            }
            count += 1;
        }
    }
    list_with_more_string(&list, more, count, MAX)
}

fn endpointslice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(slice),
        s(str_at(slice, "/addressType")),
        s(format_discovery_ports(arr_at(slice, "/ports"))),
        s(format_discovery_endpoints(arr_at(slice, "/endpoints"))),
        age(slice, now),
    ]
}

const LABEL_NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_LABEL_ROLE: &str = "kubernetes.io/role";

/// Upstream `printNode`.
fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition is shown; the last one of a type wins (map insert).
    let mut ready: Option<&Value> = None;
    for c in arr_at(node, "/status/conditions") {
        if str_at(c, "/type") == "Ready" {
            ready = Some(c);
        }
    }
    let mut status: Vec<&str> = Vec::new();
    match ready {
        Some(c) if str_at(c, "/status") == "True" => status.push("Ready"),
        Some(_) => status.push("NotReady"),
        None => status.push("Unknown"),
    }
    if bool_at(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }

    // findNodeRoles
    let mut roles: BTreeSet<&str> = BTreeSet::new();
    if let Some(labels) = map_at(node, "/metadata/labels") {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix(LABEL_NODE_ROLE_PREFIX) {
                if !role.is_empty() {
                    roles.insert(role);
                }
            } else if k == NODE_LABEL_ROLE {
                let v = v.as_str().unwrap_or("");
                if !v.is_empty() {
                    roles.insert(v);
                }
            }
        }
    }
    let roles = none_if_empty(&roles.into_iter().collect::<Vec<_>>().join(","));

    let address = |ty: &str| -> String {
        arr_at(node, "/status/addresses")
            .iter()
            .find(|a| str_at(a, "/type") == ty)
            .map_or_else(|| "<none>".to_string(), |a| str_at(a, "/address").to_string())
    };
    let info = |field: &str| -> String {
        match str_at(node, &format!("/status/nodeInfo/{field}")) {
            "" => "<unknown>".to_string(),
            v => v.to_string(),
        }
    };

    vec![
        name(node),
        s(status.join(",")),
        s(roles),
        age(node, now),
        s(str_at(node, "/status/nodeInfo/kubeletVersion")),
        s(address("InternalIP")),
        s(address("ExternalIP")),
        s(info("osImage")),
        s(info("kernelVersion")),
        s(info("containerRuntimeVersion")),
    ]
}

/// Upstream `formatEventSource`.
fn format_event_source(event: &Value) -> String {
    let first_non_empty = |a: &str, b: &str| -> String {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(str_at(event, "/source/component"), str_at(event, "/reportingComponent"));
    let instance = first_non_empty(str_at(event, "/source/host"), str_at(event, "/reportingInstance"));
    if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    }
}

/// Upstream `printEvent` (wide).
fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_timestamp = match time_at(event, "/firstTimestamp") {
        Some(ts) => since(Some(ts), now),
        None => since(time_at(event, "/eventTime"), now),
    };
    let mut last_timestamp = match time_at(event, "/lastTimestamp") {
        Some(ts) => since(Some(ts), now),
        None => first_timestamp.clone(),
    };
    let mut count = int_at(event, "/count").unwrap_or(0);
    if get(event, "/series").is_some() {
        last_timestamp = since(time_at(event, "/series/lastObservedTime"), now);
        count = int_at(event, "/series/count").unwrap_or(0);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }
    let kind = str_at(event, "/involvedObject/kind").to_lowercase();
    let involved_name = str_at(event, "/involvedObject/name");
    let target = if involved_name.is_empty() { kind } else { format!("{kind}/{involved_name}") };
    vec![
        s(last_timestamp),
        s(str_at(event, "/type")),
        s(str_at(event, "/reason")),
        s(target),
        s(str_at(event, "/involvedObject/fieldPath")),
        s(format_event_source(event)),
        s(str_at(event, "/message").trim()),
        s(first_timestamp),
        int(count),
        name(event),
    ]
}

/// Upstream `printReplicaSet`.
fn replicaset_cells(rs: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = layout_container_cells(arr_at(rs, "/spec/template/spec/containers"));
    vec![
        name(rs),
        int(int_at(rs, "/spec/replicas").unwrap_or(1)),
        int(int_at(rs, "/status/replicas").unwrap_or(0)),
        int(int_at(rs, "/status/readyReplicas").unwrap_or(0)),
        age(rs, now),
        s(names),
        s(images),
        s(format_label_selector(get(rs, "/spec/selector"))),
    ]
}

/// Upstream `printDeployment`.
fn deployment_cells(deploy: &Value, now: Timestamp) -> Vec<Value> {
    let desired = int_at(deploy, "/spec/replicas").unwrap_or(1);
    let ready = int_at(deploy, "/status/readyReplicas").unwrap_or(0);
    let (names, images) = layout_container_cells(arr_at(deploy, "/spec/template/spec/containers"));
    let selector = label_selector_string(get(deploy, "/spec/selector")).unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        name(deploy),
        s(format!("{ready}/{desired}")),
        int(int_at(deploy, "/status/updatedReplicas").unwrap_or(0)),
        int(int_at(deploy, "/status/availableReplicas").unwrap_or(0)),
        age(deploy, now),
        s(names),
        s(images),
        s(selector),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-06-01T12:00:00Z".parse().unwrap()
    }

    /// RFC3339 of `now - secs` (negative: in the future).
    fn ago(secs: f64) -> String {
        let nanos = (secs * 1e9) as i128;
        let ts = Timestamp::from_nanosecond(now().as_nanosecond() - nanos).unwrap();
        ts.to_string()
    }

    const MIN: f64 = 60.0;
    const HOUR: f64 = 3600.0;
    const DAY: f64 = 86400.0;
    /// `time.Now().Add(1.9e9)`: 1.9 s in the future, printed as `0s`.
    const SOON: f64 = -1.9;

    fn strs(values: &[&str]) -> Vec<Value> {
        values.iter().map(|v| Value::from(*v)).collect()
    }

    fn cells_of(group: &str, plural: &str, obj: Value) -> Vec<Value> {
        cells(group, plural, &obj, now())
    }

    // ----- HumanDuration (duration_test.go) -----

    #[test]
    fn table_human_duration_upstream_cases() {
        let sec = 1_000_000_000i128;
        let ms = 1_000_000i128;
        let min = 60 * sec;
        let hour = 60 * min;
        let cases: &[(i128, &str)] = &[
            (sec, "1s"),
            (70 * sec, "70s"),
            (190 * sec, "3m10s"),
            (70 * min, "70m"),
            (47 * hour, "47h"),
            (49 * hour, "2d1h"),
            ((8 * 24 + 2) * hour, "8d"),
            ((367 * 24) * hour, "367d"),
            ((365 * 2 * 24 + 25) * hour, "2y1d"),
            ((365 * 8 * 24 + 2) * hour, "8y"),
            // TestHumanDurationBoundaries
            (-2 * sec, "<invalid>"),
            (-2 * sec + 1, "0s"),
            (0, "0s"),
            (sec - ms, "0s"),
            (2 * min - ms, "119s"),
            (2 * min, "2m"),
            (2 * min + sec, "2m1s"),
            (10 * min - ms, "9m59s"),
            (10 * min, "10m"),
            (10 * min + sec, "10m"),
            (3 * hour - ms, "179m"),
            (3 * hour, "3h"),
            (3 * hour + min, "3h1m"),
            (8 * hour - ms, "7h59m"),
            (8 * hour, "8h"),
            (8 * hour + 59 * min, "8h"),
            (2 * 24 * hour - ms, "47h"),
            (2 * 24 * hour, "2d"),
            (2 * 24 * hour + hour, "2d1h"),
            (8 * 24 * hour - ms, "7d23h"),
            (8 * 24 * hour, "8d"),
            (8 * 24 * hour + 23 * hour, "8d"),
            (2 * 365 * 24 * hour - ms, "729d"),
            (2 * 365 * 24 * hour, "2y"),
            (2 * 365 * 24 * hour + 23 * hour, "2y"),
            (2 * 365 * 24 * hour + 23 * hour + 59 * min, "2y"),
            (2 * 365 * 24 * hour + 24 * hour - ms, "2y"),
            (2 * 365 * 24 * hour + 24 * hour, "2y1d"),
            (3 * 365 * 24 * hour, "3y"),
            (4 * 365 * 24 * hour, "4y"),
            (5 * 365 * 24 * hour, "5y"),
            (6 * 365 * 24 * hour, "6y"),
            (7 * 365 * 24 * hour, "7y"),
            (8 * 365 * 24 * hour - ms, "7y364d"),
            (8 * 365 * 24 * hour, "8y"),
            (8 * 365 * 24 * hour + 364 * 24 * hour, "8y"),
            (9 * 365 * 24 * hour, "9y"),
        ];
        for (nanos, want) in cases {
            assert_eq!(human_duration_nanos(*nanos), *want, "{nanos}ns");
        }
    }

    #[test]
    fn table_human_duration_std() {
        use std::time::Duration;
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (51 * 3600, "2d3h"),
            (8 * 86400, "8d"),
            (2 * 365 * 86400, "2y"),
            (10 * 365 * 86400, "10y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(*secs)), *want);
        }
        // Go's Duration saturates instead of overflowing.
        assert_eq!(human_duration(Duration::MAX), "292y");
    }

    // ----- columns -----

    fn col_summary(cols: &[Value]) -> Vec<(String, String, String, i64)> {
        cols.iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["type"].as_str().unwrap().to_string(),
                    c["format"].as_str().unwrap().to_string(),
                    c["priority"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    fn expect_cols(group: &str, plural: &str, want: &[(&str, &str, &str, i64)]) {
        let cols = columns(group, plural).unwrap();
        let want: Vec<(String, String, String, i64)> =
            want.iter().map(|(n, t, f, p)| (n.to_string(), t.to_string(), f.to_string(), *p)).collect();
        assert_eq!(col_summary(&cols), want, "{group}/{plural}");
        for c in &cols {
            assert!(c["description"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }

    #[test]
    fn table_column_definitions() {
        let name = ("Name", "string", "name", 0);
        let age = ("Age", "string", "", 0);
        expect_cols("", "namespaces", &[name, ("Status", "string", "", 0), age]);
        expect_cols(
            "",
            "pods",
            &[
                name,
                ("Ready", "string", "", 0),
                ("Status", "string", "", 0),
                ("Restarts", "string", "", 0),
                age,
                ("IP", "string", "", 1),
                ("Node", "string", "", 1),
                ("Nominated Node", "string", "", 1),
                ("Readiness Gates", "string", "", 1),
            ],
        );
        expect_cols(
            "",
            "services",
            &[
                name,
                ("Type", "string", "", 0),
                ("Cluster-IP", "string", "", 0),
                ("External-IP", "string", "", 0),
                ("Port(s)", "string", "", 0),
                age,
                ("Selector", "string", "", 1),
            ],
        );
        expect_cols("", "endpoints", &[name, ("Endpoints", "string", "", 0), age]);
        expect_cols(
            "",
            "nodes",
            &[
                name,
                ("Status", "string", "", 0),
                ("Roles", "string", "", 0),
                age,
                ("Version", "string", "", 0),
                ("Internal-IP", "string", "", 1),
                ("External-IP", "string", "", 1),
                ("OS-Image", "string", "", 1),
                ("Kernel-Version", "string", "", 1),
                ("Container-Runtime", "string", "", 1),
            ],
        );
        expect_cols(
            "",
            "events",
            &[
                ("Last Seen", "string", "", 0),
                ("Type", "string", "", 0),
                ("Reason", "string", "", 0),
                ("Object", "string", "", 0),
                ("Subobject", "string", "", 1),
                ("Source", "string", "", 1),
                ("Message", "string", "", 0),
                ("First Seen", "string", "", 1),
                ("Count", "string", "", 1),
                ("Name", "string", "name", 1),
            ],
        );
        expect_cols("", "configmaps", &[name, ("Data", "string", "", 0), age]);
        expect_cols("", "secrets", &[name, ("Type", "string", "", 0), ("Data", "string", "", 0), age]);
        expect_cols("", "serviceaccounts", &[name, ("Secrets", "string", "", 0), age]);
        expect_cols(
            "apps",
            "replicasets",
            &[
                name,
                ("Desired", "integer", "", 0),
                ("Current", "integer", "", 0),
                ("Ready", "integer", "", 0),
                age,
                ("Containers", "string", "", 1),
                ("Images", "string", "", 1),
                ("Selector", "string", "", 1),
            ],
        );
        expect_cols(
            "apps",
            "deployments",
            &[
                name,
                ("Ready", "string", "", 0),
                ("Up-to-date", "string", "", 0),
                ("Available", "string", "", 0),
                age,
                ("Containers", "string", "", 1),
                ("Images", "string", "", 1),
                ("Selector", "string", "", 1),
            ],
        );
        expect_cols(
            "discovery.k8s.io",
            "endpointslices",
            &[name, ("AddressType", "string", "", 0), ("Ports", "string", "", 0), ("Endpoints", "string", "", 0), age],
        );
        expect_cols("coordination.k8s.io", "leases", &[name, ("Holder", "string", "", 0), age]);
        expect_cols(
            "apps",
            "daemonsets",
            &[
                name,
                ("Desired", "integer", "", 0),
                ("Current", "integer", "", 0),
                ("Ready", "integer", "", 0),
                ("Up-to-date", "integer", "", 0),
                ("Available", "integer", "", 0),
                ("Node Selector", "string", "", 0),
                age,
                ("Containers", "string", "", 1),
                ("Images", "string", "", 1),
                ("Selector", "string", "", 1),
            ],
        );
        expect_cols(
            "batch",
            "jobs",
            &[
                name,
                ("Status", "string", "", 0),
                ("Completions", "string", "", 0),
                ("Duration", "string", "", 0),
                age,
                ("Containers", "string", "", 1),
                ("Images", "string", "", 1),
                ("Selector", "string", "", 1),
            ],
        );
    }

    #[test]
    fn table_columns_match_cells_length() {
        let resources = [
            ("", "namespaces"),
            ("", "pods"),
            ("", "services"),
            ("", "endpoints"),
            ("", "nodes"),
            ("", "events"),
            ("", "configmaps"),
            ("", "secrets"),
            ("", "serviceaccounts"),
            ("apps", "replicasets"),
            ("apps", "deployments"),
            ("apps", "daemonsets"),
            ("batch", "jobs"),
            ("discovery.k8s.io", "endpointslices"),
            ("coordination.k8s.io", "leases"),
        ];
        for (group, plural) in resources {
            let cols = columns(group, plural).unwrap();
            // Garbage input must not panic and must still give a full row.
            for obj in [json!({}), json!(null), json!([1, 2]), json!({"spec": 7})] {
                assert_eq!(cells(group, plural, &obj, now()).len(), cols.len(), "{group}/{plural}");
            }
        }
    }

    #[test]
    fn table_default_table() {
        assert!(columns("", "clusterroles").is_none());
        assert!(columns("rbac.authorization.k8s.io", "clusterroles").is_none());
        assert!(columns("apps", "pods").is_none());
        let cols = default_columns();
        assert_eq!(
            col_summary(&cols),
            vec![
                ("Name".into(), "string".into(), "name".into(), 0),
                ("Created At".into(), "date".into(), "".into(), 0),
            ]
        );
        let obj = json!({"metadata": {"name": "admin",
            "creationTimestamp": "2024-05-30T08:09:10Z"}});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "clusterroles", &obj, now()),
            strs(&["admin", "2024-05-30T08:09:10Z"])
        );
        // Fractional seconds are dropped (Go's time.RFC3339).
        let obj = json!({"metadata": {"name": "x",
            "creationTimestamp": "2024-05-30T08:09:10.123456Z"}});
        assert_eq!(cells("x.io", "things", &obj, now()), strs(&["x", "2024-05-30T08:09:10Z"]));
        let obj = json!({"metadata": {"name": "x"}});
        assert_eq!(cells("x.io", "things", &obj, now()), strs(&["x", "0001-01-01T00:00:00Z"]));
    }

    // ----- events (TestPrintEvent) -----

    #[test]
    fn table_events() {
        // Basic event.
        let e = json!({
            "metadata": {"name": "event1"},
            "source": {"component": "kubelet"},
            "involvedObject": {"kind": "Pod", "name": "Pod Name", "fieldPath": "spec.containers{foo}"},
            "reason": "Event Reason", "message": "Message Data",
            "firstTimestamp": ago(3.0 * DAY), "lastTimestamp": ago(2.0 * DAY),
            "count": 6, "type": "Normal",
        });
        let row = cells_of("", "events", e);
        assert_eq!(row[..4].to_vec(), strs(&["2d", "Normal", "Event Reason", "pod/Pod Name"]));
        assert_eq!(row[6], json!("Message Data"));
        assert_eq!(row[5], json!("kubelet"));

        // Wide.
        let e = json!({
            "metadata": {"name": "event2"},
            "source": {"component": "kubelet", "host": "Node1"},
            "involvedObject": {"kind": "Deployment", "name": "Deployment Name", "fieldPath": "spec.containers{foo}"},
            "reason": "Event Reason", "message": "Message Data",
            "firstTimestamp": ago(3.0 * DAY), "lastTimestamp": ago(2.0 * DAY),
            "count": 6, "type": "Warning",
        });
        let wide = |last: &str, count: i64, name: &str| {
            vec![
                json!(last),
                json!("Warning"),
                json!("Event Reason"),
                json!("deployment/Deployment Name"),
                json!("spec.containers{foo}"),
                json!("kubelet, Node1"),
                json!("Message Data"),
                json!("3d"),
                json!(count),
                json!(name),
            ]
        };
        assert_eq!(cells_of("", "events", e), wide("2d", 6, "event2"));

        let base = |name: &str| {
            json!({
                "metadata": {"name": name},
                "source": {"component": "kubelet", "host": "Node1"},
                "involvedObject": {"kind": "Deployment", "name": "Deployment Name", "fieldPath": "spec.containers{foo}"},
                "reason": "Event Reason", "message": "Message Data", "type": "Warning",
            })
        };
        // Without FirstTimestamp.
        let mut e = base("event3");
        e["eventTime"] = json!(ago(3.0 * DAY));
        e["lastTimestamp"] = json!(ago(3.0 * DAY));
        e["count"] = json!(1);
        assert_eq!(cells_of("", "events", e), wide("3d", 1, "event3"));
        // Without LastTimestamp.
        let mut e = base("event4");
        e["eventTime"] = json!(ago(3.0 * DAY));
        e["firstTimestamp"] = json!(ago(3.0 * DAY));
        e["count"] = json!(1);
        assert_eq!(cells_of("", "events", e), wide("3d", 1, "event4"));
        // Without FirstTimestamp and LastTimestamp.
        let mut e = base("event5");
        e["eventTime"] = json!(ago(3.0 * DAY));
        e["count"] = json!(1);
        assert_eq!(cells_of("", "events", e), wide("3d", 1, "event5"));
        // Series, without FirstTimestamp, LastTimestamp and Count.
        let mut e = base("event6");
        e["eventTime"] = json!(ago(3.0 * DAY));
        e["series"] = json!({"count": 2, "lastObservedTime": ago(2.0 * DAY)});
        assert_eq!(cells_of("", "events", e), wide("2d", 2, "event6"));
        // Singleton, without FirstTimestamp, LastTimestamp and Count.
        let mut e = base("event7");
        e["eventTime"] = json!(ago(3.0 * DAY));
        e["firstTimestamp"] = Value::Null;
        assert_eq!(cells_of("", "events", e), wide("3d", 1, "event7"));
        // Empty Source: reportingComponent / reportingInstance.
        let e = json!({
            "metadata": {"name": "event2"},
            "reportingComponent": "kubelet", "reportingInstance": "test",
            "involvedObject": {"kind": "Deployment", "name": "Deployment Name", "fieldPath": "spec.containers{foo}"},
            "reason": "Event Reason", "message": "Message Data",
            "firstTimestamp": ago(3.0 * DAY), "lastTimestamp": ago(2.0 * DAY),
            "count": 6, "type": "Warning",
        });
        let mut want = wide("2d", 6, "event2");
        want[5] = json!("kubelet, test");
        assert_eq!(cells_of("", "events", e), want);
        // No timestamps at all, no involved name, message trimmed.
        let e = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Node"},
            "message": "  hi \n"});
        let row = cells_of("", "events", e);
        assert_eq!(row[0], json!("<unknown>"));
        assert_eq!(row[3], json!("node"));
        assert_eq!(row[6], json!("hi"));
        assert_eq!(row[7], json!("<unknown>"));
        assert_eq!(row[8], json!(1));
    }

    // ----- namespaces, secrets, service accounts, config maps, leases -----

    #[test]
    fn table_namespaces() {
        let ns = json!({"metadata": {"name": "namespace1", "creationTimestamp": ago(SOON)},
            "status": {"phase": "FooStatus"}});
        assert_eq!(cells_of("", "namespaces", ns), strs(&["namespace1", "FooStatus", "0s"]));
        let ns = json!({"metadata": {"name": "namespace2"}});
        assert_eq!(cells_of("", "namespaces", ns), strs(&["namespace2", "", "<unknown>"]));
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(5.0 * DAY)},
            "status": {"phase": "Active"}});
        assert_eq!(cells_of("", "namespaces", ns), strs(&["default", "Active", "5d"]));
        // Far in the future.
        let ns = json!({"metadata": {"name": "x", "creationTimestamp": ago(-10.0)}});
        assert_eq!(cells_of("", "namespaces", ns)[2], json!("<invalid>"));
    }

    #[test]
    fn table_secrets() {
        let secret = json!({"metadata": {"name": "secret1", "creationTimestamp": ago(SOON)},
            "type": "kubernetes.io/service-account-token", "data": {"token": "c2VjcmV0IGRhdGE="}});
        assert_eq!(
            cells_of("", "secrets", secret),
            vec![json!("secret1"), json!("kubernetes.io/service-account-token"), json!(1), json!("0s")]
        );
        let secret = json!({"metadata": {"name": "secret1", "creationTimestamp": ago(SOON)},
            "type": "kubernetes.io/service-account-token"});
        assert_eq!(cells_of("", "secrets", secret)[2], json!(0));
        // stringData merges into data.
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque",
            "data": {"a": "YQ==", "b": "Yg=="}, "stringData": {"b": "x", "c": "y"}});
        assert_eq!(cells_of("", "secrets", secret)[2], json!(3));
    }

    #[test]
    fn table_service_accounts() {
        let sa = json!({"metadata": {"name": "sa1", "creationTimestamp": ago(SOON)}, "secrets": []});
        assert_eq!(cells_of("", "serviceaccounts", sa), vec![json!("sa1"), json!(0), json!("0s")]);
        let sa = json!({"metadata": {"name": "sa1", "creationTimestamp": ago(SOON)},
            "secrets": [{"name": "Secret1"}, {"name": "Secret2"}]});
        assert_eq!(cells_of("", "serviceaccounts", sa), vec![json!("sa1"), json!(2), json!("0s")]);
    }

    #[test]
    fn table_configmaps() {
        let cm = json!({"metadata": {"name": "configmap1", "creationTimestamp": ago(SOON)}});
        assert_eq!(cells_of("", "configmaps", cm), vec![json!("configmap1"), json!(0), json!("0s")]);
        let cm = json!({"metadata": {"name": "configmap2", "creationTimestamp": ago(SOON)},
            "data": {"foo": "bar"}});
        assert_eq!(cells_of("", "configmaps", cm), vec![json!("configmap2"), json!(1), json!("0s")]);
        let cm = json!({"metadata": {"name": "configmap3", "creationTimestamp": ago(SOON)},
            "data": {"foo": "bar"}, "binaryData": {"bin": "YmluYXJ5IGRhdGE="}});
        assert_eq!(cells_of("", "configmaps", cm), vec![json!("configmap3"), json!(2), json!("0s")]);
    }

    #[test]
    fn table_leases() {
        let lease = json!({"metadata": {"name": "lease1", "creationTimestamp": ago(SOON)},
            "spec": {"holderIdentity": "holder1"}});
        assert_eq!(cells_of("coordination.k8s.io", "leases", lease), strs(&["lease1", "holder1", "0s"]));
        let lease = json!({"metadata": {"name": "lease2", "creationTimestamp": ago(300.0)},
            "spec": {"holderIdentity": "holder2"}});
        assert_eq!(cells_of("coordination.k8s.io", "leases", lease), strs(&["lease2", "holder2", "5m"]));
        let lease = json!({"metadata": {"name": "lease3", "creationTimestamp": ago(300.0)}, "spec": {}});
        assert_eq!(cells_of("coordination.k8s.io", "leases", lease), strs(&["lease3", "", "5m"]));
    }

    // ----- nodes (TestPrintNode*) -----

    fn node_row(name: &str, status: &str, roles: &str) -> Vec<Value> {
        strs(&[name, status, roles, "<unknown>", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"])
    }

    #[test]
    fn table_node_status() {
        let ready = json!({"type": "Ready", "status": "True"});
        let not_ready = json!({"type": "Ready", "status": "False"});
        let invalid = json!({"type": "InvalidValue", "status": "True"});
        let cases = [
            (json!({"metadata": {"name": "foo1"}, "status": {"conditions": [ready]}}), "foo1", "Ready"),
            (
                json!({"metadata": {"name": "foo2"}, "spec": {"unschedulable": true}, "status": {"conditions": [ready]}}),
                "foo2",
                "Ready,SchedulingDisabled",
            ),
            (json!({"metadata": {"name": "foo3"}, "status": {"conditions": [ready, ready]}}), "foo3", "Ready"),
            (json!({"metadata": {"name": "foo4"}, "status": {"conditions": [not_ready]}}), "foo4", "NotReady"),
            (
                json!({"metadata": {"name": "foo5"}, "spec": {"unschedulable": true}, "status": {"conditions": [not_ready]}}),
                "foo5",
                "NotReady,SchedulingDisabled",
            ),
            (json!({"metadata": {"name": "foo6"}, "status": {"conditions": [invalid]}}), "foo6", "Unknown"),
            (json!({"metadata": {"name": "foo7"}, "status": {"conditions": [{}]}}), "foo7", "Unknown"),
            (
                json!({"metadata": {"name": "foo8"}, "spec": {"unschedulable": true}, "status": {"conditions": [invalid]}}),
                "foo8",
                "Unknown,SchedulingDisabled",
            ),
            (
                json!({"metadata": {"name": "foo9"}, "spec": {"unschedulable": true}, "status": {"conditions": [{}]}}),
                "foo9",
                "Unknown,SchedulingDisabled",
            ),
            (json!({"metadata": {"name": "127.0.0.1"}, "status": {}}), "127.0.0.1", "Unknown"),
            (json!({"metadata": {"name": ""}, "status": {}}), "", "Unknown"),
        ];
        for (node, name, status) in cases {
            assert_eq!(cells_of("", "nodes", node), node_row(name, status, "<none>"), "{name}");
        }
    }

    #[test]
    fn table_node_roles() {
        let node = json!({"metadata": {"name": "foo9"}});
        assert_eq!(cells_of("", "nodes", node), node_row("foo9", "Unknown", "<none>"));
        let node = json!({"metadata": {"name": "foo10", "labels": {
            "node-role.kubernetes.io/master": "", "node-role.kubernetes.io/control-plane": "",
            "node-role.kubernetes.io/proxy": "", "kubernetes.io/role": "node"}}});
        assert_eq!(cells_of("", "nodes", node), node_row("foo10", "Unknown", "control-plane,master,node,proxy"));
        let node = json!({"metadata": {"name": "foo11", "labels": {"kubernetes.io/role": "node"}}});
        assert_eq!(cells_of("", "nodes", node), node_row("foo11", "Unknown", "node"));
        let node =
            json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/": "x", "kubernetes.io/role": ""}}});
        assert_eq!(cells_of("", "nodes", node), node_row("n", "Unknown", "<none>"));
    }

    #[test]
    fn table_node_wide() {
        let node = json!({"metadata": {"name": "foo1"}, "status": {
            "nodeInfo": {"osImage": "fake-os-image"},
            "addresses": [{"type": "ExternalIP", "address": "1.1.1.1"}]}});
        assert_eq!(
            cells_of("", "nodes", node),
            strs(&[
                "foo1",
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "1.1.1.1",
                "fake-os-image",
                "<unknown>",
                "<unknown>"
            ])
        );
        let node = json!({"metadata": {"name": "foo2"}, "status": {
            "nodeInfo": {"kernelVersion": "fake-kernel-version"},
            "addresses": [{"type": "ExternalIP", "address": "1.1.1.1"}]}});
        assert_eq!(
            cells_of("", "nodes", node),
            strs(&[
                "foo2",
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "1.1.1.1",
                "<unknown>",
                "fake-kernel-version",
                "<unknown>"
            ])
        );
        let node = json!({"metadata": {"name": "foo1"}, "status": {
            "nodeInfo": {"containerRuntimeVersion": "foo://1.2.3"},
            "addresses": [{"type": "ExternalIP", "address": "1.1.1.1"}]}});
        assert_eq!(
            cells_of("", "nodes", node),
            strs(&[
                "foo1",
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "1.1.1.1",
                "<unknown>",
                "<unknown>",
                "foo://1.2.3"
            ])
        );
        let node = json!({"metadata": {"name": "foo2"}, "status": {
            "addresses": [{"type": "InternalIP", "address": "1.1.1.1"}]}});
        assert_eq!(
            cells_of("", "nodes", node),
            strs(&[
                "foo2",
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "1.1.1.1",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ])
        );
        // First address of each type wins.
        let node = json!({"metadata": {"name": "foo3"}, "status": {"addresses": [
            {"type": "ExternalIP", "address": "2.2.2.2"},
            {"type": "InternalIP", "address": "3.3.3.3"},
            {"type": "ExternalIP", "address": "4.4.4.4"}]}});
        assert_eq!(
            cells_of("", "nodes", node),
            strs(&[
                "foo3",
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "3.3.3.3",
                "2.2.2.2",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ])
        );
        // A real node.
        let node = json!({
            "metadata": {"name": "node-1", "creationTimestamp": ago(3.0 * HOUR + 5.0 * MIN),
                "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.122.10"}, {"type": "Hostname", "address": "node-1"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-rkube", "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "rkube://0.1.0"}}});
        assert_eq!(
            cells_of("", "nodes", node),
            strs(&[
                "node-1",
                "Ready",
                "control-plane",
                "3h5m",
                "v1.33.0-rkube",
                "192.168.122.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0-18-amd64",
                "rkube://0.1.0"
            ])
        );
    }

    // ----- services (TestPrintService, TestPrintServiceLoadBalancer, the lesson) -----

    fn svc_row(cells: &[&str]) -> Vec<Value> {
        strs(cells)
    }

    #[test]
    fn table_services_upstream() {
        let svc = json!({"metadata": {"name": "test1"}, "spec": {"type": "ClusterIP",
            "ports": [{"protocol": "tcp", "port": 2233}], "clusterIPs": ["10.9.8.7"],
            "selector": {"foo": "bar"}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["test1", "ClusterIP", "10.9.8.7", "<none>", "2233/tcp", "<unknown>", "foo=bar"])
        );
        let svc = json!({"metadata": {"name": "test2"}, "spec": {"type": "NodePort",
            "ports": [{"protocol": "tcp", "port": 8888, "nodePort": 9999}], "clusterIPs": ["10.9.8.7"]}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["test2", "NodePort", "10.9.8.7", "<none>", "8888:9999/tcp", "<unknown>", "<none>"])
        );
        let svc = json!({"metadata": {"name": "test3"}, "spec": {"type": "LoadBalancer",
            "ports": [{"protocol": "tcp", "port": 8888}], "clusterIPs": ["10.9.8.7"]}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["test3", "LoadBalancer", "10.9.8.7", "<pending>", "8888/tcp", "<unknown>", "<none>"])
        );
        let svc = json!({"metadata": {"name": "test4"}, "spec": {"type": "LoadBalancer",
            "ports": [{"protocol": "tcp", "port": 8888}], "clusterIPs": ["10.9.8.7"],
            "externalIPs": ["80.11.12.10"]}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["test4", "LoadBalancer", "10.9.8.7", "80.11.12.10", "8888/tcp", "<unknown>", "<none>"])
        );
        let svc = json!({"metadata": {"name": "test5"}, "spec": {"type": "LoadBalancer",
            "ports": [{"protocol": "tcp", "port": 8888}], "clusterIPs": ["10.9.8.7"],
            "externalIPs": ["80.11.12.10"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "3.4.5.6", "hostname": "test.cluster.com"}]}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["test5", "LoadBalancer", "10.9.8.7", "3.4.5.6,80.11.12.10", "8888/tcp", "<unknown>", "<none>"])
        );
        let svc = json!({"metadata": {"name": "test6"}, "spec": {"type": "LoadBalancer",
            "ports": [{"protocol": "tcp", "port": 8888}], "clusterIPs": ["10.9.8.7"],
            "externalIPs": ["80.11.12.10", "80.11.12.11"]},
            "status": {"loadBalancer": {"ingress": [
                {"ip": "2.3.4.5", "hostname": "test.cluster.local"},
                {"ip": "3.4.5.6", "hostname": "test.cluster.com"}]}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&[
                "test6",
                "LoadBalancer",
                "10.9.8.7",
                "2.3.4.5,3.4.5.6,80.11.12.10,80.11.12.11",
                "8888/tcp",
                "<unknown>",
                "<none>"
            ])
        );
        let svc = json!({"metadata": {"name": "test7"}, "spec": {"type": "ExternalName",
            "externalName": "my.database.example.com"}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["test7", "ExternalName", "<none>", "my.database.example.com", "<none>", "<unknown>", "<none>"])
        );
    }

    #[test]
    fn table_services_load_balancer() {
        let svc = json!({"metadata": {"name": "service1"}, "spec": {"type": "LoadBalancer",
            "clusterIPs": ["1.2.3.4"], "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "2.3.4.5"}, {"ip": "3.4.5.6"}]}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["service1", "LoadBalancer", "1.2.3.4", "2.3.4.5,3.4.5.6", "80/TCP", "<unknown>", "<none>"])
        );
        let svc = json!({"metadata": {"name": "service2"}, "spec": {"type": "LoadBalancer",
            "clusterIPs": ["1.3.4.5"], "ports": [{"port": 80, "protocol": "TCP"},
            {"port": 8090, "protocol": "UDP"}, {"port": 8000, "protocol": "TCP"},
            {"port": 7777, "protocol": "SCTP"}]}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&[
                "service2",
                "LoadBalancer",
                "1.3.4.5",
                "<pending>",
                "80/TCP,8090/UDP,8000/TCP,7777/SCTP",
                "<unknown>",
                "<none>"
            ])
        );
        // The server prints wide, so the ingress list is never elided.
        let svc = json!({"metadata": {"name": "service4"}, "spec": {"type": "LoadBalancer",
            "clusterIPs": ["1.5.6.7"], "selector": {"foo": "bar"}, "ports": [{"port": 80, "protocol": "TCP"},
            {"port": 8090, "protocol": "UDP"}, {"port": 8000, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "2.3.4.5"}, {"ip": "3.4.5.6"},
            {"ip": "5.6.7.8", "hostname": "host5678"}]}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&[
                "service4",
                "LoadBalancer",
                "1.5.6.7",
                "2.3.4.5,3.4.5.6,5.6.7.8",
                "80/TCP,8090/UDP,8000/TCP",
                "<unknown>",
                "foo=bar"
            ])
        );
        // Hostname-only ingress, sorted and de-duplicated.
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer",
            "clusterIPs": ["10.96.0.20"], "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31000}]},
            "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"},
            {"ip": "192.168.122.200"}, {"ip": "192.168.122.200"}, {}]}}});
        assert_eq!(cells_of("", "services", svc)[3], json!("192.168.122.200,lb.example.com"));
    }

    #[test]
    fn table_services_lesson() {
        let t = ago(2.0 * MIN + 30.0);
        // ClusterIP.
        let svc = json!({"metadata": {"name": "myapp", "creationTimestamp": t},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.15", "clusterIPs": ["10.96.0.15"],
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": "myapp"}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["myapp", "ClusterIP", "10.96.0.15", "<none>", "80/TCP", "2m30s", "app=myapp"])
        );
        // Multi-port.
        let svc = json!({"metadata": {"name": "web", "creationTimestamp": t},
            "spec": {"type": "ClusterIP", "clusterIPs": ["10.96.0.16"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                      {"name": "https", "port": 443, "protocol": "TCP"}],
            "selector": {"app": "web", "tier": "frontend"}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["web", "ClusterIP", "10.96.0.16", "<none>", "80/TCP,443/TCP", "2m30s", "app=web,tier=frontend"])
        );
        // NodePort.
        let svc = json!({"metadata": {"name": "myapp-np", "creationTimestamp": t},
            "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.17"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31111}],
            "selector": {"app": "myapp"}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["myapp-np", "NodePort", "10.96.0.17", "<none>", "80:31111/TCP", "2m30s", "app=myapp"])
        );
        // LoadBalancer, no address yet.
        let svc = json!({"metadata": {"name": "myapp-lb", "creationTimestamp": t},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.18"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}],
            "selector": {"app": "myapp"}}, "status": {"loadBalancer": {}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["myapp-lb", "LoadBalancer", "10.96.0.18", "<pending>", "80:30080/TCP", "2m30s", "app=myapp"])
        );
        // LoadBalancer with an address.
        let svc = json!({"metadata": {"name": "myapp-lb", "creationTimestamp": t},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.18"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.122.240", "ipMode": "VIP"}]}}});
        assert_eq!(cells_of("", "services", svc)[3], json!("192.168.122.240"));
        // ExternalName.
        let svc = json!({"metadata": {"name": "google", "creationTimestamp": t},
            "spec": {"type": "ExternalName", "externalName": "www.google.com"}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["google", "ExternalName", "<none>", "www.google.com", "<none>", "2m30s", "<none>"])
        );
        // Headless.
        let svc = json!({"metadata": {"name": "db", "creationTimestamp": t},
            "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
            "ports": [{"port": 5432, "protocol": "TCP"}], "selector": {"app": "db"}}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&["db", "ClusterIP", "None", "<none>", "5432/TCP", "2m30s", "app=db"])
        );
        // ClusterIP with externalIPs; v1 defaults (type, protocol, clusterIPs from clusterIP).
        let svc = json!({"metadata": {"name": "ext", "creationTimestamp": t},
            "spec": {"clusterIP": "10.96.0.30", "externalIPs": ["192.168.122.50", "192.168.122.51"],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]}});
        assert_eq!(
            cells_of("", "services", svc),
            svc_row(&[
                "ext",
                "ClusterIP",
                "10.96.0.30",
                "192.168.122.50,192.168.122.51",
                "53/UDP,53/TCP",
                "2m30s",
                "<none>"
            ])
        );
        // Dual-stack: the first cluster IP.
        let svc = json!({"metadata": {"name": "ds"}, "spec": {"type": "ClusterIP",
            "clusterIPs": ["10.96.0.31", "fd00::31"], "ports": [{"port": 80, "protocol": "TCP"}]}});
        assert_eq!(cells_of("", "services", svc)[2], json!("10.96.0.31"));
    }

    // ----- endpoints and endpoint slices -----

    #[test]
    fn table_endpoints() {
        let ep = json!({"metadata": {"name": "endpoint1", "creationTimestamp": ago(SOON)}});
        assert_eq!(cells_of("", "endpoints", ep), strs(&["endpoint1", "<none>", "0s"]));
        let ep = json!({"metadata": {"name": "endpoint3", "creationTimestamp": ago(300.0)},
            "subsets": [{"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}]}]});
        assert_eq!(cells_of("", "endpoints", ep), strs(&["endpoint3", "1.2.3.4,5.6.7.8", "5m"]));
        let ep = json!({"metadata": {"name": "endpoint2", "creationTimestamp": ago(SOON)},
            "subsets": [{"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}],
            "ports": [{"port": 8001, "protocol": "tcp"}]}]});
        assert_eq!(cells_of("", "endpoints", ep), strs(&["endpoint2", "1.2.3.4:8001,5.6.7.8:8001", "0s"]));
        let ep = json!({"metadata": {"name": "endpoint2", "creationTimestamp": ago(SOON)},
            "subsets": [{"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}, {"ip": "9.8.7.6"}, {"ip": "6.6.6.6"}],
            "ports": [{"port": 8001, "protocol": "tcp"}]}]});
        assert_eq!(
            cells_of("", "endpoints", ep),
            strs(&["endpoint2", "1.2.3.4:8001,5.6.7.8:8001,9.8.7.6:8001 + 1 more...", "0s"])
        );
        // Two ports: every address per port, counted per port; IPv6 bracketed.
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{
            "addresses": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
            "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}]});
        assert_eq!(cells_of("", "endpoints", ep)[1], json!("10.244.1.5:80,[fd00::5]:80,10.244.1.5:443 + 1 more..."));
        // Not-ready addresses are not shown; an empty subset list is <none>, empty
        // addresses print as "".
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{
            "notReadyAddresses": [{"ip": "10.244.1.6"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells_of("", "endpoints", ep)[1], json!(""));
    }

    #[test]
    fn table_endpoint_slices() {
        let es = json!({"metadata": {"name": "abcslice.123", "creationTimestamp": ago(SOON)},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.1.2.3", "2001:db8::1234:5678"]}]});
        assert_eq!(
            cells_of("discovery.k8s.io", "endpointslices", es),
            strs(&["abcslice.123", "IPv4", "80", "10.1.2.3,2001:db8::1234:5678", "0s"])
        );
        let es = json!({"metadata": {"name": "longerslicename.123", "creationTimestamp": ago(300.0)},
            "addressType": "IPv6",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                      {"name": "https", "port": 443, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.1.2.3", "2001:db8::1234:5678"]},
                          {"addresses": ["10.2.3.4", "2001:db8::2345:6789"]}]});
        assert_eq!(
            cells_of("discovery.k8s.io", "endpointslices", es),
            strs(&["longerslicename.123", "IPv6", "80,443", "10.1.2.3,2001:db8::1234:5678,10.2.3.4 + 1 more...", "5m"])
        );
        let es = json!({"metadata": {"name": "multiportslice.123", "creationTimestamp": ago(300.0)},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                      {"name": "https", "port": 443, "protocol": "TCP"},
                      {"name": "extra1", "port": 3000, "protocol": "TCP"},
                      {"name": "extra2", "port": 3001, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.1.2.3", "2001:db8::1234:5678"]},
                          {"addresses": ["10.2.3.4", "2001:db8::2345:6789"]}]});
        assert_eq!(
            cells_of("discovery.k8s.io", "endpointslices", es),
            strs(&[
                "multiportslice.123",
                "IPv4",
                "80,443,3000 + 1 more...",
                "10.1.2.3,2001:db8::1234:5678,10.2.3.4 + 1 more...",
                "5m"
            ])
        );
        // No ports / endpoints; a port with only a name; a port with neither.
        let es = json!({"metadata": {"name": "empty"}, "addressType": "IPv4", "endpoints": []});
        assert_eq!(
            cells_of("discovery.k8s.io", "endpointslices", es),
            strs(&["empty", "IPv4", "<unset>", "<unset>", "<unknown>"])
        );
        let es = json!({"metadata": {"name": "p"}, "addressType": "IPv4",
            "ports": [{"name": "dns"}, {}], "endpoints": [{"addresses": ["10.244.0.5"]}]});
        assert_eq!(
            cells_of("discovery.k8s.io", "endpointslices", es),
            strs(&["p", "IPv4", "dns,*", "10.244.0.5", "<unknown>"])
        );
    }

    // ----- replica sets and deployments -----

    fn two_containers() -> Value {
        json!([{"name": "fake-container1", "image": "fake-image1"},
               {"name": "fake-container2", "image": "fake-image2"}])
    }

    #[test]
    fn table_replicasets() {
        let rs = json!({"metadata": {"name": "test1", "creationTimestamp": ago(SOON)},
            "spec": {"replicas": 5, "template": {"spec": {"containers": two_containers()}},
                "selector": {"matchLabels": {"foo": "bar"}}},
            "status": {"replicas": 5, "readyReplicas": 2}});
        assert_eq!(
            cells_of("apps", "replicasets", rs),
            vec![
                json!("test1"),
                json!(5),
                json!(5),
                json!(2),
                json!("0s"),
                json!("fake-container1,fake-container2"),
                json!("fake-image1,fake-image2"),
                json!("foo=bar")
            ]
        );
        let rs = json!({"metadata": {"name": "replicaset2", "creationTimestamp": ago(SOON)},
            "spec": {"replicas": 4, "template": {}, "selector": {"matchLabels": {"foo": "bar"}}},
            "status": {"replicas": 3, "readyReplicas": 1}});
        assert_eq!(
            cells_of("apps", "replicasets", rs),
            vec![
                json!("replicaset2"),
                json!(4),
                json!(3),
                json!(1),
                json!("0s"),
                json!(""),
                json!(""),
                json!("foo=bar")
            ]
        );
        // No selector -> <none>; replicas defaults to 1; empty status.
        let rs = json!({"metadata": {"name": "replicaset1"}, "spec": {}});
        assert_eq!(
            cells_of("apps", "replicasets", rs),
            vec![
                json!("replicaset1"),
                json!(1),
                json!(0),
                json!(0),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("<none>")
            ]
        );
        // The lesson: a deployment's replica set.
        let rs = json!({"metadata": {"name": "mynapp-rs-5d4c8b7f9", "creationTimestamp": ago(10.0 * MIN)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "mynapp-rs", "pod-template-hash": "5d4c8b7f9"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "rkube/webapp:1"}]}}},
            "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3}});
        assert_eq!(
            cells_of("apps", "replicasets", rs),
            vec![
                json!("mynapp-rs-5d4c8b7f9"),
                json!(3),
                json!(3),
                json!(3),
                json!("10m"),
                json!("web"),
                json!("rkube/webapp:1"),
                json!("app=mynapp-rs,pod-template-hash=5d4c8b7f9")
            ]
        );
        let rs = json!({"metadata": {"name": "mynapp-rs"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "mynapp-rs"}}}});
        assert_eq!(cells_of("apps", "replicasets", rs)[7], json!("app=mynapp-rs"));
    }

    #[test]
    fn table_deployments() {
        let deploy = json!({"metadata": {"name": "test1", "creationTimestamp": ago(SOON)},
            "spec": {"replicas": 5, "template": {"spec": {"containers": two_containers()}},
                "selector": {"matchLabels": {"foo": "bar"}}},
            "status": {"replicas": 10, "updatedReplicas": 2, "availableReplicas": 1, "unavailableReplicas": 4}});
        assert_eq!(
            cells_of("apps", "deployments", deploy),
            vec![
                json!("test1"),
                json!("0/5"),
                json!(2),
                json!(1),
                json!("0s"),
                json!("fake-container1,fake-container2"),
                json!("fake-image1,fake-image2"),
                json!("foo=bar")
            ]
        );
        let deploy = json!({"metadata": {"name": "web", "creationTimestamp": ago(2.0 * DAY + 3.0 * HOUR)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend", "edge"]},
                                     {"key": "canary", "operator": "DoesNotExist"}]},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
            "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}});
        assert_eq!(
            cells_of("apps", "deployments", deploy),
            vec![
                json!("web"),
                json!("3/3"),
                json!(3),
                json!(3),
                json!("2d3h"),
                json!("nginx"),
                json!("nginx:1.27"),
                json!("app=web,!canary,tier in (edge,frontend)")
            ]
        );
        // Empty selector prints "" for deployments (no <none> substitution); an invalid
        // one prints <invalid>.
        let deploy = json!({"metadata": {"name": "d"}, "spec": {"selector": {}}});
        let row = cells_of("apps", "deployments", deploy);
        assert_eq!(row[1], json!("0/1"));
        assert_eq!(row[7], json!(""));
        let deploy = json!({"metadata": {"name": "d"}, "spec": {"selector": {
            "matchExpressions": [{"key": "a", "operator": "Bogus", "values": ["x"]}]}}});
        assert_eq!(cells_of("apps", "deployments", deploy)[7], json!("<invalid>"));
    }

    #[test]
    fn table_label_selectors() {
        let cases = [
            (json!(null), Ok("")),
            (json!({}), Ok("")),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), Ok("a=1,b=2")),
            (
                json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}),
                Ok("env notin (prod)"),
            ),
            (json!({"matchExpressions": [{"key": "x", "operator": "Exists"}]}), Ok("x")),
            (json!({"matchLabels": {"k": "v"}, "matchExpressions": [{"key": "k", "operator": "Exists"}]}), Ok("k=v,k")),
            (json!({"matchLabels": {"example.com/app": "web"}}), Ok("example.com/app=web")),
            (json!({"matchExpressions": [{"key": "x", "operator": "In", "values": []}]}), Err(())),
            (json!({"matchExpressions": [{"key": "x", "operator": "Exists", "values": ["a"]}]}), Err(())),
            (json!({"matchLabels": {"bad key": "v"}}), Err(())),
            (json!({"matchLabels": {"k": "bad value!"}}), Err(())),
            (json!({"matchLabels": {"Bad.Prefix/k": "v"}}), Err(())),
        ];
        for (sel, want) in cases {
            let got = label_selector_string(Some(&sel));
            assert_eq!(got, want.map(str::to_string), "{sel}");
        }
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({"matchLabels": {"bad key": "v"}}))), "<error>");
        assert_eq!(format_labels(None), "<none>");
    }

    // ----- pods (TestPrintPod, TestPrintPodWithRestartableInitContainer, ...) -----

    fn pod_row(obj: Value) -> Vec<Value> {
        cells_of("", "pods", obj)
    }

    fn short(obj: Value) -> Vec<Value> {
        pod_row(obj)[..5].to_vec()
    }

    fn pod(name: &str, containers: usize, status: Value) -> Value {
        let containers: Vec<Value> = (0..containers).map(|_| json!({})).collect();
        json!({"metadata": {"name": name}, "spec": {"containers": containers}, "status": status})
    }

    fn pod_with_init(name: &str, init: usize, containers: usize, status: Value) -> Value {
        let mut p = pod(name, containers, status);
        let init: Vec<Value> = (0..init).map(|_| json!({})).collect();
        p["spec"]["initContainers"] = json!(init);
        p
    }

    fn running() -> Value {
        json!({"running": {}})
    }

    fn terminated_ago(secs: f64) -> Value {
        json!({"terminated": {"finishedAt": ago(secs)}})
    }

    #[test]
    fn table_pods_basic() {
        let cases = vec![
            // name, num of containers, restarts, container ready status
            (
                pod(
                    "test1",
                    2,
                    json!({"phase": "podPhase", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": running()},
                {"restartCount": 3}]}),
                ),
                ["test1", "1/2", "podPhase", "6", "<unknown>"],
            ),
            // container error overwrites pod phase
            (
                pod(
                    "test2",
                    2,
                    json!({"phase": "podPhase", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": running()},
                {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3}]}),
                ),
                ["test2", "1/2", "ContainerWaitingReason", "6", "<unknown>"],
            ),
            // Terminated state; the first container overwrites the rest
            (
                pod(
                    "test3",
                    2,
                    json!({"phase": "podPhase", "containerStatuses": [
                {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3},
                {"state": {"terminated": {"reason": "ContainerTerminatedReason"}}, "restartCount": 3}]}),
                ),
                ["test3", "0/2", "ContainerWaitingReason", "6", "<unknown>"],
            ),
            // ready is not enough for reporting running
            (
                pod(
                    "test4",
                    2,
                    json!({"phase": "podPhase", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": running()},
                {"ready": true, "restartCount": 3}]}),
                ),
                ["test4", "1/2", "podPhase", "6", "<unknown>"],
            ),
            (
                pod(
                    "test5",
                    2,
                    json!({"reason": "podReason", "phase": "podPhase", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": running()},
                {"ready": true, "restartCount": 3}]}),
                ),
                ["test5", "1/2", "podReason", "6", "<unknown>"],
            ),
            // one running, one completed, w/o ready condition
            (
                pod(
                    "test6",
                    2,
                    json!({"phase": "Running", "reason": "", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                {"ready": true, "restartCount": 3, "state": running()}]}),
                ),
                ["test6", "1/2", "NotReady", "6", "<unknown>"],
            ),
            // with ready condition
            (
                pod(
                    "test6",
                    2,
                    json!({"phase": "Running", "reason": "", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                {"ready": true, "restartCount": 3, "state": running()}],
                "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": ago(0.0)}]}),
                ),
                ["test6", "1/2", "Running", "6", "<unknown>"],
            ),
            // 1 init container restarting and 1 container not running
            (
                pod_with_init(
                    "test7",
                    1,
                    1,
                    json!({"phase": "podPhase",
                "initContainerStatuses": [{"ready": false, "restartCount": 3, "state": running(),
                    "lastState": terminated_ago(10.0)}],
                "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {}}}]}),
                ),
                ["test7", "0/1", "Init:0/1", "3 (10s ago)", "<unknown>"],
            ),
            // 2 init containers, one restarting and the other not running
            (
                pod_with_init(
                    "test8",
                    2,
                    1,
                    json!({"phase": "podPhase",
                "initContainerStatuses": [
                    {"ready": false, "restartCount": 3, "state": running(), "lastState": terminated_ago(10.0)},
                    {"ready": false, "state": {"waiting": {}}}],
                "containerStatuses": [{"ready": false, "state": {"waiting": {}}}]}),
                ),
                ["test8", "0/1", "Init:0/2", "3 (10s ago)", "<unknown>"],
            ),
            // 2 init containers, one completed without restarts and the other restarting
            (
                pod_with_init(
                    "test9",
                    2,
                    1,
                    json!({"phase": "podPhase",
                "initContainerStatuses": [
                    {"ready": false, "state": {"terminated": {}}},
                    {"ready": false, "restartCount": 3, "state": running(), "lastState": terminated_ago(10.0)}],
                "containerStatuses": [{"ready": false, "state": {"waiting": {}}}]}),
                ),
                ["test9", "0/1", "Init:1/2", "3 (10s ago)", "<unknown>"],
            ),
            // 2 init containers, one completed with restarts and the other restarting
            (
                pod_with_init(
                    "test10",
                    2,
                    1,
                    json!({"phase": "podPhase",
                "initContainerStatuses": [
                    {"ready": false, "restartCount": 2, "state": {"terminated": {}}, "lastState": terminated_ago(2.0 * MIN)},
                    {"ready": false, "restartCount": 3, "state": running(), "lastState": terminated_ago(10.0)}],
                "containerStatuses": [{"ready": false, "state": {"waiting": {}}}]}),
                ),
                ["test10", "0/1", "Init:1/2", "5 (10s ago)", "<unknown>"],
            ),
            // 1 init container completed with restarts and one container restarting
            (
                pod_with_init(
                    "test11",
                    1,
                    1,
                    json!({"phase": "Running",
                "initContainerStatuses": [
                    {"ready": false, "restartCount": 2, "state": {"terminated": {}}, "lastState": terminated_ago(2.0 * MIN)}],
                "containerStatuses": [
                    {"ready": false, "restartCount": 4, "state": running(), "lastState": terminated_ago(20.0)}]}),
                ),
                ["test11", "0/1", "Running", "4 (20s ago)", "<unknown>"],
            ),
            // 1 container that restarted 5d ago
            (
                pod(
                    "test12",
                    1,
                    json!({"phase": "Running", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": running(), "lastState": terminated_ago(5.0 * DAY)}]}),
                ),
                ["test12", "1/1", "Running", "3 (5d ago)", "<unknown>"],
            ),
            // 2 containers, one never restarted and the other restarted 10d ago
            (
                pod(
                    "test13",
                    2,
                    json!({"phase": "Running", "containerStatuses": [
                {"ready": true, "restartCount": 0, "state": running()},
                {"ready": true, "restartCount": 3, "state": running(), "lastState": terminated_ago(10.0 * DAY)}]}),
                ),
                ["test13", "2/2", "Running", "3 (10d ago)", "<unknown>"],
            ),
            // 2 containers, one restarted 5d ago and the other restarted 20d ago
            (
                pod(
                    "test14",
                    2,
                    json!({"phase": "Running", "containerStatuses": [
                {"ready": true, "restartCount": 6, "state": running(), "lastState": terminated_ago(5.0 * DAY)},
                {"ready": true, "restartCount": 3, "state": running(), "lastState": terminated_ago(20.0 * DAY)}]}),
                ),
                ["test14", "2/2", "Running", "9 (5d ago)", "<unknown>"],
            ),
            // PodScheduled condition with reason SchedulingGated
            (
                pod(
                    "test15",
                    2,
                    json!({"phase": "podPhase", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ),
                ["test15", "0/2", "SchedulingGated", "0", "<unknown>"],
            ),
            // succeeded
            (
                pod(
                    "test16",
                    1,
                    json!({"phase": "Succeeded", "containerStatuses": [
                {"ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}),
                ),
                ["test16", "0/1", "Completed", "0", "<unknown>"],
            ),
            // failed
            (
                pod(
                    "test17",
                    1,
                    json!({"phase": "Failed", "containerStatuses": [
                {"ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
                ),
                ["test17", "0/1", "Error", "0", "<unknown>"],
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(short(obj), strs(&want), "{}", want[0]);
        }
    }

    #[test]
    fn table_pods_deletion() {
        let deleting = |mut p: Value| {
            p["metadata"]["deletionTimestamp"] = json!(ago(10.0));
            p
        };
        // succeeded with deletion
        let p = deleting(pod(
            "test18",
            1,
            json!({"phase": "Succeeded", "containerStatuses": [
            {"ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}),
        ));
        assert_eq!(short(p), strs(&["test18", "0/1", "Completed", "0", "<unknown>"]));
        // running with deletion
        let p = deleting(pod(
            "test19",
            1,
            json!({"phase": "Running", "containerStatuses": [
            {"ready": false, "restartCount": 0, "state": running()}]}),
        ));
        assert_eq!(short(p), strs(&["test19", "0/1", "Terminating", "0", "<unknown>"]));
        // pending with deletion
        let p = deleting(pod("test20", 1, json!({"phase": "Pending"})));
        assert_eq!(short(p), strs(&["test20", "0/1", "Terminating", "0", "<unknown>"]));
        // node lost
        let p = deleting(pod("lost", 1, json!({"phase": "Running", "reason": "NodeLost"})));
        assert_eq!(short(p)[2], json!("Unknown"));
    }

    #[test]
    fn table_pods_restartable_init_containers() {
        let sidecars = |name: &str, status: Value| {
            json!({"metadata": {"name": name}, "spec": {
                "initContainers": [{"name": "restartable-init-1", "restartPolicy": "Always"},
                                   {"name": "restartable-init-2", "restartPolicy": "Always"}],
                "containers": [{}]}, "status": status})
        };
        // the first one running but not started
        let p = sidecars(
            "test1",
            json!({"phase": "Pending",
            "initContainerStatuses": [
                {"name": "restartable-init-1", "ready": false, "restartCount": 3, "state": running(),
                 "started": false, "lastState": terminated_ago(10.0)},
                {"name": "restartable-init-2", "ready": false, "state": {"waiting": {}}, "started": false}],
            "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {}}}],
            "conditions": [{"type": "Initialized", "status": "False"}]}),
        );
        assert_eq!(short(p), strs(&["test1", "0/3", "Init:0/2", "3 (10s ago)", "<unknown>"]));
        // the first one started and the second one running but not started
        let p = sidecars(
            "test1",
            json!({"phase": "Pending",
            "initContainerStatuses": [
                {"name": "restartable-init-1", "ready": false, "restartCount": 3, "state": running(),
                 "started": true, "lastState": terminated_ago(10.0)},
                {"name": "restartable-init-2", "ready": false, "state": running(), "started": false}],
            "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {}}}],
            "conditions": [{"type": "Initialized", "status": "False"}]}),
        );
        assert_eq!(short(p), strs(&["test1", "0/3", "Init:1/2", "3 (10s ago)", "<unknown>"]));
        // both started and 1 container running
        let p = sidecars(
            "test2",
            json!({"phase": "Running",
            "initContainerStatuses": [
                {"name": "restartable-init-1", "ready": false, "restartCount": 3, "state": running(),
                 "started": true, "lastState": terminated_ago(10.0)},
                {"name": "restartable-init-2", "ready": false, "state": running(), "started": true}],
            "containerStatuses": [{"ready": true, "restartCount": 4, "state": running(),
                "lastState": terminated_ago(20.0)}],
            "conditions": [{"type": "Initialized", "status": "True"}]}),
        );
        assert_eq!(short(p), strs(&["test2", "1/3", "Running", "7 (10s ago)", "<unknown>"]));
        // both completed with non-zero and 1 container completed
        let p = sidecars(
            "test3",
            json!({"phase": "Succeeded",
            "initContainerStatuses": [
                {"name": "restartable-init-1", "ready": false, "restartCount": 3,
                 "state": {"terminated": {"reason": "Error", "exitCode": 137}},
                 "started": false, "lastState": terminated_ago(10.0)},
                {"name": "restartable-init-2", "ready": false,
                 "state": {"terminated": {"reason": "Error", "exitCode": 137}}, "started": false}],
            "containerStatuses": [{"ready": false, "restartCount": 4,
                "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
                "lastState": terminated_ago(20.0)}],
            "conditions": [{"type": "Initialized", "status": "True"}]}),
        );
        assert_eq!(short(p.clone()), strs(&["test3", "0/3", "Completed", "7 (10s ago)", "<unknown>"]));
        assert_eq!(
            row_conditions("", "pods", &p),
            vec![json!({"type": "Completed", "status": "True", "reason": "Succeeded",
                "message": "The pod has completed successfully."})]
        );
        // statuses for non-existent init containers and containers
        let p = json!({"metadata": {"name": "test4"}, "spec": {
            "initContainers": [{"name": "init1", "image": "initimage"},
                               {"name": "sidecar1", "image": "sidecarimage", "restartPolicy": "Always"}],
            "containers": [{"name": "container1", "image": "containerimage"}]},
            "status": {"phase": "Running",
                "initContainerStatuses": [{"name": "initinvalid"}, {"name": "init1"}, {"name": "sidecar1"}],
                "containerStatuses": [{"name": "containerinvalid"}, {"name": "container1"}]}});
        assert_eq!(short(p), strs(&["test4", "0/2", "Init:0/2", "0", "<unknown>"]));
    }

    #[test]
    fn table_pods_wide() {
        let gates = json!([{"conditionType": "condition1"}, {"conditionType": "condition2"},
            {"conditionType": "condition3"}]);
        let p = json!({"metadata": {"name": "test1"},
            "spec": {"containers": [{}, {}], "nodeName": "test1", "readinessGates": gates},
            "status": {"conditions": [{"type": "condition1", "status": "False"},
                {"type": "condition2", "status": "True"}],
                "phase": "podPhase", "podIPs": [{"ip": "1.1.1.1"}],
                "containerStatuses": [{"ready": true, "restartCount": 3, "state": running()},
                    {"restartCount": 3}],
                "nominatedNodeName": "node1"}});
        assert_eq!(
            pod_row(p),
            strs(&["test1", "1/2", "podPhase", "6", "<unknown>", "1.1.1.1", "test1", "node1", "1/3"])
        );
        let p = json!({"metadata": {"name": "test1"},
            "spec": {"containers": [{}, {}], "nodeName": "test1", "readinessGates": gates},
            "status": {"conditions": [{"type": "condition1", "status": "False"},
                {"type": "condition2", "status": "True"}],
                "phase": "podPhase", "podIP": "1.1.1.1", "podIPs": [{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}],
                "containerStatuses": [{"ready": true, "restartCount": 3, "state": running()},
                    {"restartCount": 3}],
                "nominatedNodeName": "node1"}});
        assert_eq!(
            pod_row(p),
            strs(&["test1", "1/2", "podPhase", "6", "<unknown>", "1.1.1.1", "test1", "node1", "1/3"])
        );
        let p = json!({"metadata": {"name": "test2"}, "spec": {"containers": [{}, {}], "nodeName": ""},
            "status": {"phase": "podPhase", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": running()},
                {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3}]}});
        assert_eq!(
            pod_row(p),
            strs(&["test2", "1/2", "ContainerWaitingReason", "6", "<unknown>", "<none>", "<none>", "<none>", "<none>"])
        );
        // podIP only (no podIPs).
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{}]},
            "status": {"phase": "Running", "podIP": "10.244.1.7"}});
        assert_eq!(pod_row(p)[5], json!("10.244.1.7"));
    }

    #[test]
    fn table_pods_phases_and_conditions() {
        let statuses = json!([{"ready": true, "restartCount": 3, "state": running()},
            {"restartCount": 3}]);
        for (phase, want) in [
            ("Running", "Running"),
            ("Pending", "Pending"),
            ("Unknown", "Unknown"),
            ("Succeeded", "Succeeded"),
            ("Failed", "Failed"),
        ] {
            let p = pod("test", 2, json!({"phase": phase, "containerStatuses": statuses}));
            assert_eq!(short(p.clone()), strs(&["test", "1/2", want, "6", "<unknown>"]));
            let conds = row_conditions("", "pods", &p);
            match phase {
                "Succeeded" => assert_eq!(conds[0]["reason"], json!("Succeeded")),
                "Failed" => assert_eq!(
                    conds,
                    vec![json!({"type": "Completed", "status": "True", "reason": "Failed",
                        "message": "The pod failed."})]
                ),
                _ => assert!(conds.is_empty()),
            }
        }
        assert!(row_conditions("", "services", &json!({"status": {"phase": "Failed"}})).is_empty());
    }

    #[test]
    fn table_pods_lesson_states() {
        let t = ago(2.0 * MIN + 30.0);
        let one = |status: Value| {
            json!({"metadata": {"name": "web-0", "creationTimestamp": t},
                "spec": {"containers": [{"name": "web", "image": "rkube/webapp:1"}], "nodeName": "node-1"},
                "status": status})
        };
        // Running and ready.
        let p = one(json!({"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": t}}}]}));
        assert_eq!(
            pod_row(p),
            strs(&["web-0", "1/1", "Running", "0", "2m30s", "10.244.1.5", "node-1", "<none>", "<none>"])
        );
        // CrashLoopBackOff with restarts.
        let p = one(json!({"phase": "Running", "containerStatuses": [{"name": "web", "ready": false,
            "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(2.0 * MIN)}}}]}));
        assert_eq!(short(p), strs(&["web-0", "0/1", "CrashLoopBackOff", "3 (2m ago)", "2m30s"]));
        // ErrImagePull / ImagePullBackOff while pending.
        for reason in ["ErrImagePull", "ImagePullBackOff", "ContainerCreating"] {
            let p = one(json!({"phase": "Pending", "containerStatuses": [{"name": "web", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": reason}}}]}));
            assert_eq!(short(p), strs(&["web-0", "0/1", reason, "0", "2m30s"]));
        }
        // Pending, nothing reported yet.
        let p = one(json!({"phase": "Pending"}));
        assert_eq!(short(p), strs(&["web-0", "0/1", "Pending", "0", "2m30s"]));
        // Terminated without reason: signal, then exit code.
        let p = one(json!({"phase": "Failed", "containerStatuses": [{"name": "web",
            "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}));
        assert_eq!(short(p)[2], json!("Signal:9"));
        let p = one(json!({"phase": "Failed", "containerStatuses": [{"name": "web",
            "state": {"terminated": {"exitCode": 2}}}]}));
        assert_eq!(short(p)[2], json!("ExitCode:2"));
        // Restarts without a finishedAt print the bare count.
        let p = one(json!({"phase": "Running", "containerStatuses": [{"name": "web", "ready": true,
            "restartCount": 2, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1}}}]}));
        assert_eq!(short(p)[3], json!("2"));
        // Failing init containers.
        let init = |status: Value| {
            json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "init"}],
                "containers": [{"name": "web"}]}, "status": status})
        };
        let p = init(json!({"phase": "Pending", "initContainerStatuses": [{"name": "init",
            "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30.0)}}}]}));
        assert_eq!(short(p), strs(&["p", "0/1", "Init:CrashLoopBackOff", "1 (30s ago)", "<unknown>"]));
        let p = init(json!({"phase": "Pending", "initContainerStatuses": [{"name": "init",
            "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}));
        assert_eq!(short(p)[2], json!("Init:Error"));
        let p = init(json!({"phase": "Pending", "initContainerStatuses": [{"name": "init",
            "state": {"terminated": {"exitCode": 3}}}]}));
        assert_eq!(short(p)[2], json!("Init:ExitCode:3"));
        let p = init(json!({"phase": "Pending", "initContainerStatuses": [{"name": "init",
            "state": {"terminated": {"exitCode": 3, "signal": 15}}}]}));
        assert_eq!(short(p)[2], json!("Init:Signal:15"));
        let p = init(json!({"phase": "Pending", "initContainerStatuses": [{"name": "init",
            "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        assert_eq!(short(p)[2], json!("Init:0/1"));
    }
}
