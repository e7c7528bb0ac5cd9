//! The line-protocol TCP server against raw sockets.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use outpost_testkit::TcpServer;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

#[tokio::test]
async fn smtp_greets_answers_by_first_word_and_closes_on_quit() {
    let srv = TcpServer::smtp().run().await.unwrap();
    let tcp = TcpStream::connect(srv.addr()).await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("220 "), "{line}");
    w.write_all(b"NOOP\r\nehlo me\r\nQUIT\r\n").await.unwrap();
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.starts_with("502 "), "{rest}");
    assert!(rest.contains("250 HELP\r\n221 "), "{rest}");
    assert_eq!(srv.lines(), ["NOOP", "ehlo me", "QUIT"]);
}

#[tokio::test]
async fn garbage_streams_whatever_is_sent() {
    let srv = TcpServer::garbage(100_000).run().await.unwrap();
    let mut tcp = TcpStream::connect(srv.addr()).await.unwrap();
    let mut buf = vec![0u8; 20_000];
    let mut got = 0;
    while got < buf.len() {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf[got..]))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got += n;
    }
    assert_eq!(srv.connection_count(), 1);
}

#[tokio::test]
async fn silent_never_writes() {
    let srv = TcpServer::silent().run().await.unwrap();
    let mut tcp = TcpStream::connect(srv.addr()).await.unwrap();
    tcp.write_all(b"hello\r\n").await.unwrap();
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await;
    assert!(read.is_err(), "{read:?}");
}
