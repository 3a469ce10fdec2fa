//! Built-in validators for task variables (`kind = "client_id"` ...), so hostile values are
//! stopped before they reach a path, a shell, a YAML/JSON/env file or a URL.

use std::net::Ipv4Addr;

use serde::Deserialize;

/// Client ids that must never be used: Keycloak's admin realm and names the layout reserves.
pub(crate) const RESERVED_CLIENT_IDS: &[&str] = &["master", "admin", "default", "system", "archive"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `^[a-z][a-z0-9-]{1,30}[a-z0-9]$`, not reserved.
    ClientId,
    /// A lowercase DNS name.
    Domain,
    /// Printable text, no control characters, at most 100 characters.
    Name,
    /// An upper-case secret key name such as `RESTIC_PASSWORD`.
    SecretName,
    /// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`, or empty (false).
    Bool,
    /// A decimal integer.
    Int,
    /// An IPv4 CIDR block such as `10.201.0.0/16`.
    Cidr,
    /// Comma-separated IPv4/IPv6 addresses or CIDR blocks: `203.0.113.0/24, 2001:db8::/32`.
    CidrList,
    /// Addresses a probe may send to beyond this host: comma-separated IPv4 unicast addresses
    /// that are not this host's own, or `gateway` (the host's default gateway).
    ProbeTargets,
    /// An `http://` or `https://` URL with a host, no spaces, quotes or backticks.
    Url,
    /// A duration such as `26h` or `90s`.
    Duration,
    /// A path (no NUL or newline).
    Path,
    /// Any single line of printable text (no control or invisible characters).
    Text,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ClientId => "client_id",
            Self::Domain => "domain",
            Self::Name => "name",
            Self::SecretName => "secret_name",
            Self::Bool => "bool",
            Self::Int => "int",
            Self::Cidr => "cidr",
            Self::CidrList => "cidr_list",
            Self::ProbeTargets => "probe_targets",
            Self::Url => "url",
            Self::Duration => "duration",
            Self::Path => "path",
            Self::Text => "text",
        }
    }

    /// Checks `value`; the error completes "invalid VAR: ...".
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            Self::ClientId => client_id(value),
            Self::Domain => domain(value),
            Self::Name => name(value),
            Self::SecretName => secret_name(value),
            Self::Bool => parse_bool(value).map(drop),
            Self::Int => value.parse::<i64>().map(drop).map_err(|_| format!("{} is not a whole number", quote(value))),
            Self::Cidr => cidr(value),
            Self::CidrList => cidr_list(value).map(drop),
            Self::ProbeTargets => probe_targets(value).map(drop),
            Self::Url => url(value),
            Self::Duration => humantime::parse_duration(value)
                .map(drop)
                .map_err(|_| format!("{} is not a duration like 26h or 90s", quote(value))),
            Self::Path => single_line(value, 4096),
            Self::Text => single_line(value, 4096).and_then(|()| visible(value)),
        }
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits a command-line `NAME=value` into its parts when NAME is a variable name.
pub(crate) fn parse_assignment(arg: &str) -> Option<(&str, &str)> {
    arg.split_once('=').filter(|(name, _)| is_var_name(name))
}

/// Quotes a value for an error message so control characters show as escapes.
pub(crate) fn quote(value: &str) -> String {
    let shown: String = value.chars().take(60).collect();
    let ellipsis = if value.chars().count() > 60 { "..." } else { "" };
    format!("{:?}{ellipsis}", shown)
}

pub(crate) fn client_id(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    let shape_ok = (3..=32).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-';
    if !shape_ok {
        return Err(format!(
            "{} must be 3-32 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'",
            quote(value)
        ));
    }
    if RESERVED_CLIENT_IDS.contains(&value) {
        return Err(format!("{} is reserved (reserved ids: {})", quote(value), RESERVED_CLIENT_IDS.join(", ")));
    }
    Ok(())
}

pub(crate) fn domain(value: &str) -> Result<(), String> {
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    let labels: Vec<&str> = value.split('.').collect();
    if value.len() > 253 || labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) {
        return Err(format!(
            "{} is not a lowercase DNS name (labels of a-z, 0-9 and '-', separated by dots, e.g. acme.example.com)",
            quote(value)
        ));
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|c| c.is_ascii_digit())) {
        return Err(format!("{} looks like an IP address, not a DNS name", quote(value)));
    }
    Ok(())
}

