//! In-memory ClusterIP and NodePort allocators, ported from upstream
//! `pkg/registry/core/service/ipallocator` (`bitmap.go`, `ipallocator.go`,
//! `interfaces.go`), `pkg/registry/core/service/portallocator/allocator.go` and
//! `pkg/registry/core/service/allocator/bitmap.go` (random scan with offset,
//! KEP-3070 / KEP-3668).
//!
//! Both allocators keep a bitmap of the usable values. Dynamic allocation picks a
//! random free value, preferring the *upper* part of the range; the lower part
//! (`range_offset` values) is left for static requests (`.1` for `kubernetes`,
//! `.10` for DNS, fixed NodePorts) and only used once the upper part is full.
//! Not thread-safe by design: the API server wraps them in a mutex and rebuilds
//! them from the stored Services at start (via [`IpAllocator::allocate`] /
//! [`PortAllocator::allocate`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;

/// Allocation failures, printed with upstream's messages so the API server can
/// put them in `FieldError::invalid(path, value, err.to_string())`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// Upstream `ErrFull`.
    #[error("range is full")]
    Full,
    /// ipallocator `ErrAllocated`.
    #[error("provided IP is already allocated")]
    IpAlreadyAllocated,
    /// ipallocator `ErrNotInRange` (network and broadcast addresses included).
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {valid_range}")]
    IpNotInRange { ip: Ipv4Addr, valid_range: Ipv4Net },
    /// portallocator `ErrAllocated`.
    #[error("provided port is already allocated")]
    PortAlreadyAllocated,
    /// portallocator `ErrNotInRange`; `valid_ports` is e.g. `30000-32767`.
    #[error("provided port is not in the valid range. The range of valid ports is {valid_ports}")]
    PortNotInRange { valid_ports: String },
}

