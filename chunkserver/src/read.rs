//! Streaming a stored chunk: header first, then frames of
//! [`keel_proto::FRAME_BYTES`], the CRC32C verified along the way.
//!
//! The last frame is held back until the whole file's checksum is verified, so
//! a corrupt chunk ends in DATA_LOSS before a client has every byte, and a
//! client that checks the stream's status never takes bad bytes as good.
//! Migration reads draw each frame from the server's bandwidth bucket.
//!
//! Each read holds a slot ([`crate::reads`]) until it ends. A client that
//! takes no frame for `--stream-idle-timeout` gets DEADLINE_EXCEEDED when it
//! next asks; at the timeout its file, its batches and its queued frames are
//! released at once. What one read holds is bounded: two batches of
//! `BATCH_FRAMES` frames, `QUEUED_FRAMES` queued, and the frame HTTP/2 is
//! sending.

use std::fs::File;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_proto::chunk_id::ChunkId;
use keel_proto::v1::ReadChunkResponse;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::Status;
use tracing::{debug, error, info};

use crate::chunk_file::ChunkMeta;
use crate::corruption::MasterReporter;
use crate::error::Error;
use crate::latency::ClientLatency;
use crate::throttle::Throttle;

/// Frames queued between the reading task and the connection.
const QUEUED_FRAMES: usize = 2;

/// Frames read from disk per blocking call: one thread handoff per batch
/// rather than per frame, while the next batch is read as this one is sent.
const BATCH_FRAMES: usize = 2;

/// One message of a read's stream.
type Item = Result<ReadChunkResponse, Status>;

/// The queue between the reading task and the connection; the task empties
/// it when it gives up on an idle client, so its frames are freed at once.
type Queue = Arc<Mutex<Option<mpsc::Receiver<Item>>>>;

/// The response stream of `ReadChunk`.
pub struct ReadStream {
    /// Frames from the reading task; `None` once it gave up.
    queue: Queue,
    /// What to answer once the task gave up (said once).
    ended: Arc<Mutex<Option<Status>>>,
}

impl Stream for ReadStream {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        match queue.as_mut() {
            Some(rx) => rx.poll_recv(cx),
            None => Poll::Ready(
                self.ended
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .map(Err),
            ),
        }
    }
}

/// One chunk read, ready to stream.
pub struct ReadJob {
    /// The chunk.
    pub id: ChunkId,
    /// Open file, positioned at the first data byte. Kept open, so a delete
    /// during the read does not cut it short.
    pub file: File,
    /// The chunk's header.
    pub meta: ChunkMeta,
    /// Bucket to draw from (migration reads only).
    pub throttle: Option<Arc<Throttle>>,
    /// Where the bytes sent are counted.
    pub traffic: Arc<crate::traffic::Traffic>,
    /// Where corruption is reported.
    pub reporter: MasterReporter,
    /// Client reads only: where the time to the first data frame is
    /// recorded, from `started`.
    pub latency: Option<(Arc<ClientLatency>, Instant)>,
    /// Client reads only: counts the bytes sent into the chunk's and the
    /// server's read rates when the read ends.
    pub heat: Option<crate::heat::Reading>,
    /// The read's slot, held until the task ends.
    pub slot: crate::reads::ReadSlot,
    /// `--stream-idle-timeout`: how long the client may take no frame.
    pub idle: Duration,
    /// Recent verifications, forgotten for this chunk if its read fails.
    pub verified: Arc<crate::verify::Verifier>,
    /// Data bytes handed to the connection so far.
    pub sent: u64,
}

impl ReadJob {
    /// Starts streaming on a task of its own; the task stops when the
    /// receiver goes away.
    pub fn spawn(self) -> ReadStream {
        let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
        let stream = ReadStream {
            queue: Arc::new(Mutex::new(Some(rx))),
            ended: Arc::default(),
        };
        let (queue, ended) = (Arc::clone(&stream.queue), Arc::clone(&stream.ended));
        tokio::spawn(async move {
            if let Some(status) = self.run(&tx).await {
                // Frames queued for a client that takes none are freed now;
                // the client learns why when it next asks.
                *ended.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
                queue.lock().unwrap_or_else(PoisonError::into_inner).take();
            }
            // Only now: a sender dropped before the status is set would let
            // the stream end cleanly, a truncated read looking whole.
            drop(tx);
        });
        stream
    }

