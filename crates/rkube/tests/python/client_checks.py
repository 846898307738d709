"""The official Kubernetes Python client (PyPI `kubernetes`) against rkube.

Run by crates/rkube/tests/python_client.rs as `python client_checks.py KUBECONFIG`.
For each kind (core, apps, batch, a CRD's custom objects and their scale): create (bodies without kind/apiVersion, as the typed models send
them unless set), read, patch (strategic merge), list, watch, delete; plus the
dynamic client's discovery and server-side apply; port-forward to a pod. Prints one line per check and
exits non-zero at the first failure.
"""

import sys
import threading
import time

from kubernetes import client, config, dynamic, watch
from kubernetes.stream import portforward
from kubernetes.client.rest import ApiException

NS = "default"


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok {name}", flush=True)


def watch_sees(list_fn, name, action, **kw):
    """Start a watch, run `action`, and return the event types seen for `name`."""
    seen = []
    started = threading.Event()

    def run():
        w = watch.Watch()
        started.set()
        for ev in w.stream(list_fn, NS, timeout_seconds=8, **kw):
            obj = ev["object"]
            # Typed list functions give models; custom objects stay dicts.
            got = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
            if got == name:
                seen.append(ev["type"])
                if ev["type"] == "DELETED":
                    w.stop()

    t = threading.Thread(target=run)
    t.start()
    started.wait()
    time.sleep(0.5)
    action()
    t.join(timeout=15)
    return seen


def configmaps(core):
    body = {"metadata": {"name": "py-cm"}, "data": {"a": "1"}}
    cm = core.create_namespaced_config_map(NS, body)
    check("configmap create without kind", cm.metadata.name == "py-cm" and cm.data == {"a": "1"})
    check("configmap read", core.read_namespaced_config_map("py-cm", NS).data["a"] == "1")
    cm = core.patch_namespaced_config_map("py-cm", NS, {"data": {"b": "2"}})
    check("configmap patch", cm.data == {"a": "1", "b": "2"}, cm.data)
    names = [c.metadata.name for c in core.list_namespaced_config_map(NS).items]
    check("configmap list", "py-cm" in names, names)
    seen = watch_sees(
        core.list_namespaced_config_map,
        "py-cm",
        lambda: core.delete_namespaced_config_map("py-cm", NS),
    )
    check("configmap watch sees the delete", "DELETED" in seen, seen)
    try:
        core.read_namespaced_config_map("py-cm", NS)
        check("configmap gone", False, "still there")
    except ApiException as e:
        check("configmap gone (404)", e.status == 404, e.status)


def services(core):
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name="py-svc"),
        spec=client.V1ServiceSpec(selector={"app": "py"}, ports=[client.V1ServicePort(port=80, target_port=8080)]),
    )
    svc = core.create_namespaced_service(NS, body)
    check("service create from typed model (no kind)", svc.spec.cluster_ip not in (None, "", "None"), svc.spec.cluster_ip)
    svc = core.patch_namespaced_service("py-svc", NS, {"metadata": {"labels": {"tier": "web"}}})
    check("service patch", svc.metadata.labels == {"tier": "web"}, svc.metadata.labels)
    core.delete_namespaced_service("py-svc", NS)
    check("service delete", True)


def pods(core):
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="registry.k8s.io/pause:3.10")]),
    )
    seen = watch_sees(core.list_namespaced_pod, "py-pod", lambda: core.create_namespaced_pod(NS, body))
    check("pod create + watch ADDED", "ADDED" in seen, seen)
    pod = core.read_namespaced_pod("py-pod", NS)
    check("pod read", pod.spec.containers[0].image == "registry.k8s.io/pause:3.10")
    core.delete_namespaced_pod("py-pod", NS, grace_period_seconds=0)
    check("pod delete", True)


