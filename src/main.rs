//! greymilter's command line: run the daemon, check a configuration, ask a
//! running daemon for statistics, or play the MTA against a milter.

// As in the library (see lib.rs): no panicking shortcuts on input.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use greymilter::cli::{Cli, Command};
use greymilter::config::{self, Config};
use greymilter::daemon;

/// Large blocks (the tuple table) get transparent huge pages: see
/// `greymilter::memory`.
#[global_allocator]
static ALLOCATOR: greymilter::memory::Allocator = greymilter::memory::Allocator;

/// Exit status of a configuration error.
const EXIT_CONFIG: u8 = 1;
/// Exit status when the daemon could not start or talk to what it needs.
const EXIT_RUNTIME: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = verb(cli);
    // A reader that went away is no failure (`check-config | head -1`); a
    // full disk is.
    if greymilter::stdout::failed() {
        ExitCode::from(EXIT_RUNTIME)
    } else {
        code
    }
}

fn verb(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config.as_deref()),
        Command::CheckConfig => check_config(cli.config.as_deref()),
        Command::Stats { socket, timeout } => stats(cli.config.as_deref(), socket, timeout),
        Command::Query(args) => ExitCode::from(daemon::run_query(&args)),
        Command::Import(args) => match load(cli.config.as_deref()) {
            Ok((config, _)) => ExitCode::from(greymilter::run_import(&args, &config)),
            Err(code) => code,
        },
        Command::SpfWalk { domains } => spf_walk(cli.config.as_deref(), &domains),
        Command::Control(cmd) => match load_for_control(cli.config.as_deref()) {
            Ok((config, _)) => greymilter::control::run_cli(&cmd, config.control.socket.as_deref()),
            Err(code) => code,
        },
    }
}

/// The configuration file to read: the one named, else the default path if
/// it exists, else none (built-in defaults).
fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let default = Path::new(config::DEFAULT_PATH);
            default.exists().then(|| default.to_path_buf())
        }
    }
}

fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ExitCode> {
    load_with(explicit, Config::load)
}

