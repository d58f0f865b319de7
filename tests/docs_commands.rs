//! Every `greymilter ...` command line shown in README.md, docs/*.md and
//! the man pages works with the binary, so the docs and the CLI cannot
//! drift apart:
//!
//! - a command meant to be typed (a ```sh block, a man page's .nf
//!   example) is parsed by the binary's own clap definition, then run
//!   against a real daemon in a temp directory (its `--config` and
//!   `--socket` pointed there) when it talks to one: it must exit with a
//!   documented status and never say "unexpected argument";
//! - a synopsis line (any other block) may only name flags its verb has.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{BIN, Daemon};

#[derive(Debug)]
struct Line {
    /// Where it was found, for messages.
    at: String,
    text: String,
    /// A command to type (true) or a synopsis (false).
    concrete: bool,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `greymilter` lines of the fenced blocks of a Markdown file, with
/// `\`-continued lines joined.
fn markdown_lines(path: &Path, out: &mut Vec<Line>) {
    let text = fs::read_to_string(path).unwrap();
    let name = path.strip_prefix(root()).unwrap().display().to_string();
    let mut block: Option<bool> = None;
    let mut pending = String::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => Some(lang.trim() == "sh"),
            };
            continue;
        }
        let Some(concrete) = block else { continue };
        let line = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        if pending.is_empty() && !line.starts_with("greymilter ") && line != "greymilter" {
            continue;
        }
        pending.push_str(line.trim_end_matches('\\').trim_end());
        pending.push(' ');
        if !line.ends_with('\\') {
            out.push(Line {
                at: format!("{name}:{}", i + 1),
                text: pending.trim().to_string(),
                concrete,
            });
            pending.clear();
        }
    }
}

/// `greymilter` lines of a man page's no-fill (.nf) blocks, unescaped.
fn man_lines(path: &Path, out: &mut Vec<Line>) {
    let text = fs::read_to_string(path).unwrap();
    let name = path.strip_prefix(root()).unwrap().display().to_string();
    let mut nofill = false;
    for (i, raw) in text.lines().enumerate() {
        match raw {
            ".nf" => nofill = true,
            ".fi" => nofill = false,
            _ if nofill => {
                let line = raw.replace("\\-", "-").replace("\\e", "\\");
                if line.starts_with("greymilter ") {
                    out.push(Line {
                        at: format!("{name}:{}", i + 1),
                        text: line,
                        concrete: true,
                    });
                }
            }
            _ => {}
        }
    }
}

fn all_lines() -> Vec<Line> {
    let mut out = Vec::new();
    markdown_lines(&root().join("README.md"), &mut out);
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        markdown_lines(f, &mut out);
    }
    let mut pages: Vec<PathBuf> = fs::read_dir(root().join("man"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    for p in &pages {
        man_lines(p, &mut out);
    }
    out
}

/// Shell words up to the first unquoted operator (`|`, `&&`, `>`, `;`).
fn words(line: &str) -> Vec<String> {
    split(line, true)
}

/// The words of a synopsis: `[--flag X]` is `--flag X`, `A | B` both.
fn synopsis_words(line: &str) -> Vec<String> {
    split(line, false)
        .into_iter()
        .map(|w| w.trim_matches(['[', ']']).to_string())
        .filter(|w| !w.is_empty() && w != "|" && w != "...")
        .collect()
}

fn split(line: &str, shell: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '|' | '&' | '>' | ';' | '<') if shell && (!in_word || c != '<') => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                }
                return out;
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

fn definition() -> clap::Command {
    greymilter::cli::Cli::command_definition()
}

/// The verb of a command line (`run` when there is none) and its words
/// after `greymilter`, with the global `--config FILE` taken out
/// wherever it is.
fn verb_of(words: &[String]) -> (String, Vec<String>) {
    let mut rest = Vec::new();
    let mut verb = None;
    let mut it = words.iter().skip(1);
    while let Some(w) = it.next() {
        if w == "--config" || w == "-c" {
            it.next();
            continue;
        }
        if verb.is_none() && !w.starts_with('-') {
            verb = Some(w.clone());
            continue;
        }
        rest.push(w.clone());
    }
    (verb.unwrap_or_else(|| "run".to_string()), rest)
}

/// The long flags a verb accepts (with the global ones); for a verb with
/// verbs of its own (`import postgrey`), those of the one `rest` names.
fn flags_of(verb: &str, rest: &[String]) -> Vec<String> {
    let cmd = definition();
    let mut flags = vec!["--config".to_string(), "--help".to_string()];
    let mut sub = cmd
        .find_subcommand(verb)
        .unwrap_or_else(|| panic!("greymilter has no verb {verb:?}"));
    if let Some(inner) = rest.first().and_then(|w| sub.find_subcommand(w)) {
        flags.extend(
            sub.get_arguments()
                .filter_map(|a| a.get_long())
                .map(|l| format!("--{l}")),
        );
        sub = inner;
    }
    flags.extend(
        sub.get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| format!("--{l}")),
    );
    flags
}