def port_forward(core):
    """`kubernetes.stream.portforward` (WebSocket, v4.channel.k8s.io) to a pod."""
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py-pf"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="web",
                    image="registry.k8s.io/e2e-test-images/agnhost:2.52",
                    args=["netexec", "--http-port=8080"],
                )
            ]
        ),
    )
    core.create_namespaced_pod(NS, body)
    deadline = time.time() + 60
    ready = False
    while time.time() < deadline and not ready:
        pod = core.read_namespaced_pod("py-pf", NS)
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        if not ready:
            time.sleep(0.5)
    check("port-forward pod ready", ready, pod.status)
    pf = portforward(core.connect_get_namespaced_pod_portforward, "py-pf", NS, ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET /hostname HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    reply = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    sock.close()
    check("port-forward GET /hostname", reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"py-pf"), reply)
    check("port-forward no error", pf.error(8080) is None, pf.error(8080))
    pf.close()
    core.delete_namespaced_pod("py-pf", NS, grace_period_seconds=0)


def deployments(apps):
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-dep"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "py-dep"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-dep"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="registry.k8s.io/pause:3.10")]),
            ),
        ),
    )
    d = apps.create_namespaced_deployment(NS, body)
    check("deployment create", d.spec.strategy.type == "RollingUpdate", d.spec.strategy)
    d = apps.patch_namespaced_deployment("py-dep", NS, {"spec": {"replicas": 2}})
    check("deployment patch", d.spec.replicas == 2)
    s = apps.read_namespaced_deployment_scale("py-dep", NS)
    check("deployment scale read", s.spec.replicas == 2, s.spec)
    s = apps.patch_namespaced_deployment_scale("py-dep", NS, {"spec": {"replicas": 0}})
    check("deployment scale patch", s.spec.replicas == 0, s.spec)
    apps.delete_namespaced_deployment("py-dep", NS)
    check("deployment delete", True)


def daemonsets(apps):
    body = {
        "metadata": {"name": "py-ds"},
        "spec": {
            "selector": {"matchLabels": {"app": "py-ds"}},
            "template": {
                "metadata": {"labels": {"app": "py-ds"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    ds = apps.create_namespaced_daemon_set(NS, body)
    check("daemonset create", ds.spec.update_strategy.type == "RollingUpdate", ds.spec.update_strategy)
    ds = apps.patch_namespaced_daemon_set("py-ds", NS, {"metadata": {"annotations": {"x": "y"}}})
    check("daemonset patch", ds.metadata.annotations.get("x") == "y")
    apps.delete_namespaced_daemon_set("py-ds", NS)
    check("daemonset delete", True)


def jobs(batch):
    body = client.V1Job(
        metadata=client.V1ObjectMeta(name="py-job"),
        spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="c", image="busybox", command=["sh", "-c", "true"])],
                )
            )
        ),
    )
    j = batch.create_namespaced_job(NS, body)
    check("job create", j.spec.backoff_limit == 6, j.spec.backoff_limit)
    names = [x.metadata.name for x in batch.list_namespaced_job(NS).items]
    check("job list", "py-job" in names, names)
    batch.delete_namespaced_job("py-job", NS, propagation_policy="Background")
    check("job delete", True)


