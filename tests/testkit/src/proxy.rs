//! [`TcpProxy`]: a TCP forwarder on loopback that a test can cut. Placed
//! between a process and its database (or any server), [`TcpProxy::stop`]
//! closes the listener and every forwarded connection at once: to the
//! process on one side it looks like the server went away;
//! [`TcpProxy::start_on`] the same port brings it back.

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// A running proxy. Dropping it stops it.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<TcpProxy> {
        TcpProxy::start_on(0, target).await
    }

    /// Listens on `127.0.0.1:port` (0: any free port): with the port of a
    /// stopped proxy, the link it cut comes back for the same clients.
    pub async fn start_on(port: u16, target: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let addr = listener.local_addr()?;
        let (stop, rx) = watch::channel(false);
        let rx = Arc::new(rx);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            let mut stopped = (*rx).clone();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let mut stopped = (*rx).clone();
                        conns.spawn(async move {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                                return;
                            };
                            let _ = inbound.set_nodelay(true);
                            let _ = outbound.set_nodelay(true);
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = stopped.wait_for(|s| *s) => {}
                            }
                        });
                    }
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            // Dropping the set aborts every connection: both sockets close.
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        });
        Ok(TcpProxy {
            addr,
            stop,
            task: Some(task),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes the listener and every forwarded connection; new connections
    /// are refused from then on.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
