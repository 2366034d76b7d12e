//! What the demo prints: its narration, the servers table before and after,
//! the band, how to poke the running cluster, and the `--json` summary.

use std::net::SocketAddr;

use keel_proto::v1::{
    ListServersRequest, RebalanceCheckRequest, RebalanceCheckResponse, ServerLoad,
};
use serde::Serialize;

use crate::client::Master;
use crate::error::Error;
use crate::output;
use crate::rebalance::run::WaitJson;
use crate::servers::{self, ServerJson};

/// Where the story goes: stdout, or stderr with `--json` (stdout then
/// carries only the JSON summary).
#[derive(Debug, Clone, Copy)]
pub struct Narrator {
    json: bool,
}

impl Narrator {
    /// A narrator for `--json` or not.
    pub fn new(json: bool) -> Self {
        Narrator { json }
    }

    /// Prints `text` as is: tables, commands to copy.
    pub fn text(&self, text: &str) -> Result<(), Error> {
        if self.json {
            output::print_stderr(text);
            Ok(())
        } else {
            output::print_stdout(text)
        }
    }

    /// Prints one sentence, wrapped on word boundaries to the terminal.
    pub fn line(&self, line: &str) -> Result<(), Error> {
        let width = if self.json {
            output::stderr_prose_width()
        } else {
            output::stdout_prose_width()
        };
        self.text(&format!("{}\n", output::wrap(line, width)))
    }
}

/// One started daemon, as a line: name, pid, addresses, capacity.
pub fn daemon_line(name: &str, pid: u32, grpc: SocketAddr, extra: &str) -> String {
    format!("  {name:<7} pid {pid:<8} grpc {grpc:<21} {extra}")
        .trim_end()
        .to_owned()
}

/// The `servers` table (with bars) and the cluster average.
pub async fn servers_table(master: &Master) -> Result<(String, Vec<ServerJson>), Error> {
    let resp = master
        .call(
            "list servers",
            master.client.clone().list_servers(ListServersRequest {}),
        )
        .await?;
    let json = resp.servers.iter().map(ServerJson::from).collect();
    Ok((servers::render(&resp, output::stdout_width()), json))
}

/// `RebalanceCheck`.
pub async fn check(master: &Master) -> Result<RebalanceCheckResponse, Error> {
    master
        .call(
            "rebalance check",
            master
                .client
                .clone()
                .rebalance_check(RebalanceCheckRequest {}),
        )
        .await
}

