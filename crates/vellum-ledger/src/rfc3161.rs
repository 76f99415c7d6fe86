//! RFC 3161 time seals of checkpoints: the TimeStampReq vellum sends (a
//! SHA-256 message imprint of the signed checkpoint note, a nonce,
//! certReq), the TimeStampResp it gets back, and the check of a token (a
//! CMS SignedData over a TSTInfo) against a trusted TSA certificate store.
//! The DER is read with a small bounded reader: only the few fields needed
//! are looked at, and every length is checked against the bytes present.

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509PurposeId, X509};

/// DER of AlgorithmIdentifier { id-sha256, NULL }.
const SHA256_ALG: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
];
/// The content of the OID id-sha256 (2.16.840.1.101.3.4.2.1).
const SHA256_OID: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// Largest token or response accepted (real tokens are a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("malformed DER: {0}")]
    Der(&'static str),
    #[error("the TSA refused the request (PKIStatus {0})")]
    Refused(u8),
    #[error("the response carries no time-stamp token")]
    NoToken,
    #[error("the token's signature or certificate does not verify: {0}")]
    Signature(String),
    #[error("the token seals other data (message imprint differs)")]
    Imprint,
    #[error("the token's nonce is not the request's")]
    Nonce,
    #[error("the token's hash algorithm is not SHA-256")]
    Algorithm,
    #[error("the trusted TSA certificates cannot be read: {0}")]
    Trust(String),
}

/// A TimeStampReq ready to send, with the nonce to expect back.
#[derive(Debug, Clone)]
pub struct Request {
    pub der: Vec<u8>,
    pub nonce: Vec<u8>,
}

/// The TimeStampReq for `data`: SHA-256 imprint, a fresh 64-bit nonce,
/// certReq true (so the token carries the TSA certificate).
pub fn request(data: &[u8]) -> Result<Request, SealError> {
    let mut nonce = [0u8; 8];
    openssl::rand::rand_bytes(&mut nonce).map_err(|e| SealError::Signature(e.to_string()))?;
    // Positive and minimal as a DER INTEGER: top bit clear, first byte non-zero.
    nonce[0] = (nonce[0] & 0x7f) | 0x40;
    let digest = crate::hash::body_sha256(data);
    let imprint = tlv(0x30, &[SHA256_ALG, &tlv(0x04, &digest)[..]].concat());
    let cert_req: &[u8] = &[0x01, 0x01, 0xff];
    let body = [
        &tlv(0x02, &[1])[..],
        &imprint[..],
        &tlv(0x02, &nonce)[..],
        cert_req,
    ]
    .concat();
    Ok(Request {
        der: tlv(0x30, &body),
        nonce: nonce.to_vec(),
    })
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// One DER element: its tag, its content and its whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Reads the element at the start of `input`; returns it and the rest.
fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), SealError> {
    let (&tag, rest) = input.split_first().ok_or(SealError::Der("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(SealError::Der("multi-byte tags are not used here"));
    }
    let (&first, rest) = rest.split_first().ok_or(SealError::Der("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(SealError::Der("indefinite or oversized length"));
        }
        let (bytes, rest) = rest
            .split_at_checked(n)
            .ok_or(SealError::Der("truncated"))?;
        let len = bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, rest)
    };
    let header = input.len() - rest.len();
    let (content, after) = rest
        .split_at_checked(len)
        .ok_or(SealError::Der("length past the end"))?;
    let whole = input
        .get(..header + len)
        .ok_or(SealError::Der("length past the end"))?;
    Ok((
        Tlv {
            tag,
            content,
            whole,
        },
        after,
    ))
}

/// Reads an element that must carry `tag`.
fn read_tagged<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(Tlv<'a>, &'a [u8]), SealError> {
    let (t, rest) = read(input)?;
    if t.tag != tag {
        return Err(SealError::Der(what));
    }
    Ok((t, rest))
}

