//! A raw SMTP client that reports every reply, so tests can assert exact codes and texts.
//! Blocking std I/O with timeouts: no runtime, nothing that could hang a test.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// Long enough for a loaded CI host, short enough to fail a hung test quickly.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One SMTP reply: the code and the text of every line (without `250-`/`250 `).
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The text of all lines joined by newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The reply as the client saw it, last line only (`451 4.7.1 ...`).
    pub fn last_line(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.last().map(String::as_str).unwrap_or("")
        )
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// Whether the reply starts with `prefix`, e.g. `"451 4.7.1 Greylisted"`.
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.last_line().starts_with(prefix)
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.last_line())
    }
}

/// XCLIENT attributes (Postfix only; `smtpd_authorized_xclient_hosts` must cover the client).
#[derive(Clone, Debug, Default)]
pub struct Xclient {
    /// IPv4 dotted quad, or an IPv6 address (sent with the required `IPV6:` prefix).
    pub addr: Option<IpAddr>,
    pub name: Option<String>,
    /// A SASL login; Postfix resets it unless it comes in the last XCLIENT command.
    pub login: Option<String>,
}

impl Xclient {
    pub fn addr(addr: &str) -> Xclient {
        Xclient {
            addr: Some(addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"))),
            ..Xclient::default()
        }
    }

    fn command(&self) -> String {
        let mut command = String::from("XCLIENT");
        if let Some(addr) = self.addr {
            match addr {
                IpAddr::V4(v4) => command.push_str(&format!(" ADDR={v4}")),
                IpAddr::V6(v6) => command.push_str(&format!(" ADDR=IPV6:{v6}")),
            }
        }
        if let Some(name) = &self.name {
            command.push_str(&format!(" NAME={name}"));
        }
        if let Some(login) = &self.login {
            command.push_str(&format!(" LOGIN={login}"));
        }
        command
    }
}

/// A connected SMTP session. Every command and reply is kept in `transcript`.
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    pub transcript: Vec<String>,
}

impl SmtpClient {
    /// Connects and reads the banner.
    pub fn connect(server: SocketAddr) -> std::io::Result<(SmtpClient, Reply)> {
        let stream = TcpStream::connect_timeout(&server, IO_TIMEOUT)?;
        SmtpClient::from_stream(stream)
    }

