//! A demo node's endpoints that are not CAS, for streaming, upload,
//! header and shutdown tests and the benchmarks: `GET /stream?bytes=N`,
//! `POST /upload`, `GET /headers`.

use super::*;

/// A body of `n` zero bytes, made 64 KiB at a time as it is sent.
pub struct Generated(u64);

impl Generated {
    pub fn new(n: u64) -> Generated {
        Generated(n)
    }
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl hyper::body::Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.0.min(ZEROS.len() as u64);
        self.0 -= n;
        let chunk = Bytes::from_static(&ZEROS[..n as usize]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0 == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0)
    }
}

/// `GET /stream?bytes=N`: N bytes, generated.
pub(super) fn stream(n: u64) -> Resp {
    let mut resp = Response::new(http_body_util::Either::Right(Generated(n)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// `POST /upload`: counts the bytes received without keeping them.
pub(super) async fn upload(state: &State, req: Request<Incoming>) -> Resp {
    let mut body = req.into_body();
    let mut n: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => {
                note(&state.heard, format!("upload broken after {n}"));
                return text(StatusCode::BAD_REQUEST, "upload broken\n");
            }
        }
    }
    note(&state.heard, format!("upload {n} complete"));
    text(StatusCode::OK, &format!("{n}\n"))
}

/// `GET` or `POST /headers`: the request headers as the node received
/// them, then, after a line `-- trailers --`, the trailer fields that came
/// after a body.
pub(super) async fn echo_headers(req: Request<Incoming>) -> Resp {
    let mut out = format!("{:?} {}\n", req.version(), req.uri());
    let line = |out: &mut String, name: &http::HeaderName, value: &http::HeaderValue| {
        out.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    };
    for (name, value) in req.headers() {
        line(&mut out, name, value);
    }
    out.push_str("-- trailers --\n");
    let mut body = req.into_body();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(trailers) = frame.trailers_ref() {
            for (name, value) in trailers {
                line(&mut out, name, value);
            }
        }
    }
    text(StatusCode::OK, &out)
}
