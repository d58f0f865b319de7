//! The server-side decision script, its keys and its reply.
//!
//! Keys hold no addresses, only the engine's keyed hashes in hex:
//! `gm{<net>}t<tuple>` for a tuple and `gm{<net>}n` for its client network.
//! The braces are a Redis Cluster hash tag, so both keys of one call live in
//! one slot. 35 and 20 bytes: the key is most of Redis' memory per tuple.

use std::fmt::Write as _;

use redis::Value;

use crate::greylist::engine::SharedQuery;
use crate::greylist::key::TupleKey;

/// The Lua source; `EVALSHA` with a reload on `NOSCRIPT` (see `client.rs`).
pub const SOURCE: &str = include_str!("script.lua");

/// Passes of one network closer together than this count once; the
/// engine's `awl::COUNT_INTERVAL`, so local and shared counting agree.
pub const COUNT_INTERVAL: u32 = crate::greylist::awl::COUNT_INTERVAL;

/// Where the fingerprint of the shared hashing secret is kept.
pub const FINGERPRINT_KEY: &str = "gm:fingerprint";

/// The tuple and network keys of `key`.
pub fn keys(key: &TupleKey) -> (String, String) {
    let [net, tuple] = key.0;
    let mut t = String::with_capacity(35);
    let _ = write!(t, "gm{{{net:016x}}}t{tuple:016x}");
    let mut n = String::with_capacity(20);
    let _ = write!(n, "gm{{{net:016x}}}n");
    (t, n)
}

/// What the script decided: the engine's type, so the engine needs
/// nothing from this module.
pub use crate::greylist::engine::TableOutcome as Outcome;

/// A decoded reply: the outcome, whether junk was found at the tuple or
/// network key (treated as absent and overwritten), and whether this pass
/// whitelisted the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub outcome: Outcome,
    pub junk_tuple: bool,
    pub junk_network: bool,
    pub network_became_whitelisted: bool,
}

/// The script's arguments after the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args {
    pub now: u32,
    pub delay: u32,
    pub retry_window: u32,
    pub lifetime: u32,
    pub auto_whitelist_after: u32,
    /// A `greylist` list entry: the auto-whitelist is skipped.
    pub forced: bool,
    /// The node's own first sighting of the tuple (0: none), used when
    /// Redis has none: see `script.lua`.
    pub hint: u32,
    pub hint_white: bool,
}

impl Args {
    pub fn of(q: &SharedQuery) -> Args {
        Args {
            now: crate::greylist::table::secs32(q.query.now),
            delay: q.query.delay,
            retry_window: q.timing.retry_window,
            lifetime: q.timing.lifetime,
            auto_whitelist_after: q.auto_whitelist_after,
            forced: q.query.forced,
            hint: q.local_first_seen,
            hint_white: q.local_white,
        }
    }

    pub fn to_argv(self) -> [u32; 9] {
        [
            self.now,
            self.delay,
            self.retry_window,
            self.lifetime,
            self.auto_whitelist_after,
            u32::from(self.forced),
            COUNT_INTERVAL,
            self.hint,
            u32::from(self.hint_white),
        ]
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn secs(v: i64) -> Option<u32> {
    u32::try_from(v).ok()
}

/// Decodes the script's reply; `None` for anything else (a server that is
/// not running our script, or a proxy in between that mangles replies).
pub fn decode(v: &Value) -> Option<Reply> {
    let Value::Array(items) = v else {
        return None;
    };
    let [code, waited, remaining, junk, became] = items.as_slice() else {
        return None;
    };
    let (waited, remaining) = (secs(int(waited)?)?, secs(int(remaining)?)?);
    let outcome = match int(code)? {
        0 => Outcome::New { remaining },
        1 => Outcome::Early { waited, remaining },
        2 => Outcome::Retried { waited },
        3 => Outcome::Whitelisted,
        4 => Outcome::AutoWhitelisted,
        _ => return None,
    };
    let junk = int(junk)?;
    Some(Reply {
        outcome,
        junk_tuple: junk & 1 != 0,
        junk_network: junk & 2 != 0,
        network_became_whitelisted: int(became)? == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_hash_tag_and_have_fixed_lengths() {
        let (t, n) = keys(&TupleKey([0x0123_4567_89ab_cdef, 1]));
        assert_eq!(t, "gm{0123456789abcdef}t0000000000000001");
        assert_eq!(n, "gm{0123456789abcdef}n");
    }

    #[test]
    fn decodes_every_outcome_and_refuses_junk_replies() {
        let r = |a: [i64; 5]| Value::Array(a.iter().map(|&i| Value::Int(i)).collect());
        assert_eq!(
            decode(&r([1, 30, 270, 3, 0])),
            Some(Reply {
                outcome: Outcome::Early {
                    waited: 30,
                    remaining: 270
                },
                junk_tuple: true,
                junk_network: true,
                network_became_whitelisted: false,
            })
        );
        assert_eq!(
            decode(&r([4, 0, 0, 0, 0])).map(|r| r.outcome),
            Some(Outcome::AutoWhitelisted)
        );
        assert_eq!(decode(&r([5, 0, 0, 0, 0])), None);
        assert_eq!(decode(&r([1, -1, 0, 0, 0])), None);
        assert_eq!(decode(&Value::Nil), None);
        assert_eq!(decode(&Value::Array(vec![Value::Int(0)])), None);
    }
}
