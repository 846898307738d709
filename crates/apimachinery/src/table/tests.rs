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
        ("certificates.k8s.io", "certificatesigningrequests"),
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
        vec![("Name".into(), "string".into(), "name".into(), 0), ("Created At".into(), "date".into(), "".into(), 0),]
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
        vec![json!("replicaset2"), json!(4), json!(3), json!(1), json!("0s"), json!(""), json!(""), json!("foo=bar")]
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
    assert_eq!(pod_row(p), strs(&["test1", "1/2", "podPhase", "6", "<unknown>", "1.1.1.1", "test1", "node1", "1/3"]));
    let p = json!({"metadata": {"name": "test1"},
        "spec": {"containers": [{}, {}], "nodeName": "test1", "readinessGates": gates},
        "status": {"conditions": [{"type": "condition1", "status": "False"},
            {"type": "condition2", "status": "True"}],
            "phase": "podPhase", "podIP": "1.1.1.1", "podIPs": [{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}],
            "containerStatuses": [{"ready": true, "restartCount": 3, "state": running()},
                {"restartCount": 3}],
            "nominatedNodeName": "node1"}});
    assert_eq!(pod_row(p), strs(&["test1", "1/2", "podPhase", "6", "<unknown>", "1.1.1.1", "test1", "node1", "1/3"]));
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

#[test]
fn certificate_signing_request_cells() {
    let csr = json!({
        "metadata": {"name": "node-csr-1", "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:bootstrap:abcdef"},
    });
    let row = cells_of("certificates.k8s.io", "certificatesigningrequests", csr.clone());
    assert_eq!(
        row[2..],
        strs(&["kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:abcdef", "<none>", "Pending"])
    );
    let mut issued = csr.clone();
    issued["spec"]["expirationSeconds"] = json!(3600);
    issued["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}], "certificate": "Y2VydA=="});
    let row = cells_of("certificates.k8s.io", "certificatesigningrequests", issued);
    assert_eq!(row[4..], strs(&["60m", "Approved,Issued"]));
    let mut denied = csr;
    denied["status"] =
        json!({"conditions": [{"type": "Denied", "status": "True"}, {"type": "Failed", "status": "True"}]});
    let row = cells_of("certificates.k8s.io", "certificatesigningrequests", denied);
    assert_eq!(row[5], json!("Denied,Failed"));
}
