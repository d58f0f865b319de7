//! The control line protocol: one command per connection, one line of at
//! most [`MAX_LINE`] bytes, `VERB key=value …`; the answer is `ok` or
//! `error: …` on the first line, then text lines, then the daemon closes.
//!
//! ```text
//! check  client=IP from=ADDR to=ADDR [name=HOST] [auth=yes]
//! allow  client=IP from=ADDR to=ADDR [for=DURATION]      (a tuple)
//! allow  network=CIDR for=DURATION [force=yes]        (force: wider than /8 or /32)
//! allow  sender-domain=DOMAIN for=DURATION
//! forget client=IP from=ADDR to=ADDR
//! forget network=CIDR
//! forget sender-domain=DOMAIN
//! flush  pending
//! stats
//! reload
//! ```
//!
//! Values hold no whitespace or control bytes (envelope addresses with
//! quoted spaces cannot be named here). [`Command::to_line`] writes what
//! [`parse`] reads back to the same command (the fuzz target checks it).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Longest command line, newline excluded.
pub const MAX_LINE: usize = 1024;
/// Longest allowance: ten years.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 86_400);
/// The shortest prefixes `allow network=` takes without `force=yes`: a
/// wider allowance (`0.0.0.0/0`) would turn greylisting off for a large
/// part of the Internet, which is far more often a typo than a wish.
pub const MIN_ALLOW_PREFIX_V4: u8 = 8;
pub const MIN_ALLOW_PREFIX_V6: u8 = 32;

/// Whether allowing `net` needs `force=yes`.
pub fn needs_force(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.prefix_len() < MIN_ALLOW_PREFIX_V4,
        IpNet::V6(n) => n.prefix_len() < MIN_ALLOW_PREFIX_V6,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple {
    pub client: IpAddr,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Check {
        tuple: Tuple,
        name: Option<String>,
        authenticated: bool,
    },
    AllowTuple {
        tuple: Tuple,
        duration: Option<Duration>,
    },
    AllowNetwork {
        net: IpNet,
        duration: Duration,
    },
    AllowSenderDomain {
        domain: String,
        duration: Duration,
    },
    ForgetTuple(Tuple),
    ForgetNetwork(IpNet),
    ForgetSenderDomain(String),
    FlushPending,
    Stats,
    Reload,
}

/// Parses one command line (a trailing `\n` or `\r\n` is allowed).
pub fn parse(line: &[u8]) -> Result<Command, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return Err(format!("line longer than {MAX_LINE} bytes"));
    }
    let line = std::str::from_utf8(line).map_err(|_| "the line is not UTF-8".to_string())?;
    if line.chars().any(|c| c.is_control()) {
        return Err("control characters in the line".to_string());
    }
    let mut words = line.split_ascii_whitespace();
    let verb = words.next().ok_or("empty line")?;
    let mut args = Args::default();
    for w in words {
        args.add(w)?;
    }
    let command = match verb {
        "check" => Command::Check {
            tuple: args.tuple()?,
            name: args.take("name").map(value).transpose()?,
            authenticated: match args.take("auth") {
                None => false,
                Some("yes") => true,
                Some("no") => false,
                Some(other) => return Err(format!("auth={other}: expected yes or no")),
            },
        },
        "allow" => {
            if let Some(net) = args.take("network") {
                let net = network(net)?;
                let force = match args.take("force") {
                    None | Some("no") => false,
                    Some("yes") => true,
                    Some(other) => return Err(format!("force={}: expected yes or no", cut(other))),
                };
                if needs_force(&net) && !force {
                    return Err(format!(
                        "{net} is wider than /{MIN_ALLOW_PREFIX_V4} (IPv4) or /{MIN_ALLOW_PREFIX_V6} (IPv6): it would stop greylisting for that much of the Internet; add force=yes (--force) if that is meant"
                    ));
                }
                Command::AllowNetwork {
                    net,
                    duration: args
                        .duration()?
                        .ok_or("allow network= needs for= (how long, like for=1d)")?,
                }
            } else if let Some(domain) = args.take("sender-domain") {
                Command::AllowSenderDomain {
                    domain: sender_domain(domain)?,
                    duration: args
                        .duration()?
                        .ok_or("allow sender-domain= needs for= (how long, like for=1d)")?,
                }
            } else {
                Command::AllowTuple {
                    tuple: args.tuple()?,
                    duration: args.duration()?,
                }
            }
        }
        "forget" => {
            if let Some(net) = args.take("network") {
                Command::ForgetNetwork(network(net)?)
            } else if let Some(domain) = args.take("sender-domain") {
                Command::ForgetSenderDomain(sender_domain(domain)?)
            } else {
                Command::ForgetTuple(args.tuple()?)
            }
        }
        "flush" => match args.bare.take() {
            Some("pending") => Command::FlushPending,
            _ => return Err("flush: only `flush pending` exists".to_string()),
        },
        "stats" => Command::Stats,
        "reload" => Command::Reload,
        other => return Err(format!("unknown command {:?}", cut(other))),
    };
    args.finish()?;
    Ok(command)
}

