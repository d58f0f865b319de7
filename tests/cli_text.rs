//! The command line as text: the help of every verb and the
//! errors an admin meets, snapshot-tested with `trycmd` from
//! tests/cli/*.trycmd (each runs in its `.in` directory when it has one).
//! `TRYCMD=overwrite cargo test --test cli_text` rewrites the snapshots
//! after a deliberate change; review the diff like any other.

#[test]
fn cli_text() {
    trycmd::TestCases::new()
        .register_bin(
            "greymilter",
            std::path::Path::new(env!("CARGO_BIN_EXE_greymilter")),
        )
        .case("tests/cli/*.trycmd");
}
