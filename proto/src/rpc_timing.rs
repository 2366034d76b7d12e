//! Latency of every gRPC method a daemon serves, as one Prometheus histogram
//! labelled by method (`keel_rpc_duration_seconds{method="Heartbeat"}`).
//!
//! The time is from the request's arrival to the response's headers: the
//! whole call for unary and client-streaming methods (a `WriteChunk` answers
//! after its last frame), the time to the first message for server-streaming
//! ones (`ReadChunk`). Calls to methods the service does not have
//! (`UNIMPLEMENTED`) are not timed, so a client cannot grow the label set;
//! it is also capped at [`MAX_METHODS`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::server::NamedService;
use tower_service::Service;

use crate::exposition::Histogram;
use crate::serving::Answer;

/// Buckets of `keel_rpc_duration_seconds`: 0.5 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Most distinct method labels kept; a service has far fewer methods.
pub const MAX_METHODS: usize = 64;

/// The histograms of one daemon, by method name.
#[derive(Debug, Default)]
pub struct RpcTimes {
    methods: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

impl RpcTimes {
    /// Records `secs` for the method at `path` (`/keel.v1.Master/Heartbeat`).
    pub fn observe(&self, path: &str, secs: f64) {
        let method = path.rsplit('/').next().unwrap_or(path);
        let histogram = {
            let mut methods = self.methods.lock().unwrap_or_else(PoisonError::into_inner);
            match methods.get(method) {
                Some(h) => Arc::clone(h),
                None if methods.len() < MAX_METHODS => Arc::clone(
                    methods
                        .entry(method.to_owned())
                        .or_insert_with(|| Arc::new(Histogram::new(BUCKETS))),
                ),
                None => return,
            }
        };
        histogram.observe(secs);
    }

    /// Writes `keel_rpc_duration_seconds` (nothing before the first call).
    pub fn render(&self, out: &mut String) {
        let methods = self.methods.lock().unwrap_or_else(PoisonError::into_inner);
        if methods.is_empty() {
            return;
        }
        let name = "keel_rpc_duration_seconds";
        out.push_str(&format!(
            "# HELP {name} Seconds from a gRPC request's arrival to its response's headers, by method.\n# TYPE {name} histogram\n"
        ));
        for (method, h) in methods.iter() {
            h.render(out, name, &format!("method=\"{method}\","));
        }
    }
}

/// A generated gRPC server whose calls are timed into [`RpcTimes`].
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    times: Arc<RpcTimes>,
}

impl<S> Timed<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, times: Arc<RpcTimes>) -> Self {
        Timed { inner, times }
    }
}

impl<S: NamedService> NamedService for Timed<S> {
    const NAME: &'static str = S::NAME;
}

/// `grpc-status` of a method the service does not have.
const UNIMPLEMENTED: &[u8] = b"12";

impl<S> Service<http::Request<Body>> for Timed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Answer {
        let start = Instant::now();
        let path = req.uri().path().to_owned();
        let times = Arc::clone(&self.times);
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            let unknown = resp
                .headers()
                .get("grpc-status")
                .is_some_and(|s| s.as_bytes() == UNIMPLEMENTED);
            if !unknown {
                times.observe(&path, start.elapsed().as_secs_f64());
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_histogram_per_method_and_a_bounded_label_set() {
        let t = RpcTimes::default();
        let mut out = String::new();
        t.render(&mut out);
        assert!(out.is_empty());
        t.observe("/keel.v1.Master/Heartbeat", 0.002);
        t.observe("/keel.v1.Master/Heartbeat", 0.2);
        t.observe("/keel.v1.Master/ListServers", 0.0001);
        t.render(&mut out);
        assert!(
            out.contains("keel_rpc_duration_seconds_bucket{method=\"Heartbeat\",le=\"0.0025\"} 1"),
            "{out}"
        );
        assert!(out.contains("keel_rpc_duration_seconds_count{method=\"Heartbeat\"} 2"));
        assert!(out.contains("keel_rpc_duration_seconds_count{method=\"ListServers\"} 1"));
        assert_eq!(out.matches("# TYPE").count(), 1, "{out}");
        for i in 0..200 {
            t.observe(&format!("/keel.v1.Master/M{i}"), 0.1);
        }
        assert_eq!(t.methods.lock().expect("lock").len(), MAX_METHODS);
    }
}
