//! The configuration reference, written once: greylist.toml(5) and
//! docs/configuration.md are both generated from [`SECTIONS`]
//! (`cargo run --example gen_man`), and every default shown is taken from
//! the configuration structs themselves (`Config::default()` serialised),
//! never typed here. tests/config_reference.rs checks that the keys here
//! are exactly the structs' keys and that greylist.toml.example names
//! every one with the same default.
//!
//! Text markup: `code` (bold in the man page), a blank line between
//! paragraphs, nothing else.

/// One `[section]` of the file.
pub struct Section {
    /// `milter`, `lists.files`, ...
    pub name: &'static str,
    pub intro: &'static str,
    pub keys: &'static [Key],
}

/// One key of a section.
pub struct Key {
    pub name: &'static str,
    /// Applied by a reload (false: reported and kept until the next start).
    pub reload: bool,
    /// Shown when the key has no default (unset, or required): an example.
    pub example: Option<&'static str>,
    pub text: &'static str,
}

const fn key(name: &'static str, text: &'static str) -> Key {
    Key {
        name,
        reload: true,
        example: None,
        text,
    }
}

const fn restart(name: &'static str, text: &'static str) -> Key {
    Key {
        name,
        reload: false,
        example: None,
        text,
    }
}

impl Key {
    const fn like(self, example: &'static str) -> Key {
        Key {
            example: Some(example),
            ..self
        }
    }
}

