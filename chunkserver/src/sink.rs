//! A temp chunk fed from async code without parking a thread on the network.
//!
//! The [`TempChunk`] lives in async land between frames. Each received frame
//! is handed to one short `spawn_blocking` task that appends it and hands the
//! temp chunk back; the next frame is received from the network while that
//! task runs, so writing and receiving still overlap. A blocking thread is
//! held only while bytes are really being written: a client that stalls
//! between frames holds no thread, only its (small) async task, so hundreds
//! of stalled writes cannot starve reads, deletes or commits of the blocking
//! pool.
//!
//! Dropping a [`Sink`] (an error, an idle timeout, or the request cancelled)
//! drops its [`TempChunk`], whose file is then removed; a batch still being
//! written finishes on its own thread and drops it there.

use keel_proto::chunk_id::ChunkId;
use tokio::task::JoinHandle;

use crate::chunk_file::TempChunk;
use crate::error::Error;

/// The async end of a temp chunk being written.
pub struct Sink {
    /// The chunk's id, for error messages.
    id: ChunkId,
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
            idle: Some(temp),
            busy: None,
        }
    }

    /// Hands one frame to the disk. Waits only for the previous frame's
    /// write (at most one is in progress), never for the network.
    pub async fn write(&mut self, frame: Vec<u8>) -> Result<(), Error> {
        let mut temp = self.settle().await?;
        let id = self.id.clone();
        self.busy = Some(tokio::task::spawn_blocking(move || {
            crate::store::append(&mut temp, &id, &frame)?;
            Ok(temp)
        }));
        Ok(())
    }

    /// Waits until every frame is written and returns the temp chunk.
    pub async fn finish(mut self) -> Result<TempChunk, Error> {
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
