//! The DNS add-ons as workloads in `kube-system`, applied by the server at every
//! start (server-side apply, field manager `rkube`; as k3s's deploy controller
//! applies its manifests), so a cluster shows what kubeadm and kubespray clusters
//! show:
//!
//! - `coredns`: kubeadm's CoreDNS addon (`cmd/kubeadm/app/phases/addons/dns/manifests.go`):
//!   ServiceAccount (bound to `system:coredns` by the bootstrap policy), ConfigMap with the
//!   Corefile, a Deployment of 2 (label `k8s-app=kube-dns`) behind the `kube-dns`
//!   Service on `.10` of the service range;
//! - `nodelocaldns`: NodeLocal DNSCache (upstream's
//!   `cluster/addons/dns/nodelocaldns/nodelocaldns.yaml`, kubespray's names): a
//!   `hostNetwork` DaemonSet whose pods serve the link-local address on every
//!   node, and the `kube-dns-upstream` Service they fall back to.
//!
//! The images are rkube's built-ins (`images::Builtin::CoreDns`, `NodeCache`), whose
//! programs are `dns::program`.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};

pub const NAMESPACE: &str = "kube-system";
/// The image tags shown (the programs are rkube's own, whatever the tag).
pub const COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.12.0";
pub const NODE_CACHE_IMAGE: &str = "registry.k8s.io/dns/k8s-dns-node-cache:1.25.0";

/// The add-ons `--disable` can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Addon {
    Coredns,
    Nodelocaldns,
}

/// What the manifests are rendered from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `kube-dns` ClusterIP (`.10` of the service range).
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    pub node_local_dns: Ipv4Addr,
    /// `--upstream-dns`; empty: the node's /etc/resolv.conf.
    pub upstream: Vec<SocketAddr>,
    pub disabled: Vec<Addon>,
}

impl Settings {
    fn enabled(&self, a: Addon) -> bool {
        !self.disabled.contains(&a)
    }

    fn forward(&self) -> String {
        if self.upstream.is_empty() {
            "/etc/resolv.conf".into()
        } else {
            self.upstream
                .iter()
                .map(|a| if a.port() == 53 { a.ip().to_string() } else { a.to_string() })
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

fn meta(name: &str, labels: Value) -> Value {
    json!({ "name": name, "namespace": NAMESPACE, "labels": labels })
}

fn binding(name: &str, sa: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": name, "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" } },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns" },
        "subjects": [{ "kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE }],
    })
}

fn coredns(s: &Settings) -> Vec<Value> {
    let corefile = format!(
        ".:53 {{\n    errors\n    health {{\n       lameduck 5s\n    }}\n    ready\n    kubernetes {} in-addr.arpa ip6.arpa {{\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 5\n    }}\n    prometheus :9153\n    forward . {} {{\n       max_concurrent 1000\n    }}\n    cache 30\n    loop\n    reload\n    loadbalance\n}}\n",
        s.cluster_domain,
        s.forward()
    );
    let app = json!({ "k8s-app": "kube-dns" });
    vec![
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("coredns", json!({})) }),
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("coredns", json!({})), "data": { "Corefile": corefile } }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta("coredns", app.clone()),
            "spec": {
                "replicas": 2,
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1 } },
                "selector": { "matchLabels": app.clone() },
                "template": {
                    "metadata": { "labels": app.clone() },
                    "spec": {
                        "priorityClassName": "system-cluster-critical",
                        "serviceAccountName": "coredns",
                        "tolerations": [
                            { "key": "CriticalAddonsOnly", "operator": "Exists" },
                            { "key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule" },
                        ],
                        "nodeSelector": { "kubernetes.io/os": "linux" },
                        "containers": [{
                            "name": "coredns",
                            "image": COREDNS_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "resources": { "requests": { "cpu": "100m", "memory": "70Mi" } },
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "volumeMounts": [{ "name": "config-volume", "mountPath": "/etc/coredns", "readOnly": true }],
                            "ports": [
                                { "containerPort": 53, "name": "dns", "protocol": "UDP" },
                                { "containerPort": 53, "name": "dns-tcp", "protocol": "TCP" },
                                { "containerPort": 9153, "name": "metrics", "protocol": "TCP" },
                            ],
                            "livenessProbe": {
                                "httpGet": { "path": "/health", "port": 8080, "scheme": "HTTP" },
                                "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 5,
                            },
                            "readinessProbe": { "httpGet": { "path": "/ready", "port": 8181, "scheme": "HTTP" }, "periodSeconds": 1 },
                        }],
                        "dnsPolicy": "Default",
                        "volumes": [{ "name": "config-volume", "configMap": { "name": "coredns", "items": [{ "key": "Corefile", "path": "Corefile" }] } }],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "kube-dns", "namespace": NAMESPACE,
                "labels": { "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS" },
                "annotations": { "prometheus.io/port": "9153", "prometheus.io/scrape": "true" },
            },
            "spec": {
                "clusterIP": s.cluster_dns.to_string(),
                "selector": app,
                "ports": [
                    { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53 },
                    { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53 },
                    { "name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153 },
                ],
            },
        }),
    ]
}

