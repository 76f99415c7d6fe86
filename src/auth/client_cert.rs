//! TLS client certificates mapped to principals (IHE ATNA secure node).
//!
//! A mapping line is `<pattern> <role,role…>`: the roles are the last
//! whitespace-separated field, the pattern is everything before it, and is
//! one of
//! - a subject DN in RFC 4514 form, most specific attribute first, as
//!   `openssl x509 -noout -subject -nameopt RFC2253` prints it:
//!   `CN=pacs-01,O=General Hospital,C=DE`. Attribute types are compared
//!   case-insensitively, values exactly; spaces around `=` and `,` are
//!   ignored; `\,` escapes a comma in a value;
//! - `dns:<name>`: a DNS subject alternative name (case-insensitive);
//! - `uri:<uri>`: a URI subject alternative name (exact).
//!
//! The pattern as written is the principal's subject.

use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509Ref};

use super::principal::{Credential, Principal};
use super::role::{Role, RoleSet};

/// One configured client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientRule {
    subject: String,
    pattern: Pattern,
    roles: RoleSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// (upper-case type, value) pairs, most specific first.
    Dn(Vec<(String, String)>),
    Dns(String),
    Uri(String),
}

/// Why a connection's certificate may not send events (MLLP, syslog).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderRefusal {
    #[error("no client certificate was presented")]
    NoCertificate,
    #[error("the client certificate is not listed in auth.clients")]
    Unknown,
    #[error("the client certificate's subject `{0}` does not hold the source role")]
    NotASource(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientLineError {
    #[error("expected `<subject DN, dns:NAME or uri:URI> <role,role…>`")]
    Shape,
    #[error("malformed distinguished name (expected TYPE=value,TYPE=value…)")]
    Dn,
    #[error("unknown role `{0}`")]
    Role(String),
}

/// The configured client certificates (`auth.clients`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertMap {
    rules: Vec<ClientRule>,
}

impl ClientCertMap {
    /// What a TLS listener checks senders against: these rules when it
    /// runs TLS with a client CA (mutual TLS), else nothing (no
    /// certificate to map).
    pub fn for_listener(&self, tls_active: bool, client_ca: bool) -> Option<std::sync::Arc<Self>> {
        (tls_active && client_ca).then(|| std::sync::Arc::new(self.clone()))
    }

