//! The VXLAN device: the interface it tunnels over, creating it (or adopting
//! one left by an earlier run, as flannel's `ensureLink`), its `/32` address
//! and its MTU.

use crate::annotations::Mac;
use crate::exec::run;
use crate::PodNetError;
use std::net::Ipv4Addr;

/// The interface the tunnel runs over, and its MTU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Underlay {
    pub name: String,
    pub mtu: u32,
}

/// What the device must be.
#[derive(Clone, Debug)]
pub(crate) struct Spec<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub parent: &'a str,
    pub mtu: u32,
    pub mac: Mac,
    /// The device's only IPv4 address (a `/32`).
    pub address: Ipv4Addr,
}

/// From `ip -j -4 addr show`: the interface named `iface`, or else the one
/// holding `node_ip`.
pub(crate) fn find_underlay(json: &str, node_ip: Ipv4Addr, iface: Option<&str>) -> Result<Underlay, PodNetError> {
    let links: Vec<serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| PodNetError::Parse { command: "ip -j -4 addr show".into(), message: e.to_string() })?;
    let name_of = |l: &serde_json::Value| l.get("ifname").and_then(|n| n.as_str()).map(str::to_string);
    let holds =
        |l: &serde_json::Value| {
            l.get("addr_info").and_then(|a| a.as_array()).into_iter().flatten().any(|a| {
                a.get("local").and_then(|x| x.as_str()).and_then(|x| x.parse::<Ipv4Addr>().ok()) == Some(node_ip)
            })
        };
    let link = match iface {
        Some(want) => links
            .iter()
            .find(|l| name_of(l).as_deref() == Some(want))
            .ok_or_else(|| PodNetError::MissingInterface(want.to_string()))?,
        None => links.iter().find(|l| holds(l)).ok_or(PodNetError::NoInterface(node_ip))?,
    };
    let name = name_of(link).unwrap_or_default();
    if name == "lo" {
        return Err(PodNetError::NoInterface(node_ip));
    }
    let mtu = link.get("mtu").and_then(|m| m.as_u64()).and_then(|m| u32::try_from(m).ok()).unwrap_or(1500);
    Ok(Underlay { name, mtu })
}

/// Why an existing device (`ip -d -j link show dev D`) cannot be kept, or
/// `None` when it matches `spec` (MTU and addresses are fixed in place);
/// with its MAC.
pub(crate) fn incompatible(json: &str, spec: &Spec<'_>) -> (Option<String>, Option<Mac>) {
    let Ok(serde_json::Value::Array(v)) = serde_json::from_str::<serde_json::Value>(json) else {
        return (Some("unreadable link details".into()), None);
    };
    let Some(link) = v.first() else { return (Some("no such link".into()), None) };
    let mac = link.get("address").and_then(|a| a.as_str()).and_then(|a| a.parse().ok());
    let info = link.get("linkinfo");
    let kind = info.and_then(|i| i.get("info_kind")).and_then(|k| k.as_str()).unwrap_or("");
    if kind != "vxlan" {
        return (Some(format!("it is a {kind:?} link, not vxlan")), mac);
    }
    let data = info.and_then(|i| i.get("info_data"));
    let get = |k: &str| data.and_then(|d| d.get(k));
    let mut diffs = Vec::new();
    if get("id").and_then(|x| x.as_u64()) != Some(u64::from(spec.vni)) {
        diffs.push(format!("VNI {:?} vs {}", get("id"), spec.vni));
    }
    if get("port").and_then(|x| x.as_u64()) != Some(u64::from(spec.port)) {
        diffs.push(format!("port {:?} vs {}", get("port"), spec.port));
    }
    if get("local").and_then(|x| x.as_str()) != Some(spec.local.to_string().as_str()) {
        diffs.push(format!("local {:?} vs {}", get("local"), spec.local));
    }
    if get("link").and_then(|x| x.as_str()) != Some(spec.parent) {
        diffs.push(format!("link {:?} vs {}", get("link"), spec.parent));
    }
    if get("learning").and_then(|x| x.as_bool()) != Some(false) {
        diffs.push("learning on".into());
    }
    ((!diffs.is_empty()).then(|| diffs.join(", ")), mac)
}

/// The underlay of this network namespace.
pub(crate) async fn underlay(node_ip: Ipv4Addr, iface: Option<&str>) -> Result<Underlay, PodNetError> {
    find_underlay(&run("ip", &["-j", "-4", "addr", "show"], None).await?, node_ip, iface)
}