fn nodelocaldns(s: &Settings) -> Vec<Value> {
    let ip = s.node_local_dns;
    // Upstream's Corefile; node-cache fills __PILLAR__CLUSTER__DNS__ from -upstreamsvc.
    let corefile = format!(
        "{zone}:53 {{\n    errors\n    cache {{\n        success 9984 30\n        denial 9984 5\n    }}\n    reload\n    loop\n    bind {ip}\n    forward . __PILLAR__CLUSTER__DNS__ {{\n        force_tcp\n    }}\n    prometheus :9253\n    health {ip}:8080\n}}\nin-addr.arpa:53 {{\n    errors\n    cache 30\n    reload\n    loop\n    bind {ip}\n    forward . __PILLAR__CLUSTER__DNS__ {{\n        force_tcp\n    }}\n    prometheus :9253\n}}\nip6.arpa:53 {{\n    errors\n    cache 30\n    reload\n    loop\n    bind {ip}\n    forward . __PILLAR__CLUSTER__DNS__ {{\n        force_tcp\n    }}\n    prometheus :9253\n}}\n.:53 {{\n    errors\n    cache 30\n    reload\n    loop\n    bind {ip}\n    forward . {upstream}\n    prometheus :9253\n}}\n",
        zone = s.cluster_domain,
        upstream = if s.upstream.is_empty() { "__PILLAR__UPSTREAM__SERVERS__".to_string() } else { s.forward() },
    );
    let app = json!({ "k8s-app": "nodelocaldns" });
    vec![
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("nodelocaldns", json!({})) }),
        // The cache reads what coredns reads (bootstrap ClusterRole `system:coredns`).
        binding("rkube:nodelocaldns", "nodelocaldns"),
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("nodelocaldns", json!({})), "data": { "Corefile": corefile } }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta("kube-dns-upstream", json!({ "k8s-app": "kube-dns", "kubernetes.io/name": "KubeDNSUpstream" })),
            "spec": {
                "selector": { "k8s-app": "kube-dns" },
                "ports": [
                    { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53 },
                    { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53 },
                ],
            },
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": meta("nodelocaldns", app.clone()),
            "spec": {
                "selector": { "matchLabels": app.clone() },
                "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "10%" } },
                "template": {
                    "metadata": { "labels": app, "annotations": { "prometheus.io/port": "9253", "prometheus.io/scrape": "true" } },
                    "spec": {
                        "priorityClassName": "system-node-critical",
                        "serviceAccountName": "nodelocaldns",
                        "hostNetwork": true,
                        "dnsPolicy": "Default",
                        "tolerations": [
                            { "operator": "Exists", "effect": "NoSchedule" },
                            { "operator": "Exists", "effect": "NoExecute" },
                        ],
                        "nodeSelector": { "kubernetes.io/os": "linux" },
                        "containers": [{
                            "name": "node-cache",
                            "image": NODE_CACHE_IMAGE,
                            "resources": { "requests": { "cpu": "25m", "memory": "5Mi" } },
                            "args": ["-localip", ip.to_string(), "-conf", "/etc/coredns/Corefile", "-upstreamsvc", "kube-dns-upstream"],
                            "securityContext": { "capabilities": { "add": ["NET_ADMIN"] } },
                            "ports": [
                                { "containerPort": 53, "name": "dns", "protocol": "UDP" },
                                { "containerPort": 53, "name": "dns-tcp", "protocol": "TCP" },
                                { "containerPort": 9253, "name": "metrics", "protocol": "TCP" },
                            ],
                            "livenessProbe": {
                                "httpGet": { "host": ip.to_string(), "path": "/health", "port": 8080 },
                                "initialDelaySeconds": 60, "timeoutSeconds": 5,
                            },
                            "volumeMounts": [{ "name": "config-volume", "mountPath": "/etc/coredns" }],
                        }],
                        "volumes": [{ "name": "config-volume", "configMap": { "name": "nodelocaldns", "items": [{ "key": "Corefile", "path": "Corefile" }] } }],
                    },
                },
            },
        }),
    ]
}

