//! Minimal real clients: one request over a fresh loopback connection, for
//! tests of the kit's servers and of the controller's HTTP API and pages.
//!
//! Every function opens its own connection (no pool, `TCP_NODELAY` set), so a
//! test sees exactly what one client would.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A response read to its end.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects with TLS to `addr`, sending `sni`, with `config`'s trust and ALPN.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    connector.connect(name, tcp).await
}

/// One request over an already-connected stream, HTTP/1.1 or HTTP/2, with
/// `content-type: application/json`; the body is read to its end.
pub async fn request<S>(
    io: S,
    h2: bool,
    method: &str,
    host: &str,
    path: &str,
    body: Bytes,
) -> anyhow::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    request_with(
        io,
        h2,
        method,
        host,
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// [`request`] with the given headers (and no default content type):
/// `Authorization`, `Cookie`, a form's content type.
pub async fn request_with<S>(
    io: S,
    h2: bool,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let uri = if h2 {
        format!("https://{host}{path}")
    } else {
        path.to_owned()
    };
    let mut req = http::Request::builder().method(method).uri(uri);
    if !h2 {
        req = req.header("host", host);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body))?;
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Plain HTTP/1.1 request to `addr`.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<Response> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    request(
        tcp,
        false,
        method,
        &addr.to_string(),
        path,
        Bytes::copy_from_slice(body),
    )
    .await
}

/// Plain HTTP/1.1 request to `addr` with `headers`.
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Response> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    request_with(
        tcp,
        false,
        method,
        &addr.to_string(),
        path,
        headers,
        Bytes::copy_from_slice(body),
    )
    .await
}

/// Plain HTTP/1.1 GET of `path` at `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    http(addr, "GET", path, b"").await
}

/// Sends a raw HTTP/1.1 GET and returns the stream for hostile-peer tests.
pub async fn raw_get(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    Ok(tcp)
}

/// Reads until `n` bytes or EOF.
pub async fn read_at_least<S: AsyncRead + Unpin>(
    stream: &mut S,
    n: usize,
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while out.len() < n {
        let got = stream.read(&mut buf).await?;
        if got == 0 {
            break;
        }
        out.extend_from_slice(&buf[..got]);
    }
    Ok(out)
}
