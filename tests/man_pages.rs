//! The man pages: greymilter(8) and its subcommands' pages are generated
//! from the CLI definition and must match what is checked in (regenerate
//! with `cargo run --example gen_man`), and so are greylist.toml(5) and
//! docs/configuration.md (from tests/support/man/config_reference.rs);
//! every page renders with `man -l` without a warning.

#[path = "support/man/mod.rs"]
mod man_support;

use std::path::Path;
use std::process::Command;

fn man_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/man"))
}

#[test]
fn generated_pages_are_up_to_date() {
    for (name, text) in man_support::pages() {
        let path = man_dir().join(&name);
        let checked_in = std::fs::read(&path).unwrap_or_default();
        assert!(
            checked_in == text,
            "{} is out of date: run `cargo run --example gen_man`",
            path.display()
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, text) in man_support::config_reference::files() {
        let checked_in = std::fs::read(root.join(name)).unwrap_or_default();
        assert!(
            checked_in == text,
            "{name} is out of date: edit tests/support/man/config_reference.rs, then run `cargo run --example gen_man`"
        );
    }
}

#[test]
fn every_page_renders_without_warnings() {
    if Command::new("man").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "man missing: .ci/install-ops.sh installs man-db"
        );
        eprintln!("skipped: man is not installed");
        return;
    }
    let mut n = 0;
    for entry in std::fs::read_dir(man_dir()).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-Tutf8", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {out:?}", path.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{}: {stderr}", path.display());
        assert!(!out.stdout.is_empty());
        n += 1;
    }
    assert!(n >= 2, "no pages in {}", man_dir().display());
}

/// greymilter(8) says more than clap can: what the daemon is, how it
/// exits, examples, files and related pages.
#[test]
fn greymilter_8_has_the_sections_an_admin_looks_for() {
    let page = std::fs::read_to_string(man_dir().join("greymilter.8")).unwrap();
    for section in [
        ".SH DESCRIPTION",
        ".SH EXIT STATUS",
        ".SH SIGNALS",
        ".SH EXAMPLES",
        ".SH FILES",
        ".SH SEE ALSO",
    ] {
        assert!(page.contains(section), "greymilter.8 lacks {section}");
    }
    let description = page
        .split(".SH DESCRIPTION\n")
        .nth(1)
        .and_then(|d| d.split(".SH ").next())
        .unwrap();
    assert!(
        description.len() > 300 && description.contains("greylist.toml"),
        "DESCRIPTION only repeats NAME: {description}"
    );
}