    /// Streams the chunk; returns the status to end with when the client
    /// went idle.
    async fn run(mut self, tx: &mpsc::Sender<Item>) -> Option<Status> {
        let header = ReadChunkResponse {
            header: Some(crate::convert::header(self.id.to_string(), &self.meta)),
            data: Bytes::new(),
        };
        if tx.send(Ok(header)).await.is_err() {
            return None;
        }
        match self.frames(tx).await {
            Ok(()) => None,
            Err(Stop::ReceiverGone) => {
                debug!(chunk = %self.id, "reader went away");
                None
            }
            Err(Stop::Idle) => {
                let e = Error::ReadIdle {
                    id: self.id.to_string(),
                    secs: self.idle.as_secs_f64(),
                    sent: self.sent,
                };
                info!(chunk = %self.id, sent = self.sent, "read abandoned: the client took no data; its file and buffers are released");
                Some(e.into())
            }
            Err(Stop::Failed(e)) => {
                if let Error::Corrupt { detail, .. } = &e {
                    error!(chunk = %self.id, detail, "stored chunk is corrupt");
                    self.verified.forget(&self.id);
                    self.reporter.corruption(&self.id, detail);
                }
                let _ = tx.send(Err(e.into())).await;
                None
            }
        }
    }

    async fn frames(&mut self, tx: &mpsc::Sender<Item>) -> Result<(), Stop> {
        let file = self
            .file
            .try_clone()
            .map(Arc::new)
            .map_err(|e| Stop::Failed(Error::io(format!("reading chunk {}", self.id), e)))?;
        let batch = (BATCH_FRAMES * keel_proto::FRAME_BYTES) as u64;
        let mut remaining = self.meta.size;
        let mut crc = 0u32;
        let mut next = (remaining > 0).then(|| {
            let n = remaining.min(batch);
            remaining -= n;
            read_batch(Arc::clone(&file), n, crc)
        });
        let mut held: Option<Bytes> = None;
        while let Some(reading) = next.take() {
            let (mut data, c) = joined(reading, &self.id).await?;
            crc = c;
            if remaining > 0 {
                let n = remaining.min(batch);
                remaining -= n;
                next = Some(read_batch(Arc::clone(&file), n, crc));
            }
            while !data.is_empty() {
                let frame = data.split_to(data.len().min(keel_proto::FRAME_BYTES));
                if let Some(prev) = held.replace(frame) {
                    self.send(tx, prev).await?;
                }
            }
        }
        if crc != self.meta.crc32c {
            return Err(Stop::Failed(Error::Corrupt {
                id: self.id.to_string(),
                detail: format!(
                    "checksum mismatch: header says crc32c {:#010x}, data has {crc:#010x}",
                    self.meta.crc32c
                ),
            }));
        }
        if let Some(last) = held {
            self.send(tx, last).await?;
        }
        Ok(())
    }

    async fn send(&mut self, tx: &mpsc::Sender<Item>, data: Bytes) -> Result<(), Stop> {
        let counter = match &self.throttle {
            Some(t) => {
                t.consume(data.len()).await;
                &self.traffic.migrated_out
            }
            None => &self.traffic.read,
        };
        crate::traffic::Traffic::add(counter, data.len());
        let len = data.len() as u64;
        let msg = ReadChunkResponse { header: None, data };
        match tokio::time::timeout(self.idle, tx.send(Ok(msg))).await {
            Ok(sent) => sent.map_err(|_| Stop::ReceiverGone)?,
            Err(_) => return Err(Stop::Idle),
        }
        self.sent += len;
        if let Some(heat) = &mut self.heat {
            heat.sent(len);
        }
        if let Some((latency, started)) = self.latency.take() {
            latency.record_read(started.elapsed());
        }
        Ok(())
    }
}

/// Why streaming stopped early.
enum Stop {
    ReceiverGone,
    /// The client took no frame for `--stream-idle-timeout`.
    Idle,
    Failed(Error),
}

/// What one blocking read returns: the bytes and the running CRC32C after them.
type Batch = std::io::Result<(Bytes, u32)>;

/// Reads the next `n` bytes on a blocking thread and extends the running
/// CRC32C. The buffer is not zeroed first: `read_to_end` reads straight into
/// its spare capacity, and the bytes become frames without another copy.
fn read_batch(file: Arc<File>, n: u64, crc: u32) -> JoinHandle<Batch> {
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(n as usize);
        (&*file).take(n).read_to_end(&mut buf)?;
        if (buf.len() as u64) < n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let crc = crc32c::crc32c_append(crc, &buf);
        Ok((Bytes::from(buf), crc))
    })
}

/// Waits for a [`read_batch`] and maps its failures.
async fn joined(reading: JoinHandle<Batch>, id: &ChunkId) -> Result<(Bytes, u32), Stop> {
    match reading.await {
        Ok(Ok(batch)) => Ok(batch),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(Stop::Failed(Error::Corrupt {
                id: id.to_string(),
                detail: "file ends before the size its header declares".into(),
            }))
        }
        Ok(Err(e)) => Err(Stop::Failed(Error::io(format!("reading chunk {id}"), e))),
        Err(e) => Err(Stop::Failed(Error::io(
            format!("reading chunk {id}"),
            std::io::Error::other(e),
        ))),
    }
}