    /// Connects from a chosen local address, e.g. 127.9.8.7 (Linux accepts any 127/8 source
    /// without configuration) so that Sendmail, which has no XCLIENT, sees another client.
    pub fn connect_from(local: IpAddr, server: SocketAddr) -> std::io::Result<(SmtpClient, Reply)> {
        if local.is_ipv4() != server.is_ipv4() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("source {local} and server {server} differ in family"),
            ));
        }
        let socket = Socket::new(Domain::for_address(server), Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(local, 0).into())?;
        socket.connect_timeout(&server.into(), IO_TIMEOUT)?;
        SmtpClient::from_stream(TcpStream::from(socket))
    }

    fn from_stream(stream: TcpStream) -> std::io::Result<(SmtpClient, Reply)> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut client = SmtpClient {
            reader: BufReader::new(stream),
            writer,
            transcript: Vec::new(),
        };
        let banner = client.read_reply()?;
        Ok((client, banner))
    }

    /// Reads one (possibly multi-line) reply.
    pub fn read_reply(&mut self) -> std::io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "server closed the connection; transcript: {:?}",
                        self.transcript
                    ),
                ));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            self.transcript.push(format!("S: {line}"));
            let bad = || {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("malformed reply line {line:?}"),
                )
            };
            let code: u16 = line.get(..3).ok_or_else(bad)?.parse().map_err(|_| bad())?;
            let separator = line.as_bytes().get(3).copied().unwrap_or(b' ');
            lines.push(line.get(4..).unwrap_or("").to_string());
            match separator {
                b'-' => continue,
                b' ' => return Ok(Reply { code, lines }),
                _ => return Err(bad()),
            }
        }
    }

    /// Sends one command line and reads its reply.
    pub fn command(&mut self, line: &str) -> std::io::Result<Reply> {
        self.transcript.push(format!("C: {line}"));
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    pub fn ehlo(&mut self, name: &str) -> std::io::Result<Reply> {
        self.command(&format!("EHLO {name}"))
    }

    /// XCLIENT; on success Postfix greets again (220), after which EHLO must be repeated.
    pub fn xclient(&mut self, attributes: &Xclient) -> std::io::Result<Reply> {
        self.command(&attributes.command())
    }

    pub fn mail_from(&mut self, sender: &str) -> std::io::Result<Reply> {
        self.command(&format!("MAIL FROM:<{sender}>"))
    }

    pub fn rcpt_to(&mut self, recipient: &str) -> std::io::Result<Reply> {
        self.command(&format!("RCPT TO:<{recipient}>"))
    }

    /// DATA; if the server answers 354, sends `message` (dot-stuffed, CRLF line ends) and
    /// returns the final reply, else the reply to DATA itself.
    pub fn data(&mut self, message: &str) -> std::io::Result<Reply> {
        let go_ahead = self.command("DATA")?;
        if go_ahead.code != 354 {
            return Ok(go_ahead);
        }
        let mut wire = String::new();
        for line in message.lines() {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n");
        self.transcript
            .push(format!("C: <{} bytes of message>", wire.len()));
        self.writer.write_all(wire.as_bytes())?;
        self.read_reply()
    }

    pub fn rset(&mut self) -> std::io::Result<Reply> {
        self.command("RSET")
    }

    pub fn quit(&mut self) -> std::io::Result<Reply> {
        self.command("QUIT")
    }
}

/// One complete mail transaction to send.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Where to connect (the MTA's SMTP listener).
    pub server: SocketAddr,
    /// Local address to bind before connecting (Sendmail: play another client).
    pub source: Option<IpAddr>,
    /// XCLIENT attributes sent right after the banner (Postfix).
    pub xclient: Option<Xclient>,
    pub helo: String,
    pub from: String,
    pub to: Vec<String>,
    /// The message; a unique `Subject:` lets tests find it in a mailbox.
    pub message: String,
    /// Sessions sharing a gate wait there after their RCPT replies until all have arrived.
    pub gate: Option<Arc<Gate>>,
}

impl Envelope {
    pub fn new(server: SocketAddr, from: &str, to: &[&str]) -> Envelope {
        let subject = unique_subject();
        Envelope {
            server,
            source: None,
            xclient: None,
            helo: "client.test".to_string(),
            from: from.to_string(),
            to: to.iter().map(|r| r.to_string()).collect(),
            message: format!(
                "From: <{from}>\nTo: <{}>\nSubject: {subject}\n\ngreymilter end-to-end test\n",
                to.first().copied().unwrap_or("")
            ),
            gate: None,
        }
    }

    pub fn gate(mut self, gate: &Arc<Gate>) -> Envelope {
        self.gate = Some(Arc::clone(gate));
        self
    }

    pub fn xclient(mut self, xclient: Xclient) -> Envelope {
        self.xclient = Some(xclient);
        self
    }

    pub fn source(mut self, source: &str) -> Envelope {
        self.source = Some(source.parse().unwrap_or_else(|e| panic!("{source}: {e}")));
        self
    }

    /// The `Subject:` of the message (unique per envelope).
    pub fn subject(&self) -> &str {
        self.message
            .lines()
            .find_map(|line| line.strip_prefix("Subject: "))
            .unwrap_or("")
    }

    /// Runs the whole session: banner, XCLIENT (+ re-greeting), EHLO, MAIL, every RCPT, DATA
    /// if any recipient was accepted, QUIT. Panics on I/O errors, with the transcript.
    pub fn send(&self) -> Outcome {
        self.try_send()
            .unwrap_or_else(|e| panic!("SMTP session with {} failed: {e}", self.server))
    }

    pub fn try_send(&self) -> std::io::Result<Outcome> {
        let mut at_gate = false;
        let result = self.session(&mut at_gate);
        // A session that failed before the gate must not keep the others waiting.
        if let (Some(gate), false) = (&self.gate, at_gate) {
            gate.give_up();
        }
        result
    }

