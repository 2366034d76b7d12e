//! Looking at the master from tests: snapshots of its view (to show that a
//! request changed nothing, or that a restarted master rebuilt the same
//! view), plain HTTP for `/healthz` and `/metrics`, and metric lookup.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{
    ListServersRequest, LocateChunkRequest, Move, RebalanceCheckRequest, RebalanceStatusRequest,
    RebalanceStatusResponse, ServerInfo, ServerState,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use crate::{master_client, wait_until};

/// One server as `ListServers` shows it, without the heartbeat age (which
/// changes by itself).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRow {
    /// Server id.
    pub id: String,
    /// Advertised address.
    pub address: String,
    /// Rack label.
    pub rack: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Used bytes as the master counts them.
    pub used: u64,
    /// Whole replicas held.
    pub chunks: u64,
    /// Alive or dead.
    pub alive: bool,
}

impl From<ServerInfo> for ServerRow {
    fn from(s: ServerInfo) -> Self {
        ServerRow {
            id: s.id,
            address: s.address,
            rack: s.rack,
            capacity: s.capacity_bytes,
            used: s.used_bytes,
            chunks: s.chunks,
            alive: s.state == ServerState::Alive as i32,
        }
    }
}

/// Replicas of one chunk as `(server, alive)`, in the master's order (live
/// first); `None` when the master answers NOT_FOUND.
pub type Replicas = Option<Vec<(String, bool)>>;

/// The master's view of the servers and of the listed chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// `ListServers`, in its order (sorted by id).
    pub servers: Vec<ServerRow>,
    /// `LocateChunk` of each listed chunk.
    pub chunks: BTreeMap<String, Replicas>,
}

/// `ListServers` of the master at `url`.
pub async fn servers(url: &str) -> Result<Vec<ServerRow>> {
    let mut m = master_client(url).await?;
    let r = m.list_servers(ListServersRequest {}).await?.into_inner();
    Ok(r.servers.into_iter().map(ServerRow::from).collect())
}

/// Waits until the servers' used bytes in the master's view add up to
/// `total`: every replica written straight to the chunk servers is counted.
pub async fn wait_used(url: &str, total: u64, timeout: std::time::Duration) -> Result<()> {
    wait_until(
        "the master to count every replica",
        timeout,
        || async move {
            let s = servers(url).await.unwrap_or_default();
            s.iter().map(|r| r.used).sum::<u64>() == total
        },
    )
    .await
}

/// The queue's status when every server is inside the band and no move is
/// pending or running; `None` otherwise or when the master does not answer.
pub async fn balanced_and_idle(m: &mut MasterClient<Channel>) -> Option<RebalanceStatusResponse> {
    let check = m.rebalance_check(RebalanceCheckRequest {}).await.ok()?;
    let s = m
        .rebalance_status(RebalanceStatusRequest {})
        .await
        .ok()?
        .into_inner();
    (check.into_inner().balanced && s.pending == 0 && s.running == 0).then_some(s)
}

/// `LocateChunk` of `chunk`, as `(server, alive)` pairs: live holders
/// first, each group by id. Where a chunk is, not the order readers are
/// sent in: that spreads equally loaded holders by a hash of chunk and
/// server (see [`locate_ordered`]).
pub async fn locate(url: &str, chunk: &str) -> Result<Replicas> {
    let mut replicas = locate_ordered(url, chunk).await?;
    if let Some(r) = &mut replicas {
        r.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    }
    Ok(replicas)
}

/// `LocateChunk` of `chunk` in the order the master gives readers.
pub async fn locate_ordered(url: &str, chunk: &str) -> Result<Replicas> {
    let mut m = master_client(url).await?;
    let req = LocateChunkRequest {
        chunk: chunk.to_owned(),
        rack: Default::default(),
    };
    match m.locate_chunk(req).await {
        Ok(r) => Ok(Some(
            r.into_inner()
                .replicas
                .into_iter()
                .map(|s| (s.id, s.alive))
                .collect(),
        )),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

/// Replicas at `servers`, given as `(server, alive)`, in that order.
pub fn at(servers: &[(&str, bool)]) -> Replicas {
    Some(servers.iter().map(|(s, a)| (s.to_string(), *a)).collect())
}

/// Waits up to `within` until the master at `url` locates `chunk` as `want`.
pub async fn wait_located(
    url: &str,
    chunk: &str,
    want: Replicas,
    within: std::time::Duration,
) -> Result<()> {
    wait_until(&format!("{chunk} located as {want:?}"), within, || {
        let (url, want) = (url.to_owned(), want.clone());
        async move { locate(&url, chunk).await.ok() == Some(want) }
    })
    .await
}

/// `RebalanceStatus` of the master at `url`.
pub async fn status(url: &str) -> Result<RebalanceStatusResponse> {
    let mut m = master_client(url).await?;
    Ok(m.rebalance_status(RebalanceStatusRequest {})
        .await?
        .into_inner())
}

/// A move of `chunk` from `from` to `to`, for `RebalanceExecute`.
pub fn mv(chunk: &str, from: &str, to: &str) -> Move {
    Move {
        chunk: chunk.into(),
        from: from.into(),
        to: to.into(),
    }
}

/// Waits until the master at `url` lists a replica of each of `chunks`
/// (written straight to chunk servers, they are known after a heartbeat).
pub async fn wait_known(url: &str, chunks: &[&str]) -> Result<()> {
    wait_until(
        &format!("the master to know {chunks:?}"),
        std::time::Duration::from_secs(10),
        || async move {
            for c in chunks {
                let known = locate(url, c)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|r| !r.is_empty());
                if !known {
                    return false;
                }
            }
            true
        },
    )
    .await
}

/// Servers and the replicas of every chunk in `chunks`.
pub async fn view(url: &str, chunks: &[&str]) -> Result<View> {
    let mut out = BTreeMap::new();
    for c in chunks {
        out.insert((*c).to_owned(), locate(url, c).await?);
    }
    Ok(View {
        servers: servers(url).await?,
        chunks: out,
    })
}

/// A minimal HTTP/1.0 GET: returns the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    http_exchange(addr, format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")).await
}

/// `POST path` with a JSON `body` over plaintext HTTP/1.0: status and body.
pub async fn http_post(addr: SocketAddr, path: &str, body: &str) -> Result<(u16, String)> {
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_exchange(addr, req).await
}

/// Sends one plaintext HTTP/1.0 request and reads the answer to its end:
/// the status code and the body.
async fn http_exchange(addr: SocketAddr, req: String) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).context("response is not UTF-8")?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no header/body separator in {text:?}");
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status code in {head:?}"))?;
    Ok((code, body.to_owned()))
}

/// The value of the sample `series` (name plus labels exactly as rendered,
/// e.g. `keel_server_alive{server="cs1"}`) in a Prometheus text body.
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `/metrics` of the master at `http_addr`, with one sample looked up.
pub async fn metric_of(http_addr: SocketAddr, series: &str) -> Result<Option<f64>> {
    let (code, body) = http_get(http_addr, "/metrics").await?;
    if code != 200 {
        bail!("/metrics answered {code}");
    }
    Ok(metric(&body, series))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_samples() {
        let body = "# TYPE a gauge\na 1\na_total 3\nb{server=\"cs1\"} 78.5\n";
        assert_eq!(metric(body, "a"), Some(1.0));
        assert_eq!(metric(body, "a_total"), Some(3.0));
        assert_eq!(metric(body, "b{server=\"cs1\"}"), Some(78.5));
        assert_eq!(metric(body, "b"), None);
    }
}
