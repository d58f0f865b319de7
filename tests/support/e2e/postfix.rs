//! A private Postfix 3.7 instance: own config directory, queue, data directory and maillog in
//! a scratch directory; smtpd on a free 127.0.0.1 port; every `…@example.test` recipient
//! delivered by virtual(8) into one Maildir, one file per recipient marked `Delivered-To:`.
//! Nothing system-wide is touched. Each setting says why it is there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{GroupChild, ProcessGroup};
use super::smtp::{Envelope, Outcome};
use super::{
    WorkDir, free_port, ipv6_loopback_available, is_listening, poll_until, read_lossy, tail,
};

pub const MASTER: &str = "/usr/lib/postfix/sbin/master";
pub const POSTCONF: &str = "/usr/sbin/postconf";

const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Delivery passes qmgr and virtual(8) and the log passes postlogd: all asynchronous.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, Default)]
pub struct PostfixOptions {
    /// The `smtpd_milters` value; `None` means no milter at all (gotcha 1).
    pub milters: Option<String>,
    /// A policy service in `smtpd_recipient_restrictions`, after
    /// `reject_unauth_destination` as postgrey's docs place it:
    /// `check_policy_service { inet:127.0.0.1:PORT, default_action=DUNNO }`.
    pub policy: Option<String>,
}

impl PostfixOptions {
    pub fn without_milter() -> PostfixOptions {
        PostfixOptions::default()
    }

    /// No milter; `check_policy_service` on `inet:127.0.0.1:PORT`, failing
    /// open (`default_action=DUNNO`, Postfix 3.0 and later).
    pub fn policy(port: u16) -> PostfixOptions {
        PostfixOptions {
            milters: None,
            policy: Some(format!(
                "check_policy_service {{ inet:127.0.0.1:{port}, timeout=10s, default_action=DUNNO }}"
            )),
        }
    }

    /// `smtpd_milters = <spec>`, e.g. `inet:127.0.0.1:10030` or a `{ …, default_action=accept }`
    /// item.
    pub fn milter(spec: &str) -> PostfixOptions {
        PostfixOptions {
            milters: Some(spec.to_string()),
            policy: None,
        }
    }
}

pub struct PostfixInstance {
    // Field order matters: the processes stop before the directory may go.
    master: Option<GroupChild>,
    port: u16,
    ipv6: bool,
    work: WorkDir,
}

impl PostfixInstance {
    pub fn start(options: &PostfixOptions) -> PostfixInstance {
        let work = WorkDir::new("postfix");
        let mut instance = PostfixInstance {
            master: None,
            port: free_port(),
            ipv6: ipv6_loopback_available(),
            work,
        };
        instance.prepare_dirs();
        instance.write_config(options);
        instance.launch();
        instance
    }

    /// Stops Postfix, writes a new configuration and starts it again with the same queue,
    /// port, maillog and Maildirs (`postfix reload` does not reach busy smtpd processes).
    pub fn restart(&mut self, options: &PostfixOptions) {
        if let Some(mut master) = self.master.take() {
            master.stop_group(Duration::from_secs(10));
        }
        self.write_config(options);
        self.launch();
    }

    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether XCLIENT can present IPv6 clients (`inet_protocols` includes ipv6).
    pub fn ipv6(&self) -> bool {
        self.ipv6
    }

    /// An envelope to this instance's smtpd.
    pub fn envelope(&self, from: &str, to: &[&str]) -> Envelope {
        Envelope::new(self.smtp_addr(), from, to)
    }

    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    pub fn maillog_path(&self) -> PathBuf {
        self.work.join("maillog")
    }

    pub fn maillog(&self) -> String {
        read_lossy(&self.maillog_path())
    }

    /// Waits for a maillog line satisfying `matches`; panics with the log's tail on timeout.
    pub fn wait_for_log(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        super::wait_for_line(&self.maillog_path(), LOG_TIMEOUT, matches).unwrap_or_else(|| {
            panic!(
                "no maillog line {what} within {LOG_TIMEOUT:?}; maillog tail:\n{}",
                tail(&self.maillog_path(), 40)
            )
        })
    }

    /// The queue ID from Postfix's `250 2.0.0 Ok: queued as QID` after DATA.
    pub fn queue_id(outcome: &Outcome) -> String {
        outcome
            .data
            .as_ref()
            .and_then(|reply| reply.text().split("queued as ").nth(1).map(str::to_string))
            .map(|qid| qid.trim().to_string())
            .unwrap_or_else(|| panic!("message was not queued: {outcome:#?}"))
    }

    /// Waits until Postfix has finished every recipient of the accepted message (`QID:
    /// removed`), then returns the recipient of each delivered copy, sorted.
    pub fn wait_delivered(&self, outcome: &Outcome, subject: &str) -> Vec<String> {
        let qid = Self::queue_id(outcome);
        let removed = format!("{qid}: removed");
        self.wait_for_log(&removed, |line| line.contains(&removed));
        self.recipients_holding(subject)
    }

