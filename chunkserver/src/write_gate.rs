//! Who may write a chunk here: a caller holding the cluster token (the
//! daemons' own traffic and operators), or one presenting a write capability
//! the master signed for this chunk, this server, this factor and this size
//! ([`keel_proto::capability`]).
//!
//! On a cluster without `--auth-token` every caller holds the cluster's role
//! (the token check admits every method, `DeleteChunk` included), so no
//! capability is required there; the master still never adopts a factor it
//! did not allocate (see `docs/security.md`, "Write capabilities").

use std::time::SystemTime;

use keel_proto::auth::{Role, Tokens};
use keel_proto::capability::{CapabilityError, WriteKey};
use keel_proto::v1::{ChunkHeader, WriteCapability};

/// The check every `WriteChunk` header passes before anything is reserved.
#[derive(Debug, Clone)]
pub struct WriteGate {
    /// The tokens of this server, to tell the cluster token from a client's.
    tokens: Tokens,
    /// Derived from the cluster token; `None` on an open cluster.
    key: Option<WriteKey>,
    /// This server's `--id`, which a capability must name.
    server: String,
}

impl WriteGate {
    /// The gate of server `server`, whose cluster token is `cluster_token`.
    pub fn new(tokens: Tokens, cluster_token: Option<&str>, server: &str) -> Self {
        WriteGate {
            tokens,
            key: cluster_token.map(WriteKey::from_cluster_token),
            server: server.to_owned(),
        }
    }

    /// Admits a write of `header` by a caller whose `authorization` header
    /// is `authorization`, presenting `cap`.
    pub fn admit(
        &self,
        authorization: Option<&[u8]>,
        header: &ChunkHeader,
        cap: Option<&WriteCapability>,
    ) -> Result<(), CapabilityError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let role = authorization.and_then(|h| self.tokens.role(h));
        if role == Some(Role::Cluster) {
            return Ok(());
        }
        key.check(cap, header, &self.server, SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use keel_proto::capability::Grant;

    use super::*;

    fn header(replication: u32) -> ChunkHeader {
        ChunkHeader {
            chunk: "c1".into(),
            size: 3,
            crc32c: 0,
            replication,
        }
    }

    #[test]
    fn the_cluster_token_needs_no_capability_a_client_token_does() {
        let tokens = Tokens::new(Some("cluster"), Some("client")).expect("tokens");
        let gate = WriteGate::new(tokens, Some("cluster"), "cs1");
        assert!(
            gate.admit(Some(b"Bearer cluster"), &header(16), None)
                .is_ok()
        );
        let e = gate
            .admit(Some(b"Bearer client"), &header(2), None)
            .expect_err("a client token without a capability");
        assert!(matches!(e, CapabilityError::Missing { .. }), "{e}");
        let key = WriteKey::from_cluster_token("cluster");
        let servers = vec!["cs1".to_owned()];
        let cap = key.grant(&Grant {
            chunk: "c1",
            servers: &servers,
            replication: 2,
            size: 3,
        });
        assert!(
            gate.admit(Some(b"Bearer client"), &header(2), Some(&cap))
                .is_ok()
        );
        let e = gate
            .admit(Some(b"Bearer client"), &header(16), Some(&cap))
            .expect_err("a raised factor");
        assert!(matches!(e, CapabilityError::WrongFactor { .. }), "{e}");
    }

    #[test]
    fn an_open_cluster_requires_none() {
        let gate = WriteGate::new(Tokens::default(), None, "cs1");
        assert!(gate.admit(None, &header(2), None).is_ok());
    }
}
