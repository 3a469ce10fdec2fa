//! IPv4 networks in CIDR notation (`10.201.0.64/26`): parsing with a reason, printing,
//! overlap and containment.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use anyhow::{Result, bail};

/// An IPv4 network in CIDR notation, host bits zero (`10.201.0.64/26`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    pub(crate) base: u32,
    pub(crate) prefix: u8,
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

    pub(crate) fn last(&self) -> u32 {
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
}