def statefulsets(apps):
    body = {
        "metadata": {"name": "py-sts"},
        "spec": {
            "serviceName": "py-sts",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "py-sts"}},
            "template": {
                "metadata": {"labels": {"app": "py-sts"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    seen = watch_sees(apps.list_namespaced_stateful_set, "py-sts", lambda: apps.create_namespaced_stateful_set(NS, body))
    check("statefulset create + watch ADDED", "ADDED" in seen, seen)
    sts = apps.read_namespaced_stateful_set("py-sts", NS)
    check("statefulset defaults", sts.spec.pod_management_policy == "OrderedReady", sts.spec.pod_management_policy)
    s = apps.patch_namespaced_stateful_set_scale("py-sts", NS, {"spec": {"replicas": 2}})
    check("statefulset scale patch", s.spec.replicas == 2, s.spec)
    check("statefulset scale selector", s.status.selector == "app=py-sts", s.status)
    sts = apps.patch_namespaced_stateful_set("py-sts", NS, {"spec": {"replicas": 0}})
    check("statefulset patch", sts.spec.replicas == 0)
    apps.delete_namespaced_stateful_set("py-sts", NS)
    check("statefulset delete", True)


def cronjobs(batch):
    body = client.V1CronJob(
        metadata=client.V1ObjectMeta(name="py-cj"),
        spec=client.V1CronJobSpec(
            schedule="*/5 * * * *",
            job_template=client.V1JobTemplateSpec(
                spec=client.V1JobSpec(
                    template=client.V1PodTemplateSpec(
                        spec=client.V1PodSpec(
                            restart_policy="Never",
                            containers=[client.V1Container(name="c", image="busybox", command=["true"])],
                        )
                    )
                )
            ),
        ),
    )
    cj = batch.create_namespaced_cron_job(NS, body)
    check("cronjob create", cj.spec.concurrency_policy == "Allow", cj.spec.concurrency_policy)
    cj = batch.patch_namespaced_cron_job("py-cj", NS, {"spec": {"suspend": True}})
    check("cronjob patch", cj.spec.suspend is True)
    try:
        batch.patch_namespaced_cron_job("py-cj", NS, {"spec": {"schedule": "not a schedule"}})
        check("cronjob bad schedule refused", False, "accepted")
    except ApiException as e:
        check("cronjob bad schedule refused", e.status == 422 and "spec.schedule" in e.body, e.body)
    batch.delete_namespaced_cron_job("py-cj", NS)
    check("cronjob delete", True)


WIDGETS = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "pywidgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "pywidgets", "singular": "pywidget", "kind": "PyWidget", "shortNames": ["pyw"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.size",
                        "statusReplicasPath": ".status.ready",
                        "labelSelectorPath": ".status.selector",
                    },
                },
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "minimum": 0},
                                    "color": {"type": "string", "default": "blue"},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"ready": {"type": "integer"}, "selector": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def custom_objects(api_client):
    ext = client.ApiextensionsV1Api(api_client)
    co = client.CustomObjectsApi(api_client)
    ext.create_custom_resource_definition(WIDGETS)
    deadline = time.time() + 10
    while time.time() < deadline:
        crd = ext.read_custom_resource_definition("pywidgets.example.com")
        if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])):
            break
        time.sleep(0.2)
    check("crd established", crd.status.accepted_names.kind == "PyWidget", crd.status)
    args = ("example.com", "v1", NS, "pywidgets")
    body = {"apiVersion": "example.com/v1", "kind": "PyWidget", "metadata": {"name": "w1"}, "spec": {"size": 1}}
    seen = watch_sees(
        lambda ns, **kw: co.list_namespaced_custom_object("example.com", "v1", ns, "pywidgets", **kw),
        "w1",
        lambda: co.create_namespaced_custom_object(*args, body),
    )
    check("custom object create + watch ADDED", "ADDED" in seen, seen)
    w = co.get_namespaced_custom_object(*args, "w1")
    check("custom object defaulted", w["spec"]["color"] == "blue", w)
    w = co.patch_namespaced_custom_object(*args, "w1", {"spec": {"color": "red"}})
    check("custom object merge patch", w["spec"]["color"] == "red", w)
    w = co.patch_namespaced_custom_object_status(*args, "w1", {"status": {"ready": 1, "selector": "app=w1"}})
    check("custom object status patch", w["status"]["ready"] == 1, w)
    s = co.get_namespaced_custom_object_scale(*args, "w1")
    check("custom scale read", s["spec"]["replicas"] == 1 and s["status"] == {"replicas": 1, "selector": "app=w1"}, s)
    s = co.patch_namespaced_custom_object_scale(*args, "w1", {"spec": {"replicas": 4}})
    check("custom scale patch", s["spec"]["replicas"] == 4, s)
    w = co.get_namespaced_custom_object(*args, "w1")
    check("custom scale wrote spec.size", w["spec"]["size"] == 4, w)
    try:
        co.patch_namespaced_custom_object(*args, "w1", {"spec": {"size": -1}})
        check("custom object validation", False, "accepted")
    except ApiException as e:
        check("custom object validation", e.status == 422 and "should be greater than or equal to 0" in e.body, e.body)
    items = co.list_namespaced_custom_object(*args)["items"]
    check("custom object list", [i["metadata"]["name"] for i in items] == ["w1"], items)
    co.delete_namespaced_custom_object(*args, "w1")
    check("custom object delete", True)
    ext.delete_custom_resource_definition("pywidgets.example.com")
    check("crd delete", True)


