//! The copy of a body-less request that [`super::NodePool::send`] keeps
//! while the node answers, to send the request again if the node takes it
//! and closes without a response byte.
//!
//! The copy is one buffer: the target, then each header's name and value,
//! back to back. It lives as long as the node takes to answer, and with
//! hundreds of requests in flight its memory is out of the cache by then:
//! dropping one buffer touches a line or two, where a cloned `Request` (a
//! header map and a shared reference per value) read about eighteen cold
//! lines per request (`docs/benchmarks.md`, "Sixth session"). The request
//! is rebuilt only when it is sent again.

use std::io::Write;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri, Version};

use super::body::RequestBody;

/// A body-less request, kept to be sent again.
pub struct Resend {
    method: Method,
    version: Version,
    /// The target's length and bytes, then per header its name's and its
    /// value's lengths and bytes (lengths as `u32`, little-endian).
    bytes: Vec<u8>,
}

impl Resend {
    /// The copy of `req` (whose body is not kept: it must have none).
    pub fn of(req: &Request<RequestBody>) -> Resend {
        let headers = req.headers();
        let size = 64
            + headers
                .iter()
                .map(|(n, v)| 8 + n.as_str().len() + v.len())
                .sum::<usize>();
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(&[0; 4]);
        // Writing to a Vec cannot fail.
        let _ = write!(bytes, "{}", req.uri());
        let target = len(bytes.len() - 4);
        bytes[..4].copy_from_slice(&target);
        for (name, value) in headers {
            bytes.extend_from_slice(&len(name.as_str().len()));
            bytes.extend_from_slice(&len(value.len()));
            bytes.extend_from_slice(name.as_str().as_bytes());
            bytes.extend_from_slice(value.as_bytes());
        }
        Resend {
            method: req.method().clone(),
            version: req.version(),
            bytes,
        }
    }

    /// The request again, with no body; `None` only if the copy does not
    /// read back (it always does: its parts came from a valid request).
    pub fn request(self) -> Option<Request<RequestBody>> {
        let mut rest = &self.bytes[..];
        let target = take(&mut rest)?;
        let uri = Uri::try_from(target).ok()?;
        let mut headers = HeaderMap::new();
        while !rest.is_empty() {
            let (n, v) = (read_len(&mut rest)?, read_len(&mut rest)?);
            let name = rest.get(..n)?;
            let value = rest.get(n..n + v)?;
            headers.append(
                HeaderName::from_bytes(name).ok()?,
                HeaderValue::from_bytes(value).ok()?,
            );
            rest = &rest[n + v..];
        }
        let mut req = Request::new(RequestBody::empty());
        *req.method_mut() = self.method;
        *req.uri_mut() = uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = headers;
        Some(req)
    }
}

/// A length as stored. Header sizes are bounded by `max_header_bytes`,
/// far below `u32::MAX`.
fn len(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}

fn read_len(rest: &mut &[u8]) -> Option<usize> {
    let (n, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    usize::try_from(u32::from_le_bytes(*n)).ok()
}

/// A length-prefixed run of bytes.
fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = read_len(rest)?;
    let (run, tail) = (rest.get(..n)?, rest.get(n..)?);
    *rest = tail;
    Some(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::empty());
        *req.method_mut() = Method::HEAD;
        *req.uri_mut() = Uri::from_static("/cas/login?service=https%3A%2F%2Fapp%2F&renew=true");
        *req.version_mut() = Version::HTTP_11;
        let h = req.headers_mut();
        h.insert("host", HeaderValue::from_static("cas.example.edu"));
        h.append("cookie", HeaderValue::from_static("TGC=TGT-1-abc-cas1"));
        h.append("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        // A second value of a name, and bytes past ASCII (obs-text).
        h.append("cookie", HeaderValue::from_static("lang=en"));
        h.append("x-name", HeaderValue::from_bytes(b"Andr\xe9").unwrap());
        h.append("x-empty", HeaderValue::from_static(""));
        req
    }

    fn head(req: &Request<RequestBody>) -> (Method, Uri, Version, Vec<(String, Vec<u8>)>) {
        let headers = req.headers().iter();
        let headers = headers.map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()));
        (
            req.method().clone(),
            req.uri().clone(),
            req.version(),
            headers.collect(),
        )
    }

    #[test]
    fn a_copy_reads_back_as_the_request_it_was() {
        let req = sample();
        let again = Resend::of(&req).request().unwrap();
        assert_eq!(head(&again), head(&req));
        assert!(hyper::body::Body::is_end_stream(again.body()));
    }

    #[test]
    fn an_absolute_target_and_no_headers_read_back() {
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() =
            Uri::from_static("http://cas1.internal:8080/cas/p3/serviceValidate?ticket=ST-1");
        *req.method_mut() = Method::from_bytes(b"PROPFIND").unwrap();
        let again = Resend::of(&req).request().unwrap();
        assert_eq!(head(&again), head(&req));
    }

    #[test]
    fn a_cut_copy_does_not_read_back() {
        let mut copy = Resend::of(&sample());
        copy.bytes.truncate(copy.bytes.len() - 3);
        assert!(copy.request().is_none());
    }
}
