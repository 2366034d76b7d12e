//! `ReadChunk` served without tonic's encoder: every other method goes to
//! the generated server, this one is answered here so that each frame's
//! bytes reach HTTP/2 as the `Bytes` read from disk instead of being copied
//! into an encode buffer ([`keel_proto::frames`]).
//!
//! The request is taken as tonic's generated server takes it (one
//! uncompressed message, the same size limit, metadata and extensions kept,
//! so the token check's role and the peer address reach the handler), the
//! same [`ChunkServer::read_chunk`] runs, and a refusal is the same
//! trailers-only answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use keel_proto::frames::{READ_CHUNK_PATH, ResponseBody};
use keel_proto::v1::ReadChunkRequest;
use keel_proto::v1::chunk_server_server::ChunkServer;
use tonic::body::Body;
use tonic::codec::{Codec, Streaming};
use tonic::server::NamedService;
use tonic::{Request, Status};
use tower_service::Service;

use crate::service::ChunkService;
use keel_proto::serving::Answer;

/// The generated server `S`, with `ReadChunk` answered by [`ResponseBody`].
#[derive(Clone)]
pub struct ReadRoute<S> {
    /// Every other method.
    inner: S,
    /// The handler `ReadChunk` calls, shared with `inner`.
    service: Arc<ChunkService>,
}

impl<S> ReadRoute<S> {
    /// Wraps `inner`, the generated server of `service`.
    pub fn new(inner: S, service: Arc<ChunkService>) -> Self {
        ReadRoute { inner, service }
    }
}

impl<S: NamedService> NamedService for ReadRoute<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for ReadRoute<S>
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
        if req.uri().path() != READ_CHUNK_PATH {
            return Box::pin(self.inner.call(req));
        }
        let service = Arc::clone(&self.service);
        Box::pin(async move { Ok(read_chunk(&service, req).await) })
    }
}

/// Answers one `ReadChunk`.
async fn read_chunk(service: &ChunkService, req: http::Request<Body>) -> http::Response<Body> {
    let request = match request(req).await {
        Ok(r) => r,
        Err(status) => return status.into_http(),
    };
    match service.read_chunk(request).await {
        Ok(response) => {
            let (metadata, stream, _) = response.into_parts();
            let mut http = http::Response::new(Body::new(ResponseBody::new(stream)));
            *http.headers_mut() = metadata.into_headers();
            http.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            http
        }
        Err(status) => status.into_http(),
    }
}

/// The request message, as tonic's generated server decodes a unary one.
async fn request(req: http::Request<Body>) -> Result<Request<ReadChunkRequest>, Status> {
    if let Some(encoding) = req.headers().get("grpc-encoding")
        && encoding.as_bytes() != b"identity"
    {
        return Err(Status::unimplemented(format!(
            "Content is compressed with `{}` which isn't supported",
            String::from_utf8_lossy(encoding.as_bytes())
        )));
    }
    let (mut parts, body) = req.into_parts();
    let mut codec = keel_proto::codec::FrameCodec::<
        keel_proto::v1::ReadChunkResponse,
        ReadChunkRequest,
    >::default();
    let mut stream = Streaming::new_request(
        codec.decoder(),
        body,
        None,
        Some(keel_proto::MAX_MESSAGE_BYTES),
    );
    let message = stream
        .message()
        .await?
        .ok_or_else(|| Status::internal("Missing request message."))?;
    if let Some(trailers) = stream.trailers().await? {
        parts.headers.extend(trailers.into_headers());
    }
    Ok(Request::from_http(http::Request::from_parts(
        parts, message,
    )))
}
