//! A loopback HTTP/1.1 + HTTP/2 server with optional TLS.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use outpost_testkit::{HttpServer, Reply};
//! let srv = HttpServer::builder()
//!     .route("/", Reply::text(200, "hello"))
//!     .route("/old", Reply::redirect(301, "/"))
//!     .handler("/echo", |req| Reply::text(200, req.body.clone()))
//!     .run()
//!     .await?;
//! assert_eq!(srv.url("/"), format!("http://{}/", srv.addr()));
//! # Ok(()) }
//! ```
//!
//! Without TLS the server speaks HTTP/1.1 and prior-knowledge HTTP/2 (h2c) on the same
//! port. With TLS, ALPN decides (`h2`, `http/1.1`); without ALPN both are detected.
//! Request bodies are read up to 1 MiB (larger: 413, handler not called). Every request
//! is recorded before its handler runs; the log keeps the most recent 10 000.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::pki::Identity;
use crate::server::{ServerTask, bind_loopback, url};

/// Largest request body read; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most recent requests kept by [`RunningServer::requests`].
pub const MAX_RECORDED_REQUESTS: usize = 10_000;
/// Time allowed for a TLS handshake before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A response to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Status code (100–999; anything else is sent as 500).
    pub status: u16,
    /// Headers in order; invalid names or values are skipped with a warning.
    pub headers: Vec<(String, String)>,
    /// Body; `Content-Length` is set from it.
    pub body: Bytes,
}

impl Reply {
    /// `status` with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![(
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            )],
            body: body.into(),
        }
    }

    /// `status` with a JSON body (`application/json`).
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: Bytes::from(value.to_string()),
        }
    }

    /// A redirect (`301`, `302`, `307`, `308`…) to `location`, with an empty body.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply {
            status,
            headers: vec![("location".to_owned(), location.to_owned())],
            body: Bytes::new(),
        }
    }

    /// `status` with no headers and an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (appended; repeated names are sent repeatedly).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query, e.g. `/search?q=1`.
    pub path: String,
    /// Headers in arrival order, names lowercase. For HTTP/2 a `host` header is added
    /// from `:authority` when the client sent none.
    pub headers: Vec<(String, String)>,
    /// The body (at most [`MAX_BODY_BYTES`]).
    pub body: Bytes,
    /// The client's address.
    pub peer: SocketAddr,
    /// The server address the connection came in on.
    pub local: SocketAddr,
    /// Whether the connection was TLS.
    pub tls: bool,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The SNI name the client sent (TLS only).
    pub sni: Option<String>,
}

