//! The control subcommands of the command line (`greymilter check`,
//! `allow`, `forget`, `flush`, `reload`), turned into protocol commands.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use ipnet::IpNet;

use super::client;
use super::protocol::{Command, Tuple};

#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// Say what would happen to a recipient now, and why, recording
    /// nothing (through the control socket).
    Check {
        #[command(flatten)]
        tuple: TupleArgs,
        /// The client's host name as the MTA would send it.
        #[arg(long)]
        name: Option<String>,
        /// The client authenticated (SMTP AUTH).
        #[arg(long)]
        authenticated: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Let a tuple, a client network or a sender domain through for a while.
    Allow {
        #[command(flatten)]
        what: Target,
        /// How long [tuple: the whitelist lifetime; required otherwise].
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Forget a tuple, the tuples of a client network (and its allowance)
    /// or a sender domain's allowance.
    Forget {
        #[command(flatten)]
        what: Target,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Drop every pending (not yet passed) tuple.
    Flush {
        /// Required: what to flush.
        #[arg(long, required = true)]
        pending: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Reload the configuration through the control socket (like SIGHUP).
    Reload {
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// The shared state of several MX hosts (`[cluster]`).
    Cluster {
        #[command(subcommand)]
        verb: ClusterVerb,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterVerb {
    /// Make this host's timing settings (delay, retry_window,
    /// whitelist_lifetime, auto_whitelist_after, the prefixes,
    /// normalize_sender, spf) the cluster's: hosts that differ from them
    /// warn at their next start or reload.
    AdoptSettings {
        #[command(flatten)]
        socket: SocketArgs,
    },
}

#[derive(Debug, Args)]
pub struct TupleArgs {
    /// Client IP address.
    #[arg(long)]
    pub client: IpAddr,
    /// Envelope sender (`<>` for bounces).
    #[arg(long)]
    pub from: String,
    /// Envelope recipient.
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Target {
    /// A tuple: client IP (with --from and --to).
    #[arg(long, requires_all = ["from", "to"], conflicts_with_all = ["network", "sender_domain"])]
    pub client: Option<IpAddr>,
    /// The tuple's envelope sender (`<>` for bounces).
    #[arg(long, requires = "client")]
    pub from: Option<String>,
    /// The tuple's envelope recipient.
    #[arg(long, requires = "client")]
    pub to: Option<String>,
    /// A client network (CIDR or address).
    #[arg(long, conflicts_with = "sender_domain")]
    pub network: Option<IpNet>,
    /// A sender domain.
    #[arg(long)]
    pub sender_domain: Option<String>,
}

#[derive(Debug, Args)]
pub struct SocketArgs {
    /// The control socket [default: [control] socket of the configuration].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl ControlCommand {
    fn socket(&self) -> &SocketArgs {
        match self {
            ControlCommand::Check { socket, .. }
            | ControlCommand::Allow { socket, .. }
            | ControlCommand::Forget { socket, .. }
            | ControlCommand::Flush { socket, .. }
            | ControlCommand::Reload { socket }
            | ControlCommand::Cluster {
                verb: ClusterVerb::AdoptSettings { socket },
            } => socket,
        }
    }

    /// The protocol command, or a usage error.
    pub fn to_command(&self) -> Result<Command, String> {
        let line = match self {
            ControlCommand::Check {
                tuple,
                name,
                authenticated,
                ..
            } => Command::Check {
                tuple: Tuple {
                    client: tuple.client,
                    from: tuple.from.clone(),
                    to: tuple.to.clone(),
                },
                name: name.clone(),
                authenticated: *authenticated,
            }
            .to_line(),
            ControlCommand::Allow { what, duration, .. } => {
                let d = duration.map(|d| format!(" for={}s", d.as_secs().max(1)));
                format!("allow {}{}", target(what), d.unwrap_or_default())
            }
            ControlCommand::Forget { what, .. } => format!("forget {}", target(what)),
            ControlCommand::Flush { .. } => "flush pending".to_string(),
            ControlCommand::Reload { .. } => "reload".to_string(),
            ControlCommand::Cluster {
                verb: ClusterVerb::AdoptSettings { .. },
            } => "cluster adopt-settings".to_string(),
        };
        // Through the daemon's own parser: the same checks on both sides.
        super::protocol::parse(line.as_bytes())
    }
}

fn target(t: &Target) -> String {
    match (&t.client, &t.network, &t.sender_domain) {
        (Some(c), _, _) => format!(
            "client={c} from={} to={}",
            t.from.as_deref().unwrap_or_default(),
            t.to.as_deref().unwrap_or_default()
        ),
        (None, Some(n), _) => format!("network={n}"),
        (None, None, Some(d)) => format!("sender-domain={d}"),
        (None, None, None) => String::new(),
    }
}

/// Runs a control command against `configured` (the configuration's
/// `[control] socket`) unless `--socket` names another. Exit status: 0 ok,
/// 1 the daemon refused, 2 no answer.
pub fn run(cmd: &ControlCommand, configured: Option<&Path>) -> ExitCode {
    let command = match cmd.to_command() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("greymilter: {e}");
            return ExitCode::from(1);
        }
    };
    let args = cmd.socket();
    let Some(socket) = args.socket.as_deref().or(configured) else {
        eprintln!("greymilter: no control socket: set [control] socket or pass --socket");
        return ExitCode::from(2);
    };
    send(socket, &command, args.timeout)
}

/// Sends one command and prints the answer.
pub fn send(socket: &Path, command: &Command, timeout: Duration) -> ExitCode {
    match client::request(socket, command, timeout) {
        Ok(reply) if reply.ok => {
            print!("{}", reply.text);
            ExitCode::SUCCESS
        }
        Ok(reply) => {
            eprintln!("greymilter: {}", reply.text);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("greymilter: {e}");
            ExitCode::from(2)
        }
    }
}
