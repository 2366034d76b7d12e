//! The optional shared token: checked on every incoming keel.v1 call, attached
//! to every outgoing one. Health and reflection are not wrapped: they expose no
//! data.

use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::Error;

/// Server side: refuses calls without `authorization: Bearer <token>`.
#[derive(Clone, Debug)]
pub struct RequireToken {
    /// The whole expected header value, `Bearer <token>`; `None` = open.
    expected: Option<Arc<[u8]>>,
}

impl RequireToken {
    /// Checks for `token`, or lets everything through when `None`.
    pub fn new(token: Option<&str>) -> Self {
        RequireToken {
            expected: token.map(|t| format!("Bearer {t}").into_bytes().into()),
        }
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(req);
        };
        match req.metadata().get("authorization") {
            Some(v) if constant_time_eq(v.as_bytes(), expected) => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong auth token")),
            None => Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata (this server requires --auth-token)",
            )),
        }
    }
}

/// Compares without stopping at the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Client side: attaches the token to every call.
#[derive(Clone, Debug)]
pub struct AttachToken {
    /// `Bearer <token>`, or `None` to attach nothing.
    value: Option<MetadataValue<Ascii>>,
}

impl AttachToken {
    /// Attaches `token` when set; refuses a token that cannot be sent as a header.
    pub fn new(token: Option<&str>) -> Result<Self, Error> {
        let value = token
            .map(|t| {
                format!("Bearer {t}").parse().map_err(|_| {
                    Error::Config("--auth-token must be printable ASCII without newlines".into())
                })
            })
            .transpose()?;
        Ok(AttachToken { value })
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.value {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let mut attach = AttachToken::new(Some("s3cret")).expect("token");
        let mut require = RequireToken::new(Some("s3cret"));
        let req = attach.call(Request::new(())).expect("attach");
        assert!(require.call(req).is_ok());
        let err = require.call(Request::new(())).expect_err("no token");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let mut other = AttachToken::new(Some("guess")).expect("token");
        let req = other.call(Request::new(())).expect("attach");
        assert!(require.call(req).is_err());
        assert!(RequireToken::new(None).call(Request::new(())).is_ok());
        assert!(AttachToken::new(Some("bad\nvalue")).is_err());
    }
}
