//! Tests: upstream's `strategicpatch/patch_test.go` cases (against upstream's
//! `MergeItem` test type) and realistic kubectl patches against built-in kinds.

use serde_json::{json, Value};

use super::schema::{merge_by, merge_by_retain_keys, merge_set, nested, replace, retain_keys, Schema, OPAQUE};
use super::{apply, apply_with_schema, PatchError};

// --- upstream's test type ------------------------------------------------------

/// `MergeItem` of upstream's patch_test.go.
static MERGE_ITEM: Schema = Schema::Struct(&[
    merge_by("mergingList", "name", &MERGE_ITEM),
    nested("nonMergingList", &MERGE_ITEM),
    merge_set("mergingIntList"),
    nested("nonMergingIntList", &OPAQUE),
    merge_by("mergeItemPtr", "name", &MERGE_ITEM),
    nested("simpleMap", &OPAQUE),
    replace("replacingItem"),
    retain_keys("retainKeysMap", &RETAIN_KEYS_MERGE_ITEM),
    merge_by_retain_keys("retainKeysMergingList", "name", &MERGE_ITEM),
]);

/// `RetainKeysMergeItem` of upstream's patch_test.go.
static RETAIN_KEYS_MERGE_ITEM: Schema = Schema::Struct(&[
    nested("simpleMap", &OPAQUE),
    merge_set("mergingIntList"),
    merge_by("mergingList", "name", &MERGE_ITEM),
    nested("nonMergingList", &MERGE_ITEM),
]);

/// Ported cases: `customStrategicMergePatchTestCaseData`,
/// `customStrategicMergePatchRawTestCases`, `createStrategicMergePatchTestCaseData`,
/// `strategicMergePatchRawTestCases` and `replaceRawExtensionPatchTestCases`
/// (converted from YAML). Two-way: `original` + `twoWay` gives `twoWayResult`
/// (or `modified`); three-way: `current` + `threeWay` gives `result`. Results
/// are compared exactly, list order included, as upstream does for raw cases.
#[test]
fn strategic_upstream_patch_test_cases() {
    let cases: Vec<Value> = serde_json::from_str(include_str!("testdata/upstream_cases.json")).expect("test data");
    assert!(cases.len() > 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let desc = c["description"].as_str().unwrap_or("?");
        if let Some(two_way) = c.get("twoWay") {
            let original = c.get("original").cloned().unwrap_or(Value::Null);
            let got = apply_with_schema(&MERGE_ITEM, &original, two_way);
            match (c.get("expectedError").and_then(Value::as_str), got) {
                (Some(want), Err(e)) if e.to_string().contains(want) => {}
                (Some(want), other) => {
                    failures.push(format!("{desc} (two-way): want error {want:?}, got {other:?}"));
                }
                (None, Ok(got)) => {
                    let want = c.get("twoWayResult").or_else(|| c.get("modified")).cloned().unwrap_or(Value::Null);
                    if got != want {
                        failures.push(format!("{desc} (two-way):\n  want {want}\n  got  {got}"));
                    }
                }
                (None, Err(e)) => failures.push(format!("{desc} (two-way): error {e}")),
            }
        }
        if let (Some(current), Some(three_way), Some(want)) = (c.get("current"), c.get("threeWay"), c.get("result")) {
            match apply_with_schema(&MERGE_ITEM, current, three_way) {
                Ok(got) if &got == want => {}
                Ok(got) => {
                    failures.push(format!("{desc} (three-way):\n  want {want}\n  got  {got}"));
                }
                Err(e) => failures.push(format!("{desc} (three-way): error {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Upstream's TestUnknownField patches applied: fields without metadata
/// merge as maps and are replaced as lists.
#[test]
fn strategic_unknown_fields_without_metadata() {
    let original = json!({"name": "foo", "scalar": true, "complex": {"nested": true}, "array": [1, 2, 3]});
    let patch = json!({"complex": null, "scalar": null});
    assert_eq!(
        apply_with_schema(&MERGE_ITEM, &original, &patch).expect("apply"),
        json!({"name": "foo", "array": [1, 2, 3]})
    );
    let patch = json!({"array": [1, 2, 3], "complex": {"nested": true}, "scalar": true});
    assert_eq!(
        apply_with_schema(&MERGE_ITEM, &json!({"name": "foo"}), &patch).expect("apply"),
        json!({"name": "foo", "scalar": true, "complex": {"nested": true}, "array": [1, 2, 3]})
    );
}

// --- realistic patches against built-in kinds ----------------------------------------

fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "2f1e4a4c-0000-4000-8000-000000000001",
            "resourceVersion": "42",
            "labels": {"app": "web"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"
            }
        },
        "spec": {
            "clusterIP": "10.96.0.20",
            "clusterIPs": ["10.96.0.20"],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": "web"},
            "sessionAffinity": "None",
            "type": "ClusterIP"
        },
        "status": {"loadBalancer": {}}
    })
}

/// `kubectl apply` of a Service whose single unnamed port becomes two named
/// ports: kubectl sends the changed and the new item plus `$setElementOrder`.
#[test]
fn strategic_service_apply_one_port_to_two_named_ports() {
    let patch = json!({
        "metadata": {
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"
            }
        },
        "spec": {
            "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
            "ports": [
                {"name": "http", "port": 80},
                {"name": "https", "port": 443, "targetPort": 8443}
            ]
        }
    });
    let got = apply("", "Service", &service(), &patch).expect("apply");
    let mut want = service();
    want["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("{\"new\":true}\n");
    want["spec"]["ports"] = json!([
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
        {"name": "https", "port": 443, "targetPort": 8443}
    ]);
    assert_eq!(got, want);

    // And back: the https port is removed with a delete directive.
    let patch = json!({
        "spec": {
            "$setElementOrder/ports": [{"port": 80}],
            "ports": [{"$patch": "delete", "port": 443}]
        }
    });
    let back = apply("", "Service", &got, &patch).expect("apply");
    assert_eq!(back["spec"]["ports"], json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]));
}

