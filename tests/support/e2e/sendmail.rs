//! A private Sendmail 8.17 instance: an m4-built sendmail.cf in
//! a scratch directory, a private queue, listeners on 127.0.0.1 (and ::1 where available), a
//! private UTS namespace with an FQDN hostname (else Sendmail stalls 60 s), and logging
//! through the shared `/dev/log` catcher under a per-instance tag. Accepted mail stays queued
//! (`confDELIVERY_MODE` deferred): tests assert on replies, the log and the queue files.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{GroupChild, ProcessGroup};
use super::smtp::Envelope;
use super::syslog::SyslogLease;
use super::{WorkDir, free_port, ipv6_loopback_available, is_listening, poll_until, read_lossy};

pub const CF_M4: &str = "/usr/share/sendmail/cf/m4/cf.m4";
const DEFAULT_BIN: &str = "/opt/greymilter-test/sendmail/usr/libexec/sendmail/sendmail";
const START_TIMEOUT: Duration = Duration::from_secs(15);
pub const LOG_TIMEOUT: Duration = Duration::from_secs(15);

/// Where `.ci/install-mtas.sh` unpacks Sendmail (override: `GREYMILTER_SENDMAIL_BIN`).
pub fn binary() -> PathBuf {
    std::env::var_os("GREYMILTER_SENDMAIL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN))
}

#[derive(Clone, Debug, Default)]
pub struct SendmailOptions {
    /// `INPUT_MAIL_FILTER` pointing at `inet:PORT@127.0.0.1`; `None`: no milter.
    pub milter_port: Option<u16>,
    /// The `F=` flag: `Some('T')` tempfails when the milter is down (the test setting),
    /// `None` passes mail through (the production recommendation).
    pub milter_flag: Option<char>,
    /// A whole `INPUT_MAIL_FILTER(...)dnl` line instead of the one built from the two above.
    pub filter_line: Option<String>,
}

impl SendmailOptions {
    pub fn without_milter() -> SendmailOptions {
        SendmailOptions::default()
    }

    /// A milter on 127.0.0.1:`port` with `F=T`, so a dead milter is loud.
    pub fn milter(port: u16) -> SendmailOptions {
        SendmailOptions {
            milter_port: Some(port),
            milter_flag: Some('T'),
            filter_line: None,
        }
    }

    /// The `INPUT_MAIL_FILTER` line of the shipped `contrib/sendmail.mc`, read from the file,
    /// with its milter moved to 127.0.0.1:`port` (the shipped port may be in use here).
    pub fn shipped(port: u16) -> SendmailOptions {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/sendmail.mc");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let line = text
            .lines()
            .find(|line| line.starts_with("INPUT_MAIL_FILTER("))
            .unwrap_or_else(|| panic!("no INPUT_MAIL_FILTER line in {path}"));
        let socket = "S=inet:10030@127.0.0.1";
        assert!(
            line.contains(socket),
            "{path}: expected {socket} in {line:?}"
        );
        SendmailOptions {
            milter_port: Some(port),
            milter_flag: None,
            filter_line: Some(format!(
                "{}\n",
                line.replace(socket, &format!("S=inet:{port}@127.0.0.1"))
            )),
        }
    }
}

pub struct SendmailInstance {
    // Field order matters: the daemon stops before the log catcher and the directory go.
    daemon: Option<GroupChild>,
    syslog: SyslogLease,
    tag: String,
    port: u16,
    ipv6: bool,
    work: WorkDir,
}

impl SendmailInstance {
    pub fn start(options: &SendmailOptions) -> SendmailInstance {
        let work = WorkDir::new("sendmail");
        let port = free_port();
        let mut instance = SendmailInstance {
            daemon: None,
            syslog: SyslogLease::acquire(),
            tag: format!("sm-test-{port}"),
            port,
            ipv6: ipv6_loopback_available(),
            work,
        };
        instance.build_cf(options);
        instance.launch();
        instance
    }

    pub fn smtp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The ::1 listener, if this host has IPv6 loopback.
    pub fn smtp_addr_v6(&self) -> Option<SocketAddr> {
        self.ipv6
            .then(|| SocketAddr::from((Ipv6Addr::LOCALHOST, self.port)))
    }

    pub fn envelope(&self, from: &str, to: &[&str]) -> Envelope {
        Envelope::new(self.smtp_addr(), from, to)
    }

    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    /// This instance's syslog lines so far.
    pub fn log(&self) -> Vec<String> {
        self.syslog.lines_tagged(&self.tag)
    }

    /// Waits for a log line satisfying `matches`; panics with the log on timeout.
    pub fn wait_for_log(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        poll_until(LOG_TIMEOUT, || self.log().into_iter().find(|l| matches(l))).unwrap_or_else(
            || {
                panic!(
                    "no Sendmail log line {what} within {LOG_TIMEOUT:?}; log:\n{}",
                    self.log().join("\n")
                )
            },
        )
    }

    /// The queue control file (`qf…`) of the queued message with this `Subject:`: its
    /// `H??Subject: …` and `H??X-…` lines hold the headers, `R…:<addr>` lines the recipients.
    pub fn queued_message(&self, subject: &str) -> Option<String> {
        let header = format!("Subject: {subject}");
        let entries = std::fs::read_dir(self.work.join("mqueue")).ok()?;
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("qf"))
            .map(|e| read_lossy(&e.path()))
            .find(|qf| {
                qf.lines()
                    .any(|l| l.starts_with('H') && l.ends_with(&header))
            })
    }

    /// Recipients listed in a queue control file.
    pub fn queued_recipients(qf: &str) -> Vec<String> {
        let mut recipients: Vec<String> = qf
            .lines()
            .filter(|line| line.starts_with('R'))
            .filter_map(|line| {
                let start = line.find('<')?;
                let end = line.rfind('>')?;
                line.get(start + 1..end).map(str::to_string)
            })
            .collect();
        recipients.sort();
        recipients
    }

    fn build_cf(&self, options: &SendmailOptions) {
        let dir = self.work.path().display().to_string();
        let mqueue = self.work.join("mqueue");
        std::fs::create_dir_all(&mqueue).expect("mkdir mqueue");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&mqueue, std::fs::Permissions::from_mode(0o700))
                .expect("chmod mqueue");
        }
        std::fs::write(
            self.work.join("service.switch"),
            "hosts\tfiles\naliases\tfiles\n",
        )
        .expect("write service.switch");
        std::fs::write(self.work.join("statistics"), "").expect("write statistics");
        std::fs::write(self.work.join("aliases"), "").expect("write aliases");
        let port = self.port;
        let v6_listener = if self.ipv6 {
            format!(
                "DAEMON_OPTIONS(`Port={port}, Addr=::1, Family=inet6, Name=MTA6, Listen=1024')dnl\n"
            )
        } else {
            String::new()
        };
        let milter = match (&options.filter_line, options.milter_port) {
            (Some(line), _) => line.clone(),
            (None, Some(milter_port)) => {
                let flag = options
                    .milter_flag
                    .map(|f| format!(", F={f}"))
                    .unwrap_or_default();
                format!(
                    "INPUT_MAIL_FILTER(`greymilter', `S=inet:{milter_port}@127.0.0.1{flag}, T=C:5s;S:10s;R:10s;E:30s')dnl\n"
                )
            }
            (None, None) => String::new(),
        };
        // Text after `dnl` is an m4 comment: each line says why it is there.
        let mc = format!(
            "\
divert(0)dnl
VERSIONID(`greymilter e2e test MTA')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `mx.example.test')dnl
define(`QUEUE_DIR', `{dir}/mqueue')dnl private queue
define(`confPID_FILE', `{dir}/sendmail.pid')dnl
define(`STATUS_FILE', `{dir}/statistics')dnl
define(`ALIAS_FILE', `{dir}/aliases')dnl
define(`confSERVICE_SWITCH_FILE', `{dir}/service.switch')dnl hosts from files only
define(`confDONT_PROBE_INTERFACES', `True')dnl no interface scan at start
define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl
define(`confTO_IDENT', `0s')dnl no ident lookups
define(`confDELIVERY_MODE', `deferred')dnl accepted mail stays queued
define(`confMAX_DAEMON_CHILDREN', `0')dnl
define(`confCONNECTION_RATE_THROTTLE', `0')dnl
define(`confREFUSE_LA', `1000')dnl
define(`confQUEUE_LA', `1000')dnl
define(`confDONT_BLAME_SENDMAIL', `GroupWritableDirPathSafe')dnl
define(`confLOG_LEVEL', `9')dnl milter rejections in the log
FEATURE(`no_default_msa')dnl
FEATURE(`nocanonify')dnl
FEATURE(`promiscuous_relay')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`accept_unqualified_senders')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA, Listen=1024')dnl the default backlog of 10 drops SYNs
{v6_listener}{milter}MAILER(`local')dnl
MAILER(`smtp')dnl
"
        );
        let mc_path = self.work.join("sendmail.mc");
        std::fs::write(&mc_path, mc).expect("write sendmail.mc");
        let output = Command::new("m4")
            .arg("-D_CF_DIR_=/usr/share/sendmail/cf/")
            .arg(CF_M4)
            .arg(&mc_path)
            .output()
            .expect("run m4");
        assert!(
            output.status.success(),
            "m4 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(self.work.join("sendmail.cf"), output.stdout).expect("write sendmail.cf");
    }

    fn launch(&mut self) {
        let script = format!(
            "hostname mx.example.test && exec {} -L {} -C {} -bD",
            binary().display(),
            self.tag,
            self.work.join("sendmail.cf").display()
        );
        let mut command = Command::new("unshare");
        command.arg("-u").arg("sh").arg("-c").arg(script);
        let out = self.work.join("sendmail.out");
        let mut daemon = GroupChild::spawn("sendmail", &mut command, &out, ProcessGroup::New);
        let (port, ipv6) = (self.port, self.ipv6);
        let ready = poll_until(START_TIMEOUT, || {
            if daemon.try_status().is_some() {
                return Some(false);
            }
            (is_listening(port, false) && (!ipv6 || is_listening(port, true))).then_some(true)
        });
        assert_eq!(
            ready,
            Some(true),
            "Sendmail did not listen on port {port} within {START_TIMEOUT:?}; output:\n{}\nlog:\n{}",
            read_lossy(&out),
            self.log().join("\n")
        );
        self.daemon = Some(daemon);
    }
}

impl Drop for SendmailInstance {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "e2e: Sendmail log ({}):\n{}",
                self.tag,
                self.log().join("\n")
            );
        }
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop_group(Duration::from_secs(10));
        }
    }
}
