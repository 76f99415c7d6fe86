//! Turns a request's credentials into a [`Principal`]: the `Authorization`
//! header (`Bearer <token>`, or `Basic` with the token as password, which
//! is how a browser sends it for the QA page), looked up by hash, or a JWT
//! checked against the configured JWK Set.

use std::sync::Arc;

use base64::Engine;

use super::client_cert::ClientCertMap;
use super::jwt::{looks_like_jwt, JwtError, JwtVerifier};
use super::principal::{Credential, Principal};
use super::role::RoleSet;
use super::token::{TokenHash, TokenRegistry};

/// Why a request is not authenticated. Never says which part was wrong
/// beyond what RFC 6750 lets a client know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("credentials are required")]
    Missing,
    #[error("the Authorization header is malformed")]
    Malformed,
    #[error("the token is not valid")]
    Unknown,
    /// A JWT failed this check (the `error_description` of the 401).
    #[error("the JWT is not valid: {0}")]
    Jwt(JwtError),
}

impl AuthError {
    /// What RFC 6750's `error_description` may say: which JWT check failed.
    pub fn failed_check(self) -> Option<String> {
        match self {
            AuthError::Jwt(e) => Some(e.to_string()),
            _ => None,
        }
    }
}

/// Every credential vellum accepts.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: TokenRegistry,
    /// Hash of the development token, which holds every role.
    dev_token: Option<TokenHash>,
    /// TLS client certificates mapped to principals (`auth.clients`).
    clients: ClientCertMap,
    /// OAuth2 / SMART Backend Services JWTs (`auth.jwks_*`).
    jwt: Option<Arc<JwtVerifier>>,
}

/// Subject of the development token.
pub const DEV_SUBJECT: &str = "dev-token";

impl Authenticator {
    pub fn new(tokens: TokenRegistry, dev_token: Option<&str>) -> Self {
        Authenticator {
            tokens,
            dev_token: dev_token.map(TokenHash::of),
            clients: ClientCertMap::default(),
            jwt: None,
        }
    }

    /// Also accept JWTs this verifier accepts.
    pub fn with_jwt(mut self, jwt: Arc<JwtVerifier>) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// Also accept these TLS client certificates.
    pub fn with_clients(mut self, clients: ClientCertMap) -> Self {
        self.clients = clients;
        self
    }

    /// Whether any credential is configured at all.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
            && self.dev_token.is_none()
            && self.clients.is_empty()
            && self.jwt.is_none()
    }

    /// The caller presenting this verified TLS client certificate.
    pub fn authenticate_certificate(
        &self,
        cert: &openssl::x509::X509Ref,
    ) -> Result<Principal, AuthError> {
        self.clients.principal(cert).ok_or(AuthError::Unknown)
    }

    /// The caller of a request with this `Authorization` header value: a
    /// bearer credential shaped like a JWT goes to the JWT verifier when
    /// one is configured (it may fetch a rotated key set), anything else is
    /// looked up as a token.
    pub async fn authenticate_request(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Principal, AuthError> {
        if let Some(jwt) = &self.jwt {
            let header = authorization.and_then(|h| std::str::from_utf8(h).ok());
            if let Some(token) = header.and_then(bearer_jwt) {
                return jwt.authenticate(token).await.map_err(AuthError::Jwt);
            }
        }
        self.authenticate(authorization)
    }

    /// The caller of a request with this `Authorization` header value
    /// (tokens only).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::Malformed)?;
        let token = bearer_or_basic(header)?;
        if self.dev_token == Some(TokenHash::of(&token)) {
            return Ok(Principal {
                subject: DEV_SUBJECT.to_string(),
                roles: RoleSet::all(),
                credential: Credential::DevToken,
            });
        }
        let grant = self.tokens.lookup(&token).ok_or(AuthError::Unknown)?;
        Ok(Principal {
            subject: grant.subject.clone(),
            roles: grant.roles,
            credential: Credential::Token,
        })
    }
}

/// The JWT of `Bearer <jwt>`.
fn bearer_jwt(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && looks_like_jwt(token)).then_some(token)
}

/// The token of `Bearer <token>` or of `Basic base64(<any user>:<token>)`.
fn bearer_or_basic(header: &str) -> Result<String, AuthError> {
    let (scheme, rest) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| AuthError::Malformed)?;
        let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
        let (_, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
        if !password.is_empty() {
            return Ok(password.to_string());
        }
    }
    Err(AuthError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Grant, Role};

    fn authenticator() -> Authenticator {
        let line = Grant::line_for("vellum_src", "pacs-01", RoleSet::of(&[Role::Source]));
        Authenticator::new(
            TokenRegistry::new([Grant::parse(&line).unwrap()]),
            Some("dev-token-0123456789"),
        )
    }

    #[test]
    fn bearer_basic_and_dev_tokens() {
        let a = authenticator();
        let p = a.authenticate(Some(b"Bearer vellum_src")).unwrap();
        assert_eq!(p.subject, "pacs-01");
        assert!(p.has(Role::Source) && !p.has(Role::Auditor));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("me:vellum_src")
        );
        assert_eq!(
            a.authenticate(Some(basic.as_bytes())).unwrap().subject,
            "pacs-01"
        );
        let dev = a
            .authenticate(Some(b"bearer dev-token-0123456789"))
            .unwrap();
        assert_eq!(dev.roles, RoleSet::all());
        assert_eq!(a.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            a.authenticate(Some(b"Bearer nope")),
            Err(AuthError::Unknown)
        );
        assert_eq!(a.authenticate(Some(b"Token x")), Err(AuthError::Malformed));
        assert_eq!(a.authenticate(Some(b"Bearer ")), Err(AuthError::Malformed));
    }
}
