//! Hostile peers: servers that misbehave below the level a well-behaved HTTP server can.
//!
//! Each one reads the client's request head first (up to 64 KiB, 5 s) so the client
//! sees the misbehaviour while waiting for a response, not as a failed write. All of
//! them stop writing as soon as the client goes away (read EOF or a failed write), use
//! a fixed amount of memory per connection, and can run over TLS
//! ([`Hostile::start`] with an [`Identity`]), in which case the handshake completes
//! first and the misbehaviour happens inside TLS.
//!
//! | constructor | what the client sees |
//! | --- | --- |
//! | [`Hostile::silent`] | connected, then nothing, forever (read timeout) |
//! | [`Hostile::garbage`] | random non-HTTP bytes, then close (parse error) |
//! | [`Hostile::huge_headers`] | `200` status line then `size_bytes` of header lines |
//! | [`Hostile::endless_body`] | `Content-Length: 1 GiB`, zeros at a fixed rate |
//! | [`Hostile::endless_stream`] | no `Content-Length` (read until close), zeros at a fixed rate |
//! | [`Hostile::drip`] | `Content-Length: 1000`, one body byte per interval |
//! | [`Hostile::reset`] | TCP RST after the request (connection reset) |
//! | [`Hostile::close`] | FIN after the request, no response (incomplete message) |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::pki::Identity;
use crate::server::{ServerTask, bind_loopback, url};

/// Body length announced by [`Hostile::endless_body`]: 1 GiB.
pub const ENDLESS_CONTENT_LENGTH: u64 = 1 << 30;
/// Body length announced by [`Hostile::drip`].
pub const DRIP_CONTENT_LENGTH: usize = 1000;

const REQUEST_HEAD_LIMIT: usize = 64 * 1024;
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_CHUNK: usize = 16 * 1024;

/// How a [`HostileServer`] misbehaves.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Behaviour {
    /// Accept, read and discard, never answer, keep the socket open until the client
    /// closes it.
    Silent,
    /// Answer with 1 KiB of random non-HTTP bytes, then close.
    Garbage,
    /// `HTTP/1.1 200 OK`, then about `size_bytes` of `X-Filler-N: aaa…` header lines,
    /// then `Content-Length: 0` and the end of the head.
    HugeHeaders {
        /// Bytes of filler header lines.
        size_bytes: usize,
    },
    /// `HTTP/1.1 200 OK` with `Content-Length: 1073741824`, then zeros at
    /// `bytes_per_sec` until the client leaves (or 1 GiB is sent). `0` sends the head
    /// and then stalls.
    EndlessBody {
        /// Body bytes per second.
        bytes_per_sec: u64,
    },
    /// `HTTP/1.1 200 OK` with `Connection: close` and no length (the body
    /// ends when the connection does), then zeros at `bytes_per_sec` until the
    /// client leaves (or 1 GiB is sent): only reading tells the size.
    EndlessStream {
        /// Body bytes per second.
        bytes_per_sec: u64,
    },
    /// `HTTP/1.1 200 OK` with `Content-Length: 1000`, then one byte per `interval`.
    Drip {
        /// Pause before each body byte.
        interval: Duration,
    },
    /// Read the request, then reset the connection (`SO_LINGER` 0, RST).
    Reset,
    /// Read the request, then close cleanly (FIN) without answering.
    Close,
}

/// Constructors for hostile servers, each bound to `127.0.0.1:0`.
#[derive(Debug)]
pub struct Hostile;

impl Hostile {
    /// See [`Behaviour::Silent`].
    pub async fn silent() -> anyhow::Result<HostileServer> {
        Hostile::start(Behaviour::Silent, None).await
    }

    /// See [`Behaviour::Garbage`].
    pub async fn garbage() -> anyhow::Result<HostileServer> {
        Hostile::start(Behaviour::Garbage, None).await
    }

    /// See [`Behaviour::HugeHeaders`].
    pub async fn huge_headers(size_bytes: usize) -> anyhow::Result<HostileServer> {
        Hostile::start(Behaviour::HugeHeaders { size_bytes }, None).await
    }

    /// See [`Behaviour::EndlessBody`].
    pub async fn endless_body(bytes_per_sec: u64) -> anyhow::Result<HostileServer> {
        Hostile::start(Behaviour::EndlessBody { bytes_per_sec }, None).await
    }

    /// See [`Behaviour::EndlessStream`].
    pub async fn endless_stream(bytes_per_sec: u64) -> anyhow::Result<HostileServer> {
        Hostile::start(Behaviour::EndlessStream { bytes_per_sec }, None).await
    }

    /// See [`Behaviour::Drip`].
    pub async fn drip(interval: Duration) -> anyhow::Result<HostileServer> {
        Hostile::start(Behaviour::Drip { interval }, None).await
    }

