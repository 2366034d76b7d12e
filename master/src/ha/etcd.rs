//! A small client of etcd's v3 KV and Lease services: what leader election
//! and the operator state need, over lazily connected channels to every
//! `--etcd` endpoint. A call that fails for want of a connection moves on to
//! the next endpoint for the following call. TLS and authentication: see
//! [`super::access`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_proto::etcd::etcdserverpb::{
    AuthenticateRequest, Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
    WatchResponse, auth_client::AuthClient, compare, kv_client::KvClient,
    lease_client::LeaseClient, request_op, response_op, watch_client::WatchClient,
    watch_create_request, watch_request,
};
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::access::{Credentials, EtcdAccess, TokenCache, TokenHeader};

/// A channel whose calls carry etcd's auth token, when there is one.
type Authed = InterceptedService<Channel, TokenHeader>;

/// How long connecting to an etcd endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An etcd call that did not work.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// An `--etcd` value is not a usable URL.
    #[error("--etcd {endpoint:?} is not a usable URL: {detail}")]
    BadEndpoint {
        /// The value given.
        endpoint: String,
        /// What is wrong with it.
        detail: String,
    },
    /// No endpoint was given.
    #[error("--etcd names no endpoint")]
    NoEndpoint,
    /// A TLS or authentication flag is unusable.
    #[error("{detail}")]
    Access {
        /// What is wrong, naming the flag.
        detail: String,
    },
    /// etcd refused the user and password.
    #[error(
        "etcd at {endpoint}: authentication as user {user:?} failed: {message} (check --etcd-user and --etcd-password-file)"
    )]
    Auth {
        /// The endpoint asked.
        endpoint: String,
        /// `--etcd-user`.
        user: String,
        /// etcd's answer.
        message: String,
    },
    /// etcd answered with an error, or could not be reached.
    #[error("etcd at {endpoint}: {op} failed: {code:?}: {message}")]
    Rpc {
        /// The endpoint asked.
        endpoint: String,
        /// The call, e.g. "lease grant".
        op: &'static str,
        /// The gRPC code.
        code: tonic::Code,
        /// etcd's message.
        message: String,
    },
    /// No answer in time.
    #[error("etcd at {endpoint}: {op} got no answer within {timeout:?}")]
    Timeout {
        /// The endpoint asked.
        endpoint: String,
        /// The call.
        op: &'static str,
        /// The deadline.
        timeout: Duration,
    },
}

/// A lease granted by etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: i64,
    /// Its time to live as etcd chose it.
    pub ttl: Duration,
}

/// The outcome of one attempt to take the leader key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaigned {
    /// This master created the key: it leads at `term` (the key's create revision).
    Won {
        /// The term.
        term: u64,
    },
    /// The key exists: another master leads (its address and term), or the
    /// key vanished between the check and the read (`None`).
    Lost {
        /// The current leader.
        leader: Option<(String, u64)>,
        /// etcd's revision when it was read: a watch from the next one
        /// misses no change after the read.
        revision: i64,
    },
}

/// Clients of one etcd cluster.
#[derive(Debug)]
pub struct Etcd {
    /// Endpoint URLs and their lazily connected channels.
    endpoints: Vec<(String, Channel)>,
    /// The endpoint the next call goes to.
    current: AtomicUsize,
    /// Deadline of every call.
    timeout: Duration,
    /// `--etcd-user` and its password: calls carry a token.
    credentials: Option<Credentials>,
    /// The token etcd issued for them.
    token: TokenCache,
}

