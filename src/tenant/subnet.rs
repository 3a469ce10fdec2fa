//! IPv4 subnets and the allocator that hands out per-network blocks from
//! `AGENCY_SUBNET_POOL` in `AGENCY_SUBNET_PREFIX` blocks.
//!
//! Docker's default address pools (172.17.0.0/16 … 172.31.0.0/16 and 192.168.0.0/16 in /20s)
//! hold only about 29 user networks, i.e. 7 clients of four networks. So every network the
//! runner creates gets an explicit subnet from its own pool:
//!
//! - [`DEFAULT_POOL`] `10.201.0.0/16` stays clear of Docker's default pools and of the
//!   most common LAN ranges (10.0.0.0/24, 10.0.1.0/24, 192.168.x.0/24).
//! - [`DEFAULT_PREFIX`] `/26` gives each network 64 addresses (61 for containers after the
//!   network, gateway and broadcast addresses) and the default pool 1024 blocks, i.e. 256
//!   clients. A /24 would hold only 64 clients per /16; a /27 (29 containers) is tight for a
//!   busy backend network.
//!
//! Race safety: the allocator only proposes blocks. Callers create the network with the
//! explicit subnet; when Docker answers that the pool overlaps (another runner, perhaps with a
//! different `AGENCY_ROOT`, took the block in between) they [`Allocator::mark_taken`] it and
//! ask for the next one. Every failed attempt removes a block from the candidates, so the loop
//! ends either with a network or with "pool is full".

use std::{fmt, net::Ipv4Addr, str::FromStr};

use anyhow::{Result, bail};

/// The pool used when `AGENCY_SUBNET_POOL` is not set.
pub const DEFAULT_POOL: &str = "10.201.0.0/16";
/// The block size used when `AGENCY_SUBNET_PREFIX` is not set.
pub const DEFAULT_PREFIX: u8 = 26;
/// Blocks smaller than this leave no room for containers (network, gateway, broadcast).
pub const MAX_PREFIX: u8 = 29;

/// An IPv4 network in CIDR notation, host bits zero (`10.201.0.64/26`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    base: u32,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) }
}

impl Ipv4Net {
    /// A network from an address and prefix; the address must have no host bits set.
    pub fn new(address: Ipv4Addr, prefix: u8) -> Result<Self> {
        if prefix > 32 {
            bail!("prefix /{prefix} is out of range; an IPv4 prefix is /0 to /32");
        }
        let base = u32::from(address);
        if base & !mask(prefix) != 0 {
            let network = Ipv4Addr::from(base & mask(prefix));
            bail!("{address}/{prefix} has host bits set; did you mean {network}/{prefix}?");
        }
        Ok(Self { base, prefix })
    }

    /// Like [`Ipv4Net::new`] but clears host bits (`10.0.0.5/24` becomes `10.0.0.0/24`).
    pub fn truncating(address: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        Self { base: u32::from(address) & mask(prefix), prefix }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses in the network (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    fn last(&self) -> u32 {
        self.base | !mask(self.prefix)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last())
    }

    /// The first usable address, which Docker gives the bridge (the gateway) when none is set.
    pub fn first_host(&self) -> Ipv4Addr {
        if self.prefix >= 31 { self.network() } else { Ipv4Addr::from(self.base + 1) }
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == self.base
    }

    /// True when the two networks share at least one address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }

    /// True when `other` lies entirely inside `self`.
    pub fn covers(&self, other: &Ipv4Net) -> bool {
        self.prefix <= other.prefix && self.contains(other.network())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = anyhow::Error;

    /// Parses `a.b.c.d/n`; host bits must be zero.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let Some((address, prefix)) = text.split_once('/') else {
            bail!("`{text}` is not an IPv4 CIDR like 10.201.0.0/16 (the /prefix is missing)");
        };
        let Ok(address) = address.parse::<Ipv4Addr>() else {
            bail!("`{text}` is not an IPv4 CIDR like 10.201.0.0/16 (bad address `{address}`)");
        };
        let prefix = match prefix.parse::<u8>() {
            Ok(value) if value <= 32 && prefix.bytes().all(|b| b.is_ascii_digit()) => value,
            _ => bail!("`{text}` is not an IPv4 CIDR like 10.201.0.0/16 (bad prefix `/{prefix}`)"),
        };
        Self::new(address, prefix)
    }
}

