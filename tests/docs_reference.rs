//! The reference pages cannot fall behind the daemon: every line of the
//! statistics report a real daemon prints (plus a cluster node's lines) is
//! described in docs/statistics.md, in the printed order, and every
//! `action=`, `reason=`, `src=`, `spf=` and `proto=` value of the decision log is in
//! docs/log-reference.md; the README stays a short first read that keeps
//! the commands CI and newcomers rely on.

mod support;

use std::fs;
use std::path::Path;

use support::{Daemon, watch};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn page(name: &str) -> String {
    fs::read_to_string(root().join("docs").join(name)).unwrap()
}

/// The labels of a table row `| `Label` | ...`, in page order.
fn described_labels(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once("` |"))
        .map(|(label, _)| label.to_string())
        .collect()
}

#[test]
fn every_report_line_is_described_in_statistics_md_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        dir.path(),
        "[state]\nfile = \"{dir}/state\"\n[stats]\nfile = \"{dir}/stats.txt\"\n",
    );
    let report = watch::fetch_report(&d, &dir.path().join("stats.txt"));
    let mut printed: Vec<String> = report.labels().iter().map(|l| l.to_string()).collect();
    // A cluster node adds its lines after Decision-Timeouts.
    let mut cluster = String::new();
    greymilter::cluster::ClusterCounters::default().report(&mut cluster);
    let at = printed
        .iter()
        .position(|l| l == "Decision-Timeouts")
        .expect("Decision-Timeouts")
        + 1;
    let cluster_labels = cluster
        .lines()
        .map(|l| l.split("  ").next().unwrap_or("").trim().to_string());
    printed.splice(at..at, cluster_labels);

    let described = described_labels(&page("statistics.md"));
    let missing: Vec<&String> = printed.iter().filter(|l| !described.contains(l)).collect();
    assert!(
        missing.is_empty(),
        "docs/statistics.md does not describe {missing:?}"
    );
    let in_doc_order: Vec<&String> = described.iter().filter(|l| printed.contains(l)).collect();
    let printed_refs: Vec<&String> = printed.iter().collect();
    assert_eq!(
        in_doc_order, printed_refs,
        "docs/statistics.md lists the lines in another order than the report"
    );
    assert!(printed.len() >= 40, "{printed:?}");
}

/// The values `Type::Variant => "value"` (or `=> ("prefix:", "value")`,
/// joined) spells in a source file; arms built from a variable are left
/// to the lists they name.
fn values(file: &str, ty: &str) -> Vec<String> {
    let text = fs::read_to_string(root().join(file)).unwrap();
    let prefix = format!("{ty}::");
    let found: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix(&prefix)?;
            let arm = rest.split_once("=> ")?.1;
            let arm = arm.strip_prefix("Some(").unwrap_or(arm);
            let literals: Vec<&str> = arm.split('"').skip(1).step_by(2).collect();
            match (arm.starts_with('('), literals.as_slice()) {
                (false, [value, ..]) => Some(value.to_string()),
                (true, [p, value]) => Some(format!("{p}{value}")),
                _ => None,
            }
        })
        .collect();
    assert!(
        !found.is_empty(),
        "no `{ty}::X => \"...\"` in {file}: update this test to where the log values are spelt"
    );
    found
}

#[test]
fn every_action_and_reason_value_is_in_the_log_reference() {
    let reference = page("log-reference.md");
    let mut wanted: Vec<String> = Vec::new();
    wanted.extend(values("src/greylist/engine.rs", "Action"));
    wanted.extend(values("src/greylist/engine.rs", "Reason"));
    wanted.extend(
        values("src/greylist/lists.rs", "ListName")
            .into_iter()
            .map(|l| format!("list:{l}")),
    );
    wanted.extend(values("src/pipeline/envelope.rs", "Source"));
    wanted.extend(values("src/pipeline/envelope.rs", "Proto"));
    wanted.extend(values("src/greylist/facts.rs", "SpfResult"));
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|v| !reference.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/log-reference.md does not explain {missing:?}"
    );
    assert!(wanted.len() >= 30, "{wanted:?}");
}

#[test]
fn the_readme_is_short_and_keeps_its_commands() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines: move details to docs/"
    );
    for needed in [
        "cargo run --release",
        ".ci/run",
        "```sh\ncargo test --all-targets\n```",
        "smtpd_milters = {",
        "INPUT_MAIL_FILTER(",
    ] {
        assert!(readme.contains(needed), "README.md lost {needed:?}");
    }
    // Every page of docs/ is reachable from the README's index.
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            assert!(
                readme.contains(&format!("(docs/{name})")),
                "README.md does not link docs/{name}"
            );
        }
    }
}
