//! `/etc/resolv.conf` and `/etc/hosts` for a pod, as kubelet writes them
//! (upstream `pkg/kubelet/network/dns/dns.go`, `pkg/kubelet/kubelet_pods.go`
//! `managedHostsFileContent`).

use k8s_openapi::api::core::v1::Pod;

/// Cluster DNS settings of the node.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// Nameservers for ClusterFirst pods (the node-local cache).
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// The node's own resolv.conf contents, for `dnsPolicy: Default`.
    pub host_resolv_conf: String,
}

/// The pod's resolv.conf.
pub fn resolv_conf(pod: &Pod, dns: &DnsSettings) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) = match policy {
        "None" => (vec![], vec![], vec![]),
        "Default" => parse_host(&dns.host_resolv_conf),
        "ClusterFirst" if host_network => parse_host(&dns.host_resolv_conf),
        _ => {
            let d = &dns.cluster_domain;
            (
                dns.cluster_dns.clone(),
                vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()],
                vec!["ndots:5".to_string()],
            )
        }
    };
    if let Some(cfg) = &spec.dns_config {
        servers.extend(cfg.nameservers.clone().unwrap_or_default());
        searches.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.clone().unwrap_or_default() {
            let Some(name) = o.name else { continue };
            options.retain(|x| x.split(':').next() != Some(name.as_str()));
            options.push(match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in servers.iter().take(3) {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn parse_host(conf: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut s, mut search, mut opts) = (vec![], vec![], vec![]);
    for line in conf.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => s.extend(f.next().map(String::from)),
            Some("search") | Some("domain") => search = f.map(String::from).collect(),
            Some("options") => opts.extend(f.map(String::from)),
            _ => {}
        }
    }
    (s, search, opts)
}

/// The pod's /etc/hosts (kubelet's managed hosts file).
pub fn hosts(pod: &Pod, pod_ip: &str, cluster_domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let hostname = spec.hostname.clone().unwrap_or_else(|| name.to_string());
    let mut out = String::from("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
    match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => out.push_str(&format!("{pod_ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}\n")),
        None => out.push_str(&format!("{pod_ip}\t{hostname}\n")),
    }
    out.push_str(&host_alias_entries(pod));
    out
}

/// A `hostNetwork` pod's /etc/hosts: the node's own file under kubelet's header,
/// plus the pod's host aliases (upstream `nodeHostsFileContent`, pkg/kubelet/kubelet_pods.go).
pub fn host_network_hosts(pod: &Pod, node_hosts: &str) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
    out.push_str(node_hosts);
    out.push_str(&host_alias_entries(pod));
    out
}

/// Upstream `hostsEntriesFromHostAliases`: one header, one line per alias.
fn host_alias_entries(pod: &Pod) -> String {
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.clone()).unwrap_or_default();
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        out.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.unwrap_or_default().join("\t")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DnsSettings {
        DnsSettings {
            cluster_dns: vec!["169.254.20.10".into()],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "nameserver 192.168.122.1\nsearch lan\n".into(),
        }
    }

    #[test]
    fn cluster_first() {
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": []}}),
        )
        .unwrap();
        assert_eq!(
            resolv_conf(&pod, &settings()),
            "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 169.254.20.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_and_none_with_config() {
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [], "dnsPolicy": "Default"}}),
        )
        .unwrap();
        assert_eq!(resolv_conf(&pod, &settings()), "search lan\nnameserver 192.168.122.1\n");
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [], "dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["a.b"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}})).unwrap();
        assert_eq!(resolv_conf(&pod, &settings()), "search a.b\nnameserver 1.2.3.4\noptions ndots:2 edns0\n");
    }

    #[test]
    fn hosts_file_with_subdomain() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [], "hostname": "web-0", "subdomain": "web"}})).unwrap();
        let h = hosts(&pod, "10.244.0.5", "cluster.local");
        assert!(h.contains("10.244.0.5\tweb-0.web.ns.svc.cluster.local\tweb-0\n"), "{h}");
    }

    #[test]
    fn host_network_pod_gets_the_nodes_hosts_file_and_resolv_conf() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [], "hostNetwork": true, "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["a", "b"]}, {"ip": "10.1.2.4", "hostnames": ["c"]}]}})).unwrap();
        assert_eq!(
            host_network_hosts(&pod, "127.0.0.1\tlocalhost\n192.168.122.11\tnode1\n"),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n192.168.122.11\tnode1\n\n# Entries added by HostAliases.\n10.1.2.3\ta\tb\n10.1.2.4\tc\n"
        );
        // ClusterFirst on the host network falls back to the node's resolv.conf...
        assert_eq!(resolv_conf(&pod, &settings()), "search lan\nnameserver 192.168.122.1\n");
        // ... unless the pod asks for ClusterFirstWithHostNet.
        let mut pod = pod;
        pod.spec.as_mut().expect("spec").dns_policy = Some("ClusterFirstWithHostNet".into());
        assert!(resolv_conf(&pod, &settings()).contains("nameserver 169.254.20.10\n"));
    }
}
