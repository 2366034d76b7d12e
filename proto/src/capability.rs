//! Write capabilities: the master's signed permission to write one chunk, in
//! the spirit of HDFS block access tokens.
//!
//! `AllocateChunk` answers carry a [`WriteCapability`] naming the chunk, the
//! servers it was placed on, its replication factor, its size and an expiry,
//! signed with HMAC-SHA256. `WriteChunk` presents it; a chunk server admits
//! the write only if [`WriteKey::check`] passes, which checks, in this order:
//!
//! 1. the signature, in constant time (a forged or altered capability);
//! 2. the expiry, allowing [`CLOCK_LEEWAY`] of skew between master and server;
//! 3. the chunk it names is the chunk of the write's header;
//! 4. this server is among the servers it names;
//! 5. the header's replication factor and size are the ones signed.
//!
//! The key is derived from the cluster token (`--auth-token`), which master
//! and chunk servers share: `HMAC-SHA256(token, "keel write capability v1")`.
//! The token itself never signs anything, so a capability reveals nothing
//! usable against the token check.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;

use crate::v1::{ChunkHeader, WriteCapability};

/// How long a capability is valid after `AllocateChunk`. It only has to cover
/// the gap between allocation and the start of each replica's write stream
/// (the check runs on the header, not on every frame).
pub const CAPABILITY_TTL: Duration = Duration::from_secs(10 * 60);

/// Clock skew tolerated between the master that signs and the chunk server
/// that checks: a capability is refused only this long after its expiry.
pub const CLOCK_LEEWAY: Duration = Duration::from_secs(30);

/// Domain separation: the derived key signs capabilities and nothing else.
const KEY_LABEL: &[u8] = b"keel write capability v1";

/// Why a write's capability was refused. Every message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// No capability and no cluster token.
    #[error(
        "chunk {chunk}: WriteChunk needs the write capability AllocateChunk returned (or the cluster token); ask the master to allocate the chunk first"
    )]
    Missing {
        /// The chunk of the header.
        chunk: String,
    },
    /// The signature does not check.
    #[error(
        "chunk {chunk}: the write capability is forged or altered (its signature does not check)"
    )]
    Forged {
        /// The chunk of the header.
        chunk: String,
    },
    /// Past its expiry and the leeway.
    #[error(
        "chunk {chunk}: the write capability expired {ago_secs} s ago; allocate the chunk again"
    )]
    Expired {
        /// The chunk of the header.
        chunk: String,
        /// Seconds since the expiry.
        ago_secs: u64,
    },
    /// Signed for another chunk.
    #[error("chunk {chunk}: the write capability is for another chunk ({named})")]
    WrongChunk {
        /// The chunk of the header.
        chunk: String,
        /// The chunk the capability names.
        named: String,
    },
    /// This server is not among the ones the master chose.
    #[error(
        "chunk {chunk}: the write capability does not name this server ({server}); the master placed it on {named}"
    )]
    WrongServer {
        /// The chunk of the header.
        chunk: String,
        /// This server's id.
        server: String,
        /// The servers the capability names, comma-separated.
        named: String,
    },
    /// The header claims another factor than the master allocated.
    #[error(
        "chunk {chunk}: the header's replication {header} is not the {signed} the master allocated"
    )]
    WrongFactor {
        /// The chunk of the header.
        chunk: String,
        /// The header's factor.
        header: u32,
        /// The signed factor.
        signed: u32,
    },
    /// The header claims another size than the master allocated room for.
    #[error("chunk {chunk}: the header's size {header} is not the {signed} the master allocated")]
    WrongSize {
        /// The chunk of the header.
        chunk: String,
        /// The header's size.
        header: u64,
        /// The signed size.
        signed: u64,
    },
}

impl CapabilityError {
    /// The gRPC code: `UNAUTHENTICATED` for a capability that is not the
    /// master's, `PERMISSION_DENIED` for a genuine one that does not allow
    /// this write (or none at all).
    pub fn code(&self) -> tonic::Code {
        match self {
            CapabilityError::Forged { .. } => tonic::Code::Unauthenticated,
            _ => tonic::Code::PermissionDenied,
        }
    }
}