pub const SECTIONS: &[Section] = &[
    Section {
        name: "milter",
        intro: "The milter listener: where Postfix or Sendmail connects.",
        keys: &[
            restart(
                "enabled",
                "`false`: no milter socket; Postfix reaches greymilter through `[policy]` alone. At least one of the two front ends must be on.",
            ),
            restart(
                "listen",
                "Where the MTA connects. Sendmail's spellings `inet:PORT@HOST`, `inet6:PORT@HOST`, `local:/path`, or Postfix's `inet:HOST:PORT`, `unix:/path`. Loopback by default: a milter must never be reachable from the network. A stale Unix socket left by a crash is replaced; a path that is not a socket is never touched.",
            ),
            restart(
                "socket_mode",
                "Permissions of a Unix socket, as a quoted octal string. The MTA must be able to connect: with Postfix, use `socket_group = \"postfix\"`.",
            ),
            restart(
                "socket_group",
                "Group of a Unix socket (a name). Unset: the daemon's group.",
            )
            .like("\"postfix\""),
            restart(
                "max_connections",
                "Concurrent milter connections. Postfix opens one per SMTP connection and runs up to 100 smtpd processes by default. Past the limit, new connections wait.",
            ),
            key(
                "idle_timeout",
                "A milter connection that sends nothing for this long is closed. Keep it longer than the MTA's own SMTP timeouts so a live session is never cut.",
            ),
            key(
                "decision_timeout",
                "The longest a recipient's decision may wait (for the DNS checks, for Redis) before the recipient is answered CONTINUE: mail never waits on a slow lookup. At most 10 s (Sendmail's reply timeout); longer than `[dns] timeout` (plus `[cluster] timeout` in a cluster).",
            ),
            restart(
                "shutdown_timeout",
                "On SIGTERM, how long sessions in flight may take to finish.",
            ),
        ],
    },
    Section {
        name: "policy",
        intro: "Postfix's policy service (`check_policy_service`), beside or instead of the milter: off until `listen` is set. docs/policy.md says when to pick which.",
        keys: &[
            restart(
                "listen",
                "Where Postfix's smtpd connects, in the spellings of `[milter] listen`. postgrey's port is `inet:10023@127.0.0.1`: a site that ran postgrey changes nothing in main.cf. Must differ from the milter's.",
            )
            .like("\"inet:10023@127.0.0.1\""),
            restart(
                "socket_mode",
                "Permissions of a Unix socket, as a quoted octal string, like `[milter] socket_mode`.",
            ),
            restart(
                "socket_group",
                "Group of a Unix socket (a name). Unset: the daemon's group.",
            )
            .like("\"postfix\""),
            restart(
                "max_connections",
                "Concurrent policy connections. Postfix keeps about one per running smtpd process and reuses it across SMTP sessions.",
            ),
            key(
                "idle_timeout",
                "A connection with no request for this long, or whose request is still incomplete this long after its first byte, is closed. Longer than Postfix's `smtpd_policy_service_max_idle` (300 s), so Postfix normally closes first.",
            ),
            key(
                "defer_action",
                "What a greylisted recipient gets: `\"DEFER_IF_PERMIT\"` (postgrey's default: a later reject rule in Postfix still rejects) or `\"DEFER\"` (defer at once, whatever follows).",
            ),
        ],
    },
    Section {
        name: "greylist",
        intro: "The greylisting itself: timing, the tuple, the replies, and the DNS checks (all off by default). The order in which lists, DNS checks and the table decide is in docs/decisions.md.",
        keys: &[
            key(
                "mode",
                "`\"enforce\"` defers new tuples. `\"learn\"` records them exactly the same way but lets the mail through, logging `action=would-greylist` and counting `Would-Greylist`: roll out on a live MX, watch, then switch to `\"enforce\"` with a reload.",
            ),
            key(
                "delay",
                "How long a new (client network, sender, recipient) tuple must wait, counted from its first attempt; early retries never move that moment. Durations are `\"90s\"`, `\"5m\"`, `\"24h\"`, `\"36d\"` or a number of seconds.",
            ),
            key(
                "retry_window",
                "How long a new tuple waits for its retry; after that it starts over. Longer than `delay`.",
            ),
            key(
                "whitelist_lifetime",
                "A tuple that passed stays whitelisted this long after its last use.",
            ),
            key(
                "ipv4_prefix",
                "Prefix length of an IPv4 client's network in the tuple (1 to 32): providers retry from other addresses of a pool.",
            ),
            key(
                "ipv6_prefix",
                "Prefix length of an IPv6 client's network in the tuple (1 to 128).",
            ),
            key(
                "normalize_sender",
                "Strip BATV tags, SRS hashes, `+extensions` and VERP numbers from senders, so mailing lists and bounces are not greylisted on every message.",
            ),
            key(
                "auto_whitelist_after",
                "After this many tuples of one client network passed (at most one counted per hour), the whole network skips greylisting. 0 turns it off.",
            ),
            key(
                "skip_authenticated",
                "Never greylist SASL-authenticated sessions (`{auth_authen}` set): they are your own users.",
            ),
            key(
                "skip_loopback",
                "Never greylist loopback clients (127.0.0.0/8, ::1): local webmail, a content filter re-injecting mail, and a Postfix client that has no IP (Postfix names it 127.0.0.1). A list entry for the address decides before this rule; `false` greylists them like any client.",
            ),
            key(
                "max_tuples",
                "Capacity of the tuple table. When it is full, the oldest waiting tuples are evicted first (counted in `Evicted`); the table is never wiped.",
            ),
            key(
                "reply",
                "The 4xx reply to a deferred recipient. `{remaining}` is replaced by the seconds left, `{recipient}` by the recipient. It must be a valid 4xx reply with an enhanced status code, as both MTAs check.",
            ),
            key(
                "reject_reply",
                "The 5xx reply for list entries that say `reject`.",
            ),
            key(
                "header",
                "Add `X-Greylist: delayed N seconds by greymilter-VERSION; DATE` to the first message that passes after a delay.",
            ),
            key(
                "spf",
                "SPF of the MAIL FROM domain (of the HELO name for the null sender). `\"off\"`. `\"key\"`: when SPF passes, the tuple is keyed by the domain instead of the client network, so a provider's retry from any address its SPF authorises matches; the first message of a new domain is still greylisted. `\"skip\"`: when SPF passes, do not greylist (this lets spammers with SPF through).",
            ),
            key(
                "allow_zones",
                "DNS allow lists (DNSWL): listed clients are not greylisted. `\"zone\"` accepts any 127.0.0.0/8 answer except 127.255.255.x (the list refusing the query); `\"zone=codes\"` accepts only the listed answers or networks, like `\"list.dnswl.org=127.0.0.0/24\"`.",
            )
            .like("[\"list.dnswl.org\"]"),
            key(
                "block_zones",
                "DNS block lists (DNSBL): listed clients are greylisted with `block_delay` and never skip the table through the auto-whitelist; never rejected. Same syntax as `allow_zones`.",
            )
            .like("[\"zen.spamhaus.org=127.0.0.2,127.0.0.3\"]"),
            key(
                "block_delay",
                "The delay of clients listed in a block zone.",
            ),
            key(
                "selective",
                "Greylist only suspicious clients: no verified reverse name (Postfix sends `[ip]`), a name with the address in it or one of `dynamic_words` in a host label, or listed in a block zone. Everyone else passes.",
            ),
            key(
                "dynamic_words",
                "Words that make a client name look dynamic for `selective` (letters and digits; matched against whole labels and their leading letters).",
            ),
        ],
    },
    Section {
        name: "dns",
        intro: "The resolver of the DNS checks (`spf`, `allow_zones`, `block_zones`, `selective`). Read only when one of them is on: without them greymilter sends no DNS query. Any DNS failure is \"no information\": the recipient is decided as without DNS, never rejected.",
        keys: &[
            key(
                "servers",
                "Nameservers as `\"ip\"` or `\"ip:port\"`. Empty: those of /etc/resolv.conf.",
            )
            .like("[\"127.0.0.1:53\"]"),
            key(
                "timeout",
                "Budget of each lookup set (the client's zones at CONNECT, SPF at MAIL); past it the recipient is decided without that information. Shorter than `[milter] decision_timeout`.",
            ),
            key(
                "cache_size",
                "Records in the resolver's cache (TTLs honoured); 0: no cache.",
            ),
        ],
    },
    Section {
        name: "lists",
        intro: "Static lists. Each entry maps to `\"accept\"` (not greylisted), `\"reject\"` (refused with `reject_reply`) or `\"greylist\"` (greylisted even if a broader entry accepts), or to `{ action = \"greylist\", delay = \"1m\" }`. The first list with a matching entry decides, in the order given in docs/decisions.md. The same lists can come from files: `[lists.files]`.",
        keys: &[
            key(
                "clients",
                "Client addresses or CIDR networks, IPv4 and IPv6; the longest prefix wins.",
            )
            .like("{ \"192.0.2.0/24\" = \"accept\", \"2001:db8::/32\" = \"reject\" }"),
            key(
                "client_names",
                "Verified client host names: `mx.example.com` exactly, `.example.com` its subdomains.",
            )
            .like("{ \".example.com\" = \"accept\" }"),
            key(
                "senders",
                "Envelope senders: an address, `local@` (at any domain) or `<>` (the null sender).",
            )
            .like("{ \"newsletter@lists.example\" = \"accept\" }"),
            key(
                "sender_domains",
                "Sender domains; a domain matches itself and its subdomains, and an exact address in `senders` beats it.",
            ),
            key(
                "recipients",
                "Envelope recipients: an address (also matching `user+ext@`) or `local@`.",
            )
            .like("{ \"postmaster@example.com\" = \"accept\" }"),
            key(
                "recipient_domains",
                "Recipient domains, as `sender_domains`.",
            ),
        ],
    },
    Section {
        name: "lists.files",
        intro: "Lists read from files, one entry per line, in postgrey's format (its whitelist_clients and whitelist_recipients are read as they are) plus an optional action per line; docs/lists.md describes the lines. A key per action and kind: `accept_`, `reject_` or `greylist_` followed by `clients`, `senders` or `recipients`. Each is a list of files: a path, or `{ path = \"...\", optional = true }`, and for `greylist_*` keys also `{ path = \"...\", delay = \"30m\" }`. A relative path is taken from this configuration file's directory. A missing file is an error, except an optional one: `optional = true`, or a name ending in `.local` unless `optional = false`. Files are read at start and on every reload; if one fails, the running lists stay whole and the log names file:line:col.",
        keys: &[
            key(
                "accept_clients",
                "Client addresses, networks and names that are never greylisted.",
            )
            .like("[\"large-senders\", \"whitelist_clients.local\"]"),
            key("reject_clients", "Clients refused with `reject_reply`."),
            key(
                "greylist_clients",
                "Clients always greylisted, optionally with their own delay.",
            )
            .like("[{ path = \"slow-networks\", delay = \"30m\" }]"),
            key(
                "accept_senders",
                "Senders (addresses, `local@`, domains, `<>`, regular expressions) never greylisted.",
            ),
            key("reject_senders", "Senders refused with `reject_reply`."),
            key("greylist_senders", "Senders always greylisted."),
            key(
                "accept_recipients",
                "Recipients never greylisted; `contrib/whitelist_recipients` lists postmaster@ and abuse@.",
            )
            .like("[\"whitelist_recipients\"]"),
            key("reject_recipients", "Recipients refused with `reject_reply`."),
            key("greylist_recipients", "Recipients always greylisted."),
            key(
                "max_file_bytes",
                "Largest list file read, in bytes (100,000 entries take about 2 MiB). A larger file, a FIFO or a device is refused.",
            ),
        ],
    },
    Section {
        name: "state",
        intro: "The tuple table on disk. A forked child writes the whole table to a temporary file, fsyncs it and renames it over the state file, so the file is always complete.",
        keys: &[
            restart(
                "file",
                "The checkpoint of the whole table; unset, the table lives in memory only. Runtime allowances made with `greymilter allow` are kept beside it in `FILE.allows`. A file that cannot be read is renamed to `FILE.bad-TIMESTAMP` and greymilter starts with an empty table.",
            )
            .like("\"/var/lib/greymilter/state\""),
            key(
                "checkpoint_interval",
                "How often a checkpoint is written, when something changed (also on SIGUSR2 and at shutdown).",
            ),
            key(
                "cleanup_interval",
                "The interval behind the `Requests-Cu` statistics.",
            ),
            key(
                "huge_pages",
                "Back the table with transparent huge pages when the kernel allows them (/sys/kernel/mm/transparent_hugepage/enabled is `always` or `madvise`): the fork of a checkpoint then pauses the daemon far less. Applies to memory allocated after a reload. With it, greymilter forks a small helper process at start (`greymilter-pf` in `ps`, same user after the privilege drop) that faults the table's next huge pages in off the main loop; it writes only into greymilter's own memory, with `process_vm_writev`, so greymilter keeps itself dumpable after dropping privileges.",
            ),
        ],
    },
    Section {
        name: "stats",
        intro: "The statistics report (docs/statistics.md).",
        keys: &[key(
            "file",
            "SIGUSR1 also writes the report here, atomically replaced; `greymilter stats` without a control socket reads it.",
        )
        .like("\"/var/lib/greymilter/stats\"")],
    },
    Section {
        name: "daemon",
        intro: "Process settings, used when started as root.",
        keys: &[
            restart(
                "user",
                "Drop to this user after binding the sockets and reading root-only files.",
            )
            .like("\"greymilter\""),
            restart("group", "Drop to this group (default: the user's group).")
                .like("\"greymilter\""),
            restart(
                "pidfile",
                "Written before privileges are dropped, removed at exit; `greymilter stats` without a control socket signals the process it names.",
            )
            .like("\"/run/greymilter/greymilter.pid\""),
        ],
    },
    Section {
        name: "log",
        intro: "Where log lines go and which; every line an admin may grep is in docs/log-reference.md.",
        keys: &[
            key(
                "level",
                "syslog's names `emerg`, `alert`, `crit`, `err`, `warning`, `notice`, `info` (one line per decision), `debug`, or `error`, `warn`, `trace`, `off`, or a tracing filter like `\"info,greymilter::control=debug\"`. `notice` logs as `info`; `crit`, `alert` and `emerg` as `err`. Anything else is refused. The RUST_LOG environment variable overrides it.",
            ),
            restart("format", "`\"text\"` for people, `\"json\"` for log pipelines."),
            restart(
                "target",
                "`\"stderr\"` (journald under systemd) or `\"syslog\"`: one datagram per line to `syslog_socket`, so decision lines land in mail.log. Lines the syslog daemon cannot take at once are dropped and counted, never blocking the milter.",
            ),
            restart(
                "facility",
                "Syslog facility: `mail`, `daemon` or `local0` to `local7`.",
            ),
            restart("syslog_socket", "The local syslog datagram socket."),
        ],
    },
    Section {
        name: "control",
        intro: "The administration socket used by `greymilter check`, `allow`, `forget`, `flush`, `stats` and `reload` (docs/operations.md). Off when `socket` is unset.",
        keys: &[
            restart(
                "socket",
                "Path of the Unix socket. Only root, the daemon's user and members of `group` may use it (checked with SO_PEERCRED).",
            )
            .like("\"/run/greymilter/control.sock\""),
            restart(
                "mode",
                "Permissions of the socket, as a quoted octal string; `\"0660\"` with `group`.",
            ),
            restart("group", "Members of this group may use the socket too.")
                .like("\"mailadm\""),
        ],
    },
    Section {
        name: "metrics",
        intro: "Prometheus metrics (docs/operations.md). Off when `listen` is unset.",
        keys: &[restart(
            "listen",
            "An IP address and port (never a host name) where `GET /metrics` is served. Keep it on loopback.",
        )
        .like("\"127.0.0.1:9134\"")],
    },
    Section {
        name: "cluster",
        intro: "Several MX hosts sharing one greylist in Redis or Valkey (docs/cluster.md). Without this section every host keeps its own table. Every key is restart-only.",
        keys: &[
            restart(
                "redis",
                "Required. `redis://[user:password@]host:port[/db]`, `unix:/path[?db=N]`, or `redis+sentinel://[user:password@]IP:PORT[,IP:PORT...]/MASTER[/DB]`, or `redis+cluster://[user:password@]IP:PORT[,IP:PORT...][/0]` (a sharded Redis Cluster: any of its nodes); `rediss://`, `rediss+sentinel://` and `rediss+cluster://` for TLS (docs/cluster.md). A host name is resolved once at start; with TLS the certificate must name the host as written.",
            )
            .like("\"redis://127.0.0.1:6379/0\""),
            restart(
                "secret_file",
                "Required. The hashing key every host shares (the same file on every host; read before privileges are dropped). Create it with `head -c 32 /dev/urandom`.",
            )
            .like("\"/etc/greymilter/cluster.key\""),
            restart(
                "timeout",
                "Budget of one Redis call (milliseconds allowed, at most 5 s); past it, or on any error, the host decides with its own table.",
            ),
            restart(
                "ca_file",
                "TLS only: the CA certificates (PEM) that sign Redis' certificate (and the sentinels'). Unset: the system's trusted roots. Read at start, before privileges are dropped.",
            )
            .like("\"/etc/greymilter/redis-ca.pem\""),
            restart(
                "cert_file",
                "TLS only: this host's client certificate (PEM, the chain after it), for a Redis with `tls-auth-clients yes`. Needs `key_file`.",
            )
            .like("\"/etc/greymilter/mx1.crt\""),
            restart(
                "key_file",
                "TLS only: the private key (PEM) of `cert_file`; may be readable by root only.",
            )
            .like("\"/etc/greymilter/mx1.key\""),
            restart(
                "tls_insecure",
                "TLS only, for tests: `true` accepts any certificate (no CA, name or date check), warned about at start. Never in production: anyone on the path could read and write the greylist.",
            ),
        ],
    },
];

