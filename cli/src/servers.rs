//! `keelctl servers`: every chunk server the master knows, with its load.

use keel_proto::v1::{ListServersRequest, ListServersResponse, ServerInfo, ServerState};
use serde::Serialize;

use crate::client::Clients;
use crate::error::Error;
use crate::output::{self, Align, Cell, Narrow, Parts, Table};

/// One server in `--json` output. The keys are public contract.
#[derive(Debug, Serialize, PartialEq)]
pub struct ServerJson {
    /// Server id.
    pub id: String,
    /// gRPC address.
    pub address: String,
    /// Failure-domain label (empty when unset).
    pub rack: String,
    /// Bytes counted as 100 %.
    pub capacity_bytes: u64,
    /// Bytes of the chunks it holds.
    pub used_bytes: u64,
    /// `100 * used / capacity`.
    pub utilization_pct: f64,
    /// Number of chunks it holds.
    pub chunks: u64,
    /// `alive`, `dead`, `draining` or `drained`.
    pub state: &'static str,
    /// Client reads per second (migration reads by peers not counted), as
    /// its last heartbeat reported them. Beside the contract keys.
    pub reads_per_sec: f64,
    /// Bytes per second those reads served.
    pub read_bytes_per_sec: f64,
    /// p99 of its client read service time, milliseconds (0: no samples).
    pub read_p99_ms: f64,
    /// `hot`, `cold` or `inside` the load band; `null` from a master that
    /// does not report load.
    pub load: Option<String>,
}

impl From<&ServerInfo> for ServerJson {
    fn from(s: &ServerInfo) -> Self {
        ServerJson {
            id: s.id.clone(),
            address: s.address.clone(),
            rack: s.rack.clone(),
            capacity_bytes: s.capacity_bytes,
            used_bytes: s.used_bytes,
            utilization_pct: s.utilization_pct,
            chunks: s.chunks,
            state: state_name(s.state),
            reads_per_sec: s.reads_per_sec,
            read_bytes_per_sec: s.read_bytes_per_sec,
            read_p99_ms: s.read_p99_ms,
            load: load_known(s).then(|| s.load.clone()),
        }
    }
}

/// Whether the master placed the server against the load band; a master
/// that predates read load leaves `load` empty, and its zeros mean nothing.
pub fn load_known(s: &ServerInfo) -> bool {
    !s.load.is_empty()
}

/// The state's name; anything the master reports that this keelctl does
/// not know counts as `dead`.
pub fn state_name(state: i32) -> &'static str {
    match ServerState::try_from(state) {
        Ok(ServerState::Alive) => "alive",
        Ok(ServerState::Draining) => "draining",
        Ok(ServerState::Drained) => "drained",
        _ => "dead",
    }
}

/// Runs `keelctl servers`.
pub async fn run(clients: &Clients, json: bool) -> Result<(), Error> {
    let master = clients.master().await?;
    let resp = master
        .call(
            "list servers",
            master.client.clone().list_servers(ListServersRequest {}),
        )
        .await?;
    if json {
        let servers: Vec<ServerJson> = resp.servers.iter().map(ServerJson::from).collect();
        output::print_json(&servers)
    } else {
        let table = render(&resp, output::stdout_width());
        output::print_stdout(&format!("{table}{}", leader_line(&resp)))
    }
}

/// With several masters: which one leads, and whether it answered.
pub fn leader_line(resp: &ListServersResponse) -> String {
    leader_text(&resp.leader, resp.term, resp.answered_by_leader)
}

/// The leader line of `servers` and `rebalance status`, from a reply's
/// `leader`, `term` and `answered_by_leader`: empty for a single master
/// (which always answers as the leader, with no address); "none known" when
/// a standby answered and knows no leader (its term is then 0 as well, so
/// the term cannot tell the two apart).
pub fn leader_text(leader: &str, term: u64, answered_by_leader: bool) -> String {
    match (leader, answered_by_leader) {
        ("", true) => String::new(),
        ("", false) => "leader: none known right now\n".into(),
        (leader, true) => format!("leader: {leader} (term {term}), answering\n"),
        (leader, false) => format!("leader: {leader} (term {term}); answered by a standby\n"),
    }
}

/// Columns of the table, in order; [`NARROWING`] and [`row`] index them.
const COLUMNS: [(&str, Align); 13] = [
    ("ID", Align::Left),
    ("ADDRESS", Align::Left),
    ("RACK", Align::Left),
    ("CAPACITY", Align::Right),
    ("USED", Align::Right),
    ("UTILIZATION", Align::Left),
    ("CHUNKS", Align::Right),
    ("MIGRATE", Align::Right),
    ("READS", Align::Right),
    ("READ BYTES", Align::Right),
    ("P99", Align::Right),
    ("LOAD", Align::Left),
    ("STATE", Align::Left),
];