/// Every object of the enabled add-ons, in the order they are applied
/// (ServiceAccounts and Services before the pods that read them).
pub fn manifests(s: &Settings) -> Vec<Value> {
    let mut out = Vec::new();
    if s.enabled(Addon::Coredns) {
        out.extend(coredns(s));
    }
    if s.enabled(Addon::Nodelocaldns) {
        out.extend(nodelocaldns(s));
    }
    out
}

fn api_resource(obj: &Value) -> Result<(ApiResource, bool), String> {
    let (av, kind) = (obj["apiVersion"].as_str().unwrap_or_default(), obj["kind"].as_str().unwrap_or_default());
    let (plural, namespaced) = match kind {
        "ServiceAccount" => ("serviceaccounts", true),
        "ConfigMap" => ("configmaps", true),
        "Service" => ("services", true),
        "Deployment" => ("deployments", true),
        "DaemonSet" => ("daemonsets", true),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        other => return Err(format!("no API resource known for kind {other}")),
    };
    let (group, version) = av.split_once('/').unwrap_or(("", av));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    Ok((ApiResource::from_gvk_with_plural(&gvk, plural), namespaced))
}

/// Applies the enabled add-ons (taking fields from any other manager: the
/// server owns these objects; `--disable` leaves them to the user).
pub async fn apply(client: &kube::Client, s: &Settings) -> Result<usize, String> {
    let params = PatchParams::apply("rkube").force();
    let objs = manifests(s);
    for obj in &objs {
        let (ar, namespaced) = api_resource(obj)?;
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), NAMESPACE, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        api.patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| format!("applying the {} {NAMESPACE}/{name}: {e}", ar.kind))?;
    }
    Ok(objs.len())
}

/// How long `rkube up` waits for the add-ons before saying they are late.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