/// The built-in default of every key that has one, as TOML text, by
/// `section.key`, from the structs themselves.
pub fn defaults() -> std::collections::BTreeMap<String, String> {
    let mut config = greymilter::config::Config::default();
    // [cluster] is absent by default; its defaults are those of a minimal one.
    config.cluster = Some(
        greymilter::config::Config::parse(
            "[cluster]\nredis = \"redis://127.0.0.1:6379/0\"\nsecret_file = \"k\"\n",
            "defaults",
        )
        .unwrap()
        .cluster
        .unwrap(),
    );
    let table: toml::Table = toml::to_string(&config).unwrap().parse().unwrap();
    let mut out = std::collections::BTreeMap::new();
    walk(&table, "", &mut out);
    for required in ["cluster.redis", "cluster.secret_file"] {
        out.remove(required);
    }
    out
}

fn walk(table: &toml::Table, prefix: &str, out: &mut std::collections::BTreeMap<String, String>) {
    for (k, v) in table {
        let name = format!("{prefix}{k}");
        match v {
            toml::Value::Table(t) if prefix.is_empty() || name == "lists.files" => {
                walk(t, &format!("{name}."), out)
            }
            other => {
                out.insert(name, other.to_string());
            }
        }
    }
}

fn display_default(section: &Section, key: &Key) -> String {
    defaults()
        .remove(&format!("{}.{}", section.name, key.name))
        .unwrap_or_default()
}

