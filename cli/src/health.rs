//! `keelctl health [URL]`: the standard `grpc.health.v1.Health/Check` on any
//! Keel daemon (master or chunk server), for container health checks in
//! images that have no shell or curl.
//!
//! Prints `SERVING` and succeeds, or says in one line why not and fails.
//! Health is open even on token-protected daemons, so no token is sent.

use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tonic::transport::{ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::client::normalize_url;
use crate::error::{Error, root_cause};
use crate::output;

/// `keelctl health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// gRPC address of the daemon to check (default: `--master`).
    pub url: Option<String>,
}

/// Connect plus answer must fit in this: a health check that hangs is a
/// failed health check.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `--json` output of a healthy daemon.
#[derive(Debug, Serialize, PartialEq)]
pub struct HealthJson {
    /// The address checked.
    pub address: String,
    /// Always `SERVING` (anything else is an error).
    pub status: &'static str,
}

/// Runs `keelctl health`: `url` is the daemon to check.
pub async fn run(url: &str, json: bool, tls: Option<&ClientTlsConfig>) -> Result<(), Error> {
    let url = normalize_url(url, tls.is_some())
        .map_err(|e| Error::Usage(format!("invalid URL {url:?}: {e}")))?;
    let peer = format!("the daemon at {url}");
    let status = match tokio::time::timeout(HEALTH_TIMEOUT, check(&url, &peer, tls)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(Error::Unreachable {
                peer,
                reason: format!("no answer within {}", output::age(HEALTH_TIMEOUT)),
            });
        }
    };
    if status != ServingStatus::Serving {
        return Err(Error::NotServing {
            peer,
            status: status_name(status).to_owned(),
        });
    }
    if json {
        output::print_json(&HealthJson {
            address: url,
            status: status_name(status),
        })
    } else {
        output::print_stdout("SERVING\n")
    }
}

/// One `Health/Check` for the whole server (service `""`).
async fn check(
    url: &str,
    peer: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<ServingStatus, Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::Usage(format!("invalid URL {url:?}: {}", root_cause(&e))))?;
    let channel = crate::tls::endpoint(endpoint, tls)
        .map_err(Error::Usage)?
        .connect_timeout(HEALTH_TIMEOUT)
        .connect()
        .await
        .map_err(|e| Error::Unreachable {
            peer: peer.to_owned(),
            reason: root_cause(&e),
        })?;
    let req = HealthCheckRequest {
        service: String::new(),
    };
    let resp = HealthClient::new(channel)
        .check(req)
        .await
        .map_err(|s| Error::rpc(peer, "health check", s))?
        .into_inner();
    Ok(ServingStatus::try_from(resp.status).unwrap_or(ServingStatus::Unknown))
}

/// The protocol's upper-case name of a status.
pub fn status_name(s: ServingStatus) -> &'static str {
    match s {
        ServingStatus::Serving => "SERVING",
        ServingStatus::NotServing => "NOT_SERVING",
        ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        ServingStatus::Unknown => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_follow_the_protocol() {
        assert_eq!(status_name(ServingStatus::Serving), "SERVING");
        assert_eq!(status_name(ServingStatus::NotServing), "NOT_SERVING");
        let v = serde_json::to_value(HealthJson {
            address: "http://h:1".into(),
            status: "SERVING",
        })
        .expect("encodes");
        assert_eq!(
            v,
            serde_json::json!({"address": "http://h:1", "status": "SERVING"})
        );
    }

    #[tokio::test]
    async fn nothing_listening_fails_fast_with_one_line() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let started = std::time::Instant::now();
        let err = run(&format!("127.0.0.1:{port}"), false, None)
            .await
            .expect_err("nothing listens");
        assert!(started.elapsed() < HEALTH_TIMEOUT + Duration::from_secs(1));
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach the daemon at http://127.0.0.1:"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        assert!(run("https://h:1", false, None).await.is_err());
    }
}
