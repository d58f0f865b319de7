//! Writes man/greymilter.8 and one man/greymilter-COMMAND.8 per
//! subcommand from the CLI definition (clap_mangen), and greylist.toml(5)
//! with docs/configuration.md from tests/support/man/config_reference.rs:
//!
//!     cargo run --example gen_man
//!
//! tests/man_pages.rs fails when a checked-in page is out of date.

#[path = "../tests/support/man/mod.rs"]
mod man_support;

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for (name, text) in man_support::pages() {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        println!("{}", path.display());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, text) in man_support::config_reference::files() {
        let path = root.join(name);
        std::fs::write(&path, text)?;
        println!("{}", path.display());
    }
    Ok(())
}
