//! `rebalance execute --move CHUNK:FROM:TO...`: operator moves through the
//! master's safe move protocol. The call returns when every move has finished
//! or failed; keelctl exits non-zero unless all of them were done.

use clap::Args;
use keel_balancer::MoveRef;
use keel_proto::v1::{
    Move, MoveOutcome, MoveResult, RebalanceExecuteRequest, RebalanceExecuteResponse,
};
use serde::Serialize;

use crate::client::Master;
use crate::error::Error;
use crate::output::{self, Align, Table};

/// `keelctl rebalance execute`.
#[derive(Debug, Args)]
pub struct ExecuteArgs {
    /// A move as `CHUNK:FROM:TO` (repeatable, or several after one `--move`).
    #[arg(
        long = "move",
        value_name = "CHUNK:FROM:TO",
        env = "KEEL_MOVE",
        value_delimiter = ',',
        required = true,
        num_args = 1..,
        value_parser = parse_move
    )]
    pub moves: Vec<MoveRef>,
}

/// Parses `CHUNK:FROM:TO`; the chunk id must pass the chunk-id rules.
pub fn parse_move(s: &str) -> Result<MoveRef, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [chunk, from, to] = parts[..] else {
        return Err(format!(
            "expected CHUNK:FROM:TO (three fields separated by ':'), got {} field(s)",
            parts.len()
        ));
    };
    keel_proto::chunk_id::validate(chunk).map_err(|e| e.to_string())?;
    for (name, value) in [("FROM", from), ("TO", to)] {
        if value.trim().is_empty() {
            return Err(format!("{name} server id is empty"));
        }
    }
    Ok(MoveRef::new(chunk, from.trim(), to.trim()))
}

/// A move in `--json` output.
#[derive(Debug, Serialize, PartialEq)]
pub struct MoveJson {
    /// Chunk id.
    pub chunk: String,
    /// Source server.
    pub from: String,
    /// Target server.
    pub to: String,
}

/// One result in `--json` output.
#[derive(Debug, Serialize, PartialEq)]
pub struct MoveResultJson {
    /// The move this result is for.
    #[serde(rename = "move")]
    pub mv: MoveJson,
    /// `done`, `rejected`, `failed` or `unknown`.
    pub outcome: &'static str,
    /// Bytes copied.
    pub bytes: u64,
    /// Why it was rejected or failed (empty when done).
    pub error: String,
}

/// `rebalance execute --json`: the response in snake_case.
#[derive(Debug, Serialize, PartialEq)]
pub struct ExecuteJson {
    /// Moves done.
    pub moved: u32,
    /// Bytes copied by the done moves.
    pub bytes_transferred: u64,
    /// One per requested move.
    pub results: Vec<MoveResultJson>,
}

fn outcome_name(outcome: i32) -> &'static str {
    match MoveOutcome::try_from(outcome) {
        Ok(MoveOutcome::Done) => "done",
        Ok(MoveOutcome::Rejected) => "rejected",
        Ok(MoveOutcome::Failed) => "failed",
        _ => "unknown",
    }
}

fn move_json(m: Option<&Move>) -> MoveJson {
    let m = m.cloned().unwrap_or_default();
    MoveJson {
        chunk: m.chunk,
        from: m.from,
        to: m.to,
    }
}