// --- greylist.toml(5) ---------------------------------------------------

/// Roff text: escapes, `code` in bold, one sentence per line.
fn roff(text: &str) -> String {
    let mut out = String::new();
    for (i, para) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str(".PP\n");
        }
        let mut bold = false;
        let mut line = String::new();
        let mut chars = para.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '`' => {
                    line.push_str(if bold { "\\fR" } else { "\\fB" });
                    bold = !bold;
                }
                '\\' => line.push_str("\\e"),
                '-' => line.push_str("\\-"),
                '\n' => line.push(' '),
                '.' | '?' | ':' if !bold && chars.peek() == Some(&' ') => {
                    line.push(c);
                    chars.next();
                    if c == '.' {
                        push_roff_line(&mut out, &line);
                        line.clear();
                    } else {
                        line.push(' ');
                    }
                }
                _ => line.push(c),
            }
        }
        push_roff_line(&mut out, &line);
    }
    out
}

fn push_roff_line(out: &mut String, line: &str) {
    let line = line.trim();
    if line.is_empty() {
        return;
    }
    if line.starts_with('.') || line.starts_with('\'') {
        out.push_str("\\&");
    }
    out.push_str(line);
    out.push('\n');
}

/// Longest default shown on the tag line of greylist.toml(5).
const MAX_TAG_DEFAULT: usize = 40;

