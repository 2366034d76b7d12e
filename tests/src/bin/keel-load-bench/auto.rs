//! `--auto`: the rounds that decide whether `--migrate-bandwidth auto` is
//! the chunk server's default, and the rule they are judged by (issue 24).
//!
//! Every round runs on a fresh cluster whose servers have `--migrate-bandwidth
//! auto`; its kind, taken in turn, sets what competes with the clients and
//! the moves: nothing, busy loops on every core, a writer fsyncing on the
//! data dirs' file system, four times the clients, or twice the data (so
//! twice the moves). A round meets the rule when the clients' read p99 while
//! moves run is at most max(1.2 × its idle p99, `--client-latency-target`):
//! moving may cost clients a fifth of their tail, or take them up to the
//! target the operator set, whichever is more. Then rebalances with no
//! clients at all must move at ≥ 80 % of `--migrate-bandwidth-max`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use keel_proto::units::parse_duration;

use crate::hog::{DiskHog, Hog};
use crate::report::{MIB, emit, ms, ratio};
use crate::round::{self, Round};
use crate::{Opts, report};

/// The rule: p99 while moving at most this many times the idle p99 ...
const P99_RATIO: f64 = 1.2;
/// ... and, with no clients, at least this share of the ceiling.
const IDLE_SHARE: f64 = 0.8;
/// Clients in a many-clients round, per `--clients`.
const MANY_CLIENTS: usize = 4;
/// Data in a big-move-set round, per `--data`.
const BIG_DATA: u64 = 2;
/// The fixed rate `--compare-fixed` sets: the old default.
const FIXED: &str = "64MiB";

/// What competes with the clients and the moves in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing but the clients.
    Quiet,
    /// `--hog` busy loops.
    Cpu,
    /// A writer fsyncing 8 MiB at a time on the data dirs' file system.
    Disk,
    /// [`MANY_CLIENTS`] × `--clients`, each writing that much less often.
    Clients,
    /// [`BIG_DATA`] × `--data` preloaded, so about twice the moves.
    Big,
}

/// The kinds in the order rounds take them.
const KINDS: [Kind; 5] = [Kind::Quiet, Kind::Cpu, Kind::Disk, Kind::Clients, Kind::Big];

impl Kind {
    /// The kind of round `no` (from 1).
    pub fn of_round(no: usize) -> Kind {
        KINDS[(no.max(1) - 1) % KINDS.len()]
    }

    /// How the report names it.
    fn label(self, opts: &Opts) -> String {
        match self {
            Kind::Quiet => "quiet".into(),
            Kind::Cpu => format!("CPU hogged ({} busy loops)", opts.hog),
            Kind::Disk => "disk hogged (fsyncing writer)".into(),
            Kind::Clients => format!(
                "many clients ({}, as many writes/s)",
                opts.clients * MANY_CLIENTS
            ),
            Kind::Big => format!(
                "big move set ({} MiB per server)",
                (opts.data * BIG_DATA) >> 20
            ),
        }
    }

    /// The options of a round of this kind.
    fn shape(self, opts: &Opts) -> Opts {
        let mut o = opts.clone();
        match self {
            Kind::Clients => {
                // The same writes per second as the other rounds: four
                // times the writes would fill the servers within minutes,
                // and a full server refuses both writes and moves.
                o.clients *= MANY_CLIENTS;
                o.write_one_in *= MANY_CLIENTS as u64;
            }
            Kind::Big => o.data *= BIG_DATA,
            Kind::Quiet | Kind::Cpu | Kind::Disk => {}
        }
        o
    }
}

/// Competing work running while it is held (dropping it stops the work).
struct Competition {
    _cpu: Option<Hog>,
    _disk: Option<DiskHog>,
}

impl Competition {
    fn start(kind: Kind, opts: &Opts) -> Result<Competition> {
        let cpu = (kind == Kind::Cpu)
            .then(|| Hog::start(opts.hog))
            .transpose()?;
        let disk = (kind == Kind::Disk)
            .then(|| DiskHog::start(&opts.dir))
            .transpose()?;
        Ok(Competition {
            _cpu: cpu,
            _disk: disk,
        })
    }
}

/// Chunk server flags of the bandwidth settings run: `auto` with the bench's
/// ceiling and target, and with `--compare-fixed` the old fixed default. Both
/// are passed explicitly, whatever the chunk server's default is.
fn designs(opts: &Opts) -> Vec<(&'static str, Vec<String>)> {
    let auto = vec![
        "--migrate-bandwidth".into(),
        "auto".into(),
        "--migrate-bandwidth-max".into(),
        opts.auto_max.to_string(),
        "--client-latency-target".into(),
        opts.latency_target.clone(),
    ];
    let mut out = vec![("auto", auto)];
    if opts.compare_fixed {
        let fixed = vec!["--migrate-bandwidth".into(), FIXED.into()];
        out.push(("fixed 64 MiB/s", fixed));
    }
    out
}

/// One round of one setting.
struct Row {
    no: usize,
    kind: String,
    design: &'static str,
    round: Round,
}

