//! A real SMTP server on loopback: Python's `aiosmtpd` (Debian
//! `python3-aiosmtpd`, or `pip install aiosmtpd`) run as a child process,
//! with STARTTLS required before anything else, AUTH required (only over
//! TLS) for one user, and the kit's PKI for its certificate.
//!
//! Why aiosmtpd rather than a small Rust server in the kit: it is a
//! maintained, widely used SMTP implementation whose STARTTLS, AUTH
//! (PLAIN, LOGIN) and DATA handling we did not write — a test against it
//! proves the sink talks SMTP, not that it agrees with our own reading of
//! the RFCs.
//!
//! Each accepted message is written as `NNNN.json` (`mail_from`,
//! `rcpt_tos`, `data`, `tls`, `auth`) into a directory the test reads back
//! with [`SmtpServer::messages`].

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde::Deserialize;

use crate::pki::Identity;

const SCRIPT: &str = r#"
import asyncio, json, os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, out, user, password = sys.argv[1:7]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        path = os.path.join(out, "%04d.json" % n)
        with open(path + ".tmp", "w") as f:
            json.dump({
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
                "tls": session.ssl is not None,
                "auth": bool(session.authenticated),
            }, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"

def authenticator(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login == user.encode() \
            and auth_data.password == password.encode():
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False)

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx,
               require_starttls=True, auth_required=True, auth_require_tls=True,
               authenticator=authenticator)
c.start()
print("READY", flush=True)
sys.stdin.read()
c.stop()
"#;

/// A message the server accepted.
#[derive(Clone, Debug, Deserialize)]
pub struct SmtpMessage {
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpt_tos: Vec<String>,
    /// The message as sent (headers and body).
    pub data: String,
    /// The session was TLS (after STARTTLS).
    pub tls: bool,
    /// The session was authenticated.
    pub auth: bool,
}

impl SmtpMessage {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or(&self.data);
        let mut lines = head.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                let mut value = v.trim().to_owned();
                while let Some(next) = lines.peek()
                    && next.starts_with([' ', '\t'])
                {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                }
                return Some(value);
            }
        }
        None
    }

    /// The body after the headers.
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .or_else(|| self.data.split_once("\n\n"))
            .map(|(_, b)| b)
            .unwrap_or("")
    }
}

/// A running aiosmtpd. Stops when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
}

/// The Python interpreter that has aiosmtpd: Debian's, else `python3`.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

impl SmtpServer {
    /// Starts on `127.0.0.1` with `identity` for STARTTLS, accepting AUTH
    /// for `user` / `password`.
    pub async fn start(
        identity: &Identity,
        user: &str,
        password: &str,
    ) -> anyhow::Result<SmtpServer> {
        let out = tempfile::tempdir()?;
        let (cert, key) = identity.write_pem(out.path(), "smtp")?;
        let mail = out.path().join("mail");
        std::fs::create_dir(&mail)?;
        let port = crate::free_port()?;
        let mut child = Command::new(python())
            .args(["-c", SCRIPT, &port.to_string()])
            .arg(&cert)
            .arg(&key)
            .arg(&mail)
            .args([user, password])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let ready = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        });
        let line = tokio::time::timeout(Duration::from_secs(20), ready).await???;
        if line.trim() != "READY" {
            let _ = child.kill();
            anyhow::bail!("aiosmtpd did not start (apt-get install python3-aiosmtpd): {line:?}");
        }
        Ok(SmtpServer { child, port, out })
    }

    /// The port (host `localhost`, the certificate's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn dir(&self) -> PathBuf {
        self.out.path().join("mail")
    }

    /// Accepted messages, in order.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// Waits for at least `n` messages, or `timeout`.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<SmtpMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
