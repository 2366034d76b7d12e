//! Two credentials: every method of both services, called with no token, a
//! client token and the cluster token, against a master and a chunk server
//! that read both tokens from files. The request bytes are not protobuf, so
//! a call the token check admits ends in the service's decode error and
//! changes nothing; a refused one gets UNAUTHENTICATED (no or a wrong token)
//! or PERMISSION_DENIED (a client token on a cluster-only method, naming the
//! method). Also: keelctl with `--token-file`, secrets absent from command
//! lines, and an empty token file refused at start-up.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use keel_tests::faults::Shape;
use keel_tests::faults::raw::RawCodec;
use keel_tests::{Cluster, CsOpts, wait_until};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

const CLUSTER: &str = "cluster-secret-7f3a";
const CLIENT: &str = "client-secret-91bc";

/// Every method, its daemon (`true` = master) and shape, and whether a
/// client token may call it.
const METHODS: [(bool, &str, Shape, bool); 18] = [
    (true, "Heartbeat", Shape::Unary, false),
    (true, "ListServers", Shape::Unary, true),
    (true, "LocateChunk", Shape::Unary, true),
    (true, "AllocateChunk", Shape::Unary, true),
    (true, "RebalanceCheck", Shape::Unary, true),
    (true, "RebalanceExecute", Shape::Unary, false),
    (true, "RebalancePlan", Shape::Unary, false),
    (true, "RebalanceRun", Shape::Unary, false),
    (true, "RebalanceStatus", Shape::Unary, true),
    (true, "RebalancePause", Shape::Unary, false),
    (true, "RebalanceResume", Shape::Unary, false),
    (true, "ReportCorruption", Shape::Unary, true),
    (false, "WriteChunk", Shape::ClientStream, true),
    (false, "ReadChunk", Shape::ServerStream, true),
    (false, "CopyChunk", Shape::Unary, false),
    (false, "DeleteChunk", Shape::Unary, false),
    (false, "StatChunk", Shape::Unary, true),
    (false, "ServerStatus", Shape::Unary, false),
];

/// Calls `path` with undecodable bytes and `token` (if any); returns the code
/// and message the call ended with.
async fn call(url: &str, path: &str, shape: Shape, token: Option<&str>) -> Result<(Code, String)> {
    let channel = tonic::transport::Channel::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let path = PathAndQuery::try_from(path)?;
    let junk = vec![0xffu8; 11];
    let r = match shape {
        Shape::Unary => grpc
            .unary(with_token(junk, token)?, path, RawCodec)
            .await
            .map(|_| ()),
        Shape::ClientStream => {
            let req = with_token(tokio_stream::iter(vec![junk]), token)?;
            grpc.client_streaming(req, path, RawCodec).await.map(|_| ())
        }
        Shape::ServerStream => {
            let req = with_token(junk, token)?;
            match grpc.server_streaming(req, path, RawCodec).await {
                Ok(s) => s.into_inner().message().await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
    };
    Ok(match r {
        Ok(()) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_owned()),
    })
}

/// `msg` carrying `authorization: Bearer <token>` when a token is given.
fn with_token<T>(msg: T, token: Option<&str>) -> Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
    }
    Ok(req)
}

fn write_secret(dir: &Path, name: &str, secret: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n"))?;
    Ok(path.display().to_string())
}

/// A master and a chunk server whose tokens come from files.
fn cluster() -> Result<Cluster> {
    let mut c = Cluster::new()?;
    let auth = write_secret(c.dir.path(), "cluster.token", CLUSTER)?;
    let client = write_secret(c.dir.path(), "client.token", CLIENT)?;
    let flags = [
        "--auth-token-file".to_owned(),
        auth,
        "--client-token-file".to_owned(),
        client,
    ];
    c.start_master_with(&flags)?;
    let opts = CsOpts {
        extra: flags.to_vec(),
        ..CsOpts::default()
    };
    c.add_chunkserver("cs1", opts)?;
    Ok(c)
}

