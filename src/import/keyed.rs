//! Imported entries under greymilter's keys.
//!
//! A tuple is keyed exactly as the engine keys a recipient: the client
//! masked to `ipv4_prefix`/`ipv6_prefix`, the sender's key form (with
//! `normalize_sender`), the recipient's base form, hashed with the
//! installation's secret. A source that keyed on a wider network than
//! greymilter does (postgrey's /24 against a greymilter /32) cannot say
//! which of its hosts a tuple came from: such entries are left out.
//! Times are mapped so that an entry passes or expires at greymilter when
//! it would have at the source, within greymilter's own windows.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::{Read, When};
use crate::greylist::awl::AwlRecord;
use crate::greylist::envelope_address::{base_form, sender_form};
use crate::greylist::key::{NetKey, Network, Secret, TupleKey};
use crate::greylist::settings::Settings;
use crate::greylist::table::{Times, secs32};

#[derive(Debug, Default)]
pub struct Keyed {
    pub pending: HashMap<TupleKey, Times>,
    pub white: HashMap<TupleKey, Times>,
    pub awl: HashMap<NetKey, AwlRecord>,
    /// Entries keyed but left out, by reason (expired, too wide).
    pub skipped: BTreeMap<&'static str, u64>,
}

/// One keyed entry, for `--dry-run`.
pub struct Shown<'a> {
    pub what: &'static str,
    pub client: IpAddr,
    pub prefix: u8,
    pub sender: &'a [u8],
    pub recipient: &'a [u8],
    pub times: Times,
}

