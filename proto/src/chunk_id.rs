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

    mod properties {
        use std::path::{Component, Path};

        use proptest::prelude::*;

        use super::super::*;

        /// The rules, written out again independently of [`validate`].
        fn follows_rules(id: &str) -> bool {
            (1..=MAX_LEN).contains(&id.len())
                && !id.starts_with('.')
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }

        /// Mostly near-misses: allowed characters mixed with separators,
        /// dots, NUL and non-ASCII, around the length limit.
        fn ids() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[A-Za-z0-9._-]{0,130}",
                "[A-Za-z0-9._/\\\x00 \n-]{0,12}",
                "\\.{1,3}[A-Za-z0-9/._-]{0,6}",
                "[A-Za-z0-9é．\\u{202e}]{120,130}",
                "(\\.\\./|/|\\./)*[a-z]{0,3}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn accepts_exactly_what_the_rules_allow(id in ids()) {
                prop_assert_eq!(validate(&id).is_ok(), follows_rules(&id), "{:?}", id);
                prop_assert_eq!(ChunkId::new(id.clone()).is_ok(), follows_rules(&id));
                prop_assert_eq!(id.parse::<ChunkId>().is_ok(), follows_rules(&id));
            }

            #[test]
            fn an_accepted_id_names_one_file_inside_its_directory(
                id in prop_oneof![ids(), "[A-Za-z0-9._-]{1,128}"]
            ) {
                let Ok(id) = ChunkId::new(id) else { return Ok(()) };
                let id = id.as_str().to_owned();
                let dir = Path::new("/data/chunks");
                let path = dir.join(&id);
                prop_assert_eq!(path.parent(), Some(dir));
                let name = path.file_name().and_then(|n| n.to_str());
                prop_assert_eq!(name, Some(id.as_str()));
                let inside = path.strip_prefix(dir).expect("inside");
                let extra: Vec<Component<'_>> = inside.components().collect();
                prop_assert!(matches!(extra.as_slice(), [Component::Normal(_)]), "{:?}", extra);
            }

            #[test]
            fn a_refusal_names_the_first_broken_rule(id in ids()) {
                let Err(e) = validate(&id) else { return Ok(()) };
                prop_assert!(!e.to_string().is_empty());
                let want = if id.is_empty() {
                    ChunkIdError::Empty
                } else if id.len() > MAX_LEN {
                    ChunkIdError::TooLong { len: id.len() }
                } else if id.starts_with('.') {
                    ChunkIdError::LeadingDot { id: id.clone() }
                } else {
                    let ch = id
                        .chars()
                        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
                        .expect("a bad character");
                    ChunkIdError::BadChar { id: id.clone(), ch }
                };
                prop_assert_eq!(e, want);
            }
        }
    }
}
