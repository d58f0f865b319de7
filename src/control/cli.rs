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
        /// The client's verified host name as the MTA would send it
        /// [default: an unverified client].
        #[arg(long, value_name = "NAME", alias = "name")]
        client_name: Option<String>,
        /// The client authenticated (SMTP AUTH) as this user.
        #[arg(long, value_name = "USER")]
        auth: Option<String>,
        /// Old spelling of --auth, kept for scripts.
        #[arg(long, hide = true)]
        authenticated: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Let a tuple, a client network or a sender domain through for a while.
    Allow {
        #[command(flatten)]
        what: Target,
        /// How long [tuple: the whitelist lifetime; required otherwise].
        #[arg(long = "for", value_name = "DURATION", value_parser = crate::config::parse_duration)]
        duration: Option<Duration>,
        /// Allow a network wider than /8 (IPv4) or /32 (IPv6).
        #[arg(long)]
        force: bool,
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
    #[arg(long, value_name = "IP")]
    pub client: IpAddr,
    /// Envelope sender ("<>" or "" for the null sender).
    #[arg(long, value_name = "ADDR")]
    pub from: String,
    /// Envelope recipient.
    #[arg(long, value_name = "ADDR")]
    pub to: String,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Target {
    /// A tuple: client IP (with --from and --to).
    #[arg(long, value_name = "IP", requires_all = ["from", "to"], conflicts_with_all = ["network", "sender_domain"])]
    pub client: Option<IpAddr>,
    /// The tuple's envelope sender ("<>" or "" for the null sender).
    #[arg(long, value_name = "ADDR", requires = "client")]
    pub from: Option<String>,
    /// The tuple's envelope recipient.
    #[arg(long, value_name = "ADDR", requires = "client")]
    pub to: Option<String>,
    /// A client network (CIDR or address).
    #[arg(long, value_name = "CIDR", conflicts_with = "sender_domain")]
    pub network: Option<IpNet>,
    /// A sender domain.
    #[arg(long, value_name = "DOMAIN")]
    pub sender_domain: Option<String>,
}

#[derive(Debug, Args)]
pub struct SocketArgs {
    /// The control socket [default: [control] socket of the configuration].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// How long to wait for the answer.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::config::parse_duration)]
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
                client_name,
                auth,
                authenticated,
                ..
            } => Command::Check {
                tuple: Tuple {
                    client: tuple.client,
                    from: sender(&tuple.from),
                    to: tuple.to.clone(),
                },
                name: client_name.clone(),
                authenticated: auth.is_some() || *authenticated,
            }
            .to_line(),
            ControlCommand::Allow {
                what,
                duration,
                force,
                ..
            } => {
                if duration.is_none() && what.client.is_none() {
                    return Err(
                        "--for is required with --network and --sender-domain (how long, like --for 1d)"
                            .to_string(),
                    );
                }
                let d = match duration {
                    Some(d) if d.as_secs() == 0 => {
                        return Err("--for must be at least 1s".to_string());
                    }
                    Some(d) => format!(" for={}s", d.as_secs()),
                    None => String::new(),
                };
                let force = if *force { " force=yes" } else { "" };
                format!("allow {}{d}{force}", target(what))
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
            sender(t.from.as_deref().unwrap_or_default()),
            t.to.as_deref().unwrap_or_default()
        ),
        (None, Some(n), _) => format!("network={n}"),
        (None, None, Some(d)) => format!("sender-domain={d}"),
        (None, None, None) => String::new(),
    }
}

/// The null sender is `<>` on the control protocol; on the command line
/// `--from ""` means it too.
fn sender(from: &str) -> String {
    if from.trim().is_empty() {
        "<>".to_string()
    } else {
        from.to_string()
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
        eprintln!("greymilter: no control socket: pass --socket PATH or set [control] socket");
        return ExitCode::from(2);
    };
    send(socket, &command, args.timeout)
}

/// Sends one command and prints the answer.
pub fn send(socket: &Path, command: &Command, timeout: Duration) -> ExitCode {
    match client::request(socket, command, timeout) {
        Ok(reply) if reply.ok => {
            crate::out!("{}", reply.text);
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