impl Etcd {
    /// Clients of `endpoints` (`http://host:port` or `host:port`), in
    /// plaintext and without authentication; nothing connects until the
    /// first call.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Self, EtcdError> {
        Etcd::with_access(endpoints, timeout, EtcdAccess::default())
    }

    /// The same with TLS and authentication: with TLS a bare endpoint is
    /// `https://` and `http://` is refused.
    pub fn with_access(
        endpoints: &[String],
        timeout: Duration,
        access: EtcdAccess,
    ) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoint);
        }
        let endpoints = endpoints
            .iter()
            .map(|e| {
                let bad = |detail: String| EtcdError::BadEndpoint {
                    endpoint: e.clone(),
                    detail,
                };
                let url = keel_proto::tls::url(e, access.tls.is_some())
                    .map_err(|err| bad(err.to_string()))?;
                let endpoint =
                    Endpoint::from_shared(url.clone()).map_err(|err| bad(err.to_string()))?;
                let channel = keel_proto::tls::endpoint(endpoint, access.tls.as_ref())
                    .map_err(|err| bad(err.to_string()))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok((url, channel))
            })
            .collect::<Result<Vec<_>, EtcdError>>()?;
        Ok(Etcd {
            endpoints,
            current: AtomicUsize::new(0),
            timeout,
            credentials: access.credentials,
            token: TokenCache::default(),
        })
    }

    /// The token to send: none without credentials; the cached one; or a
    /// new one from `Auth/Authenticate` at `url`.
    async fn token(&self, url: &str, channel: Channel) -> Result<TokenHeader, EtcdError> {
        let Some(c) = &self.credentials else {
            return Ok(TokenHeader(None));
        };
        if let Some(t) = self.token.get() {
            return Ok(TokenHeader(Some(t)));
        }
        let req = AuthenticateRequest {
            name: c.user.clone(),
            password: c.password.clone(),
        };
        let mut client = AuthClient::new(channel);
        let answer = tokio::time::timeout(self.timeout, client.authenticate(req)).await;
        let token = match answer {
            Ok(Ok(r)) => r.into_inner().token,
            Ok(Err(s)) if is_transport(&s) => return Err(rpc_error(url, "authenticate", &s)),
            Ok(Err(s)) => {
                return Err(EtcdError::Auth {
                    endpoint: url.to_owned(),
                    user: c.user.clone(),
                    message: s.message().to_owned(),
                });
            }
            Err(_) => {
                return Err(EtcdError::Timeout {
                    endpoint: url.to_owned(),
                    op: "authenticate",
                    timeout: self.timeout,
                });
            }
        };
        let value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            token.parse().map_err(|_| EtcdError::Auth {
                endpoint: url.to_owned(),
                user: c.user.clone(),
                message: "etcd issued a token that cannot be sent as metadata".into(),
            })?;
        self.token.set(value.clone());
        Ok(TokenHeader(Some(value)))
    }

    fn pick(&self) -> (usize, &str, Channel) {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let (url, channel) = &self.endpoints[i];
        (i, url, channel.clone())
    }

    /// Runs one call under the deadline; a failure sends the next call to
    /// the next endpoint.
    async fn call<T, F>(
        &self,
        op: &'static str,
        f: impl FnOnce(Authed) -> F,
    ) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (i, url, channel) = self.pick();
        let outcome = match self.token(url, channel.clone()).await {
            Ok(token) => {
                let authed = InterceptedService::new(channel, token);
                tokio::time::timeout(self.timeout, f(authed)).await
            }
            Err(e) => {
                self.next_endpoint(i);
                return Err(e);
            }
        };
        let err = match outcome {
            Ok(Ok(r)) => return Ok(r.into_inner()),
            Ok(Err(s)) => {
                if s.code() == tonic::Code::Unauthenticated {
                    // Expired or revoked: the next call authenticates anew.
                    self.token.clear();
                }
                rpc_error(url, op, &s)
            }
            Err(_) => EtcdError::Timeout {
                endpoint: url.to_owned(),
                op,
                timeout: self.timeout,
            },
        };
        self.next_endpoint(i);
        Err(err)
    }

    /// Sends the following calls to the endpoint after `i`, unless another
    /// call already moved on.
    fn next_endpoint(&self, i: usize) {
        let _ = self.current.compare_exchange(
            i,
            (i + 1) % self.endpoints.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Grants a lease of `ttl` (whole seconds, rounded up).
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, EtcdError> {
        let secs = i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
        let r = self
            .call("lease grant", |c| async move {
                LeaseClient::new(c)
                    .lease_grant(LeaseGrantRequest { ttl: secs, id: 0 })
                    .await
            })
            .await?;
        Ok(Lease {
            id: r.id,
            ttl: Duration::from_secs(u64::try_from(r.ttl).unwrap_or(0)),
        })
    }

    /// Renews `lease`; `None` when it has already expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<Option<Duration>, EtcdError> {
        let r = self
            .call("lease keep-alive", |c| async move {
                let once = tokio_stream::once(LeaseKeepAliveRequest { id: lease });
                let mut stream = LeaseClient::new(c).lease_keep_alive(once).await?;
                match stream.get_mut().message().await? {
                    Some(m) => Ok(tonic::Response::new(m)),
                    None => Err(tonic::Status::unavailable("keep-alive stream ended")),
                }
            })
            .await?;
        Ok((r.ttl > 0).then(|| Duration::from_secs(u64::try_from(r.ttl).unwrap_or(0))))
    }

    /// Revokes `lease`, deleting the keys attached to it.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("lease revoke", |c| async move {
            LeaseClient::new(c)
                .lease_revoke(LeaseRevokeRequest { id: lease })
                .await
        })
        .await
        .map(|_| ())
    }

    /// Creates `key` = `value` under `lease` if `key` does not exist; else
    /// reads who holds it.
    pub async fn campaign(
        &self,
        key: &str,
        value: &str,
        lease: i64,
    ) -> Result<Campaigned, EtcdError> {
        let txn = TxnRequest {
            compare: vec![created_at(key, 0)],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: value.as_bytes().to_vec(),
                    lease,
                    ..PutRequest::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..RangeRequest::default()
                })),
            }],
        };
        let r = self
            .call("leader transaction", |c| async move {
                KvClient::new(c).txn(txn).await
            })
            .await?;
        let revision = r.header.map_or(0, |h| h.revision);
        if r.succeeded {
            let term = u64::try_from(revision).unwrap_or(0);
            return Ok(Campaigned::Won { term });
        }
        let leader = r.responses.into_iter().find_map(|op| match op.response {
            Some(response_op::Response::ResponseRange(range)) => {
                range.kvs.into_iter().next().map(|kv| {
                    (
                        String::from_utf8_lossy(&kv.value).into_owned(),
                        u64::try_from(kv.create_revision).unwrap_or(0),
                    )
                })
            }
            _ => None,
        });
        Ok(Campaigned::Lost { leader, revision })
    }

    /// Watches `key` for deletes from `revision` on. The stream's first
    /// answer confirms the watch (`created`); each later one with events
    /// reports deletes. It ends or fails when etcd or the connection does.
    pub async fn watch_deletes(
        &self,
        key: &str,
        revision: i64,
    ) -> Result<tonic::Streaming<WatchResponse>, EtcdError> {
        let create = WatchCreateRequest {
            key: key.as_bytes().to_vec(),
            start_revision: revision,
            filters: vec![watch_create_request::FilterType::Noput.into()],
            ..WatchCreateRequest::default()
        };
        let req = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        };
        // The request side stays open as long as the watch is wanted.
        let requests = tokio_stream::once(req).chain(tokio_stream::pending());
        self.call("watch", |c| async move {
            WatchClient::new(c).watch(requests).await
        })
        .await
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EtcdError> {
        let req = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..RangeRequest::default()
        };
        let r = self
            .call(
                "range",
                |c| async move { KvClient::new(c).range(req).await },
            )
            .await?;
        Ok(r.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// Sets `key` = `value` (no lease: operator state outlives masters) in
    /// one transaction, only if `guard` still has create revision
    /// `created`; false when it does not (the guard was deleted or created
    /// anew since), and nothing was written.
    pub async fn put_if_created(
        &self,
        guard: &str,
        created: u64,
        key: &str,
        value: &[u8],
    ) -> Result<bool, EtcdError> {
        let txn = TxnRequest {
            compare: vec![created_at(
                guard,
                i64::try_from(created).unwrap_or(i64::MAX),
            )],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: value.to_vec(),
                    ..PutRequest::default()
                })),
            }],
            failure: Vec::new(),
        };
        let r = self
            .call(
                "guarded put",
                |c| async move { KvClient::new(c).txn(txn).await },
            )
            .await?;
        Ok(r.succeeded)
    }
}

