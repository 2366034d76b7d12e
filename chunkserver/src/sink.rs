//! A temp chunk fed from async code without parking a thread on the network.
//!
//! The [`TempChunk`] lives in async land between frames. Received frames are
//! handed to one short `spawn_blocking` task that appends them and hands the
//! temp chunk back; frames that arrive while that task runs are queued (up to
//! [`MAX_QUEUED`] bytes) and written together by the next one, so writing and
//! receiving overlap and a fast stream costs one thread handoff per batch
//! rather than per frame. With no batch running, a fast stream's frames are
//! gathered up to [`MIN_BATCH`] bytes before one starts. A blocking thread is
//! held only while bytes are really being written: a client that stalls
//! between frames holds no thread, only its (small) async task, so hundreds
//! of stalled writes cannot starve reads, deletes or commits of the blocking
//! pool.
//!
//! Dropping a [`Sink`] (an error, an idle timeout, or the request cancelled)
//! drops its [`TempChunk`], whose file is then removed; a batch still being
//! written finishes on its own thread and drops it there. [`Sink::abandon`]
//! waits for that batch, for callers that answer only once the file is gone.

use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_proto::chunk_id::ChunkId;
use tokio::task::JoinHandle;

use crate::chunk_file::TempChunk;
use crate::error::Error;

/// Bytes queued while a batch is being written; beyond this, receiving
/// waits for the disk.
pub const MAX_QUEUED: usize = 4 << 20;

/// Bytes gathered before a batch starts when no batch is being written,
/// on a fast stream: a disk that keeps up would otherwise get a thread
/// handoff per frame. Four frames measured about 8 % less CPU per copied
/// byte on both servers than a batch per frame (`scripts/bench-copy.sh`);
/// what is left at the end of the stream goes in [`Sink::finish`].
pub const MIN_BATCH: usize = 4 * keel_proto::FRAME_BYTES;

/// A stream is fast while its frames come within this of the last batch's
/// start. A slower one (under about 40 MiB/s: a throttled copy) writes each
/// frame as it comes, so its temp file grows with it and no frame waits
/// long in memory.
pub const GATHER_FOR: Duration = Duration::from_millis(50);

/// The async end of a temp chunk being written.
pub struct Sink {
    /// The chunk's id, for error messages.
    id: ChunkId,
    /// Frames received while a batch was being written.
    queued: Vec<Bytes>,
    /// Bytes in `queued`.
    queued_bytes: usize,
    /// The temp chunk while no batch is being written.
    idle: Option<TempChunk>,
    /// The batch being written; returns the temp chunk, or the first error.
    busy: Option<JoinHandle<Result<TempChunk, Error>>>,
    /// When the last batch started, to tell a fast stream from a slow one.
    last_batch: Option<Instant>,
}

impl Sink {
    /// Wraps `temp`; nothing runs until the first [`Sink::write`].
    pub fn new(temp: TempChunk, id: ChunkId) -> Self {
        Sink {
            id,
            queued: Vec::new(),
            queued_bytes: 0,
            idle: Some(temp),
            busy: None,
            last_batch: None,
        }
    }

    /// Hands one frame to the disk: a batch starts at once on a slow
    /// stream, once [`MIN_BATCH`] bytes are queued on a fast one (see
    /// [`GATHER_FOR`]), or [`MAX_QUEUED`] behind a batch being written.
    /// Waits only while the batch being written has [`MAX_QUEUED`] bytes
    /// queued behind it, never for the network.
    pub async fn write(&mut self, frame: Bytes) -> Result<(), Error> {
        self.write_slices([frame]).await
    }

    /// [`Sink::write`] for a frame that arrived in several slices: queued
    /// together, so the frame costs one thread handoff at most, not one
    /// per slice.
    pub async fn write_slices(
        &mut self,
        slices: impl IntoIterator<Item = Bytes>,
    ) -> Result<(), Error> {
        for slice in slices {
            self.queued_bytes += slice.len();
            self.queued.push(slice);
        }
        let busy = self.busy.as_ref().is_some_and(|b| !b.is_finished());
        let fast = self.last_batch.is_some_and(|t| t.elapsed() < GATHER_FOR);
        let enough = match (busy, fast) {
            (true, _) => MAX_QUEUED,
            (false, true) => MIN_BATCH,
            (false, false) => 0,
        };
        if self.queued_bytes < enough {
            return Ok(());
        }
        self.flush().await
    }

    /// Starts writing everything queued, once the previous batch is done.
    async fn flush(&mut self) -> Result<(), Error> {
        let mut temp = self.settle().await?;
        let frames = std::mem::take(&mut self.queued);
        self.queued_bytes = 0;
        let id = self.id.clone();
        self.last_batch = Some(Instant::now());
        self.busy = Some(tokio::task::spawn_blocking(move || {
            for frame in &frames {
                crate::store::append(&mut temp, &id, frame)?;
            }
            Ok(temp)
        }));
        Ok(())
    }

    /// Waits until every frame is written and returns the temp chunk.
    pub async fn finish(mut self) -> Result<TempChunk, Error> {
        if !self.queued.is_empty() {
            self.flush().await?;
        }
        self.settle().await
    }

    /// Gives the chunk up: waits for the batch being written, if any, then
    /// drops the temp chunk, so its file is gone when this returns.
    pub async fn abandon(mut self) {
        if let Some(busy) = self.busy.take() {
            // Its error, if any, is moot: the copy is being given up.
            let _ = busy.await;
        }
    }

    /// Takes the temp chunk back, waiting for the batch in progress if any.
    async fn settle(&mut self) -> Result<TempChunk, Error> {
        if let Some(temp) = self.idle.take() {
            return Ok(temp);
        }
        let busy = self.busy.take().ok_or_else(|| {
            Error::io(
                format!("writing chunk {}", self.id),
                std::io::Error::other("an earlier write failed"),
            )
        })?;
        busy.await.map_err(|e| {
            Error::io(
                format!("writing chunk {}", self.id),
                std::io::Error::other(e),
            )
        })?
    }
}
