//! Connection hygiene of both listeners (HTTP and gRPC): our own accept
//! loop, a connection cap, TLS-handshake, first-request and idle timeouts,
//! and HTTP/2 limits, so that idle or slow sockets cannot hold the ports.
//!
//! Design note.
//! - **Accept loop** ([`accept_loop`]). Never blocks on a connection: it
//!   accepts, sets `TCP_NODELAY`, asks the [`Tracker`] for admission and
//!   spawns the connection's task (TLS handshake, then serving). On
//!   `EMFILE`/`ENFILE`/`ENOMEM` it sheds the oldest idle connection (to free
//!   a descriptor), logs at most once per [`LOG_EVERY`] with a count, and
//!   backs off (10 ms doubling to 1 s) instead of spinning.
//! - **Cap and shedding.** Each listener admits at most its
//!   `server.limits.*_max_connections` live connections. At the cap, a new
//!   connection sheds the oldest *idle* one — no request in flight: first
//!   those that never sent a request (a TLS handshake or a request head
//!   dripping in), then the longest idle — and takes its place; only when
//!   every connection has a request in flight is the new one closed at once
//!   (counted in `outpost_connections_rejected_total{listener}`, logged at
//!   most once per [`LOG_EVERY`]). So slow or idle attackers can hold no
//!   more than the cap and cannot keep a probe or a browser out, while a
//!   probe's stream (always a request in flight) and a page being served
//!   are never shed.
//! - **Timeouts.** TLS handshake: `tls_handshake_timeout`. Request head:
//!   `header_read_timeout` (hyper's HTTP/1 timer, armed for every request
//!   head, including between keep-alive requests), and the same bound for the
//!   first request of any connection (HTTP/2 and gRPC included). A connection
//!   with no request in flight for `idle_timeout` is closed. The [`Tracker`]'s
//!   reaper checks once a second; a closed connection's socket errors on its
//!   next read or write (its task is woken), so closing never waits for the
//!   peer.
//! - **In flight.** HTTP: counted by the server's per-connection service
//!   until the response body ends. gRPC: by [`TrackLayer`], which finds the
//!   connection by its peer address (tonic's connect info), until the
//!   response stream ends.
//! - **Metrics.** `outpost_connections_open{listener}`,
//!   `outpost_connections_rejected_total{listener}`,
//!   `outpost_connections_closed_total{listener,reason}` (reason: `shed`,
//!   `handshake_timeout`, `first_request_timeout`, `idle_timeout`,
//!   `fd_shortage`), `outpost_accept_errors_total{listener}`,
//!   `outpost_tls_handshake_failures_total{listener}` (e.g. a probe
//!   certificate from another CA).
//! - **State.** Memory only; a restart starts with no connection.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_util::task::AtomicWaker;
use outpost_probe::config::{Dur, Problems};
use serde::Deserialize;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::Controller;

/// Default cap of the HTTP listener.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 256;
/// Default cap of the gRPC listener.
pub const DEFAULT_GRPC_MAX_CONNECTIONS: usize = 256;
/// Default TLS handshake timeout.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default request-head timeout (and first request of a connection).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 streams one HTTP connection may open at once.
pub const HTTP2_MAX_STREAMS: u32 = 32;
/// HTTP/2 streams one gRPC connection may open at once (a probe needs one).
pub const GRPC_MAX_STREAMS: u32 = 16;
/// Largest request head (HTTP/1 buffer, HTTP/2 header list).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// A warning about the cap or accept errors is logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// Descriptors kept free for the store, sinks and outbound checks when the
/// caps are fitted to `RLIMIT_NOFILE`.
pub const RESERVED_DESCRIPTORS: usize = 64;

/// `[server.limits]` as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Most connections open at once on `http_listen`. Default 256.
    #[serde(default)]
    pub http_max_connections: Option<u32>,
    /// Most connections open at once on `grpc_listen`. Default 256.
    #[serde(default)]
    pub grpc_max_connections: Option<u32>,
    /// A TLS handshake must finish within this. Default `"10s"`.
    #[serde(default)]
    pub tls_handshake_timeout: Option<Dur>,
    /// A request head must arrive within this (each HTTP/1 request; the
    /// first request of every connection). Default `"10s"`.
    #[serde(default)]
    pub header_read_timeout: Option<Dur>,
    /// A connection without a request in flight for this long is closed.
    /// Default `"60s"`.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
}

