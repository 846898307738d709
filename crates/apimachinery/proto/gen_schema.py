#!/usr/bin/env python3
"""Regenerate the compact Kubernetes protobuf schema in this folder (see README.md).

Sources, all local:
- wire facts (messages, field numbers, scalar types, labels, maps): the Rust sources of
  the crates.io package `k8s-pb` (prost output of the Kubernetes generated.proto files);
- JSON field names and required (non-`omitempty`) fields: `k8s-openapi` (feature v1_33);
- which zero-valued scalars Go's encoding/json still writes (pointer fields): kubectl
  v1.33 itself. `kubectl set image --local` / `set selector --local` decode a file into
  the typed Go object and print it back as JSON; feeding them objects whose every scalar
  is its zero value shows which zeros survive. The same run with non-zero values checks
  that every JSON name of those objects is known to Go. Messages that kubectl cannot
  round-trip locally take their pointer fields from MANUAL_KEEP_ZERO.

Usage: python3 gen_schema.py [--kubectl PATH] [--registry CARGO_REGISTRY_SRC_DIR]
The crates must be in the cargo registry cache (`cargo info k8s-pb@0.9.0` fetches it;
k8s-openapi is a workspace dependency). Writes k8s.io/<path>/generated.proto next to
this script and prints what it could not verify.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

K8S_PB = "k8s-pb-0.9.0"
K8S_OPENAPI = "k8s-openapi-0.29.0"
OPENAPI_FEATURE = "v1_33"
DEFAULT_KUBECTL = "/root/.cache/rkube/kubectl-v1.33/kubectl"

# Packages to emit, as k8s-pb module paths; their imports are added transitively.
ROOTS = [
    "api::core::v1",
    "api::apps::v1",
    "api::discovery::v1",
    "api::coordination::v1",
    "api::autoscaling::v1",
    "api::batch::v1",
    "api::certificates::v1",
    "api::authentication::v1",
    "api::authorization::v1",
    "api::rbac::v1",
    "apimachinery::pkg::apis::meta::v1",
    "apimachinery::pkg::runtime",
]

# JSON names that neither k8s-openapi nor lowerCamelCase of the prost name gives.
OVERRIDES = {"insecureskiptlsverifybackend": "insecureSkipTLSVerifyBackend"}

# Objects kubectl round-trips through its typed Go structs with --local, and how.
ORACLE = [
    ("v1", "Pod", ["set", "image", "*=img"]),
    ("v1", "ReplicationController", ["set", "image", "*=img"]),
    ("apps/v1", "Deployment", ["set", "image", "*=img"]),
    ("apps/v1", "ReplicaSet", ["set", "image", "*=img"]),
    ("apps/v1", "StatefulSet", ["set", "image", "*=img"]),
    ("apps/v1", "DaemonSet", ["set", "image", "*=img"]),
    ("batch/v1", "CronJob", ["set", "image", "*=img"]),
    ("v1", "Service", ["set", "selector", "oracle=x"]),
]

# Go pointer scalars (and non-omitempty scalars k8s-openapi does not mark required) of
# messages the oracle cannot reach, from the Go types of k8s.io/api v1.33.
MANUAL_KEEP_ZERO = {
    "k8s.io.api.core.v1.ConfigMap": ["immutable"],
    "k8s.io.api.core.v1.Secret": ["immutable"],
    "k8s.io.api.core.v1.ServiceAccount": ["automountServiceAccountToken"],
    "k8s.io.api.core.v1.ReplicationControllerSpec": ["replicas"],
    "k8s.io.api.core.v1.ReplicationControllerStatus": ["replicas"],
    "k8s.io.api.core.v1.EndpointAddress": ["nodeName"],
    "k8s.io.api.core.v1.EndpointPort": ["port", "appProtocol"],
    "k8s.io.api.core.v1.PersistentVolumeClaimSpec": ["storageClassName", "volumeMode", "volumeAttributesClassName"],
    "k8s.io.api.core.v1.TypedLocalObjectReference": ["apiGroup"],
    "k8s.io.api.core.v1.TypedObjectReference": ["apiGroup", "namespace"],
    "k8s.io.api.core.v1.PersistentVolumeClaimStatus": ["currentVolumeAttributesClassName"],
    "k8s.io.api.core.v1.PersistentVolumeSpec": ["volumeMode", "volumeAttributesClassName"],
    "k8s.io.api.core.v1.PersistentVolumeStatus": ["lastPhaseTransitionTime"],
    "k8s.io.api.core.v1.LoadBalancerIngress": ["ipMode"],
    "k8s.io.api.core.v1.PortStatus": ["port", "protocol", "error"],
    "k8s.io.api.core.v1.Taint": ["key", "effect"],
    "k8s.io.api.core.v1.ContainerStatus": ["ready", "restartCount", "started", "image", "imageID", "name", "stopSignal"],
    "k8s.io.api.core.v1.Event": ["count"],
    "k8s.io.api.core.v1.EventSeries": ["count"],
    "k8s.io.api.apps.v1.ReplicaSetStatus": ["replicas", "terminatingReplicas"],
    "k8s.io.api.apps.v1.DeploymentStatus": ["terminatingReplicas", "collisionCount"],
    "k8s.io.api.apps.v1.StatefulSetStatus": ["replicas", "collisionCount"],
    "k8s.io.api.apps.v1.DaemonSetStatus": [
        "currentNumberScheduled",
        "numberMisscheduled",
        "desiredNumberScheduled",
        "numberReady",
        "collisionCount",
    ],
    "k8s.io.api.apps.v1.ControllerRevision": ["revision"],
    "k8s.io.api.batch.v1.JobStatus": ["terminating", "ready", "failedIndexes"],
    "k8s.io.api.autoscaling.v1.ScaleStatus": ["replicas"],
    "k8s.io.api.autoscaling.v1.HorizontalPodAutoscalerSpec": ["minReplicas", "maxReplicas", "targetCPUUtilizationPercentage"],
    "k8s.io.api.autoscaling.v1.HorizontalPodAutoscalerStatus": [
        "observedGeneration",
        "currentReplicas",
        "desiredReplicas",
        "currentCPUUtilizationPercentage",
    ],
    "k8s.io.api.discovery.v1.Endpoint": ["hostname", "nodeName", "zone"],
    "k8s.io.api.discovery.v1.EndpointConditions": ["ready", "serving", "terminating"],
    "k8s.io.api.discovery.v1.EndpointPort": ["name", "protocol", "port", "appProtocol"],
    "k8s.io.api.coordination.v1.LeaseSpec": [
        "holderIdentity",
        "leaseDurationSeconds",
        "leaseTransitions",
        "strategy",
        "preferredHolder",
    ],
    "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions": [
        "gracePeriodSeconds",
        "orphanDependents",
        "propagationPolicy",
        "ignoreStoreReadErrorWithClusterBreakingPotential",
    ],
    "k8s.io.apimachinery.pkg.apis.meta.v1.Preconditions": ["uid", "resourceVersion"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.ListMeta": ["remainingItemCount"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.OwnerReference": ["controller", "blockOwnerDeletion"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta": ["deletionGracePeriodSeconds"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.PatchOptions": ["force"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.ApplyOptions": ["force"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.ListOptions": ["timeoutSeconds", "limit", "sendInitialEvents"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.StatusDetails": ["retryAfterSeconds"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.Status": ["code"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.Condition": ["type", "status", "reason", "message"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.GroupKind": ["group", "kind"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.GroupResource": ["group", "resource"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.GroupVersion": ["group", "version"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.GroupVersionKind": ["group", "version", "kind"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.GroupVersionResource": ["group", "version", "resource"],
    "k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent": ["type"],
    "k8s.io.api.autoscaling.v1.HorizontalPodAutoscalerCondition": ["type", "status"],
    "k8s.io.api.core.v1.AzureFilePersistentVolumeSource": ["secretNamespace"],
    "k8s.io.api.core.v1.GlusterfsPersistentVolumeSource": ["endpointsNamespace"],
    "k8s.io.api.core.v1.ISCSIPersistentVolumeSource": ["initiatorName"],
    "k8s.io.api.core.v1.LocalVolumeSource": ["fsType"],
    "k8s.io.api.core.v1.NodeRuntimeHandler": ["name"],
    "k8s.io.api.core.v1.NodeRuntimeHandlerFeatures": ["recursiveReadOnlyMounts", "userNamespaces"],
    "k8s.io.api.core.v1.NodeFeatures": ["supplementalGroupsPolicy"],
    "k8s.io.api.core.v1.NodeSwapStatus": ["capacity"],
    "k8s.io.api.core.v1.Preconditions": ["uid"],
    "k8s.io.api.core.v1.RangeAllocation": ["range", "data"],
    "k8s.io.api.core.v1.FileKeySelector": ["optional"],
    "k8s.io.api.core.v1.PodCertificateProjection": ["maxExpirationSeconds"],
}

# Messages with their own JSON form (see src/protobuf.rs); the oracle writes them so.
SPECIAL = {
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": (0, 1),
    "k8s.io.apimachinery.pkg.api.resource.Quantity": ("0", "1"),
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": (None, "2020-01-02T03:04:05Z"),
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": (None, "2020-01-02T03:04:05.000006Z"),
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": ("0s", "1s"),
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": (None, {"f:a": {}}),
    "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs": (None, ["get"]),
    "k8s.io.apimachinery.pkg.runtime.RawExtension": (None, {"a": 1}),
}

HEADER = """\
// Kubernetes protobuf schema (wire facts only), generated by gen_schema.py.
// Derived from the Kubernetes API definitions (Copyright The Kubernetes Authors,
// Apache License 2.0) as published in the crates.io packages {pb} and
// {oa} ({feat}). Comments and options are omitted. Do not edit by hand.
// json_name carries Go's JSON tag semantics: "x,inline" = embedded struct,
// "x,keepzero" = a scalar written even when zero.