impl From<CapabilityError> for tonic::Status {
    fn from(e: CapabilityError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

/// What a capability grants, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<'a> {
    /// The chunk.
    pub chunk: &'a str,
    /// Ids of the servers it was placed on.
    pub servers: &'a [String],
    /// The allocated factor.
    pub replication: u32,
    /// The allocated size.
    pub size: u64,
}

/// The HMAC key that signs and checks capabilities.
#[derive(Clone)]
pub struct WriteKey {
    /// Derived from the cluster token.
    key: hmac::Key,
}

impl std::fmt::Debug for WriteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteKey(..)")
    }
}

impl WriteKey {
    /// The key derived from the cluster token.
    pub fn from_cluster_token(token: &str) -> Self {
        let outer = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
        let derived = hmac::sign(&outer, KEY_LABEL);
        WriteKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// Signs `grant`, valid until `expires`.
    pub fn sign(&self, grant: &Grant<'_>, expires: SystemTime) -> WriteCapability {
        let mut cap = WriteCapability {
            chunk: grant.chunk.to_owned(),
            servers: grant.servers.to_vec(),
            replication: grant.replication,
            size: grant.size,
            expires_unix_ms: unix_ms(expires),
            signature: Vec::new(),
        };
        cap.signature = hmac::sign(&self.key, &signed_bytes(&cap)).as_ref().to_vec();
        cap
    }

    /// Signs `grant` for [`CAPABILITY_TTL`] from now.
    pub fn grant(&self, grant: &Grant<'_>) -> WriteCapability {
        self.sign(grant, SystemTime::now() + CAPABILITY_TTL)
    }

    /// Admits a write of `header` on server `server` presenting `cap`, at
    /// `now`; the checks and their order are in the module docs.
    pub fn check(
        &self,
        cap: Option<&WriteCapability>,
        header: &ChunkHeader,
        server: &str,
        now: SystemTime,
    ) -> Result<(), CapabilityError> {
        let chunk = || header.chunk.clone();
        let cap = cap.ok_or_else(|| CapabilityError::Missing { chunk: chunk() })?;
        hmac::verify(&self.key, &signed_bytes(cap), &cap.signature)
            .map_err(|_| CapabilityError::Forged { chunk: chunk() })?;
        let late = unix_ms(now).saturating_sub(cap.expires_unix_ms);
        if late > CLOCK_LEEWAY.as_millis() as u64 {
            return Err(CapabilityError::Expired {
                chunk: chunk(),
                ago_secs: late / 1000,
            });
        }
        if cap.chunk != header.chunk {
            return Err(CapabilityError::WrongChunk {
                chunk: chunk(),
                named: cap.chunk.clone(),
            });
        }
        if !cap.servers.iter().any(|s| s == server) {
            return Err(CapabilityError::WrongServer {
                chunk: chunk(),
                server: server.to_owned(),
                named: cap.servers.join(","),
            });
        }
        if cap.replication != header.replication {
            return Err(CapabilityError::WrongFactor {
                chunk: chunk(),
                header: header.replication,
                signed: cap.replication,
            });
        }
        if cap.size != header.size {
            return Err(CapabilityError::WrongSize {
                chunk: chunk(),
                header: header.size,
                signed: cap.size,
            });
        }
        Ok(())
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The bytes the signature covers: a version tag, then every field, each
/// string length-prefixed, so no two different capabilities share them.
fn signed_bytes(cap: &WriteCapability) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + cap.chunk.len() + 16 * cap.servers.len());
    out.extend_from_slice(KEY_LABEL);
    let mut put = |b: &[u8]| {
        out.extend_from_slice(&(b.len() as u64).to_be_bytes());
        out.extend_from_slice(b);
    };
    put(cap.chunk.as_bytes());
    put(&(cap.servers.len() as u64).to_be_bytes());
    for s in &cap.servers {
        put(s.as_bytes());
    }
    put(&cap.replication.to_be_bytes());
    put(&cap.size.to_be_bytes());
    put(&cap.expires_unix_ms.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(chunk: &str, replication: u32, size: u64) -> ChunkHeader {
        ChunkHeader {
            chunk: chunk.into(),
            size,
            crc32c: 7,
            replication,
        }
    }

    fn servers() -> Vec<String> {
        vec!["cs1".into(), "cs2".into()]
    }

    fn granted(key: &WriteKey, expires: SystemTime) -> WriteCapability {
        let servers = servers();
        let grant = Grant {
            chunk: "c1",
            servers: &servers,
            replication: 2,
            size: 10,
        };
        key.sign(&grant, expires)
    }

    fn refusal(key: &WriteKey, cap: &WriteCapability, h: &ChunkHeader, on: &str) -> String {
        let now = SystemTime::now();
        match key.check(Some(cap), h, on, now) {
            Ok(()) => "admitted".into(),
            Err(e) => format!("{:?}", e.code()) + ": " + &e.to_string(),
        }
    }

    #[test]
    fn a_genuine_capability_admits_its_write_on_each_named_server() {
        let key = WriteKey::from_cluster_token("s3cret");
        let cap = key.grant(&Grant {
            chunk: "c1",
            servers: &servers(),
            replication: 2,
            size: 10,
        });
        for on in ["cs1", "cs2"] {
            assert_eq!(refusal(&key, &cap, &header("c1", 2, 10), on), "admitted");
        }
    }

    #[test]
    fn each_check_refuses_with_its_own_sentence() {
        let key = WriteKey::from_cluster_token("s3cret");
        let cap = granted(&key, SystemTime::now() + CAPABILITY_TTL);
        let h = header("c1", 2, 10);
        let cases: Vec<(WriteCapability, ChunkHeader, &str, &str)> = vec![
            (
                cap.clone(),
                header("c2", 2, 10),
                "cs1",
                "for another chunk (c1)",
            ),
            (
                cap.clone(),
                h.clone(),
                "cs3",
                "does not name this server (cs3)",
            ),
            (
                cap.clone(),
                header("c1", 16, 10),
                "cs1",
                "replication 16 is not the 2",
            ),
            (
                cap.clone(),
                header("c1", 2, 99),
                "cs1",
                "size 99 is not the 10",
            ),
            (
                WriteCapability {
                    replication: 16,
                    ..cap.clone()
                },
                header("c1", 16, 10),
                "cs1",
                "Unauthenticated: chunk c1: the write capability is forged",
            ),
            (
                granted(&WriteKey::from_cluster_token("other"), SystemTime::now()),
                h.clone(),
                "cs1",
                "forged or altered",
            ),
            (
                granted(&key, SystemTime::now() - Duration::from_secs(120)),
                h.clone(),
                "cs1",
                "PermissionDenied: chunk c1: the write capability expired 120 s ago",
            ),
        ];
        for (cap, h, on, want) in cases {
            let got = refusal(&key, &cap, &h, on);
            assert!(got.contains(want), "want {want:?} in {got:?}");
        }
        let missing = key.check(None, &h, "cs1", SystemTime::now());
        assert!(matches!(missing, Err(CapabilityError::Missing { .. })));
    }

    #[test]
    fn a_capability_just_expired_passes_within_the_leeway() {
        let key = WriteKey::from_cluster_token("s3cret");
        let cap = granted(&key, SystemTime::now() - CLOCK_LEEWAY / 2);
        assert_eq!(refusal(&key, &cap, &header("c1", 2, 10), "cs1"), "admitted");
    }

    #[test]
    fn a_capability_costs_about_a_hundred_bytes_on_the_wire() {
        use prost::Message;
        let key = WriteKey::from_cluster_token("s3cret");
        let servers: Vec<String> = ["cs1", "cs2", "cs3"].map(String::from).to_vec();
        let cap = key.grant(&Grant {
            chunk: "photos-000123.bin",
            servers: &servers,
            replication: 3,
            size: 64 << 20,
        });
        let len = cap.encoded_len();
        assert!((70..=100).contains(&len), "{len} bytes");
    }

    #[test]
    fn server_lists_cannot_be_reshuffled_into_another_signature() {
        // "ab" + "c" and "a" + "bc" must sign differently.
        let key = WriteKey::from_cluster_token("s3cret");
        let sign = |servers: Vec<String>| {
            key.sign(
                &Grant {
                    chunk: "c1",
                    servers: &servers,
                    replication: 2,
                    size: 10,
                },
                UNIX_EPOCH,
            )
            .signature
        };
        assert_ne!(
            sign(vec!["ab".into(), "c".into()]),
            sign(vec!["a".into(), "bc".into()])
        );
    }
}