/// What gives way on a narrow terminal, first to last: bars become
/// percentages, addresses lose their scheme, then the columns that matter
/// least go. Reads/s and the hot/cold mark outlast the rest of the load
/// figures: they are what says where traffic goes.
const NARROWING: [Narrow; 10] = [
    Narrow::Shorten(5),
    Narrow::Shorten(1),
    Narrow::Drop(7),
    Narrow::Drop(9),
    Narrow::Drop(3),
    Narrow::Drop(10),
    Narrow::Drop(2),
    Narrow::Drop(1),
    Narrow::Drop(6),
    Narrow::Drop(8),
];

/// The human table (with each server's migration rate and read load) plus
/// the cluster average and, when the master reports load, the reads line,
/// fitted to `width` columns (see [`NARROWING`]).
pub fn render(resp: &ListServersResponse, width: Option<usize>) -> String {
    if resp.servers.is_empty() {
        return "no chunk servers have registered with the master\n".into();
    }
    // A master that reports no load fills those columns with dashes: on a
    // narrow terminal they are the first to go.
    let steps: Vec<Narrow> = match resp.servers.iter().any(load_known) {
        true => NARROWING.to_vec(),
        false => (8..=11).map(Narrow::Drop).chain(NARROWING).collect(),
    };
    let mut t = Table::new(&COLUMNS).narrowing(&steps);
    for s in &resp.servers {
        t.row(row(s));
    }
    let alive = resp
        .servers
        .iter()
        .filter(|s| state_name(s.state) != "dead")
        .count();
    let mut average = Parts::default();
    average
        .push(0, "", "cluster average")
        .push(
            1,
            " ",
            output::bar(resp.average_utilization_pct, output::BAR_WIDTH),
        )
        .push(0, " ", output::pct(resp.average_utilization_pct))
        .push(
            0,
            " ",
            format!("over {alive} of {} servers alive", resp.servers.len()),
        );
    let mut out = format!("{}\n{}\n", t.render_in(width), average.fit(width));
    if let Some(reads) = reads_line(&resp.servers) {
        out.push_str(&reads.fit(width));
        out.push('\n');
    }
    out
}

/// One server's cells, in [`COLUMNS`] order.
fn row(s: &ServerInfo) -> Vec<Cell> {
    let address = s.address.as_str();
    let host = address.split_once("://").map_or(address, |(_, rest)| rest);
    let known = load_known(s);
    let figure = |text: String| Cell::from(if known { text } else { "-".into() });
    vec![
        Cell::from(s.id.as_str()),
        Cell::short(address, host),
        Cell::from(if s.rack.is_empty() { "-" } else { &s.rack }),
        Cell::from(output::size(s.capacity_bytes)),
        Cell::from(output::size(s.used_bytes)),
        Cell::short(
            output::utilization(s.utilization_pct),
            output::pct(s.utilization_pct),
        ),
        Cell::from(s.chunks.to_string()),
        Cell::from(match s.migrate_bandwidth_bytes_per_second {
            0 => "-".to_owned(),
            rate => format!("{}/s", output::size(rate)),
        }),
        figure(output::per_sec(s.reads_per_sec)),
        figure(output::bytes_per_sec(s.read_bytes_per_sec)),
        figure(output::millis(s.read_p99_ms)),
        Cell::from(load_mark(s)),
        Cell::from(state_name(s.state)),
    ]
}

/// `hot` or `cold` for a server outside the load band; blank inside it, so
/// the outliers stand out; `-` when the master does not say.
fn load_mark(s: &ServerInfo) -> &str {
    match s.load.as_str() {
        "" => "-",
        "inside" => "",
        other => other,
    }
}

/// `client reads 180.0/s (11.2MiB/s), 45.0/s per live server; hot cs1;
/// cold cs4`: the cluster's read load, when the master reports it.
fn reads_line(servers: &[ServerInfo]) -> Option<Parts> {
    let live: Vec<&ServerInfo> = servers
        .iter()
        .filter(|s| state_name(s.state) != "dead" && load_known(s))
        .collect();
    if live.is_empty() {
        return None;
    }
    let reads: f64 = live.iter().map(|s| s.reads_per_sec).sum();
    let bytes: f64 = live.iter().map(|s| s.read_bytes_per_sec).sum();
    let named = |mark: &str| {
        let ids: Vec<&str> = live
            .iter()
            .filter(|s| s.load == mark)
            .map(|s| s.id.as_str())
            .collect();
        (!ids.is_empty()).then(|| format!("{mark} {}", ids.join(", ")))
    };
    let mut line = Parts::default();
    line.push(0, "", format!("client reads {}", output::per_sec(reads)))
        .push(3, " ", format!("({})", output::bytes_per_sec(bytes)))
        .push(
            2,
            ", ",
            format!(
                "{} per live server",
                output::per_sec(reads / live.len() as f64)
            ),
        );
    for part in [named("hot"), named("cold")].into_iter().flatten() {
        line.push(1, "; ", part);
    }
    Some(line)
}

#[cfg(test)]
#[path = "servers_tests.rs"]
mod tests;
