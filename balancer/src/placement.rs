//! Where new replicas go. Pure: candidates in, chosen servers out.
//!
//! Servers are ranked by their utilization *after* taking the replica, so the
//! ones below the average come first and the emptiest wins; never two replicas
//! on one server; racks are kept diverse where they are set; a server that
//! would drop below the free-space floor is never chosen (the caller says
//! which fit, with [`crate::space::fits_floor`]). The master places new
//! chunks and repair copies with it.

/// The caller's number for a server (the master's server-table index).
pub type ServerNo = u32;

/// A server that might take a replica.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its number in the caller's server table.
    pub no: ServerNo,
    /// Its id, for a deterministic tie-break.
    pub id: &'a str,
    /// Rack label; empty when unset (never conflicts).
    pub rack: &'a str,
    /// Bytes counted as 100 %.
    pub capacity: u64,
    /// Bytes in use once recent allocations and running copies land.
    pub committed: u64,
    /// Whether the replica fits above the free-space floor.
    pub fits: bool,
}

impl Candidate<'_> {
    /// Utilization after taking `size` more bytes.
    fn utilization_after(&self, size: u64) -> f64 {
        if self.capacity == 0 {
            f64::INFINITY
        } else {
            (self.committed.saturating_add(size)) as f64 / self.capacity as f64
        }
    }
}

/// Picks up to `count` distinct servers for a replica of `size` bytes.
///
/// `taken_racks` are racks that already hold a replica (for repairs); a server
/// in a fresh rack is preferred to one whose rack is taken, and only when no
/// fresh rack is left are racks repeated. Fewer than `count` come back when
/// fewer fit.
pub fn choose(
    candidates: &[Candidate<'_>],
    size: u64,
    count: usize,
    taken_racks: &[&str],
) -> Vec<ServerNo> {
    let mut ranked: Vec<&Candidate<'_>> = candidates.iter().filter(|c| c.fits).collect();
    ranked.sort_by(|a, b| {
        a.utilization_after(size)
            .total_cmp(&b.utilization_after(size))
            .then_with(|| a.id.cmp(b.id))
    });
    let mut racks: Vec<&str> = taken_racks
        .iter()
        .copied()
        .filter(|r| !r.is_empty())
        .collect();
    let mut chosen: Vec<ServerNo> = Vec::with_capacity(count);
    for c in &ranked {
        if chosen.len() == count {
            break;
        }
        if c.rack.is_empty() || !racks.contains(&c.rack) {
            chosen.push(c.no);
            if !c.rack.is_empty() {
                racks.push(c.rack);
            }
        }
    }
    for c in &ranked {
        if chosen.len() == count {
            break;
        }
        if !chosen.contains(&c.no) {
            chosen.push(c.no);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand<'a>(no: ServerNo, id: &'a str, rack: &'a str, used: u64) -> Candidate<'a> {
        Candidate {
            no,
            id,
            rack,
            capacity: 100,
            committed: used,
            fits: used + 10 <= 90,
        }
    }

    #[test]
    fn emptiest_first_and_distinct() {
        let c = [
            cand(0, "a", "", 70),
            cand(1, "b", "", 10),
            cand(2, "c", "", 40),
        ];
        assert_eq!(choose(&c, 10, 2, &[]), [1, 2]);
        assert_eq!(choose(&c, 10, 3, &[]), [1, 2, 0]);
        assert_eq!(choose(&c, 10, 5, &[]), [1, 2, 0], "never two on one server");
    }

    #[test]
    fn utilization_after_placing_weighs_capacity() {
        let mut big = cand(0, "big", "", 50);
        big.capacity = 1000;
        let small = cand(1, "small", "", 0);
        // small: 10/100 = 10 % after; big: 60/1000 = 6 % after.
        assert_eq!(choose(&[small, big], 10, 1, &[]), [0]);
    }

    #[test]
    fn racks_diverse_where_set() {
        let c = [
            cand(0, "a", "r1", 0),
            cand(1, "b", "r1", 1),
            cand(2, "c", "r2", 50),
            cand(3, "d", "", 60),
        ];
        assert_eq!(choose(&c, 10, 2, &[]), [0, 2]);
        assert_eq!(choose(&c, 10, 3, &[]), [0, 2, 3]);
        assert_eq!(choose(&c, 10, 4, &[]), [0, 2, 3, 1]);
        assert_eq!(choose(&c, 10, 1, &["r1"]), [2]);
    }

    #[test]
    fn floor_is_respected() {
        let c = [cand(0, "a", "", 85), cand(1, "b", "", 81)];
        assert!(choose(&c, 10, 1, &[]).is_empty());
    }

    #[test]
    fn ties_break_by_id() {
        let c = [
            cand(5, "z", "", 0),
            cand(3, "m", "", 0),
            cand(9, "a", "", 0),
        ];
        assert_eq!(choose(&c, 10, 3, &[]), [9, 3, 5]);
    }
}