/// Reordering ports: the server-only port keeps its place relative to the
/// ports around it in the live list (upstream's `mergeSortedSlice`: it goes
/// before the first patch item that follows it on the server).
#[test]
fn strategic_service_ports_keep_server_only_items() {
    let mut original = service();
    original["spec"]["ports"] = json!([
        {"name": "a", "port": 1, "protocol": "TCP", "targetPort": 1},
        {"name": "b", "port": 2, "protocol": "TCP", "targetPort": 2},
        {"name": "c", "port": 3, "protocol": "TCP", "targetPort": 3}
    ]);
    // The user's config lists ports 3 and 1 (in that order) and port 2 was
    // added by someone else.
    let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 3}, {"port": 1}]}});
    let got = apply("", "Service", &original, &patch).expect("apply");
    let ports: Vec<i64> =
        got["spec"]["ports"].as_array().expect("ports").iter().filter_map(|p| p["port"].as_i64()).collect();
    assert_eq!(ports, vec![2, 3, 1]);
}

fn replica_set() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "frontend"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "prod"}, {"name": "LOG", "value": "info"}],
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"
                        },
                        {
                            "name": "sidecar",
                            "image": "busybox:1.36",
                            "args": ["sleep", "infinity"],
                            "resources": {}
                        }
                    ],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30
                }
            }
        },
        "status": {"replicas": 3, "observedGeneration": 1}
    })
}

/// `kubectl apply` changing one container's image merges by container name and
/// keeps every server-side field.
#[test]
fn strategic_replicaset_container_image_change() {
    let patch = json!({
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.27", "name": "web"}]
        }}}
    });
    let got = apply("apps", "ReplicaSet", &replica_set(), &patch).expect("apply");
    let mut want = replica_set();
    want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    assert_eq!(got, want);
}

/// Container lists nest: env merges by name, ports by containerPort.
#[test]
fn strategic_replicaset_env_and_ports_merge() {
    let patch = json!({
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{
                "name": "web",
                "$setElementOrder/env": [{"name": "MODE"}, {"name": "DEBUG"}],
                "env": [{"name": "DEBUG", "value": "1"}, {"$patch": "delete", "name": "LOG"}],
                "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 9090}],
                "ports": [{"containerPort": 9090, "name": "metrics"}]
            }]
        }}}
    });
    let got = apply("apps", "ReplicaSet", &replica_set(), &patch).expect("apply");
    let web = &got["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(web["env"], json!([{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "1"}]));
    assert_eq!(
        web["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 9090, "name": "metrics"}])
    );
    assert_eq!(web["image"], json!("nginx:1.25"));
    assert_eq!(got["spec"]["template"]["spec"]["containers"][1]["name"], json!("sidecar"));
}

/// `kubectl patch` without `$setElementOrder`: a new container goes before the
/// existing ones (upstream's `mergeSortedSlice` puts items unknown to the
/// server first) and an existing one merges in place.
#[test]
fn strategic_kubectl_patch_without_set_element_order() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "debug", "image": "busybox"},
        {"name": "sidecar", "image": "busybox:1.37"}
    ]}}}});
    let got = apply("apps", "ReplicaSet", &replica_set(), &patch).expect("apply");
    let containers = got["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    let names: Vec<&str> = containers.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, vec!["debug", "web", "sidecar"]);
    assert_eq!(containers[2]["image"], json!("busybox:1.37"));
    assert_eq!(containers[2]["args"], json!(["sleep", "infinity"]));
}