pub(crate) fn name(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty or only spaces".into());
    }
    if value.chars().count() > 100 {
        return Err(format!("{} is longer than 100 characters", quote(value)));
    }
    if let Some(c) = value.chars().find(|c| is_unsafe_char(*c)) {
        return Err(format!("{} contains the control or invisible character {:?}", quote(value), c));
    }
    Ok(())
}

pub fn secret_name(value: &str) -> Result<(), String> {
    let b = value.as_bytes();
    if b.is_empty()
        || b.len() > 64
        || !b[0].is_ascii_uppercase()
        || !b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
    {
        return Err(format!("{} is not a secret name like RESTIC_PASSWORD", quote(value)));
    }
    Ok(())
}

pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{} is not a boolean (use 1 or 0)", quote(value))),
    }
}

pub(crate) fn cidr(value: &str) -> Result<(), String> {
    let err = || format!("{} is not an IPv4 CIDR block like 10.201.0.0/16", quote(value));
    let (address, prefix) = value.split_once('/').ok_or_else(err)?;
    address.parse::<std::net::Ipv4Addr>().map_err(|_| err())?;
    match prefix.parse::<u8>() {
        Ok(p) if p <= 32 && !prefix.starts_with('+') => Ok(()),
        _ => Err(err()),
    }
}

/// What `PROBE_BEYOND` names: addresses beyond this host, and whether the host's default
/// gateway is one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProbeTargets {
    pub addresses: Vec<Ipv4Addr>,
    pub gateway: bool,
}

/// Parses a [`Kind::ProbeTargets`] value. An address that a probe container would answer
/// itself (loopback), that never leaves its own link (link-local), that is not unicast, or that
/// belongs to this host would make "reaches beyond the host" a false verdict, so each is refused.
pub(crate) fn probe_targets(value: &str) -> Result<ProbeTargets, String> {
    let own = own_addresses();
    let mut targets = ProbeTargets::default();
    for word in value.split([',', ' ']).filter(|w| !w.is_empty()) {
        if word == "gateway" {
            targets.gateway = true;
            continue;
        }
        let address = word
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("{} is neither an IPv4 address nor `gateway`", quote(word)))?;
        let why = if address.is_loopback() {
            Some("is a loopback address: inside a probe it is the probe itself")
        } else if address.is_link_local() {
            Some("is link-local: it never leaves the probe's own network")
        } else if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
            Some("is not a unicast address")
        } else if own.contains(&address) {
            Some("is one of this host's own addresses")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(format!("{address} {why}; name an address beyond this host, or `gateway`"));
        }
        if !targets.addresses.contains(&address) {
            targets.addresses.push(address);
        }
    }
    Ok(targets)
}

