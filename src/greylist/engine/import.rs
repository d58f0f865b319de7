//! Entries carried over from another greylister (`greymilter import`)
//! merged into a running engine: keyed with this engine's secret,
//! normalisation and prefixes, like a recipient. A whitelisted entry beats
//! a pending one; an entry already stored keeps its earliest first
//! sighting and its latest use. New tuples never evict live ones: past
//! `max_tuples` they are counted as not stored.

use std::net::IpAddr;

use super::Engine;
use crate::greylist::awl::AwlRecord;
use crate::greylist::key::Network;
use crate::greylist::table::{Merged, Times};

/// A tuple placed in greymilter's windows, not keyed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub white: bool,
    /// The source's client or network address (masked when keyed).
    pub client: IpAddr,
    /// The prefix length the source masked it to.
    pub prefix: u8,
    /// As the source stored them; normalised when keyed.
    pub sender: Vec<u8>,
    pub recipient: Vec<u8>,
    pub times: Times,
}

/// An auto-whitelist record, one per client network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedNet {
    /// Any address of the network.
    pub client: IpAddr,
    pub record: AwlRecord,
}

/// One imported entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportEntry {
    Tuple(Placed),
    Network(PlacedNet),
}

/// What an import changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportCounts {
    pub new_white: u64,
    pub new_pending: u64,
    pub new_networks: u64,
    /// Already stored (times merged).
    pub known: u64,
    /// Not stored: the table (or the auto-whitelist) is full.
    pub full: u64,
    /// Not stored: keyed on a wider network than this engine's prefixes.
    pub wider: u64,
}

impl ImportCounts {
    pub fn add(&mut self, o: &ImportCounts) {
        self.new_white += o.new_white;
        self.new_pending += o.new_pending;
        self.new_networks += o.new_networks;
        self.known += o.known;
        self.full += o.full;
        self.wider += o.wider;
    }
}

impl Engine {
    /// Merges `entries` (a bounded batch: the caller slices an import).
    pub fn import(&mut self, entries: &[ImportEntry]) -> ImportCounts {
        let mut c = ImportCounts::default();
        let (v4, v6) = (self.settings.ipv4_prefix, self.settings.ipv6_prefix);
        for e in entries {
            let (client, prefix) = match e {
                ImportEntry::Tuple(t) => (t.client, t.prefix),
                ImportEntry::Network(n) => (n.client, 128),
            };
            let wider = match client {
                IpAddr::V4(_) => prefix < v4,
                IpAddr::V6(_) => prefix < v6,
            };
            if wider {
                c.wider += 1;
                continue;
            }
            match e {
                ImportEntry::Tuple(t) => {
                    let (_, key) = self.key_of(t.client, &t.sender, &t.recipient);
                    let merged = if t.white {
                        self.table.import_white(key, t.times)
                    } else {
                        self.table.import_pending(key, t.times)
                    };
                    match merged {
                        Merged::New if t.white => c.new_white += 1,
                        Merged::New => c.new_pending += 1,
                        Merged::Known => c.known += 1,
                        Merged::Full => c.full += 1,
                    }
                }
                ImportEntry::Network(n) => {
                    let net = self.secret.net_key(&Network::of(n.client, v4, v6));
                    match self.awl.import(net, n.record, self.settings.max_tuples) {
                        Merged::New => c.new_networks += 1,
                        Merged::Known => c.known += 1,
                        Merged::Full => c.full += 1,
                    }
                }
            }
        }
        self.generation += 1;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greylist::clock::ManualClock;
    use crate::greylist::settings::Settings;

    fn tuple(white: bool, client: &str, sender: &str) -> ImportEntry {
        ImportEntry::Tuple(Placed {
            white,
            client: client.parse().unwrap(),
            prefix: 32,
            sender: sender.as_bytes().to_vec(),
            recipient: b"<Bob@Example.NET>".to_vec(),
            times: Times {
                first_seen: 1_000,
                last: 1_500,
            },
        })
    }

    #[test]
    fn imports_merge_never_evict_and_keep_the_flow_identity() {
        let settings = Settings {
            max_tuples: 2,
            ..Settings::default()
        };
        let mut e = Engine::new(settings, Box::new(ManualClock::new(2_000)));
        let batch = [
            tuple(false, "192.0.2.1", "a@x.example"),
            tuple(true, "192.0.2.2", "b@x.example"),
            tuple(true, "192.0.2.3", "c@x.example"),
            ImportEntry::Network(PlacedNet {
                client: "192.0.2.9".parse().unwrap(),
                record: AwlRecord {
                    passes: 3,
                    last_counted: 1_500,
                    last_use: 1_500,
                },
            }),
        ];
        let c = e.import(&batch);
        assert_eq!(
            (c.new_pending, c.new_white, c.full, c.new_networks),
            (1, 1, 1, 1)
        );
        // The pending one whitelisted, keyed as a recipient is (the sender's
        // case, the recipient's brackets and case normalised).
        let again = e.import(&[tuple(true, "192.0.2.1", "A@x.example")]);
        assert_eq!((again.known, again.new_white), (1, 0));
        assert_eq!((e.table().whitelisted(), e.table().pending()), (2, 0));
        let key = e.tuple_key_of(
            "192.0.2.1".parse().unwrap(),
            b"a@x.example",
            b"bob@example.net",
        );
        assert!(e.table().get(&key).is_some_and(|(_, white)| white));
        let f = e.table().flows();
        assert_eq!(
            e.table().len() as u64,
            f.restored + f.graylisted + f.allowed
                - f.graylist_expired
                - f.whitelist_expired
                - f.evicted
                - f.forgotten
        );
        let wide = ImportEntry::Tuple(Placed {
            prefix: 16,
            ..match tuple(true, "192.0.2.4", "d@x.example") {
                ImportEntry::Tuple(t) => t,
                ImportEntry::Network(_) => unreachable!(),
            }
        });
        assert_eq!(e.import(&[wide]).wider, 1);
    }
}