pub fn key(
    read: &Read,
    settings: &Settings,
    secret: &Secret,
    now: u64,
    mut show: impl FnMut(Shown<'_>),
) -> Keyed {
    let mut k = Keyed::default();
    let delay = settings.delay.as_secs();
    let window = settings.retry_window.as_secs();
    let lifetime = settings.whitelist_lifetime.as_secs();
    let (v4, v6) = (settings.ipv4_prefix, settings.ipv6_prefix);
    let wider = |addr: &IpAddr, prefix: u8| match addr {
        IpAddr::V4(_) => prefix < v4,
        IpAddr::V6(_) => prefix < v6,
    };
    let (mut s, mut r) = (Vec::new(), Vec::new());
    for t in &read.tuples {
        if wider(&t.client, t.prefix) {
            skip(
                &mut k,
                "client network wider than greymilter's ipv4_prefix/ipv6_prefix",
            );
            continue;
        }
        let (white, first, last) = match t.when {
            When::Pending { first_seen, last } => (false, first_seen, last),
            When::PendingUntil { ready_at } => {
                let first = ready_at.saturating_sub(delay);
                (false, first, first)
            }
            When::White {
                first_seen,
                last_use,
            } => (true, first_seen, last_use),
            When::WhiteUntil { expires } => {
                let last = expires.saturating_sub(lifetime);
                (true, last, last)
            }
        };
        // Nothing is dated in the future (a source clock ahead of ours).
        let (first, last) = (first.min(now), last.min(now));
        let last = last.max(first);
        if white && now - last >= lifetime {
            skip(
                &mut k,
                "whitelisted, unused for longer than whitelist_lifetime",
            );
            continue;
        }
        if !white && now - first > window {
            skip(&mut k, "pending, first seen longer ago than retry_window");
            continue;
        }
        sender_form(&t.sender, settings.normalize_sender, &mut s);
        base_form(&t.recipient, &mut r);
        let net = Network::of(t.client, v4, v6);
        let key = secret.tuple_key(&net, &s, &r);
        let times = Times {
            first_seen: secs32(first),
            last: secs32(last),
        };
        show(Shown {
            what: if white { "whitelisted" } else { "pending" },
            client: t.client,
            prefix: t.prefix,
            sender: &s,
            recipient: &r,
            times,
        });
        if white {
            k.pending.remove(&key);
            merge(k.white.entry(key).or_insert(times), times);
        } else if !k.white.contains_key(&key) {
            merge(k.pending.entry(key).or_insert(times), times);
        }
    }
    if settings.auto_whitelist_after == 0 {
        if !read.networks.is_empty() {
            *k.skipped
                .entry("auto-whitelist record, and auto_whitelist_after = 0 (off)")
                .or_default() += read.networks.len() as u64;
        }
        return k;
    }
    for n in &read.networks {
        if wider(&n.client, n.prefix) {
            skip(
                &mut k,
                "client network wider than greymilter's ipv4_prefix/ipv6_prefix",
            );
            continue;
        }
        let last = n.last.min(now);
        if now - last >= lifetime {
            skip(
                &mut k,
                "auto-whitelist record unused for longer than whitelist_lifetime",
            );
            continue;
        }
        let net = secret.net_key(&Network::of(n.client, v4, v6));
        let rec = k.awl.entry(net).or_default();
        rec.passes = rec.passes.saturating_add(n.passes);
        rec.last_counted = rec.last_counted.max(secs32(last));
    }
    for rec in k.awl.values_mut() {
        if rec.passes >= settings.auto_whitelist_after {
            rec.last_use = rec.last_counted.max(1);
        }
    }
    k
}

fn skip(k: &mut Keyed, reason: &'static str) {
    *k.skipped.entry(reason).or_default() += 1;
}

/// Two records of one tuple: the earliest first sighting, the latest use.
pub fn merge(into: &mut Times, other: Times) {
    into.first_seen = into.first_seen.min(other.first_seen);
    into.last = into.last.max(other.last);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{NetEntry, TupleEntry};

    const NOW: u64 = 1_800_000_000;

    fn tuple(client: &str, prefix: u8, sender: &str, when: When) -> TupleEntry {
        TupleEntry {
            client: client.parse().unwrap(),
            prefix,
            sender: sender.as_bytes().to_vec(),
            recipient: b"<Bob@Example.NET>".to_vec(),
            when,
        }
    }

    #[test]
    fn entries_get_the_engines_keys_and_windows() {
        let settings = Settings::default();
        let secret = Secret { k0: 1, k1: 2 };
        let mut read = Read::default();
        let white = When::White {
            first_seen: NOW - 1000,
            last_use: NOW - 600,
        };
        read.tuples = vec![
            // postgrey's /24 network address: the key of any host in it.
            tuple("192.0.2.0", 24, "alice+tag@example.org", white),
            tuple(
                "192.0.2.9",
                32,
                "<>",
                When::PendingUntil { ready_at: NOW + 60 },
            ),
            tuple(
                "198.51.100.0",
                24,
                "x@example.org",
                When::White {
                    first_seen: 1,
                    last_use: 2,
                },
            ),
            tuple("2001:db8::", 48, "x@example.org", white),
            tuple(
                "203.0.113.5",
                32,
                "y@example.org",
                When::WhiteUntil {
                    expires: NOW + 86_400,
                },
            ),
        ];
        read.networks = vec![
            NetEntry {
                client: "192.0.2.7".parse().unwrap(),
                prefix: 32,
                passes: 3,
                last: NOW - 10,
            },
            NetEntry {
                client: "192.0.2.8".parse().unwrap(),
                prefix: 32,
                passes: 3,
                last: NOW - 5,
            },
        ];
        let mut shown = 0;
        let k = key(&read, &settings, &secret, NOW, |_| shown += 1);
        assert_eq!(shown, 3);
        let net = Network::of("192.0.2.77".parse().unwrap(), 24, 64);
        let alice = secret.tuple_key(&net, b"alice@example.org", b"bob@example.net");
        assert_eq!(
            k.white[&alice],
            Times {
                first_seen: secs32(NOW - 1000),
                last: secs32(NOW - 600)
            }
        );
        let null = secret.tuple_key(&net, b"", b"bob@example.net");
        // Passes at greymilter when it would have at milter-greylist.
        assert_eq!(k.pending[&null].first_seen, secs32(NOW + 60 - 300));
        let y = Network::of("203.0.113.5".parse().unwrap(), 24, 64);
        let y = secret.tuple_key(&y, b"y@example.org", b"bob@example.net");
        let lifetime = settings.whitelist_lifetime.as_secs();
        assert_eq!(k.white[&y].last, secs32(NOW + 86_400 - lifetime));
        assert_eq!(k.skipped.values().sum::<u64>(), 2);
        // Two hosts of one /24: one record, passes added, whitelisted at 5.
        assert_eq!(k.awl.len(), 1);
        let rec = k.awl.values().next().unwrap();
        assert_eq!(
            (rec.passes, rec.last_counted, rec.last_use),
            (6, secs32(NOW - 5), secs32(NOW - 5))
        );
    }

    #[test]
    fn a_whitelisted_tuple_beats_a_pending_one() {
        let settings = Settings::default();
        let secret = Secret { k0: 3, k1: 4 };
        let read = Read {
            tuples: vec![
                tuple(
                    "192.0.2.1",
                    32,
                    "a@b.example",
                    When::Pending {
                        first_seen: NOW - 50,
                        last: NOW - 40,
                    },
                ),
                tuple(
                    "192.0.2.2",
                    32,
                    "a@b.example",
                    When::White {
                        first_seen: NOW - 900,
                        last_use: NOW - 30,
                    },
                ),
                tuple(
                    "192.0.2.3",
                    32,
                    "a@b.example",
                    When::Pending {
                        first_seen: NOW - 60,
                        last: NOW - 60,
                    },
                ),
            ],
            ..Read::default()
        };
        let k = key(&read, &settings, &secret, NOW, |_| {});
        assert_eq!((k.white.len(), k.pending.len()), (1, 0));
    }
}
