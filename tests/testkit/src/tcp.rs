//! [`TcpServer`]: a loopback TCP server speaking a scripted line protocol — a
//! banner on connect, then one reply per received line chosen by its first
//! word — and two hostile modes. Optionally TLS from the first byte.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use outpost_testkit::TcpServer;
//! let smtp = TcpServer::smtp().run().await?;          // 220 banner, EHLO, QUIT
//! let redis = TcpServer::redis().run().await?;        // PING → +PONG
//! let custom = TcpServer::builder()
//!     .banner("* OK ready\r\n")
//!     .reply("a1", "a1 OK done\r\n")
//!     .run()
//!     .await?;
//! # let _ = (smtp.addr(), redis.addr(), custom.addr()); Ok(()) }
//! ```
//!
//! | constructor | what a client sees |
//! | --- | --- |
//! | [`TcpServer::smtp`] | `220 mail.test ESMTP outpost-testkit`, `EHLO`/`HELO` → `250`, `QUIT` → `221` and close, else `502` |
//! | [`TcpServer::redis`] | no banner; `PING` → `+PONG`, `QUIT` → `+OK` and close, else `-ERR` |
//! | [`TcpServer::ssh`] | `SSH-2.0-OpenSSH_9.2p1 outpost-testkit`, then silence |
//! | [`TcpServer::silent`] | connected, then nothing, forever |
//! | [`TcpServer::garbage`] | random bytes at a fixed rate, forever, whatever is sent |
//!
//! Lines are read up to 8 KiB each (longer: the connection is closed); the
//! most recent 10 000 received lines are kept ([`TcpServer::lines`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::net::TcpStream;

use crate::pki::Identity;
use crate::server::{ServerTask, bind_loopback};

/// Longest line read.
pub const MAX_LINE: usize = 8 * 1024;
/// Most recent received lines kept.
pub const MAX_LINES: usize = 10_000;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server does with a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Script,
    Silent,
    Garbage { bytes_per_sec: u64 },
}

/// One reply rule: a line whose first word equals `word` (case-insensitive).
#[derive(Clone, Debug)]
struct Rule {
    word: String,
    reply: Bytes,
    close: bool,
}

/// Configures a [`TcpServer`].
#[derive(Debug)]
pub struct TcpServerBuilder {
    mode: Mode,
    banner: Option<Bytes>,
    rules: Vec<Rule>,
    otherwise: Option<Bytes>,
    tls: Option<Identity>,
    addr: SocketAddr,
}

/// A running TCP server. Dropping it stops it and closes its connections.
#[derive(Debug)]
pub struct TcpServer {
    addr: SocketAddr,
    lines: Arc<Mutex<VecDeque<String>>>,
    task: ServerTask,
}

