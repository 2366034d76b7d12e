//! The message limit and deadline of each `keel.v1.Master` method (see
//! [`keel_proto::budget`]); health and reflection get the default.
//!
//! Only heartbeat pages are large (a full report lists every replica of a
//! server). `RebalanceExecute` waits for the moves it asks for, which have
//! their own copy deadlines, so it has none of its own.

use std::time::Duration;

use keel_proto::budget::{Budgets, Method};

/// Largest `RebalanceExecute` request: a few thousand named moves.
pub const EXECUTE_MESSAGE_BYTES: usize = 1024 * 1024;

/// How long a heartbeat page may take to arrive and be applied.
pub const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(60);

/// The master's budgets.
pub fn budgets() -> Budgets {
    Budgets::default()
        .with(
            "/keel.v1.Master/Heartbeat",
            Method {
                message: keel_proto::MAX_MESSAGE_BYTES,
                deadline: Some(HEARTBEAT_DEADLINE),
            },
        )
        .with(
            "/keel.v1.Master/RebalanceExecute",
            Method {
                message: EXECUTE_MESSAGE_BYTES,
                deadline: None,
            },
        )
}