/// Every round, the table, the unloaded rebalances and the verdict. Fails
/// when a read or write failed or a chunk did not read back (not when the
/// rule is missed: that is the measurement).
pub async fn run(opts: &Opts) -> Result<()> {
    let target = parse_duration(&opts.latency_target).context("--latency-target")?;
    let mut rows = vec![];
    for no in opts.rounds() {
        let kind = Kind::of_round(no);
        let shaped = kind.shape(opts);
        for (design, flags) in designs(opts) {
            let label = kind.label(opts);
            eprintln!("round {no}: {label}, {design}");
            let _competition = Competition::start(kind, opts)?;
            let r = round::run(&shaped, no, &flags).await?;
            emit(&format!(
                "#### Round {no}: {label}, {design}\n\n{}",
                report::round(&r, no)
            ));
            rows.push(Row {
                no,
                kind: label,
                design,
                round: r,
            });
        }
    }
    let rounds_met = table(&rows, target, opts.auto_max);
    let mut unloaded = vec![];
    for (i, data) in [opts.data, opts.data * BIG_DATA].into_iter().enumerate() {
        let o = Opts {
            data,
            ..opts.clone()
        };
        for (design, flags) in designs(opts) {
            eprintln!(
                "unloaded rebalance: {} MiB per server, {design}",
                data >> 20
            );
            let no = opts.rounds().end() + 1 + i;
            let (bytes, secs) = round::unloaded(&o, no, &flags).await?;
            unloaded.push((data, design, bytes, secs));
        }
    }
    let idle_met = unloaded_table(opts.auto_max, &unloaded);
    emit(&verdict(rounds_met, idle_met));
    let trouble: usize = rows.iter().map(|r| r.round.trouble()).sum();
    if trouble > 0 {
        bail!("{trouble} failed reads, failed writes or bad chunks (listed above)");
    }
    Ok(())
}

/// The bound a round's p99 while moving must stay under.
pub fn bound(idle_p99: Duration, target: Duration) -> Duration {
    idle_p99.mul_f64(P99_RATIO).max(target)
}

/// Prints one line per round and setting; true when every `auto` round met
/// the rule.
fn table(rows: &[Row], target: Duration, max: u64) -> bool {
    let mut out = format!(
        "### Every round against the rule\n\nBound: max({P99_RATIO} × idle p99, {}). \
         Moved: MiB/s while the balancer ran, and that rate ÷ `--migrate-bandwidth-max` \
         ({:.0} MiB/s).\n\n\
         | round | kind | bandwidth | idle p99 | rebalance p99 | p99 ÷ idle | bound | \
         p99 ≤ bound | moved | ÷ max |\n|---|---|---|---|---|---|---|---|---|---|\n",
        ms(target),
        max as f64 / MIB
    );
    let mut all_met = true;
    for row in rows {
        let r = &row.round;
        let b = bound(r.idle.p99, target);
        let met = r.moving.count > 0 && r.moving.p99 <= b;
        if row.design == "auto" {
            all_met &= met;
        }
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.2} | {} | {} | {:.1} MiB/s | {:.2} |\n",
            row.no,
            row.kind,
            row.design,
            ms(r.idle.p99),
            ms(r.moving.p99),
            ratio(r.moving.p99, r.idle.p99),
            ms(b),
            if met { "met" } else { "MISSED" },
            r.move_rate(),
            r.move_rate() * MIB / max as f64,
        );
    }
    emit(&out);
    all_met
}

/// Prints the unloaded rebalances, `(data per server, design, bytes,
/// seconds)`; true when every `auto` one reached [`IDLE_SHARE`] of `max`.
fn unloaded_table(max: u64, runs: &[(u64, &str, u64, f64)]) -> bool {
    let mut out = format!(
        "### No clients: how fast an idle cluster moves\n\n\
         | preload per server | bandwidth | moved | seconds | rate | \
         ÷ `--migrate-bandwidth-max` ({:.0} MiB/s) | ≥ {IDLE_SHARE} |\n\
         |---|---|---|---|---|---|---|\n",
        max as f64 / MIB
    );
    let mut all_met = true;
    for &(data, design, bytes, secs) in runs {
        let share = bytes as f64 / secs / max as f64;
        let met = share >= IDLE_SHARE;
        if design == "auto" {
            all_met &= met;
        }
        out += &format!(
            "| {} MiB | {design} | {:.0} MiB | {secs:.1} | {:.1} MiB/s | **{share:.2}** | {} |\n",
            data >> 20,
            bytes as f64 / MIB,
            bytes as f64 / MIB / secs,
            if met { "met" } else { "MISSED" },
        );
    }
    emit(&out);
    all_met
}

/// The one line that answers the question.
fn verdict(rounds_met: bool, idle_met: bool) -> String {
    let says = |met| if met { "met" } else { "MISSED" };
    format!(
        "**Rule for `auto` as the default**: p99 bound in every round {}, idle rate ≥ \
         {IDLE_SHARE} × max {}: **{}**.\n",
        says(rounds_met),
        says(idle_met),
        if rounds_met && idle_met {
            "holds"
        } else {
            "does not hold"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_in_turn_and_every_one_is_in_eight_rounds() {
        let kinds: Vec<Kind> = (1..=8).map(Kind::of_round).collect();
        assert_eq!(kinds[0], Kind::Quiet);
        assert_eq!(kinds[4], Kind::Big);
        assert_eq!(kinds[5], Kind::Quiet);
        assert!(KINDS.iter().all(|k| kinds.contains(k)));
    }

    #[test]
    fn the_bound_is_the_larger_of_the_ratio_and_the_target() {
        let ms = Duration::from_millis;
        assert_eq!(bound(ms(10), ms(20)), ms(20));
        assert_eq!(bound(ms(50), ms(20)), ms(60));
    }
}
