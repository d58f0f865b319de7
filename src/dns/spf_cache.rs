//! A cache of parsed TXT records (SPF) for `mail-auth`: without one, every
//! check parses the records of its domain again, which was most of the
//! CPU a warm check costs the daemon (BENCHMARKS.md). Entries live until
//! the TTL of their DNS answer; at most `max` of them (0: no cache). Only
//! answers are stored: a failed lookup never reaches `insert`.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

use mail_auth::{ResolverCache, Txt};

pub struct TxtCache {
    entries: RefCell<HashMap<Box<str>, (Txt, Instant)>>,
    max: usize,
}

impl TxtCache {
    pub fn new(max: usize) -> TxtCache {
        TxtCache {
            entries: RefCell::new(HashMap::new()),
            max,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.try_borrow().map_or(0, |e| e.len())
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.try_borrow_mut().ok()?;
        match entries.get(name) {
            Some((txt, until)) if *until > Instant::now() => Some(txt.clone()),
            Some(_) => {
                entries.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.try_borrow_mut().ok()?;
        entries.remove(name).map(|(txt, _)| txt)
    }

    fn insert(&self, key: Box<str>, value: Txt, valid_until: Instant) {
        if self.max == 0 {
            return;
        }
        let Ok(mut entries) = self.entries.try_borrow_mut() else {
            return;
        };
        if entries.len() >= self.max && !entries.contains_key(&key) {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            // Still full: drop one entry (any) rather than grow.
            if entries.len() >= self.max
                && let Some(victim) = entries.keys().next().cloned()
            {
                entries.remove(&victim);
            }
        }
        entries.insert(key, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn txt() -> Txt {
        Txt::Error(mail_auth::Error::Dns(
            mail_auth::DnsError::InvalidRecordType,
        ))
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let c = TxtCache::new(2);
        let later = Instant::now() + Duration::from_secs(60);
        c.insert("a.test.".into(), txt(), later);
        c.insert("b.test.".into(), txt(), Instant::now());
        assert!(c.get::<str>("a.test.").is_some());
        // Expired at once: gone on the next read.
        assert!(c.get::<str>("b.test.").is_none());
        assert_eq!(c.len(), 1);
        for name in ["c.test.", "d.test.", "e.test."] {
            c.insert(name.into(), txt(), later);
        }
        assert_eq!(c.len(), 2);
        assert!(c.get::<str>("e.test.").is_some());

        let off = TxtCache::new(0);
        off.insert("a.test.".into(), txt(), later);
        assert!(off.is_empty());
    }
}
