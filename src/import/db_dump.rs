//! Berkeley DB's `db_dump` text format (Debian's `db-util`), both its
//! forms: `format=bytevalue` (hex pairs, the default) and `format=print`
//! (`db_dump -p`: printable bytes, `\\` and `\xx` escapes).
//!
//! ```text
//! VERSION=3
//! format=print
//! type=btree
//! db_pagesize=4096
//! HEADER=END
//!  key
//!  value
//! DATA=END
//! ```
//!
//! Why a dump and not the database file: there is no well-kept pure-Rust
//! reader of Berkeley DB files, linking libdb would tie the build to a C
//! library (and its licence) for a one-off migration, and `db_dump` is what
//! an admin of a postgrey host already has or gets with one package. A
//! dump of a newer format `VERSION` is refused.

/// The dump format versions this reader knows (Berkeley DB 3.0 to 18.1
/// all write 3).
pub const VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses a whole dump. Errors name the line.
pub fn parse(text: &[u8]) -> Result<Dump, String> {
    let mut lines = text.split(|&b| b == b'\n').enumerate().peekable();
    let mut printable = None;
    let mut version = None;
    for (i, line) in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"HEADER=END" {
            break;
        }
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            return Err(format!("line {}: not a db_dump header line", i + 1));
        };
        let (name, value) = line.split_at(eq);
        let value = value.get(1..).unwrap_or_default();
        match name {
            b"VERSION" => {
                let v = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u32>().ok())
                    .ok_or_else(|| format!("line {}: VERSION is not a number", i + 1))?;
                if v != VERSION {
                    return Err(format!(
                        "db_dump format VERSION={v} is not supported (this greymilter reads VERSION={VERSION}); dump with the db_dump of Debian's db-util"
                    ));
                }
                version = Some(v);
            }
            b"format" => {
                printable = Some(match value {
                    b"print" => true,
                    b"bytevalue" => false,
                    other => {
                        return Err(format!(
                            "line {}: unknown format {:?}",
                            i + 1,
                            String::from_utf8_lossy(other)
                        ));
                    }
                })
            }
            b"type" if value != b"btree" && value != b"hash" => {
                return Err(format!(
                    "line {}: a {} database is not a postgrey database",
                    i + 1,
                    String::from_utf8_lossy(value)
                ));
            }
            _ => {}
        }
    }
    if version.is_none() {
        return Err("not a db_dump text dump (no VERSION= line before HEADER=END)".to_string());
    }
    let printable = printable.unwrap_or(false);
    let mut records = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    let mut ended = false;
    for (i, line) in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"DATA=END" {
            ended = true;
            break;
        }
        let Some(body) = line.strip_prefix(b" ") else {
            return Err(format!(
                "line {}: a data line must start with a space",
                i + 1
            ));
        };
        let bytes = if printable {
            unescape(body)
        } else {
            unhex(body)
        }
        .ok_or_else(|| {
            format!(
                "line {}: malformed {} data",
                i + 1,
                if printable { "print" } else { "bytevalue" }
            )
        })?;
        match key.take() {
            None => key = Some(bytes),
            Some(k) => records.push((k, bytes)),
        }
    }
    if !ended || key.is_some() {
        return Err("the dump is cut short (no DATA=END after the last value)".to_string());
    }
    Ok(Dump { records })
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| match p {
            &[a, b] => Some(hex_digit(a)? << 4 | hex_digit(b)?),
            _ => None,
        })
        .collect()
}

fn unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = s.iter().copied();
    while let Some(b) = i.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match i.next()? {
            b'\\' => out.push(b'\\'),
            h => out.push(hex_digit(h)? << 4 | hex_digit(i.next()?)?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `db_dump -p` and `db_dump` of the same postgrey database.
    const PRINT: &[u8] = b"VERSION=3\nformat=print\ntype=btree\ndb_pagesize=4096\nHEADER=END\n 192.0.2.0/alice@example.org/bob@example.net\n 1796580551,1796580554\n 2001:db8:0:0:0:0:0:0/c\\5cx@example.org/d@example.net\n 1796580551,1796580551\nDATA=END\n";
    const BYTES: &[u8] = b"VERSION=3\nformat=bytevalue\ntype=btree\ndb_pagesize=4096\nHEADER=END\n 3139322e302e322e302f616c696365406578616d706c652e6f72672f626f62406578616d706c652e6e6574\n 313739363538303535312c31373936353830353534\nDATA=END\n";

    #[test]
    fn both_forms_read() {
        let p = parse(PRINT).unwrap();
        assert_eq!(p.records.len(), 2);
        assert_eq!(
            p.records[0].0,
            b"192.0.2.0/alice@example.org/bob@example.net"
        );
        assert_eq!(
            p.records[1].0,
            b"2001:db8:0:0:0:0:0:0/c\\x@example.org/d@example.net"
        );
        let b = parse(BYTES).unwrap();
        assert_eq!(b.records, p.records[..1]);
    }

    #[test]
    fn newer_versions_and_broken_dumps_are_refused() {
        let newer = String::from_utf8(PRINT.to_vec())
            .unwrap()
            .replace("VERSION=3", "VERSION=4");
        let e = parse(newer.as_bytes()).unwrap_err();
        assert!(e.contains("VERSION=4 is not supported"), "{e}");
        let cut = &PRINT[..PRINT.len() - 10];
        assert!(parse(cut).unwrap_err().contains("cut short"));
        assert!(parse(b"hello\n").is_err());
        assert!(parse(b"").unwrap_err().contains("not a db_dump"));
        let odd = b"VERSION=3\nformat=bytevalue\nHEADER=END\n 313\n 31\nDATA=END\n";
        assert!(parse(odd).unwrap_err().contains("line 4"));
        let recno = b"VERSION=3\ntype=recno\nHEADER=END\nDATA=END\n";
        assert!(parse(recno).is_err());
    }
}
