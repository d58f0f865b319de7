//! State files for the fault tests: written by the engine of the library
//! (as a daemon would), and read back to count what a file holds.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use greymilter::greylist::clock::SystemClock;
use greymilter::greylist::settings::Settings;
use greymilter::greylist::{Engine, Request, state};

/// Writes a valid state with `tuples` pending tuples (first seen now) to `path`.
pub fn write_state(path: &Path, tuples: u32) {
    let mut engine = Engine::new(Settings::default(), Box::new(SystemClock));
    let mut recipient = String::new();
    for i in 0..tuples {
        recipient.clear();
        recipient.push_str(&format!("<t{i}@state.example>"));
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 8)));
        engine.decide_rcpt(&Request {
            client_addr: Some(ip),
            client_name: b"[unverified]",
            sender: b"<s@state.example>",
            recipient: recipient.as_bytes(),
            authenticated: false,
        });
    }
    let mut bytes = Vec::new();
    engine.write_state(&mut bytes).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Pending plus whitelisted tuples in the file at `path`, or why it is not
/// a complete state (bad checksum, cut short, …).
pub fn tuples_in(path: &Path) -> Result<u64, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parsed = state::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((parsed.pending().len() + parsed.white().len()) as u64)
}

/// The tuple count a "restored state" log line reports.
pub fn restored_count(line: &str) -> u64 {
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    field("pending=") + field("whitelisted=")
}

/// Names in `dir` starting with `prefix`.
pub fn names_with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}