/// An etcd answer that is an error.
fn rpc_error(url: &str, op: &'static str, s: &tonic::Status) -> EtcdError {
    EtcdError::Rpc {
        endpoint: url.to_owned(),
        op,
        code: s.code(),
        message: s.message().to_owned(),
    }
}

/// Whether `s` says etcd was not reached (rather than refusing the user).
fn is_transport(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

/// The transaction condition "`key` was created at `revision`" (0: the key
/// does not exist).
fn created_at(key: &str, revision: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal.into(),
        target: compare::CompareTarget::Create.into(),
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_are_checked_and_normalised() {
        assert!(matches!(
            Etcd::new(&[], Duration::from_secs(1)),
            Err(EtcdError::NoEndpoint)
        ));
        let e = Etcd::new(&["127.0.0.1:2379".into()], Duration::from_secs(1)).expect("ok");
        assert_eq!(e.pick().1, "http://127.0.0.1:2379");
        assert!(Etcd::new(&["http://bad host".into()], Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_etcd_is_an_error_and_the_next_endpoint_is_tried() {
        let e = Etcd::new(
            &["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
            Duration::from_secs(2),
        )
        .expect("ok");
        let err = e
            .grant(Duration::from_secs(5))
            .await
            .expect_err("nothing listens");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
        assert_eq!(e.pick().1, "http://127.0.0.1:2");
    }
}