    /// The recipient of each delivered copy of the message with this exact `Subject:`, sorted;
    /// a recipient appears as often as it got a copy.
    pub fn recipients_holding(&self, subject: &str) -> Vec<String> {
        let mut recipients: Vec<String> = self
            .delivered()
            .into_iter()
            .filter(|m| m.subject() == Some(subject))
            .map(|m| m.recipient().unwrap_or("(no Delivered-To)").to_string())
            .collect();
        recipients.sort();
        recipients
    }

    /// The delivered copy of the message with this `Subject:` for `recipient`, waiting for it.
    pub fn wait_for_message(&self, recipient: &str, subject: &str) -> Delivered {
        poll_until(LOG_TIMEOUT, || {
            self.delivered()
                .into_iter()
                .find(|m| m.subject() == Some(subject) && m.recipient() == Some(recipient))
        })
        .unwrap_or_else(|| {
            panic!(
                "no message {subject:?} for {recipient} within {LOG_TIMEOUT:?}; maillog tail:\n{}",
                tail(&self.maillog_path(), 40)
            )
        })
    }

    /// Every delivered copy, one per recipient. virtual(8) writes one file per recipient into
    /// the shared Maildir and marks it with `Delivered-To:` (a per-recipient Maildir would
    /// need a map with one entry per address: regexp maps may not substitute `$1` there).
    pub fn delivered(&self) -> Vec<Delivered> {
        let dir = self.work.join("vmail").join("Maildir").join("new");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut messages: Vec<Delivered> = entries
            .filter_map(Result::ok)
            .map(|entry| Delivered {
                text: read_lossy(&entry.path()),
            })
            .collect();
        messages.sort_by(|a, b| a.text.cmp(&b.text));
        messages
    }