/// Parses `AGENCY_SUBNET_PREFIX` (`26` or `/26`).
pub fn parse_prefix(text: &str) -> Result<u8> {
    let trimmed = text.trim().trim_start_matches('/');
    match trimmed.parse::<u8>() {
        Ok(prefix) if prefix <= 32 && !trimmed.starts_with('+') => Ok(prefix),
        _ => bail!("AGENCY_SUBNET_PREFIX `{text}` is not a prefix length like 26"),
    }
}

/// A pool and the block size carved out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    net: Ipv4Net,
    prefix: u8,
}

/// How much of a pool is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Blocks that overlap an existing network.
    pub used: u64,
    /// Blocks in the pool.
    pub total: u64,
}

impl Pool {
    pub fn new(net: Ipv4Net, prefix: u8) -> Result<Self> {
        if prefix < net.prefix() {
            bail!(
                "AGENCY_SUBNET_PREFIX /{prefix} is larger than the pool {net}; use a prefix of /{} or more",
                net.prefix()
            );
        }
        if prefix > MAX_PREFIX {
            bail!("AGENCY_SUBNET_PREFIX /{prefix} leaves no room for containers; use /{MAX_PREFIX} or less");
        }
        Ok(Self { net, prefix })
    }

    /// The pool from the values of `AGENCY_SUBNET_POOL` and `AGENCY_SUBNET_PREFIX`
    /// (unset or empty means the default).
    pub fn from_settings(pool: Option<&str>, prefix: Option<&str>) -> Result<Self> {
        let pool_text = pool.map(str::trim).filter(|p| !p.is_empty()).unwrap_or(DEFAULT_POOL);
        let net = pool_text.parse::<Ipv4Net>().map_err(|e| anyhow::anyhow!("AGENCY_SUBNET_POOL: {e}"))?;
        let prefix = match prefix.map(str::trim).filter(|p| !p.is_empty()) {
            Some(text) => parse_prefix(text)?,
            None => DEFAULT_PREFIX,
        };
        Self::new(net, prefix)
    }

    pub fn net(&self) -> Ipv4Net {
        self.net
    }

    pub fn block_prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of blocks in the pool.
    pub fn capacity(&self) -> u64 {
        1u64 << (self.prefix - self.net.prefix())
    }

    fn block(&self, index: u64) -> Ipv4Net {
        let step = 1u64 << (32 - u32::from(self.prefix));
        Ipv4Net { base: self.net.base + (index * step) as u32, prefix: self.prefix }
    }

    /// True when `net` is exactly one of this pool's blocks.
    pub fn is_block(&self, net: &Ipv4Net) -> bool {
        net.prefix() == self.prefix && self.net.covers(net)
    }

    /// Up to `count` free blocks in address order, skipping every block that overlaps `taken`.
    /// Fails, saying how full the pool is, when fewer than `count` blocks are free.
    pub fn next_free(&self, taken: &[Ipv4Net], count: usize) -> Result<Vec<Ipv4Net>> {
        let mut relevant: Vec<Ipv4Net> = taken.iter().copied().filter(|t| t.overlaps(&self.net)).collect();
        relevant.sort();
        let mut found = Vec::with_capacity(count);
        let mut index = 0u64;
        let capacity = self.capacity();
        // Walk the blocks; jump over a taken range in one step so a nearly full pool stays cheap.
        while found.len() < count && index < capacity {
            let block = self.block(index);
            match relevant.iter().filter(|t| t.overlaps(&block)).map(|t| t.last()).max() {
                None => {
                    found.push(block);
                    index += 1;
                }
                Some(last) => {
                    let step = 1u64 << (32 - u32::from(self.prefix));
                    let next_base = u64::from(last) + 1;
                    index = next_base.saturating_sub(u64::from(self.net.base)).div_ceil(step).max(index + 1);
                }
            }
        }
        if found.len() < count {
            let usage = self.usage(taken);
            let what = if found.is_empty() {
                format!("has no free /{} block left ({} of {} in use)", self.prefix, usage.used, usage.total)
            } else {
                format!("has only {} free /{} block(s) left and {count} are needed", found.len(), self.prefix)
            };
            bail!(
                "the subnet pool {} {what}; set AGENCY_SUBNET_POOL to a larger or another free range, \
                 or AGENCY_SUBNET_PREFIX to smaller blocks",
                self.net
            );
        }
        Ok(found)
    }

