//! Placement rules every move must satisfy, shared by the planner and the
//! move queue: both servers alive, the source holds the chunk, the target
//! does not (anti-affinity), the chunk spans no fewer racks afterwards, and
//! the target keeps its free-space floor.

use crate::model::{ChunkIdx, ClusterView, Server, ServerIdx};

/// Why a move breaks a placement rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The source or the target is dead (or unknown).
    ServerDown,
    /// The chunk is unknown, or no longer on the source.
    NotOnSource,
    /// The target already holds a replica.
    OnTarget,
    /// The chunk would span fewer distinct racks.
    RackDiversity,
}

/// Checks the placement rules (not space) for moving `chunk` from `from` to `to`.
pub fn check_move(
    view: &ClusterView,
    chunk: ChunkIdx,
    from: ServerIdx,
    to: ServerIdx,
) -> Result<(), Invalid> {
    let alive = |s| view.get_server(s).is_some_and(|s: &Server| s.alive);
    if !alive(from) || !alive(to) {
        return Err(Invalid::ServerDown);
    }
    let replicas = view
        .get_chunk(chunk)
        .ok_or(Invalid::NotOnSource)?
        .replicas();
    if !replicas.contains(&from) {
        return Err(Invalid::NotOnSource);
    }
    if replicas.contains(&to) || from == to {
        return Err(Invalid::OnTarget);
    }
    if !keeps_racks(view, replicas, from, to) {
        return Err(Invalid::RackDiversity);
    }
    Ok(())
}

/// Whether replacing `from` by `to` keeps the number of distinct racks the
/// replicas span (servers without a rack count for none).
pub fn keeps_racks(
    view: &ClusterView,
    replicas: &[ServerIdx],
    from: ServerIdx,
    to: ServerIdx,
) -> bool {
    let rack = |s: ServerIdx| view.get_server(s).and_then(|s| s.rack.as_deref());
    let others = replicas.iter().filter(|&&s| s != from).map(|&s| rack(s));
    crate::racks::move_keeps_racks(others, rack(from), rack(to))
}

/// The most bytes `server` may hold as a move target: capacity minus the
/// floor of `min_free_pct` percent of it that must stay free.
pub fn fill_limit(server: &Server, min_free_pct: f64) -> u64 {
    let floor = (server.capacity as f64 * min_free_pct.clamp(0.0, 100.0) / 100.0).ceil();
    server.capacity.saturating_sub(floor as u64)
}

/// Whether `server`, already holding `used` bytes (its own plus incoming
/// moves), can take `bytes` more and keep its free-space floor.
pub fn fits_floor(server: &Server, used: u64, bytes: u64, min_free_pct: f64) -> bool {
    used.saturating_add(bytes) <= fill_limit(server, min_free_pct)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn racked(racks: &[Option<&str>]) -> (ClusterView, Vec<ServerIdx>) {
        let mut v = ClusterView::new();
        let ids = racks
            .iter()
            .enumerate()
            .map(|(i, r)| v.add_server(format!("s{i}"), r.map(str::to_owned), 100, true))
            .collect();
        (v, ids)
    }

    #[test]
    fn rack_count_never_drops() {
        let (mut v, s) = racked(&[Some("r1"), Some("r2"), Some("r1"), Some("r3"), None]);
        let c = v.add_chunk("c", 1, 0, 2, &[s[0], s[1]]);
        // r1 is carried only by s0: a target in r2 would leave one rack.
        assert_eq!(check_move(&v, c, s[0], s[2]), Ok(()));
        assert_eq!(check_move(&v, c, s[0], s[3]), Ok(()));
        assert_eq!(check_move(&v, c, s[0], s[4]), Err(Invalid::RackDiversity));
        let d = v.add_chunk("d", 1, 0, 2, &[s[0], s[2]]);
        // Both replicas in r1: moving one anywhere keeps at least one rack.
        assert_eq!(check_move(&v, d, s[0], s[4]), Ok(()));
        assert_eq!(check_move(&v, d, s[0], s[2]), Err(Invalid::OnTarget));
        assert_eq!(check_move(&v, d, s[1], s[3]), Err(Invalid::NotOnSource));
    }

    #[test]
    fn dead_servers_are_out_and_floor_rounds_up() {
        let (mut v, s) = racked(&[None, None]);
        let c = v.add_chunk("c", 1, 0, 1, &[s[0]]);
        v.servers[1].alive = false;
        assert_eq!(check_move(&v, c, s[0], s[1]), Err(Invalid::ServerDown));
        let server = &v.servers[0];
        assert_eq!(fill_limit(server, 10.0), 90);
        assert_eq!(fill_limit(server, 0.5), 99);
        assert!(fits_floor(server, 80, 10, 10.0));
        assert!(!fits_floor(server, 81, 10, 10.0));
    }
}