    fn prepare_dirs(&self) {
        use nix::unistd::{Gid, Group, Uid, User, chown};
        use std::os::unix::fs::PermissionsExt;
        for dir in ["etc", "queue", "data", "vmail"] {
            std::fs::create_dir_all(self.work.join(dir))
                .unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
        }
        let postfix = User::from_name("postfix")
            .ok()
            .flatten()
            .expect("the postfix user exists (installed with the postfix package)");
        chown(
            &self.work.join("data"),
            Some(postfix.uid),
            Some(postfix.gid),
        )
        .expect("chown the Postfix data directory");
        // The queue layout `postfix set-permissions` would make; that command also resets
        // the modes of every system Postfix file, which a test has no business doing.
        let postdrop = Group::from_name("postdrop")
            .ok()
            .flatten()
            .expect("the postdrop group exists (installed with the postfix package)");
        let root = Gid::from_raw(0);
        for (dir, uid, gid, mode) in [
            ("active", postfix.uid, root, 0o700),
            ("bounce", postfix.uid, root, 0o700),
            ("corrupt", postfix.uid, root, 0o700),
            ("defer", postfix.uid, root, 0o700),
            ("deferred", postfix.uid, root, 0o700),
            ("flush", postfix.uid, root, 0o700),
            ("hold", postfix.uid, root, 0o700),
            ("incoming", postfix.uid, root, 0o700),
            ("maildrop", postfix.uid, postdrop.gid, 0o730),
            ("pid", Uid::from_raw(0), root, 0o755),
            ("private", postfix.uid, root, 0o700),
            ("public", postfix.uid, postdrop.gid, 0o710),
            ("saved", postfix.uid, root, 0o700),
            ("trace", postfix.uid, root, 0o700),
        ] {
            let path = self.work.join("queue").join(dir);
            std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
            chown(&path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {dir}: {e}"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {dir}: {e}"));
        }
        // virtual(8) delivers as nobody and creates the Maildir below this directory.
        chown(
            &self.work.join("vmail"),
            Some(Uid::from_raw(65534)),
            Some(Gid::from_raw(65534)),
        )
        .expect("chown the Maildir base");
    }

    fn write_config(&self, options: &PostfixOptions) {
        let etc = self.work.join("etc");
        let dir = self.work.path().display().to_string();
        let milters = options.milters.as_deref().unwrap_or("");
        let recipient_restrictions = options
            .policy
            .as_deref()
            .map(|p| format!("reject_unauth_destination, {p}"))
            .unwrap_or_default();
        let protocols = if self.ipv6 { "ipv4, ipv6" } else { "ipv4" };
        let main_cf = format!(
            "\
# Written by tests/support/e2e/postfix.rs. main.cf allows no comment after a value.
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
# no syslog: postlogd (the postlog service) writes this file
maillog_file = {dir}/maillog
maillog_file_prefixes = /var, /dev/stdout, {dir}
myhostname = mx.example.test
mydomain = example.test
myorigin = $mydomain
smtpd_banner = $myhostname ESMTP test
inet_interfaces = loopback-only
# ipv6 lets XCLIENT present IPv6 clients (harness doc 2.3)
inet_protocols = {protocols}
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no
smtputf8_enable = no
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
notify_classes =
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
in_flow_delay = 0
# no error tarpit: greylisting gives many 4xx replies per connection (gotcha 2)
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
# scenario 13 runs 200 SMTP sessions at once; each needs its own smtpd
default_process_limit = 250
mydestination =
local_recipient_maps =
virtual_mailbox_domains = example.test
virtual_mailbox_base = {dir}/vmail
# one shared Maildir; each recipient's copy carries its own Delivered-To header
virtual_mailbox_maps = static:Maildir/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
virtual_transport = virtual
default_transport = discard:
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = {recipient_restrictions}
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_milters = {milters}
non_smtpd_milters =
milter_protocol = 6
# a dead milter is loud unless the milter item sets its own default_action
milter_default_action = tempfail
milter_connect_timeout = 5s
milter_command_timeout = 10s
milter_content_timeout = 30s
milter_connect_macros = j {{daemon_name}} {{daemon_addr}} v _
milter_helo_macros = {{tls_version}} {{cipher}} {{cipher_bits}} {{cert_subject}} {{cert_issuer}}
milter_mail_macros = i {{auth_type}} {{auth_authen}} {{auth_author}} {{mail_addr}} {{mail_host}} {{mail_mailer}}
milter_rcpt_macros = i {{rcpt_addr}} {{rcpt_host}} {{rcpt_mailer}}
milter_end_of_data_macros = i
"
        );
        let master_cf = format!(
            "\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
proxywrite unix - - n -     1 proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
local     unix  - n n -     - local
virtual   unix  - n n -     - virtual
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
",
            port = self.port
        );
        for (name, text) in [
            ("main.cf", main_cf.as_str()),
            ("master.cf", master_cf.as_str()),
        ] {
            let path = etc.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
            // Postfix waits (in 300 ms steps, up to 2 s, in every program) until a table
            // file's mtime is more than a second old, in case it is still being written.
            let settled = std::time::SystemTime::now() - Duration::from_secs(10);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_modified(settled))
                .unwrap_or_else(|e| panic!("backdate {name}: {e}"));
        }
    }

    fn launch(&mut self) {
        let etc = self.work.join("etc");
        // `postfix check` would take two seconds (it audits the system installation);
        // postconf's warnings catch what matters here: unknown or malformed parameters.
        let postconf = Command::new(POSTCONF)
            .arg("-c")
            .arg(&etc)
            .arg("-n")
            .output()
            .unwrap_or_else(|e| panic!("run {POSTCONF}: {e}"));
        let warnings = String::from_utf8_lossy(&postconf.stderr);
        assert!(
            postconf.status.success() && warnings.trim().is_empty(),
            "postconf rejects the generated main.cf:\n{warnings}"
        );
        let mut command = Command::new(MASTER);
        command.arg("-c").arg(&etc).arg("-s");
        let mut master = GroupChild::spawn(
            "postfix master",
            &mut command,
            &self.work.join("master.out"),
            ProcessGroup::Itself,
        );
        let port = self.port;
        let ready = poll_until(START_TIMEOUT, || {
            if let Some(status) = master.try_status() {
                return Some(Err(status));
            }
            is_listening(port, false).then_some(Ok(()))
        });
        assert!(
            matches!(ready, Some(Ok(()))),
            "Postfix did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?} ({ready:?}); master output:\n{}\nmaillog:\n{}",
            read_lossy(&self.work.join("master.out")),
            tail(&self.maillog_path(), 20)
        );
        self.master = Some(master);
    }
}

impl Drop for PostfixInstance {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "e2e: Postfix maillog tail ({}):\n{}",
                self.maillog_path().display(),
                tail(&self.maillog_path(), 60)
            );
        }
        if let Some(mut master) = self.master.take() {
            master.stop_group(Duration::from_secs(10));
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("scratch paths are UTF-8")
}

/// One delivered copy of a message (one file in the Maildir).
#[derive(Clone, Debug)]
pub struct Delivered {
    pub text: String,
}

impl Delivered {
    /// The value of the first header `name` (case-insensitive), from the header section only.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header as (name, value), in order; folded lines are not joined.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        self.text
            .lines()
            .take_while(|line| !line.is_empty())
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n, v.trim()))
            .collect()
    }

    pub fn subject(&self) -> Option<&str> {
        self.header("Subject")
    }

    /// The recipient this copy was delivered to.
    pub fn recipient(&self) -> Option<&str> {
        self.header("Delivered-To")
    }
}
