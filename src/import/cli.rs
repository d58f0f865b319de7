//! `greymilter import`: the command line around the readers and the
//! state-file writer.

use std::io::Read as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::keyed::{self, Shown};
use super::{Read, db_dump, into_state, milter_greylist, postgrey};
use crate::config::Config;
use crate::greylist::envelope_address::push_loggable;
use crate::greylist::key::Secret;

/// Largest dump read: tens of millions of tuples.
const MAX_DUMP_BYTES: u64 = 8 << 30;

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: Source,
    /// Print each entry that would be imported and the summary; write nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum Source {
    /// postgrey's databases as `db_dump` prints them (Debian's db-util):
    /// `db_dump -h /var/lib/postgrey postgrey.db > tuples.dump`. The
    /// options are postgrey's own: give the values postgrey ran with.
    Postgrey {
        /// The tuple database's dump (`postgrey.db`); `-` reads stdin.
        #[arg(value_name = "DUMP")]
        tuples: PathBuf,
        /// The clients database's dump (`postgrey_clients.db`,
        /// `--auto-whitelist-clients`).
        #[arg(long, value_name = "DUMP")]
        clients: Option<PathBuf>,
        /// postgrey's --delay, in seconds: a tuple whose last sighting is
        /// this long after its first has passed.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        delay: u64,
        /// postgrey ran with --lookup-by-host (keys hold full addresses).
        #[arg(long)]
        lookup_by_host: bool,
        /// postgrey's --ipv4cidr.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(1..=32))]
        ipv4cidr: u8,
        /// postgrey's --ipv6cidr.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=128))]
        ipv6cidr: u8,
    },
    /// milter-greylist's dump file (`dumpfile`, e.g. greylist.db).
    MilterGreylist {
        /// The dump; `-` reads stdin.
        #[arg(value_name = "FILE")]
        dump: PathBuf,
    },
}

/// Exit status: 0 imported (or shown), 1 configuration, 2 anything else.
pub fn run(args: &ImportArgs, config: &Config) -> u8 {
    match import(args, config) {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("greymilter import: {message}");
            code
        }
    }
}

type Failure = (u8, String);

fn import(args: &ImportArgs, config: &Config) -> Result<(), Failure> {
    let failed = |m: String| (2, m);
    let mut read = Read::default();
    let source = match &args.source {
        Source::Postgrey {
            tuples,
            clients,
            delay,
            lookup_by_host,
            ipv4cidr,
            ipv6cidr,
        } => {
            let options = postgrey::Options {
                delay: *delay,
                ipv4_prefix: if *lookup_by_host { 32 } else { *ipv4cidr },
                ipv6_prefix: if *lookup_by_host { 128 } else { *ipv6cidr },
            };
            let dump = db_dump::parse(&read_input(tuples).map_err(failed)?)
                .map_err(|e| failed(format!("{}: {e}", tuples.display())))?;
            postgrey::tuples(&dump.records, &options, &mut read);
            if let Some(path) = clients {
                let dump = db_dump::parse(&read_input(path).map_err(failed)?)
                    .map_err(|e| failed(format!("{}: {e}", path.display())))?;
                postgrey::clients(&dump.records, &mut read);
            }
            "postgrey"
        }
        Source::MilterGreylist { dump } => {
            let text = read_input(dump).map_err(failed)?;
            milter_greylist::parse(&text, &mut read)
                .map_err(|e| failed(format!("{}: {e}", dump.display())))?;
            "milter-greylist"
        }
    };
    let state_path = if args.dry_run {
        config.state.file.clone()
    } else {
        Some(destination(config)?)
    };
    let mut state = match &state_path {
        Some(p) => into_state::load(p).map_err(failed)?,
        None => into_state::State::default(),
    };
    let secret = state.secret.unwrap_or_else(|| Secret::random().0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let settings = config.settings();
    let keyed = keyed::key(&read, &settings, &secret, now, |s| {
        if args.dry_run {
            crate::outln!("{}", shown_line(&s));
        }
    });
    crate::outln!(
        "{source}: {} records read: {} whitelisted tuples, {} pending tuples, {} auto-whitelist networks",
        read.records,
        keyed.white.len(),
        keyed.pending.len(),
        keyed.awl.len()
    );
    for (reason, n) in read.skipped.iter().chain(keyed.skipped.iter()) {
        crate::outln!("  left out: {n} {reason}");
    }
    let Some(path) = state_path.filter(|_| !args.dry_run) else {
        crate::outln!("dry run: nothing written");
        return Ok(());
    };
    let merged = into_state::merge_into(&mut state, &keyed);
    into_state::write(&path, &state, secret, now).map_err(failed)?;
    crate::outln!(
        "{}: {} whitelisted and {} pending tuples and {} networks added, {} already there; it now holds {} whitelisted, {} pending, {} networks",
        path.display(),
        merged.new_white,
        merged.new_pending,
        merged.new_networks,
        merged.known,
        state.white.len(),
        state.pending.len(),
        state.awl.len()
    );
    Ok(())
}

/// The state file to write, once sure no daemon would overwrite it with
/// its next checkpoint.
fn destination(config: &Config) -> Result<PathBuf, Failure> {
    if config.cluster.is_some() {
        return Err((
            2,
            "[cluster] is set: import into Redis is not supported yet; import into the state file of a node without [cluster], or whitelist through the control socket (greymilter allow)".to_string(),
        ));
    }
    let Some(path) = config.state.file.clone() else {
        return Err((
            1,
            "[state] file is not set: greymilter keeps no state to import into (use --dry-run to see what would be imported)".to_string(),
        ));
    };
    if let Some(pidfile) = &config.daemon.pidfile
        && let Ok(pid) = crate::daemon::pidfile::read(pidfile)
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    {
        return Err((
            2,
            format!(
                "greymilter is running (pid {pid}, {}): stop it first, or its next checkpoint would overwrite the import",
                pidfile.display()
            ),
        ));
    }
    if let Some(socket) = &config.control.socket
        && std::os::unix::net::UnixStream::connect(socket).is_ok()
    {
        return Err((
            2,
            format!(
                "greymilter is running (its control socket {} answers): stop it first, or its next checkpoint would overwrite the import",
                socket.display()
            ),
        ));
    }
    Ok(path)
}

fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_DUMP_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(bytes);
    }
    crate::files::read_regular(path, MAX_DUMP_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn shown_line(s: &Shown<'_>) -> String {
    let mut line = format!("{} client=", s.what);
    let host = matches!(
        (s.client, s.prefix),
        (IpAddr::V4(_), 32) | (IpAddr::V6(_), 128)
    );
    if host {
        line.push_str(&s.client.to_string());
    } else {
        line.push_str(&format!("{}/{}", s.client, s.prefix));
    }
    line.push_str(" from=");
    push_loggable(&mut line, s.sender);
    line.push_str(" to=");
    push_loggable(&mut line, s.recipient);
    line.push_str(&format!(
        " first_seen={} last={}",
        s.times.first_seen, s.times.last
    ));
    line
}
