//! gRPC clients of chunk servers: one lazily connected channel per address,
//! cached, carrying the shared token and Keel's message limits; and the
//! fencing of the requests that change data ([`Clients::fenced`], and
//! [`Clients::fenced_at`] for those a decision planned earlier).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::{CopyChunkRequest, DeleteChunkRequest, SetDrainRequest};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::ha::Leadership;

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
    /// Whether this master leads, and at which term.
    leadership: Leadership,
}

/// A request that changes data on a chunk server and carries the sender's term.
pub trait Fenced {
    /// Sets the term the request is sent under.
    fn set_term(&mut self, term: u64);
}

impl Fenced for CopyChunkRequest {
    fn set_term(&mut self, term: u64) {
        self.term = term;
    }
}

impl Fenced for DeleteChunkRequest {
    fn set_term(&mut self, term: u64) {
        self.term = term;
    }
}

impl Fenced for SetDrainRequest {
    fn set_term(&mut self, term: u64) {
        self.term = term;
    }
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
            leadership: Leadership::single(),
        })
    }

    /// The same clients, sending under `leadership`'s term.
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    /// Whether this master leads, and at which term.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Like [`Clients::request`] for a request that changes data: stamped
    /// with this master's term, or refused here with FAILED_PRECONDITION
    /// when this master does not lead at this instant.
    pub fn fenced<T: Fenced>(
        &self,
        mut msg: T,
        timeout: Duration,
    ) -> Result<tonic::Request<T>, tonic::Status> {
        let Some(term) = self.leadership.term_if_leading() else {
            return Err(tonic::Status::failed_precondition(
                "this master is not the leader (any more); the change is left to the leader",
            ));
        };
        msg.set_term(term);
        Ok(self.request(msg, timeout))
    }

    /// Like [`Clients::fenced`] for a change decided under term `decided`:
    /// stamped with that term, and refused here with FAILED_PRECONDITION
    /// unless this master still leads under it. A master deposed and
    /// elected again since the decision never carries it out under its new
    /// term (a chunk server that saw a newer term refuses it too).
    pub fn fenced_at<T: Fenced>(
        &self,
        mut msg: T,
        timeout: Duration,
        decided: u64,
    ) -> Result<tonic::Request<T>, tonic::Status> {
        match self.leadership.term_if_leading() {
            Some(term) if term == decided => {
                msg.set_term(decided);
                Ok(self.request(msg, timeout))
            }
            Some(term) => Err(tonic::Status::failed_precondition(format!(
                "decided under term {decided}, but this master now leads under term {term}; \
                 the change is left to a new decision"
            ))),
            None => Err(tonic::Status::failed_precondition(
                "this master is not the leader (any more); the change is left to the leader",
            )),
        }
    }

    /// Whether this master leads under term `decided` at this instant.
    pub fn leads_at(&self, decided: u64) -> bool {
        self.leadership.term_if_leading() == Some(decided)
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

    /// Wraps `msg` with the token, a deadline the server sees too, and the
    /// id of the move the calling task runs.
    pub fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        if let Some(a) = &self.auth {
            req.metadata_mut().insert("authorization", a.clone());
        }
        keel_proto::move_id::attach(&mut req);
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
        let req = c
            .fenced(DeleteChunkRequest::default(), Duration::from_secs(1))
            .expect("a single master always leads");
        assert_eq!(req.get_ref().term, 0);
        let standby = Clients::new(None)
            .expect("no token")
            .with_leadership(Leadership::elected("http://m1:7000".into()));
        let refused = standby.fenced(DeleteChunkRequest::default(), Duration::from_secs(1));
        assert_eq!(
            refused.map(|_| ()).map_err(|s| s.code()),
            Err(tonic::Code::FailedPrecondition)
        );
        assert!(c.client("not a url").is_err());
    }

    #[test]
    fn a_change_is_sent_only_under_the_term_that_decided_it() {
        let single = Clients::new(None).expect("no token");
        let req = single
            .fenced_at(DeleteChunkRequest::default(), Duration::from_secs(1), 0)
            .expect("a single master leads under term 0");
        assert_eq!(req.get_ref().term, 0);
        let later = single.fenced_at(DeleteChunkRequest::default(), Duration::from_secs(1), 3);
        assert_eq!(
            later.map(|_| ()).map_err(|s| s.code()),
            Err(tonic::Code::FailedPrecondition),
            "decided under another term"
        );
        assert!(single.leads_at(0) && !single.leads_at(3));
    }
}
