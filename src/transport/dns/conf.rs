//! Resolver configuration: `/etc/resolv.conf` (resolv.conf(5)) and `/etc/hosts` (hosts(5)).
//!
//! Owns the pure parsers (text in, typed value or typed error out) and the
//! [`ResolverConfig`] / [`Hosts`] values the resolver is built from. Nothing here does
//! I/O except the two `read_*` conveniences, which are called once at start-up.
//!
//! Invariants: a parsed [`ResolverConfig`] always has at least one nameserver (the
//! resolv.conf(5) default `127.0.0.1:53` when none is listed), `attempts >= 1`,
//! `timeout > 0`, and the caps of resolv.conf(5) (`ndots` <= 15, `timeout` <= 30 s,
//! `attempts` <= 5, at most 3 nameservers, at most 6 search domains). Host names in
//! [`Hosts`] are stored lower-case without a trailing dot.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::time::Duration;

/// resolv.conf(5): at most this many `nameserver` lines are used.
pub const MAX_NAMESERVERS: usize = 3;
/// resolv.conf(5): at most this many `search` domains are used.
pub const MAX_SEARCH: usize = 6;
/// The EDNS0 UDP payload size advertised in queries (DNS flag day 2020 recommendation).
pub const EDNS_PAYLOAD: u16 = 1232;

/// Everything the resolver needs to know about where and how to ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Servers asked in order; each attempt round walks the whole list.
    pub nameservers: Vec<SocketAddr>,
    /// Search domains (lower-case, no trailing dot) appended to relative names.
    pub search: Vec<String>,
    /// A name with at least this many dots is first tried as given (resolv.conf `ndots`).
    pub ndots: u8,
    /// Time allowed for one query to one server (resolv.conf `timeout`).
    pub timeout: Duration,
    /// Rounds over the nameserver list (resolv.conf `attempts`).
    pub attempts: u8,
    /// EDNS0 UDP payload size advertised in queries; also the UDP receive buffer size.
    pub edns_payload: u16,
    /// Longest CNAME chain followed before giving up.
    pub max_cname_chain: u8,
}

impl ResolverConfig {
    /// A configuration asking only `server`, with resolv.conf(5) defaults otherwise
    /// (`ndots:1`, `timeout:5`, `attempts:2`, no search domains).
    pub fn with_nameserver(server: SocketAddr) -> Self {
        Self {
            nameservers: vec![server],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            edns_payload: EDNS_PAYLOAD,
            max_cname_chain: 8,
        }
    }
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self::with_nameserver(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53))
    }
}

/// What is wrong with a resolv.conf text, and on which line (1-based).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolvConfError {
    #[error("resolv.conf line {line}: `{value}` is not a nameserver IP address")]
    BadNameserver { line: usize, value: String },
    #[error("resolv.conf line {line}: `{keyword}` needs a value")]
    MissingValue { line: usize, keyword: &'static str },
    #[error("resolv.conf line {line}: option `{option}` has a bad value")]
    BadOption { line: usize, option: String },
    #[error("resolv.conf line {line}: `{value}` is not a domain name")]
    BadDomain { line: usize, value: String },
}

/// What is wrong with a hosts text, and on which line (1-based).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostsError {
    #[error("hosts line {line}: `{value}` is not an IP address")]
    BadAddress { line: usize, value: String },
    #[error("hosts line {line}: address `{value}` has no host name")]
    MissingName { line: usize, value: String },
    #[error("hosts line {line}: `{value}` is not a host name")]
    BadName { line: usize, value: String },
}

/// Reading a system file failed, or its text did not parse.
#[derive(Debug, thiserror::Error)]
pub enum SystemConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    ResolvConf(#[from] ResolvConfError),
    #[error(transparent)]
    Hosts(#[from] HostsError),
}

/// Strips a comment introduced by `#` or `;` (resolv.conf allows both).
fn strip_comment<'a>(line: &'a str, markers: &[char]) -> &'a str {
    match line.find(markers) {
        Some(at) => line.get(..at).unwrap_or(line),
        None => line,
    }
}

/// Lower-cases a domain name and drops its trailing dot; `None` if it is not a
/// plausible host name (empty labels, labels over 63 octets, name over 253 octets,
/// characters outside letters, digits, `-`, `_`).
pub(crate) fn normalize_name(raw: &str) -> Option<String> {
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return None;
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
    }
    Some(trimmed.to_ascii_lowercase())
}

fn parse_nameserver(value: &str) -> Option<SocketAddr> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    // `fe80::1%2`: a link-local server with a numeric scope id.
    let (addr, scope) = value.split_once('%')?;
    let ip = addr.parse::<Ipv6Addr>().ok()?;
    let scope_id = scope.parse::<u32>().ok()?;
    Some(SocketAddr::V6(SocketAddrV6::new(ip, 53, 0, scope_id)))
}

