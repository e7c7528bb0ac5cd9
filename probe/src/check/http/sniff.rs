//! The first bytes a peer sent, kept to tell "not HTTP at all" from "broken
//! HTTP". hyper reports a peer that answers with an SMTP banner, TLS records
//! or random bytes as a parse error or a cancelled request ("operation was
//! canceled: …"); what the peer actually sent says it plainly.
//!
//! [`Sniff`] wraps a stream and copies the first [`KEEP`] bytes read into a
//! shared buffer (one short lock per read until it is full, nothing after);
//! [`Sniffed::not_http`] judges them.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes kept from the start of the response.
pub const KEEP: usize = 48;

/// The first bytes read, shared between the connection task and the caller.
#[derive(Debug, Clone, Default)]
pub struct Sniffed(Arc<Mutex<Vec<u8>>>);

impl Sniffed {
    /// What was read so far (at most [`KEEP`] bytes).
    pub fn bytes(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A description of what the peer sent when it is not the start of an
    /// HTTP/1 response (`HTTP/`); `None` when it is, or nothing was read.
    pub fn not_http(&self) -> Option<String> {
        describe_non_http(&self.bytes())
    }
}

/// `None` for an empty read or the start of an HTTP/1 status line; else what
/// the bytes are, for a message: a quoted first line of text, a TLS record,
/// or binary bytes in hex.
pub fn describe_non_http(b: &[u8]) -> Option<String> {
    const STATUS_LINE: &[u8] = b"HTTP/";
    let n = b.len().min(STATUS_LINE.len());
    if b.is_empty() || b[..n] == STATUS_LINE[..n] {
        return None;
    }
    if b.len() >= 3 && b[0] == 0x16 && b[1] == 0x03 {
        return Some("a TLS handshake record (the port speaks TLS: use an https:// URL)".into());
    }
    if b.len() >= 2 && b[0] == 0x15 && b[1] == 0x03 {
        return Some("a TLS alert (the port speaks TLS: use an https:// URL)".into());
    }
    let line = b.split(|c| *c == b'\n').next().unwrap_or(b);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let printable =
        !line.is_empty() && line.iter().all(|c| (0x20..0x7f).contains(c) || *c == b'\t');
    if printable {
        let text = String::from_utf8_lossy(line);
        let cut = if b.len() >= KEEP && !b.contains(&b'\n') {
            "…"
        } else {
            ""
        };
        return Some(format!("{:?}{cut}", text.trim_end()));
    }
    let hex: Vec<String> = b.iter().take(8).map(|c| format!("{c:02x}")).collect();
    Some(format!("binary data starting {}", hex.join(" ")))
}

/// A stream that records its first [`KEEP`] bytes read into a [`Sniffed`].
#[derive(Debug)]
pub struct Sniff<S> {
    inner: S,
    seen: Sniffed,
    full: bool,
}

impl<S> Sniff<S> {
    /// Wraps `inner`; read bytes land in the returned [`Sniffed`] too.
    pub fn new(inner: S) -> (Self, Sniffed) {
        let seen = Sniffed::default();
        (
            Sniff {
                inner,
                seen: seen.clone(),
                full: false,
            },
            seen,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.full && buf.filled().len() > before {
            let mut seen = self.seen.0.lock().unwrap_or_else(PoisonError::into_inner);
            let room = KEEP - seen.len();
            let new = &buf.filled()[before..];
            seen.extend_from_slice(&new[..new.len().min(room)]);
            let full = seen.len() >= KEEP;
            drop(seen);
            self.full = full;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_nothing_are_not_judged() {
        assert_eq!(describe_non_http(b""), None);
        assert_eq!(describe_non_http(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(describe_non_http(b"HTT"), None);
    }

    #[test]
    fn banners_tls_and_binary_are_named() {
        assert_eq!(
            describe_non_http(b"220 mail.test ESMTP ready\r\n").as_deref(),
            Some("\"220 mail.test ESMTP ready\"")
        );
        assert_eq!(
            describe_non_http(b"SSH-2.0-OpenSSH_9.2\r\n").as_deref(),
            Some("\"SSH-2.0-OpenSSH_9.2\"")
        );
        assert!(
            describe_non_http(&[0x16, 0x03, 0x03, 0x00, 0x5a])
                .unwrap()
                .contains("TLS")
        );
        assert_eq!(
            describe_non_http(&[0x00, 0xff, 0x3a]).as_deref(),
            Some("binary data starting 00 ff 3a")
        );
    }
}
