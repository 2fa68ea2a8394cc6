//! One client connection's facts, gathered by the listener before its
//! first request and read by every request on it.

use std::net::SocketAddr;

use http::HeaderValue;

use crate::client_cert::ClientCert;

/// What casfront knows of one client connection: its address (the PROXY
/// header's source, when a trusted peer sent one), the port it came to,
/// whether it is a trusted proxy, its certificate, and the forwarding
/// header values made once per connection rather than per request.
#[derive(Clone, Debug)]
pub struct ClientConn {
    pub peer: SocketAddr,
    /// The port the client connected to (for `X-Forwarded-Port`).
    pub local_port: u16,
    /// The peer is a trusted proxy (`listen.trusted_proxies`).
    pub trusted: bool,
    /// The TLS client certificate, when `[tls] client_auth` asks for one.
    pub cert: Option<ClientCert>,
    /// With `[tls] client_auth_names`: whether the handshake named one of
    /// them (its configuration asked for a certificate). A request on the
    /// connection must name one of them too, or none.
    pub cert_name: Option<bool>,
    pub(crate) forwarded_for: HeaderValue,
    pub(crate) forwarded_port: HeaderValue,
}

impl ClientConn {
    pub fn new(peer: SocketAddr, local_port: u16, trusted: bool) -> ClientConn {
        let info = ClientConn {
            peer,
            local_port,
            trusted,
            cert: None,
            cert_name: None,
            // An IP address is always a valid header value.
            forwarded_for: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_port: HeaderValue::from(local_port),
        };
        // The first clone of a value's bytes allocates their shared
        // header: pay it here, once per connection, not on a request.
        drop((info.forwarded_for.clone(), info.forwarded_port.clone()));
        info
    }
}