/// A default or example value in roff.
fn roff_value(v: &str) -> String {
    v.replace('\\', "\\e").replace('-', "\\-")
}

pub fn man_page() -> String {
    let mut m = String::new();
    m.push_str(
        ".TH GREYLIST.TOML 5 \"\" \"greymilter\" \"File Formats Manual\"\n\
         .ad l\n\
         .SH NAME\n\
         greylist.toml \\- configuration of the greymilter greylisting milter\n\
         .SH SYNOPSIS\n\
         .I /etc/greymilter/greylist.toml\n\
         .SH DESCRIPTION\n",
    );
    m.push_str(&roff(DESCRIPTION));
    for section in SECTIONS {
        m.push_str(&format!(".SH [{}]\n", section.name));
        m.push_str(&roff(section.intro));
        for key in section.keys {
            let default = display_default(section, key);
            // A long default would wrap inside the tag: it goes below.
            let long = default.len() > MAX_TAG_DEFAULT;
            m.push_str(".TP\n");
            m.push_str(&format!("\\fB{}\\fR", roff_value(key.name)));
            if !default.is_empty() && !long {
                m.push_str(&format!(" = {}", roff_value(&default)));
            }
            if !key.reload {
                m.push_str("  (\\fIrestart\\fR)");
            }
            m.push('\n');
            m.push_str(&roff(key.text));
            if long {
                m.push_str(&format!("Default: \\fB{}\\fR\n", roff_value(&default)));
            }
            if let Some(example) = key.example {
                m.push_str(&format!(
                    "For example: \\fB{} = {}\\fR\n",
                    roff_value(key.name),
                    roff_value(example)
                ));
            }
        }
    }
    m.push_str(".SH EXAMPLES\nA single MX with a state file, the control socket and syslog:\n.PP\n.nf\n.RS\n");
    m.push_str(&roff_value(EXAMPLE));
    m.push_str(".RE\n.fi\n.SH FILES\n.TP\n\\fI/etc/greymilter/greylist.toml\\fR\nThe configuration.\n.TP\n\\fI/etc/greymilter/large\\-senders\\fR, \\fI/etc/greymilter/whitelist_recipients\\fR\nThe shipped lists, named by the example configuration.\n.SH SEE ALSO\n\\fBgreymilter\\fR(8), \\fBpostconf\\fR(5); docs/configuration.md (this page) and docs/lists.md in the source.\n");
    m
}

