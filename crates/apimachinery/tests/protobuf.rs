//! Kubernetes protobuf bodies -> JSON: real kubectl v1.33 request bodies, and bodies
//! built here with prost-reflect from a description of the protobuf message.

use std::collections::HashMap;
use std::path::Path;

use apimachinery::protobuf::{self, ProtobufError};
use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, Value as PValue};
use serde_json::{json, Value};

/// Builds a message from a JSON description of its *protobuf* fields (proto field
/// names; special messages such as IntOrString as their proto structure; `bytes` as
/// base64).
fn build(desc: &MessageDescriptor, spec: &Value) -> DynamicMessage {
    let mut msg = DynamicMessage::new(desc.clone());
    let Value::Object(fields) = spec else { panic!("message spec must be an object: {spec}") };
    for (name, value) in fields {
        let field = desc.get_field_by_name(name).unwrap_or_else(|| panic!("{} has no field {name}", desc.full_name()));
        let v = if field.is_map() {
            let Kind::Message(entry) = field.kind() else { unreachable!() };
            let value_kind = entry.map_entry_value_field().kind();
            let Value::Object(entries) = value else { panic!("map {name} must be an object") };
            let map: HashMap<MapKey, PValue> =
                entries.iter().map(|(k, v)| (MapKey::String(k.clone()), scalar_or_message(&value_kind, v))).collect();
            PValue::Map(map)
        } else if field.is_list() {
            let Value::Array(items) = value else { panic!("list {name} must be an array") };
            PValue::List(items.iter().map(|v| scalar_or_message(&field.kind(), v)).collect())
        } else {
            scalar_or_message(&field.kind(), value)
        };
        msg.set_field(&field, v);
    }
    msg
}

fn scalar_or_message(kind: &Kind, v: &Value) -> PValue {
    match kind {
        Kind::Message(m) => PValue::Message(build(m, v)),
        Kind::String => PValue::String(v.as_str().expect("string").to_owned()),
        Kind::Bool => PValue::Bool(v.as_bool().expect("bool")),
        Kind::Int32 => PValue::I32(v.as_i64().expect("int32") as i32),
        Kind::Int64 => PValue::I64(v.as_i64().expect("int64")),
        Kind::Double => PValue::F64(v.as_f64().expect("double")),
        Kind::Bytes => PValue::Bytes(
            base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("base64")).expect("base64").into(),
        ),
        other => panic!("unsupported kind {other:?}"),
    }
}

/// The `k8s\0` + runtime.Unknown body kubectl would send for this message.
fn body(api_version: &str, kind: &str, spec: Value) -> Vec<u8> {
    let desc = protobuf::message_descriptor(api_version, kind).expect("known type");
    protobuf::encode_envelope(api_version, kind, build(&desc, &spec).encode_to_vec())
}

fn decode(b: &[u8]) -> Value {
    protobuf::decode(b).unwrap_or_else(|e| panic!("decode failed: {e}"))
}

mod protobuf_kubectl {
    use super::*;

    /// Every request body captured from `kubectl v1.33 create ...` (see the fixture
    /// names) decodes to exactly the JSON `kubectl create ... --dry-run=client -o json`
    /// prints for the same object.
    #[test]
    fn captured_kubectl_create_bodies_match_kubectl_json() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut checked = Vec::new();
        let mut entries: Vec<_> =
            std::fs::read_dir(&dir).expect("fixtures").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        for pb in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "pb")) {
            let raw = std::fs::read(pb).expect("read body");
            assert!(raw.starts_with(protobuf::MAGIC), "{} is not a protobuf body", pb.display());
            let expected: Value =
                serde_json::from_slice(&std::fs::read(pb.with_extension("json")).expect("read json")).expect("json");
            let got = protobuf::decode(&raw).unwrap_or_else(|e| panic!("{}: {e}", pb.display()));
            assert_eq!(got, expected, "{}", pb.display());
            checked.push(pb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        }
        assert!(checked.len() >= 12, "only {checked:?}");
    }

    #[test]
    fn captured_deployment_keeps_explicit_zero_replicas() {
        let raw =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubectl-create-deployment.pb"))
                .expect("fixture");
        let got = decode(&raw);
        assert_eq!(got["spec"]["replicas"], json!(0));
        assert_eq!(got["metadata"]["creationTimestamp"], Value::Null);
        assert!(got["metadata"].get("generateName").is_none(), "{got}");
        assert_eq!(got["spec"]["template"]["spec"]["containers"][0]["resources"], json!({}));
    }
}