    /// The rules of these lines; an error names the line (from 1).
    pub fn parse<'a>(
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, (usize, ClientLineError)> {
        let rules = lines
            .into_iter()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| parse_line(l.trim()).map_err(|e| (i + 1, e)))
            .collect::<Result<_, _>>()?;
        Ok(ClientCertMap { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The principal of a verified peer certificate: the first rule its
    /// subject DN or one of its DNS/URI SANs matches.
    pub fn principal(&self, cert: &X509Ref) -> Option<Principal> {
        let dn = dn_pairs(cert.subject_name());
        let (mut dns, mut uris) = (Vec::new(), Vec::new());
        for name in cert.subject_alt_names().into_iter().flatten() {
            if let Some(d) = name.dnsname() {
                dns.push(d.to_ascii_lowercase());
            }
            if let Some(u) = name.uri() {
                uris.push(u.to_string());
            }
        }
        let rule = self.rules.iter().find(|r| match &r.pattern {
            Pattern::Dn(p) => *p == dn,
            Pattern::Dns(d) => dns.contains(d),
            Pattern::Uri(u) => uris.contains(u),
        })?;
        Some(Principal {
            subject: rule.subject.clone(),
            roles: rule.roles,
            credential: Credential::ClientCertificate,
        })
    }
}

impl ClientCertMap {
    /// The sender a verified peer certificate speaks for: the subject of
    /// its principal, which must hold `source` (IHE ATNA secure node: the
    /// node is known by its certificate).
    pub fn sender(&self, cert: Option<&X509Ref>) -> Result<String, SenderRefusal> {
        let principal = self
            .principal(cert.ok_or(SenderRefusal::NoCertificate)?)
            .ok_or(SenderRefusal::Unknown)?;
        if !principal.has(Role::Source) {
            return Err(SenderRefusal::NotASource(principal.subject));
        }
        Ok(principal.subject)
    }
}

fn parse_line(line: &str) -> Result<ClientRule, ClientLineError> {
    let (pattern, roles) = line
        .rsplit_once(char::is_whitespace)
        .ok_or(ClientLineError::Shape)?;
    let subject = pattern.trim().to_string();
    let roles = RoleSet::parse_list(roles).map_err(|e| ClientLineError::Role(e.0))?;
    if subject.is_empty() || roles.is_empty() {
        return Err(ClientLineError::Shape);
    }
    let lower = subject.to_ascii_lowercase();
    let pattern = if let Some(d) = lower.strip_prefix("dns:") {
        Pattern::Dns(d.trim().to_string())
    } else if lower.starts_with("uri:") {
        Pattern::Uri(subject[4..].trim().to_string())
    } else {
        Pattern::Dn(parse_dn(&subject)?)
    };
    Ok(ClientRule {
        subject,
        pattern,
        roles,
    })
}

/// `TYPE=value,TYPE=value` → pairs; `\x` escapes `x`.
fn parse_dn(dn: &str) -> Result<Vec<(String, String)>, ClientLineError> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.push(chars.next().unwrap_or('\\')),
            ',' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
        .iter()
        .map(|p| {
            let (t, v) = p.split_once('=').ok_or(ClientLineError::Dn)?;
            let (t, v) = (t.trim(), v.trim());
            if t.is_empty() || v.is_empty() {
                return Err(ClientLineError::Dn);
            }
            Ok((t.to_ascii_uppercase(), v.to_string()))
        })
        .collect()
}

/// A certificate name as RFC 4514 pairs: most specific (last) entry first,
/// short attribute names (`CN`, `O`, …; the dotted OID when there is none).
fn dn_pairs(name: &X509NameRef) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = name
        .entries()
        .map(|e| {
            let nid = e.object().nid();
            let ty = match nid {
                Nid::UNDEF => e.object().to_string(),
                n => n
                    .short_name()
                    .map_or_else(|_| e.object().to_string(), str::to_string),
            };
            let value = e.data().to_string().unwrap_or_default();
            (ty.to_ascii_uppercase(), value)
        })
        .collect();
    pairs.reverse();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};

    fn cert(entries: &[(&str, &str)], dns: &str, uri: &str) -> X509 {
        let key = PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        for (t, v) in entries {
            name.append_entry_by_text(t, v).unwrap();
        }
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .dns(dns)
            .uri(uri)
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    #[test]
    fn subjects_and_sans_map_to_principals() {
        let map = ClientCertMap::parse([
            "CN=pacs-01, O=General Hospital\\, Radiology,C=DE source",
            "dns:RIS.hospital.example auditor,qa",
            "uri:spiffe://hospital/ai-runner source",
        ])
        .unwrap();
        let pacs = cert(
            &[
                ("C", "DE"),
                ("O", "General Hospital, Radiology"),
                ("CN", "pacs-01"),
            ],
            "pacs-01.hospital.example",
            "urn:x:pacs",
        );
        let p = map.principal(&pacs).unwrap();
        assert_eq!(
            p.subject,
            "CN=pacs-01, O=General Hospital\\, Radiology,C=DE"
        );
        assert_eq!(p.roles, RoleSet::of(&[Role::Source]));
        assert_eq!(p.credential, Credential::ClientCertificate);

        let ris = cert(&[("CN", "other")], "ris.hospital.example", "urn:x:ris");
        assert_eq!(
            map.principal(&ris).unwrap().subject,
            "dns:RIS.hospital.example"
        );
        let ai = cert(&[("CN", "ai")], "ai.example", "spiffe://hospital/ai-runner");
        assert!(map.principal(&ai).unwrap().has(Role::Source));

        // Same CN, different organisation: no match.
        let stranger = cert(
            &[("O", "Elsewhere"), ("CN", "pacs-01")],
            "x.example",
            "urn:x",
        );
        assert_eq!(map.principal(&stranger), None);
    }

    #[test]
    fn senders_need_a_listed_certificate_with_the_source_role() {
        let map = ClientCertMap::parse(["CN=pacs source,auditor", "CN=viewer auditor"]).unwrap();
        let pacs = cert(&[("CN", "pacs")], "a.example", "urn:a");
        let viewer = cert(&[("CN", "viewer")], "b.example", "urn:b");
        let other = cert(&[("CN", "other")], "c.example", "urn:c");
        assert_eq!(map.sender(Some(&pacs)), Ok("CN=pacs".to_string()));
        assert_eq!(
            map.sender(Some(&viewer)),
            Err(SenderRefusal::NotASource("CN=viewer".into()))
        );
        assert_eq!(map.sender(Some(&other)), Err(SenderRefusal::Unknown));
        assert_eq!(map.sender(None), Err(SenderRefusal::NoCertificate));
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert_eq!(
            ClientCertMap::parse(["CN=x"]),
            Err((1, ClientLineError::Shape))
        );
        assert_eq!(
            ClientCertMap::parse(["dns:a source", "CN=x wizard"]),
            Err((2, ClientLineError::Role("wizard".into())))
        );
        assert_eq!(
            ClientCertMap::parse(["pacs-01 source"]),
            Err((1, ClientLineError::Dn))
        );
    }
}