syntax = "proto2";

package {pkg};
"""

# Strategic-merge-patch keys of lists: kubectl needs them non-empty, so the zero pass
# leaves them set (and learns nothing about them; k8s-openapi marks them required).
MERGE_KEYS = {"name", "containerPort", "port", "mountPath", "devicePath", "ip", "topologyKey", "type", "key"}

SCALARS = ("string", "bool", "int32", "int64", "double", "float", "uint32", "uint64", "bytes")


def proto_package(module):
    return "k8s.io." + module.replace("::", ".")


def proto_path(module):
    return "k8s.io/" + module.replace("::", "/") + "/generated.proto"


def resolve(module, rust_path):
    """Resolves a (possibly `super::`-relative) Rust type path to (module, name)."""
    parts = rust_path.split("::")
    mod = module.split("::")
    rest = parts[:-1]
    while rest and rest[0] == "super":
        mod = mod[:-1]
        rest = rest[1:]
    return "::".join(mod + rest), parts[-1]


def strip_wrappers(ty):
    for w in ("::core::option::Option<", "::prost::alloc::boxed::Box<", "::prost::alloc::vec::Vec<"):
        while ty.startswith(w):
            ty = ty[len(w) : -1]
    # rustfmt breaks a long `Vec<...>` over lines, leaving `Path,` inside it.
    return ty.rstrip(", ")


def parse_module(src, module):
    """[(struct name, [raw field])] of a k8s-pb module."""
    path = os.path.join(src, K8S_PB, "src", *module.split("::"), "mod.rs")
    with open(path, encoding="utf-8") as f:
        lines = [ln for ln in f.read().splitlines() if not ln.strip().startswith("///")]
    messages = []
    cur = None
    i = 0
    while i < len(lines):
        ln = lines[i].strip()
        m = re.match(r"pub struct (\w+) \{(\})?$", ln)
        if m and i > 0 and "::prost::Message" in lines[i - 1]:
            cur = (m.group(1), [])
            messages.append(cur)
            if m.group(2):
                cur = None
        elif cur is not None and ln == "}":
            cur = None
        elif cur is not None and ln.startswith("#[prost("):
            attr = ln[len("#[prost(") : -2]
            decl = ""
            depth = 0
            while True:
                i += 1
                part = lines[i].strip()
                decl += part
                depth += part.count("<") - part.count(">")
                if depth == 0 and decl.endswith(","):
                    break
            dm = re.match(r"pub (?:r#)?(\w+):\s*(.*),$", decl)
            if not dm:
                raise SystemExit(f"cannot parse field {decl!r} in {module}")
            tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
            cur[1].append({"rust": dm.group(1), "type": dm.group(2).replace(" ", ""), "attr": attr, "tag": tag})
        i += 1
    return messages


def openapi_structs(src, module):
    """{lowercase struct name: (name, {lowercase json: json}, {lowercase json of required fields})}."""
    out = {}
    d = os.path.join(src, K8S_OPENAPI, "src", OPENAPI_FEATURE, *module.split("::"))
    for path in glob.glob(os.path.join(d, "*.rs")):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        sm = re.search(r"^pub struct (\w+) \{\n(.*?)^\}", text, re.M | re.S)
        if not sm:
            continue
        names = {}
        for j, key in re.findall(r'"([^"]+)" => Field::Key_(\w+)', text):
            names[j.lower()] = (j, key)
        required_rust = set(re.findall(r"^    pub (?:r#)?(\w+): (?!Option<)", sm.group(2), re.M))
        required = {low for low, (_, key) in names.items() if key in required_rust}
        out[sm.group(1).lower()] = (sm.group(1), {low: j for low, (j, _) in names.items()}, required)
    return out


def lower_camel(snake):
    head, *tail = snake.split("_")
    return head + "".join(t[:1].upper() + t[1:] for t in tail)


class Model:
    """Messages by full proto name: {"module", "name", "fields": [field]}; field keys:
    json, tag, label ("optional" | "repeated" | None for maps), type (scalar or full
    message name), map_value, inline, required, keepzero."""

    def __init__(self, src):
        self.src = src
        self.modules = {}
        self.deps = {}
        raw = {}
        todo = list(ROOTS)
        while todo:
            module = todo.pop()
            if module in raw:
                continue
            raw[module] = parse_module(src, module)
            deps = set()
            for _, fields in raw[module]:
                for f in fields:
                    for ref in self.refs(module, f):
                        if ref[0] != module:
                            deps.add(ref[0])
            self.deps[module] = deps
            todo.extend(deps)
        self.openapi = {m: openapi_structs(src, m) for m in raw}
        casing = {}
        for structs in self.openapi.values():
            for _, names, _ in structs.values():
                for low, j in names.items():
                    casing.setdefault(low, set()).add(j)
        self.messages = {}
        self.order = {m: [] for m in raw}
        self.guessed = []
        for module, messages in raw.items():
            for name, fields in messages:
                full = self.full(module, name)
                self.order[module].append(full)
                self.messages[full] = {"module": module, "name": self.msg_name(module, name), "raw": fields}
        for full, msg in self.messages.items():
            module = msg["module"]
            known = self.openapi[module].get(msg["name"].lower())
            msg["fields"] = [self.field(module, full, f, known, casing, raw) for f in sorted(msg.pop("raw"), key=lambda f: f["tag"])]

    def msg_name(self, module, name):
        return self.openapi[module].get(name.lower(), (name,))[0]

    def full(self, module, name):
        return proto_package(module) + "." + self.msg_name(module, name)

    @staticmethod
    def refs(module, f):
        kind = f["attr"].split(",")[0].split(" ")[0]
        if kind == "message":
            return [resolve(module, strip_wrappers(f["type"]))]
        if kind == "btree_map" and f["attr"].startswith('btree_map = "string, message"'):
            inner = f["type"][f["type"].index("<") + 1 : -1]
            depth = 0
            for idx, ch in enumerate(inner):
                depth += ch == "<"
                depth -= ch == ">"
                if ch == "," and depth == 0:
                    return [resolve(module, inner[idx + 1 :].rstrip(","))]
        return []

    def field(self, module, full, f, known, casing, raw):
        attr = f["attr"]
        kind = attr.split(",")[0].split(" ")[0]
        out = {"tag": f["tag"], "inline": False, "required": False, "keepzero": False, "map_value": None}
        if kind == "btree_map":
            key, val = re.match(r'btree_map = "(\w+), (\w+)"', attr).groups()
            out["label"] = None
            out["type"] = key
            out["map_value"] = self.full(*self.refs(module, f)[0]) if val == "message" else val
        else:
            if ", repeated" in attr:
                out["label"] = "repeated"
            elif ", optional" in attr:
                out["label"] = "optional"
            else:
                raise SystemExit(f"unexpected label in {attr!r}")
            if kind == "message":
                out["type"] = self.full(*self.refs(module, f)[0])
            elif kind in SCALARS:
                out["type"] = kind
            else:
                raise SystemExit(f"unexpected prost attribute {attr!r}")
        norm = f["rust"].replace("_", "").lower()
        j = None
        if known is not None:
            j = known[1].get(norm)
            out["required"] = norm in known[2]
            if j is None and kind == "message" and out["label"] == "optional":
                # A Go struct embedded with `json:",inline"`: its fields are flattened into
                # this object. (Mostly: it may have fields newer than k8s-openapi.)
                tmod, tname = self.refs(module, f)[0]
                inner = next(fs for n, fs in raw[tmod] if n == tname)
                inner = {g["rust"].replace("_", "").lower() for g in inner}
                if inner and 3 * len(inner & set(known[1])) >= 2 * len(inner):
                    j = lower_camel(f["rust"])
                    out["inline"] = True
        if j is None:
            j = OVERRIDES.get(norm)
        if j is None and len(casing.get(norm, ())) == 1:
            j = next(iter(casing[norm]))
        if j is None:
            j = lower_camel(f["rust"])
            self.guessed.append(f"{full}.{j}")
        out["json"] = j
        return out

    # --- the kubectl oracle ---------------------------------------------------------

    def sample(self, full, zero, stack=()):
        """A JSON object of message `full` with every field set (zero or non-zero)."""
        if full in SPECIAL:
            return SPECIAL[full][0 if zero else 1]
        obj = {}
        if full in stack:
            return obj
        for f in self.messages[full]["fields"]:
            if f["label"] is None:
                if f["map_value"] in SPECIAL:
                    obj[f["json"]] = {"k": SPECIAL[f["map_value"]][1]}
                continue
            if f["type"] in SCALARS:
                if f["label"] == "repeated":
                    continue
                obj[f["json"]] = scalar_sample(f["type"], zero and f["json"] not in MERGE_KEYS)
                continue
            inner = self.sample(f["type"], zero, stack + (full,))
            if f["inline"]:
                obj.update(inner)
            elif f["label"] == "repeated":
                obj[f["json"]] = [inner]
            elif inner is not None:
                obj[f["json"]] = inner
        return obj

    def compare(self, full, sent, got, seen, missing, path, zero):
        """Records which scalars of `sent` survived in `got` (kubectl's typed round trip)."""
        if full in SPECIAL or not isinstance(sent, dict) or not isinstance(got, dict):
            return
        for f in self.messages[full]["fields"]:
            if f["label"] is None:
                continue
            if f["inline"]:
                self.compare(f["type"], sent, got, seen, missing, path, zero)
                continue
            if f["json"] not in sent:
                continue
            p = f"{path}.{f['json']}"
            if f["type"] in SCALARS:
                if f["json"] in MERGE_KEYS and zero or f["json"] == "image":  # set image sets it
                    continue
                seen.setdefault((full, f["json"]), set()).add(f["json"] in got)
                continue
            if f["json"] not in got:
                missing.add((full, f["json"], p))
                continue
            if f["label"] == "repeated":
                if got[f["json"]]:
                    self.compare(f["type"], sent[f["json"]][0], got[f["json"]][0], seen, missing, p, zero)
            else:
                self.compare(f["type"], sent[f["json"]], got[f["json"]], seen, missing, p, zero)

    def run_oracle(self, kubectl):
        zero_seen, nonzero_seen, missing = {}, {}, set()
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, KUBECONFIG=os.path.join(tmp, "none"))
            for api_version, kind, args in ORACLE:
                group = api_version.split("/")[0] if "/" in api_version else "core"
                full = f"k8s.io.api.{group}.{api_version.split('/')[-1]}.{kind}"
                for zero, seen in ((True, zero_seen), (False, nonzero_seen)):
                    obj = self.sample(full, zero)
                    obj.update({"apiVersion": api_version, "kind": kind})
                    path = os.path.join(tmp, "obj.json")
                    with open(path, "w", encoding="utf-8") as fh:
                        json.dump(obj, fh)
                    cmd = [kubectl, args[0], args[1], "--local", "-f", path, args[2], "-o", "json"]
                    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                    if res.returncode != 0:
                        raise SystemExit(f"kubectl {' '.join(args)} on {kind} failed: {res.stderr}")
                    self.compare(full, obj, json.loads(res.stdout), seen, missing, kind, zero)
        for key, survived in zero_seen.items():
            if len(survived) > 1:
                print(f"  inconsistent zero round trip for {key}", file=sys.stderr)
        not_go = sorted(k for k, s in nonzero_seen.items() if False in s)
        return {k for k, s in zero_seen.items() if True in s}, set(zero_seen), not_go, missing


