//! The node's IPv4 interfaces, from `ip -j -4 addr show` (iproute2's JSON).

use std::net::Ipv4Addr;

/// One interface address: name, address, prefix length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub ifname: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl IfAddr {
    /// The address's subnet holds `ip`.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix_len.min(32))) };
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

/// Parses `ip -j -4 addr show` output.
pub fn parse(json: &str) -> Vec<IfAddr> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        let Some(name) = link.get("ifname").and_then(|n| n.as_str()) else { continue };
        for a in link.get("addr_info").and_then(|a| a.as_array()).into_iter().flatten() {
            let addr = a.get("local").and_then(|l| l.as_str()).and_then(|l| l.parse().ok());
            let len = a.get("prefixlen").and_then(|p| p.as_u64()).and_then(|p| u8::try_from(p).ok());
            if let (Some(addr), Some(prefix_len)) = (addr, len) {
                out.push(IfAddr { ifname: name.to_string(), addr, prefix_len });
            }
        }
    }
    out
}

/// The interface addresses of this network namespace.
pub async fn list() -> Result<Vec<IfAddr>, String> {
    let out = tokio::process::Command::new("ip")
        .args(["-j", "-4", "addr", "show"])
        .output()
        .await
        .map_err(|e| format!("ip -j -4 addr show: {e} (install iproute2)"))?;
    if !out.status.success() {
        return Err(format!("ip -j -4 addr show: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Where to answer for `ip`: the `wanted` interfaces that exist, or (none wanted) the
/// interfaces on its subnet, or the interface of `node_ip`; never `lo` or `exclude`.
pub fn for_address(
    addrs: &[IfAddr],
    ip: Ipv4Addr,
    wanted: &[String],
    node_ip: Ipv4Addr,
    exclude: &[String],
) -> Vec<String> {
    let usable = |a: &&IfAddr| a.ifname != "lo" && !exclude.contains(&a.ifname);
    let mut out: Vec<String> = if wanted.is_empty() {
        let on_link: Vec<String> =
            addrs.iter().filter(usable).filter(|a| a.on_link(ip)).map(|a| a.ifname.clone()).collect();
        if on_link.is_empty() {
            addrs.iter().filter(usable).filter(|a| a.addr == node_ip).map(|a| a.ifname.clone()).collect()
        } else {
            on_link
        }
    } else {
        addrs.iter().filter(usable).filter(|a| wanted.contains(&a.ifname)).map(|a| a.ifname.clone()).collect()
    };
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_picks_interfaces() {
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"192.168.122.11","prefixlen":24}]},
            {"ifindex":3,"ifname":"rkube0","addr_info":[{"family":"inet","local":"10.244.0.1","prefixlen":24}]},
            {"ifindex":4,"ifname":"eth1","addr_info":[{"family":"inet","local":"172.16.0.2","prefixlen":16}]}]"#;
        let a = parse(json);
        assert_eq!(a.len(), 4);
        let ex = vec!["rkube0".to_string()];
        let node = Ipv4Addr::new(192, 168, 122, 11);
        assert_eq!(for_address(&a, Ipv4Addr::new(192, 168, 122, 200), &[], node, &ex), vec!["eth0"]);
        assert_eq!(for_address(&a, Ipv4Addr::new(172, 16, 9, 9), &[], node, &ex), vec!["eth1"]);
        assert_eq!(for_address(&a, Ipv4Addr::new(10, 244, 0, 50), &[], node, &ex), vec!["eth0"], "never the bridge");
        assert_eq!(
            for_address(&a, Ipv4Addr::new(8, 8, 8, 8), &["eth1".into(), "nope".into()], node, &ex),
            vec!["eth1"]
        );
        assert!(parse("not json").is_empty());
    }
}