impl TcpServer {
    /// A scripted server with no banner and no rules (it reads and says nothing).
    pub fn builder() -> TcpServerBuilder {
        TcpServerBuilder {
            mode: Mode::Script,
            banner: None,
            rules: Vec::new(),
            otherwise: None,
            tls: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// An SMTP-like server (see the module table).
    pub fn smtp() -> TcpServerBuilder {
        TcpServer::builder()
            .banner("220 mail.test ESMTP outpost-testkit\r\n")
            .reply(
                "EHLO",
                "250-mail.test greets you\r\n250-SIZE 10240000\r\n250 HELP\r\n",
            )
            .reply("HELO", "250 mail.test\r\n")
            .reply_and_close("QUIT", "221 2.0.0 bye\r\n")
            .otherwise("502 5.5.2 command not recognized\r\n")
    }

    /// A Redis-like server (inline commands, see the module table).
    pub fn redis() -> TcpServerBuilder {
        TcpServer::builder()
            .reply("PING", "+PONG\r\n")
            .reply_and_close("QUIT", "+OK\r\n")
            .otherwise("-ERR unknown command\r\n")
    }

    /// An SSH-like server: its version banner, then silence.
    pub fn ssh() -> TcpServerBuilder {
        TcpServer::builder().banner("SSH-2.0-OpenSSH_9.2p1 outpost-testkit\r\n")
    }

    /// Accepts and never writes a byte.
    pub fn silent() -> TcpServerBuilder {
        TcpServerBuilder {
            mode: Mode::Silent,
            ..TcpServer::builder()
        }
    }

    /// Streams random bytes at `bytes_per_sec` from the first moment, forever,
    /// whatever the client sends (until it leaves).
    pub fn garbage(bytes_per_sec: u64) -> TcpServerBuilder {
        TcpServerBuilder {
            mode: Mode::Garbage { bytes_per_sec },
            ..TcpServer::builder()
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> u64 {
        self.task.connection_count()
    }

    /// Lines received, oldest first, without their line ending.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

impl TcpServerBuilder {
    /// Sent on connect, before anything is read.
    pub fn banner(mut self, banner: impl Into<Bytes>) -> Self {
        self.banner = Some(banner.into());
        self
    }

    /// Answers a line whose first word is `word` (case-insensitive) with `reply`.
    pub fn reply(mut self, word: &str, reply: impl Into<Bytes>) -> Self {
        self.rules.push(Rule {
            word: word.to_owned(),
            reply: reply.into(),
            close: false,
        });
        self
    }

    /// Like [`TcpServerBuilder::reply`], then closes the connection.
    pub fn reply_and_close(mut self, word: &str, reply: impl Into<Bytes>) -> Self {
        self.rules.push(Rule {
            word: word.to_owned(),
            reply: reply.into(),
            close: true,
        });
        self
    }

    /// Answers any other line with `reply` (default: nothing).
    pub fn otherwise(mut self, reply: impl Into<Bytes>) -> Self {
        self.otherwise = Some(reply.into());
        self
    }

    /// TLS from the first byte (TLS 1.2 and 1.3, no ALPN).
    pub fn tls(mut self, identity: Identity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Binds another loopback address (default `127.0.0.1:0`).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Starts the server.
    pub async fn run(self) -> anyhow::Result<TcpServer> {
        let acceptor = match &self.tls {
            None => None,
            Some(identity) => Some(tokio_rustls::TlsAcceptor::from(
                identity
                    .try_server_config_with(rustls::DEFAULT_VERSIONS, Vec::new())
                    .context("building TLS config for tcp server")?,
            )),
        };
        let listener = bind_loopback(self.addr).await?;
        let addr = listener.local_addr().context("reading bound address")?;
        let lines: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let script = Arc::new(Script {
            mode: self.mode,
            banner: self.banner,
            rules: self.rules,
            otherwise: self.otherwise,
            lines: Arc::clone(&lines),
        });
        let task = ServerTask::spawn(listener, move |stream, peer| {
            let script = Arc::clone(&script);
            let acceptor = acceptor.clone();
            async move {
                if let Err(err) = serve(stream, acceptor, &script).await {
                    tracing::debug!(%peer, error = %err, "tcp connection ended");
                }
            }
        });
        tracing::debug!(%addr, "testkit tcp server listening");
        Ok(TcpServer { addr, lines, task })
    }
}

struct Script {
    mode: Mode,
    banner: Option<Bytes>,
    rules: Vec<Rule>,
    otherwise: Option<Bytes>,
    lines: Arc<Mutex<VecDeque<String>>>,
}

async fn serve(
    stream: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    script: &Script,
) -> std::io::Result<()> {
    match acceptor {
        None => converse(stream, script).await,
        Some(acceptor) => {
            let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "tls handshake")
                })??;
            converse(tls, script).await
        }
    }
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    script: &Script,
) -> std::io::Result<()> {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    match script.mode {
        Mode::Silent => {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut reader, &mut sink).await;
            return Ok(());
        }
        Mode::Garbage { bytes_per_sec } => {
            let mut sink = tokio::io::sink();
            tokio::select! {
                r = garbage(&mut writer, bytes_per_sec) => return r,
                _ = tokio::io::copy(&mut reader, &mut sink) => return Ok(()),
            }
        }
        Mode::Script => {}
    }
    if let Some(b) = &script.banner {
        writer.write_all(b).await?;
        writer.flush().await?;
    }
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 || (n == MAX_LINE && !line.ends_with(b"\n")) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        let word = text.split_whitespace().next().unwrap_or("").to_owned();
        {
            let mut kept = script.lines.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() >= MAX_LINES {
                kept.pop_front();
            }
            kept.push_back(text);
        }
        let rule = script
            .rules
            .iter()
            .find(|r| r.word.eq_ignore_ascii_case(&word));
        match (rule, &script.otherwise) {
            (Some(r), _) => {
                writer.write_all(&r.reply).await?;
                writer.flush().await?;
                if r.close {
                    return writer.shutdown().await;
                }
            }
            (None, Some(reply)) => {
                writer.write_all(reply).await?;
                writer.flush().await?;
            }
            (None, None) => {}
        }
    }
}

async fn garbage<W: AsyncWrite + Unpin>(writer: &mut W, bytes_per_sec: u64) -> std::io::Result<()> {
    const TICK: Duration = Duration::from_millis(50);
    let per_tick = (bytes_per_sec / 20).max(1) as usize;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut left = per_tick;
        while left > 0 {
            let chunk: [u8; 1024] = crate::random_bytes();
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).await?;
            left -= n;
        }
        writer.flush().await?;
    }
}
