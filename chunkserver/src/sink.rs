//! A temp chunk fed from async code without parking a thread on the network.
//!
//! The [`TempChunk`] lives in async land between frames. Received frames are
//! handed to one short `spawn_blocking` task that appends them and hands the
//! temp chunk back; frames that arrive while that task runs are queued (up to
//! [`MAX_QUEUED`] bytes) and written together by the next one, so writing and
//! receiving overlap and a fast stream costs one thread handoff per batch
//! rather than per frame. A blocking thread is
//! held only while bytes are really being written: a client that stalls
//! between frames holds no thread, only its (small) async task, so hundreds
//! of stalled writes cannot starve reads, deletes or commits of the blocking
//! pool.
//!
//! Dropping a [`Sink`] (an error, an idle timeout, or the request cancelled)
//! drops its [`TempChunk`], whose file is then removed; a batch still being
//! written finishes on its own thread and drops it there.

use bytes::Bytes;
use keel_proto::chunk_id::ChunkId;
use tokio::task::JoinHandle;

use crate::chunk_file::TempChunk;
use crate::error::Error;

/// Bytes queued while a batch is being written; beyond this, receiving
/// waits for the disk.
pub const MAX_QUEUED: usize = 4 << 20;

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
        }
    }

    /// Hands one frame to the disk. Waits only while the batch being
    /// written has [`MAX_QUEUED`] bytes queued behind it, never for the
    /// network.
    pub async fn write(&mut self, frame: Bytes) -> Result<(), Error> {
        self.queued_bytes += frame.len();
        self.queued.push(frame);
        let busy = self.busy.as_ref().is_some_and(|b| !b.is_finished());
        if busy && self.queued_bytes < MAX_QUEUED {
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