mod protobuf_built {
    use super::*;

    fn meta(name: &str) -> Value {
        // gogo-protobuf writes every non-pointer field, zero or not, as kubectl does.
        json!({"name": name, "generateName": "", "namespace": "", "selfLink": "", "uid": "", "resourceVersion": "",
               "generation": 0, "creationTimestamp": {}})
    }

    #[test]
    fn configmap() {
        let got = decode(&body(
            "v1",
            "ConfigMap",
            json!({"metadata": meta("cm"), "data": {"a": "1", "empty": ""}, "binaryData": {"bin": "AAH/"}}),
        ));
        assert_eq!(
            got,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm", "creationTimestamp": null},
                   "data": {"a": "1", "empty": ""}, "binaryData": {"bin": "AAH/"}})
        );
    }

    #[test]
    fn secret_bytes_are_base64() {
        let got = decode(&body(
            "v1",
            "Secret",
            json!({"metadata": meta("s"), "type": "Opaque", "immutable": false,
                   "data": {"password": base64::engine::general_purpose::STANDARD.encode(b"p\x00\xffw"), "empty": ""}}),
        ));
        assert_eq!(
            got,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "creationTimestamp": null},
                   "type": "Opaque", "immutable": false, "data": {"password": "cAD/dw==", "empty": ""}})
        );
    }

    #[test]
    fn nodeport_service_with_int_and_string_target_ports() {
        let port = |name: &str, port: i64, target: Value, node_port: i64| json!({"name": name, "protocol": "TCP", "port": port, "targetPort": target, "nodePort": node_port});
        let ports = vec![
            port("http", 80, json!({"type": 0, "intVal": 8080, "strVal": ""}), 31111),
            port("metrics", 9090, json!({"type": 1, "intVal": 0, "strVal": "metrics"}), 0),
        ];
        let got = decode(&body(
            "v1",
            "Service",
            json!({"metadata": meta("np"),
                   "spec": {"ports": ports, "selector": {"app": "np"}, "clusterIP": "", "type": "NodePort",
                            "sessionAffinity": "", "loadBalancerIP": "", "externalName": "", "externalTrafficPolicy": "",
                            "healthCheckNodePort": 0, "publishNotReadyAddresses": false},
                   "status": {"loadBalancer": {}}}),
        ));
        assert_eq!(
            got,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np", "creationTimestamp": null},
                   "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 31111},
                                      {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics"}],
                            "selector": {"app": "np"}, "type": "NodePort"},
                   "status": {"loadBalancer": {}}})
        );
    }

    #[test]
    fn deployment_with_pod_template_ports_and_resources() {
        let container = json!({
            "name": "web", "image": "nginx:1.27", "workingDir": "", "terminationMessagePath": "", "imagePullPolicy": "",
            "stdin": false, "stdinOnce": false, "tty": false,
            "ports": [{"name": "http", "hostPort": 0, "containerPort": 8080, "protocol": "TCP", "hostIP": ""}],
            "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY", "value": ""}],
            "resources": {"limits": {"cpu": {"string": "500m"}, "memory": {"string": "128Mi"}},
                          "requests": {"cpu": {"string": "250m"}}},
            "readinessProbe": {"handler": {"httpGet": {"path": "/healthz", "port": {"type": 1, "strVal": "http"}, "host": "",
                                                      "scheme": "HTTP"}},
                               "initialDelaySeconds": 0, "timeoutSeconds": 1, "periodSeconds": 10,
                               "successThreshold": 0, "failureThreshold": 0},
            "securityContext": {"runAsUser": 0, "runAsNonRoot": false},
            "volumeMounts": [{"name": "data", "readOnly": false, "mountPath": "/data", "subPath": ""}]
        });
        let got = decode(&body(
            "apps/v1",
            "Deployment",
            json!({
                "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}, "generation": 0,
                             "creationTimestamp": {"seconds": 1_795_216_733i64, "nanos": 0},
                             "annotations": {"note": "x"}},
                "spec": {
                    "replicas": 0, "minReadySeconds": 0, "paused": false, "revisionHistoryLimit": 10,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}, "creationTimestamp": {}},
                        "spec": {"containers": [container], "restartPolicy": "Always", "hostNetwork": false,
                                 "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": false,
                                 "volumes": [{"name": "data", "volumeSource": {"emptyDir": {"medium": "",
                                     "sizeLimit": {"string": "1Gi"}}}}]}
                    },
                    "strategy": {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxUnavailable": {"type": 1, "strVal": "25%"},
                                                   "maxSurge": {"type": 0, "intVal": 1}}}
                },
                "status": {}
            }),
        ));
        assert_eq!(
            got,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"},
                             "creationTimestamp": "2026-11-20T23:18:53Z", "annotations": {"note": "x"}},
                "spec": {
                    "replicas": 0, "revisionHistoryLimit": 10,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                        "spec": {
                            "containers": [{
                                "name": "web", "image": "nginx:1.27",
                                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                                "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY"}],
                                "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}},
                                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                                   "timeoutSeconds": 1, "periodSeconds": 10},
                                "securityContext": {"runAsUser": 0, "runAsNonRoot": false},
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                            }],
                            "restartPolicy": "Always", "terminationGracePeriodSeconds": 0,
                            "automountServiceAccountToken": false,
                            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}]
                        }
                    },
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}}
                },
                "status": {}
            })
        );
    }

    #[test]
    fn delete_options_keep_zero_grace_period() {
        for api_version in ["v1", "meta.k8s.io/v1", "apps/v1"] {
            let got = decode(&body(
                api_version,
                "DeleteOptions",
                json!({"gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "orphanDependents": false,
                       "preconditions": {"uid": "0a9c", "resourceVersion": ""}, "dryRun": ["All"]}),
            ));
            assert_eq!(
                got,
                json!({"apiVersion": api_version, "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                       "propagationPolicy": "Foreground", "orphanDependents": false,
                       "preconditions": {"uid": "0a9c", "resourceVersion": ""}, "dryRun": ["All"]}),
                "{api_version}"
            );
        }
    }

    #[test]
    fn lease_micro_time_and_endpointslice() {
        let got = decode(&body(
            "coordination.k8s.io/v1",
            "Lease",
            json!({"metadata": {"name": "node-a"},
                   "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40, "leaseTransitions": 0,
                            "renewTime": {"seconds": 1_795_216_733i64, "nanos": 123_456_789}}}),
        ));
        assert_eq!(
            got,
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-a"},
                   "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40, "leaseTransitions": 0,
                            "renewTime": "2026-11-20T23:18:53.123456Z"}})
        );
        let got = decode(&body(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
                   "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": false}}],
                   "ports": [{"name": "", "port": 8080}]}),
        ));
        assert_eq!(
            got,
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-abc"},
                   "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": false}}],
                   "ports": [{"name": "", "port": 8080}]})
        );
    }

    #[test]
    fn scale_and_namespace() {
        let got = decode(&body(
            "autoscaling/v1",
            "Scale",
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 0}, "status": {"replicas": 0, "selector": ""}}),
        ));
        assert_eq!(
            got,
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"},
                   "spec": {}, "status": {"replicas": 0}})
        );
        let got =
            decode(&body("v1", "Namespace", json!({"metadata": meta("team"), "spec": {}, "status": {"phase": ""}})));
        assert_eq!(
            got,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "creationTimestamp": null},
                   "spec": {}, "status": {}})
        );
    }

    /// `kubectl create job hello --image=busybox -- echo hi` (batch/v1, as its typed client sends it).
    #[test]
    fn create_job() {
        let got = decode(&body(
            "batch/v1",
            "Job",
            json!({"metadata": meta("hello"),
                   "spec": {"template": {"metadata": {"creationTimestamp": {}},
                            "spec": {"containers": [{"name": "hello", "image": "busybox", "command": ["echo", "hi"],
                                                     "stdin": false, "tty": false}],
                                     "restartPolicy": "Never"}}},
                   "status": {"active": 0, "succeeded": 0, "failed": 0}}),
        ));
        assert_eq!(
            got,
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hello", "creationTimestamp": null},
                   "spec": {"template": {"metadata": {"creationTimestamp": null},
                            "spec": {"containers": [{"name": "hello", "image": "busybox", "command": ["echo", "hi"]}],
                                     "restartPolicy": "Never"}}},
                   "status": {}})
        );
    }

    #[test]
    fn managed_fields_raw_json() {
        let got = decode(&body(
            "v1",
            "ConfigMap",
            json!({"metadata": {"name": "cm", "managedFields": [{
                "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                "time": {"seconds": 0},
                "fieldsV1": {"raw": base64::engine::general_purpose::STANDARD.encode(br#"{"f:data":{"f:a":{}}}"#)}}]}}),
        ));
        assert_eq!(
            got["metadata"]["managedFields"],
            json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                    "time": "1970-01-01T00:00:00Z", "fieldsV1": {"f:data": {"f:a": {}}}}])
        );
    }
}

mod protobuf_errors {
    use super::*;

    #[test]
    fn bad_magic() {
        let err = protobuf::decode(br#"{"kind":"ConfigMap"}"#).unwrap_err();
        assert!(matches!(err, ProtobufError::BadMagic), "{err}");
        assert!(err.to_string().contains("magic"), "{err}");
    }

    #[test]
    fn unknown_types() {
        for (api_version, kind) in [("example.com/v1", "Widget"), ("apps.example.com/v1", "Deployment"), ("v1", "Nope")]
        {
            let raw = protobuf::encode_envelope(api_version, kind, Vec::new());
            let err = protobuf::decode(&raw).unwrap_err();
            assert!(matches!(err, ProtobufError::UnknownType { .. }), "{api_version} {kind}: {err}");
            assert!(err.to_string().contains(kind), "{err}");
        }
    }

    #[test]
    fn truncated_object_is_a_decode_error_naming_the_type() {
        let mut raw = body("v1", "ConfigMap", json!({"metadata": {"name": "cm"}, "data": {"a": "b"}}));
        // Cut into `raw` (the envelope ends with two empty string fields of 2 bytes each):
        // its length no longer fits, an envelope error.
        raw.truncate(raw.len() - 6);
        assert!(matches!(protobuf::decode(&raw), Err(ProtobufError::Envelope(_))));
        let desc = protobuf::message_descriptor("v1", "ConfigMap").expect("desc");
        let mut object = build(&desc, &json!({"metadata": {"name": "cm"}})).encode_to_vec();
        object.truncate(object.len() - 1);
        let err = protobuf::decode(&protobuf::encode_envelope("v1", "ConfigMap", object)).unwrap_err();
        assert!(matches!(err, ProtobufError::Decode { .. }), "{err}");
        assert!(err.to_string().contains("k8s.io.api.core.v1.ConfigMap"), "{err}");
    }

    #[test]
    fn missing_type_meta_and_bad_int_or_string() {
        let mut raw = protobuf::MAGIC.to_vec();
        raw.extend([0x12, 0x00]); // only an empty raw field
        assert!(matches!(protobuf::decode(&raw), Err(ProtobufError::MissingTypeMeta("apiVersion"))));
        let err = protobuf::decode(&body(
            "v1",
            "Service",
            json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": {"type": 7}}]}}),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("spec.ports[0].targetPort"), "{err}");
    }
}