/// The token of a TimeStampResp whose status is granted (0) or
/// grantedWithMods (1).
pub fn token_of_response(resp: &[u8]) -> Result<Vec<u8>, SealError> {
    let (outer, _) = read_tagged(resp, 0x30, "TimeStampResp is not a SEQUENCE")?;
    let (status_info, rest) = read_tagged(outer.content, 0x30, "PKIStatusInfo is not a SEQUENCE")?;
    let (status, _) = read_tagged(status_info.content, 0x02, "PKIStatus is not an INTEGER")?;
    match status.content {
        [0] | [1] => {}
        [s] => return Err(SealError::Refused(*s)),
        _ => return Err(SealError::Der("PKIStatus out of range")),
    }
    if rest.is_empty() {
        return Err(SealError::NoToken);
    }
    let (token, _) = read_tagged(rest, 0x30, "the token is not a ContentInfo")?;
    Ok(token.whole.to_vec())
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TstInfo {
    /// The TSA's GeneralizedTime, as written (e.g. `20261203134501Z`).
    pub gen_time: String,
    pub nonce: Option<Vec<u8>>,
    pub hashed_message: Vec<u8>,
}

/// The fields of a DER TSTInfo vellum checks.
fn parse_tst_info(der: &[u8]) -> Result<TstInfo, SealError> {
    let (seq, _) = read_tagged(der, 0x30, "TSTInfo is not a SEQUENCE")?;
    let (_version, rest) = read_tagged(seq.content, 0x02, "TSTInfo version")?;
    let (_policy, rest) = read_tagged(rest, 0x06, "TSTInfo policy")?;
    let (imprint, rest) = read_tagged(rest, 0x30, "TSTInfo messageImprint")?;
    let (alg, after_alg) = read_tagged(imprint.content, 0x30, "messageImprint algorithm")?;
    let (oid, _) = read_tagged(alg.content, 0x06, "algorithm OID")?;
    if oid.content != SHA256_OID {
        return Err(SealError::Algorithm);
    }
    let (hashed, _) = read_tagged(after_alg, 0x04, "hashedMessage")?;
    let (_serial, rest) = read_tagged(rest, 0x02, "TSTInfo serialNumber")?;
    let (time, mut rest) = read_tagged(rest, 0x18, "TSTInfo genTime")?;
    let mut nonce = None;
    while !rest.is_empty() {
        let (t, r) = read(rest)?;
        if t.tag == 0x02 {
            nonce = Some(t.content.to_vec());
        }
        rest = r;
    }
    Ok(TstInfo {
        gen_time: String::from_utf8_lossy(time.content).into_owned(),
        nonce,
        hashed_message: hashed.content.to_vec(),
    })
}

/// A trust store of TSA certificates (PEM, one or more), checking the
/// time-stamping purpose (extendedKeyUsage timeStamping, critical).
pub fn trust_store(pem: &[u8]) -> Result<X509Store, SealError> {
    let certs = X509::stack_from_pem(pem).map_err(|e| SealError::Trust(e.to_string()))?;
    if certs.is_empty() {
        return Err(SealError::Trust("no certificate in the file".into()));
    }
    let mut b = X509StoreBuilder::new().map_err(|e| SealError::Trust(e.to_string()))?;
    for c in certs {
        b.add_cert(c).map_err(|e| SealError::Trust(e.to_string()))?;
    }
    b.set_purpose(X509PurposeId::TIMESTAMP_SIGN)
        .map_err(|e| SealError::Trust(e.to_string()))?;
    Ok(b.build())
}

/// Verifies `token` as a seal of `data`: the CMS signature, the signer's
/// chain to `trust` (when given; without it only the signature against the
/// embedded certificate), the SHA-256 imprint of `data` and, when given,
/// the nonce.
pub fn verify_token(
    token: &[u8],
    data: &[u8],
    trust: Option<&X509Store>,
    nonce: Option<&[u8]>,
) -> Result<TstInfo, SealError> {
    let mut cms =
        CmsContentInfo::from_der(token).map_err(|e| SealError::Signature(e.to_string()))?;
    let mut content = Vec::new();
    let flags = match trust {
        Some(_) => CMSOptions::BINARY,
        None => CMSOptions::BINARY | CMSOptions::NO_SIGNER_CERT_VERIFY,
    };
    cms.verify(None, trust.map(|s| &**s), None, Some(&mut content), flags)
        .map_err(|e| SealError::Signature(e.to_string()))?;
    let info = parse_tst_info(&content)?;
    if info.hashed_message != crate::hash::body_sha256(data) {
        return Err(SealError::Imprint);
    }
    if let Some(n) = nonce {
        if info.nonce.as_deref() != Some(n) {
            return Err(SealError::Nonce);
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_der_timestamp_req_with_sha256_and_cert_req() {
        let r = request(b"checkpoint").unwrap();
        let (seq, rest) = read_tagged(&r.der, 0x30, "seq").unwrap();
        assert!(rest.is_empty());
        let (v, rest) = read_tagged(seq.content, 0x02, "version").unwrap();
        assert_eq!(v.content, [1]);
        let (imprint, rest) = read_tagged(rest, 0x30, "imprint").unwrap();
        assert!(imprint.content.starts_with(SHA256_ALG));
        let (n, rest) = read_tagged(rest, 0x02, "nonce").unwrap();
        assert_eq!(n.content, &r.nonce[..]);
        assert_eq!(rest, [0x01, 0x01, 0xff]);
        assert_ne!(request(b"checkpoint").unwrap().nonce, r.nonce);
    }

    #[test]
    fn long_lengths_round_trip_and_bad_lengths_are_refused() {
        let big = tlv(0x04, &[7u8; 300]);
        assert_eq!(&big[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (t, rest) = read(&big).unwrap();
        assert_eq!((t.content.len(), rest.len()), (300, 0));
        assert!(read(&big[..100]).is_err());
        assert!(read(&[0x30, 0x80, 0x00, 0x00]).is_err());
        assert!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(read(&[]).is_err());
    }

    #[test]
    fn refused_and_tokenless_responses_are_errors() {
        let refused = tlv(0x30, &tlv(0x30, &tlv(0x02, &[2])));
        assert!(matches!(
            token_of_response(&refused),
            Err(SealError::Refused(2))
        ));
        let granted_empty = tlv(0x30, &tlv(0x30, &tlv(0x02, &[0])));
        assert!(matches!(
            token_of_response(&granted_empty),
            Err(SealError::NoToken)
        ));
        assert!(token_of_response(b"not der").is_err());
    }
}
