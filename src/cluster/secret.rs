//! The hashing secret every node of a cluster shares (`secret_file`).
//!
//! Keys in Redis are keyed hashes (see `greylist::key`), so nodes agree on a
//! tuple only if they hash with the same secret. The file holds at least 16
//! bytes of anything (`head -c 32 /dev/urandom`); both halves of the engine's
//! [`Secret`] are derived from all of it, so a text file with a trailing
//! newline works as well as raw bytes. A fingerprint, a hash of the secret
//! under a different fixed key, is what nodes compare in Redis: it reveals
//! nothing that helps guess the secret.

use std::hash::Hasher;
use std::path::Path;

use siphasher::sip::SipHasher13;

use crate::greylist::key::Secret;

pub const MIN_BYTES: usize = 16;
/// A key file is small; a larger one is a wrong path (a log, a device).
pub const MAX_BYTES: u64 = 4096;

const K0_KEY: (u64, u64) = (0x636c_7573_7465_7231, 0x6b30_6b30_6b30_6b30);
const K1_KEY: (u64, u64) = (0x636c_7573_7465_7232, 0x6b31_6b31_6b31_6b31);
const FP_KEY: (u64, u64) = (0x6669_6e67_6572_7072, 0x696e_7421_696e_7421);

fn hash(key: (u64, u64), bytes: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(key.0, key.1);
    h.write(bytes);
    h.finish()
}

/// The shared secret and its fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSecret {
    pub secret: Secret,
    pub fingerprint: u64,
}

impl SharedSecret {
    pub fn from_bytes(bytes: &[u8]) -> Result<SharedSecret, String> {
        if bytes.len() < MIN_BYTES {
            return Err(format!(
                "holds {} bytes, at least {MIN_BYTES} are needed (create it with \
                 `head -c 32 /dev/urandom > FILE` and copy the same file to every node)",
                bytes.len()
            ));
        }
        Ok(SharedSecret {
            secret: Secret {
                k0: hash(K0_KEY, bytes),
                k1: hash(K1_KEY, bytes),
            },
            fingerprint: hash(FP_KEY, bytes),
        })
    }

    pub fn load(path: &Path) -> Result<SharedSecret, String> {
        let bytes = crate::files::read_regular(path, MAX_BYTES)
            .map_err(|e| format!("cluster secret_file {}: cannot read: {e}", path.display()))?;
        SharedSecret::from_bytes(&bytes)
            .map_err(|e| format!("cluster secret_file {}: {e}", path.display()))
    }

    pub fn fingerprint_hex(&self) -> String {
        format!("{:016x}", self.fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_secret_and_short_files_refused() {
        let a = SharedSecret::from_bytes(b"0123456789abcdef").unwrap();
        assert_eq!(a, SharedSecret::from_bytes(b"0123456789abcdef").unwrap());
        let b = SharedSecret::from_bytes(b"0123456789abcdeg").unwrap();
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_ne!(a.secret.k0, a.secret.k1);
        assert!(SharedSecret::from_bytes(b"short").is_err());
    }
}