def dynamic_apply(api_client):
    dyn = dynamic.DynamicClient(api_client)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "py-ssa", "namespace": NS}, "data": {"k": "v"}}
    obj = cms.server_side_apply(body=manifest, field_manager="python", namespace=NS)
    check("dynamic server-side apply creates", obj.data.k == "v")
    managers = [e.manager for e in obj.metadata.managedFields]
    check("managedFields name the applier", "python" in managers, managers)
    manifest["data"] = {"k": "w"}
    obj = cms.server_side_apply(body=manifest, field_manager="python", namespace=NS)
    check("dynamic server-side apply updates", obj.data.k == "w")
    cms.delete(name="py-ssa", namespace=NS)
    check("dynamic delete", True)

    # Server-side apply to the scale subresource (what an autoscaler built on
    # client-go's ApplyScale does): a Scale configuration, conflicts with the
    # replicas field's owner, the applier recorded on the Deployment.
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    dep = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "py-scaled"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "py-scaled"}},
                 "template": {"metadata": {"labels": {"app": "py-scaled"}},
                              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}},
    }
    deps.server_side_apply(body=dep, field_manager="python", namespace=NS)
    scale = deps.subresources["scale"]
    got = scale.get(name="py-scaled", namespace=NS)
    owners = [(e.manager, e.apiVersion) for e in (got.metadata.managedFields or [])]
    check("scale managedFields show the replicas owner", ("python", "autoscaling/v1") in owners, owners)
    config = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "py-scaled"}, "spec": {"replicas": 3}}
    try:
        dyn.server_side_apply(scale, body=config, name="py-scaled", namespace=NS, field_manager="py-hpa")
        check("scale apply conflicts with the replicas owner", False, "no conflict")
    except Exception as e:  # the dynamic client's ConflictError
        body = e.body.decode() if isinstance(getattr(e, "body", None), bytes) else str(getattr(e, "body", e))
        check("scale apply conflicts with the replicas owner",
              getattr(e, "status", None) == 409 and 'conflict with \\"python\\"' in body, body)
    got = dyn.server_side_apply(scale, body=config, name="py-scaled", namespace=NS, field_manager="py-hpa",
                                force_conflicts=True)
    check("scale apply with force", got.spec.replicas == 3, got.spec)
    d = deps.get(name="py-scaled", namespace=NS)
    entries = {e.manager: e for e in d.metadata.managedFields}
    hpa = entries.get("py-hpa")
    check("the Scale's applier owns the Deployment's replicas",
          hpa is not None and hpa.subresource == "scale" and hpa.apiVersion == "apps/v1"
          and hpa.fieldsV1.to_dict() == {"f:spec": {"f:replicas": {}}}, hpa)
    check("the previous owner lost replicas", "f:replicas" not in entries["python"].fieldsV1.to_dict().get("f:spec", {}),
          entries["python"].fieldsV1)
    deps.delete(name="py-scaled", namespace=NS)


def main():
    config.load_kube_config(config_file=sys.argv[1])
    api_client = client.ApiClient()
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    batch = client.BatchV1Api(api_client)
    versions = client.VersionApi(api_client).get_code()
    check("version", versions.git_version.startswith("v1."), versions.git_version)
    configmaps(core)
    services(core)
    pods(core)
    port_forward(core)
    deployments(apps)
    daemonsets(apps)
    jobs(batch)
    statefulsets(apps)
    cronjobs(batch)
    custom_objects(api_client)
    dynamic_apply(api_client)
    print("all python client checks passed", flush=True)


if __name__ == "__main__":
    main()
