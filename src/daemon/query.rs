//! `greymilter query`: play the MTA against a running milter, so an admin
//! can check a setup. It is a real delivery attempt as far as the milter is
//! concerned: a new tuple is recorded (and greylisted) just as for an SMTP
//! client, and a later query after the delay passes.

use std::net::IpAddr;
use std::time::Duration;

use clap::Args;

use crate::milter::client::{ClientBuilder, ConnectAddr};
use crate::milter::codec::{Response, proto};
use crate::milter::listener::ListenSpec;

/// Exit status: every recipient passes.
pub const EXIT_PASS: u8 = 0;
/// Exit status: the milter could not be reached or answered nonsense.
pub const EXIT_ERROR: u8 = 2;
/// Exit status: at least one recipient (or the session) was tempfailed.
pub const EXIT_TEMPFAIL: u8 = 4;
/// Exit status: at least one recipient (or the session) was rejected.
pub const EXIT_REJECT: u8 = 5;

#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The milter socket: inet:PORT@HOST, inet:HOST:PORT, unix:/path, ...
    #[arg(long, value_name = "SPEC")]
    pub socket: String,
    /// The SMTP client's address.
    #[arg(long, value_name = "IP")]
    pub client: IpAddr,
    /// The client's verified host name [default: "[IP]", an unverified client]
    #[arg(long, value_name = "NAME")]
    pub client_name: Option<String>,
    /// Envelope sender ("<>" or "" for the null sender).
    #[arg(long, value_name = "ADDR")]
    pub from: String,
    /// Envelope recipient; repeat for several.
    #[arg(long, value_name = "ADDR", required = true)]
    pub to: Vec<String>,
    /// SASL login of the session ({auth_authen}).
    #[arg(long, value_name = "USER")]
    pub auth: Option<String>,
    /// How long to wait for each answer.
    #[arg(long, default_value = "10s", value_parser = crate::config::parse_duration)]
    pub timeout: Duration,
}

/// Runs the query and prints one line per step; returns the exit status.
pub fn run(args: &QueryArgs) -> u8 {
    let spec: ListenSpec = match args.socket.parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("--socket: {e}");
            return EXIT_ERROR;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return EXIT_ERROR;
        }
    };
    let mut out = String::new();
    let result = runtime.block_on(query(&spec, args, &mut out));
    crate::out!("{out}");
    match result {
        Ok(status) => status,
        Err(e) => {
            eprintln!("milter {spec}: {e}");
            EXIT_ERROR
        }
    }
}

/// The conversation; every step's verdict is appended to `out`.
pub async fn query(spec: &ListenSpec, args: &QueryArgs, out: &mut String) -> std::io::Result<u8> {
    // Offered without no-reply bits and without skipping CONNECT and MAIL,
    // so that both are answered and the output says where a decision was
    // taken.
    let mut milter = ClientBuilder::new()
        .protocol(proto::ALL & !proto::NR_ALL & !(proto::NOCONNECT | proto::NOMAIL))
        .timeout(args.timeout)
        .connect(spec)
        .await?;
    milter.negotiate().await?;
    let name = args
        .client_name
        .clone()
        .unwrap_or_else(|| format!("[{}]", args.client));
    let connect = milter
        .connect(&name, &ConnectAddr::Ip(args.client, 0))
        .await?;
    let who = match &args.client_name {
        Some(n) => format!("{n}[{}]", args.client),
        None => name.clone(),
    };
    push_line(out, &format!("CONNECT {who}"), &connect);
    let mut worst = EXIT_PASS;
    if let Some(done) = verdict_ends(&connect, &mut worst) {
        milter.quit().await?;
        return Ok(done);
    }
    if let Some(login) = &args.auth {
        milter
            .macros(b'M', &[("{auth_authen}", login), ("{auth_type}", "PLAIN")])
            .await?;
    }
    let sender = envelope(&args.from);
    let mail = milter.mail(&[&sender]).await?;
    push_line(out, &format!("MAIL FROM:{sender}"), &mail);
    if let Some(done) = verdict_ends(&mail, &mut worst) {
        milter.quit().await?;
        return Ok(done);
    }
    let mut passed = 0;
    for to in &args.to {
        let recipient = envelope(to);
        let rcpt = milter.rcpt(&[&recipient]).await?;
        push_line(out, &format!("RCPT TO:{recipient}"), &rcpt);
        if matches!(rcpt, Response::Continue | Response::Accept) {
            passed += 1;
        }
        worst = worst.max(status_of(&rcpt));
    }
    if passed > 0 {
        let eom = milter.eom().await?;
        for modification in &eom.modifications {
            push_line(out, "EOM", modification);
        }
        push_line(out, "EOM", &eom.last);
    }
    milter.abort().await?;
    milter.quit().await?;
    Ok(worst)
}

/// An address as MAIL FROM and RCPT TO carry it: in angle brackets, which
/// the caller may have written already (`<>` is the null sender, as is "").
fn envelope(address: &str) -> String {
    let bare = address.trim();
    let bare = bare
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(bare);
    format!("<{bare}>")
}

/// At CONNECT and MAIL: Accept ends the conversation with every recipient
/// passing; a tempfail or reject ends it with that status.
fn verdict_ends(response: &Response, worst: &mut u8) -> Option<u8> {
    match response {
        Response::Accept => Some(EXIT_PASS),
        Response::Continue => None,
        other => {
            *worst = status_of(other);
            Some(*worst)
        }
    }
}

fn status_of(response: &Response) -> u8 {
    match response {
        Response::Continue | Response::Accept => EXIT_PASS,
        Response::Tempfail => EXIT_TEMPFAIL,
        Response::ReplyCode { code, .. } if *code < 500 => EXIT_TEMPFAIL,
        Response::Reject | Response::ReplyCode { .. } => EXIT_REJECT,
        _ => EXIT_ERROR,
    }
}

fn push_line(out: &mut String, step: &str, response: &Response) {
    let what = match response {
        Response::Continue => "pass (continue)".to_string(),
        Response::Accept => "accept (no further filtering)".to_string(),
        Response::Tempfail => "tempfail (no text)".to_string(),
        Response::Reject => "reject (no text)".to_string(),
        // The wire form doubles % for Sendmail; show what the client reads.
        Response::ReplyCode { code, text, .. } => {
            let kind = if *code < 500 { "tempfail" } else { "reject" };
            format!("{kind}: {code} {}", text.replace("%%", "%"))
        }
        Response::AddHeader { name, value } => format!("add header {name}: {value}"),
        other => format!("{other:?}"),
    };
    out.push_str(&format!("{step}: {what}\n"));
}