/// Validated `[server.limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// HTTP cap.
    pub http_max_connections: usize,
    /// gRPC cap.
    pub grpc_max_connections: usize,
    /// TLS handshake timeout.
    pub tls_handshake_timeout: Duration,
    /// Request-head timeout.
    pub header_read_timeout: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http_max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            grpc_max_connections: DEFAULT_GRPC_MAX_CONNECTIONS,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Validates `[server.limits]`.
pub fn validate_limits(raw: Option<&RawLimits>, p: &mut Problems) -> Limits {
    let d = Limits::default();
    let Some(raw) = raw else {
        return d;
    };
    let cap = |v: Option<u32>, default: usize, key: &str, p: &mut Problems| match v {
        None => default,
        Some(n) if (1..=65_536).contains(&n) => n as usize,
        Some(n) => {
            p.push(
                format!("server.limits.{key}"),
                format!("{key} must be between 1 and 65536, got {n}"),
            );
            default
        }
    };
    let time = |v: Option<Dur>, default: Duration, key: &str, p: &mut Problems| {
        let t = v.map(Dur::get).unwrap_or(default);
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&t) {
            p.push(
                format!("server.limits.{key}"),
                format!(
                    "{key} must be between \"100ms\" and \"1h\", got \"{}\"",
                    Dur(t)
                ),
            );
        }
        t
    };
    Limits {
        http_max_connections: cap(
            raw.http_max_connections,
            d.http_max_connections,
            "http_max_connections",
            p,
        ),
        grpc_max_connections: cap(
            raw.grpc_max_connections,
            d.grpc_max_connections,
            "grpc_max_connections",
            p,
        ),
        tls_handshake_timeout: time(
            raw.tls_handshake_timeout,
            d.tls_handshake_timeout,
            "tls_handshake_timeout",
            p,
        ),
        header_read_timeout: time(
            raw.header_read_timeout,
            d.header_read_timeout,
            "header_read_timeout",
            p,
        ),
        idle_timeout: time(raw.idle_timeout, d.idle_timeout, "idle_timeout", p),
    }
}

/// The soft `RLIMIT_NOFILE` of this process (from `/proc/self/limits`), if known.
pub fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The caps actually used: the configured ones, lowered (with a warning
/// naming the keys) when together they would not fit in `RLIMIT_NOFILE`
/// minus [`RESERVED_DESCRIPTORS`] — better a smaller cap than `EMFILE`.
pub fn fitted_caps(limits: &Limits, nofile: Option<usize>) -> (usize, usize) {
    let (http, grpc) = (limits.http_max_connections, limits.grpc_max_connections);
    let Some(nofile) = nofile else {
        return (http, grpc);
    };
    let room = nofile.saturating_sub(RESERVED_DESCRIPTORS).max(2);
    if http + grpc <= room {
        return (http, grpc);
    }
    let h = (room * http / (http + grpc)).max(1);
    let g = room.saturating_sub(h).max(1);
    tracing::warn!(
        open_files_limit = nofile,
        http_max_connections = h,
        grpc_max_connections = g,
        "server.limits.http_max_connections + grpc_max_connections exceed the open-files limit; using lower caps (raise LimitNOFILE / ulimit -n to use the configured ones)"
    );
    (h, g)
}

/// Which listener, as the metrics' `listener` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Dashboard, API, metrics.
    Http,
    /// Probe streams.
    Grpc,
}

impl Listener {
    /// `http` or `grpc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Http => "http",
            Listener::Grpc => "grpc",
        }
    }
}

/// One admitted connection.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    peer: SocketAddr,
    opened: Instant,
    closed: AtomicBool,
    waker: AtomicWaker,
    ready: AtomicBool,
    ever: AtomicBool,
    in_flight: AtomicU32,
    /// Milliseconds since the tracker's epoch when it last went idle (or
    /// became ready).
    idle_since_ms: AtomicU64,
}

impl Conn {
    /// The peer.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// True once closed by the controller (shed, timed out).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// A request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub struct Active {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Drop for Active {
    fn drop(&mut self) {
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn
                .idle_since_ms
                .store(ms_since(self.epoch), Ordering::Release);
        }
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    by_peer: HashMap<SocketAddr, u64>,
}

