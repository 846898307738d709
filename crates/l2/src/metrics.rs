//! Counters of the announcer, in the Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) static ANNOUNCED: AtomicU64 = AtomicU64::new(0);
pub(crate) static TAKEOVERS: AtomicU64 = AtomicU64::new(0);
pub(crate) static RELEASES: AtomicU64 = AtomicU64::new(0);
pub(crate) static ARP_REPLIES: AtomicU64 = AtomicU64::new(0);
pub(crate) static GRATUITOUS: AtomicU64 = AtomicU64::new(0);

/// `rkube_l2_*` metrics of this node.
pub fn metrics() -> String {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    format!(
        "# HELP rkube_l2_announced_addresses LoadBalancer addresses this node answers ARP for.\n\
         # TYPE rkube_l2_announced_addresses gauge\nrkube_l2_announced_addresses {}\n\
         # HELP rkube_l2_takeovers_total Addresses this node took over.\n\
         # TYPE rkube_l2_takeovers_total counter\nrkube_l2_takeovers_total {}\n\
         # HELP rkube_l2_releases_total Addresses this node gave up.\n\
         # TYPE rkube_l2_releases_total counter\nrkube_l2_releases_total {}\n\
         # HELP rkube_l2_arp_replies_total ARP replies sent.\n\
         # TYPE rkube_l2_arp_replies_total counter\nrkube_l2_arp_replies_total {}\n\
         # HELP rkube_l2_gratuitous_arp_total Gratuitous ARP packets sent.\n\
         # TYPE rkube_l2_gratuitous_arp_total counter\nrkube_l2_gratuitous_arp_total {}\n",
        g(&ANNOUNCED),
        g(&TAKEOVERS),
        g(&RELEASES),
        g(&ARP_REPLIES),
        g(&GRATUITOUS),
    )
}