fn parse_option_value(
    line: usize,
    option: &str,
    value: &str,
    max: u32,
) -> Result<u32, ResolvConfError> {
    value
        .parse::<u32>()
        .map(|v| v.min(max))
        .map_err(|_| ResolvConfError::BadOption {
            line,
            option: option.to_owned(),
        })
}

/// Parses resolv.conf(5) text: `nameserver`, `search`, `domain`, and the `options`
/// `ndots:n`, `timeout:n`, `attempts:n`. Other keywords and options are ignored, as
/// the C library does; values over the documented caps are clamped to the cap.
pub fn parse_resolv_conf(text: &str) -> Result<ResolverConfig, ResolvConfError> {
    let mut config = ResolverConfig::default();
    config.nameservers.clear();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let mut words = strip_comment(raw, &['#', ';']).split_ascii_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        match keyword {
            "nameserver" => {
                let value = words.next().ok_or(ResolvConfError::MissingValue {
                    line,
                    keyword: "nameserver",
                })?;
                let server =
                    parse_nameserver(value).ok_or_else(|| ResolvConfError::BadNameserver {
                        line,
                        value: value.to_owned(),
                    })?;
                if config.nameservers.len() < MAX_NAMESERVERS {
                    config.nameservers.push(server);
                }
            }
            "search" | "domain" => {
                // The last `search` or `domain` line wins (resolv.conf(5)).
                config.search.clear();
                for value in words {
                    let domain =
                        normalize_name(value).ok_or_else(|| ResolvConfError::BadDomain {
                            line,
                            value: value.to_owned(),
                        })?;
                    if config.search.len() < MAX_SEARCH {
                        config.search.push(domain);
                    }
                    if keyword == "domain" {
                        break;
                    }
                }
            }
            "options" => {
                for option in words {
                    let (name, value) = option.split_once(':').unwrap_or((option, ""));
                    match name {
                        "ndots" => {
                            let v = parse_option_value(line, option, value, 15)?;
                            config.ndots = u8::try_from(v).unwrap_or(15);
                        }
                        "timeout" => {
                            let v = parse_option_value(line, option, value, 30)?.max(1);
                            config.timeout = Duration::from_secs(u64::from(v));
                        }
                        "attempts" => {
                            let v = parse_option_value(line, option, value, 5)?.max(1);
                            config.attempts = u8::try_from(v).unwrap_or(5);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if config.nameservers.is_empty() {
        config
            .nameservers
            .push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
    }
    Ok(config)
}

/// The static name table of hosts(5), consulted before DNS for A/AAAA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    by_name: HashMap<String, Vec<IpAddr>>,
}

impl Hosts {
    /// An empty table (no overrides).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `addr` for `name` (canonical name or alias); `false` if `name` is not a
    /// host name.
    pub fn insert(&mut self, name: &str, addr: IpAddr) -> bool {
        let Some(key) = normalize_name(name) else {
            return false;
        };
        let addrs = self.by_name.entry(key).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
        true
    }

    /// The addresses listed for `name` (any case, with or without trailing dot), in
    /// file order; empty if none.
    pub fn lookup(&self, name: &str) -> &[IpAddr] {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        // Fast path: names are usually already lower-case.
        if let Some(addrs) = self.by_name.get(trimmed) {
            return addrs;
        }
        if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
            if let Some(addrs) = self.by_name.get(&trimmed.to_ascii_lowercase()) {
                return addrs;
            }
        }
        &[]
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// `true` if no name is listed.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Parses hosts(5) text: `address canonical-name [aliases...]`, `#` comments.
/// IPv6 addresses may carry a zone (`fe80::1%eth0`); the zone is dropped.
pub fn parse_hosts(text: &str) -> Result<Hosts, HostsError> {
    let mut hosts = Hosts::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let mut words = strip_comment(raw, &['#']).split_ascii_whitespace();
        let Some(addr_text) = words.next() else {
            continue;
        };
        let without_zone = addr_text.split('%').next().unwrap_or(addr_text);
        let addr = without_zone
            .parse::<IpAddr>()
            .map_err(|_| HostsError::BadAddress {
                line,
                value: addr_text.to_owned(),
            })?;
        let mut any = false;
        for name in words {
            if !hosts.insert(name, addr) {
                return Err(HostsError::BadName {
                    line,
                    value: name.to_owned(),
                });
            }
            any = true;
        }
        if !any {
            return Err(HostsError::MissingName {
                line,
                value: addr_text.to_owned(),
            });
        }
    }
    Ok(hosts)
}

fn read_text(path: &Path) -> Result<String, SystemConfigError> {
    std::fs::read_to_string(path).map_err(|source| SystemConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads and parses a resolv.conf file (start-up only: this blocks). A missing file
/// gives the resolv.conf(5) defaults, as the C library does.
pub fn read_resolv_conf(path: &Path) -> Result<ResolverConfig, SystemConfigError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ResolverConfig::default()),
        _ => Ok(parse_resolv_conf(&read_text(path)?)?),
    }
}

/// Reads and parses a hosts file (start-up only: this blocks). A missing file gives
/// an empty table.
pub fn read_hosts(path: &Path) -> Result<Hosts, SystemConfigError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Hosts::new()),
        _ => Ok(parse_hosts(&read_text(path)?)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_keywords_and_options() {
        let text = "# comment\nnameserver 10.0.0.1\nnameserver ::1 ; trailing\n\
                    nameserver fe80::1%3\nnameserver 10.0.0.4\n\
                    domain old.example\nsearch Example.COM. corp.example\n\
                    options ndots:3 timeout:2 attempts:9 rotate edns0\nsortlist 1.2.3.4\n";
        let config = parse_resolv_conf(text).unwrap();
        assert_eq!(
            config.nameservers,
            vec![
                "10.0.0.1:53".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 3)),
            ]
        );
        assert_eq!(config.search, vec!["example.com", "corp.example"]);
        assert_eq!(config.ndots, 3);
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.attempts, 5, "attempts is capped at 5");
    }

    #[test]
    fn resolv_conf_defaults_and_errors() {
        let config = parse_resolv_conf("").unwrap();
        assert_eq!(config.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(config.ndots, 1);
        assert_eq!(
            parse_resolv_conf("nameserver\n"),
            Err(ResolvConfError::MissingValue {
                line: 1,
                keyword: "nameserver"
            })
        );
        assert_eq!(
            parse_resolv_conf("\nnameserver dns.example\n"),
            Err(ResolvConfError::BadNameserver {
                line: 2,
                value: "dns.example".into()
            })
        );
        assert_eq!(
            parse_resolv_conf("options ndots:x\n"),
            Err(ResolvConfError::BadOption {
                line: 1,
                option: "ndots:x".into()
            })
        );
        assert_eq!(
            parse_resolv_conf("search a..b\n"),
            Err(ResolvConfError::BadDomain {
                line: 1,
                value: "a..b".into()
            })
        );
    }

    #[test]
    fn hosts_names_aliases_and_errors() {
        let hosts = parse_hosts(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost # v6\n\
             10.1.2.3 Proxy.Example.com proxy\nfe80::1%eth0 link\n",
        )
        .unwrap();
        assert_eq!(
            hosts.lookup("LOCALHOST."),
            &[
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(
            hosts.lookup("proxy"),
            &["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            hosts.lookup("proxy.example.com"),
            &["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            hosts.lookup("link"),
            &["fe80::1".parse::<IpAddr>().unwrap()]
        );
        assert!(hosts.lookup("absent").is_empty());
        assert_eq!(
            parse_hosts("10.0.0.1\n"),
            Err(HostsError::MissingName {
                line: 1,
                value: "10.0.0.1".into()
            })
        );
        assert_eq!(
            parse_hosts("# x\n300.1.1.1 a\n"),
            Err(HostsError::BadAddress {
                line: 2,
                value: "300.1.1.1".into()
            })
        );
        assert_eq!(
            parse_hosts("1.1.1.1 bad/name\n"),
            Err(HostsError::BadName {
                line: 1,
                value: "bad/name".into()
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "(?s).{0,300}") {
            let _ = parse_resolv_conf(&text);
            let _ = parse_hosts(&text);
        }

        #[test]
        fn parsed_config_keeps_its_invariants(
            lines in proptest::collection::vec(
                "(nameserver [0-9.:a-f%]{1,20}|search [a-z.]{1,20}|options [a-z]{1,9}:[0-9]{1,4}| *#.*)",
                0..12,
            )
        ) {
            if let Ok(config) = parse_resolv_conf(&lines.join("\n")) {
                proptest::prop_assert!(!config.nameservers.is_empty());
                proptest::prop_assert!(config.nameservers.len() <= MAX_NAMESERVERS);
                proptest::prop_assert!(config.search.len() <= MAX_SEARCH);
                proptest::prop_assert!(config.ndots <= 15);
                proptest::prop_assert!((1..=5).contains(&config.attempts));
                proptest::prop_assert!(config.timeout >= Duration::from_secs(1));
                proptest::prop_assert!(config.timeout <= Duration::from_secs(30));
            }
        }
    }
}