/// A null removes a label; unmatched nulls are ignored.
#[test]
fn strategic_remove_label_with_null() {
    let patch = json!({"metadata": {"labels": {"tier": null, "absent": null}}});
    let got = apply("apps", "ReplicaSet", &replica_set(), &patch).expect("apply");
    assert_eq!(got["metadata"]["labels"], json!({"app": "web"}));

    // Nulls inside a map the original lacks are dropped.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
    let patch = json!({"metadata": {"annotations": {"a": "1", "b": null}}, "data": {"k": null, "n": "x"}});
    let got = apply("", "ConfigMap", &cm, &patch).expect("apply");
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"a": "1"}}, "data": {"n": "x"}})
    );
}

fn namespace_with_finalizers(finalizers: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "finalizers": finalizers},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

/// `metadata.finalizers` is a set: `$deleteFromPrimitiveList` removes entries,
/// new entries are added once.
#[test]
fn strategic_finalizers_delete_from_primitive_list() {
    let original = namespace_with_finalizers(json!(["a.example.com/x", "b.example.com/y", "c.example.com/z"]));
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b.example.com/y", "nope"]}});
    let got = apply("", "Namespace", &original, &patch).expect("apply");
    assert_eq!(got["metadata"]["finalizers"], json!(["a.example.com/x", "c.example.com/z"]));
    // spec.finalizers is atomic: a patch replaces it.
    let patch = json!({"spec": {"finalizers": []}});
    let got = apply("", "Namespace", &original, &patch).expect("apply");
    assert_eq!(got["spec"]["finalizers"], json!([]));

    // Plain `kubectl patch --type=strategic` adding one: union, no duplicates.
    let patch = json!({"metadata": {"finalizers": ["c.example.com/z", "d.example.com/w"]}});
    let got = apply("", "Namespace", &original, &patch).expect("apply");
    assert_eq!(
        got["metadata"]["finalizers"],
        json!(["a.example.com/x", "b.example.com/y", "c.example.com/z", "d.example.com/w"])
    );
}

/// What `kubectl apply` sends when the configured finalizers go from [a, b] to
/// [b, c] while a controller added x on the server.
#[test]
fn strategic_finalizers_apply_with_server_only_entry() {
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["b", "c"],
        "$deleteFromPrimitiveList/finalizers": ["a"],
        "finalizers": ["c"]
    }});
    let got = apply("", "Namespace", &namespace_with_finalizers(json!(["a", "b"])), &patch).expect("apply");
    assert_eq!(got["metadata"]["finalizers"], json!(["b", "c"]));
    let got = apply("", "Namespace", &namespace_with_finalizers(json!(["a", "x", "b"])), &patch).expect("apply");
    assert_eq!(got["metadata"]["finalizers"], json!(["x", "b", "c"]));
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": "nginx"}],
                    "volumes": [
                        {"name": "cfg", "configMap": {"name": "web-config", "defaultMode": 420}},
                        {"name": "tmp", "emptyDir": {}}
                    ]
                }
            }
        }
    })
}

/// `strategy` carries `retainKeys`: switching to Recreate drops the defaulted
/// rollingUpdate even when the patch does not null it.
#[test]
fn strategic_deployment_strategy_retain_keys() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}});
    let got = apply("apps", "Deployment", &deployment(), &patch).expect("apply");
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));

    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let got = apply("apps", "Deployment", &deployment(), &patch).expect("apply");
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));

    // A patch key missing from $retainKeys is rejected.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}});
    let err = apply("apps", "Deployment", &deployment(), &patch).expect_err("invalid");
    assert_eq!(err, PatchError::BadPatchFormatForRetainKeys);
    assert_eq!(err.to_string(), "invalid patch format of retainKeys");
}

