//! `greymilter import`: the command line around the readers and the
//! state-file writer.

use std::io::Read as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::keyed::{self, Shown};
use super::{Read, db_dump, into_daemon, into_redis, into_state, milter_greylist, postgrey};
use crate::config::Config;
use crate::config::cluster::ClusterConfig;
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let settings = config.settings();
    let plan = keyed::place(&read, &settings, now);
    let target = if args.dry_run {
        Target::DryRun
    } else {
        target(config)?
    };
    // Keys of the place written to (a dry run shows with the state file's
    // or the cluster's secret when it can read them).
    let mut state = into_state::State::default();
    let secret = match (&target, &config.cluster) {
        (Target::Redis(c), _) => into_redis::secret(c).map_err(|e| (1, e))?,
        (Target::DryRun, Some(c)) => into_redis::secret(c).unwrap_or(Secret::random().0),
        (Target::StateFile(path), _) => {
            state = into_state::load(path).map_err(failed)?;
            state.secret.unwrap_or_else(|| Secret::random().0)
        }
        (Target::DryRun, None) => match &config.state.file {
            Some(p) => into_state::load(p).map_err(failed)?.secret,
            None => None,
        }
        .unwrap_or_else(|| Secret::random().0),
        (Target::Daemon(_), _) => Secret::random().0,
    };
    let keyed = keyed::key_placed(&plan, &settings, &secret, |s| {
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
    match target {
        Target::DryRun => crate::outln!("dry run: nothing written"),
        Target::StateFile(path) => {
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
        }
        Target::Daemon(socket) => {
            let sent = into_daemon::send(&socket, &plan).map_err(failed)?;
            let c = sent.counts;
            crate::outln!(
                "greymilter (control socket {}): {} whitelisted and {} pending tuples and {} networks added, {} already there",
                socket.display(),
                c.new_white,
                c.new_pending,
                c.new_networks,
                c.known
            );
            for (n, why) in [
                (
                    c.full,
                    "not stored: the table is full (raise [greylist] max_tuples)",
                ),
                (
                    c.wider,
                    "refused by the daemon: keyed on a wider network than its prefixes",
                ),
                (sent.too_long, "addresses too long for the control socket"),
            ] {
                if n > 0 {
                    crate::outln!("  left out: {n} {why}");
                }
            }
        }
        Target::Redis(c) => {
            let done = into_redis::send(config, &c, &keyed).map_err(failed)?;
            crate::outln!(
                "redis {}: {} whitelisted and {} pending tuples and {} networks added, {} already there",
                c.redis.0,
                done.new_white,
                done.new_pending,
                done.new_networks,
                done.known
            );
            if done.forgotten > 0 {
                crate::outln!(
                    "  left out: {} tuples an administrator forgot (greymilter forget) since",
                    done.forgotten
                );
            }
        }
    }
    Ok(())
}

/// Where the entries go.
enum Target {
    DryRun,
    /// A stopped daemon's state file.
    StateFile(PathBuf),
    /// A running daemon's control socket.
    Daemon(PathBuf),
    /// The cluster's Redis.
    Redis(Box<ClusterConfig>),
}

/// Where to write: the cluster's Redis with `[cluster]`; else a running
/// daemon through its control socket; else the state file, once sure no
/// daemon would overwrite it with its next checkpoint.
fn target(config: &Config) -> Result<Target, Failure> {
    if let Some(c) = &config.cluster {
        return Ok(Target::Redis(Box::new(c.clone())));
    }
    if let Some(socket) = &config.control.socket
        && std::os::unix::net::UnixStream::connect(socket).is_ok()
    {
        return Ok(Target::Daemon(socket.clone()));
    }
    let Some(path) = config.state.file.clone() else {
        return Err((
            1,
            "[state] file is not set and no daemon answers on a [control] socket: greymilter keeps no state to import into (use --dry-run to see what would be imported)".to_string(),
        ));
    };
    if let Some(pidfile) = &config.daemon.pidfile
        && let Ok(pid) = crate::daemon::pidfile::read(pidfile)
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    {
        return Err((
            2,
            format!(
                "greymilter is running (pid {pid}, {}) without a [control] socket: set [control] socket to import into the running daemon, or stop it first (its next checkpoint would overwrite an import into its state file)",
                pidfile.display()
            ),
        ));
    }
    Ok(Target::StateFile(path))
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
