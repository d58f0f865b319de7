//! Redis Cluster's key slots: CRC16 of the key (or of its hash tag)
//! modulo 16384, and the slot of a command's first key.

use redis::{Cmd, Pipeline};

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16 (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster hashes.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of a key: of its hash tag (the first `{…}`, if not empty),
/// else of the whole key.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let len = rest.iter().position(|&b| b == b'}')?;
        rest.get(..len).filter(|tag| !tag.is_empty())
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// The slot of a command's first key; `None` for a command without keys
/// (any node answers it).
pub fn cmd_slot(cmd: &Cmd) -> Option<u16> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(b) => Some(b),
        _ => None,
    });
    let name = args.next()?;
    let key = if name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVALSHA") {
        let _script = args.next()?;
        let n = std::str::from_utf8(args.next()?)
            .ok()?
            .parse::<u32>()
            .ok()?;
        if n == 0 {
            return None;
        }
        args.next()?
    } else if [
        &b"SCAN"[..],
        b"PING",
        b"CLUSTER",
        b"INFO",
        b"ASKING",
        b"SCRIPT",
    ]
    .iter()
    .any(|k| name.eq_ignore_ascii_case(k))
    {
        return None;
    } else {
        args.next()?
    };
    Some(key_slot(key))
}

pub fn pipeline_slot(p: &Pipeline) -> Option<u16> {
    p.cmd_iter().find_map(cmd_slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_of_redis_cluster() {
        // The CRC16 check value, and slots from the Redis Cluster spec.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        // An empty first tag: the whole key is hashed.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        let (t, n) = crate::cluster::script::keys(&crate::greylist::key::TupleKey([7, 9]));
        assert_eq!(key_slot(t.as_bytes()), key_slot(n.as_bytes()));
        assert_eq!(
            key_slot(crate::cluster::admin::ALLOWS_KEY.as_bytes()),
            key_slot(crate::cluster::admin::EPOCH_KEY.as_bytes())
        );
    }

    #[test]
    fn commands_route_by_their_first_key() {
        let mut eval = redis::cmd("EVALSHA");
        eval.arg("abc").arg(2).arg("gm{00}t1").arg("gm{00}n");
        assert_eq!(cmd_slot(&eval), Some(key_slot(b"00")));
        let mut none = redis::cmd("EVAL");
        none.arg("return 1").arg(0);
        assert_eq!(cmd_slot(&none), None);
        assert_eq!(cmd_slot(redis::cmd("SCAN").arg(0)), None);
        assert_eq!(
            cmd_slot(redis::cmd("get").arg("gm:schema")),
            Some(key_slot(b"gm:schema"))
        );
    }
}
