//! Connections to the master and to chunk servers: Keel's message limits,
//! the optional bearer token on every call, a connect timeout, HTTP/2
//! keep-alive, and a deadline on control requests that the master is told of
//! (`grpc-timeout`). Data streams are bounded by their idle timeout instead
//! (see [`crate::idle`]).
//!
//! `--master` may list several masters (`a,b,c`): keelctl asks them in
//! order who leads (`ListServers` names the leader) and talks to the
//! leader; when none is known it talks to the first that answers, which
//! serves reads and refuses changes with the leader's address.

use std::future::Future;
use std::time::Duration;

use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_client::MasterClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::error::{Error, Peer, root_cause};

/// How often [`Clients::leader`] asks again while no master leads.
pub const LEADER_POLL: Duration = Duration::from_millis(250);

/// Shortest and longest pause before asking a master in safe mode again:
/// it says how long is left, but a clock may drift and a restart may begin
/// anew, so keelctl checks at least every few seconds.
const SAFE_MODE_POLL_MIN: Duration = Duration::from_millis(100);
const SAFE_MODE_POLL_MAX: Duration = Duration::from_secs(2);

/// How long to wait for a TCP connection to any peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// HTTP/2 stream flow-control window. Larger than the defaults so a stream of
/// 512 KiB frames rarely waits for window updates (the chunk servers use the
/// same figures).
const STREAM_WINDOW: u32 = 4 << 20;

/// HTTP/2 connection flow-control window.
const CONNECTION_WINDOW: u32 = 8 << 20;

/// HTTP/2 frame size (the default is 16 KiB): fewer frames per message.
const H2_FRAME: u32 = 256 << 10;

/// How often an HTTP/2 ping goes out on every connection, busy or idle.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// A ping not answered within this drops the connection and fails its calls.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel that attaches the token to every request.
pub type Svc = InterceptedService<Channel, Auth>;

/// A master channel: the token, and the control deadline where there is one.
pub type Control = InterceptedService<Channel, Deadline>;

/// [`Auth`], plus `--timeout` sent as `grpc-timeout` so the master stops
/// working on a call keelctl has given up on.
#[derive(Clone, Debug)]
pub struct Deadline {
    auth: Auth,
    timeout: Option<Duration>,
}

impl Interceptor for Deadline {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let mut req = self.auth.call(req)?;
        if let Some(t) = self.timeout {
            req.set_timeout(t);
        }
        Ok(req)
    }
}

/// Adds `authorization: Bearer <token>` when a token is configured.
#[derive(Clone, Debug, Default)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl Auth {
    /// Builds the header value; a token that cannot be a header is a usage error.
    pub fn new(token: Option<&str>) -> Result<Self, Error> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Auth(None));
        };
        let value = format!("Bearer {token}").parse().map_err(|_| {
            Error::Usage("--auth-token must be printable ASCII without line breaks".into())
        })?;
        Ok(Auth(Some(value)))
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Accepts `https://host:port`, `http://host:port` or a bare `host:port`,
/// by the rule of [`keel_proto::tls::url`]: with TLS set up (`tls`), a bare
/// address means `https://` and `http://` is refused.
pub fn normalize_url(input: &str, tls: bool) -> Result<String, String> {
    let url = keel_proto::tls::url(input, tls).map_err(|e| e.to_string())?;
    Endpoint::from_shared(url.clone()).map_err(|e| root_cause(&e))?;
    Ok(url)
}

/// Splits `--master` into its URLs (`a,b,c`; one is the usual case).
pub fn master_list(input: &str, tls: bool) -> Result<Vec<String>, String> {
    let urls = input
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|u| normalize_url(u, tls))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err("no master given (expected HOST:PORT, or several separated by commas)".into());
    }
    Ok(urls)
}

/// Factory of connections, built once from the global flags.
#[derive(Clone, Debug)]
pub struct Clients {
    /// `--master`: one or several masters.
    master_urls: Vec<String>,
    auth: Auth,
    timeout: Duration,
    /// `--stream-idle-timeout`: a data stream with no progress this long ends.
    stream_idle: Duration,
    /// TLS for `https://` addresses (`--tls-ca`, `--tls-cert`, `--tls-key`).
    tls: Option<ClientTlsConfig>,
}

