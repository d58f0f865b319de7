//! The greylist engine: keys, static lists, the tuple table, verdicts and
//! statistics. No sockets, no signals; time comes from a [`clock::Clock`].

pub mod clock;
pub mod settings;
