//! [`blocking`]: file work off the async threads, its failure to run an
//! ordinary I/O error. Apart from [`crate::node`] so that the modules a node
//! is made of (the fence, the verifier) can use it without depending on the
//! node.

use crate::error::Error;

/// Runs blocking file work off the async threads.
pub async fn blocking<T, F>(what: &str, f: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io(what.to_owned(), std::io::Error::other(e)))?
}