impl Clients {
    /// Checks the master address and token; `tls` (any TLS flag set) makes
    /// bare addresses `https://` and refuses `http://` ones, here and for
    /// every address learned later (leaders, chunk servers).
    pub fn new(
        master: &str,
        token: Option<&str>,
        timeout: Duration,
        tls: Option<ClientTlsConfig>,
    ) -> Result<Self, Error> {
        let master_urls = master_list(master, tls.is_some())
            .map_err(|e| Error::Usage(format!("invalid --master {master:?}: {e}")))?;
        Ok(Clients {
            master_urls,
            auth: Auth::new(token)?,
            timeout,
            stream_idle: crate::idle::DEFAULT_STREAM_IDLE,
            tls,
        })
    }

    /// Sets the idle timeout of data streams (`--stream-idle-timeout`).
    pub fn with_stream_idle(self, stream_idle: Duration) -> Self {
        Clients {
            stream_idle,
            ..self
        }
    }

    /// The idle timeout of data streams.
    pub fn stream_idle(&self) -> Duration {
        self.stream_idle
    }

    /// The master (the leader, when `--master` lists several), connected;
    /// while none leads, any master that answers (reads work on a standby).
    pub async fn master(&self) -> Result<Master, Error> {
        self.find_master().await.map(|(m, _)| m)
    }

    /// The leader, for commands that change something: when `--master`
    /// lists several and none leads right now (an election after a
    /// failover), asks again every [`LEADER_POLL`] for up to `--timeout`,
    /// then settles for any master, whose refusal then says why.
    pub async fn leader(&self) -> Result<Master, Error> {
        if self.master_urls.len() < 2 {
            return self.master().await;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let found = self.find_master().await;
            let last_try = tokio::time::Instant::now() + LEADER_POLL >= deadline;
            match found {
                Ok((m, true)) => return Ok(m),
                Ok((m, false)) if last_try => return Ok(m),
                Err(e) if last_try => return Err(e),
                _ => tokio::time::sleep(LEADER_POLL).await,
            }
        }
    }

    /// A master to talk to, and whether it leads: the first in the list
    /// that says it leads or names a leader that answers; otherwise the
    /// first that answers at all.
    async fn find_master(&self) -> Result<(Master, bool), Error> {
        if let [one] = self.master_urls.as_slice() {
            return Ok((self.master_at(one).await?, true));
        }
        let mut fallback: Option<Master> = None;
        let mut last_error = None;
        for url in &self.master_urls {
            let m = match self.master_at(url).await {
                Ok(m) => m,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            match m.leader().await {
                Some(None) => return Ok((m, true)),
                Some(Some(leader)) => match self.master_at(&leader).await {
                    Ok(l) if l.leader().await == Some(None) => return Ok((l, true)),
                    // A leader address (read from etcd) that breaks the TLS
                    // rule is never dialled; the operator hears why.
                    Err(e @ Error::Refused { .. }) => crate::output::warn(&format!(
                        "{} names the leader {leader}, not contacted: {e}",
                        m.peer
                    )),
                    _ => {}
                },
                None => {}
            }
            fallback.get_or_insert(m);
        }
        match (fallback, last_error) {
            (Some(m), _) => Ok((m, false)),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Error::Usage("--master names no master".into())),
        }
    }

    /// The master at `url`, connected.
    async fn master_at(&self, url: &str) -> Result<Master, Error> {
        let url = normalize_url(url, self.tls.is_some()).map_err(|e| Error::Refused {
            peer: format!("master {url}"),
            reason: format!("unusable address: {e}"),
        })?;
        let peer = Peer {
            id: None,
            url: &url,
        }
        .to_string();
        let channel = connect(&url, &peer, self.tls.as_ref()).await?;
        let client = |timeout| {
            let deadline = Deadline {
                auth: self.auth.clone(),
                timeout,
            };
            MasterClient::with_interceptor(channel.clone(), deadline)
                .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        };
        Ok(Master {
            client: client(Some(self.timeout)),
            long: client(None),
            peer,
            timeout: self.timeout,
        })
    }

