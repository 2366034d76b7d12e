//! The zoo's clients: token-carrying gRPC clients, the well-behaved
//! client's operations, and raw calls whose request body announces a giant
//! message and never completes it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Result, ensure};
use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{ChunkHeader, LocateChunkRequest, ReadChunkRequest, WriteChunkRequest};
use tonic::codegen::{Service, http};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::probe::{Good, Op};

/// Attaches `authorization: Bearer <token>` when a token is set.
#[derive(Clone)]
pub struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|_| Status::internal("bad token"))?;
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

/// A chunk server client with a token.
pub type Cs = ChunkServerClient<InterceptedService<Channel, Bearer>>;
/// A master client with a token.
pub type Master = MasterClient<InterceptedService<Channel, Bearer>>;

/// A new connection to `url`.
pub async fn channel(url: &str) -> Result<Channel> {
    Ok(Channel::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

/// A chunk server client on a connection of its own.
pub async fn cs(url: &str, token: Option<&str>) -> Result<Cs> {
    let bearer = Bearer(token.map(str::to_owned));
    Ok(
        ChunkServerClient::with_interceptor(channel(url).await?, bearer)
            .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES),
    )
}

/// A master client on a connection of its own.
pub async fn master(url: &str, token: Option<&str>) -> Result<Master> {
    let bearer = Bearer(token.map(str::to_owned));
    Ok(MasterClient::with_interceptor(channel(url).await?, bearer))
}

/// Writes `data` as chunk `id` straight to the chunk server at `url`.
pub async fn write(url: &str, token: Option<&str>, id: &str, data: &[u8]) -> Result<()> {
    let mut c = cs(url, token).await?;
    let mut msgs = vec![WriteChunkRequest {
        header: Some(ChunkHeader {
            chunk: id.to_owned(),
            size: data.len() as u64,
            crc32c: crc32c::crc32c(data),
            replication: 1,
        }),
        data: Bytes::new(),
        capability: None,
    }];
    msgs.extend(
        data.chunks(keel_proto::FRAME_BYTES)
            .map(|d| WriteChunkRequest {
                header: None,
                data: Bytes::copy_from_slice(d),
                capability: None,
            }),
    );
    c.write_chunk(tokio_stream::iter(msgs)).await?;
    Ok(())
}

/// Reads `id` whole from `c`; fails unless it comes whole.
pub async fn read_whole(c: &mut Cs, id: &str, size: usize) -> Result<()> {
    let mut s = c
        .read_chunk(ReadChunkRequest {
            chunk: id.to_owned(),
            migration: false,
        })
        .await?
        .into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        n += m?.data.len();
    }
    ensure!(n == size, "read {n} bytes of {id}, expected {size}");
    Ok(())
}

/// A well-behaved client reading `id` (of `size` bytes) on a connection of
/// its own.
pub fn reader(url: &str, token: Option<&str>, id: &str, size: usize) -> Result<Good> {
    let (url, token, id) = (url.to_owned(), token.map(str::to_owned), id.to_owned());
    Good::new(Box::new(move || {
        Box::pin(async move {
            let c = cs(&url, token.as_deref()).await?;
            let op: Op = Arc::new(move || {
                let (mut c, id) = (c.clone(), id.clone());
                Box::pin(async move { read_whole(&mut c, &id, size).await })
            });
            Ok(op)
        })
    }))
}

/// A well-behaved client looking `id` up at the master.
pub fn locator(url: &str, token: Option<&str>, id: &str) -> Result<Good> {
    let (url, token, id) = (url.to_owned(), token.map(str::to_owned), id.to_owned());
    Good::new(Box::new(move || {
        Box::pin(async move {
            let m = master(&url, token.as_deref()).await?;
            let op: Op = Arc::new(move || {
                let (mut m, id) = (m.clone(), id.clone());
                Box::pin(async move {
                    m.locate_chunk(LocateChunkRequest {
                        chunk: id,
                        rack: Default::default(),
                    })
                    .await?;
                    Ok(())
                })
            });
            Ok(op)
        })
    }))
}

/// A request body announcing one message of `announced` bytes and sending
/// all but its last byte, then nothing, forever.
struct Withheld {
    /// gRPC frame header, then payload, still to send.
    left: u64,
    /// Whether the frame header went out.
    started: bool,
    announced: u32,
    /// The payload bytes, shared by every piece.
    piece: Bytes,
}

/// Payload is sent in pieces of this size.
const PIECE: usize = 64 * 1024;

impl http_body::Body for Withheld {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if !self.started {
            self.started = true;
            let mut h = vec![0u8];
            h.extend_from_slice(&self.announced.to_be_bytes());
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(h)))));
        }
        if self.left == 0 {
            // The last byte never comes; nothing will wake this body.
            return Poll::Pending;
        }
        let n = self.left.min(PIECE as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.piece.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

/// Calls `path` over `channel` with a body announcing `announced` bytes and
/// withholding the last; returns the status the server answered with, or
/// `None` when it did not answer within `patience`. The call's body stays
/// open until the returned task is dropped or finishes.
pub async fn withheld(
    mut channel: Channel,
    path: &str,
    token: Option<&str>,
    announced: u32,
    patience: Duration,
) -> Result<Option<Status>> {
    let body = Withheld {
        left: u64::from(announced) - 1,
        started: false,
        announced,
        piece: Bytes::from(vec![0x55u8; PIECE]),
    };
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://zoo{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(tonic::body::Body::new(body))?;
    futures::future::poll_fn(|cx| {
        Service::<http::Request<tonic::body::Body>>::poll_ready(&mut channel, cx)
    })
    .await?;
    let answer = async {
        let resp = channel.call(req).await?;
        if let Some(s) = Status::from_header_map(resp.headers()) {
            return Ok::<_, anyhow::Error>(s);
        }
        // The status comes in trailers after any messages.
        let mut body = resp.into_body();
        while let Some(frame) =
            futures::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx))
                .await
        {
            if let Ok(t) = frame?.into_trailers() {
                return Ok(Status::from_header_map(&t).unwrap_or_else(|| Status::ok("")));
            }
        }
        Ok(Status::unknown("the answer ended without a status"))
    };
    match tokio::time::timeout(patience, answer).await {
        Ok(r) => Ok(Some(r?)),
        Err(_) => Ok(None),
    }
}

/// Whether `s` is an over-budget or access refusal, the answers a withheld
/// giant message may get.
pub fn refused(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::ResourceExhausted | Code::PermissionDenied | Code::Unauthenticated
    ) && !s.message().is_empty()
}
