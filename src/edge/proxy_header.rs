//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that an L4
//! balancer sends before the TLS bytes: [`parse`] is a pure parser over the
//! bytes seen so far (fuzzed, `fuzz/fuzz_targets/proxy_header.rs`), [`read`]
//! peeks at a socket until the header is whole, then consumes exactly it,
//! leaving the TLS handshake untouched. Only peers listed in
//! `listen.proxy_protocol` are read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (the spec's figure).
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The most bytes a header may take here: v2 addresses and a few TLVs
/// (the spec allows 64 KiB of TLVs; balancers send under 100 bytes).
pub const MAX_LEN: usize = 1024;

/// What the bytes so far make.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a header: wait for more.
    Incomplete,
    /// A whole header of `len` bytes. `source` is the client's address, or
    /// `None` when the header names none (v1 `UNKNOWN`, v2 `LOCAL`, unix or
    /// unspecified family): the peer's own address is then the client's.
    Done {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Why bytes are not a PROXY header.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid PROXY header: {0}")]
pub struct Invalid(pub &'static str);

/// Parses the start of a connection.
pub fn parse(buf: &[u8]) -> Result<Parsed, Invalid> {
    if is_prefix(buf, V2_SIGNATURE) {
        return if buf.len() < 16 {
            Ok(Parsed::Incomplete)
        } else {
            v2(buf)
        };
    }
    if is_prefix(buf, V1_PREFIX) {
        return if buf.len() < V1_PREFIX.len() {
            Ok(Parsed::Incomplete)
        } else {
            v1(buf)
        };
    }
    Err(Invalid("no PROXY signature"))
}

/// `buf` and `whole` agree on their common length.
fn is_prefix(buf: &[u8], whole: &[u8]) -> bool {
    let n = buf.len().min(whole.len());
    buf[..n] == whole[..n]
}

fn v1(buf: &[u8]) -> Result<Parsed, Invalid> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = memchr::memmem::find(window, b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(Invalid("v1 line longer than 107 bytes"));
        }
        if window.contains(&b'\n') {
            return Err(Invalid("v1 line ends in a bare LF"));
        }
        return Ok(Parsed::Incomplete);
    };
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..end])
        .map_err(|_| Invalid("v1 line is not ASCII"))?;
    let len = end + 2;
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or("");
    if family == "UNKNOWN" {
        return Ok(Parsed::Done { len, source: None });
    }
    let (src, _dst, sport, dport) = match (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        (Some(a), Some(b), Some(c), Some(d), None) => (a, b, c, d),
        _ => return Err(Invalid("v1 line needs 5 fields")),
    };
    let ip: IpAddr = match family {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| Invalid("v1 source is not an IPv4 address"))?,
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| Invalid("v1 source is not an IPv6 address"))?,
        _ => return Err(Invalid("v1 family is not TCP4, TCP6 or UNKNOWN")),
    };
    for port in [sport, dport] {
        // Decimal without sign or leading zeros, as the spec writes them.
        let canonical = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (port == "0" || !port.starts_with('0'));
        if !canonical || port.parse::<u16>().is_err() {
            return Err(Invalid("v1 port is not a number from 0 to 65535"));
        }
    }
    let port = sport.parse::<u16>().unwrap_or(0);
    Ok(Parsed::Done {
        len,
        source: Some(SocketAddr::new(ip, port)),
    })
}