    /// How many blocks overlap one of `taken`.
    pub fn usage(&self, taken: &[Ipv4Net]) -> PoolUsage {
        let mut relevant: Vec<Ipv4Net> = taken.iter().copied().filter(|t| t.overlaps(&self.net)).collect();
        relevant.sort();
        let step = 1u64 << (32 - u32::from(self.prefix));
        let mut used = 0u64;
        let mut next_free_index = 0u64;
        for t in relevant {
            let first = u64::from(t.base.max(self.net.base) - self.net.base) / step;
            let last = u64::from(t.last().min(self.net.last()) - self.net.base) / step;
            let first = first.max(next_free_index);
            if last >= first {
                used += last - first + 1;
                next_free_index = last + 1;
            }
        }
        PoolUsage { used, total: self.capacity() }
    }
}

/// A pool plus the subnets known to be taken; hands out blocks one at a time.
#[derive(Debug, Clone)]
pub struct Allocator {
    pool: Pool,
    taken: Vec<Ipv4Net>,
}

impl Allocator {
    pub fn new(pool: Pool, taken: impl IntoIterator<Item = Ipv4Net>) -> Self {
        Self { pool, taken: taken.into_iter().collect() }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn taken(&self) -> &[Ipv4Net] {
        &self.taken
    }

    /// Records a subnet as in use (after creating a network with it, or after Docker said it
    /// overlaps something this allocator did not know about).
    pub fn mark_taken(&mut self, net: Ipv4Net) {
        if !self.taken.contains(&net) {
            self.taken.push(net);
        }
    }

    /// True when `net` overlaps nothing known to be taken.
    pub fn is_free(&self, net: &Ipv4Net) -> bool {
        !self.taken.iter().any(|t| t.overlaps(net))
    }

    /// The next free block, without taking it.
    pub fn peek(&self) -> Result<Ipv4Net> {
        Ok(self.pool.next_free(&self.taken, 1)?[0])
    }

    /// The next free block, marked taken.
    pub fn take(&mut self) -> Result<Ipv4Net> {
        let net = self.peek()?;
        self.taken.push(net);
        Ok(net)
    }

    pub fn usage(&self) -> PoolUsage {
        self.pool.usage(&self.taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_cidrs() {
        assert_eq!(net("10.201.0.64/26").to_string(), "10.201.0.64/26");
        assert_eq!(net(" 0.0.0.0/0 ").size(), 1 << 32);
        assert_eq!(net("10.0.0.0/26").broadcast(), Ipv4Addr::new(10, 0, 0, 63));
        assert_eq!(net("10.0.0.0/26").first_host(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn rejects_bad_cidrs_with_a_reason() {
        let err = "10.201.0.5/16".parse::<Ipv4Net>().unwrap_err().to_string();
        assert!(err.contains("did you mean 10.201.0.0/16"), "{err}");
        for bad in ["10.0.0.0", "10.0.0/8", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "fd00::/64", ""] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn overlap_and_cover() {
        assert!(net("10.0.0.0/24").overlaps(&net("10.0.0.128/26")));
        assert!(net("10.0.0.128/26").overlaps(&net("10.0.0.0/24")));
        assert!(!net("10.0.0.0/26").overlaps(&net("10.0.0.64/26")));
        assert!(net("10.0.0.0/8").covers(&net("10.3.0.0/16")));
        assert!(!net("10.3.0.0/16").covers(&net("10.0.0.0/8")));
        assert!(net("0.0.0.0/0").overlaps(&net("255.255.255.255/32")));
    }

    #[test]
    fn pool_settings_defaults_and_errors() {
        let pool = Pool::from_settings(None, None).unwrap();
        assert_eq!(pool.net(), net(DEFAULT_POOL));
        assert_eq!(pool.block_prefix(), 26);
        assert_eq!(pool.capacity(), 1024);
        assert_eq!(Pool::from_settings(Some(""), Some("/27")).unwrap().block_prefix(), 27);
        let err = Pool::from_settings(Some("10.0.0.0/24"), Some("16")).unwrap_err().to_string();
        assert!(err.contains("larger than the pool"), "{err}");
        let err = Pool::from_settings(Some("10.0.0.0/24"), Some("30")).unwrap_err().to_string();
        assert!(err.contains("no room"), "{err}");
        let err = Pool::from_settings(Some("nonsense"), None).unwrap_err().to_string();
        assert!(err.starts_with("AGENCY_SUBNET_POOL: "), "{err}");
        assert!(Pool::from_settings(None, Some("x")).is_err());
    }

    #[test]
    fn next_free_skips_taken_and_partial_overlaps() {
        let pool = Pool::new(net("10.201.0.0/24"), 26).unwrap();
        assert_eq!(pool.next_free(&[], 2).unwrap(), vec![net("10.201.0.0/26"), net("10.201.0.64/26")]);
        // A foreign /28 inside the second block and a /25 covering the third and fourth.
        let taken = [net("10.201.0.0/26"), net("10.201.0.80/28"), net("172.17.0.0/16")];
        let err = pool.next_free(&[taken.as_slice(), &[net("10.201.0.128/25")]].concat(), 1).unwrap_err();
        assert!(err.to_string().contains("pool 10.201.0.0/24 has no free /26 block left (4 of 4 in use)"), "{err}");
        assert_eq!(pool.next_free(&taken, 2).unwrap(), vec![net("10.201.0.128/26"), net("10.201.0.192/26")]);
    }

    #[test]
    fn a_bigger_network_covering_the_pool_fills_it() {
        let pool = Pool::new(net("10.201.0.0/24"), 26).unwrap();
        assert!(pool.next_free(&[net("10.0.0.0/8")], 1).is_err());
        assert_eq!(pool.usage(&[net("10.0.0.0/8")]), PoolUsage { used: 4, total: 4 });
    }

    #[test]
    fn usage_counts_blocks_once() {
        let pool = Pool::new(net("10.201.0.0/16"), 26).unwrap();
        let taken = [
            net("10.201.0.0/26"),
            net("10.201.0.0/26"),
            net("10.201.0.0/24"),
            net("10.201.1.0/28"),
            net("10.201.1.16/28"),
            net("192.168.0.0/16"),
        ];
        assert_eq!(pool.usage(&taken), PoolUsage { used: 5, total: 1024 });
    }

    #[test]
    fn next_free_on_a_large_fragmented_pool() {
        let pool = Pool::new(net("10.0.0.0/8"), 29).unwrap();
        let taken = [net("10.0.0.0/9"), net("10.128.0.8/29")];
        assert_eq!(pool.next_free(&taken, 2).unwrap(), vec![net("10.128.0.0/29"), net("10.128.0.16/29")]);
    }

    #[test]
    fn allocator_marks_what_it_hands_out_and_what_docker_rejects() {
        let pool = Pool::new(net("10.201.0.0/25"), 26).unwrap();
        let mut allocator = Allocator::new(pool, []);
        assert_eq!(allocator.peek().unwrap(), net("10.201.0.0/26"));
        // Docker said the first block overlaps a network created meanwhile by another runner.
        allocator.mark_taken(net("10.201.0.0/26"));
        assert_eq!(allocator.take().unwrap(), net("10.201.0.64/26"));
        assert!(!allocator.is_free(&net("10.201.0.64/26")));
        let err = allocator.take().unwrap_err().to_string();
        assert!(err.contains("has no free /26 block left (2 of 2 in use)"), "{err}");
        let pool = Pool::new(net("10.201.0.0/24"), 26).unwrap();
        let err = pool.next_free(&[net("10.201.0.0/25")], 4).unwrap_err().to_string();
        assert!(err.contains("has only 2 free /26 block(s) left and 4 are needed"), "{err}");
        assert_eq!(allocator.usage(), PoolUsage { used: 2, total: 2 });
    }

    #[test]
    fn prefix_parsing() {
        assert_eq!(parse_prefix("26").unwrap(), 26);
        assert_eq!(parse_prefix("/24").unwrap(), 24);
        assert!(parse_prefix("33").is_err());
        assert!(parse_prefix("abc").is_err());
    }
}