const DESCRIPTION: &str = "`greymilter`(8) reads one TOML file, given with `--config` or found at /etc/greymilter/greylist.toml. Every key is optional and has a built-in default (shown after `=` below); a key without a default is off until set. An unknown key is an error, and every error names file:line:column. `greymilter check-config` validates a file, the list files it names and the users and groups it names, warns about a listener reachable from the network, and prints the effective configuration.\n\nA reload (SIGHUP or `greymilter reload`) applies every key except those marked restart, which are reported in the log and keep their running value until the next start.\n\nDurations are written `\"90s\"`, `\"5m\"`, `\"24h\"`, `\"36d\"` or as a whole number of seconds.";

/// The example of both pages (and run by tests/config_reference.rs).
pub const EXAMPLE: &str = r#"[milter]
listen = "inet:10030@127.0.0.1"

[greylist]
delay = "5m"

[lists.files]
accept_clients = [{ path = "large-senders", optional = true }, "whitelist_clients.local"]
accept_recipients = ["whitelist_recipients"]

[state]
file = "/var/lib/greymilter/state"

[daemon]
user = "greymilter"
pidfile = "/run/greymilter/greymilter.pid"

[log]
target = "syslog"

[control]
socket = "/run/greymilter/control.sock"
"#;

// --- docs/configuration.md ------------------------------------------------

