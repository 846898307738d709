//! ARP on one interface through an `AF_PACKET` socket: answer requests for the
//! addresses this node announces, and send gratuitous ARP when it takes one over
//! (upstream: metallb `internal/layer2/arp.go`). The addresses are never added to
//! the interface, so no node-local service answers on them.

use std::collections::HashSet;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, RwLock};

const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// Ethernet header (14) + ARP for IPv4 over Ethernet (28).
const FRAME_LEN: usize = 42;
const BROADCAST: [u8; 6] = [0xff; 6];
/// How often a receiving thread wakes up to see whether it should end.
pub const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// The addresses answered on one interface; shared with its receiving thread.
pub type Announced = Arc<RwLock<HashSet<Ipv4Addr>>>;

/// Until when this node may answer at all (self-fencing), checked by the receiving
/// thread on every request, so a loop stuck on the API cannot keep it answering.
#[derive(Debug)]
pub struct Fence {
    epoch: std::time::Instant,
    /// Milliseconds since `epoch`; 0: not allowed.
    until_ms: std::sync::atomic::AtomicU64,
    /// The announcer is gone: receiving threads end.
    stopped: std::sync::atomic::AtomicBool,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            epoch: std::time::Instant::now(),
            until_ms: std::sync::atomic::AtomicU64::new(0),
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Fence {
    /// No more answers, and the receiving threads end within [`RECV_TIMEOUT`].
    pub fn stop(&self) {
        self.until_ms.store(0, std::sync::atomic::Ordering::SeqCst);
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Allows answering until `until`.
    pub fn extend(&self, until: std::time::Instant) {
        let ms = u64::try_from(until.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        self.until_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn open(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        now < self.until_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An `AF_PACKET` socket bound to one interface for ARP.
#[derive(Debug)]
pub struct ArpSocket {
    fd: OwnedFd,
    ifindex: i32,
    pub ifname: String,
    pub mac: [u8; 6],
}

impl ArpSocket {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open(ifname: &str) -> io::Result<ArpSocket> {
        let proto = i32::from(ETH_P_ARP.to_be());
        // SAFETY: plain socket(2) call; the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = std::ffi::CString::new(ifname).map_err(|_| io::Error::other("interface name has a NUL"))?;
        // SAFETY: name is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::other(format!("no interface {ifname}")));
        }
        let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::other("interface index out of range"))?;
        let mac = hwaddr(&fd, ifname)?;
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ARP.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: sll is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval { tv_sec: 0, tv_usec: RECV_TIMEOUT.as_micros() as libc::suseconds_t };
        // SAFETY: tv is a valid timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ArpSocket { fd, ifindex, ifname: ifname.to_string(), mac })
    }

    fn send(&self, frame: &[u8; FRAME_LEN], dst: [u8; 6]) -> io::Result<()> {
        // SAFETY: as in open.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ARP.to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&dst);
        // SAFETY: frame and sll are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// A gratuitous ARP request for `ip` (sender = target = `ip`), broadcast: LAN
    /// neighbours replace a cached MAC for it (Linux `arp_is_garp` overrides the entry).
    pub fn gratuitous(&self, ip: Ipv4Addr) -> io::Result<()> {
        let frame = build(ARP_REQUEST, BROADCAST, self.mac, ip, [0; 6], ip);
        self.send(&frame, BROADCAST)
    }

    /// Receives frames until the socket fails or `fence` is stopped, answering requests
    /// for addresses in `announced` while the fence is open; `on_reply` is called after
    /// each reply sent.
    pub fn serve(&self, announced: &Announced, fence: &Fence, on_reply: &dyn Fn(Ipv4Addr)) -> io::Result<()> {
        let mut buf = [0u8; 1514];
        loop {
            if fence.stopped() {
                return Ok(());
            }
            // SAFETY: as in open.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buf and from are valid for the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
                {
                    continue;
                }
                return Err(e);
            }
            // Our own transmissions come back as PACKET_OUTGOING: never answer those.
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let Some(req) = parse_request(&buf[..n as usize]) else { continue };
            // Another node's gratuitous ARP (sender = target) is news, not a question.
            if req.sender_ip == req.target_ip {
                continue;
            }
            let wanted = fence.open() && announced.read().map(|a| a.contains(&req.target_ip)).unwrap_or(false);
            if !wanted {
                continue;
            }
            let frame = build(ARP_REPLY, req.sender_mac, self.mac, req.target_ip, req.sender_mac, req.sender_ip);
            match self.send(&frame, req.sender_mac) {
                Ok(()) => on_reply(req.target_ip),
                Err(e) => tracing::debug!(interface = %self.ifname, error = %e, "ARP reply failed"),
            }
        }
    }
}

/// SIOCGIFHWADDR: the interface's MAC address.
fn hwaddr(fd: &OwnedFd, ifname: &str) -> io::Result<[u8; 6]> {
    // SAFETY: ifreq is plain data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = ifname.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::other(format!("interface name {ifname} too long")));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR with a valid ifreq.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled ifru_hwaddr for this request.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// An ARP request seen on the wire.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// Parses an Ethernet frame holding an ARP request for IPv4.
pub fn parse_request(frame: &[u8]) -> Option<Request> {
    if frame.len() < FRAME_LEN || frame[12..14] != ETH_P_ARP.to_be_bytes() {
        return None;
    }
    let a = &frame[14..];
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, op request.
    if a[0..2] != [0, 1] || a[2..4] != [8, 0] || a[4] != 6 || a[5] != 4 || a[6..8] != ARP_REQUEST.to_be_bytes() {
        return None;
    }
    let mut sender_mac = [0u8; 6];
    sender_mac.copy_from_slice(&a[8..14]);
    let sender_ip = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
    let target_ip = Ipv4Addr::new(a[24], a[25], a[26], a[27]);
    Some(Request { sender_mac, sender_ip, target_ip })
}

/// An Ethernet + ARP frame.
pub fn build(
    op: u16,
    eth_dst: [u8; 6],
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&eth_dst);
    f[6..12].copy_from_slice(&sender_mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 0]);
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&sender_mac);
    f[28..32].copy_from_slice(&sender_ip.octets());
    f[32..38].copy_from_slice(&target_mac);
    f[38..42].copy_from_slice(&target_ip.octets());
    f
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_opens_until_its_deadline() {
        let f = Fence::default();
        assert!(!f.open(), "closed before the first renew");
        f.extend(std::time::Instant::now() + std::time::Duration::from_millis(200));
        assert!(f.open());
        f.extend(std::time::Instant::now());
        assert!(!f.open());
    }

    #[test]
    fn builds_and_parses_requests() {
        let me = [2, 0, 0, 0, 0, 1];
        let f = build(
            ARP_REQUEST,
            BROADCAST,
            me,
            Ipv4Addr::new(192, 168, 122, 100),
            [0; 6],
            Ipv4Addr::new(192, 168, 122, 200),
        );
        assert_eq!(
            parse_request(&f),
            Some(Request {
                sender_mac: me,
                sender_ip: Ipv4Addr::new(192, 168, 122, 100),
                target_ip: Ipv4Addr::new(192, 168, 122, 200)
            })
        );
        let reply = build(ARP_REPLY, me, me, Ipv4Addr::new(1, 2, 3, 4), me, Ipv4Addr::new(1, 2, 3, 5));
        assert_eq!(parse_request(&reply), None, "replies are not requests");
        assert_eq!(parse_request(&f[..20]), None);
        assert_eq!(mac_string(&me), "02:00:00:00:00:01");
    }
}