/// Creates the device or keeps a compatible one; returns the MAC it has
/// (a kept device keeps its own).
pub(crate) async fn ensure(spec: &Spec<'_>) -> Result<Mac, PodNetError> {
    let mut mac = spec.mac;
    let existing = run("ip", &["-d", "-j", "link", "show", "dev", spec.name], None).await.ok();
    let create = match existing.as_deref().map(|j| incompatible(j, spec)) {
        None => true,
        Some((None, have)) => {
            mac = have.unwrap_or(mac);
            false
        }
        Some((Some(why), _)) => {
            tracing::warn!(device = spec.name, reason = %why, "VXLAN device has another configuration; recreating it");
            run("ip", &["link", "del", "dev", spec.name], None).await?;
            true
        }
    };
    let mtu = spec.mtu.to_string();
    if create {
        let (vni, port, local, mac_s) =
            (spec.vni.to_string(), spec.port.to_string(), spec.local.to_string(), mac.to_string());
        let args = [
            "link",
            "add",
            spec.name,
            "address",
            &mac_s,
            "mtu",
            &mtu,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dev",
            spec.parent,
            "dstport",
            &port,
            "nolearning",
        ];
        run("ip", &args, None).await?;
        tracing::info!(device = spec.name, vni = spec.vni, port = spec.port, parent = spec.parent, mtu = spec.mtu, mac = %mac, "created the VXLAN device");
    }
    // The one /32 address: the source of this node's traffic to remote pods.
    let want = format!("{}/32", spec.address);
    let addrs = run("ip", &["-j", "-4", "addr", "show", "dev", spec.name], None).await?;
    let mut script = String::new();
    for other in addresses(&addrs).into_iter().filter(|a| *a != want) {
        script.push_str(&format!("addr del {other} dev {}\n", spec.name));
    }
    script.push_str(&format!("addr replace {want} dev {}\nlink set dev {} mtu {mtu} up\n", spec.name, spec.name));
    run("ip", &["-batch", "-"], Some(&script)).await?;
    Ok(mac)
}

/// Whether the device exists.
pub(crate) async fn exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name], None).await.is_ok()
}

/// `a.b.c.d/len` of every IPv4 address in `ip -j -4 addr show dev D`.
fn addresses(json: &str) -> Vec<String> {
    let Ok(serde_json::Value::Array(links)) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    links
        .iter()
        .flat_map(|l| l.get("addr_info").and_then(|a| a.as_array()).cloned().unwrap_or_default())
        .filter_map(|a| Some(format!("{}/{}", a.get("local")?.as_str()?, a.get("prefixlen")?.as_u64()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRS: &str = r#"[{"ifindex":1,"ifname":"lo","mtu":65536,"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},{"ifindex":2,"ifname":"eth0","mtu":9000,"addr_info":[{"family":"inet","local":"192.168.122.11","prefixlen":24}]},{"ifindex":3,"ifname":"rkube0","mtu":1450,"addr_info":[{"family":"inet","local":"10.244.0.1","prefixlen":24}]}]"#;

    #[test]
    fn the_underlay_is_the_node_ips_interface_or_the_named_one() {
        let u = find_underlay(ADDRS, Ipv4Addr::new(192, 168, 122, 11), None).expect("eth0");
        assert_eq!(u, Underlay { name: "eth0".into(), mtu: 9000 });
        let u = find_underlay(ADDRS, Ipv4Addr::new(192, 168, 122, 11), Some("rkube0")).expect("named");
        assert_eq!(u.name, "rkube0");
        let e = find_underlay(ADDRS, Ipv4Addr::new(192, 168, 122, 99), None).expect_err("nobody holds it");
        assert!(e.to_string().contains("no interface holds the node IP 192.168.122.99"), "{e}");
        assert!(find_underlay(ADDRS, Ipv4Addr::new(127, 0, 0, 1), None).is_err(), "never over lo");
        assert!(matches!(
            find_underlay(ADDRS, Ipv4Addr::new(192, 168, 122, 11), Some("eth9")),
            Err(PodNetError::MissingInterface(_))
        ));
    }

    fn spec() -> Spec<'static> {
        Spec {
            name: "rkube.1",
            vni: 1,
            port: 8472,
            local: Ipv4Addr::new(192, 168, 50, 1),
            parent: "eth0",
            mtu: 1450,
            mac: Mac::derived("x"),
            address: Ipv4Addr::new(10, 244, 1, 0),
        }
    }

    // `ip -d -j link show dev rkube.1` of iproute2 6.1 (trimmed).
    const LINK: &str = r#"[{"ifindex":3,"ifname":"rkube.1","mtu":1450,"address":"0a:00:00:00:00:01","linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"192.168.50.1","link":"eth0","port_range":{"low":0,"high":0},"port":8472,"learning":false,"ttl":0}}}]"#;

    #[test]
    fn a_matching_device_is_kept_with_its_mac_and_another_is_replaced() {
        let (why, mac) = incompatible(LINK, &spec());
        assert_eq!(why, None);
        assert_eq!(mac, Some("0a:00:00:00:00:01".parse().expect("mac")));
        let moved = Spec { local: Ipv4Addr::new(192, 168, 50, 9), ..spec() };
        let (why, _) = incompatible(LINK, &moved);
        assert!(why.is_some_and(|w| w.contains("local")));
        let (why, _) = incompatible(&LINK.replace("\"vxlan\"", "\"bridge\""), &spec());
        assert!(why.is_some_and(|w| w.contains("not vxlan")));
        let (why, _) = incompatible(&LINK.replace("\"learning\":false", "\"learning\":true"), &spec());
        assert!(why.is_some_and(|w| w.contains("learning")));
    }

    #[test]
    fn device_addresses_are_listed_with_their_prefix() {
        let json = r#"[{"ifname":"rkube.1","addr_info":[{"family":"inet","local":"10.244.1.0","prefixlen":32},{"family":"inet","local":"10.244.7.0","prefixlen":32}]}]"#;
        assert_eq!(addresses(json), ["10.244.1.0/32", "10.244.7.0/32"]);
    }
}