    /// See [`Behaviour::Reset`].
    pub async fn reset() -> anyhow::Result<HostileServer> {
        Hostile::start(Behaviour::Reset, None).await
    }

    /// See [`Behaviour::Close`].
    pub async fn close() -> anyhow::Result<HostileServer> {
        Hostile::start(Behaviour::Close, None).await
    }

    /// Any behaviour, optionally inside TLS with `tls` (TLS 1.2 + 1.3, ALPN
    /// `http/1.1` only: the misbehaviour is HTTP/1-shaped), on `127.0.0.1:0`.
    pub async fn start(
        behaviour: Behaviour,
        tls: Option<Identity>,
    ) -> anyhow::Result<HostileServer> {
        Hostile::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), behaviour, tls).await
    }

    /// [`Hostile::start`] on another loopback address.
    pub async fn start_on(
        addr: SocketAddr,
        behaviour: Behaviour,
        tls: Option<Identity>,
    ) -> anyhow::Result<HostileServer> {
        let acceptor = match &tls {
            None => None,
            Some(identity) => Some(tokio_rustls::TlsAcceptor::from(
                identity
                    .try_server_config_with(rustls::DEFAULT_VERSIONS, vec![b"http/1.1".to_vec()])
                    .context("building TLS config for hostile server")?,
            )),
        };
        let listener = bind_loopback(addr).await?;
        let addr = listener.local_addr().context("reading bound address")?;
        let shared = Arc::new(behaviour.clone());
        let task = ServerTask::spawn(listener, move |stream, peer| {
            let behaviour = Arc::clone(&shared);
            let acceptor = acceptor.clone();
            async move {
                if let Err(err) = serve(stream, acceptor, &behaviour).await {
                    tracing::debug!(%peer, error = %err, "hostile connection ended");
                }
            }
        });
        tracing::debug!(%addr, ?behaviour, "testkit hostile server listening");
        Ok(HostileServer {
            addr,
            tls: tls.is_some(),
            behaviour,
            task,
        })
    }
}

/// A running hostile server; dropping it (or [`HostileServer::shutdown`]) stops it
/// and closes its connections.
#[derive(Debug)]
pub struct HostileServer {
    addr: SocketAddr,
    tls: bool,
    behaviour: Behaviour,
    task: ServerTask,
}

impl HostileServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How this server misbehaves.
    pub fn behaviour(&self) -> &Behaviour {
        &self.behaviour
    }

    /// `http://<ip>:<port><path>`, or `https://localhost:<port><path>` over TLS.
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            url("https", "localhost", self.addr.port(), path)
        } else {
            url("http", &self.addr.ip().to_string(), self.addr.port(), path)
        }
    }

    /// TCP connections accepted so far.
    pub fn connection_count(&self) -> u64 {
        self.task.connection_count()
    }

    /// Stops the server now (the port closes at the runtime's next poll of the task).
    pub fn shutdown(mut self) {
        self.task.stop();
    }

    /// Stops the server and waits until its port and connections are closed.
    pub async fn shutdown_and_wait(mut self) {
        self.task.stop_and_wait().await;
    }
}

async fn serve(
    stream: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    behaviour: &Behaviour,
) -> std::io::Result<()> {
    if *behaviour == Behaviour::Reset {
        // Linger 0 makes the eventual close an RST instead of a FIN.
        stream.set_zero_linger()?;
    }
    match acceptor {
        None => misbehave(stream, behaviour).await,
        Some(acceptor) => {
            let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "tls handshake")
                })??;
            misbehave(tls, behaviour).await
        }
    }
}

async fn misbehave<S>(mut stream: S, behaviour: &Behaviour) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if *behaviour == Behaviour::Silent {
        discard_until_eof(&mut stream).await;
        return Ok(());
    }
    read_request_head(&mut stream).await?;
    match behaviour {
        Behaviour::Silent => {}
        Behaviour::Garbage => {
            let mut garbage: [u8; 1024] = crate::random_bytes();
            // Never start like "HTTP/" or a TLS record, whatever the RNG says.
            garbage[0] = 0x00;
            garbage[1] = 0xff;
            stream.write_all(&garbage).await?;
            close_gracefully(stream).await;
        }
        Behaviour::HugeHeaders { size_bytes } => {
            stream.write_all(b"HTTP/1.1 200 OK\r\n").await?;
            write_filler_headers(&mut stream, *size_bytes).await?;
            stream
                .write_all(b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
            close_gracefully(stream).await;
        }
        Behaviour::EndlessBody { bytes_per_sec } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {ENDLESS_CONTENT_LENGTH}\r\n\r\n"
            );
            endless(stream, head, *bytes_per_sec).await?;
        }
        Behaviour::EndlessStream { bytes_per_sec } => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
            endless(stream, head.to_owned(), *bytes_per_sec).await?;
        }
        Behaviour::Drip { interval } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {DRIP_CONTENT_LENGTH}\r\n\r\n"
            );
            let interval = *interval;
            until_client_leaves(stream, move |writer| async move {
                let mut writer = writer;
                writer.write_all(head.as_bytes()).await?;
                writer.flush().await?;
                for _ in 0..DRIP_CONTENT_LENGTH {
                    tokio::time::sleep(interval).await;
                    writer.write_all(b".").await?;
                    writer.flush().await?;
                }
                writer.shutdown().await
            })
            .await?;
        }
        Behaviour::Reset => drop(stream),
        Behaviour::Close => close_gracefully(stream).await,
    }
    Ok(())
}

