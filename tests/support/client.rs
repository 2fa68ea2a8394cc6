//! A minimal real HTTP client for tests: one HTTP/1.1 request per
//! connection, plain or TLS (trusting the given roots), over hyper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `name=value` of the first `Set-Cookie` for `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

/// Sends one request on a new plain connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    exchange(
        TokioIo::new(stream),
        "localhost",
        method,
        target,
        headers,
        body,
    )
    .await
}

/// A TLS connection to `addr`, verified for `server_name`.
pub async fn connect_tls(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
        .unwrap()
}

/// A TCP connection to `addr` from the loopback address `source`
/// (127.0.0.2 and up are other clients on Linux).
pub async fn tcp_from(source: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// TLS over an established stream (after a PROXY header, say).
pub async fn tls_over(
    tls: &Arc<rustls::ClientConfig>,
    stream: TcpStream,
    server_name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
}

/// Writes `bytes` on a new TLS connection and reads until the server
/// closes it (or 10 s pass): everything it answered, and whether it closed.
pub async fn raw_tls_all(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    bytes: &[u8],
) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_tls(tls, addr, "localhost").await;
    // The server may answer and close before it has read everything.
    let _ = s.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

/// Writes `bytes` on a new TLS connection; returns the first response
/// (head and a Content-Length body), whether or not the server closes.
pub async fn raw_tls(tls: &Arc<rustls::ClientConfig>, addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_tls(tls, addr, "localhost").await;
    let _ = s.write_all(bytes).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        while !whole_response(&answer) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether `a` holds a whole HTTP/1.1 response: its head and as many body
/// bytes as its `Content-Length` says (none without one).
pub fn whole_response(a: &[u8]) -> bool {
    let text = String::from_utf8_lossy(a);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    a.len() >= end + 4 + length
}

/// Sends one request on a new TLS connection to `server_name`.
pub async fn send_tls(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let tls_stream = connect_tls(tls, addr, server_name).await;
    exchange(
        TokioIo::new(tls_stream),
        server_name,
        method,
        target,
        headers,
        body,
    )
    .await
}

/// One keep-alive HTTP/1.1 connection over TLS, for many requests.
pub struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl KeepAlive {
    pub async fn open(
        tls: &Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        server_name: &str,
    ) -> Self {
        let stream = connect_tls(tls, addr, server_name).await;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        KeepAlive {
            sender,
            host: server_name.to_owned(),
        }
    }

    pub async fn get(&mut self, target: &str) -> Reply {
        let req = Request::get(target)
            .header("host", &self.host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.sender.ready().await.unwrap();
        read_reply(self.sender.send_request(req).await.unwrap()).await
    }
}

/// One request over an established connection (`io` from [`tls_over`]).
pub async fn exchange<S>(
    io: TokioIo<S>,
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(target);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req = req.header("host", host);
    }
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    read_reply(resp).await
}

/// Reads a response whole.
async fn read_reply(resp: http::Response<hyper::body::Incoming>) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The ticket in a redirect's `Location` (`...?ticket=ST-...`).
pub fn ticket_in(location: &str) -> String {
    location
        .split("ticket=")
        .nth(1)
        .unwrap_or("")
        .split('&')
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A client configuration trusting `cert_pem` (AWS-LC, HTTP/1.1).
pub fn tls_trusting(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    tls_trusting_with(
        cert_pem,
        rustls::crypto::aws_lc_rs::default_provider(),
        false,
    )
}

/// The same with `provider` (its signature algorithms and cipher suites
/// are what the client offers); with `tls12`, TLS 1.2 only.
pub fn tls_trusting_with(
    cert_pem: &str,
    provider: rustls::crypto::CryptoProvider,
    tls12: bool,
) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider));
    let builder = if tls12 {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    };
    let config = builder
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The same trusting `cert_pem`, offering only HTTP/2 by ALPN.
pub fn tls_trusting_h2(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut config = (*tls_trusting(cert_pem)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// One request over HTTP/2 (TLS, ALPN h2); `target` is a path, sent with
/// `:authority` = `server_name` and no `host` header, as browsers do.
pub async fn send_h2(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let tls_stream = connect_tls(tls, addr, server_name).await;
    assert_eq!(tls_stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls_stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().uri(format!("https://{server_name}{target}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    read_reply(resp).await
}

/// Sends `upload` generated bytes and counts the response body's bytes
/// without keeping them: (status, bytes received, first line of the body).
pub async fn stream_tls(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    method: &str,
    target: &str,
    upload: u64,
) -> (u16, u64, String) {
    let tls_stream = connect_tls(tls, addr, "localhost").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls_stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "localhost")
        .body(casfront::demo::node::Generated::new(upload))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let (mut n, mut first) = (0u64, Vec::new());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            if first.len() < 64 {
                first.extend_from_slice(&data[..data.len().min(64)]);
            }
            n += data.len() as u64;
        }
    }
    let first = String::from_utf8_lossy(&first)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    (status, n, first)
}

/// This process's resident memory in bytes (`VmRSS`).
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}