/// Volumes merge by name and carry `retainKeys`: a volume's source changes
/// from configMap to secret.
#[test]
fn strategic_volume_source_change_with_retain_keys() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/volumes": [{"name": "cfg"}, {"name": "tmp"}],
        "volumes": [{"$retainKeys": ["name", "secret"], "name": "cfg", "secret": {"secretName": "web-secret"}, "configMap": null}]
    }}}});
    let got = apply("apps", "Deployment", &deployment(), &patch).expect("apply");
    assert_eq!(
        got["spec"]["template"]["spec"]["volumes"],
        json!([
            {"name": "cfg", "secret": {"secretName": "web-secret"}},
            {"name": "tmp", "emptyDir": {}}
        ])
    );
}

/// `$patch: replace` on a list and on a map, `$patch: delete` on a map.
#[test]
fn strategic_replace_and_delete_directives() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"},
        {"name": "only", "image": "busybox"}
    ]}}}});
    let got = apply("apps", "Deployment", &deployment(), &patch).expect("apply");
    assert_eq!(got["spec"]["template"]["spec"]["containers"], json!([{"name": "only", "image": "busybox"}]));

    let patch = json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "other"}}}});
    let got = apply("apps", "Deployment", &deployment(), &patch).expect("apply");
    assert_eq!(got["spec"]["selector"], json!({"matchLabels": {"app": "other"}}));

    let patch = json!({"spec": {"template": {"metadata": {"$patch": "delete"}}}});
    let got = apply("apps", "Deployment", &deployment(), &patch).expect("apply");
    assert_eq!(got["spec"]["template"]["metadata"], json!({}));

    // A directive-carrying value for a field the original lacks is dropped.
    let patch = json!({"spec": {"paused": {"$patch": "delete"}, "minReadySeconds": 5}});
    let got = apply("apps", "Deployment", &deployment(), &patch).expect("apply");
    assert!(got["spec"].get("paused").is_none());
    assert_eq!(got["spec"]["minReadySeconds"], json!(5));
}

/// ownerReferences merge by uid; Node conditions and addresses merge by type.
#[test]
fn strategic_owner_references_and_node_status() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}
        ]},
        "spec": {"containers": [{"name": "c", "image": "i"}]}
    });
    let patch = json!({"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u2"},
        {"uid": "u1", "blockOwnerDeletion": true}
    ]}});
    let got = apply("", "Pod", &pod, &patch).expect("apply");
    assert_eq!(
        got["metadata"]["ownerReferences"],
        json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u2"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true, "blockOwnerDeletion": true}
        ])
    );

    let node = json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "192.168.122.11"}, {"type": "Hostname", "address": "n1"}],
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady"}
            ]
        }
    });
    // The kubelet's status patch.
    let patch = json!({"status": {
        "$setElementOrder/conditions": [{"type": "MemoryPressure"}, {"type": "Ready"}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
    }});
    let got = apply("", "Node", &node, &patch).expect("apply");
    assert_eq!(
        got["status"]["conditions"],
        json!([
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
            {"type": "Ready", "status": "True", "reason": "KubeletReady"}
        ])
    );
    assert_eq!(got["status"]["addresses"], node["status"]["addresses"]);
}

/// Kinds without metadata (and atomic lists of known kinds) replace lists.
#[test]
fn strategic_unknown_kind_and_atomic_lists() {
    let original = json!({"spec": {"items": [{"name": "a"}], "m": {"x": 1, "y": 2}}});
    let patch = json!({"spec": {"items": [{"name": "b"}], "m": {"x": null, "z": 3}}});
    assert_eq!(
        apply("example.com", "Widget", &original, &patch).expect("apply"),
        json!({"spec": {"items": [{"name": "b"}], "m": {"y": 2, "z": 3}}})
    );

    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.5"]}, {"addresses": ["10.244.2.7"]}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    });
    let patch = json!({"endpoints": [{"addresses": ["10.244.3.9"]}]});
    let got = apply("discovery.k8s.io", "EndpointSlice", &slice, &patch).expect("apply");
    assert_eq!(got["endpoints"], json!([{"addresses": ["10.244.3.9"]}]));
    assert_eq!(got["ports"], slice["ports"]);

    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n1"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2024-01-01T00:00:00.000000Z"}});
    let patch = json!({"spec": {"renewTime": "2024-01-01T00:00:10.000000Z"}});
    let got = apply("coordination.k8s.io", "Lease", &lease, &patch).expect("apply");
    assert_eq!(got["spec"]["renewTime"], json!("2024-01-01T00:00:10.000000Z"));
    assert_eq!(got["spec"]["holderIdentity"], json!("n1"));

    // Pod tolerations have no strategy: replaced.
    let pod = json!({"spec": {"containers": [], "tolerations": [{"key": "a", "operator": "Exists"}]}});
    let patch = json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}});
    let got = apply("", "Pod", &pod, &patch).expect("apply");
    assert_eq!(got["spec"]["tolerations"], json!([{"key": "b", "operator": "Exists"}]));
}

