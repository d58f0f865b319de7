//! What each milter connection of the load sends: the category mix and the
//! pools of prepared (pass, early-retry) connections.

use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;
use std::str::FromStr;

use crate::workload::{self, DOMAINS, Rng};

/// How a connection's tuples relate to the milter's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Never seen: a greylister defers them (and stores a new tuple).
    New,
    /// Seen once, retried before the delay: deferred again.
    Early,
    /// Seen and retried after the delay during preparation: whitelisted.
    Pass,
    /// Recipients in a domain the milter's static list accepts.
    List,
}

pub const CATEGORIES: [Category; 4] = [
    Category::New,
    Category::Early,
    Category::Pass,
    Category::List,
];

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::New => "new",
            Category::Early => "early",
            Category::Pass => "pass",
            Category::List => "list",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Category::New => 0,
            Category::Early => 1,
            Category::Pass => 2,
            Category::List => 3,
        }
    }
}

/// Shares of connections per category, `new=60,early=10,pass=25,list=5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix([u64; 4]);

impl Mix {
    pub fn share(&self, c: Category) -> u64 {
        self.0[c.index()]
    }

    pub fn pick(&self, rng: &mut Rng) -> Category {
        let total: u64 = self.0.iter().sum();
        let mut roll = rng.next_u64() % total.max(1);
        for c in CATEGORIES {
            if roll < self.share(c) {
                return c;
            }
            roll -= self.share(c);
        }
        Category::New
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Mix, String> {
        let mut shares = [0u64; 4];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected CATEGORY=SHARE"))?;
            let c = CATEGORIES
                .into_iter()
                .find(|c| c.name() == name.trim())
                .ok_or_else(|| format!("{name:?}: categories are new, early, pass, list"))?;
            shares[c.index()] = value
                .trim()
                .parse()
                .map_err(|_| format!("{value:?} is not a whole number"))?;
        }
        if shares.iter().sum::<u64>() == 0 {
            return Err("the shares add up to 0".to_string());
        }
        Ok(Mix(shares))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = CATEGORIES
            .iter()
            .map(|c| format!("{}={}", c.name(), self.share(*c)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// One transaction: MAIL, then a RCPT per recipient.
#[derive(Debug, Clone, Default)]
pub struct TxnPlan {
    pub sender: String,
    pub rcpts: Vec<String>,
}

/// One milter connection (one SMTP connection to the MTA).
#[derive(Debug, Clone)]
pub struct ConnPlan {
    pub category: Category,
    pub addr: IpAddr,
    pub name: String,
    pub txns: Vec<TxnPlan>,
}

/// The shape of every connection.
#[derive(Debug, Clone)]
pub struct Shape {
    pub txns: usize,
    pub rcpts: usize,
    pub networks: u64,
    pub pass_domain: String,
    pub list_domain: String,
    /// 0: senders and clients as `workload` draws them. Else senders of
    /// `d<k>.bench` (k below this) from a network `d<k>.bench`'s SPF record
    /// authorises (the zone of `examples/spf_zone_server.rs`).
    pub spf_domains: u64,
}

/// A client in one of the two /24s `d<k>.bench` authorises.
fn spf_client(rng: &mut Rng, k: u64) -> IpAddr {
    let first = if rng.chance(50) { 10 } else { 11 };
    let host = rng.range(1, 254) as u8;
    IpAddr::from([first, (k >> 8) as u8, (k & 0xff) as u8, host])
}

/// Replaces the domain of a `<local@domain>` sender (the null sender stays).
fn set_sender_domain(sender: &mut String, domain: &str) {
    if let Some(at) = sender.rfind('@') {
        sender.truncate(at + 1);
        sender.push_str(domain);
        sender.push('>');
    }
}

/// Builds connection plans; `unique` numbers make `new` tuples new.
pub struct Planner {
    shape: Shape,
    unique: u64,
}

impl Planner {
    /// `run_id` keeps the unique numbers of two runs against the same
    /// milter apart.
    pub fn new(shape: Shape, run_id: u64) -> Planner {
        Planner {
            shape,
            unique: run_id << 32,
        }
    }

    pub fn plan(&mut self, rng: &mut Rng, category: Category) -> ConnPlan {
        let spf_domain =
            (self.shape.spf_domains > 0).then(|| rng.next_u64() % self.shape.spf_domains);
        let addr = match spf_domain {
            Some(k) => spf_client(rng, k),
            None => workload::client_addr(rng, self.shape.networks),
        };
        let mut name = String::new();
        workload::client_name(rng, &mut name, addr);
        let mut txns = Vec::with_capacity(self.shape.txns);
        for _ in 0..self.shape.txns {
            let mut t = TxnPlan::default();
            let unique = match category {
                Category::New | Category::Early | Category::Pass => {
                    self.unique += 1;
                    Some(self.unique)
                }
                Category::List => None,
            };
            workload::sender(rng, &mut t.sender, unique);
            if let Some(k) = spf_domain {
                set_sender_domain(&mut t.sender, &format!("d{k}.bench"));
            }
            for _ in 0..self.shape.rcpts {
                let mut r = String::new();
                let domain = match category {
                    Category::Pass => self.shape.pass_domain.as_str(),
                    Category::List => self.shape.list_domain.as_str(),
                    Category::New | Category::Early => DOMAINS[rng.range(0, DOMAINS.len() - 1)],
                };
                workload::recipient(rng, &mut r, domain);
                t.rcpts.push(r);
            }
            txns.push(t);
        }
        ConnPlan {
            category,
            addr,
            name,
            txns,
        }
    }

    /// `size` prepared connections of a category.
    pub fn pool(&mut self, rng: &mut Rng, category: Category, size: usize) -> Rc<Vec<ConnPlan>> {
        Rc::new((0..size).map(|_| self.plan(rng, category)).collect())
    }
}
