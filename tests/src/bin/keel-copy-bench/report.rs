//! Numbers into Markdown: medians, rates, tables, and what machine and load
//! they were measured under.

use std::path::Path;

/// Bytes in a MiB.
pub const MIB: f64 = (1u64 << 20) as f64;

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// MiB per second for `bytes` in `secs`.
pub fn rate(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / MIB / secs.max(1e-9)
}

/// Rates of several runs, e.g. `512, 498, 530`.
pub fn list(xs: &[f64]) -> String {
    xs.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A signed percentage, e.g. `+0.84 %`.
pub fn pct(x: f64) -> String {
    format!("{:+.2} %", x * 100.0)
}

/// `ok` or `MISSED`, for a target.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// A Markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

/// The three load averages, as `/proc/loadavg` has them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// How busy the machine is: load averages and the share of the last 10 s in
/// which some task waited for a CPU (`/proc/pressure/cpu`), e.g.
/// `load 1.20 0.90 0.70, CPU pressure 12 %`.
pub fn busy() -> String {
    let pressure = cpu_pressure()
        .map(|p| format!(", CPU pressure {p:.0} %"))
        .unwrap_or_default();
    format!("load {}{pressure}", loadavg())
}

/// Percentage of the last 10 s in which some task waited for a CPU.
pub fn cpu_pressure() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    let some = text.lines().find(|l| l.starts_with("some"))?;
    let avg10 = some
        .split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?;
    avg10.parse().ok()
}

/// Waits up to `max` for the CPU pressure to fall below `QUIET_PCT`, so a
/// timed run does not start in the middle of someone else's build.
pub async fn settle(max: std::time::Duration) {
    const QUIET_PCT: f64 = 25.0;
    let quiet = || cpu_pressure().is_none_or(|p| p < QUIET_PCT);
    if max.is_zero() || quiet() {
        return;
    }
    eprintln!("waiting up to {max:?} for a quieter machine ({})", busy());
    if keel_tests::wait_until("a quieter machine", max, || async { quiet() })
        .await
        .is_err()
    {
        eprintln!("still busy ({}); measuring anyway", busy());
    }
}

/// The end-to-end move against its targets: its rate as a ratio to plain TCP
/// and to rsync, and CPU seconds per GiB of every method, with the move's
/// and `CopyChunk`'s as a ratio to plain TCP's.
pub fn move_targets(
    size: u64,
    moved: &[crate::moves::MoveCost],
    keel: &[crate::pair::CopyCost],
    tcp: &[crate::baseline::TcpCost],
    rs: &[(f64, Option<f64>)],
    deletes: &[f64],
) -> String {
    let gib = size as f64 / (1u64 << 30) as f64;
    let med = |xs: Vec<f64>| median(&xs);
    let rate_of = |secs: Vec<f64>| med(secs.iter().map(|s| rate(size, *s)).collect());
    let mv = rate_of(moved.iter().map(|m| m.secs).collect());
    let tc = rate_of(tcp.iter().map(|c| c.total.as_secs_f64()).collect());
    let rsync = (!rs.is_empty()).then(|| rate_of(rs.iter().map(|r| r.0).collect()));
    let per_gib = |cpu: Vec<f64>| med(cpu) / gib;
    let cpu_move = per_gib(moved.iter().map(|m| m.cpu_servers + m.cpu_master).collect());
    let cpu_copy = per_gib(keel.iter().map(|c| c.cpu_a + c.cpu_b).collect());
    let cpu_tcp = per_gib(tcp.iter().map(|c| c.cpu).collect());
    let cpu_rsync = per_gib(rs.iter().filter_map(|r| r.1).collect());
    let line = |what: &str, got: f64, want: f64| {
        vec![
            what.to_owned(),
            format!("**{got:.2}**"),
            format!("{want}"),
            verdict(got >= want).to_owned(),
        ]
    };
    let mut rows = vec![line("move ÷ plain TCP + fsync (rate)", mv / tc, 0.85)];
    match rsync {
        Some(r) => rows.push(vec![
            "move ÷ rsync daemon (rate)".into(),
            format!("**{:.2}**", mv / r),
            "—".into(),
            String::new(),
        ]),
        None => rows.push(vec!["move ÷ rsync: skipped".into()]),
    }
    for (what, cpu) in [("`CopyChunk`", cpu_copy), ("move", cpu_move)] {
        let ratio = cpu / cpu_tcp;
        rows.push(vec![
            format!("{what} CPU per byte ÷ plain TCP's"),
            format!("**{ratio:.2}**"),
            "≤ 1.3".into(),
            verdict(ratio <= 1.3).into(),
        ]);
    }
    format!(
        "## End-to-end move of a {} chunk (`RebalanceExecute`, as `keelctl rebalance execute` \
         sends it; same rounds as above)\n\n\
         Runs, MiB/s: {} (median {mv:.0}). CPU per GiB (user + system, median): move {cpu_move:.2} s \
         (master {:.3} s of it), `CopyChunk` alone {cpu_copy:.2} s, plain TCP {cpu_tcp:.2} s, \
         rsync {cpu_rsync:.2} s. The source's `DeleteChunk` of the same chunk takes {:.1} ms \
         (median, timed on the pair above).\n\n{}",
        keel_proto::units::format_size(size),
        list(&moved.iter().map(|m| rate(size, m.secs)).collect::<Vec<_>>()),
        med(moved.iter().map(|m| m.cpu_master).collect()) / gib,
        med(deletes.to_vec()) * 1e3,
        table(&["target", "measured", "wanted", ""], &rows),
    )
}

/// A Markdown list describing the machine and the file system under `dir`.
pub fn machine(dir: &Path) -> String {
    let cpu = first_value("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = first_value("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(|| "unknown".into(), |kib| format!("{:.1} GiB", kib / MIB));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
    format!(
        "- CPU: {cpu}, {cores} cores available; memory {mem}; Linux {kernel}\n\
         - temp dir (chunk servers and baselines alike): `{}` on {}\n\
         - at start: {}\n",
        dir.display(),
        file_system(dir),
        busy()
    )
}

/// `value` of the first `key : value` line of a `/proc` file.
fn first_value(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
}

/// Device and type of the file system holding `dir`, from `/proc/self/mounts`.
fn file_system(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.first()?, *f.get(1)?, *f.get(2)?))
        })
        .filter(|(_, at, _)| dir.starts_with(at))
        .max_by_key(|(_, at, _)| at.len())
        .map_or_else(
            || "an unknown file system".into(),
            |(dev, at, ty)| format!("{ty} (`{dev}` mounted at `{at}`)"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_tables() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(rate(1 << 21, 2.0), 1.0);
        assert_eq!(pct(0.0084), "+0.84 %");
        assert_eq!(
            table(&["a", "b"], &[vec!["1".into(), "2".into()]]),
            "| a | b |\n|---|---|\n| 1 | 2 |\n"
        );
    }
}
