//! [`TcpProxy`]: a loopback TCP proxy in front of one upstream address that
//! a test can cut in the ways a network does.
//!
//! ```no_run
//! # async fn demo(upstream: std::net::SocketAddr) -> anyhow::Result<()> {
//! use outpost_testkit::TcpProxy;
//! let proxy = TcpProxy::start(upstream).await?;   // clients dial proxy.addr()
//! proxy.blackhole();  // open connections stay open, bytes vanish both ways
//! proxy.heal();       // blackholed connections are closed, new ones pass
//! proxy.reset();      // every connection is reset (RST), new ones too
//! # Ok(()) }
//! ```
//!
//! | mode | open connections | new connections |
//! | --- | --- | --- |
//! | pass (start, [`TcpProxy::heal`]) | bytes copied both ways | connected to the upstream |
//! | [`TcpProxy::blackhole`] | kept open; everything read from either side is dropped, nothing is written: each peer sees a half-open connection (its HTTP/2 pings go unanswered) | accepted, then read and dropped the same way |
//! | [`TcpProxy::reset`] | closed with RST | accepted and closed with RST |
//!
//! Leaving a blackhole closes the connections it swallowed (their byte
//! streams lost data, so they cannot carry on); peers reconnect.
//!
//! [`TcpProxy::stop`] is the server going away: the listener and every
//! forwarded connection close at once and new connections are refused;
//! [`TcpProxy::start_on`] the same port brings the link back for the same
//! clients (a database a process reconnects to, for instance).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward.
    Pass,
    /// Swallow everything, keep connections open.
    Blackhole,
    /// Reset every connection.
    Reset,
}

/// A running proxy; dropped, it stops accepting and closes every connection.
pub struct TcpProxy {
    addr: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    accepted: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        TcpProxy::start_on(0, upstream).await
    }

    /// Listens on `127.0.0.1:port` (0: any free port) and forwards to
    /// `upstream`: with the port of a stopped proxy, the link it cut comes
    /// back for the same clients.
    pub async fn start_on(port: u16, upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(ProxyMode::Pass);
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                conns.spawn(connection(client, upstream, rx.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(TcpProxy {
            addr,
            mode,
            accepted,
            task: Some(task),
        })
    }

    /// The address clients dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients dial.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes the listener and every forwarded connection; new connections
    /// are refused from then on (the port is free for [`TcpProxy::start_on`]).
    pub async fn stop(mut self) {
        // The accept task owns the listener and the connections' JoinSet:
        // once it is gone, both are closed.
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    /// Swallow all traffic, keeping connections open (a silent cut).
    pub fn blackhole(&self) {
        self.mode.send_replace(ProxyMode::Blackhole);
    }

    /// Reset every connection, now and on arrival.
    pub fn reset(&self) {
        self.mode.send_replace(ProxyMode::Reset);
    }

    /// Forward again (connections swallowed by a blackhole are closed).
    pub fn heal(&self) {
        self.mode.send_replace(ProxyMode::Pass);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Closes `s` with RST (linger 0).
fn rst(s: TcpStream) {
    let _ = s.set_zero_linger();
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<ProxyMode>) {
    let current = *mode.borrow_and_update();
    match current {
        ProxyMode::Reset => return rst(client),
        ProxyMode::Blackhole => return swallow(client, None, mode).await,
        ProxyMode::Pass => {}
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return rst(client);
    };
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = cr.read(&mut up) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if sw.write_all(&up[..n]).await.is_err() { return },
            },
            n = sr.read(&mut down) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if cw.write_all(&down[..n]).await.is_err() { return },
            },
            changed = mode.changed() => {
                if changed.is_err() { return }
                let now = *mode.borrow_and_update();
                let (Ok(client), Ok(server)) = (cr.reunite(cw), sr.reunite(sw)) else { return };
                match now {
                    ProxyMode::Pass => {
                        (cr, cw) = client.into_split();
                        (sr, sw) = server.into_split();
                    }
                    ProxyMode::Reset => {
                        rst(client);
                        rst(server);
                        return;
                    }
                    ProxyMode::Blackhole => return swallow(client, Some(server), mode).await,
                }
            }
        }
    }
}

/// Reads and drops everything from both sides until the mode changes, then
/// closes both (reset: with RST).
async fn swallow(
    mut client: TcpStream,
    mut server: Option<TcpStream>,
    mut mode: watch::Receiver<ProxyMode>,
) {
    let mut a = [0u8; 16 * 1024];
    let mut b = [0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = client.read(&mut a) => if matches!(n, Ok(0) | Err(_)) { return },
            n = async {
                match server.as_mut() {
                    Some(s) => s.read(&mut b).await,
                    None => std::future::pending().await,
                }
            } => if matches!(n, Ok(0) | Err(_)) { server = None },
            changed = mode.changed() => {
                if changed.is_err() { return }
                if *mode.borrow_and_update() == ProxyMode::Blackhole {
                    continue;
                }
                rst(client);
                if let Some(s) = server { rst(s) }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(within, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn passes_swallows_heals_and_resets() {
        let proxy = TcpProxy::start(echo().await).await.unwrap();
        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            roundtrip(&mut a, Duration::from_secs(5)).await.unwrap(),
            b"ping"
        );

        proxy.blackhole();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Still open, but nothing comes back.
        assert_eq!(roundtrip(&mut a, Duration::from_millis(300)).await, None);

        proxy.heal();
        // The swallowed connection is closed; a new one passes.
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(5), a.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            roundtrip(&mut b, Duration::from_secs(5)).await.unwrap(),
            b"ping"
        );

        proxy.reset();
        let closed = tokio::time::timeout(Duration::from_secs(5), b.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
        assert_eq!(proxy.accepted(), 2);
    }
}
