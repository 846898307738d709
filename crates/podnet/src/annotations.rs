//! flannel's Node annotations (`pkg/subnet/kube/annotations.go`, prefix
//! `flannel.alpha.coreos.com/`): how a node tells the others where its pods
//! are reached, and how they are read back into a [`Peer`].

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
/// `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`.
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// An Ethernet address (a VTEP's MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally administered unicast address derived from `seed` (FNV-1a), so
    /// a node keeps its VTEP MAC when its device is recreated.
    pub fn derived(seed: &str) -> Mac {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        // Bit 1 of the first octet: locally administered; bit 0 clear: unicast.
        Mac([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("{s:?} is not a MAC address (six hex octets separated by ':')"));
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(&parts) {
            if p.len() != 2 {
                return Err(format!("{s:?} is not a MAC address (octet {p:?})"));
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address (octet {p:?})"))?;
        }
        Ok(Mac(out))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BackendData {
    #[serde(rename = "VNI")]
    vni: u32,
    #[serde(rename = "VtepMAC")]
    vtep_mac: String,
}

/// The annotations a node publishes for its VXLAN device.
pub fn for_node(public_ip: Ipv4Addr, vni: u32, mac: Mac) -> BTreeMap<String, String> {
    let data = serde_json::json!({"VNI": vni, "VtepMAC": mac.to_string()}).to_string();
    BTreeMap::from([
        (BACKEND_TYPE.to_string(), "vxlan".to_string()),
        (BACKEND_DATA.to_string(), data),
        (PUBLIC_IP.to_string(), public_ip.to_string()),
        (KUBE_SUBNET_MANAGER.to_string(), "true".to_string()),
    ])
}

/// Another node of the overlay: where its pods are and how to reach them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub node: String,
    pub pod_cidr: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub vtep_mac: Mac,
    pub vni: u32,
}

impl Peer {
    /// The next hop of the route to its pods (flannel: the subnet's IP).
    pub fn gateway(&self) -> Ipv4Addr {
        self.pod_cidr.network()
    }
}

/// Reads a Node's overlay data: `Ok(None)` while the node has not set up its
/// device (no pod CIDR or no annotations yet), an error for data that is there
/// but unusable (the caller logs it and leaves that node out).
pub fn peer(node: &Node) -> Result<Option<Peer>, String> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let ann = node.metadata.annotations.as_ref();
    let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
    let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) else { return Ok(None) };
    let (Some(kind), Some(data), Some(ip)) = (get(BACKEND_TYPE), get(BACKEND_DATA), get(PUBLIC_IP)) else {
        return Ok(None);
    };
    if kind != "vxlan" {
        return Err(format!("node {name}: backend-type {kind:?}, only \"vxlan\" is supported"));
    }
    let pod_cidr: Ipv4Net = cidr.parse().map_err(|_| format!("node {name}: podCIDR {cidr:?} is not an IPv4 CIDR"))?;
    let public_ip: Ipv4Addr =
        ip.parse().map_err(|_| format!("node {name}: {PUBLIC_IP} {ip:?} is not an IPv4 address"))?;
    let data: BackendData =
        serde_json::from_str(data).map_err(|e| format!("node {name}: {BACKEND_DATA} {data:?}: {e}"))?;
    let vtep_mac = data.vtep_mac.parse().map_err(|e| format!("node {name}: {BACKEND_DATA}: {e}"))?;
    Ok(Some(Peer { node: name, pod_cidr: pod_cidr.trunc(), public_ip, vtep_mac, vni: data.vni }))
}

/// The VTEP MAC a Node already publishes (kept across device re-creation, as
/// flannel's `GetStoredMacAddresses`).
pub fn stored_mac(node: &Node) -> Option<Mac> {
    let data = node.metadata.annotations.as_ref()?.get(BACKEND_DATA)?;
    let data: BackendData = serde_json::from_str(data).ok()?;
    data.vtep_mac.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ann: BTreeMap<String, String>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": ann},
            "spec": {"podCIDR": cidr},
        }))
        .expect("node")
    }

    #[test]
    fn macs_parse_print_and_derive_locally_administered_unicast() {
        let m: Mac = "0A:1b:2c:3d:4e:5f".parse().expect("mac");
        assert_eq!(m.to_string(), "0a:1b:2c:3d:4e:5f");
        assert!("0a:1b:2c:3d:4e".parse::<Mac>().is_err());
        assert!("0a:1b:2c:3d:4e:zz".parse::<Mac>().is_err());
        assert!("0a:1b:2c:3d:4e:5".parse::<Mac>().is_err());
        let d = Mac::derived("node1/192.168.122.11");
        assert_eq!(d, Mac::derived("node1/192.168.122.11"));
        assert_ne!(d, Mac::derived("node2/192.168.122.12"));
        assert_eq!(d.0[0] & 0x03, 0x02, "{d}");
    }

    #[test]
    fn a_node_reads_back_what_it_publishes() {
        let mac = Mac::derived("n2");
        let ann = for_node(Ipv4Addr::new(192, 168, 122, 12), 1, mac);
        assert_eq!(ann[BACKEND_DATA], format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}"));
        let n = node("n2", Some("10.244.2.0/24"), ann);
        let p = peer(&n).expect("valid").expect("ready");
        assert_eq!(p.pod_cidr.to_string(), "10.244.2.0/24");
        assert_eq!(p.gateway(), Ipv4Addr::new(10, 244, 2, 0));
        assert_eq!(p.public_ip, Ipv4Addr::new(192, 168, 122, 12));
        assert_eq!((p.vtep_mac, p.vni), (mac, 1));
        assert_eq!(stored_mac(&n), Some(mac));
    }

    #[test]
    fn nodes_not_set_up_are_skipped_and_bad_data_is_an_error() {
        let mac = Mac::derived("n3");
        let ann = for_node(Ipv4Addr::new(192, 168, 122, 13), 1, mac);
        assert_eq!(peer(&node("n3", None, ann.clone())), Ok(None), "no podCIDR yet");
        assert_eq!(peer(&node("n3", Some("10.244.3.0/24"), BTreeMap::new())), Ok(None), "no annotations yet");
        let mut other = ann.clone();
        other.insert(BACKEND_TYPE.into(), "host-gw".into());
        let err = peer(&node("n3", Some("10.244.3.0/24"), other)).expect_err("host-gw");
        assert!(err.contains("only \"vxlan\""), "{err}");
        let mut bad = ann;
        bad.insert(BACKEND_DATA.into(), "{\"VNI\":1,\"VtepMAC\":\"nope\"}".into());
        let err = peer(&node("n3", Some("10.244.3.0/24"), bad)).expect_err("bad mac");
        assert!(err.contains("not a MAC address"), "{err}");
    }
}
