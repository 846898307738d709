//! Node preparation the data plane relies on, and removal of the table.

use std::fs;
use std::path::Path;

use crate::exec;
use crate::{ProxyConfig, ProxyError};

/// What [`setup_node`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSetup {
    /// `net.ipv4.ip_forward=1`: DNATed pod and NodePort traffic is routed.
    pub ip_forward: bool,
    /// `net.bridge.bridge-nf-call-iptables=1` when `br_netfilter` is loaded: replies from a pod
    /// to a client pod on the same bridge are switched, not routed, and still need un-DNAT.
    pub bridge_nf_call_iptables: bool,
    /// `ip route replace unreachable <service CIDR>`: packets to Service IPs that no rule
    /// DNATed get an immediate ICMP "host unreachable" instead of following the default
    /// route. Off by default: the route lookup of a *locally generated* packet happens
    /// before the output hook, so with this route the node itself cannot connect to any
    /// ClusterIP (connect(2) fails with EHOSTUNREACH, measured) — and the node-local DNS
    /// cache and `curl <cluster-ip>` from the node need that. Forwarded (pod) traffic is
    /// DNATed before routing and is unaffected.
    pub service_cidr_unreachable_route: bool,
    /// With the unreachable route: the device (the pod bridge) that the node's
    /// *own* connections to Service IPs are routed to, through a policy rule for
    /// locally generated packets (`ip rule add to <CIDR> iif lo lookup 4296`). The
    /// connect(2) route lookup then succeeds, the output hook DNATs the packet to an
    /// endpoint and it is re-routed there; an address without rules never leaves the
    /// node's pod network. Forwarded traffic still hits the unreachable route.
    pub local_service_device: Option<String>,
}

/// Routing table of the node's own Service traffic (see [`NodeSetup::local_service_device`]).
pub const LOCAL_SERVICE_TABLE: &str = "4296";

impl Default for NodeSetup {
    fn default() -> Self {
        NodeSetup {
            ip_forward: true,
            bridge_nf_call_iptables: true,
            service_cidr_unreachable_route: false,
            local_service_device: None,
        }
    }
}

/// What [`setup_node`] found and changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSetupReport {
    pub ip_forward: bool,
    /// False when `br_netfilter` is not loaded (the sysctl does not exist).
    pub bridge_nf_call_iptables: bool,
    pub service_cidr_route: bool,
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Prepares the node (in `cfg.netns` if set) for the data plane.
pub fn setup_node(cfg: &ProxyConfig, setup: &NodeSetup) -> Result<NodeSetupReport, ProxyError> {
    let netns = cfg.netns.as_deref();
    let want = setup.clone();
    let (ip_forward, bridge) = exec::in_netns(netns, move || {
        let mut ip_forward = false;
        if want.ip_forward {
            fs::write(IP_FORWARD, "1")?;
            ip_forward = true;
        }
        let mut bridge = false;
        if want.bridge_nf_call_iptables && Path::new(BRIDGE_NF_CALL_IPTABLES).exists() {
            fs::write(BRIDGE_NF_CALL_IPTABLES, "1")?;
            bridge = true;
        }
        Ok((ip_forward, bridge))
    })
    .map_err(|e| ProxyError::io("setting sysctls", e))?;
    let mut report = NodeSetupReport { ip_forward, bridge_nf_call_iptables: bridge, service_cidr_route: false };
    if setup.service_cidr_unreachable_route {
        let cidr = cfg.service_cidr.to_string();
        let out = exec::run(Path::new("ip"), &["route", "replace", "unreachable", &cidr], None, netns)
            .map_err(|e| ProxyError::io("running ip route", e))?;
        if !out.status.success() {
            return Err(ProxyError::Command(format!(
                "ip route replace unreachable {cidr}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        report.service_cidr_route = true;
        if let Some(dev) = &setup.local_service_device {
            ip(&["route", "replace", &cidr, "dev", dev, "table", LOCAL_SERVICE_TABLE], netns)?;
            // Replace, not add: the rule must exist exactly once across restarts.
            let _ = exec::run(
                Path::new("ip"),
                &["rule", "del", "to", &cidr, "iif", "lo", "lookup", LOCAL_SERVICE_TABLE],
                None,
                netns,
            );
            ip(&["rule", "add", "to", &cidr, "iif", "lo", "lookup", LOCAL_SERVICE_TABLE, "priority", "100"], netns)?;
        }
    }
    Ok(report)
}

/// Deletes the proxy's table (upstream `CleanupLeftovers`). Not an error if it is absent.
pub fn cleanup(cfg: &ProxyConfig) -> Result<(), ProxyError> {
    let script = format!("add table ip {t}\ndelete table ip {t}\n", t = cfg.table);
    let out = exec::run(&cfg.nft, &["-f", "-"], Some(script.as_bytes()), cfg.netns.as_deref())
        .map_err(|e| ProxyError::io(format!("running {}", cfg.nft.display()), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProxyError::Nft { status: out.status.to_string(), stderr: String::from_utf8_lossy(&out.stderr).into() })
    }
}

fn ip(args: &[&str], netns: Option<&Path>) -> Result<(), ProxyError> {
    let out = exec::run(Path::new("ip"), args, None, netns).map_err(|e| ProxyError::io("running ip", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProxyError::Command(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())))
    }
}