fn v2(buf: &[u8]) -> Result<Parsed, Invalid> {
    let (ver_cmd, family) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(Invalid("v2 version is not 2"));
    }
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body_len;
    if len > MAX_LEN {
        return Err(Invalid("v2 header longer than 1024 bytes"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Invalid("v2 command is not LOCAL or PROXY")),
    };
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    // LOCAL (a balancer's own connection): the address block is ignored.
    if local {
        return Ok(Parsed::Done { len, source: None });
    }
    let body = &buf[16..len];
    let source = match family {
        // TCP over IPv4 and IPv6.
        0x11 => {
            let a: [u8; 12] = fixed(body)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        0x21 => {
            let a: [u8; 36] = fixed(body)?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        // Unspecified, or unix stream sockets: no client address.
        0x00 | 0x31 => None,
        _ => return Err(Invalid("v2 family is not TCP (or unspecified)")),
    };
    Ok(Parsed::Done { len, source })
}

/// The first `N` bytes of a v2 body (TLVs may follow).
fn fixed<const N: usize>(body: &[u8]) -> Result<[u8; N], Invalid> {
    body.get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or(Invalid("v2 addresses are cut short"))
}

/// Errors reading a header from a socket.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("connection closed before a whole PROXY header")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads a PROXY header off `stream` (the caller bounds the time): the
/// client's address it names, if any. Bytes after it are left unread.
pub async fn read(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ReadError> {
    let mut buf = [0u8; MAX_LEN];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        match parse(&buf[..n])? {
            Parsed::Done { len, source } => {
                stream.read_exact(&mut buf[..len]).await?;
                return Ok(source);
            }
            // A balancer sends its header in one segment: a partial one
            // is rare, and peeking again at once would spin.
            Parsed::Incomplete => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(len: usize, source: &str) -> Result<Parsed, Invalid> {
        Ok(Parsed::Done {
            len,
            source: Some(source.parse().unwrap()),
        })
    }

    #[test]
    fn v1_lines() {
        let line = b"PROXY TCP4 192.0.2.10 10.0.0.1 56324 443\r\n\x16\x03\x01";
        assert_eq!(parse(line), done(42, "192.0.2.10:56324"));
        let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 443\r\n";
        assert_eq!(parse(six), done(six.len(), "[2001:db8::7]:65535"));
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\nrest"),
            Ok(Parsed::Done {
                len: 31,
                source: None
            })
        );
        for prefix in [&b"PRO"[..], b"PROXY TCP4 192.0.2.10", b""] {
            assert_eq!(parse(prefix), Ok(Parsed::Incomplete), "{prefix:?}");
        }
    }

    #[test]
    fn v1_refusals() {
        let bad: [(&[u8], &str); 8] = [
            (b"GET / HTTP/1.1\r\n", "no PROXY signature"),
            (b"\x16\x03\x01\x02\x00", "no PROXY signature"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                "v1 line ends in a bare LF",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                "v1 line needs 5 fields",
            ),
            (
                b"PROXY TCP4 ::1 ::1 1 2\r\n",
                "v1 source is not an IPv4 address",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
                "v1 port is not a number from 0 to 65535",
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
                "v1 port is not a number from 0 to 65535",
            ),
            (
                b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ),
        ];
        for (bytes, why) in bad {
            assert_eq!(parse(bytes), Err(Invalid(why)), "{bytes:?}");
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(parse(&long), Err(Invalid("v1 line longer than 107 bytes")));
    }

    fn v2_header(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([ver_cmd, family]);
        h.extend((body.len() as u16).to_be_bytes());
        h.extend(body);
        h
    }

    #[test]
    fn v2_headers() {
        let mut ipv4 = vec![198, 51, 100, 7, 10, 0, 0, 1];
        ipv4.extend(40000u16.to_be_bytes());
        ipv4.extend(443u16.to_be_bytes());
        // A TLV after the addresses is skipped.
        ipv4.extend([0x04, 0x00, 0x01, 0xAA]);
        let h = v2_header(0x21, 0x11, &ipv4);
        assert_eq!(parse(&h), done(32, "198.51.100.7:40000"));
        assert_eq!(parse(&h[..20]), Ok(Parsed::Incomplete));
        assert_eq!(parse(&h[..5]), Ok(Parsed::Incomplete));
        let mut ipv6 = "2001:db8::9".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        ipv6.extend([0u8; 16]);
        ipv6.extend(8443u16.to_be_bytes());
        ipv6.extend(443u16.to_be_bytes());
        assert_eq!(
            parse(&v2_header(0x21, 0x21, &ipv6)),
            done(52, "[2001:db8::9]:8443")
        );
        // LOCAL (a balancer's own health check): no client address.
        assert_eq!(
            parse(&v2_header(0x20, 0x11, &ipv4)),
            Ok(Parsed::Done {
                len: 32,
                source: None
            })
        );
        // LOCAL with no address block at all.
        assert_eq!(
            parse(&v2_header(0x20, 0x00, &[])),
            Ok(Parsed::Done {
                len: 16,
                source: None
            })
        );
        assert_eq!(
            parse(&v2_header(0x20, 0x11, &[0; 4])),
            Ok(Parsed::Done {
                len: 20,
                source: None
            })
        );
        assert_eq!(
            parse(&v2_header(0x21, 0x00, &[])),
            Ok(Parsed::Done {
                len: 16,
                source: None
            })
        );
    }

    #[test]
    fn v2_refusals() {
        let cases: [(Vec<u8>, &str); 5] = [
            (v2_header(0x11, 0x11, &[0; 12]), "v2 version is not 2"),
            (
                v2_header(0x22, 0x11, &[0; 12]),
                "v2 command is not LOCAL or PROXY",
            ),
            (v2_header(0x21, 0x11, &[0; 4]), "v2 addresses are cut short"),
            (
                v2_header(0x21, 0x12, &[0; 12]),
                "v2 family is not TCP (or unspecified)",
            ),
            (
                v2_header(0x21, 0x11, &[0; 1100]),
                "v2 header longer than 1024 bytes",
            ),
        ];
        for (bytes, why) in cases {
            assert_eq!(parse(&bytes), Err(Invalid(why)));
        }
    }
}
