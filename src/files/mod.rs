//! Files an admin points greymilter at: read without trusting what is at
//! the path ([`read`]), written so that they are always whole ([`atomic`]).

pub mod atomic;
pub mod read;

pub use read::{read_regular, read_regular_paced};
