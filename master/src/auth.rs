//! The optional shared token: every `keel.v1` call must carry
//! `authorization: Bearer <token>`. Health and reflection stay open (they
//! expose no data), so this interceptor wraps only the Master service.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Checks the bearer token of each call; lets everything through when no
/// token is configured.
#[derive(Debug, Clone, Default)]
pub struct AuthCheck {
    /// The expected header value, `Bearer <token>`.
    expected: Option<Arc<[u8]>>,
}

impl AuthCheck {
    /// A check for `token`; `None` disables it.
    pub fn new(token: Option<&str>) -> Self {
        AuthCheck {
            expected: token.map(|t| Arc::from(format!("Bearer {t}").into_bytes())),
        }
    }
}

/// Compares without stopping at the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for AuthCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(req);
        };
        match req.metadata().get("authorization") {
            Some(v) if same(v.as_bytes(), expected) => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong bearer token")),
            None => Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata (this master requires --auth-token)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(v) = value {
            r.metadata_mut()
                .insert("authorization", v.parse().expect("ascii"));
        }
        r
    }

    #[test]
    fn token_is_required_only_when_set() {
        let mut open = AuthCheck::new(None);
        assert!(open.call(with(None)).is_ok());
        let mut check = AuthCheck::new(Some("s3cret"));
        assert!(check.call(with(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer nope"),
            Some("s3cret"),
            Some("Bearer s3cret2"),
        ] {
            let e = check.call(with(bad)).err().map(|s| s.code());
            assert_eq!(e, Some(tonic::Code::Unauthenticated), "{bad:?}");
        }
    }
}
