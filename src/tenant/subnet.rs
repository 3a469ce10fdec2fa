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

use anyhow::{Result, bail};

/// The pool used when `AGENCY_SUBNET_POOL` is not set.
pub(crate) const DEFAULT_POOL: &str = "10.201.0.0/16";
/// The block size used when `AGENCY_SUBNET_PREFIX` is not set.
pub(crate) const DEFAULT_PREFIX: u8 = 26;
/// Blocks smaller than this leave no room for containers (network, gateway, broadcast).
pub(crate) const MAX_PREFIX: u8 = 29;

pub use crate::format::ipv4::{Ipv4Net, parse_prefix};

/// A pool and the block size carved out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    net: Ipv4Net,
    prefix: u8,
}

/// How much of a pool is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolUsage {
    /// Blocks that overlap an existing network.
    pub used: u64,
    /// Blocks in the pool.
    pub total: u64,
}

impl Pool {
    pub(crate) fn new(net: Ipv4Net, prefix: u8) -> Result<Self> {
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

    pub(crate) fn block_prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of blocks in the pool.
    pub(crate) fn capacity(&self) -> u64 {
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
    pub(crate) fn next_free(&self, taken: &[Ipv4Net], count: usize) -> Result<Vec<Ipv4Net>> {
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
    pub(crate) fn usage(&self, taken: &[Ipv4Net]) -> PoolUsage {
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

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) fn taken(&self) -> &[Ipv4Net] {
        &self.taken
    }

    /// Records a subnet as in use (after creating a network with it, or after Docker said it
    /// overlaps something this allocator did not know about).
    pub(crate) fn mark_taken(&mut self, net: Ipv4Net) {
        if !self.taken.contains(&net) {
            self.taken.push(net);
        }
    }

    /// True when `net` overlaps nothing known to be taken.
    pub(crate) fn is_free(&self, net: &Ipv4Net) -> bool {
        !self.taken.iter().any(|t| t.overlaps(net))
    }

    /// The next free block, without taking it.
    pub(crate) fn peek(&self) -> Result<Ipv4Net> {
        Ok(self.pool.next_free(&self.taken, 1)?[0])
    }

    /// The next free block, marked taken.
    #[cfg(test)]
    pub(crate) fn take(&mut self) -> Result<Ipv4Net> {
        let net = self.peek()?;
        self.taken.push(net);
        Ok(net)
    }

    #[cfg(test)]
    pub(crate) fn usage(&self) -> PoolUsage {
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
