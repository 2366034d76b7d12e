//! Watching the move queue during a load run: `RebalanceStatus` polled in
//! the background, and the spans in which moves were running.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_proto::v1::RebalanceStatusRequest;
use tokio::task::JoinHandle;

use super::lock;
use crate::faults::quick_master;

/// One look at the move queue.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    /// When the answer arrived.
    pub at: Instant,
    /// Whether the balancer was paused.
    pub paused: bool,
    /// Moves waiting.
    pub pending: u64,
    /// Moves running.
    pub running: u64,
    /// Moves done since the master started.
    pub done: u64,
    /// Moves given up since the master started.
    pub failed: u64,
    /// Bytes moved since the master started.
    pub bytes_moved: u64,
}

/// Polls `RebalanceStatus` in the background until stopped.
pub struct Watch {
    polls: Arc<Mutex<Vec<Poll>>>,
    task: JoinHandle<()>,
}

impl Watch {
    /// Starts polling the master at `master` every `every`.
    pub fn start(master: &str, every: Duration) -> Watch {
        let polls = Arc::new(Mutex::new(vec![]));
        let (url, out) = (master.to_owned(), Arc::clone(&polls));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut m = None;
            loop {
                tick.tick().await;
                if m.is_none() {
                    m = quick_master(&url).await.ok();
                }
                let Some(client) = m.as_mut() else { continue };
                if let Ok(s) = client.rebalance_status(RebalanceStatusRequest {}).await {
                    let s = s.into_inner();
                    lock(&out).push(Poll {
                        at: Instant::now(),
                        paused: s.paused,
                        pending: s.pending,
                        running: s.running,
                        done: s.done,
                        failed: s.failed,
                        bytes_moved: s.bytes_moved,
                    });
                }
            }
        });
        Watch { polls, task }
    }

    /// Every poll so far.
    pub fn polls(&self) -> Vec<Poll> {
        lock(&self.polls).clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spans between two consecutive polls that both satisfy `keep`.
pub fn spans(polls: &[Poll], keep: impl Fn(&Poll) -> bool) -> Vec<(Instant, Instant)> {
    polls
        .windows(2)
        .filter(|w| keep(&w[0]) && keep(&w[1]))
        .map(|w| (w[0].at, w[1].at))
        .collect()
}

/// Spans between two consecutive polls that both saw a move running.
pub fn moving_spans(polls: &[Poll]) -> Vec<(Instant, Instant)> {
    spans(polls, |p| p.running > 0)
}

/// Spans between two consecutive polls that both saw the balancer paused
/// and no move running.
pub fn idle_spans(polls: &[Poll]) -> Vec<(Instant, Instant)> {
    spans(polls, |p| p.paused && p.running == 0)
}

/// Whether `t` falls inside one of `spans`.
pub fn within(spans: &[(Instant, Instant)], t: Instant) -> bool {
    spans.iter().any(|&(a, b)| a <= t && t <= b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_need_two_polls_with_moves_running() {
        let t0 = Instant::now();
        let poll = |s: u64, running: u64| Poll {
            at: t0 + Duration::from_secs(s),
            paused: running == 0,
            pending: 0,
            running,
            done: 0,
            failed: 0,
            bytes_moved: 0,
        };
        let polls = [poll(0, 1), poll(1, 2), poll(2, 0), poll(3, 1), poll(4, 1)];
        let spans = moving_spans(&polls);
        assert_eq!(spans.len(), 2);
        assert!(within(&spans, t0 + Duration::from_millis(500)));
        assert!(!within(&spans, t0 + Duration::from_millis(2500)));
        assert!(within(&spans, t0 + Duration::from_millis(3500)));
        assert!(idle_spans(&polls).is_empty());
        let idle = idle_spans(&[poll(0, 0), poll(1, 0), poll(2, 1)]);
        assert_eq!(idle, [(t0, t0 + Duration::from_secs(1))]);
    }
}