def scalar_sample(kind, zero):
    if kind == "string":
        return "" if zero else "x"
    if kind == "bool":
        return not zero
    if kind == "bytes":
        return "" if zero else "eA=="
    if kind in ("double", "float"):
        return 0.0 if zero else 1.5
    return 0 if zero else 1


def emit(model, here):
    for module, fulls in model.order.items():
        body = []
        for full in fulls:
            msg = model.messages[full]
            body.append(f"message {msg['name']} {{")
            for f in msg["fields"]:
                if f["label"] is None:
                    value = f["map_value"] if f["map_value"] in SCALARS else "." + f["map_value"]
                    decl = f"map<{f['type']}, {value}>"
                else:
                    ty = f["type"] if f["type"] in SCALARS else "." + f["type"]
                    decl = f"{f['label']} {ty}"
                flag = "inline" if f["inline"] else "keepzero" if f["keepzero"] else None
                option = f' [json_name = "{f["json"]},{flag}"]' if flag else ""
                body.append(f"  {decl} {f['json']} = {f['tag']}{option};")
            body.append("}")
            body.append("")
        text = HEADER.format(pb=K8S_PB, oa=K8S_OPENAPI, feat=OPENAPI_FEATURE, pkg=proto_package(module))
        if model.deps[module]:
            text += "\n" + "".join(f'import "{proto_path(m)}";\n' for m in sorted(model.deps[module]))
        text += "\n" + "\n".join(body)
        out = os.path.join(here, proto_path(module))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {proto_path(module)} ({len(text)} bytes)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubectl", default=DEFAULT_KUBECTL)
    ap.add_argument("--registry", default=None)
    args = ap.parse_args()
    src = args.registry or glob.glob(os.path.expanduser("~/.cargo/registry/src/*/"))[0]
    here = os.path.dirname(os.path.abspath(__file__))
    model = Model(src)

    keep, covered, not_go, missing = model.run_oracle(args.kubectl)
    covered_msgs = {m for m, _ in covered}
    for full, msg in model.messages.items():
        manual = set(MANUAL_KEEP_ZERO.get(full, ()))
        for f in msg["fields"]:
            if f["label"] != "optional" or f["type"] not in SCALARS:
                continue
            if (full, f["json"]) in covered:
                f["keepzero"] = (full, f["json"]) in keep
                if f["json"] in manual and not f["keepzero"]:
                    print(f"MANUAL_KEEP_ZERO disagrees with kubectl on {full}.{f['json']}")
            else:
                f["keepzero"] = f["required"] or f["json"] in manual
        unknown = manual - {f["json"] for f in msg["fields"]}
        if unknown:
            print(f"MANUAL_KEEP_ZERO names unknown fields of {full}: {sorted(unknown)}")
    emit(model, here)

    print("JSON names guessed (in neither k8s-openapi nor an inlined parent):")
    for g in model.guessed:
        print("  " + g)
    print("non-zero scalars kubectl dropped (name unknown to Go?):")
    for k in not_go:
        print(f"  {k}")
    print("messages kubectl dropped:")
    for k in sorted(missing):
        print(f"  {k}")
    print("messages with scalars whose zero handling the oracle did not see:")
    for full, msg in sorted(model.messages.items()):
        if full in covered_msgs or full in MANUAL_KEEP_ZERO:
            continue
        scalars = [f["json"] + ("*" if f["keepzero"] else "") for f in msg["fields"] if f["label"] == "optional" and f["type"] in SCALARS]
        if scalars and not full.endswith("Options"):
            print(f"  {full}: {' '.join(scalars)}")


if __name__ == "__main__":
    main()