    /// Chunk server `id` at `address` (as the master reported it), connected.
    pub async fn chunkserver(&self, id: &str, address: &str) -> Result<ChunkServer, Error> {
        let url = normalize_url(address, self.tls.is_some()).map_err(|e| Error::Refused {
            peer: format!("chunk server {id}"),
            reason: format!("the master gave the unusable address {address:?}: {e}"),
        })?;
        let peer = Peer {
            id: Some(id),
            url: &url,
        }
        .to_string();
        let channel = connect(&url, &peer, self.tls.as_ref()).await?;
        let client = ChunkServerClient::with_interceptor(channel, self.auth.clone())
            .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES);
        Ok(ChunkServer { client, peer })
    }
}

async fn connect(url: &str, peer: &str, tls: Option<&ClientTlsConfig>) -> Result<Channel, Error> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| Error::Unreachable {
        peer: peer.to_owned(),
        reason: format!("invalid address: {}", root_cause(&e)),
    })?;
    let endpoint = crate::tls::endpoint(endpoint, tls)
        .map_err(Error::Usage)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(H2_FRAME);
    keep_alive(endpoint)
        .connect()
        .await
        .map_err(|e| Error::Unreachable {
            peer: peer.to_owned(),
            reason: crate::tls::annotate(url, root_cause(&e)),
        })
}

/// Pings the peer every [`KEEP_ALIVE_INTERVAL`], with streams open or not,
/// so a peer that vanished fails the calls on its connection instead of
/// leaving them waiting.
fn keep_alive(endpoint: Endpoint) -> Endpoint {
    endpoint
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
}

/// A connected master client.
pub struct Master {
    /// The generated client for control calls, each carrying `--timeout`
    /// (cheap to clone).
    pub client: MasterClient<Control>,
    /// The same connection without a deadline, for [`Master::call_long`].
    pub long: MasterClient<Control>,
    /// How the master is named in messages.
    pub peer: String,
    timeout: Duration,
}