#[derive(Default)]
struct Args<'a> {
    pairs: Vec<(&'a str, &'a str)>,
    /// One word without `=` (`flush pending`).
    bare: Option<&'a str>,
}

impl<'a> Args<'a> {
    fn add(&mut self, word: &'a str) -> Result<(), String> {
        match word.split_once('=') {
            Some((k, v)) => {
                if self.pairs.iter().any(|(seen, _)| *seen == k) {
                    return Err(format!("{} given twice", cut(k)));
                }
                if self.pairs.len() >= 8 {
                    return Err("too many arguments".to_string());
                }
                self.pairs.push((k, v));
            }
            None if self.bare.is_none() => self.bare = Some(word),
            None => return Err(format!("unexpected {:?}", cut(word))),
        }
        Ok(())
    }

    fn take(&mut self, key: &str) -> Option<&'a str> {
        let i = self.pairs.iter().position(|(k, _)| *k == key)?;
        Some(self.pairs.remove(i).1)
    }

    fn tuple(&mut self) -> Result<Tuple, String> {
        let client = self.take("client").ok_or("client= missing")?;
        let client = client
            .parse()
            .map_err(|_| format!("client={}: not an IP address", cut(client)))?;
        // `from=` and `from=<>` both name the null sender, as on the
        // command line; it is carried as `<>`.
        let from = match self.take("from").ok_or("from= missing")? {
            "" => "<>".to_string(),
            v => value(v)?,
        };
        let to = self.take("to").ok_or("to= missing")?;
        if to.is_empty() || to == "<>" {
            return Err("to= must name a recipient".to_string());
        }
        let to = value(to)?;
        Ok(Tuple { client, from, to })
    }

    fn duration(&mut self) -> Result<Option<Duration>, String> {
        let Some(d) = self.take("for") else {
            return Ok(None);
        };
        let parsed =
            crate::config::parse_duration(d).map_err(|e| format!("for={}: {e}", cut(d)))?;
        if parsed.is_zero() || parsed > MAX_DURATION {
            return Err(format!("for={}: between 1s and 10 years", cut(d)));
        }
        // Whole seconds: what the table stores, and what to_line writes.
        Ok(Some(Duration::from_secs(parsed.as_secs().max(1))))
    }

    fn finish(self) -> Result<(), String> {
        if let Some((k, _)) = self.pairs.first() {
            return Err(format!("unexpected argument {}=", cut(k)));
        }
        if let Some(w) = self.bare {
            return Err(format!("unexpected {:?}", cut(w)));
        }
        Ok(())
    }
}

/// An argument value as given (addresses as sent, `<>` for the null sender).
fn value(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("empty value".to_string());
    }
    Ok(v.to_string())
}

fn network(s: &str) -> Result<IpNet, String> {
    match s.parse::<IpNet>() {
        Ok(net) => crate::config::exact_network(net),
        Err(_) => s
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{}: not an IP address or CIDR network", cut(s))),
    }
}

fn sender_domain(s: &str) -> Result<String, String> {
    let d = s.trim_start_matches(['@', '.']).to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !ok {
        return Err(format!("{}: not a domain", cut(s)));
    }
    Ok(d)
}

