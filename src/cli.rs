//! The command line's definition, in the library so that the man page
//! (man/greymilter.8, `cargo run --example gen_man`) is generated from the
//! same source as `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "greymilter",
    version,
    about = "A greylisting milter for Postfix and Sendmail"
)]
pub struct Cli {
    /// Configuration file [default: /etc/greymilter/greylist.toml if it
    /// exists, else built-in defaults]
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (the default).
    Run,
    /// Validate the configuration and print the effective settings.
    CheckConfig,
    /// Ask the running daemon for a fresh statistics report and print it:
    /// through the control socket if one is configured, else by SIGUSR1 to
    /// the pidfile's process and reading the stats file.
    Stats {
        /// The control socket [default: [control] socket of the configuration].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// How long to wait for the report.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::config::parse_duration)]
        timeout: Duration,
    },
    #[command(flatten)]
    Control(crate::control::ControlCommand),
    /// Act as the MTA against a running milter and print each verdict.
    /// Exit status: 0 every recipient passes, 4 a recipient was tempfailed,
    /// 5 a recipient was rejected, 2 the milter could not be reached.
    Query(crate::daemon::QueryArgs),
    /// Carry another greylister's state over: postgrey's databases (from
    /// `db_dump`) or milter-greylist's dump, keyed as greymilter keys,
    /// merged into the state file of the stopped daemon. Entries that
    /// cannot be keyed are counted, never fatal. Exit status: 0 imported,
    /// 1 configuration error, 2 unreadable input, a newer format, or a
    /// running daemon.
    Import(crate::import::cli::ImportArgs),
    /// Print, as a list file, the networks that the SPF records of the
    /// domains authorise (following include, redirect, a, mx), using
    /// `[dns] servers` of the configuration. Exit status: 0 every domain
    /// walked, 2 a domain gave nothing (no record, a limit, DNS failure).
    SpfWalk {
        #[arg(required = true, value_name = "DOMAIN")]
        domains: Vec<String>,
    },
}

impl Cli {
    /// The clap command, for generators.
    pub fn command_definition() -> clap::Command {
        <Cli as clap::CommandFactory>::command()
    }
}