/// The configuration as the control commands read it: where the daemon's
/// sockets and files are, without the list files (a broken one must not
/// keep `greymilter reload` from reaching the daemon).
fn load_for_control(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ExitCode> {
    load_with(explicit, Config::load_without_lists)
}

fn load_with(
    explicit: Option<&Path>,
    read: fn(&Path) -> Result<Config, config::ConfigError>,
) -> Result<(Config, Option<PathBuf>), ExitCode> {
    let path = config_path(explicit);
    match &path {
        Some(p) => match read(p) {
            Ok(c) => Ok((c, path)),
            Err(e) => {
                eprintln!("{e}");
                Err(ExitCode::from(EXIT_CONFIG))
            }
        },
        None => Ok((Config::default(), None)),
    }
}

/// `[cluster] secret_file` must hold a usable secret and the TLS files
/// must load: checked by
/// `check-config` and `run` alike, with the same message and exit status.
fn check_cluster_secret(config: &Config, path: Option<&Path>) -> Result<(), ExitCode> {
    let Some(cluster) = &config.cluster else {
        return Ok(());
    };
    let checked = greymilter::cluster::SharedSecret::load(&cluster.secret_file)
        .map(drop)
        .map_err(|e| ("secret_file", e))
        .and_then(|()| match cluster.tls() {
            true => greymilter::cluster::TlsSetup::load(&cluster.tls_files()).map(drop),
            false => Ok(()),
        });
    match checked {
        Ok(()) => Ok(()),
        Err((key, e)) => {
            match path {
                Some(p) => eprintln!("{}", config::ConfigError::at_key(p, key, e)),
                None => eprintln!("{e}"),
            }
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn run(explicit: Option<&Path>) -> ExitCode {
    let (config, path) = match load(explicit) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = check_cluster_secret(&config, path.as_deref()) {
        return code;
    }
    // The same refusals as check-config, with the same file:line:col.
    if let Some(p) = &path {
        let errors = config.preflight(p).errors;
        for error in &errors {
            eprintln!("{error}");
        }
        if !errors.is_empty() {
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    match daemon::run(config, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greymilter: {e}");
            tracing::error!("{e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn check_config(explicit: Option<&Path>) -> ExitCode {
    let (config, path) = match load(explicit) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = check_cluster_secret(&config, path.as_deref()) {
        return code;
    }
    if let Some(p) = &path {
        let findings = config.preflight(p);
        for warning in &findings.warnings {
            eprintln!("{warning}");
        }
        for error in &findings.errors {
            eprintln!("{error}");
        }
        if !findings.errors.is_empty() {
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    match &path {
        Some(p) => greymilter::outln!("# {}: OK", p.display()),
        None => greymilter::outln!("# no configuration file: built-in defaults"),
    }
    let lists = &config.lists.files.loaded.summary;
    if lists.files > 0 || !lists.missing_optional.is_empty() {
        greymilter::outln!(
            "# list files: {} read, {} entries",
            lists.files,
            lists.entries
        );
        for missing in &lists.missing_optional {
            greymilter::outln!("# list file {}: missing, optional", missing.display());
        }
    }
    greymilter::out!("{}", config.to_toml());
    ExitCode::SUCCESS
}

fn stats(explicit: Option<&Path>, socket: Option<PathBuf>, timeout: Duration) -> ExitCode {
    if let Some(socket) = &socket {
        use greymilter::control::{protocol, send};
        return send(socket, &protocol::Command::Stats, timeout);
    }
    let (config, _) = match load_for_control(explicit) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(socket) = &config.control.socket {
        use greymilter::control::{protocol, send};
        return send(socket, &protocol::Command::Stats, timeout);
    }
    let (Some(pidfile), Some(stats_file)) = (&config.daemon.pidfile, &config.stats.file) else {
        eprintln!(
            "greymilter: no way to reach the daemon: pass --socket PATH or set [control] socket, or set both [daemon] pidfile and [stats] file"
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let pid = match daemon::read_pidfile(pidfile) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("cannot read the pidfile {}: {e}", pidfile.display());
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let before = modified(stats_file);
    let signal = nix::sys::signal::Signal::SIGUSR1;
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
        eprintln!("cannot signal greymilter (pid {pid}): {e}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let now = modified(stats_file);
        if now.is_some() && now != before {
            match std::fs::read_to_string(stats_file) {
                Ok(text) => {
                    greymilter::out!("{text}");
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    eprintln!("cannot read {}: {e}", stats_file.display());
                    return ExitCode::from(EXIT_RUNTIME);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "no fresh report in {} after {}",
        stats_file.display(),
        humantime::format_duration(timeout)
    );
    ExitCode::from(EXIT_RUNTIME)
}

fn spf_walk(explicit: Option<&Path>, domains: &[String]) -> ExitCode {
    let (config, _) = match load(explicit) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("greymilter spf-walk: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    // A server with nothing listening is said so at once, rather than as a
    // timeout after the resolver's full wait.
    let refused: Vec<String> = config
        .dns
        .servers
        .iter()
        .map(|s| s.0)
        .filter(|s| greymilter::dns::refuses_queries(*s, config.dns.timeout.0))
        .map(|s| s.to_string())
        .collect();
    if !refused.is_empty() && refused.len() == config.dns.servers.len() {
        eprintln!(
            "greymilter spf-walk: the DNS server(s) {} refused the query: nothing listens there (see [dns] servers)",
            refused.join(", ")
        );
        return ExitCode::from(EXIT_RUNTIME);
    }
    // The resolver is built inside the runtime it spawns its tasks on.
    let walk = runtime.block_on(async {
        let resolver = greymilter::dns::build_resolver(&config.dns_settings())?;
        Ok::<_, String>(greymilter::dns::spf_walk(&resolver, domains).await)
    });
    let walk = match walk {
        Ok(w) => w,
        Err(e) => {
            eprintln!("greymilter spf-walk: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    for d in &walk.domains {
        for note in &d.notes {
            eprintln!("greymilter spf-walk: {note}");
        }
        if let Some(e) = &d.error {
            eprintln!(
                "greymilter spf-walk: {}: {e}; no networks printed for it",
                d.domain
            );
        }
    }
    greymilter::out!("{}", walk.list_file());
    if walk.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_RUNTIME)
    }
}