/// At most 64 characters of something quoted back in an error.
fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Command {
    /// The line [`parse`] reads back as this command (no newline).
    pub fn to_line(&self) -> String {
        let tuple = |t: &Tuple| format!("client={} from={} to={}", t.client, t.from, t.to);
        let dur = |d: &Duration| format!("for={}s", d.as_secs());
        match self {
            Command::Check {
                tuple: t,
                name,
                authenticated,
            } => {
                let mut line = format!("check {}", tuple(t));
                if let Some(n) = name {
                    line.push_str(" name=");
                    line.push_str(n);
                }
                if *authenticated {
                    line.push_str(" auth=yes");
                }
                line
            }
            Command::AllowTuple { tuple: t, duration } => match duration {
                Some(d) => format!("allow {} {}", tuple(t), dur(d)),
                None => format!("allow {}", tuple(t)),
            },
            Command::AllowNetwork { net, duration } if needs_force(net) => {
                format!("allow network={net} {} force=yes", dur(duration))
            }
            Command::AllowNetwork { net, duration } => {
                format!("allow network={net} {}", dur(duration))
            }
            Command::AllowSenderDomain { domain, duration } => {
                format!("allow sender-domain={domain} {}", dur(duration))
            }
            Command::ForgetTuple(t) => format!("forget {}", tuple(t)),
            Command::ForgetNetwork(net) => format!("forget network={net}"),
            Command::ForgetSenderDomain(d) => format!("forget sender-domain={d}"),
            Command::FlushPending => "flush pending".to_string(),
            Command::Stats => "stats".to_string(),
            Command::Reload => "reload".to_string(),
        }
    }

    /// Whether the command changes state (logged as a live edit).
    pub fn is_edit(&self) -> bool {
        !matches!(self, Command::Check { .. } | Command::Stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_errors() {
        for line in [
            "check client=192.0.2.1 from=<a@example.org> to=<b@example.net> name=mx.example auth=yes",
            "allow client=2001:db8::1 from=<> to=b@example.net for=3600s",
            "allow client=192.0.2.1 from=a@x to=b@y",
            "allow network=192.0.2.0/24 for=86400s",
            "allow network=0.0.0.0/0 for=60s force=yes",
            "allow network=::/0 for=60s force=yes",
            "allow network=10.0.0.0/8 for=60s",
            "allow sender-domain=example.org for=60s",
            "forget client=192.0.2.1 from=a@x to=b@y",
            "forget network=2001:db8::/48",
            "forget sender-domain=example.org",
            "flush pending",
            "stats",
            "reload",
        ] {
            let c = parse(line.as_bytes()).unwrap();
            assert_eq!(c.to_line(), line);
            assert_eq!(parse(format!("{line}\r\n").as_bytes()).unwrap(), c);
        }
        for (line, error) in [
            ("", "empty line"),
            ("frobnicate", "unknown command \"frobnicate\""),
            ("check client=x from=a to=b", "client=x: not an IP address"),
            ("check client=192.0.2.1 to=b", "from= missing"),
            (
                "check client=192.0.2.1 from= to=",
                "to= must name a recipient",
            ),
            (
                "allow network=192.0.2.0/24",
                "allow network= needs for= (how long, like for=1d)",
            ),
            (
                "allow network=0.0.0.0/0 for=1h",
                "0.0.0.0/0 is wider than /8 (IPv4) or /32 (IPv6): it would stop greylisting for that much of the Internet; add force=yes (--force) if that is meant",
            ),
            (
                "allow network=2001:db8::/31 for=1h force=no",
                "2001:db8::/31 is wider than /8 (IPv4) or /32 (IPv6): it would stop greylisting for that much of the Internet; add force=yes (--force) if that is meant",
            ),
            (
                "forget network=10.0.0.1/8",
                "10.0.0.1/8 has bits set past the /8 prefix: write 10.0.0.0/8 for the network, or 10.0.0.1/32 for the one address",
            ),
            (
                "allow network=192.0.2.0/24 for=0s",
                "for=0s: between 1s and 10 years",
            ),
            ("allow sender-domain=a..b for=1h", "a..b: not a domain"),
            ("flush all", "flush: only `flush pending` exists"),
            ("stats now", "unexpected \"now\""),
            ("stats x=1", "unexpected argument x="),
            ("reload\0", "control characters in the line"),
        ] {
            assert_eq!(parse(line.as_bytes()), Err(error.to_string()), "{line}");
        }
        let long = format!("stats {}", "x".repeat(MAX_LINE));
        assert!(parse(long.as_bytes()).is_err());
        assert_eq!(
            parse(b"forget client=192.0.2.1 from= to=b@y").unwrap(),
            parse(b"forget client=192.0.2.1 from=<> to=b@y").unwrap()
        );
        assert_eq!(
            parse(b"allow sender-domain=@Example.ORG for=1d").unwrap(),
            Command::AllowSenderDomain {
                domain: "example.org".into(),
                duration: Duration::from_secs(86_400)
            }
        );
    }
}