#[test]
fn strategic_errors_like_upstream() {
    let svc = service();

    let patch = json!({"metadata": {"labels": {"$patch": "foo"}}});
    let err = apply("", "Service", &svc, &patch).expect_err("invalid");
    assert_eq!(err.to_string(), "unknown patch type: foo in map: map[$patch:foo]");

    let patch = json!({"spec": {"ports": [{"port": 80, "$patch": "bogus"}]}});
    let err = apply("", "Service", &svc, &patch).expect_err("invalid");
    assert_eq!(err.to_string(), "unknown patch type: bogus in map: map[$patch:bogus port:80]");

    let patch = json!({"spec": {"ports": [{"port": 80, "$patch": "merge"}]}});
    let err = apply("", "Service", &svc, &patch).expect_err("invalid");
    assert_eq!(err.to_string(), "merging lists cannot yet be specified in the patch");

    let patch = json!({"spec": {"ports": [{"name": "http"}]}});
    let err = apply("", "Service", &svc, &patch).expect_err("invalid");
    assert_eq!(err.to_string(), "map: map[name:http] does not contain declared merge key: port");

    let patch = json!({"spec": {"$setElementOrder/ports": {"port": 80}}});
    let err = apply("", "Service", &svc, &patch).expect_err("invalid");
    assert_eq!(err.to_string(), "expected a []interface {}, but received a map[string]interface {}");

    let patch = json!({"spec": {"$setElementOrderports": []}});
    let err = apply("", "Service", &svc, &patch).expect_err("invalid");
    assert_eq!(err, PatchError::BadPatchFormatForSetElementOrderList);

    let patch = json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["x"]}});
    let err = apply("", "Service", &svc, &patch).expect_err("invalid");
    assert_eq!(err, PatchError::BadPatchFormatForPrimitiveList);

    let mut no_ports = svc.clone();
    no_ports["spec"]["ports"] = json!([]);
    let patch = json!({"spec": {"ports": [[80]]}});
    let err = apply("", "Service", &no_ports, &patch).expect_err("invalid");
    assert_eq!(err, PatchError::NoListOfLists);

    let patch = json!({"spec": {"ports": [{"port": 80}, 443]}});
    let err = apply("", "Service", &svc, &patch).expect_err("invalid");
    assert!(err.to_string().starts_with("list element types are not identical"), "{err}");

    let patch = json!({"spec": {
        "$setElementOrder/ports": [{"port": 443}],
        "ports": [{"port": 80, "name": "x"}]
    }});
    let err = apply("", "Service", &svc, &patch).expect_err("invalid");
    assert!(err.to_string().contains("doesn't match $setElementOrder list"), "{err}");

    assert_eq!(apply("", "Service", &svc, &json!([1])).expect_err("invalid"), PatchError::BadJsonDoc);
    assert_eq!(apply("", "Service", &json!("x"), &json!({})).expect_err("invalid"), PatchError::BadJsonDoc);
    // A null patch changes nothing.
    assert_eq!(apply("", "Service", &svc, &Value::Null).expect("apply"), svc);
}

/// Types must match exactly for a merge: an int and a float are different Go
/// types, so a float patch value for an int field replaces it, and merge keys
/// of different number types do not match.
#[test]
fn strategic_number_types() {
    let original = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
    let patch = json!({"spec": {"ports": [{"port": 80.0, "name": "f"}]}});
    let got = apply("", "Service", &original, &patch).expect("apply");
    assert_eq!(got["spec"]["ports"].as_array().map(Vec::len), Some(2));
}

/// The capacity model of a JSON-decoded Go slice (append growth, size classes).
#[test]
fn strategic_go_decoded_capacity() {
    let caps: Vec<usize> = [0, 1, 2, 3, 4, 5, 9, 17, 256, 257].iter().map(|&n| super::go_decoded_cap(n)).collect();
    assert_eq!(caps, vec![0, 1, 2, 4, 4, 8, 16, 32, 256, 512]);
}
