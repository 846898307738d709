//! Putting the node-local DNS address on the node. The machines rkube runs on may
//! have no `dummy` interface driver (upstream node-local-dns creates a dummy
//! `nodelocaldns` link), so the address goes on `lo`, which every network
//! namespace has.

use std::net::Ipv4Addr;

/// Upstream's default node-local DNS address (k8s.io/dns `node-cache`).
pub const NODE_LOCAL_DNS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);

/// The commands (argv vectors) that give this node `addr` for the node-local
/// cache: `lo` up, and `addr/32` on `lo` (`replace` is idempotent). Run them in the
/// node's network namespace before [`crate::NodeLocalCache::start`].
pub fn link_local_setup(addr: Ipv4Addr) -> Vec<Vec<String>> {
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        argv(&["ip", "link", "set", "lo", "up"]),
        argv(&["ip", "-4", "addr", "replace", &format!("{addr}/32"), "dev", "lo"]),
    ]
}

/// The commands that take `addr` off `lo` again.
pub fn link_local_teardown(addr: Ipv4Addr) -> Vec<Vec<String>> {
    vec![["ip", "-4", "addr", "del", &format!("{addr}/32"), "dev", "lo"].iter().map(|s| s.to_string()).collect()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_puts_the_address_on_lo() {
        let cmds = link_local_setup(NODE_LOCAL_DNS_ADDR);
        assert_eq!(cmds[0], ["ip", "link", "set", "lo", "up"]);
        assert_eq!(cmds[1], ["ip", "-4", "addr", "replace", "169.254.20.10/32", "dev", "lo"]);
        assert_eq!(
            link_local_teardown(NODE_LOCAL_DNS_ADDR)[0],
            ["ip", "-4", "addr", "del", "169.254.20.10/32", "dev", "lo"]
        );
    }
}
