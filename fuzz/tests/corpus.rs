//! Replays the committed corpus (seeds and fixed crashes) through the fuzz
//! checks on the stable compiler: `cargo test --manifest-path fuzz/Cargo.toml`.

use std::path::Path;

use greymilter_fuzz::{
    address, config, control_line, frame_decoder, postfix_request, session, state_file,
};

/// A fuzz check: panics on a broken invariant.
type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 7] = [
    ("frame_decoder", frame_decoder::check),
    ("session", session::check),
    ("config", config::check),
    ("state_file", state_file::check),
    ("address", address::check),
    ("control_line", control_line::check),
    ("postfix_request", postfix_request::check),
];

#[test]
fn every_corpus_file_passes_its_check() {
    for (target, check) in TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            println!("{}", path.display());
            check(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n > 0, "no corpus in {}", dir.display());
    }
}