impl Master {
    /// Awaits a control RPC under the `--timeout` deadline.
    pub async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, fut).await {
            // The master's own deadline may strike first: the same story.
            Ok(Err(s)) if s.code() == Code::Cancelled && s.message() == "Timeout expired" => {
                Err(self.late(op))
            }
            Ok(r) => self.answer(op, r),
            Err(_) => Err(self.late(op)),
        }
    }

    /// Awaits a control RPC that changes something (`make` builds it anew
    /// for each try): while the master refuses it only because it is in
    /// safe mode, says so once on stderr and asks again when safe mode ends,
    /// for up to `--timeout` in all; then the refusal, which names safe
    /// mode, is the error.
    pub async fn call_changing<T, F, Fut>(&self, op: &'static str, make: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.out_of_safe_mode(op, make, false).await
    }

    /// [`Master::call_changing`] for an RPC that may take long (moves):
    /// each try goes without deadline, the waiting for safe mode stays
    /// under `--timeout`.
    pub async fn call_long_changing<T, F, Fut>(&self, op: &'static str, make: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.out_of_safe_mode(op, make, true).await
    }

    async fn out_of_safe_mode<T, F, Fut>(
        &self,
        op: &'static str,
        mut make: F,
        long: bool,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut said = false;
        loop {
            let answer = match long {
                true => self.call_long(op, make()).await,
                false => self.call(op, make()).await,
            };
            let err = match answer {
                Err(e) => e,
                ok => return ok,
            };
            let Some(left) = err.safe_mode_left() else {
                return Err(err);
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(err);
            }
            if !said {
                said = true;
                crate::output::warn(&format!(
                    "{} is in safe mode for another {} (servers are still reporting); waiting (up to --timeout {})",
                    self.peer,
                    crate::output::age(left),
                    crate::output::age(self.timeout)
                ));
            }
            let wake = (now + left.clamp(SAFE_MODE_POLL_MIN, SAFE_MODE_POLL_MAX)).min(deadline);
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Who leads, as this master says: `Some(None)` when it does itself,
    /// `Some(Some(address))` when another does, `None` when it knows no
    /// leader or did not answer.
    async fn leader(&self) -> Option<Option<String>> {
        let req = keel_proto::v1::ListServersRequest {};
        let r = self
            .call("list servers", self.client.clone().list_servers(req))
            .await
            .ok()?;
        if r.answered_by_leader {
            Some(None)
        } else if r.leader.is_empty() {
            None
        } else {
            Some(Some(r.leader))
        }
    }

    fn late(&self, op: &'static str) -> Error {
        let why = format!("no answer within {:?} (see --timeout)", self.timeout);
        Error::rpc(&self.peer, op, Status::deadline_exceeded(why))
    }

    /// Awaits an RPC that may legitimately take long (moves), without deadline.
    pub async fn call_long<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Error> {
        self.answer(op, fut.await)
    }

    fn answer<T>(&self, op: &'static str, r: Result<Response<T>, Status>) -> Result<T, Error> {
        r.map(Response::into_inner)
            .map_err(|s| Error::rpc(&self.peer, op, s))
    }
}

/// A connected chunk-server client.
pub struct ChunkServer {
    /// The generated client.
    pub client: ChunkServerClient<Svc>,
    /// How the server is named in messages.
    pub peer: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_get_a_scheme() {
        assert_eq!(
            normalize_url("127.0.0.1:7000", false).as_deref(),
            Ok("http://127.0.0.1:7000")
        );
        assert_eq!(
            normalize_url(" http://h:1/ ", false).as_deref(),
            Ok("http://h:1")
        );
        assert_eq!(
            normalize_url("https://h:1", false).as_deref(),
            Ok("https://h:1")
        );
        assert!(
            normalize_url("ftp://h", false)
                .expect_err("must fail")
                .contains("ftp")
        );
        assert!(normalize_url("", false).is_err());
        assert!(normalize_url("http://", false).is_err());
    }

    #[test]
    fn with_tls_a_bare_address_is_https_and_http_is_refused() {
        assert_eq!(
            normalize_url("127.0.0.1:7000", true).as_deref(),
            Ok("https://127.0.0.1:7000")
        );
        let err = normalize_url("http://h:1", true).expect_err("refused");
        assert!(err.contains("plaintext http:// is refused"), "{err}");
        assert!(master_list("m1:7000,http://m2:7000", true).is_err());
    }

    #[test]
    fn several_masters_are_a_comma_separated_list() {
        assert_eq!(
            master_list("m1:7000, http://m2:7000/", false).as_deref(),
            Ok(&["http://m1:7000".to_owned(), "http://m2:7000".to_owned()][..])
        );
        assert!(master_list(" , ", false).is_err());
        assert!(master_list("m1:7000,ftp://m2", false).is_err());
    }

    #[test]
    fn token_becomes_a_bearer_header() {
        let mut auth = Auth::new(Some("s3cret")).expect("ascii");
        let req = auth.call(Request::new(())).expect("intercepted");
        assert_eq!(
            req.metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer s3cret")
        );
        let mut none = Auth::new(None).expect("no token");
        let req = none.call(Request::new(())).expect("intercepted");
        assert!(req.metadata().get("authorization").is_none());
        assert!(Auth::new(Some("bad\ntoken")).is_err());
    }

    #[test]
    fn control_calls_tell_the_master_their_deadline() {
        let auth = Auth::new(Some("s3cret")).expect("ascii");
        let mut control = Deadline {
            auth: auth.clone(),
            timeout: Some(Duration::from_secs(3)),
        };
        let req = control.call(Request::new(())).expect("intercepted");
        let header = |name| req.metadata().get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("authorization"), Some("Bearer s3cret"));
        assert!(header("grpc-timeout").is_some_and(|t| !t.is_empty()));
        let mut long = Deadline {
            auth,
            timeout: None,
        };
        let req = long.call(Request::new(())).expect("intercepted");
        assert!(req.metadata().get("grpc-timeout").is_none());
        assert!(req.metadata().get("authorization").is_some());
    }
}
