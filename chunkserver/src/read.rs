//! Streaming a stored chunk: header first, then frames of
//! [`keel_proto::FRAME_BYTES`], the CRC32C verified along the way.
//!
//! The last frame is held back until the whole file's checksum is verified, so
//! a corrupt chunk ends in DATA_LOSS before a client has every byte, and a
//! client that checks the stream's status never takes bad bytes as good.
//! Migration reads draw each frame from the server's bandwidth bucket.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use keel_proto::chunk_id::ChunkId;
use keel_proto::v1::{ChunkHeader, ReadChunkResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::{debug, error};

use crate::chunk_file::ChunkMeta;
use crate::error::Error;
use crate::heartbeat::MasterReporter;
use crate::throttle::Throttle;

/// Frames queued between the reading task and the connection.
const QUEUED_FRAMES: usize = 2;

/// The response stream of `ReadChunk`.
pub type ReadStream = ReceiverStream<Result<ReadChunkResponse, Status>>;

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
    pub traffic: Arc<crate::metrics::Traffic>,
    /// Where corruption is reported.
    pub reporter: MasterReporter,
}

impl ReadJob {
    /// Starts streaming on a task of its own; the task stops when the
    /// receiver goes away.
    pub fn spawn(self) -> ReadStream {
        let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
        tokio::spawn(self.run(tx));
        ReceiverStream::new(rx)
    }

    async fn run(self, tx: mpsc::Sender<Result<ReadChunkResponse, Status>>) {
        let header = ReadChunkResponse {
            header: Some(ChunkHeader {
                chunk: self.id.to_string(),
                size: self.meta.size,
                crc32c: self.meta.crc32c,
                replication: self.meta.replication,
            }),
            data: Vec::new(),
        };
        if tx.send(Ok(header)).await.is_err() {
            return;
        }
        match self.frames(&tx).await {
            Ok(()) => {}
            Err(Stop::ReceiverGone) => debug!(chunk = %self.id, "reader went away"),
            Err(Stop::Failed(e)) => {
                if let Error::Corrupt { detail, .. } = &e {
                    error!(chunk = %self.id, detail, "stored chunk is corrupt");
                    self.reporter.corruption(&self.id, detail);
                }
                let _ = tx.send(Err(e.into())).await;
            }
        }
    }

    async fn frames(
        &self,
        tx: &mpsc::Sender<Result<ReadChunkResponse, Status>>,
    ) -> Result<(), Stop> {
        let mut file = self
            .file
            .try_clone()
            .map_err(|e| Stop::Failed(Error::io(format!("reading chunk {}", self.id), e)))?;
        let mut crc = 0u32;
        let mut remaining = self.meta.size;
        let mut held: Option<Vec<u8>> = None;
        while remaining > 0 {
            let n = remaining.min(keel_proto::FRAME_BYTES as u64) as usize;
            let (f, frame) = read_frame(file, n, crc, &self.id).await?;
            file = f;
            crc = frame.1;
            remaining -= n as u64;
            if let Some(prev) = held.replace(frame.0) {
                self.send(tx, prev).await?;
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

    async fn send(
        &self,
        tx: &mpsc::Sender<Result<ReadChunkResponse, Status>>,
        data: Vec<u8>,
    ) -> Result<(), Stop> {
        let counter = match &self.throttle {
            Some(t) => {
                t.consume(data.len()).await;
                &self.traffic.migrated_out
            }
            None => &self.traffic.read,
        };
        crate::metrics::Traffic::add(counter, data.len());
        let msg = ReadChunkResponse { header: None, data };
        tx.send(Ok(msg)).await.map_err(|_| Stop::ReceiverGone)
    }
}

/// Why streaming stopped early.
enum Stop {
    ReceiverGone,
    Failed(Error),
}

/// Reads the next `n` bytes on a blocking thread and extends the running CRC.
async fn read_frame(
    mut file: File,
    n: usize,
    crc: u32,
    id: &ChunkId,
) -> Result<(File, (Vec<u8>, u32)), Stop> {
    let joined = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; n];
        let res = file.read_exact(&mut buf);
        let crc = crc32c::crc32c_append(crc, &buf);
        (file, res.map(|()| (buf, crc)))
    })
    .await;
    match joined {
        Ok((file, Ok(frame))) => Ok((file, frame)),
        Ok((_, Err(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(Stop::Failed(Error::Corrupt {
                id: id.to_string(),
                detail: "file ends before the size its header declares".into(),
            }))
        }
        Ok((_, Err(e))) => Err(Stop::Failed(Error::io(format!("reading chunk {id}"), e))),
        Err(e) => Err(Stop::Failed(Error::io(
            format!("reading chunk {id}"),
            std::io::Error::other(e),
        ))),
    }
}
