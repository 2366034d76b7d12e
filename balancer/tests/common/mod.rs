//! Helpers the planner's hand-worked tests share.

use keel_balancer::{ClusterView, Plan};

/// A plan's moves as `chunk from->to reason`, in plan order.
pub fn moves(v: &ClusterView, p: &Plan) -> Vec<String> {
    p.moves
        .iter()
        .map(|m| {
            let (c, f, t) = (v.chunk(m.chunk), v.server(m.from), v.server(m.to));
            format!("{} {}->{} {}", c.id(), f.id, t.id, m.reason.as_str())
        })
        .collect()
}