/// `average 41.4%, band 31.4% to 51.4% (±10 points): overloaded cs1, cs2; underloaded cs4`.
pub fn band_line(r: &RebalanceCheckResponse) -> String {
    let (avg, th) = (r.average_utilization_pct, r.threshold_pct);
    let names = |v: &[ServerLoad]| {
        v.iter()
            .map(|l| l.server.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut line = format!(
        "average {avg:.1}%, band {:.1}% to {:.1}% (±{th:.0} points)",
        (avg - th).max(0.0),
        avg + th
    );
    let mut outside = Vec::new();
    if !r.overloaded.is_empty() {
        outside.push(format!("overloaded {}", names(&r.overloaded)));
    }
    if !r.underloaded.is_empty() {
        outside.push(format!("underloaded {}", names(&r.underloaded)));
    }
    if outside.is_empty() {
        line.push_str(": every server inside");
    } else {
        line.push_str(": ");
        line.push_str(&outside.join("; "));
    }
    line
}

/// `balanced: every server within ±10 points of the average (30.3%)`, or
/// `None` when a server is outside the band.
pub fn balanced_line(r: &RebalanceCheckResponse) -> Option<String> {
    (r.overloaded.is_empty() && r.underloaded.is_empty()).then(|| {
        format!(
            "balanced: every server within ±{:.0} points of the average ({:.1}%)",
            r.threshold_pct, r.average_utilization_pct
        )
    })
}

/// How to run this very keelctl from the current directory: `cargo run`
/// puts nothing on `PATH`, so the hints name the binary's path.
pub fn keelctl_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "keelctl".into();
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    exe.strip_prefix(&cwd).unwrap_or(&exe).display().to_string()
}

/// The sentence before [`poke`]'s commands.
pub fn poke_intro(dir: &std::path::Path) -> String {
    format!(
        "\ncluster is running (data and logs in {}, removed on exit). Try, in another terminal:",
        dir.display()
    )
}

/// How to poke the running cluster, one command a line, never wrapped (they
/// are there to be copied); `keelctl` is the command that runs keelctl.
pub fn poke(grpc: SocketAddr, http: Option<SocketAddr>, keelctl: &str) -> String {
    let master_flag = if grpc.port() == 7000 && grpc.ip().is_loopback() {
        String::new()
    } else {
        format!(" --master http://{grpc}")
    };
    let mut out = format!(
        "  grpcurl -plaintext -d '{{}}' {grpc} keel.v1.Master/RebalanceCheck\n\
         \x20 {keelctl}{master_flag} servers\n\
         \x20 {keelctl}{master_flag} rebalance status\n"
    );
    if let Some(h) = http {
        out.push_str(&format!("  curl -s http://{h}/metrics\n"));
    }
    out.push_str("press Ctrl-C to stop it\n");
    out
}

/// `keelctl --json demo`: printed once the cluster is balanced.
#[derive(Debug, Serialize)]
pub struct DemoJson {
    /// The master's gRPC URL.
    pub master: String,
    /// The master's HTTP address (`/metrics`).
    pub http: Option<String>,
    /// Process ids of the daemons, by name.
    pub pids: std::collections::BTreeMap<String, u32>,
    /// Chunks written.
    pub chunks: usize,
    /// Their bytes (one replica each).
    pub bytes: u64,
    /// The servers before cs5 joined.
    pub before: Vec<ServerJson>,
    /// The servers once balanced.
    pub after: Vec<ServerJson>,
    /// Band half-width in points.
    pub threshold_pct: f64,
    /// How the rebalance went.
    pub rebalance: WaitJson,
    /// With `--exit-when-balanced`: chunks read back and verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_chunks: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(server: &str, pct: f64) -> ServerLoad {
        ServerLoad {
            server: server.into(),
            utilization_pct: pct,
            used_bytes: 0,
            capacity_bytes: 0,
            read_bytes_per_sec: Default::default(),
            reads_per_sec: Default::default(),
        }
    }

    #[test]
    fn band_and_balanced_lines() {
        let mut r = RebalanceCheckResponse {
            average_utilization_pct: 41.44,
            threshold_pct: 10.0,
            overloaded: vec![load("cs1", 75.0), load("cs2", 74.0)],
            underloaded: vec![load("cs4", 19.0)],
            ..Default::default()
        };
        assert_eq!(
            band_line(&r),
            "average 41.4%, band 31.4% to 51.4% (±10 points): overloaded cs1, cs2; underloaded cs4"
        );
        assert_eq!(balanced_line(&r), None);
        r.overloaded.clear();
        r.underloaded.clear();
        assert!(band_line(&r).ends_with(": every server inside"));
        assert_eq!(
            balanced_line(&r).as_deref(),
            Some("balanced: every server within ±10 points of the average (41.4%)")
        );
    }

    #[test]
    fn poke_names_the_master_only_off_the_default_port() {
        let dir = std::path::Path::new("/tmp/d");
        let text = poke("127.0.0.1:7000".parse().expect("addr"), None, "keelctl");
        assert!(
            text.contains(
                "grpcurl -plaintext -d '{}' 127.0.0.1:7000 keel.v1.Master/RebalanceCheck"
            )
        );
        assert!(text.contains("  keelctl servers\n"), "{text}");
        assert!(poke_intro(dir).contains("cluster is running (data and logs in /tmp/d,"));
        let text = poke(
            "127.0.0.1:4100".parse().expect("addr"),
            Some("127.0.0.1:4101".parse().expect("addr")),
            "keelctl",
        );
        assert!(
            text.contains("keelctl --master http://127.0.0.1:4100 servers"),
            "{text}"
        );
        assert!(
            text.contains("curl -s http://127.0.0.1:4101/metrics"),
            "{text}"
        );
    }

    #[test]
    fn daemon_lines_carry_the_pid() {
        let line = daemon_line(
            "cs1",
            4242,
            "127.0.0.1:39211".parse().expect("addr"),
            "capacity 256.0 MiB",
        );
        assert_eq!(
            line,
            "  cs1     pid 4242     grpc 127.0.0.1:39211       capacity 256.0 MiB"
        );
    }
}
