//! A JSON Web Key Set (RFC 7517) reduced to what vellum verifies with:
//! RSA keys for RS256 (2048 bits or more) and P-256 keys for ES256. Other
//! keys (encryption keys, other curves, symmetric keys) are skipped, so an
//! identity provider's full set can be configured as it is.

use base64::Engine;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use serde::Deserialize;

/// The two signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

/// One verification key and the only algorithm it may be used with: the
/// algorithm follows from the key's type, never from the token alone.
#[derive(Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    pub alg: Alg,
    pub key: PKey<Public>,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWK Set (expected a JSON object with a `keys` array)")]
    Shape,
    #[error("the set holds no RS256 or ES256 signing key")]
    NoUsableKey,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Smallest RSA modulus accepted, bits.
const MIN_RSA_BITS: u32 = 2048;

/// The usable keys of a JWK Set document.
pub fn parse(json: &[u8]) -> Result<Vec<Jwk>, JwksError> {
    let set: RawSet = serde_json::from_slice(json).map_err(|_| JwksError::Shape)?;
    let keys: Vec<Jwk> = set
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<RawKey>(v).ok())
        .filter_map(|k| key(&k))
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

fn b64(s: &Option<String>) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.as_deref()?.trim_end_matches('='))
        .ok()
}

fn key(k: &RawKey) -> Option<Jwk> {
    if k.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let (alg, key) = match k.kty.as_str() {
        "RSA" => {
            let n = BigNum::from_slice(&b64(&k.n)?).ok()?;
            let e = BigNum::from_slice(&b64(&k.e)?).ok()?;
            if n.num_bits() < MIN_RSA_BITS as i32 {
                return None;
            }
            let rsa = Rsa::from_public_components(n, e).ok()?;
            (Alg::Rs256, PKey::from_rsa(rsa).ok()?)
        }
        "EC" if k.crv.as_deref() == Some("P-256") => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).ok()?;
            let x = BigNum::from_slice(&b64(&k.x)?).ok()?;
            let y = BigNum::from_slice(&b64(&k.y)?).ok()?;
            let ec = EcKey::from_public_key_affine_coordinates(&group, &x, &y).ok()?;
            ec.check_key().ok()?;
            (Alg::Es256, PKey::from_ec_key(ec).ok()?)
        }
        _ => return None,
    };
    // A key that names another algorithm than its type allows is not used.
    if k.alg.as_deref().is_some_and(|a| Alg::parse(a) != Some(alg)) {
        return None;
    }
    Some(Jwk {
        kid: k.kid.clone(),
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64u(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn rsa_and_p256_keys_are_kept_others_skipped() {
        let rsa = Rsa::generate(2048).unwrap();
        let small = Rsa::generate(1024).unwrap();
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        ec.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let set = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": b64u(&rsa.n().to_vec()), "e": b64u(&rsa.e().to_vec())},
            {"kty": "RSA", "kid": "small", "n": b64u(&small.n().to_vec()), "e": b64u(&small.e().to_vec())},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64u(&rsa.n().to_vec()), "e": b64u(&rsa.e().to_vec())},
            {"kty": "RSA", "kid": "confused", "alg": "ES256", "n": b64u(&rsa.n().to_vec()), "e": b64u(&rsa.e().to_vec())},
            {"kty": "EC", "crv": "P-256", "kid": "e", "x": b64u(&x.to_vec_padded(32).unwrap()), "y": b64u(&y.to_vec_padded(32).unwrap())},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        ]});
        let keys = parse(set.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys
            .iter()
            .map(|k| (k.kid.clone().unwrap(), k.alg))
            .collect();
        assert_eq!(
            kids,
            [("r".to_string(), Alg::Rs256), ("e".to_string(), Alg::Es256)]
        );
        assert_eq!(parse(b"[]").unwrap_err(), JwksError::Shape);
        assert_eq!(
            parse(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#).unwrap_err(),
            JwksError::NoUsableKey
        );
    }
}
