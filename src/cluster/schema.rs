//! The version of the shared keys' layout and the script's contract
//! (`gm:schema`), so that a release that changes them can be rolled out
//! host by host.
//!
//! Version 1 is the layout of the first release: a Redis without
//! `gm:schema` holds version 1's keys (or none), and the first host to
//! reach it writes `1`. A host finding a newer version than it knows
//! refuses that Redis and decides locally, loudly (an error in the log,
//! `Redis-Schema-Bad` in the statistics), until it is upgraded: it never
//! reads or writes keys whose meaning it does not know. A host finding an
//! older version migrates it, one step at a time, with the steps of
//! [`MIGRATIONS`] (none yet).

use redis::Value;

use super::conn::Conn;

pub const SCHEMA_KEY: &str = "gm:schema";
/// The layout this release reads and writes.
pub const VERSION: u32 = 1;

/// A migration from the version `from` to `from + 1`: a Lua script run once
/// by whichever host gets there first (it must check `gm:schema` itself and
/// set it to `from + 1` last, so that two hosts migrating at once are safe).
pub struct Migration {
    pub from: u32,
    pub script: &'static str,
}

/// None yet: version 1 is the first.
pub const MIGRATIONS: &[Migration] = &[];

/// What a host may do with the Redis it reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// The version this release knows (after a migration, perhaps).
    Current,
    /// Not usable by this release: why.
    Refused(String),
}

fn version_of(v: &Value) -> Result<Option<u32>, String> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "{SCHEMA_KEY} holds {:?}, not a version number",
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(40)
                        .collect::<String>()
                )
            }),
        other => Err(format!("{SCHEMA_KEY}: unexpected reply {other:?}")),
    }
}

/// Reads `gm:schema` (writing ours if absent) and migrates an older one.
/// `Err`: Redis could not be asked.
pub async fn check(conn: &mut Conn) -> Result<Schema, String> {
    let old: Value = redis::cmd("SET")
        .arg(SCHEMA_KEY)
        .arg(VERSION)
        .arg("NX")
        .arg("GET")
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    let found = match version_of(&old) {
        Ok(None) => return Ok(Schema::Current),
        Ok(Some(v)) => v,
        Err(why) => return Ok(Schema::Refused(why)),
    };
    if found > VERSION {
        return Ok(Schema::Refused(format!(
            "redis holds schema version {found} ({SCHEMA_KEY}), this release knows up to \
             {VERSION}: upgrade this host"
        )));
    }
    for step in found..VERSION {
        let Some(m) = MIGRATIONS.iter().find(|m| m.from == step) else {
            return Ok(Schema::Refused(format!(
                "redis holds schema version {found} ({SCHEMA_KEY}) and this release has no \
                 migration from version {step}"
            )));
        };
        let _: Value = redis::cmd("EVAL")
            .arg(m.script)
            .arg(1)
            .arg(SCHEMA_KEY)
            .query_async(conn)
            .await
            .map_err(|e| format!("migration from schema version {step}: {e}"))?;
        tracing::warn!("redis schema migrated from version {step} to {}", step + 1);
    }
    Ok(Schema::Current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_junk_is_named() {
        assert_eq!(version_of(&Value::Nil), Ok(None));
        assert_eq!(version_of(&Value::BulkString(b"1".to_vec())), Ok(Some(1)));
        let e = version_of(&Value::BulkString(b"one".to_vec())).unwrap_err();
        assert!(e.contains("\"one\", not a version number"), "{e}");
        assert!(version_of(&Value::Int(1)).is_err());
        // Every migration step up to VERSION exists exactly once.
        for m in MIGRATIONS {
            assert!(m.from < VERSION);
        }
    }
}