impl RequestInfo {
    /// The first value of header `name` (case-insensitive), if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

type SyncHandler = Arc<dyn Fn(&RequestInfo) -> Reply + Send + Sync>;
type BoxReply = Pin<Box<dyn Future<Output = Reply> + Send>>;
type AsyncHandler = Arc<dyn Fn(RequestInfo) -> BoxReply + Send + Sync>;

#[derive(Clone)]
enum Route {
    Sync(SyncHandler),
    Async(AsyncHandler),
}

impl Route {
    async fn call(&self, info: RequestInfo) -> Reply {
        match self {
            Route::Sync(handler) => {
                // A panicking test handler should give the client a 500, not kill the
                // connection with a confusing reset.
                std::panic::catch_unwind(AssertUnwindSafe(|| handler(&info)))
                    .unwrap_or_else(|_| Reply::text(500, "testkit handler panicked"))
            }
            Route::Async(handler) => {
                let handler = Arc::clone(handler);
                // Run in its own task so a panic surfaces as a JoinError, not a reset;
                // the guard aborts it if the connection (or the server) goes away first,
                // so a handler that never finishes cannot outlive the server.
                let mut task = AbortOnDrop(tokio::spawn(async move { handler(info).await }));
                match (&mut task.0).await {
                    Ok(reply) => reply,
                    Err(_) => Reply::text(500, "testkit handler panicked"),
                }
            }
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Entry point: `HttpServer::builder()`.
#[derive(Debug)]
pub struct HttpServer;

impl HttpServer {
    /// A builder with no routes, a 404 fallback, plain HTTP, bound to `127.0.0.1:0`.
    pub fn builder() -> HttpServerBuilder {
        HttpServerBuilder {
            routes: HashMap::new(),
            fallback: Route::Sync(Arc::new(|_| Reply::text(404, "not found"))),
            tls: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

enum TlsSetup {
    Identity(Identity),
    Config(Arc<rustls::ServerConfig>),
}

/// Configures an [`HttpServer`]; finish with [`HttpServerBuilder::run`].
pub struct HttpServerBuilder {
    routes: HashMap<String, Route>,
    fallback: Route,
    tls: Option<TlsSetup>,
    bind: SocketAddr,
}

impl std::fmt::Debug for HttpServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut routes: Vec<_> = self.routes.keys().collect();
        routes.sort();
        f.debug_struct("HttpServerBuilder")
            .field("routes", &routes)
            .field("tls", &self.tls.is_some())
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

impl HttpServerBuilder {
    /// Answers `path` (exact match, query ignored, any method) with `reply`.
    pub fn route(mut self, path: &str, reply: Reply) -> Self {
        self.routes.insert(
            path.to_owned(),
            Route::Sync(Arc::new(move |_| reply.clone())),
        );
        self
    }

    /// Answers `path` (exact match, query ignored, any method) with `handler`.
    pub fn handler(
        mut self,
        path: &str,
        handler: impl Fn(&RequestInfo) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.routes
            .insert(path.to_owned(), Route::Sync(Arc::new(handler)));
        self
    }

    /// Answers `path` with an async handler: for slow replies
    /// (`tokio::time::sleep(..).await`) or replies that wait on the test.
    pub fn async_handler<F, Fut>(mut self, path: &str, handler: F) -> Self
    where
        F: Fn(RequestInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        self.routes.insert(
            path.to_owned(),
            Route::Async(Arc::new(move |info| Box::pin(handler(info)))),
        );
        self
    }

    /// Answers every path without a route (default: 404 `not found`).
    pub fn fallback(
        mut self,
        handler: impl Fn(&RequestInfo) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.fallback = Route::Sync(Arc::new(handler));
        self
    }

    /// Serves HTTPS with `identity` (TLS 1.2 + 1.3, ALPN `h2`, `http/1.1`).
    pub fn tls(mut self, identity: Identity) -> Self {
        self.tls = Some(TlsSetup::Identity(identity));
        self
    }

    /// Serves HTTPS with a custom rustls config (versions, ALPN, client auth…), e.g.
    /// from [`Identity::server_config_with`].
    pub fn tls_config(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(TlsSetup::Config(config));
        self
    }

    /// Binds `addr` instead of `127.0.0.1:0`. Must be loopback (`127.x.y.z`, `[::1]`).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Binds and starts serving. Fails on a non-loopback address, a busy port or an
    /// unusable TLS identity.
    pub async fn run(self) -> anyhow::Result<RunningServer> {
        let tls = match self.tls {
            None => None,
            Some(TlsSetup::Config(config)) => Some(config),
            Some(TlsSetup::Identity(identity)) => Some(
                identity
                    .try_server_config_with(
                        rustls::DEFAULT_VERSIONS,
                        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                    )
                    .context("building TLS config for test server")?,
            ),
        };
        let listener = bind_loopback(self.bind).await?;
        let addr = listener.local_addr().context("reading bound address")?;
        let (count_tx, _) = watch::channel(0u64);
        let state = Arc::new(State {
            requests: Mutex::new(VecDeque::new()),
            count: AtomicU64::new(0),
            count_tx,
        });
        let app = Arc::new(App {
            routes: self.routes,
            fallback: self.fallback,
            state: Arc::clone(&state),
        });
        let is_tls = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = ServerTask::spawn(listener, move |stream, peer| {
            serve_connection(stream, peer, acceptor.clone(), Arc::clone(&app))
        });
        tracing::debug!(%addr, tls = is_tls, "testkit http server listening");
        Ok(RunningServer {
            addr,
            tls: is_tls,
            state,
            task,
        })
    }
}

struct State {
    requests: Mutex<VecDeque<RequestInfo>>,
    count: AtomicU64,
    count_tx: watch::Sender<u64>,
}

struct App {
    routes: HashMap<String, Route>,
    fallback: Route,
    state: Arc<State>,
}

struct ConnInfo {
    peer: SocketAddr,
    local: SocketAddr,
    tls: bool,
    sni: Option<String>,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Arc<App>,
) {
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(err) => {
            tracing::debug!(error = %err, "testkit connection lost before serving");
            return;
        }
    };
    match acceptor {
        None => {
            let conn = Arc::new(ConnInfo {
                peer,
                local,
                tls: false,
                sni: None,
            });
            serve_http(TokioIo::new(stream), conn, app, None).await;
        }
        Some(acceptor) => {
            let tls =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "testkit tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "testkit tls handshake timed out");
                        return;
                    }
                };
            let (_, session) = tls.get_ref();
            let sni = session.server_name().map(str::to_owned);
            let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
            let conn = Arc::new(ConnInfo {
                peer,
                local,
                tls: true,
                sni,
            });
            serve_http(TokioIo::new(tls), conn, app, alpn).await;
        }
    }
}

async fn serve_http<I>(io: I, conn: Arc<ConnInfo>, app: Arc<App>, alpn: Option<Vec<u8>>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = match alpn.as_deref() {
        Some(b"h2") => builder.http2_only(),
        Some(b"http/1.1") => builder.http1_only(),
        _ => builder,
    };
    let service = service_fn(move |req| {
        let conn = Arc::clone(&conn);
        let app = Arc::clone(&app);
        async move { Ok::<_, Infallible>(handle(req, &conn, &app).await) }
    });
    if let Err(err) = builder.serve_connection(io, service).await {
        tracing::debug!(error = %err, "testkit http connection ended with error");
    }
}

async fn handle(req: Request<Incoming>, conn: &ConnInfo, app: &App) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if !parts.headers.contains_key(hyper::header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        headers.push(("host".to_owned(), authority.as_str().to_owned()));
    }
    let (body, too_large) = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => (Bytes::new(), true),
        Err(err) => {
            tracing::debug!(error = %err, "testkit request body unreadable");
            return to_response(Reply::text(400, "unreadable request body"));
        }
    };
    let info = RequestInfo {
        method: parts.method.as_str().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers,
        body,
        peer: conn.peer,
        local: conn.local,
        tls: conn.tls,
        version: format!("{:?}", parts.version),
        sni: conn.sni.clone(),
    };
    app.state.record(info.clone());
    if too_large {
        return to_response(Reply::text(413, "request body over 1 MiB"));
    }
    let route = app.routes.get(parts.uri.path()).unwrap_or(&app.fallback);
    to_response(route.call(info).await)
}

impl State {
    fn record(&self, info: RequestInfo) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            if requests.len() >= MAX_RECORDED_REQUESTS {
                requests.pop_front();
            }
            requests.push_back(info);
        }
        let count = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        self.count_tx.send_replace(count);
    }
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or_else(|_| {
        tracing::warn!(
            status = reply.status,
            "testkit reply has an invalid status; sending 500"
        );
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in &reply.headers {
        match (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(header = %name, "testkit reply header is invalid; skipped"),
        }
    }
    response
}

/// A running [`HttpServer`]. Dropping it (or [`RunningServer::shutdown`]) stops the
/// listener and closes every connection.
pub struct RunningServer {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    task: ServerTask,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("requests", &self.request_count())
            .finish()
    }
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `http://<bound ip>:<port><path>`, or for TLS `https://localhost:<port><path>`
    /// (IP addresses make poor certificate names; issue leaves for `localhost`).
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            url("https", "localhost", self.addr.port(), path)
        } else {
            url("http", &self.addr.ip().to_string(), self.addr.port(), path)
        }
    }

    /// The URL with another host name (for SNI / Host tests); the scheme follows TLS.
    pub fn url_with_host(&self, host: &str, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        url(scheme, host, self.addr.port(), path)
    }

    /// Recorded requests, oldest first (the most recent [`MAX_RECORDED_REQUESTS`]).
    pub fn requests(&self) -> Vec<RequestInfo> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Requests received so far, including ones dropped from the log.
    pub fn request_count(&self) -> u64 {
        self.state.count.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (including failed TLS handshakes).
    pub fn connection_count(&self) -> u64 {
        self.task.connection_count()
    }

    /// Waits until at least `n` requests have arrived or `timeout` passes; returns the
    /// count reached.
    pub async fn wait_for_requests(&self, n: u64, timeout: Duration) -> u64 {
        let mut rx = self.state.count_tx.subscribe();
        // On timeout, report whatever arrived.
        let _ = tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await;
        self.request_count()
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