#[derive(Debug)]
struct LogGate {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogGate {
    /// True when a line may be logged now; `suppressed` counts the others.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The connections of one listener.
#[derive(Debug)]
pub struct Tracker {
    ctl: Controller,
    listener: Listener,
    max: usize,
    first_request_timeout: Duration,
    idle_timeout: Duration,
    epoch: Instant,
    live: AtomicUsize,
    state: Mutex<State>,
    cap_log: Mutex<LogGate>,
    error_log: Mutex<LogGate>,
}

impl Tracker {
    /// A tracker admitting `max` connections.
    pub fn new(ctl: Controller, listener: Listener, max: usize, limits: &Limits) -> Arc<Tracker> {
        Arc::new(Tracker {
            ctl,
            listener,
            max: max.max(1),
            first_request_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            epoch: Instant::now(),
            live: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            cap_log: Mutex::new(LogGate {
                last: None,
                suppressed: 0,
            }),
            error_log: Mutex::new(LogGate {
                last: None,
                suppressed: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn label(&self) -> [(&'static str, &'static str); 1] {
        [("listener", self.listener.as_str())]
    }

    fn publish_open(&self) {
        self.ctl.metrics().set(
            "outpost_connections_open",
            &self.label(),
            self.live.load(Ordering::Acquire) as f64,
        );
    }

    /// Live (admitted, not closed) connections.
    pub fn open(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Closes `conn` (idempotent), counting `reason`.
    pub fn close(&self, conn: &Conn, reason: &'static str) {
        if !conn.closed.swap(true, Ordering::AcqRel) {
            self.live.fetch_sub(1, Ordering::AcqRel);
            self.ctl.metrics().inc(
                "outpost_connections_closed_total",
                &[("listener", self.listener.as_str()), ("reason", reason)],
                1,
            );
            tracing::debug!(listener = self.listener.as_str(), peer = %conn.peer, reason, "connection closed by the controller");
            conn.waker.wake();
            self.publish_open();
        }
    }

    /// The idle connection to shed first: one that never sent a request,
    /// oldest first; else the one idle longest.
    fn victim(st: &State) -> Option<Arc<Conn>> {
        st.conns
            .values()
            .filter(|c| !c.is_closed() && c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| {
                let ever = c.ever.load(Ordering::Acquire);
                let since = if ever {
                    c.idle_since_ms.load(Ordering::Acquire)
                } else {
                    0
                };
                (ever, since, c.opened)
            })
            .cloned()
    }

    /// Admits a connection from `peer`, shedding an idle one at the cap;
    /// `None`: refuse it (close at once).
    pub fn admit(&self, peer: SocketAddr) -> Option<Arc<Conn>> {
        let mut st = self.lock();
        if self.live.load(Ordering::Acquire) >= self.max {
            let victim = (st.conns.len() < 2 * self.max)
                .then(|| Self::victim(&st))
                .flatten();
            let now = Instant::now();
            match victim {
                Some(v) => {
                    self.close(&v, "shed");
                    if let Some(suppressed) = self
                        .cap_log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .allow(now)
                    {
                        tracing::warn!(
                            listener = self.listener.as_str(),
                            limit = self.max,
                            more_since_last = suppressed,
                            "connection limit reached; shedding the oldest idle connections"
                        );
                    }
                }
                None => {
                    self.ctl
                        .metrics()
                        .inc("outpost_connections_rejected_total", &self.label(), 1);
                    if let Some(suppressed) = self
                        .cap_log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .allow(now)
                    {
                        tracing::warn!(
                            listener = self.listener.as_str(),
                            limit = self.max,
                            more_since_last = suppressed,
                            "connection limit reached and every connection is busy; refusing new connections"
                        );
                    }
                    return None;
                }
            }
        }
        st.next_id += 1;
        let conn = Arc::new(Conn {
            id: st.next_id,
            peer,
            opened: Instant::now(),
            closed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            ready: AtomicBool::new(false),
            ever: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(ms_since(self.epoch)),
        });
        st.conns.insert(conn.id, conn.clone());
        st.by_peer.insert(peer, conn.id);
        self.live.fetch_add(1, Ordering::AcqRel);
        drop(st);
        self.publish_open();
        Some(conn)
    }

    fn remove(&self, conn: &Conn) {
        let mut st = self.lock();
        st.conns.remove(&conn.id);
        if st.by_peer.get(&conn.peer) == Some(&conn.id) {
            st.by_peer.remove(&conn.peer);
        }
        drop(st);
        if !conn.closed.swap(true, Ordering::AcqRel) {
            self.live.fetch_sub(1, Ordering::AcqRel);
            self.publish_open();
        }
    }

    /// The TLS handshake (if any) is done: the first-request clock starts.
    pub fn ready(&self, conn: &Conn) {
        conn.idle_since_ms
            .store(ms_since(self.epoch), Ordering::Release);
        conn.ready.store(true, Ordering::Release);
    }

    /// A request starts on `conn`.
    pub fn begin(&self, conn: &Arc<Conn>) -> Active {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.ever.store(true, Ordering::Release);
        Active {
            conn: conn.clone(),
            epoch: self.epoch,
        }
    }

    /// A request starts on the connection from `peer`, if it is tracked.
    pub fn begin_for_peer(&self, peer: SocketAddr) -> Option<Active> {
        let conn = {
            let st = self.lock();
            st.by_peer
                .get(&peer)
                .and_then(|id| st.conns.get(id))
                .cloned()
        }?;
        Some(self.begin(&conn))
    }

    /// Closes the oldest idle connection (descriptor shortage).
    pub fn shed_one(&self, reason: &'static str) -> bool {
        let victim = Self::victim(&self.lock());
        match victim {
            Some(v) => {
                self.close(&v, reason);
                true
            }
            None => false,
        }
    }

    /// One pass of the reaper: closes ready connections past their
    /// first-request or idle deadline.
    pub fn reap(&self) {
        let now = ms_since(self.epoch);
        let first = u64::try_from(self.first_request_timeout.as_millis()).unwrap_or(u64::MAX);
        let idle = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let due: Vec<(Arc<Conn>, &'static str)> = self
            .lock()
            .conns
            .values()
            .filter(|c| {
                !c.is_closed()
                    && c.ready.load(Ordering::Acquire)
                    && c.in_flight.load(Ordering::Acquire) == 0
            })
            .filter_map(|c| {
                let since = now.saturating_sub(c.idle_since_ms.load(Ordering::Acquire));
                if !c.ever.load(Ordering::Acquire) {
                    (since >= first).then(|| (c.clone(), "first_request_timeout"))
                } else {
                    (since >= idle).then(|| (c.clone(), "idle_timeout"))
                }
            })
            .collect();
        for (c, reason) in due {
            self.close(&c, reason);
        }
    }

    /// Runs [`Tracker::reap`] every second until `stop`.
    pub async fn run_reaper(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.reap(),
                _ = crate::stopped(&mut stop) => return,
            }
        }
    }

    fn accept_error(&self, e: &io::Error, shortage: bool) {
        self.ctl
            .metrics()
            .inc("outpost_accept_errors_total", &self.label(), 1);
        let allowed = self
            .error_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(Instant::now());
        if let Some(suppressed) = allowed {
            if shortage {
                tracing::warn!(
                    listener = self.listener.as_str(),
                    error = %e,
                    more_since_last = suppressed,
                    "cannot accept: out of file descriptors; shedding idle connections and backing off"
                );
            } else {
                tracing::debug!(listener = self.listener.as_str(), error = %e, "accept failed");
            }
        }
    }
}

/// True for accept errors that mean "no descriptor or memory right now".
fn is_shortage(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOMEM, ENOBUFS (Linux numbering for the last).
    matches!(e.raw_os_error(), Some(24 | 23 | 12 | 105)) || e.kind() == io::ErrorKind::OutOfMemory
}

/// A socket admitted by a [`Tracker`]: reads and writes fail once the
/// tracker closes it, and dropping it removes it from the tracker.
#[derive(Debug)]
pub struct Tracked<T> {
    inner: T,
    conn: Arc<Conn>,
    tracker: Arc<Tracker>,
}

impl<T> Tracked<T> {
    /// The connection's handle.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// The tracker.
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    fn aborted() -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection closed by the controller",
        )
    }
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        self.tracker.remove(&self.conn);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.conn.waker.register(cx.waker());
        if self.conn.is_closed() {
            return Poll::Ready(Err(Self::aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.conn.waker.register(cx.waker());
        if self.conn.is_closed() {
            return Poll::Ready(Err(Self::aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.is_closed() {
            return Poll::Ready(Err(Self::aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.conn.waker.register(cx.waker());
        if self.conn.is_closed() {
            return Poll::Ready(Err(Self::aborted()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Tracked<T> {
    type ConnectInfo = T::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts on `listener` until `stop`, admitting through `tracker` and
/// spawning `serve(socket)` for each admitted connection.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    tracker: Arc<Tracker>,
    mut stop: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(Tracked<TcpStream>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = crate::stopped(&mut stop) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::ZERO;
                let _ = tcp.set_nodelay(true);
                match tracker.admit(peer) {
                    Some(conn) => {
                        tokio::spawn(serve(Tracked {
                            inner: tcp,
                            conn,
                            tracker: tracker.clone(),
                        }));
                    }
                    // Refused at the cap: dropping the socket closes it.
                    None => drop(tcp),
                }
            }
            Err(e) if is_shortage(&e) => {
                tracker.accept_error(&e, true);
                tracker.shed_one("fd_shortage");
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = crate::stopped(&mut stop) => return,
                }
            }
            Err(e) => tracker.accept_error(&e, false),
        }
    }
}

/// Runs `handshake` within the TLS handshake timeout; on timeout or error
/// the connection is dropped (and counted).
pub async fn handshake<IO, F>(
    tracker: &Tracker,
    conn: &Arc<Conn>,
    timeout: Duration,
    f: F,
) -> Option<IO>
where
    F: Future<Output = io::Result<IO>>,
{
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(io)) => {
            tracker.ready(conn);
            Some(io)
        }
        Ok(Err(e)) => {
            // E.g. a client certificate from another CA than server.probe_ca.
            tracker.ctl.metrics().inc(
                "outpost_tls_handshake_failures_total",
                &[("listener", tracker.listener.as_str())],
                1,
            );
            tracing::debug!(listener = tracker.listener.as_str(), peer = %conn.peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracker.close(conn, "handshake_timeout");
            None
        }
    }
}

/// A response body that keeps its request counted in flight until it ends.
#[derive(Debug)]
pub struct GuardedBody<B> {
    inner: B,
    active: Option<Active>,
}

impl<B> GuardedBody<B> {
    /// Wraps `inner`; `active` ends with the body.
    pub fn new(inner: B, active: Option<Active>) -> Self {
        GuardedBody { inner, active }
    }
}

impl<B> hyper::body::Body for GuardedBody<B>
where
    B: hyper::body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.active = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The gRPC server's layer that counts requests in flight per connection
/// (found by peer address), for shedding and the idle timeout.
#[derive(Debug, Clone)]
pub struct TrackLayer {
    tracker: Arc<Tracker>,
}

impl TrackLayer {
    /// A layer for `tracker`'s connections.
    pub fn new(tracker: Arc<Tracker>) -> Self {
        TrackLayer { tracker }
    }
}

impl<S> tower_layer::Layer<S> for TrackLayer {
    type Service = TrackService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TrackService {
            inner,
            tracker: self.tracker.clone(),
        }
    }
}

/// See [`TrackLayer`].
#[derive(Debug, Clone)]
pub struct TrackService<S> {
    inner: S,
    tracker: Arc<Tracker>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for TrackService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let ext = req.extensions();
        let peer = ext
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .or_else(|| {
                ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|i| i.get_ref().remote_addr())
            });
        let active = peer.and_then(|p| self.tracker.begin_for_peer(p));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|b| tonic::body::Body::new(GuardedBody::new(b, active))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_descriptor_limit() {
        let l = Limits::default();
        assert_eq!(fitted_caps(&l, None), (256, 256));
        assert_eq!(fitted_caps(&l, Some(65_536)), (256, 256));
        assert_eq!(fitted_caps(&l, Some(256)), (96, 96));
        let (h, g) = fitted_caps(&l, Some(10));
        assert!(h >= 1 && g >= 1);
    }

    #[test]
    fn log_gate_lets_one_line_through_per_period_and_counts_the_rest() {
        let mut g = LogGate {
            last: None,
            suppressed: 0,
        };
        let t0 = Instant::now();
        assert_eq!(g.allow(t0), Some(0));
        assert_eq!(g.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(g.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(g.allow(t0 + LOG_EVERY + Duration::from_secs(1)), Some(2));
    }
}
