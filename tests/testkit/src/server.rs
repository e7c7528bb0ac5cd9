//! The accept loop shared by every server in the kit.
//!
//! Invariants: listeners only bind loopback addresses; accepted sockets get
//! `TCP_NODELAY` (without it loopback first-byte times grow by ~45 ms: Nagle + delayed
//! ACK); every connection task lives in a `JoinSet` owned by the accept task, so
//! aborting the accept task (the [`ServerTask`] guard does so on drop) closes the
//! listener and every open connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Binds `addr`, refusing anything that is not a loopback address.
pub(crate) async fn bind_loopback(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "test servers bind loopback only, got {addr}; use 127.0.0.1:0 or another 127.x address"
    );
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding test server to {addr}"))
}

/// Owns a running accept loop; dropping it stops the server.
#[derive(Debug)]
pub(crate) struct ServerTask {
    task: Option<JoinHandle<()>>,
    connections: Arc<AtomicU64>,
}

impl ServerTask {
    /// Spawns the accept loop. `serve` runs once per accepted connection.
    pub(crate) fn spawn<F, Fut>(listener: TcpListener, serve: F) -> ServerTask
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let connections = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            let mut open = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            counter.fetch_add(1, Ordering::Relaxed);
                            if let Err(err) = stream.set_nodelay(true) {
                                tracing::debug!(error = %err, "test server could not set TCP_NODELAY");
                            }
                            open.spawn(serve(stream, peer));
                        }
                        Err(err) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::debug!(error = %err, "test server accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = open.join_next(), if !open.is_empty() => {}
                }
            }
        });
        ServerTask {
            task: Some(task),
            connections,
        }
    }

    /// Connections accepted so far.
    pub(crate) fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Stops accepting and closes every connection (takes effect at the task's next
    /// poll; use [`ServerTask::stop_and_wait`] to be sure the port is closed).
    pub(crate) fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Stops and waits until the listener and all connections are closed.
    pub(crate) async fn stop_and_wait(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The only possible error is the cancellation we asked for.
            let _ = task.await;
        }
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `http://` or `https://` URL for `host`, bracketing IPv6 literals.
pub(crate) fn url(scheme: &str, host: &str, port: u16, path: &str) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!("{scheme}://{host}:{port}{slash}{path}")
}
