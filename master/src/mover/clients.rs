//! gRPC clients of chunk servers: one lazily connected channel per address,
//! cached, carrying the shared token and Keel's message limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use keel_proto::v1::chunk_server_client::ChunkServerClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// How long connecting to a chunk server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Keep-alive pings, also on idle connections, so a chunk server cut off by
/// the network fails the calls waiting on it within
/// `KEEPALIVE + KEEPALIVE_TIMEOUT` rather than at their own (long) deadlines.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// How long a keep-alive ping may go unanswered.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The token is not a valid header value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the auth token must be printable ASCII")]
pub struct BadToken;

/// Cached channels to chunk servers.
#[derive(Debug)]
pub struct Clients {
    /// Address → channel. Channels reconnect by themselves; entries stay.
    channels: Mutex<HashMap<String, Channel>>,
    /// `Bearer <token>`, attached to every call when set.
    auth: Option<AsciiMetadataValue>,
    /// TLS towards `https://` chunk servers (`--tls-ca`, `--tls-cert`, `--tls-key`).
    tls: Option<ClientTlsConfig>,
}

impl Clients {
    /// Clients that attach `token` (when set) to every call.
    pub fn new(token: Option<&str>) -> Result<Self, BadToken> {
        let auth = token
            .map(|t| AsciiMetadataValue::try_from(format!("Bearer {t}")).map_err(|_| BadToken))
            .transpose()?;
        Ok(Clients {
            channels: Mutex::new(HashMap::new()),
            auth,
            tls: None,
        })
    }

    /// The same clients, speaking TLS to `https://` addresses.
    pub fn with_tls(mut self, tls: Option<ClientTlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// A client of the chunk server at `address` (connects on first use).
    pub fn client(&self, address: &str) -> Result<ChunkServerClient<Channel>, tonic::Status> {
        let channel = {
            let mut map = self
                .channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match map.get(address) {
                Some(c) => c.clone(),
                None => {
                    let e = Endpoint::from_shared(address.to_owned()).map_err(|e| {
                        tonic::Status::invalid_argument(format!("bad address {address:?}: {e}"))
                    })?;
                    let c = keel_proto::tls::endpoint(e, self.tls.as_ref())
                        .map_err(|e| tonic::Status::failed_precondition(e.to_string()))?
                        .connect_timeout(CONNECT_TIMEOUT)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(KEEPALIVE)
                        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                        .keep_alive_while_idle(true)
                        .connect_lazy();
                    map.insert(address.to_owned(), c.clone());
                    c
                }
            }
        };
        Ok(ChunkServerClient::new(channel)
            .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES))
    }

    /// Wraps `msg` with the token and a deadline the server sees too.
    pub fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        if let Some(a) = &self.auth {
            req.metadata_mut().insert("authorization", a.clone());
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channels_are_cached_and_tokens_attached() {
        let c = Clients::new(Some("s3cret")).expect("token");
        c.client("http://127.0.0.1:1").expect("lazy");
        c.client("http://127.0.0.1:1").expect("lazy");
        assert_eq!(c.channels.lock().map(|m| m.len()).unwrap_or(0), 1);
        let r = c.request((), Duration::from_secs(1));
        assert_eq!(
            r.metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer s3cret")
        );
        assert!(Clients::new(Some("bad\ntoken")).is_err());
        assert!(c.client("not a url").is_err());
    }
}