/// This host's IPv4 interface addresses (none when they cannot be read).
fn own_addresses() -> Vec<Ipv4Addr> {
    if_addrs::get_if_addrs()
        .map(|interfaces| {
            interfaces
                .into_iter()
                .filter_map(|i| match i.ip() {
                    std::net::IpAddr::V4(address) => Some(address),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a comma-separated list of IPv4/IPv6 addresses or CIDR blocks and returns its
/// items, trimmed (a bare address is a single host).
pub(crate) fn cidr_list(value: &str) -> Result<Vec<String>, String> {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.iter().all(|i| i.is_empty()) {
        return Err("is an empty list; give addresses or CIDR blocks separated by commas".into());
    }
    items
        .into_iter()
        .map(|item| {
            let err = || {
                format!(
                    "{} is not an IPv4 or IPv6 address or CIDR block (e.g. 203.0.113.0/24 or 2001:db8::/32)",
                    quote(item)
                )
            };
            let (address, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (item, None),
            };
            let max = match address.parse::<std::net::IpAddr>().map_err(|_| err())? {
                std::net::IpAddr::V4(_) => 32,
                std::net::IpAddr::V6(_) => 128,
            };
            if let Some(prefix) = prefix {
                match prefix.parse::<u8>() {
                    Ok(p) if p <= max && prefix.bytes().all(|b| b.is_ascii_digit()) => {}
                    _ => return Err(err()),
                }
            }
            Ok(item.to_string())
        })
        .collect()
}

pub(crate) fn url(value: &str) -> Result<(), String> {
    let err = |why: &str| format!("{} is not a usable URL: {why}", quote(value));
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| err("it must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || host.contains('@') {
        return Err(err("it needs a host (and no user:password@)"));
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control() || "\"'`<>\\|^".contains(*c)) {
        return Err(err(&format!("it contains {c:?}")));
    }
    if value.len() > 2048 {
        return Err(err("it is longer than 2048 bytes"));
    }
    Ok(())
}

fn single_line(value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("is longer than {max} bytes"));
    }
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("{} contains the control character {:?}", quote(value), c)),
        None => Ok(()),
    }
}

/// No invisible format characters (bidi overrides, zero-width): what an operator reads in
/// an error message or a report is what was given.
fn visible(value: &str) -> Result<(), String> {
    match value.chars().find(|c| is_unsafe_char(*c)) {
        Some(c) => Err(format!("{} contains the invisible character {:?}", quote(value), c)),
        None => Ok(()),
    }
}

/// Control characters, and the invisible format characters (bidi overrides, zero-width
/// joiners, BOM) that make a displayed name differ from what is stored.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        for ok in ["acme", "a-1", "abc", "a234567890123456789012345678901z"] {
            assert_eq!(client_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "Acme",
            "1acme",
            "acme-",
            "ac_me",
            "../x",
            "master",
            "admin",
            "a\nb",
            "",
            "a2345678901234567890123456789012z",
        ] {
            assert!(client_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn domains() {
        for ok in ["acme.example.com", "a-b.io", "x1.y2.z"] {
            assert_eq!(domain(ok), Ok(()), "{ok}");
        }
        for bad in ["ACME.com", "acme", "-a.com", "a..com", "a.com.", "192.0.2.4", "a b.com", "a.com\n", "ex$(id).com"]
        {
            assert!(domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names() {
        assert_eq!(name("ACME Corporation"), Ok(()));
        assert_eq!(name("O'Brien & \"Sons\" $(id) `x` ünïcödé"), Ok(()));
        for bad in ["", "   ", "a\nb", "a\u{0}b", "a\tb", "\u{202E}evil", &"x".repeat(101)] {
            assert!(name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn texts_are_single_visible_lines() {
        assert_eq!(Kind::Text.check("ünïcödé $(id) 'q' \"d\" ✓"), Ok(()));
        for bad in ["a\nb", "a\u{1b}[31m", "ACME\u{202e}txt.exe", "zero\u{200b}width", "\u{feff}bom"] {
            assert!(Kind::Text.check(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bools_and_cidrs() {
        assert_eq!(parse_bool("1"), Ok(true));
        assert_eq!(parse_bool(""), Ok(false));
        assert!(parse_bool("maybe").is_err());
        assert_eq!(cidr("10.201.0.0/16"), Ok(()));
        assert!(cidr("10.201.0.0/33").is_err());
        assert!(cidr("10.201.0/16").is_err());
    }

    #[test]
    fn probe_targets_are_beyond_the_host() {
        assert_eq!(probe_targets(""), Ok(ProbeTargets::default()));
        assert_eq!(
            probe_targets("198.51.100.7, gateway,198.51.100.7"),
            Ok(ProbeTargets { addresses: vec![Ipv4Addr::new(198, 51, 100, 7)], gateway: true })
        );
        for (bad, says) in [
            ("127.0.0.1", "loopback"),
            ("127.8.8.8", "loopback"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "not a unicast"),
            ("255.255.255.255", "not a unicast"),
            ("239.1.2.3", "not a unicast"),
            ("nonsense", "neither an IPv4 address nor `gateway`"),
            ("198.51.100.300", "neither"),
            ("2001:db8::1", "neither"),
        ] {
            let error = probe_targets(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn cidr_lists() {
        assert_eq!(
            cidr_list("203.0.113.0/24, 10.1.2.3,2001:db8::/32, ::1").unwrap(),
            ["203.0.113.0/24", "10.1.2.3", "2001:db8::/32", "::1"]
        );
        for bad in
            ["", " , ", "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/+8", "example.com", "10.0.0.0/8;rm", "192.0.2.4/"]
        {
            assert!(cidr_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls() {
        for ok in ["https://auth.example.com/realms/{realm}", "http://forward-auth:4181", "https://a.b/x?y=1"] {
            assert_eq!(url(ok), Ok(()), "{ok}");
        }
        for bad in ["ftp://x", "https://", "https://u:p@x", "https://x/`id`", "https://x/ y", "https://x/\"q", "x"] {
            assert!(url(bad).is_err(), "{bad:?} accepted");
        }
    }
}