impl From<&RebalanceExecuteResponse> for ExecuteJson {
    fn from(r: &RebalanceExecuteResponse) -> Self {
        let result = |x: &MoveResult| MoveResultJson {
            mv: move_json(x.r#move.as_ref()),
            outcome: outcome_name(x.outcome),
            bytes: x.bytes,
            error: x.error.clone(),
        };
        ExecuteJson {
            moved: r.moved,
            bytes_transferred: r.bytes_transferred,
            results: r.results.iter().map(result).collect(),
        }
    }
}

/// Runs `rebalance execute`.
pub async fn run(master: &Master, args: ExecuteArgs, json: bool) -> Result<(), Error> {
    let req = RebalanceExecuteRequest {
        moves: args.moves.iter().map(to_proto).collect(),
    };
    let resp = master
        .call_long_changing("rebalance execute", || {
            let (mut c, req) = (master.long.clone(), req.clone());
            async move { c.rebalance_execute(req).await }
        })
        .await?;
    let out = ExecuteJson::from(&resp);
    if json {
        output::print_json(&out)?;
    } else {
        output::print_stdout(&render(&out))?;
    }
    match incomplete(&out, args.moves.len()) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

fn to_proto(m: &MoveRef) -> Move {
    Move {
        chunk: m.chunk.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
    }
}

/// The table of results and a summary line.
pub fn render(out: &ExecuteJson) -> String {
    let mut t = Table::new(&[
        ("CHUNK", Align::Left),
        ("FROM", Align::Left),
        ("TO", Align::Left),
        ("RESULT", Align::Left),
        ("BYTES", Align::Right),
        ("REASON", Align::Left),
    ]);
    for r in &out.results {
        t.row(vec![
            r.mv.chunk.clone(),
            r.mv.from.clone(),
            r.mv.to.clone(),
            r.outcome.into(),
            output::size(r.bytes),
            r.error.clone(),
        ]);
    }
    format!(
        "{}\nmoved {} of {}, {} transferred\n",
        t.render(),
        out.moved,
        output::count(out.results.len() as u64, "chunk"),
        output::size(out.bytes_transferred)
    )
}

/// The error naming each move that was not done, with its reason.
pub fn incomplete(out: &ExecuteJson, requested: usize) -> Option<Error> {
    let not_done: Vec<String> = out
        .results
        .iter()
        .filter(|r| r.outcome != "done")
        .map(|r| {
            let why = if r.error.is_empty() {
                "no reason given"
            } else {
                &r.error
            };
            format!(
                "{} {}->{} {}: {why}",
                r.mv.chunk, r.mv.from, r.mv.to, r.outcome
            )
        })
        .collect();
    let missing = requested.saturating_sub(out.results.len());
    if not_done.is_empty() && missing == 0 {
        return None;
    }
    Some(Error::MovesIncomplete {
        requested,
        not_done,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_move() {
        let m = parse_move("ch_010:cs1:cs4").expect("valid");
        assert_eq!(m, MoveRef::new("ch_010", "cs1", "cs4"));
    }

    #[test]
    fn refuses_bad_moves() {
        assert!(
            parse_move("ch_010:cs1")
                .expect_err("must fail")
                .contains("got 2 field")
        );
        assert!(
            parse_move("a:b:c:d")
                .expect_err("must fail")
                .contains("got 4 field")
        );
        assert!(
            parse_move("../x:cs1:cs2")
                .expect_err("must fail")
                .contains("starts with '.'")
        );
        assert!(
            parse_move(":cs1:cs2")
                .expect_err("must fail")
                .contains("empty")
        );
        assert!(
            parse_move("c:cs1:")
                .expect_err("must fail")
                .contains("TO server id")
        );
        assert!(
            parse_move("c: :cs2")
                .expect_err("must fail")
                .contains("FROM server id")
        );
    }

    fn result(chunk: &str, outcome: MoveOutcome, error: &str) -> MoveResult {
        MoveResult {
            r#move: Some(Move {
                chunk: chunk.into(),
                from: "cs1".into(),
                to: "cs4".into(),
            }),
            outcome: outcome as i32,
            bytes: if outcome == MoveOutcome::Done {
                64 << 20
            } else {
                0
            },
            error: error.into(),
        }
    }

    fn response() -> RebalanceExecuteResponse {
        RebalanceExecuteResponse {
            moved: 1,
            bytes_transferred: 64 << 20,
            results: vec![
                result("ch_010", MoveOutcome::Done, ""),
                result("ch_011", MoveOutcome::Rejected, "cs4 already holds ch_011"),
            ],
        }
    }

    #[test]
    fn json_mirrors_the_response() {
        let v = serde_json::to_value(ExecuteJson::from(&response())).expect("encodes");
        assert_eq!(v["moved"], 1);
        assert_eq!(v["bytes_transferred"], 64u64 << 20);
        assert_eq!(
            v["results"][1],
            serde_json::json!({
                "move": {"chunk": "ch_011", "from": "cs1", "to": "cs4"},
                "outcome": "rejected", "bytes": 0, "error": "cs4 already holds ch_011"
            })
        );
    }

    #[test]
    fn rejected_moves_are_named_with_their_reason() {
        let out = ExecuteJson::from(&response());
        assert_eq!(
            incomplete(&out, 2).map(|e| e.to_string()).as_deref(),
            Some(
                "1 of 2 moves did not complete: ch_011 cs1->cs4 rejected: cs4 already holds ch_011"
            )
        );
        let text = render(&out);
        assert!(text.contains("ch_011  cs1   cs4  rejected"), "{text}");
        assert!(
            text.ends_with("moved 1 of 2 chunks, 64.0 MiB transferred\n"),
            "{text}"
        );
        let all_done = ExecuteJson {
            results: vec![],
            ..ExecuteJson::from(&response())
        };
        assert!(
            incomplete(&all_done, 1).is_some_and(|e| e.to_string().contains("no result for 1"))
        );
        let one = RebalanceExecuteResponse {
            results: vec![result("ch_010", MoveOutcome::Done, "")],
            ..response()
        };
        assert!(incomplete(&ExecuteJson::from(&one), 1).is_none());
    }
}
