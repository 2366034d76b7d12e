//! `keelctl servers`: every chunk server the master knows, with its load.

use keel_proto::v1::{ListServersRequest, ListServersResponse, ServerInfo, ServerState};
use serde::Serialize;

use crate::client::Clients;
use crate::error::Error;
use crate::output::{self, Align, Table};

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
        output::print_stdout(&format!("{}{}", render(&resp), leader_line(&resp)))
    }
}

/// With several masters: which one leads, and whether it answered.
pub fn leader_line(resp: &ListServersResponse) -> String {
    match (resp.leader.as_str(), resp.answered_by_leader) {
        ("", _) if resp.term == 0 => String::new(),
        ("", _) => "leader: none known right now\n".into(),
        (leader, true) => format!("leader: {leader} (term {}), answering\n", resp.term),
        (leader, false) => format!(
            "leader: {leader} (term {}); answered by a standby\n",
            resp.term
        ),
    }
}

/// The human table plus the cluster average.
pub fn render(resp: &ListServersResponse) -> String {
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
        ("STATE", Align::Left),
    ]);
    for s in &resp.servers {
        t.row(vec![
            s.id.clone(),
            s.address.clone(),
            if s.rack.is_empty() {
                "-".into()
            } else {
                s.rack.clone()
            },
            output::size(s.capacity_bytes),
            output::size(s.used_bytes),
            output::utilization(s.utilization_pct),
            s.chunks.to_string(),
            state_name(s.state).into(),
        ]);
    }
    let alive = resp
        .servers
        .iter()
        .filter(|s| state_name(s.state) != "dead")
        .count();
    format!(
        "{}\ncluster average {} over {alive} of {} servers alive\n",
        t.render(),
        output::utilization(resp.average_utilization_pct),
        resp.servers.len(),
    )
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
    fn table_shows_bars_and_average() {
        let resp = ListServersResponse {
            servers: vec![
                info("cs1", 78, ServerState::Alive),
                info("cs4", 15, ServerState::Dead),
            ],
            average_utilization_pct: 50.0,
            ..Default::default()
        };
        let text = render(&resp);
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
}
