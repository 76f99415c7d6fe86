//! Bearer tokens. vellum never keeps a token in clear: the configuration
//! (and the first-start token file) holds grant lines
//! `sha256:<64 hex> <subject> <role,role…>`; a presented token is hashed and
//! looked up. Hashing first also makes the look-up independent of how much
//! of a guess matches.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::role::{RoleSet, UnknownRole};

/// Prefix of every token vellum creates (lets secret scanners spot them).
pub const TOKEN_PREFIX: &str = "vellum_";

/// SHA-256 of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    fn from_hex(s: &str) -> Option<TokenHash> {
        let bytes = hex::decode(s).ok()?;
        Some(TokenHash(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

/// A new random token: 32 bytes from OpenSSL's CSPRNG, base64url.
pub fn generate() -> Result<String, openssl::error::ErrorStack> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// One configured token: its hash, the subject it authenticates and the
/// roles it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub hash: TokenHash,
    pub subject: String,
    pub roles: RoleSet,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantLineError {
    #[error("expected `sha256:<64 hex digits> <subject> <role,role…>`")]
    Shape,
    #[error("the token hash must be `sha256:` followed by 64 hex digits")]
    Hash,
    #[error(transparent)]
    Role(#[from] UnknownRole),
    #[error("a token must grant at least one role")]
    NoRole,
}

impl Grant {
    /// Parses a grant line (`sha256:<hex> <subject> <roles>`).
    pub fn parse(line: &str) -> Result<Grant, GrantLineError> {
        let mut parts = line.split_whitespace();
        let (Some(hash), Some(subject), Some(roles), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(GrantLineError::Shape);
        };
        let hash = hash
            .strip_prefix("sha256:")
            .and_then(TokenHash::from_hex)
            .ok_or(GrantLineError::Hash)?;
        let roles = RoleSet::parse_list(roles)?;
        if roles.is_empty() {
            return Err(GrantLineError::NoRole);
        }
        Ok(Grant {
            hash,
            subject: subject.to_string(),
            roles,
        })
    }

    /// The grant line for `token` (what `vellum token create` prints).
    pub fn line_for(token: &str, subject: &str, roles: RoleSet) -> String {
        format!("sha256:{} {subject} {roles}", TokenHash::of(token).to_hex())
    }
}

/// Every accepted token, by hash.
#[derive(Debug, Clone, Default)]
pub struct TokenRegistry {
    grants: HashMap<TokenHash, Grant>,
}

impl TokenRegistry {
    pub fn new(grants: impl IntoIterator<Item = Grant>) -> Self {
        TokenRegistry {
            grants: grants.into_iter().map(|g| (g.hash, g)).collect(),
        }
    }

    pub fn add(&mut self, grant: Grant) {
        self.grants.insert(grant.hash, grant);
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// The grant of a presented token, if any.
    pub fn lookup(&self, token: &str) -> Option<&Grant> {
        self.grants.get(&TokenHash::of(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn a_created_token_is_found_by_its_line() {
        let token = generate().unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() > 40);
        let line = Grant::line_for(&token, "pacs-01", RoleSet::of(&[Role::Source]));
        assert!(!line.contains(&token), "the line holds only the hash");
        let registry = TokenRegistry::new([Grant::parse(&line).unwrap()]);
        let grant = registry.lookup(&token).unwrap();
        assert_eq!(grant.subject, "pacs-01");
        assert!(grant.roles.contains(Role::Source));
        assert!(registry.lookup("vellum_other").is_none());
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert_eq!(Grant::parse("x y"), Err(GrantLineError::Shape));
        assert_eq!(Grant::parse("md5:00 s source"), Err(GrantLineError::Hash));
        let h = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            Grant::parse(&format!("{h} s root")),
            Err(GrantLineError::Role(_))
        ));
        assert_eq!(
            Grant::parse(&format!("{h} s ,")),
            Err(GrantLineError::NoRole)
        );
    }
}
