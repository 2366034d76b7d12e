//! HTTP/2 and TCP settings both daemons' gRPC servers use, so a vanished or
//! hostile peer costs a bounded amount for a bounded time.

use std::time::Duration;

/// A ping after this much silence on a server connection. Without it a
/// client whose host vanished (no FIN, no RST) keeps its connection, streams
/// and whatever they hold until the OS gives up, which can be hours.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// How long a ping may go unanswered before the server closes the connection
/// and every stream on it. Pings are not throttled by any bandwidth bucket,
/// so a slow but live client always answers in time.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keep-alive on accepted sockets: the kernel's own check for dead peers
/// beneath HTTP/2, for connections a ping cannot reach (e.g. stuck on a
/// full send buffer).
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Streams one connection may have open at once. Each open stream costs a
/// task and its buffers; a client needing more opens more connections (and
/// writes are bounded separately by the chunk server's `--max-transfers`).
/// Streams beyond it wait on the client side instead of failing.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Connections a server keeps open at once (the master adds one per server
/// it accepts). Each costs a file descriptor and its HTTP/2 state; past it a
/// new connection is told why and closed (see [`crate::connections`]).
pub const MAX_CONNECTIONS: usize = 1024;

/// The future of one call through a tower wrapper around a generated
/// server (the token guard, the budgets, the timings, the chunk server's
/// read route): the response, never an error.
pub type Answer = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<tonic::body::Body>, std::convert::Infallible>,
            > + Send,
    >,
>;
