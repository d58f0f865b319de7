//! The generated man pages (section 8), shared by `examples/gen_man.rs`,
//! which writes them, and `tests/man_pages.rs`, which checks them.
#![allow(dead_code)]

pub mod config_reference;

/// `(file name, roff)` for greymilter(8), with [`EXTRA`] appended, and for
/// each subcommand.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = greymilter::cli::Cli::command_definition()
        .disable_help_subcommand(true)
        .long_about(DESCRIPTION);
    cmd.build();
    let render = |c: clap::Command| {
        let man = clap_mangen::Man::new(c).section("8").date("");
        let name = man.get_filename();
        let mut out = Vec::new();
        man.render(&mut out).unwrap();
        (name, out)
    };
    let mut pages: Vec<_> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| render(s.clone()))
        .collect();
    let (name, mut main) = render(cmd);
    main.extend_from_slice(EXTRA.as_bytes());
    pages.insert(0, (name, main));
    pages
}

/// greymilter(8)'s DESCRIPTION (clap's `about` is the NAME line).
const DESCRIPTION: &str = "greymilter is a greylisting daemon for Postfix and Sendmail, speaking the milter protocol. At RCPT TO it keys the (client network, sender, recipient) tuple into an in-memory table: a new tuple gets a temporary 451 4.7.1, a retry after the delay passes and the tuple is whitelisted for weeks. Lists, DNS checks (SPF, DNSWL, DNSBL) and an auto-whitelist of client networks decide first. The table is checkpointed to disk by a forked child and can be shared by several MX hosts through Redis.

Without a subcommand greymilter runs the daemon in the foreground (under systemd: Type=notify). The other subcommands check a configuration, administer a running daemon through its control socket, test a milter as an MTA would, and generate list files from SPF records. The configuration is described in greylist.toml(5).";

/// What clap cannot know: exit statuses, signals, examples, files.
const EXTRA: &str = r#".SH EXIT STATUS
.TP
\fB0\fR
Success (\fBquery\fR: every recipient passes).
.TP
\fB1\fR
A configuration error (the message names \fIfile\fB:\fIline\fB:\fIcolumn\fR), or the control socket refused the request.
.TP
\fB2\fR
Could not start, or could not reach the daemon; \fBspf\-walk\fR: a domain gave no networks.
.TP
\fB4\fR, \fB5\fR
\fBquery\fR only: a recipient was tempfailed (4) or rejected (5).
.SH SIGNALS
.TP
\fBSIGHUP\fR
Reload the configuration and every list file (restart-only settings are reported and kept; on error the running configuration stays).
.TP
\fBSIGUSR1\fR
Write the statistics report to the log and to \fB[stats] file\fR.
.TP
\fBSIGUSR2\fR
Write a checkpoint of the state now.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, finish the sessions in flight, write the final checkpoint.
.SH EXAMPLES
Check a configuration before a reload:
.PP
.RS
.nf
greymilter check\-config \-\-config /etc/greymilter/greylist.toml
.fi
.RE
.PP
What would happen to a recipient now, and why (records nothing):
.PP
.RS
.nf
greymilter check \-\-client 192.0.2.7 \-\-from alice@example.org \-\-to bob@example.net
.fi
.RE
.PP
Let a partner's network through for a week, and take it back:
.PP
.RS
.nf
greymilter allow \-\-network 198.51.100.0/24 \-\-for 7d
greymilter forget \-\-network 198.51.100.0/24
.fi
.RE
.PP
Play the MTA against the running milter (exit 4: deferred):
.PP
.RS
.nf
greymilter query \-\-socket inet:10030@127.0.0.1 \-\-client 192.0.2.7 \-\-from alice@example.org \-\-to bob@example.net
.fi
.RE
.PP
A fresh statistics report:
.PP
.RS
.nf
greymilter stats
.fi
.RE
.SH FILES
.TP
\fI/etc/greymilter/greylist.toml\fR
The configuration, see \fBgreylist.toml\fR(5).
.TP
\fI/etc/greymilter/large\-senders\fR, \fI/etc/greymilter/whitelist_recipients\fR
The shipped lists, named by the example configuration.
.TP
\fI/var/lib/greymilter/\fR
The state file and its runtime allowances (\fISTATE\fB.allows\fR).
.TP
\fI/run/greymilter/control.sock\fR
The control socket used by \fBcheck\fR, \fBallow\fR, \fBforget\fR, \fBflush\fR, \fBstats\fR and \fBreload\fR.
.SH SEE ALSO
\fBgreylist.toml\fR(5), \fBpostconf\fR(5), \fBsendmail\fR(8), \fBmiltertest\fR(8).
The admin guide, log reference and migration guide are in \fIdocs/\fR of the source
and in \fI/usr/share/doc/greymilter/\fR.
"#;
