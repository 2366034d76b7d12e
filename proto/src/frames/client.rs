//! Calling `ReadChunk` on a channel and reading the answer with
//! [`ResponseReader`].

use std::future::poll_fn;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, TE};
use tonic::Status;
use tonic::body::Body;
use tower_service::Service;

use super::{GRPC_CONTENT_TYPE, READ_CHUNK_PATH, ResponseReader, encode_request};
use crate::v1::ReadChunkRequest;

/// Calls `ReadChunk` on `channel` (a tonic channel, with interceptors if
/// any: they see the request as a generated client's) and returns its
/// messages, none larger than `max` bytes. Headers are those of tonic's
/// generated client; a refusal is the status the server answered.
pub async fn read_chunk<S, B>(
    channel: &mut S,
    req: &ReadChunkRequest,
    max: usize,
) -> Result<ResponseReader, Status>
where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: Into<tonic::codegen::StdError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    let mut request = http::Request::new(Body::new(OneShot(Some(encode_request(req)))));
    *request.method_mut() = http::Method::POST;
    *request.version_mut() = http::Version::HTTP_2;
    *request.uri_mut() = http::Uri::from_static(READ_CHUNK_PATH);
    let headers = request.headers_mut();
    headers.insert(TE, HeaderValue::from_static("trailers"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(GRPC_CONTENT_TYPE));
    poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let response = channel
        .call(request)
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    ResponseReader::new(response.map(Body::new), max)
}

/// A body of one `Bytes`.
struct OneShot(Option<Bytes>);

impl http_body::Body for OneShot {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let len = self.0.as_ref().map_or(0, Bytes::len) as u64;
        http_body::SizeHint::with_exact(len)
    }
}