/// Waits (up to [`READY_WAIT`]) until one coredns pod and this cluster's
/// nodelocaldns pods are ready, telling the user what it waits for.
pub async fn wait_ready(client: &kube::Client, s: &Settings, what: &str) {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    if s.disabled.len() == 2 {
        return;
    }
    eprintln!("{what}: waiting for the DNS add-ons in kube-system to be ready");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let start = std::time::Instant::now();
    loop {
        let coredns = match s.enabled(Addon::Coredns) {
            false => None,
            true => Some(
                deployments
                    .get_opt("coredns")
                    .await
                    .ok()
                    .flatten()
                    .and_then(|d| d.status)
                    .map(|st| (st.ready_replicas.unwrap_or(0), st.replicas.unwrap_or(0))),
            ),
        };
        let cache = match s.enabled(Addon::Nodelocaldns) {
            false => None,
            true => Some(
                daemonsets
                    .get_opt("nodelocaldns")
                    .await
                    .ok()
                    .flatten()
                    .and_then(|d| d.status)
                    .map(|st| (st.number_ready, st.desired_number_scheduled)),
            ),
        };
        let ok = |x: &Option<Option<(i32, i32)>>| match x {
            None => true,
            Some(Some((ready, _))) => *ready >= 1,
            Some(None) => false,
        };
        let show = |name: &str, x: &Option<Option<(i32, i32)>>| match x {
            None => String::new(),
            Some(Some((r, w))) => format!(" {name} {r}/{w}"),
            Some(None) => format!(" {name} 0/?"),
        };
        let status = format!("{}{}", show("coredns", &coredns), show("nodelocaldns", &cache));
        if ok(&coredns) && ok(&cache) {
            eprintln!("{what}: DNS add-ons ready:{status}");
            return;
        }
        if start.elapsed() >= READY_WAIT {
            eprintln!(
                "{what}: the DNS add-ons are not ready after {READY_WAIT:?} (ready/desired:{status}); see \
                 `kubectl -n kube-system get pods` and `kubectl -n kube-system describe pods`"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(disabled: Vec<Addon>) -> Settings {
        Settings {
            cluster_dns: Ipv4Addr::new(10, 96, 0, 10),
            cluster_domain: "cluster.local".into(),
            node_local_dns: Ipv4Addr::new(169, 254, 20, 10),
            upstream: vec![SocketAddr::from(([192, 168, 122, 1], 53))],
            disabled,
        }
    }

    fn names(objs: &[Value]) -> Vec<String> {
        objs.iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or("")))
            .collect()
    }

    #[test]
    fn both_addons_and_what_disable_leaves_out() {
        let all = names(&manifests(&settings(vec![])));
        for want in ["Deployment/coredns", "Service/kube-dns", "DaemonSet/nodelocaldns", "Service/kube-dns-upstream"] {
            assert!(all.iter().any(|n| n == want), "{want} in {all:?}");
        }
        let no_cache = names(&manifests(&settings(vec![Addon::Nodelocaldns])));
        assert!(!no_cache.iter().any(|n| n.contains("nodelocaldns")), "{no_cache:?}");
        let only_cache = names(&manifests(&settings(vec![Addon::Coredns])));
        assert!(only_cache.contains(&"ClusterRoleBinding/rkube:nodelocaldns".to_string()), "{only_cache:?}");
        assert!(only_cache.contains(&"DaemonSet/nodelocaldns".to_string()), "{only_cache:?}");
        assert!(!only_cache.contains(&"Deployment/coredns".to_string()));
        assert!(manifests(&settings(vec![Addon::Coredns, Addon::Nodelocaldns])).is_empty());
    }

    #[test]
    fn the_manifests_carry_the_settings() {
        let objs = manifests(&settings(vec![]));
        let find = |k: &str, n: &str| {
            objs.iter().find(|o| o["kind"] == k && o["metadata"]["name"] == n).cloned().expect("object")
        };
        assert_eq!(find("Service", "kube-dns")["spec"]["clusterIP"], "10.96.0.10");
        let corefile = find("ConfigMap", "coredns")["data"]["Corefile"].as_str().unwrap_or_default().to_string();
        assert!(corefile.contains("kubernetes cluster.local in-addr.arpa ip6.arpa"), "{corefile}");
        assert!(corefile.contains("forward . 192.168.122.1 {"), "{corefile}");
        let ds = find("DaemonSet", "nodelocaldns");
        let args = &ds["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(args[0], "-localip");
        assert_eq!(args[1], "169.254.20.10");
        assert_eq!(ds["spec"]["template"]["spec"]["hostNetwork"], true);
        // Every manifest deserializes as its typed Kubernetes object.
        for o in &objs {
            let r = match o["kind"].as_str().unwrap_or_default() {
                "Deployment" => serde_json::from_value::<k8s_openapi::api::apps::v1::Deployment>(o.clone()).map(|_| ()),
                "DaemonSet" => serde_json::from_value::<k8s_openapi::api::apps::v1::DaemonSet>(o.clone()).map(|_| ()),
                "Service" => serde_json::from_value::<k8s_openapi::api::core::v1::Service>(o.clone()).map(|_| ()),
                _ => Ok(()),
            };
            assert!(r.is_ok(), "{:?}: {r:?}", o["metadata"]["name"]);
            assert!(api_resource(o).is_ok());
        }
    }
}
