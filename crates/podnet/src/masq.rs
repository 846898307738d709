//! Masquerading of pod traffic that leaves the cluster network: flannel's
//! `postrtg` chain (`pkg/trafficmngr/nftables/nftables.go`, `addMasqRules`) in
//! a table of its own, `ip rkube-podnet`, replaced atomically on every load.

use crate::exec::run;
use crate::PodNetError;
use ipnet::Ipv4Net;

/// The nftables table (family `ip`).
pub const TABLE: &str = "rkube-podnet";
/// The Service proxy's masquerade bit (kube-proxy's `--masquerade-bit` 14):
/// packets it marked are masqueraded there, never twice.
const PROXY_MASQ_MARK: u32 = 0x4000;

/// The table, as `nft -f` input that creates or replaces it in one transaction.
pub fn ruleset(cluster: Ipv4Net, pod_cidr: Ipv4Net) -> String {
    format!(
        "table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tcomment \"rkube pod network: masquerade pod traffic leaving the cluster\"\n\
         \tchain postrtg {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tmeta mark & {mark:#x} == {mark:#x} return comment \"masqueraded by the Service proxy\"\n\
         \t\tip saddr {pod_cidr} ip daddr {cluster} return comment \"pod to pod\"\n\
         \t\tip saddr {cluster} ip daddr {pod_cidr} return comment \"pod to pod\"\n\
         \t\tip saddr != {pod_cidr} ip daddr {cluster} return comment \"keep the client address of traffic to pods\"\n\
         \t\tip saddr {cluster} ip daddr != 224.0.0.0/4 masquerade fully-random comment \"pods to outside the cluster\"\n\
         \t\tip saddr != {cluster} ip daddr {cluster} masquerade fully-random comment \"the host to remote pods\"\n\
         \t}}\n\
         }}\n",
        mark = PROXY_MASQ_MARK,
    )
}

/// Loads (or replaces) the table.
pub(crate) async fn apply(cluster: Ipv4Net, pod_cidr: Ipv4Net) -> Result<(), PodNetError> {
    run("nft", &["-f", "-"], Some(&ruleset(cluster, pod_cidr))).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_to_pod_and_marked_traffic_is_left_alone_and_egress_is_masqueraded() {
        let r = ruleset("10.244.0.0/16".parse().expect("cidr"), "10.244.3.0/24".parse().expect("cidr"));
        let rules: Vec<&str> =
            r.lines().map(str::trim).filter(|l| l.starts_with("ip ") || l.starts_with("meta")).collect();
        assert_eq!(rules.len(), 6, "{r}");
        assert!(rules[0].starts_with("meta mark & 0x4000 == 0x4000 return"));
        assert!(rules[1].starts_with("ip saddr 10.244.3.0/24 ip daddr 10.244.0.0/16 return"));
        assert!(rules[4].starts_with("ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random"));
        assert!(r.starts_with("table ip rkube-podnet\ndelete table ip rkube-podnet\n"), "replaced atomically");
    }
}