pub fn markdown() -> String {
    let mut m = String::from(
        "# greylist.toml: the configuration reference\n\n\
         <!-- Generated from tests/support/man/config_reference.rs by \
         `cargo run --example gen_man`, like man/greylist.toml.5: edit \
         that file, not this one. -->\n\n",
    );
    m.push_str(&DESCRIPTION.replace("`greymilter`(8)", "greymilter"));
    m.push_str("\n\nSections: ");
    let links: Vec<String> = SECTIONS
        .iter()
        .map(|s| format!("[`[{}]`](#{})", s.name, s.name.replace('.', "")))
        .collect();
    m.push_str(&links.join(", "));
    m.push_str(".\n");
    for section in SECTIONS {
        m.push_str(&format!("\n## [{}]\n\n{}\n\n", section.name, section.intro));
        for key in section.keys {
            let default = display_default(section, key);
            let head = if default.is_empty() {
                format!("`{}`", key.name)
            } else {
                format!("`{} = {}`", key.name, default)
            };
            let restart = if key.reload { "" } else { " *(restart)*" };
            m.push_str(&format!(
                "- {head}{restart}: {}",
                key.text.replace("\n\n", " ")
            ));
            if let Some(example) = key.example {
                m.push_str(&format!(" For example: `{} = {}`", key.name, example));
            }
            m.push('\n');
        }
    }
    m = link_docs(&m);
    m.push_str("\n## Example\n\nA single MX with a state file, the control socket and syslog:\n\n```toml\n");
    m.push_str(EXAMPLE);
    m.push_str("```\n");
    m
}

/// `docs/NAME.md` in running text becomes a link (the page is in docs/).
fn link_docs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("docs/") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let tail = &from["docs/".len()..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-' || c == '.'))
            .unwrap_or(tail.len());
        let name = tail[..len].trim_end_matches('.');
        if name.ends_with(".md") && !before.ends_with('[') && !before.ends_with("](") {
            out.push_str(&format!("[docs/{name}]({name})"));
            rest = &tail[name.len()..];
        } else {
            out.push_str("docs/");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// `(path from the repository root, contents)` of the generated files.
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("man/greylist.toml.5", man_page().into_bytes()),
        ("docs/configuration.md", markdown().into_bytes()),
    ]
}