#[tokio::test]
async fn every_method_with_every_credential() -> Result<()> {
    let c = cluster()?;
    let master = c.master_url();
    let cs = c.chunkservers["cs1"].url();
    let mut checked = 0;
    for (on_master, method, shape, client_ok) in METHODS {
        let (url, service) = if on_master {
            (&master, "keel.v1.Master")
        } else {
            (&cs, "keel.v1.ChunkServer")
        };
        let path = format!("/{service}/{method}");
        let (code, msg) = call(url, &path, shape, None).await?;
        assert_eq!(code, Code::Unauthenticated, "{path} without a token: {msg}");
        let (code, msg) = call(url, &path, shape, Some("guess")).await?;
        assert_eq!(
            code,
            Code::Unauthenticated,
            "{path} with a wrong token: {msg}"
        );
        let (code, msg) = call(url, &path, shape, Some(CLUSTER)).await?;
        assert_eq!(code, Code::Internal, "{path} with the cluster token: {msg}");
        let (code, msg) = call(url, &path, shape, Some(CLIENT)).await?;
        if client_ok {
            assert_eq!(code, Code::Internal, "{path} with a client token: {msg}");
        } else {
            assert_eq!(
                code,
                Code::PermissionDenied,
                "{path} with a client token: {msg}"
            );
            assert!(
                msg.contains(&path) && msg.contains("cluster token"),
                "names the method and the token it needs: {msg}"
            );
        }
        checked += 1;
    }
    // A method this build does not know is cluster-only by default.
    let (code, msg) = call(
        &master,
        "/keel.v1.Master/DrainServer",
        Shape::Unary,
        Some(CLIENT),
    )
    .await?;
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    // Health stays open.
    let (code, msg) = call(&master, "/grpc.health.v1.Health/Check", Shape::Unary, None).await?;
    assert_eq!(code, Code::Internal, "health is not token-checked: {msg}");
    println!("{checked} methods x 4 credentials checked");
    Ok(())
}

#[tokio::test]
async fn keelctl_reads_its_token_from_a_file_and_no_secret_is_on_a_command_line() -> Result<()> {
    let c = cluster()?;
    let client = write_secret(c.dir.path(), "keelctl.token", CLIENT)?;
    wait_until("cs1 registered", Duration::from_secs(20), || async {
        c.keelctl(&["--token-file", &client, "--json", "servers"])
            .is_ok_and(|(code, out, _)| code == 0 && out.contains("\"alive\""))
    })
    .await?;
    let (code, out, err) = c.keelctl(&["--token-file", &client, "--json", "servers"])?;
    assert_eq!(code, 0, "client token lists servers: {err}");
    assert!(out.contains("\"cs1\""), "{out}");
    let (code, _, err) = c.keelctl(&["--token-file", &client, "rebalance", "pause"])?;
    assert_eq!(code, 1, "a client token cannot pause the balancer");
    assert!(
        err.contains("permission denied") && err.contains("RebalancePause"),
        "{err}"
    );
    let cluster_file = c.dir.path().join("cluster.token");
    let cluster_file = cluster_file.display().to_string();
    let (code, _, err) = c.keelctl(&["--token-file", &cluster_file, "rebalance", "pause"])?;
    assert_eq!(code, 0, "the cluster token pauses it: {err}");
    let (code, _, err) = c.keelctl(&["--token-file", "/nonexistent/token", "servers"])?;
    assert_eq!(code, 1);
    assert!(err.contains("--token-file"), "{err}");

    for d in c.master.iter().chain(c.chunkservers.values()) {
        let pid = d.pid().context("running")?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !cmdline.contains(CLUSTER) && !cmdline.contains(CLIENT),
            "{cmdline}"
        );
    }
    Ok(())
}

/// Runs `keel-master` with `args` (on port 0) and returns its exit code and
/// standard error, for flags it must refuse before it listens.
fn refused_master(args: &[&str]) -> Result<(Option<i32>, String)> {
    let out = std::process::Command::new(keel_tests::bin("keel-master"))
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn an_empty_token_file_is_refused_at_start_up() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let empty = write_secret(dir.path(), "empty.token", "")?;
    let (code, err) = refused_master(&["--auth-token-file", &empty])?;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--auth-token-file") && err.contains("empty"),
        "{err}"
    );
    let client = write_secret(dir.path(), "client.token", CLIENT)?;
    let (code, err) = refused_master(&["--client-token-file", &client])?;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("needs --auth-token"), "{err}");
    Ok(())
}
