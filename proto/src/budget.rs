//! Per-method budgets of the daemons' gRPC servers: the largest message each
//! method accepts and how long a call may take to answer.
//!
//! The size is checked on each message's 5-byte gRPC frame header, before any
//! of its payload is buffered: a client announcing a 4 MiB message to a
//! method whose limit is 64 KiB is refused with RESOURCE_EXHAUSTED at once,
//! instead of pinning 4 MiB while it withholds the last byte. The deadline
//! runs until the response starts (the whole call for unary methods; until
//! the first answer for streaming ones), so a caller that sends headers and
//! then nothing holds its stream for a bounded time.
//!
//! [`Budget`] wraps one service, like [`crate::auth::Guard`]: health and
//! reflection get the same small budget as the control calls.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::serving::Answer;
use bytes::Bytes;
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower_service::Service;

/// Message limit of every method not named otherwise: control calls,
/// health and reflection carry ids and small lists, far below this.
pub const SMALL_MESSAGE_BYTES: usize = 64 * 1024;

/// How long a call may take to answer unless its method says otherwise:
/// control calls answer in milliseconds; this only ends callers that send
/// their headers and then nothing.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// The budget of one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// Largest message it accepts, in bytes.
    pub message: usize,
    /// How long it may take to start answering; `None` for calls bounded
    /// otherwise (streams with an idle timeout, copies with their own
    /// deadline).
    pub deadline: Option<Duration>,
}

/// The budgets of one server's methods: a default and named exceptions.
#[derive(Debug, Clone)]
pub struct Budgets {
    /// What unnamed methods get.
    default: Method,
    /// Exceptions, by path (`/package.Service/Method`).
    methods: Arc<[(&'static str, Method)]>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            default: Method {
                message: SMALL_MESSAGE_BYTES,
                deadline: Some(CALL_DEADLINE),
            },
            methods: Arc::new([]),
        }
    }
}

impl Budgets {
    /// The same, with `path` given its own budget.
    pub fn with(mut self, path: &'static str, method: Method) -> Self {
        let mut methods = self.methods.to_vec();
        methods.push((path, method));
        self.methods = methods.into();
        self
    }

    /// The budget of the method at `path`.
    pub fn of(&self, path: &str) -> Method {
        self.methods
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(self.default, |(_, m)| *m)
    }

    /// Wraps `inner` in these budgets.
    pub fn wrap<S>(&self, inner: S) -> Budget<S> {
        Budget {
            inner,
            budgets: self.clone(),
        }
    }
}

/// A service whose calls are held to [`Budgets`].
#[derive(Debug, Clone)]
pub struct Budget<S> {
    /// The wrapped service.
    inner: S,
    /// Its methods' budgets.
    budgets: Budgets,
}

impl<S: NamedService> NamedService for Budget<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Budget<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Answer {
        let path: Arc<str> = req.uri().path().into();
        let budget = self.budgets.of(&path);
        let limited = Arc::clone(&path);
        let req = req.map(|body| Body::new(Limited::new(body, budget.message, limited)));
        let answer = self.inner.call(req);
        let Some(deadline) = budget.deadline else {
            return Box::pin(answer);
        };
        Box::pin(async move {
            match tokio::time::timeout(deadline, answer).await {
                Ok(r) => r,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "{path} did not complete within its {} s deadline (was the request sent whole?)",
                    deadline.as_secs_f64()
                ))
                .into_http()),
            }
        })
    }
}

/// A request body whose gRPC messages may not announce more than `limit`
/// bytes each.
struct Limited {
    /// The body as received.
    inner: Body,
    /// The method's message limit.
    limit: usize,
    /// The method, for the error.
    path: Arc<str>,
    /// The frame header being read, and how much of it has come.
    header: ([u8; 5], usize),
    /// Payload bytes of the current message still to come.
    remaining: u64,
    /// Set once a message was refused: nothing more is passed on.
    refused: bool,
}

impl Limited {
    fn new(inner: Body, limit: usize, path: Arc<str>) -> Self {
        Limited {
            inner,
            limit,
            path,
            header: ([0; 5], 0),
            remaining: 0,
            refused: false,
        }
    }

    /// Follows the framing through `data`; refuses a message over the limit
    /// as soon as its header is seen.
    fn check(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let (buf, filled) = &mut self.header;
            let n = data.len().min(5 - *filled);
            buf[*filled..*filled + n].copy_from_slice(&data[..n]);
            *filled += n;
            data = &data[n..];
            if *filled == 5 {
                *filled = 0;
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
                if len as usize > self.limit {
                    return Err(self.over(len));
                }
                self.remaining = u64::from(len);
            }
        }
        Ok(())
    }

    fn over(&self, len: u32) -> Status {
        Status::resource_exhausted(format!(
            "{}: a message of {len} bytes is over this method's limit of {} bytes",
            self.path, self.limit
        ))
    }
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.refused {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref()
            && let Err(status) = self.check(data)
        {
            self.refused = true;
            return Poll::Ready(Some(Err(status)));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.refused || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(len: u32) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&len.to_be_bytes());
        v
    }

    #[test]
    fn messages_over_the_limit_are_refused_at_their_header() {
        let mut l = Limited::new(Body::empty(), 10, "/x".into());
        let mut ok = framed(10);
        ok.extend_from_slice(&[7; 10]);
        assert!(l.check(&ok).is_ok());
        // A header split over two frames is still read.
        let big = framed(11);
        assert!(l.check(&big[..2]).is_ok());
        let e = l.check(&big[2..]).expect_err("over");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("limit of 10 bytes"), "{}", e.message());
    }

    #[test]
    fn exceptions_are_looked_up_by_path() {
        let big = Method {
            message: 1 << 20,
            deadline: None,
        };
        let b = Budgets::default().with("/a.B/C", big);
        assert_eq!(b.of("/a.B/C"), big);
        assert_eq!(b.of("/a.B/D").message, SMALL_MESSAGE_BYTES);
    }
}
