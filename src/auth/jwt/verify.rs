//! Checks one compact JWS (RFC 7515/7519) against a key set: the header's
//! algorithm, the signature, then the claims. Each failure names the check
//! for the `error_description` of the 401, never the token's content.

use base64::Engine;
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::sign::Verifier;
use serde::Deserialize;
use serde_json::Value;

use super::jwks::{Alg, Jwk};

/// Longest token accepted, bytes (headers are bounded anyway; this keeps
/// the base64 and JSON work per request small).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a JWT is refused; the text is the `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed JWT")]
    Malformed,
    #[error("unsupported alg (RS256 or ES256 only)")]
    Algorithm,
    #[error("unknown kid")]
    UnknownKey,
    #[error("alg does not match the key")]
    KeyMismatch,
    #[error("bad signature")]
    Signature,
    #[error("wrong iss")]
    Issuer,
    #[error("wrong aud")]
    Audience,
    #[error("missing exp")]
    MissingExpiry,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    #[error("missing sub")]
    MissingSubject,
    #[error("no JWKS available")]
    NoKeys,
}

/// What a verified token says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    /// The `scope` claim (space-separated), empty when absent.
    pub scope: String,
}

/// What a token must hold beyond its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    pub issuer: String,
    pub audience: String,
    /// Clock skew allowed for `exp`, `nbf` and `iat`, seconds.
    pub leeway_s: i64,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct Payload {
    iss: Option<String>,
    aud: Option<Value>,
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    scope: Option<String>,
}

/// Whether a bearer credential has the shape of a compact JWS: three
/// non-empty base64url parts.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn b64(part: &str) -> Result<Vec<u8>, JwtError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)
}

/// The key id the token's header names, if it parses.
pub fn kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    serde_json::from_slice::<Header>(&b64(header).ok()?)
        .ok()?
        .kid
}

/// Verifies `token` with `keys` at `now` (Unix seconds).
pub fn verify(
    token: &str,
    keys: &[Jwk],
    expect: &Expectations,
    now: i64,
) -> Result<Claims, JwtError> {
    if token.len() > MAX_TOKEN_BYTES || !looks_like_jwt(token) {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| JwtError::Malformed)?;
    // `none`, HS*, PS*, … are refused before any key is looked at.
    let alg = Alg::parse(&header.alg).ok_or(JwtError::Algorithm)?;
    // Extensions vellum does not understand must not be ignored (RFC 7515 §4.1.11).
    if header.crit.is_some() {
        return Err(JwtError::Malformed);
    }
    let key = match &header.kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or(JwtError::UnknownKey)?,
        // Without a kid: the only key of the algorithm, never a guess.
        None => {
            let mut same = keys.iter().filter(|k| k.alg == alg);
            match (same.next(), same.next()) {
                (Some(k), None) => k,
                _ => return Err(JwtError::UnknownKey),
            }
        }
    };
    if key.alg != alg {
        return Err(JwtError::KeyMismatch);
    }
    let signature = b64(s)?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    if !signature_holds(key, signed, &signature) {
        return Err(JwtError::Signature);
    }
    let payload: Payload = serde_json::from_slice(&b64(p)?).map_err(|_| JwtError::Malformed)?;
    check_claims(&payload, expect, now)
}

fn signature_holds(key: &Jwk, signed: &[u8], signature: &[u8]) -> bool {
    match key.alg {
        Alg::Rs256 => Verifier::new(MessageDigest::sha256(), &key.key)
            .and_then(|mut v| v.verify_oneshot(signature, signed))
            .unwrap_or(false),
        // JWS ES256 signatures are the raw r‖s (32 bytes each), not DER.
        Alg::Es256 => {
            if signature.len() != 64 {
                return false;
            }
            let (r, s) = signature.split_at(32);
            let (Ok(r), Ok(s)) = (BigNum::from_slice(r), BigNum::from_slice(s)) else {
                return false;
            };
            let (Ok(sig), Ok(ec), Ok(digest)) = (
                EcdsaSig::from_private_components(r, s),
                key.key.ec_key(),
                hash(MessageDigest::sha256(), signed),
            ) else {
                return false;
            };
            sig.verify(&digest, &ec).unwrap_or(false)
        }
    }
}

fn check_claims(p: &Payload, expect: &Expectations, now: i64) -> Result<Claims, JwtError> {
    if p.iss.as_deref() != Some(expect.issuer.as_str()) {
        return Err(JwtError::Issuer);
    }
    let aud_ok = match &p.aud {
        Some(Value::String(a)) => *a == expect.audience,
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str() == Some(expect.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(JwtError::Audience);
    }
    let now = now as f64;
    let leeway = expect.leeway_s as f64;
    let exp = p.exp.ok_or(JwtError::MissingExpiry)?;
    if now >= exp + leeway {
        return Err(JwtError::Expired);
    }
    if p.nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(JwtError::NotYetValid);
    }
    if p.iat.is_some_and(|iat| now + leeway < iat) {
        return Err(JwtError::IssuedInFuture);
    }
    let subject = p
        .sub
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(JwtError::MissingSubject)?;
    Ok(Claims {
        subject: subject.to_string(),
        scope: p.scope.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://idp".into(),
            audience: "vellum".into(),
            leeway_s: 60,
        }
    }

    fn payload(v: serde_json::Value) -> Payload {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(!looks_like_jwt("eyJh.eyJz."));
        assert!(!looks_like_jwt("vellum_abc-DEF_123"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a.b+/.c"));
    }

    #[test]
    fn claims_are_checked_with_leeway() {
        let now = 1_000_000;
        let ok = serde_json::json!({"iss": "https://idp", "aud": "vellum", "sub": "c1",
                                    "exp": now + 10, "scope": "a b"});
        let claims = check_claims(&payload(ok.clone()), &expect(), now).unwrap();
        assert_eq!(
            (claims.subject.as_str(), claims.scope.as_str()),
            ("c1", "a b")
        );
        let with = |k: &str, v: serde_json::Value| {
            let mut c = ok.clone();
            c[k] = v;
            check_claims(&payload(c), &expect(), now)
        };
        // Within the leeway either side.
        assert!(with("exp", (now - 59).into()).is_ok());
        assert!(with("nbf", (now + 59).into()).is_ok());
        assert_eq!(with("exp", (now - 60).into()), Err(JwtError::Expired));
        assert_eq!(with("nbf", (now + 61).into()), Err(JwtError::NotYetValid));
        assert_eq!(
            with("iat", (now + 61).into()),
            Err(JwtError::IssuedInFuture)
        );
        assert_eq!(
            with("exp", serde_json::Value::Null),
            Err(JwtError::MissingExpiry)
        );
        assert_eq!(
            with("aud", serde_json::json!(["x", "vellum"])).map(|c| c.subject),
            Ok("c1".into())
        );
        assert_eq!(
            with("aud", serde_json::json!(["x"])),
            Err(JwtError::Audience)
        );
        assert_eq!(with("iss", "https://idp/".into()), Err(JwtError::Issuer));
        assert_eq!(with("sub", " ".into()), Err(JwtError::MissingSubject));
    }
}