/// A small xorshift64* generator: enough to make allocation order unguessable
/// without a `rand` dependency. Seeded from the std hasher's per-process random keys.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn from_entropy() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(std::process::id() as u64);
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        Self::seeded(h.finish())
    }

    fn seeded(seed: u64) -> Self {
        // splitmix64 step so that small seeds still give a good state; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish value in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Bitmap over offsets `0..max` with upstream's `randomScanStrategyWithOffset`.
#[derive(Clone, Debug)]
struct Bitmap {
    words: Vec<u64>,
    max: u64,
    count: u64,
    /// Size of the lower (static-preferred) block.
    offset: u64,
    rng: Rng,
}

impl Bitmap {
    fn new(max: u64, offset: u64, rng: Rng) -> Self {
        let words = vec![0u64; max.div_ceil(64) as usize];
        Bitmap { words, max, count: 0, offset: offset.min(max), rng }
    }

    fn has(&self, i: u64) -> bool {
        i < self.max && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Sets the bit; false if it was already set.
    fn set(&mut self, i: u64) -> bool {
        if self.has(i) {
            return false;
        }
        self.words[(i / 64) as usize] |= 1 << (i % 64);
        self.count += 1;
        true
    }

    fn clear(&mut self, i: u64) {
        if self.has(i) {
            self.words[(i / 64) as usize] &= !(1 << (i % 64));
            self.count -= 1;
        }
    }

    /// First free offset in `from..to` (scanning whole words where possible).
    fn first_free(&self, from: u64, to: u64) -> Option<u64> {
        let mut i = from;
        while i < to {
            let word = self.words[(i / 64) as usize];
            if i & 63 == 0 && word == u64::MAX {
                i += 64;
                continue;
            }
            if word & (1 << (i % 64)) == 0 {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// A free offset in `lo..hi`, starting the scan at a random point and wrapping.
    fn random_free_in(&mut self, lo: u64, hi: u64) -> Option<u64> {
        if hi <= lo {
            return None;
        }
        let start = lo + self.rng.below(hi - lo);
        self.first_free(start, hi).or_else(|| self.first_free(lo, start))
    }

    /// Upstream `randomScanStrategyWithOffset.AllocateBit`: try the upper range
    /// `[offset, max)` first, then the lower `[0, offset)`.
    fn allocate_next(&mut self) -> Option<u64> {
        if self.count >= self.max {
            return None;
        }
        let found = self.random_free_in(self.offset, self.max).or_else(|| self.random_free_in(0, self.offset))?;
        self.set(found);
        Some(found)
    }

    fn free(&self) -> u64 {
        self.max - self.count
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.max).filter(move |&i| self.has(i))
    }
}

/// Upstream ipallocator `calculateRangeOffset`: `min(max(16, size/16), 256)`,
/// 0 for ranges of at most 16 addresses. `size` counts network and broadcast.
fn ip_range_offset(cidr_size: u64) -> u64 {
    const MIN: u64 = 16;
    const MAX: u64 = 256;
    const STEP: u64 = 16;
    if cidr_size <= MIN {
        return 0;
    }
    (cidr_size / STEP).clamp(MIN, MAX)
}

/// Upstream portallocator `calculateRangeOffset`: `min(max(16, size/32), 128)`,
/// 0 for ranges of at most 16 ports.
fn port_range_offset(size: u64) -> u64 {
    const MIN: u64 = 16;
    const MAX: u64 = 128;
    const STEP: u64 = 32;
    if size <= MIN {
        return 0;
    }
    (size / STEP).clamp(MIN, MAX)
}

/// ClusterIP allocator over an IPv4 service CIDR. The network (`.0`) and broadcast
/// addresses are never handed out; everything else (including `.1`, which the
/// caller allocates for the `kubernetes` Service) is allocatable.
#[derive(Clone, Debug)]
pub struct IpAllocator {
    cidr: Ipv4Net,
    /// First usable address (network + 1).
    base: u32,
    bits: Bitmap,
}

impl IpAllocator {
    /// An allocator over `cidr` (host bits are ignored), randomly seeded.
    pub fn new(cidr: Ipv4Net) -> Self {
        Self::with_rng(cidr, Rng::from_entropy())
    }

    /// Same as [`IpAllocator::new`] with a fixed seed (deterministic, for tests).
    pub fn with_seed(cidr: Ipv4Net, seed: u64) -> Self {
        Self::with_rng(cidr, Rng::seeded(seed))
    }

    fn with_rng(cidr: Ipv4Net, rng: Rng) -> Self {
        let cidr = cidr.trunc();
        let size: u64 = 1u64 << (32 - u32::from(cidr.prefix_len()));
        // Skip the network and the broadcast address (bitmap.go: `max--` twice).
        let max = size.saturating_sub(2);
        let base = u32::from(cidr.network()).wrapping_add(1);
        IpAllocator { cidr, base, bits: Bitmap::new(max, ip_range_offset(size), rng) }
    }

    /// The service CIDR, e.g. `10.96.0.0/12`.
    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// The lower block reserved for static allocation (number of addresses).
    pub fn range_offset(&self) -> u64 {
        self.bits.offset
    }

    fn offset_of(&self, ip: Ipv4Addr) -> Option<u64> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        let off = u64::from(u32::from(ip).wrapping_sub(self.base));
        (off < self.bits.max).then_some(off)
    }

    /// True if `ip` could ever be allocated here (in the CIDR, neither network nor broadcast).
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        self.offset_of(ip).is_some()
    }

    /// The error [`IpAllocator::allocate`] would give for an address outside the
    /// usable range of `cidr`, without building an allocator.
    pub fn check_in_range(cidr: Ipv4Net, ip: Ipv4Addr) -> Result<(), AllocError> {
        let cidr = cidr.trunc();
        let usable = cidr.contains(&ip) && (cidr.prefix_len() < 31) && ip != cidr.network() && ip != cidr.broadcast();
        if usable {
            Ok(())
        } else {
            Err(AllocError::IpNotInRange { ip, valid_range: cidr })
        }
    }

    /// Reserves a random free address (upper range first). `Err(Full)` when none is left.
    pub fn allocate_next(&mut self) -> Result<Ipv4Addr, AllocError> {
        let off = self.bits.allocate_next().ok_or(AllocError::Full)?;
        Ok(Ipv4Addr::from(self.base.wrapping_add(off as u32)))
    }

    /// Reserves a specific address.
    pub fn allocate(&mut self, ip: Ipv4Addr) -> Result<(), AllocError> {
        let off = self.offset_of(ip).ok_or(AllocError::IpNotInRange { ip, valid_range: self.cidr })?;
        if self.bits.set(off) {
            Ok(())
        } else {
            Err(AllocError::IpAlreadyAllocated)
        }
    }

    /// Returns an address to the pool; releasing a free or out-of-range address is a no-op.
    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Some(off) = self.offset_of(ip) {
            self.bits.clear(off);
        }
    }

    pub fn is_allocated(&self, ip: Ipv4Addr) -> bool {
        self.offset_of(ip).is_some_and(|off| self.bits.has(off))
    }

    /// Number of addresses still free.
    pub fn free_count(&self) -> u64 {
        self.bits.free()
    }

    /// Number of addresses allocated.
    pub fn used_count(&self) -> u64 {
        self.bits.count
    }

    /// All allocated addresses, in ascending order.
    pub fn allocated(&self) -> Vec<Ipv4Addr> {
        self.bits.iter().map(|off| Ipv4Addr::from(self.base.wrapping_add(off as u32))).collect()
    }
}

/// NodePort allocator over an inclusive port range (default `30000-32767`).
#[derive(Clone, Debug)]
pub struct PortAllocator {
    range: RangeInclusive<u16>,
    bits: Bitmap,
}

impl PortAllocator {
    /// An allocator over `range`, randomly seeded.
    pub fn new(range: RangeInclusive<u16>) -> Self {
        Self::with_rng(range, Rng::from_entropy())
    }

    /// Same as [`PortAllocator::new`] with a fixed seed (deterministic, for tests).
    pub fn with_seed(range: RangeInclusive<u16>, seed: u64) -> Self {
        Self::with_rng(range, Rng::seeded(seed))
    }

    fn with_rng(range: RangeInclusive<u16>, rng: Rng) -> Self {
        let size = if range.is_empty() { 0 } else { u64::from(*range.end()) - u64::from(*range.start()) + 1 };
        PortAllocator { bits: Bitmap::new(size, port_range_offset(size), rng), range }
    }

    pub fn range(&self) -> RangeInclusive<u16> {
        self.range.clone()
    }

    /// The lower block reserved for static allocation (number of ports).
    pub fn range_offset(&self) -> u64 {
        self.bits.offset
    }

    /// Upstream `PortRange.String()`: `30000-32767`.
    pub fn range_string(range: &RangeInclusive<u16>) -> String {
        format!("{}-{}", range.start(), range.end())
    }

    /// The error [`PortAllocator::allocate`] would give for a port outside `range`.
    pub fn check_in_range(range: &RangeInclusive<u16>, port: i64) -> Result<(), AllocError> {
        if port >= i64::from(*range.start()) && port <= i64::from(*range.end()) {
            Ok(())
        } else {
            Err(AllocError::PortNotInRange { valid_ports: Self::range_string(range) })
        }
    }

    fn offset_of(&self, port: i64) -> Option<u64> {
        Self::check_in_range(&self.range, port).ok()?;
        Some((port - i64::from(*self.range.start())) as u64)
    }

    /// Reserves a random free port (upper range first). `Err(Full)` when none is left.
    pub fn allocate_next(&mut self) -> Result<u16, AllocError> {
        let off = self.bits.allocate_next().ok_or(AllocError::Full)?;
        Ok(self.range.start().wrapping_add(off as u16))
    }

    /// Reserves a specific port (an `i64` so that any requested `nodePort` value can be checked).
    pub fn allocate(&mut self, port: i64) -> Result<(), AllocError> {
        let off = self
            .offset_of(port)
            .ok_or_else(|| AllocError::PortNotInRange { valid_ports: Self::range_string(&self.range) })?;
        if self.bits.set(off) {
            Ok(())
        } else {
            Err(AllocError::PortAlreadyAllocated)
        }
    }

    /// Returns a port to the pool; releasing a free or out-of-range port is a no-op.
    pub fn release(&mut self, port: i64) {
        if let Some(off) = self.offset_of(port) {
            self.bits.clear(off);
        }
    }

    pub fn is_allocated(&self, port: i64) -> bool {
        self.offset_of(port).is_some_and(|off| self.bits.has(off))
    }

    pub fn free_count(&self) -> u64 {
        self.bits.free()
    }

    pub fn used_count(&self) -> u64 {
        self.bits.count
    }

    /// All allocated ports, ascending.
    pub fn allocated(&self) -> Vec<u16> {
        self.bits.iter().map(|off| self.range.start().wrapping_add(off as u16)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn error_messages() {
        assert_eq!(AllocError::Full.to_string(), "range is full");
        assert_eq!(AllocError::IpAlreadyAllocated.to_string(), "provided IP is already allocated");
        assert_eq!(AllocError::PortAlreadyAllocated.to_string(), "provided port is already allocated");
        let mut a = IpAllocator::with_seed(net("10.96.0.0/12"), 1);
        assert_eq!(
            a.allocate("1.2.3.4".parse().unwrap()).unwrap_err().to_string(),
            "the provided IP (1.2.3.4) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        );
        let mut p = PortAllocator::with_seed(30000..=32767, 1);
        assert_eq!(
            p.allocate(29999).unwrap_err().to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        assert_eq!(p.allocate(32768).unwrap_err(), AllocError::PortNotInRange { valid_ports: "30000-32767".into() });
        p.allocate(31111).unwrap();
        assert_eq!(p.allocate(31111).unwrap_err().to_string(), "provided port is already allocated");
    }

    #[test]
    fn ip_range_offsets_match_upstream() {
        // From upstream bitmap_test.go TestCalculateRangeOffset.
        for (cidr, want) in [
            ("192.168.1.0/28", 0),
            ("192.168.1.0/27", 16),
            ("192.168.1.0/24", 16),
            ("192.168.1.0/23", 32),
            ("192.168.1.0/22", 64),
            ("192.168.1.0/21", 128),
            ("192.168.1.0/20", 256),
            ("192.168.1.0/12", 256),
        ] {
            assert_eq!(IpAllocator::with_seed(net(cidr), 0).range_offset(), want, "{cidr}");
        }
        assert_eq!(PortAllocator::with_seed(30000..=32767, 0).range_offset(), 86);
        assert_eq!(PortAllocator::with_seed(30000..=30015, 0).range_offset(), 0);
        assert_eq!(PortAllocator::with_seed(30000..=30099, 0).range_offset(), 16);
        assert_eq!(PortAllocator::with_seed(1..=65535, 0).range_offset(), 128);
    }

    #[test]
    fn ip_whole_range_no_duplicates_then_full() {
        let cidr = net("192.168.1.0/24");
        let mut a = IpAllocator::with_seed(cidr, 42);
        assert_eq!(a.free_count(), 254);
        let mut seen = HashSet::new();
        for i in 0..254 {
            let ip = a.allocate_next().unwrap();
            assert!(a.in_range(ip), "{ip}");
            assert_ne!(ip, cidr.network());
            assert_ne!(ip, cidr.broadcast());
            assert!(seen.insert(ip), "duplicate {ip}");
            // Upper range (offset 16 -> .17 and up) is used up before the lower one.
            if i < 254 - 16 {
                assert!(ip.octets()[3] >= 17, "{ip} allocated from the static block too early");
            }
        }
        assert_eq!(a.free_count(), 0);
        assert_eq!(a.allocate_next(), Err(AllocError::Full));
        assert_eq!(a.allocated().len(), 254);
    }

    #[test]
    fn ip_network_and_broadcast_skipped() {
        let mut a = IpAllocator::with_seed(net("10.0.0.0/30"), 7);
        assert_eq!(a.free_count(), 2);
        let got: HashSet<_> = [a.allocate_next().unwrap(), a.allocate_next().unwrap()].into();
        assert_eq!(got, HashSet::from(["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()]));
        assert_eq!(a.allocate_next(), Err(AllocError::Full));
        for ip in ["10.0.0.0", "10.0.0.3"] {
            assert!(matches!(a.allocate(ip.parse().unwrap()), Err(AllocError::IpNotInRange { .. })));
        }
        assert!(IpAllocator::check_in_range(net("10.0.0.0/30"), "10.0.0.3".parse().unwrap()).is_err());
        assert!(IpAllocator::check_in_range(net("10.0.0.0/30"), "10.0.0.2".parse().unwrap()).is_ok());
        assert!(IpAllocator::with_seed(net("10.0.0.1/32"), 0).allocate_next().is_err());
        assert!(IpAllocator::with_seed(net("10.0.0.0/31"), 0).allocate_next().is_err());
    }

    #[test]
    fn ip_static_release_reuse() {
        let mut a = IpAllocator::with_seed(net("10.96.0.0/12"), 3);
        let one: Ipv4Addr = "10.96.0.1".parse().unwrap();
        let dns: Ipv4Addr = "10.96.0.10".parse().unwrap();
        a.allocate(one).unwrap();
        a.allocate(dns).unwrap();
        assert_eq!(a.allocate(one), Err(AllocError::IpAlreadyAllocated));
        assert!(a.is_allocated(one));
        assert_eq!(a.used_count(), 2);
        // Dynamic allocation avoids the first 256 addresses while the upper part has room.
        for _ in 0..1000 {
            let ip = a.allocate_next().unwrap();
            assert!(u32::from(ip) >= u32::from(Ipv4Addr::new(10, 96, 1, 1)), "{ip}");
        }
        a.release(one);
        assert!(!a.is_allocated(one));
        a.allocate(one).unwrap();
        a.release("1.2.3.4".parse().unwrap()); // out of range: no-op
        assert_eq!(a.used_count(), 1002);
    }

    #[test]
    fn ip_release_then_next_reuses_only_free() {
        let mut a = IpAllocator::with_seed(net("10.0.0.0/29"), 9);
        let all: Vec<_> = (0..6).map(|_| a.allocate_next().unwrap()).collect();
        assert_eq!(a.allocate_next(), Err(AllocError::Full));
        a.release(all[3]);
        assert_eq!(a.allocate_next(), Ok(all[3]));
    }

    #[test]
    fn ports_whole_range() {
        let mut p = PortAllocator::with_seed(30000..=32767, 11);
        assert_eq!(p.free_count(), 2768);
        let mut seen = HashSet::new();
        for i in 0..2768 {
            let port = p.allocate_next().unwrap();
            assert!((30000..=32767).contains(&port));
            assert!(seen.insert(port), "duplicate {port}");
            if i < 2768 - 86 {
                assert!(port >= 30086, "{port} allocated from the static block too early");
            }
        }
        assert_eq!(p.allocate_next(), Err(AllocError::Full));
        p.release(31111);
        assert!(!p.is_allocated(31111));
        assert_eq!(p.allocate_next(), Ok(31111));
        assert_eq!(p.allocated().len(), 2768);
    }

    #[test]
    fn seeds_differ_and_are_deterministic() {
        let take = |seed| {
            let mut a = IpAllocator::with_seed(net("10.96.0.0/12"), seed);
            (0..5).map(|_| a.allocate_next().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
        let mut a = IpAllocator::new(net("10.96.0.0/12"));
        let mut b = IpAllocator::new(net("10.96.0.0/12"));
        let xa: Vec<_> = (0..5).map(|_| a.allocate_next().unwrap()).collect();
        let xb: Vec<_> = (0..5).map(|_| b.allocate_next().unwrap()).collect();
        assert_ne!(xa, xb);
    }
}
