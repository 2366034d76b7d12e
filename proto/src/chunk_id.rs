//! Chunk ids: 1–128 characters of `[A-Za-z0-9._-]`, not starting with `.`.
//!
//! Checked at every entry point, before an id is ever joined onto a path, so
//! `../x` or an empty id can never name a file outside a data directory.

use std::fmt;

/// Longest chunk id accepted.
pub const MAX_LEN: usize = 128;

/// Why a chunk id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkIdError {
    /// The id is the empty string.
    #[error("chunk id is empty")]
    Empty,
    /// The id is longer than [`MAX_LEN`].
    #[error("chunk id is {len} characters long; at most {MAX_LEN} are allowed")]
    TooLong {
        /// Length of the refused id, in bytes.
        len: usize,
    },
    /// The id starts with a dot (hidden files and `..` are never chunk names).
    #[error("chunk id {id:?} starts with '.'")]
    LeadingDot {
        /// The refused id.
        id: String,
    },
    /// The id holds a character outside `[A-Za-z0-9._-]`.
    #[error("chunk id {id:?} contains {ch:?}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed")]
    BadChar {
        /// The refused id (shortened when very long).
        id: String,
        /// The first offending character.
        ch: char,
    },
}

/// Checks `id` against the chunk-id rules.
pub fn validate(id: &str) -> Result<(), ChunkIdError> {
    if id.is_empty() {
        return Err(ChunkIdError::Empty);
    }
    if id.len() > MAX_LEN {
        return Err(ChunkIdError::TooLong { len: id.len() });
    }
    if id.starts_with('.') {
        return Err(ChunkIdError::LeadingDot { id: id.to_owned() });
    }
    if let Some(ch) = id.chars().find(|c| !is_allowed(*c)) {
        return Err(ChunkIdError::BadChar {
            id: id.to_owned(),
            ch,
        });
    }
    Ok(())
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A chunk id that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(String);

impl ChunkId {
    /// Validates and wraps `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, ChunkIdError> {
        let id = id.into();
        validate(&id)?;
        Ok(Self(id))
    }

    /// The id as a string slice (safe to use as a file name).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ChunkId {
    type Err = ChunkIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in ["ch_010", "a", "A.b-c_9", &"x".repeat(128)] {
            assert_eq!(validate(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn refuses_each_bad_kind() {
        assert_eq!(validate(""), Err(ChunkIdError::Empty));
        assert_eq!(
            validate(&"x".repeat(200)),
            Err(ChunkIdError::TooLong { len: 200 })
        );
        assert!(matches!(
            validate("../x"),
            Err(ChunkIdError::LeadingDot { .. })
        ));
        assert!(matches!(
            validate(".hidden"),
            Err(ChunkIdError::LeadingDot { .. })
        ));
        assert!(matches!(
            validate("a/b"),
            Err(ChunkIdError::BadChar { ch: '/', .. })
        ));
        assert!(matches!(
            validate("a\0b"),
            Err(ChunkIdError::BadChar { ch: '\0', .. })
        ));
        assert!(matches!(validate("é"), Err(ChunkIdError::BadChar { .. })));
    }
}
