//! The generated man pages (section 8), shared by `examples/gen_man.rs`,
//! which writes them, and `tests/man_pages.rs`, which checks them.
#![allow(dead_code)]

/// `(file name, roff)` for greymilter(8), with [`EXTRA`] appended, and for
/// each subcommand.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = greymilter::cli::Cli::command_definition().disable_help_subcommand(true);
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

/// What clap cannot know: signals, files, the other page.
const EXTRA: &str = r#".SH SIGNALS
.TP
\fBSIGHUP\fR
Reload the configuration (restart-only settings are reported and kept).
.TP
\fBSIGUSR1\fR
Write the statistics report to the log and to \fB[stats] file\fR.
.TP
\fBSIGUSR2\fR
Write a checkpoint of the state now.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, finish the sessions in flight, write the final checkpoint.
.SH FILES
.TP
\fI/etc/greymilter/greylist.toml\fR
The configuration, see \fBgreylist.toml\fR(5).
.TP
\fI/var/lib/greymilter/\fR
The state file and its runtime allowances (\fISTATE\fB.allows\fR).
.TP
\fI/run/greymilter/control.sock\fR
The control socket used by \fBcheck\fR, \fBallow\fR, \fBforget\fR, \fBflush\fR, \fBstats\fR and \fBreload\fR.
.SH SEE ALSO
\fBgreylist.toml\fR(5), \fBpostconf\fR(5), \fBsendmail\fR(8)
"#;