/// Writes `head`, then zeros at `rate` bytes per second until the client leaves.
async fn endless<S>(stream: S, head: String, rate: u64) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    until_client_leaves(stream, move |writer| async move {
        let mut writer = writer;
        writer.write_all(head.as_bytes()).await?;
        writer.flush().await?;
        stream_zeros(&mut writer, rate).await
    })
    .await
}

/// Reads until the end of an HTTP request head, EOF, 64 KiB or 5 s, whichever first.
async fn read_request_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<()> {
    let mut head = vec![0u8; REQUEST_HEAD_LIMIT];
    let mut filled = 0;
    let read = async {
        while filled < head.len() {
            let n = stream.read(&mut head[filled..]).await?;
            if n == 0 {
                break;
            }
            let search_from = filled.saturating_sub(3);
            filled += n;
            if head[search_from..filled]
                .windows(4)
                .any(|w| w == b"\r\n\r\n")
            {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(REQUEST_READ_TIMEOUT, read).await {
        Ok(result) => result,
        // A client that sends nothing still gets the misbehaviour.
        Err(_) => Ok(()),
    }
}

async fn discard_until_eof<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Sends FIN, then drains briefly so unread client bytes don't turn the close into RST.
async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    if stream.shutdown().await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), discard_until_eof(&mut stream)).await;
    }
}

/// Runs `write` on the write half while watching the read half: when the client closes
/// (EOF or error) the writer is dropped mid-flight.
async fn until_client_leaves<S, F, Fut>(stream: S, write: F) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(tokio::io::WriteHalf<S>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    let (mut reader, writer) = tokio::io::split(stream);
    tokio::select! {
        result = write(writer) => result,
        () = discard_until_eof(&mut reader) => Ok(()),
    }
}

async fn write_filler_headers<S: AsyncWrite + Unpin>(
    stream: &mut S,
    size_bytes: usize,
) -> std::io::Result<()> {
    const VALUE: &[u8] = &[b'a'; 100];
    let mut chunk = Vec::with_capacity(WRITE_CHUNK + 256);
    let mut written = 0usize;
    let mut n = 0u64;
    while written < size_bytes {
        let prefix = format!("X-Filler-{n}: ");
        let room = size_bytes - written;
        // Each line is prefix + value + CRLF; the last one is shortened to fit.
        let value_len = VALUE
            .len()
            .min(room.saturating_sub(prefix.len() + 2))
            .max(1);
        chunk.extend_from_slice(prefix.as_bytes());
        chunk.extend_from_slice(&VALUE[..value_len]);
        chunk.extend_from_slice(b"\r\n");
        written += prefix.len() + value_len + 2;
        n += 1;
        if chunk.len() >= WRITE_CHUNK {
            stream.write_all(&chunk).await?;
            chunk.clear();
        }
    }
    stream.write_all(&chunk).await?;
    stream.flush().await
}

async fn stream_zeros<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes_per_sec: u64,
) -> std::io::Result<()> {
    const TICK: Duration = Duration::from_millis(100);
    if bytes_per_sec == 0 {
        std::future::pending::<()>().await;
    }
    let zeros = [0u8; WRITE_CHUNK];
    let rate = bytes_per_sec as f64;
    // Token bucket: earn `rate` bytes per second, hold at most one second's worth, so
    // back-pressure from a slow reader never turns into a burst larger than that.
    let mut allowance = 0.0f64;
    let mut last = Instant::now();
    let mut written: u64 = 0;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while written < ENDLESS_CONTENT_LENGTH {
        ticker.tick().await;
        let now = Instant::now();
        allowance = (allowance + now.duration_since(last).as_secs_f64() * rate).min(rate.max(1.0));
        last = now;
        let mut todo = (allowance as u64).min(ENDLESS_CONTENT_LENGTH - written);
        allowance -= todo as f64;
        while todo > 0 {
            let n = todo.min(zeros.len() as u64) as usize;
            writer.write_all(&zeros[..n]).await?;
            todo -= n as u64;
            written += n as u64;
        }
        writer.flush().await?;
    }
    writer.shutdown().await
}