fn long_flags(words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap_or(w).to_string())
        .collect()
}

/// A daemon with a control socket, a state and a stats file.
fn daemon(dir: &Path) -> Daemon {
    Daemon::start_in(
        dir,
        "[state]\nfile = \"{dir}/state\"\n[stats]\nfile = \"{dir}/stats.txt\"\n\
         [control]\nsocket = \"{dir}/control.sock\"\n",
    )
}

/// What the binary may exit with after a documented command.
fn expected_status(verb: &str) -> &'static [i32] {
    match verb {
        // 4: a recipient was deferred, 5: rejected (documented).
        "query" => &[0, 4, 5],
        _ => &[0],
    }
}

/// Verbs run for real against the test daemon; the others (`run`,
/// `spf-walk`, which needs the Internet's DNS) are only parsed.
const RUN: &[&str] = &[
    "check-config",
    "check",
    "allow",
    "forget",
    "flush",
    "stats",
    "reload",
    "query",
];

#[test]
fn every_documented_command_line_works() {
    let lines = all_lines();
    let concrete = lines.iter().filter(|l| l.concrete).count();
    assert!(
        concrete >= 10 && lines.len() >= 20,
        "{concrete} commands, {} lines found",
        lines.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path());
    let mut failures = Vec::new();
    let mut ran = 0;
    for line in &lines {
        let words = if line.concrete {
            words(&line.text)
        } else {
            synopsis_words(&line.text)
        };
        let (verb, rest) = verb_of(&words);
        if verb.contains('|') {
            // `greymilter check|allow|forget|flush|reload ...`: verbs that exist.
            for v in verb.split('|') {
                flags_of(v, &[]);
            }
            continue;
        }
        let known = flags_of(&verb, &rest);
        let unknown: Vec<String> = long_flags(&rest)
            .into_iter()
            .filter(|f| !known.contains(f))
            .collect();
        if !unknown.is_empty() {
            failures.push(format!(
                "{}: {}: greymilter {verb} has no {unknown:?}",
                line.at, line.text
            ));
            continue;
        }
        if !line.concrete {
            continue;
        }
        if let Err(e) = definition().try_get_matches_from(&words) {
            failures.push(format!("{}: {}: {}", line.at, line.text, e.kind()));
            continue;
        }
        if !RUN.contains(&verb.as_str()) {
            continue;
        }
        // Against the test daemon: its configuration, its milter socket.
        let mut args = vec!["--config".to_string(), d.config.display().to_string()];
        args.push(verb.clone());
        let mut it = rest.iter();
        while let Some(w) = it.next() {
            if verb == "query" && w == "--socket" {
                it.next();
                args.push(w.clone());
                args.push(format!("inet:{}@127.0.0.1", d.port));
                continue;
            }
            args.push(w.clone());
        }
        let out = Command::new(BIN).args(&args).output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        ran += 1;
        if !expected_status(&verb).contains(&code) || stderr.contains("unexpected argument") {
            failures.push(format!(
                "{}: {} exited {code}: {stderr}{}",
                line.at,
                line.text,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "documented command lines that do not work:\n{}",
        failures.join("\n")
    );
    assert!(ran >= 8, "only {ran} commands ran against the daemon");
}

/// The checker itself: a wrong flag in a synopsis or a command is caught.
#[test]
fn a_wrong_flag_is_caught() {
    let w = words("greymilter check --client 192.0.2.1 --frm a@b.example --to c@d.example | x");
    assert_eq!(w.len(), 8);
    let (verb, rest) = verb_of(&w);
    assert_eq!(verb, "check");
    assert!(!flags_of(&verb, &rest).contains(&long_flags(&rest)[1]));
    let w = words("greymilter import postgrey --clients c.dump --dry-run t.dump");
    let (verb, rest) = verb_of(&w);
    assert!(flags_of(&verb, &rest).contains(&"--clients".to_string()));
    let w = words("greymilter -c /etc/g.toml spf-walk example.com > out &&");
    assert_eq!(
        verb_of(&w),
        ("spf-walk".to_string(), vec!["example.com".to_string()])
    );
    assert_eq!(words("greymilter check --from '<>' --to x")[3], "<>");
    let w = synopsis_words("greymilter forget --client IP | --network CIDR [--for 7d]");
    assert_eq!(long_flags(&w), ["--client", "--network", "--for"]);
}