    fn session(&self, at_gate: &mut bool) -> std::io::Result<Outcome> {
        let (mut client, banner) = match self.source {
            Some(source) => SmtpClient::connect_from(source, self.server)?,
            None => SmtpClient::connect(self.server)?,
        };
        let mut outcome = Outcome {
            banner,
            xclient: None,
            ehlo: None,
            mail: None,
            rcpts: Vec::new(),
            data: None,
            transcript: Vec::new(),
        };
        let result = self.run(&mut client, &mut outcome, at_gate);
        outcome.transcript = std::mem::take(&mut client.transcript);
        result.map(|()| outcome)
    }

    fn run(
        &self,
        client: &mut SmtpClient,
        outcome: &mut Outcome,
        at_gate: &mut bool,
    ) -> std::io::Result<()> {
        if outcome.banner.code != 220 {
            return Ok(());
        }
        if let Some(xclient) = &self.xclient {
            let greeting = client.xclient(xclient)?;
            let ok = greeting.code == 220;
            outcome.xclient = Some(greeting);
            if !ok {
                return Ok(());
            }
        }
        let ehlo = client.ehlo(&self.helo)?;
        let ok = ehlo.code == 250;
        outcome.ehlo = Some(ehlo);
        if !ok {
            return Ok(());
        }
        let mail = client.mail_from(&self.from)?;
        let ok = mail.code == 250;
        outcome.mail = Some(mail);
        if ok {
            for recipient in &self.to {
                let reply = client.rcpt_to(recipient)?;
                outcome.rcpts.push(reply);
            }
        }
        if let Some(gate) = &self.gate {
            *at_gate = true;
            gate.arrive()?;
        }
        if outcome.rcpts.iter().any(|r| r.code == 250) {
            outcome.data = Some(client.data(&self.message)?);
        }
        // The server may already have closed after a 421; QUIT is best effort.
        let _ = client.quit();
        Ok(())
    }
}

/// Where concurrent sessions meet: each waits after its RCPT replies until every party has
/// arrived (or given up), so that all of them are open in the MTA, and at the milter, at
/// once. The wait is bounded.
#[derive(Debug)]
pub struct Gate {
    parties: usize,
    timeout: Duration,
    /// (arrived, gave up)
    state: Mutex<(usize, usize)>,
    changed: Condvar,
}

impl Gate {
    pub fn new(parties: usize, timeout: Duration) -> Arc<Gate> {
        Arc::new(Gate {
            parties,
            timeout,
            state: Mutex::new((0, 0)),
            changed: Condvar::new(),
        })
    }

    /// How many sessions have arrived so far.
    pub fn arrived(&self) -> usize {
        self.lock().0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arrive(&self) -> std::io::Result<()> {
        let mut state = self.lock();
        state.0 += 1;
        self.changed.notify_all();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, self.timeout, |(arrived, gave_up)| {
                *arrived + *gave_up < self.parties
            })
            .unwrap_or_else(|p| p.into_inner());
        let (arrived, gave_up) = *state;
        if arrived == self.parties {
            return Ok(());
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "only {arrived} of {} sessions reached the gate ({gave_up} failed before it)",
                self.parties
            ),
        ))
    }

    fn give_up(&self) {
        self.lock().1 += 1;
        self.changed.notify_all();
    }
}

/// Every reply of one session, in order.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub banner: Reply,
    pub xclient: Option<Reply>,
    pub ehlo: Option<Reply>,
    pub mail: Option<Reply>,
    pub rcpts: Vec<Reply>,
    /// The final reply after the message body (or the reply to DATA if it was refused).
    pub data: Option<Reply>,
    pub transcript: Vec<String>,
}

impl Outcome {
    /// The only RCPT reply of a one-recipient envelope.
    pub fn rcpt(&self) -> &Reply {
        match self.rcpts.as_slice() {
            [only] => only,
            _ => panic!("expected exactly one RCPT reply: {self:#?}"),
        }
    }

    /// Whether the message was accepted for delivery (250 after the body).
    pub fn delivered(&self) -> bool {
        self.data.as_ref().is_some_and(|r| r.code == 250)
    }
}

fn unique_subject() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "e2e-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}
