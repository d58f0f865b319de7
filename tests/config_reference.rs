//! One source for the configuration reference: greylist.toml(5) and
//! docs/configuration.md are generated from
//! tests/support/man/config_reference.rs (tests/man_pages.rs checks they
//! are up to date), with defaults taken from the structs. Here: that
//! reference names exactly the keys the configuration structs accept, and
//! greylist.toml.example names every one of them, with the built-in
//! default wherever it sets one.

#[path = "support/man/mod.rs"]
mod man_support;

use std::collections::{BTreeMap, BTreeSet};

use greymilter::config::Config;
use man_support::config_reference::{EXAMPLE, SECTIONS, defaults};

const EXAMPLE_FILE: &str = include_str!("../greylist.toml.example");

/// Keys the example sets to something else than the default, on purpose.
const EXAMPLE_CHOICES: &[&str] = &["lists.files.accept_clients", "control.socket"];

/// The keys a section's struct accepts, as serde lists them when it meets
/// an unknown one (`""`: the top level, whose keys are the sections).
fn struct_keys(section: &str) -> BTreeSet<String> {
    let header = if section.is_empty() {
        String::new()
    } else {
        format!("[{section}]\n")
    };
    let text = format!("{header}zz_not_a_key = 1\n");
    let err = Config::parse(&text, "probe").unwrap_err().message;
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("[{section}]: {err}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_reference_names_exactly_the_keys_of_the_structs() {
    let mut sections: BTreeSet<String> = SECTIONS
        .iter()
        .map(|s| s.name.split('.').next().unwrap().to_string())
        .collect();
    assert_eq!(struct_keys(""), sections, "sections");
    sections.clear();
    for section in SECTIONS {
        let mut want = struct_keys(section.name);
        if section.name == "lists" {
            assert!(want.remove("files"), "[lists] has files");
        }
        let have: BTreeSet<String> = section.keys.iter().map(|k| k.name.to_string()).collect();
        let missing: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "[{}]: keys missing from tests/support/man/config_reference.rs: {missing:?}; \
             documented but unknown to the structs: {extra:?}",
            section.name
        );
    }
}

/// Every `key = value` and `# key = value` line of the example, by
/// `section.key`: `Some(value)` when set, `None` when commented out.
fn example_keys() -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    for line in EXAMPLE_FILE.lines() {
        let (commented, body) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line.trim()),
        };
        if let Some(name) = body.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
            if !name.contains(' ') && !name.contains('"') {
                section = name.to_string();
            }
            continue;
        }
        let Some((key, value)) = body.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        let entry = out.entry(format!("{section}.{key}")).or_insert(None);
        if !commented {
            *entry = Some(value.trim().to_string());
        }
    }
    out
}

#[test]
fn the_example_names_every_key_with_its_default() {
    let example = example_keys();
    let defaults = defaults();
    let mut missing = Vec::new();
    for section in SECTIONS {
        for key in section.keys {
            let name = format!("{}.{}", section.name, key.name);
            let Some(value) = example.get(&name) else {
                missing.push(name);
                continue;
            };
            let Some(value) = value else { continue };
            if EXAMPLE_CHOICES.contains(&name.as_str()) {
                continue;
            }
            // The same value as the default, once both are parsed.
            let one = |v: &str| {
                let text = format!("[{}]\n{} = {v}\n", section.name, key.name);
                Config::parse(&text, &name).unwrap_or_else(|e| panic!("{e}"))
            };
            let default = defaults
                .get(&name)
                .unwrap_or_else(|| panic!("the example sets {name}, which has no default"));
            assert_eq!(
                one(value),
                one(default),
                "greylist.toml.example sets {name} = {value}; the default is {default}"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "greylist.toml.example names neither `key = ...` nor `# key = ...` for {missing:?}"
    );
}

#[test]
fn the_example_of_the_reference_is_a_valid_configuration() {
    let c = Config::parse(EXAMPLE, "EXAMPLE").unwrap();
    assert!(c.control.socket.is_some());
}

#[test]
fn every_default_shown_comes_from_the_structs() {
    let defaults = defaults();
    let page = String::from_utf8(man_support::config_reference::files()[1].1.clone()).unwrap();
    for (name, value) in &defaults {
        let key = name.rsplit('.').next().unwrap();
        assert!(
            page.contains(&format!("`{key} = {value}`")),
            "docs/configuration.md lacks {name} = {value}"
        );
    }
    // Spot checks against the structs' values as an admin reads them.
    assert_eq!(defaults["greylist.delay"], "\"5m\"");
    assert_eq!(defaults["milter.listen"], "\"inet:10030@127.0.0.1\"");
    assert_eq!(defaults["cluster.timeout"], "\"50ms\"");
    assert!(
        !defaults.contains_key("cluster.redis"),
        "required, no default"
    );
}

/// A key marked restart in the reference is one that a reload keeps
/// (src/config/reload.rs, RESTART_ONLY: a key, or a whole section).
#[test]
fn the_restart_marks_match_what_a_reload_keeps() {
    let source = include_str!("../src/config/reload.rs");
    let kept: BTreeSet<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("(\"")?.split_once("\", |"))
        .map(|(name, _)| name)
        .collect();
    assert!(kept.len() >= 10, "RESTART_ONLY not found: {kept:?}");
    let mut wrong = Vec::new();
    for section in SECTIONS {
        for key in section.keys {
            let name = format!("{}.{}", section.name, key.name);
            let restart = kept.contains(name.as_str()) || kept.contains(section.name);
            if restart == key.reload {
                wrong.push(name);
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "tests/support/man/config_reference.rs marks these wrongly (restart or not): {wrong:?}"
    );
}
