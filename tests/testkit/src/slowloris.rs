//! A bounded slowloris attacker for the listeners' connection-hygiene tests
//! and benchmark: it holds `n` sockets against an address, each sending the
//! start of something and then (almost) nothing, and reconnects a socket the
//! server closed after [`RECONNECT_AFTER`] — so it keeps up to `n` sockets
//! open for as long as it runs, as a patient attacker would.
//!
//! [`raise_open_files`] lifts this process's `RLIMIT_NOFILE` soft limit to
//! what a test with many loopback sockets needs (both ends live in one
//! process).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::watch,
    task::JoinHandle,
};

/// A closed socket is opened again after this.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// A dripping socket sends its next byte(s) this often.
pub const DRIP_EVERY: Duration = Duration::from_secs(2);

/// What each socket sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    /// An HTTP/1.1 request head that never ends: a header line every
    /// [`DRIP_EVERY`].
    HttpHeaders,
    /// A TLS record header announcing a ClientHello that never comes.
    TlsHandshake,
    /// The first bytes of the HTTP/2 connection preface (gRPC), then nothing.
    H2Preface,
}

impl Slow {
    fn first(self) -> &'static [u8] {
        match self {
            Slow::HttpHeaders => b"GET / HTTP/1.1\r\nHost: outpost\r\n",
            Slow::TlsHandshake => &[0x16, 0x03, 0x01, 0x02, 0x00],
            Slow::H2Preface => b"PRI * HTTP/2.0\r\n",
        }
    }

    fn drip(self) -> Option<&'static [u8]> {
        match self {
            Slow::HttpHeaders => Some(b"X-a: b\r\n"),
            Slow::TlsHandshake | Slow::H2Preface => None,
        }
    }
}

/// A running attacker; [`Attacker::stop`] closes every socket.
#[derive(Debug)]
pub struct Attacker {
    held: Arc<AtomicUsize>,
    connects: Arc<AtomicU64>,
    closed_by_server: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Attacker {
    /// Starts `n` sockets against `addr`, each sending `mode`.
    pub fn start(addr: SocketAddr, mode: Slow, n: usize) -> Attacker {
        let held = Arc::new(AtomicUsize::new(0));
        let connects = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicU64::new(0));
        let (stop, rx) = watch::channel(false);
        let tasks = (0..n)
            .map(|_| {
                tokio::spawn(socket(
                    addr,
                    mode,
                    held.clone(),
                    connects.clone(),
                    closed.clone(),
                    rx.clone(),
                ))
            })
            .collect();
        Attacker {
            held,
            connects,
            closed_by_server: closed,
            stop,
            tasks,
        }
    }

    /// Sockets connected right now (as far as the attacker knows: a socket
    /// the server closed counts until its next read sees the end).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Connections opened so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Acquire)
    }

    /// Sockets the server closed so far.
    pub fn closed_by_server(&self) -> u64 {
        self.closed_by_server.load(Ordering::Acquire)
    }

    /// Closes every socket and waits for the tasks.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn socket(
    addr: SocketAddr,
    mode: Slow,
    held: Arc<AtomicUsize>,
    connects: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        if let Ok(mut s) = TcpStream::connect(addr).await {
            let _ = s.set_nodelay(true);
            connects.fetch_add(1, Ordering::AcqRel);
            held.fetch_add(1, Ordering::AcqRel);
            let ended_by_server = hold(&mut s, mode, &mut stop).await;
            held.fetch_sub(1, Ordering::AcqRel);
            if !ended_by_server {
                return;
            }
            closed.fetch_add(1, Ordering::AcqRel);
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Holds the socket until the server closes it (true) or the attack stops (false).
async fn hold(s: &mut TcpStream, mode: Slow, stop: &mut watch::Receiver<bool>) -> bool {
    if s.write_all(mode.first()).await.is_err() {
        return true;
    }
    let mut drip = tokio::time::interval(DRIP_EVERY);
    drip.tick().await;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
            _ = drip.tick() => {
                if let Some(bytes) = mode.drip()
                    && s.write_all(bytes).await.is_err()
                {
                    return true;
                }
            }
            _ = stop.changed() => return false,
        }
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to at least `want` (within
/// the hard limit) and returns the soft limit now in force.
pub fn raise_open_files(want: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let current = lim.current.unwrap_or(u64::MAX);
    if current >= want {
        return current;
    }
    let target = lim.maximum.map_or(want, |max| want.min(max));
    lim.current = Some(target);
    match setrlimit(Resource::Nofile, lim) {
        Ok(()) => target,
        Err(_) => current,
    }
}
