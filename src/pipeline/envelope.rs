//! What a front end tells the pipeline about a transaction, as plain data
//! (the leaf of this layer: it imports nothing from its siblings).

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

use crate::dns::Dns;
use crate::greylist::Request;

/// Longest client name, sender, recipient, HELO name or queue id kept (a
/// hostile peer must not make per-session memory grow; keys use 512 bytes
/// at most).
pub const MAX_KEPT: usize = 1024;

/// The facts of the current transaction.
#[derive(Debug, Default, Clone)]
pub struct Envelope {
    pub client_addr: Option<IpAddr>,
    /// The host name as the MTA sent it (`[ip]` when unverified), cut.
    pub client_name: Vec<u8>,
    /// The MAIL argument as sent (`<a@b>`, `<>`), cut.
    pub sender: Vec<u8>,
    /// The HELO name, when the front end has it (SPF), cut.
    pub helo: Vec<u8>,
    pub authenticated: bool,
}

impl Envelope {
    pub fn request<'a>(&'a self, recipient: &'a [u8]) -> Request<'a> {
        Request {
            client_addr: self.client_addr,
            client_name: &self.client_name,
            sender: &self.sender,
            recipient,
            authenticated: self.authenticated,
        }
    }
}

/// Copies at most [`MAX_KEPT`] bytes of `src` into `dst`.
pub fn keep(dst: &mut Vec<u8>, src: &[u8]) {
    dst.clear();
    dst.extend_from_slice(cut(src));
}

/// `src` cut to [`MAX_KEPT`] bytes.
pub fn cut(src: &[u8]) -> &[u8] {
    src.get(..MAX_KEPT).unwrap_or(src)
}

/// Where a decision came from, for the decision log (`src=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The shared state in Redis.
    Redis,
    /// This node alone: a list or rule, or a whitelisted tuple Redis
    /// confirmed recently.
    Local,
    /// Redis should have decided but could not be asked in time.
    Fallback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Redis => "redis",
            Source::Local => "local",
            Source::Fallback => "fallback",
        }
    }
}

/// Which front end a decision came through (`proto=` in the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Milter,
    /// Postfix's policy delegation protocol.
    Policy,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Milter => "milter",
            Proto::Policy => "policy",
        }
    }
}

/// The DNS checks in force, shared by every transaction (`None` inside: no
/// checks configured); a reload swaps them for the next CONNECT or MAIL.
pub type CurrentDns = Rc<RefCell<Option<Rc<Dns>>>>;
