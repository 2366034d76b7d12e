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
        }
    }
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

/// The human table (with each server's migration rate) plus the cluster
/// average, fitted to `width` columns:
/// bars give way to percentages, then the scheme of addresses, then the
/// columns that matter least.
pub fn render(resp: &ListServersResponse, width: Option<usize>) -> String {
    if resp.servers.is_empty() {
        return "no chunk servers have registered with the master\n".into();
    }
    let mut t = Table::new(&[
        ("ID", Align::Left),
        ("ADDRESS", Align::Left),
        ("RACK", Align::Left),
        ("CAPACITY", Align::Right),
        ("USED", Align::Right),
        ("UTILIZATION", Align::Left),
        ("CHUNKS", Align::Right),
        ("MIGRATE", Align::Right),
        ("STATE", Align::Left),
    ])
    .narrowing(&[
        Narrow::Shorten(5),
        Narrow::Shorten(1),
        Narrow::Drop(7),
        Narrow::Drop(3),
        Narrow::Drop(2),
        Narrow::Drop(1),
        Narrow::Drop(6),
    ]);
    for s in &resp.servers {
        let address = s.address.as_str();
        let host = address.split_once("://").map_or(address, |(_, rest)| rest);
        t.row(vec![
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
            Cell::from(state_name(s.state)),
        ]);
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
    format!("{}\n{}\n", t.render_in(width), average.fit(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, used: u64, state: ServerState) -> ServerInfo {
        ServerInfo {
            id: id.into(),
            address: format!("http://127.0.0.1:70{}", id.len()),
            rack: String::new(),
            capacity_bytes: 100 << 20,
            used_bytes: used << 20,
            utilization_pct: used as f64,
            chunks: used / 10,
            state: state as i32,
            last_heartbeat_ms: 5,
            migrate_bandwidth_bytes_per_second: 0,
            load: Default::default(),
            read_bytes_per_sec: Default::default(),
            read_p99_ms: Default::default(),
            reads_per_sec: Default::default(),
        }
    }

    #[test]
    fn json_has_exactly_the_contract_keys() {
        let v = serde_json::to_value(ServerJson::from(&info("cs1", 78, ServerState::Alive)))
            .expect("encodes");
        let obj = v.as_object().expect("object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "address",
                "capacity_bytes",
                "chunks",
                "id",
                "rack",
                "state",
                "used_bytes",
                "utilization_pct"
            ]
        );
        assert_eq!(obj["state"], "alive");
        assert_eq!(obj["utilization_pct"], 78.0);
        let dead = ServerJson::from(&info("cs2", 1, ServerState::Dead));
        assert_eq!(dead.state, "dead");
        assert_eq!(
            ServerJson::from(&info("cs3", 1, ServerState::Unspecified)).state,
            "dead"
        );
    }

    #[test]
    fn the_leader_line_tells_a_single_master_from_no_leader() {
        let single = ListServersResponse {
            answered_by_leader: true,
            ..Default::default()
        };
        assert_eq!(leader_line(&single), "");
        // A standby that knows no leader answers with no address and term 0.
        let none = ListServersResponse::default();
        assert_eq!(leader_line(&none), "leader: none known right now\n");
        let standby = ListServersResponse {
            leader: "http://m1:7000".into(),
            term: 7,
            ..Default::default()
        };
        assert_eq!(
            leader_line(&standby),
            "leader: http://m1:7000 (term 7); answered by a standby\n"
        );
        let leader = ListServersResponse {
            answered_by_leader: true,
            ..standby
        };
        assert_eq!(
            leader_line(&leader),
            "leader: http://m1:7000 (term 7), answering\n"
        );
    }

    #[test]
    fn table_shows_bars_and_average() {
        let resp = ListServersResponse {
            servers: vec![
                info("cs1", 78, ServerState::Alive),
                info("cs4", 15, ServerState::Dead),
            ],
            average_utilization_pct: 50.0,
            ..Default::default()
        };
        let text = render(&resp, None);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID   ADDRESS"), "{text}");
        assert!(lines[1].contains("[#########...]  78.0%"), "{text}");
        assert!(lines[1].ends_with("alive"), "{text}");
        assert!(lines[2].ends_with("dead"), "{text}");
        assert!(
            text.contains("cluster average [######......]  50.0% over 1 of 2"),
            "{text}"
        );
    }

    #[test]
    fn table_fits_an_80_column_terminal() {
        let mut servers: Vec<ServerInfo> = (1..=12)
            .map(|i| {
                let mut s = info(&format!("cs{i}"), 10 * i, ServerState::Alive);
                s.address = format!("http://127.0.0.1:{}", 40_000 + i);
                s.rack = format!("rack-{}", i % 3);
                s.capacity_bytes = 1 << 40;
                s.chunks = 123_456;
                s
            })
            .collect();
        servers[3].state = ServerState::Draining as i32;
        let resp = ListServersResponse {
            servers,
            average_utilization_pct: 40.0,
            ..Default::default()
        };
        let wide = render(&resp, None);
        assert!(wide.lines().any(|l| l.len() > 80), "{wide}");
        let fitted = render(&resp, Some(80));
        assert!(fitted.lines().all(|l| l.chars().count() <= 80), "{fitted}");
        let lines: Vec<&str> = fitted.lines().collect();
        assert!(
            lines[0].contains("RACK") && lines[0].contains("CHUNKS"),
            "{fitted}"
        );
        assert!(lines[4].contains("127.0.0.1:40004") && !lines[4].contains("http"));
        assert!(lines[4].ends_with("draining"), "{fitted}");
        let narrow = render(&resp, Some(50));
        assert!(narrow.lines().all(|l| l.chars().count() <= 50), "{narrow}");
        assert!(narrow.lines().nth(1).is_some_and(|l| l.starts_with("cs1 ")));
    }
}
