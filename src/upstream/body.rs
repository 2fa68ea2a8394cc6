//! Request bodies on their way to a node: streamed as received, or — when
//! routing needed a prefix of it (`POST /samlValidate`) — the buffered
//! frames replayed first, then the rest streamed. An enum, not a boxed
//! body, on the request path (no allocation per request).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A request body for the upstream connection.
pub enum RequestBody {
    Streamed(Incoming),
    Replayed(Replay),
}

/// A body whose first bytes (and trailers, if the body ended) were read.
pub struct Replay {
    prefix: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<Incoming>,
}

impl RequestBody {
    /// Whether the body goes on past the prefix that was read (the prefix
    /// stopped at its cap or its wait).
    pub fn cut(&self) -> bool {
        matches!(self, RequestBody::Replayed(Replay { rest: Some(_), .. }))
    }

    /// No body (requests casfront makes itself, such as health checks).
    pub fn empty() -> RequestBody {
        RequestBody::Replayed(Replay {
            prefix: None,
            trailers: None,
            rest: None,
        })
    }
}

/// Why a prefix could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    #[error("reading the request body: {0}")]
    Client(#[from] hyper::Error),
}

/// Reads up to `cap` bytes of `body` (frames are kept whole, so a little
/// more may be buffered), giving up waiting after `wait`: routing then uses
/// what arrived. Returns the bytes read and a body that replays them.
pub async fn read_prefix(
    mut body: Incoming,
    cap: usize,
    wait: Duration,
) -> Result<(Bytes, RequestBody), PrefixError> {
    let mut buf = BytesMut::new();
    let mut trailers = None;
    let mut ended = false;
    let deadline = tokio::time::Instant::now() + wait;
    while buf.len() < cap && !body.is_end_stream() {
        let frame = match tokio::time::timeout_at(
            deadline,
            http_body_util::BodyExt::frame(&mut body),
        )
        .await
        {
            Err(_) => break,
            Ok(None) => {
                ended = true;
                break;
            }
            Ok(Some(frame)) => frame?,
        };
        match frame.into_data() {
            Ok(data) => buf.extend_from_slice(&data),
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                ended = true;
                break;
            }
        }
    }
    let prefix = buf.freeze();
    let rest = (!ended && !body.is_end_stream()).then_some(body);
    let replay = Replay {
        prefix: (!prefix.is_empty()).then(|| prefix.clone()),
        trailers,
        rest,
    };
    Ok((prefix, RequestBody::Replayed(replay)))
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Streamed(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Replayed(r) => {
                if let Some(data) = r.prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(rest) = r.rest.as_mut() {
                    match Pin::new(rest).poll_frame(cx) {
                        Poll::Ready(None) => r.rest = None,
                        other => return other,
                    }
                }
                Poll::Ready(r.trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streamed(b) => b.is_end_stream(),
            RequestBody::Replayed(r) => {
                r.prefix.is_none()
                    && r.trailers.is_none()
                    && r.rest.as_ref().is_none_or(Body::is_end_stream)
            }
        }
    }

    /// The replayed bytes plus what remains of the rest: exact when the
    /// client sent a Content-Length.
    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streamed(b) => b.size_hint(),
            RequestBody::Replayed(r) => {
                let buffered = r.prefix.as_ref().map_or(0, |p| p.len() as u64);
                let rest = r
                    .rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + buffered);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}
