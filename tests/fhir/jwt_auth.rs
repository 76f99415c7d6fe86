//! OAuth2 / SMART Backend Services JWTs over real HTTP: keys made here
//! with openssl (RSA 2048, EC P-256), the JWK Set in a file or served by a
//! small HTTP server this test runs; scopes grant roles; every broken
//! token is answered 401 naming the check that failed, never the token.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vellum_testkit::{
    backend_tests, raw_settings_for, sample_event, spawn_app_with, Backend, TestApp, TestDb,
};

const ISSUER: &str = "https://idp.hospital.example/realms/radiology";
const AUDIENCE: &str = "https://vellum.hospital.example/fhir";
const CLIENT: &str = "ai-runner-7";

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key and its id.
struct Key {
    kid: String,
    key: PKey<Private>,
    ec: bool,
}

impl Key {
    fn rsa(kid: &str) -> Key {
        Key {
            kid: kid.into(),
            key: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
            ec: false,
        }
    }

    fn ec(kid: &str) -> Key {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        Key {
            kid: kid.into(),
            key: PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap(),
            ec: true,
        }
    }

    fn alg(&self) -> &'static str {
        if self.ec {
            "ES256"
        } else {
            "RS256"
        }
    }

    /// The public JWK.
    fn jwk(&self) -> Value {
        if self.ec {
            let ec = self.key.ec_key().unwrap();
            let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
            ec.public_key()
                .affine_coordinates(
                    ec.group(),
                    &mut x,
                    &mut y,
                    &mut BigNumContext::new().unwrap(),
                )
                .unwrap();
            json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
                   "x": b64u(&x.to_vec_padded(32).unwrap()), "y": b64u(&y.to_vec_padded(32).unwrap())})
        } else {
            let rsa = self.key.rsa().unwrap();
            json!({"kty": "RSA", "kid": self.kid, "alg": "RS256",
                   "n": b64u(&rsa.n().to_vec()), "e": b64u(&rsa.e().to_vec())})
        }
    }

    /// A compact JWS of `claims` with this key and its own alg and kid.
    fn sign(&self, claims: &Value) -> String {
        self.sign_with(
            &json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    fn sign_with(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64u(header.to_string().as_bytes()),
            b64u(claims.to_string().as_bytes())
        );
        let sig = if self.ec {
            // JWS wants r‖s, not the DER openssl produces.
            let digest = hash(MessageDigest::sha256(), input.as_bytes()).unwrap();
            let sig = EcdsaSig::sign(&digest, &self.key.ec_key().unwrap()).unwrap();
            let mut raw = sig.r().to_vec_padded(32).unwrap();
            raw.extend(sig.s().to_vec_padded(32).unwrap());
            raw
        } else {
            let mut s = Signer::new(MessageDigest::sha256(), &self.key).unwrap();
            s.sign_oneshot_to_vec(input.as_bytes()).unwrap()
        };
        format!("{input}.{}", b64u(&sig))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Valid claims for `scope`.
fn claims(scope: &str) -> Value {
    json!({"iss": ISSUER, "aud": [AUDIENCE, "other"], "sub": CLIENT, "scope": scope,
           "iat": now(), "exp": now() + 300, "jti": "1"})
}

fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// A server accepting JWTs of `ISSUER` whose keys are at `jwks_file` or `jwks_url`.
async fn app(db: &TestDb, jwks_file: Option<String>, jwks_url: Option<String>) -> TestApp {
    let mut raw = raw_settings_for(&db.url);
    raw.auth.jwks_file = jwks_file;
    raw.auth.jwks_url = jwks_url;
    raw.auth.jwt_issuer = Some(ISSUER.into());
    raw.auth.jwt_audience = Some(AUDIENCE.into());
    raw.auth.jwks_refresh_min_s = 1;
    raw.auth.record_reads = true;
    spawn_app_with(vellum::config::Settings::validate(raw).unwrap()).await
}

async fn call(app: &TestApp, jwt: &str, search: bool) -> reqwest::Response {
    let client = reqwest::Client::new();
    let rb = if search {
        client.get(format!("{}/fhir/AuditEvent?_count=5", app.base))
    } else {
        client
            .post(format!("{}/fhir/AuditEvent", app.base))
            .header("Content-Type", "application/fhir+json")
            .body(sample_event(1).to_string())
    };
    rb.bearer_auth(jwt).send().await.expect("answer")
}

/// The `error_description` of a 401's challenge; asserts the status.
async fn refusal(app: &TestApp, jwt: &str) -> String {
    let res = call(app, jwt, true).await;
    assert_eq!(res.status(), 401);
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = res.text().await.unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"vellum\", error=\"invalid_token\""),
        "{challenge}"
    );
    for part in jwt.split('.').filter(|p| p.len() > 8) {
        assert!(
            !challenge.contains(part) && !body.contains(part),
            "token echoed"
        );
    }
    challenge
        .split("error_description=\"")
        .nth(1)
        .map(|d| d.trim_end_matches('"').to_string())
        .unwrap_or_default()
}

backend_tests! {
    async fn jwt_scopes_grant_roles(backend) {
        let db = TestDb::new(backend).await;
        let (rsa, ec) = (Key::rsa("rsa-1"), Key::ec("ec-1"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, jwks(&[&rsa, &ec])).unwrap();
        let app = app(&db, Some(file.display().to_string()), None).await;

        // RS256, SMART v2 create scope: the source role, nothing more.
        let source = rsa.sign(&claims("system/AuditEvent.c"));
        let created = call(&app, &source, false).await;
        assert_eq!(created.status(), 201);
        let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
        assert_eq!(call(&app, &source, true).await.status(), 403);
        // ES256, read+search scope: the auditor role.
        let auditor = ec.sign(&claims("launch system/AuditEvent.rs"));
        let found = call(&app, &auditor, true).await;
        assert_eq!(found.status(), 200);
        // The event, and perhaps the security alert of the 403 just before.
        let found: Value = found.json().await.unwrap();
        assert!(found["entry"].as_array().unwrap().iter().any(|e| e["resource"]["id"] == id.as_str()), "{found}");
        assert_eq!(call(&app, &auditor, false).await.status(), 403);
        // A scope the table does not name grants nothing.
        let none = rsa.sign(&claims("system/Patient.rs"));
        assert_eq!(call(&app, &none, true).await.status(), 403);

        // The create is tagged with, and the search recorded under, `sub`.
        let listed: Value = app.client
            .get(format!("{}/fhir/AuditEvent?_count=100", app.base))
            .send().await.unwrap().json().await.unwrap();
        let tagged = listed["entry"].as_array().unwrap().iter().any(|e| {
            e["resource"]["meta"]["tag"].as_array().is_some_and(|tags| {
                tags.iter().any(|t| t["system"] == vellum::vocabulary::SUBMITTER_SYSTEM && t["code"] == CLIENT)
            })
        });
        assert!(tagged, "no event tagged as submitted by {CLIENT}: {listed}");
        let access = listed["entry"].as_array().unwrap().iter().any(|e| {
            e["resource"]["agent"].as_array().is_some_and(|agents| agents.iter().any(|a| {
                a["requestor"] == true && a["who"]["identifier"]["value"] == CLIENT
            }))
        });
        assert!(access, "no access event names {CLIENT}: {listed}");
    }
}

#[tokio::test]
async fn broken_jwts_are_refused_naming_the_check() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (rsa, ec) = (Key::rsa("rsa-1"), Key::ec("ec-1"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&rsa, &ec])).unwrap();
    let app = app(&db, Some(file.display().to_string()), None).await;
    let scope = "system/AuditEvent.rs";
    let good = claims(scope);
    assert_eq!(call(&app, &rsa.sign(&good), true).await.status(), 200);
    let with = |key: &str, v: Value| {
        let mut c = good.clone();
        c[key] = v;
        c
    };
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let cases = [
        (rsa.sign(&with("exp", json!(now() - 3600))), "token expired"),
        (rsa.sign(&no_exp), "missing exp"),
        (
            rsa.sign(&with("nbf", json!(now() + 3600))),
            "token not yet valid (nbf)",
        ),
        (
            rsa.sign(&with("iss", json!("https://evil.example"))),
            "wrong iss",
        ),
        (
            rsa.sign(&with("aud", json!("https://elsewhere.example"))),
            "wrong aud",
        ),
        (rsa.sign(&with("aud", json!(["a", "b"]))), "wrong aud"),
        (Key::rsa("rsa-9").sign(&good), "unknown kid"),
        // A key that is not in the set, under a kid that is: bad signature.
        (
            Key::rsa("x").sign_with(&json!({"alg": "RS256", "kid": "rsa-1"}), &good),
            "bad signature",
        ),
        // ES256 claimed for the RSA key: key confusion.
        (
            ec.sign_with(&json!({"alg": "ES256", "kid": "rsa-1"}), &good),
            "alg does not match the key",
        ),
        (
            format!(
                "{}.{}.c2ln",
                b64u(br#"{"alg":"none","kid":"rsa-1"}"#),
                b64u(good.to_string().as_bytes())
            ),
            "unsupported alg (RS256 or ES256 only)",
        ),
    ];
    for (jwt, why) in &cases {
        assert_eq!(&refusal(&app, jwt).await, why);
    }
    // HS256 keyed with the RSA public key (the classic confusion attack).
    let header = b64u(br#"{"alg":"HS256","kid":"rsa-1"}"#);
    let payload = b64u(good.to_string().as_bytes());
    let public_pem = rsa.key.public_key_to_pem().unwrap();
    let mut hmac = Signer::new(MessageDigest::sha256(), &PKey::hmac(&public_pem).unwrap()).unwrap();
    let mac = hmac
        .sign_oneshot_to_vec(format!("{header}.{payload}").as_bytes())
        .unwrap();
    let hs = format!("{header}.{payload}.{}", b64u(&mac));
    assert_eq!(
        refusal(&app, &hs).await,
        "unsupported alg (RS256 or ES256 only)"
    );
    // Unsigned `alg: none` with an empty signature is not even JWT-shaped.
    let unsigned = format!("{}.{payload}.", b64u(br#"{"alg":"none"}"#));
    assert_eq!(refusal(&app, &unsigned).await, "");
    // Tampered payload: the auditor token's claims rewritten to admin.
    let token = rsa.sign(&good);
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = b64u(
        with("scope", json!("system/vellum.admin"))
            .to_string()
            .as_bytes(),
    );
    assert_eq!(refusal(&app, &parts.join(".")).await, "bad signature");
}

/// A JWK Set served over HTTP by this test; `set` replaces what it serves.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<Mutex<u32>>,
}

impl JwksServer {
    async fn start(initial: String) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/jwks",
            listener.local_addr().unwrap().port()
        );
        let body = Arc::new(Mutex::new(initial));
        let fetches = Arc::new(Mutex::new(0));
        let (b, f) = (body.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut req = Vec::new();
                let mut chunk = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&chunk[..n]),
                    }
                }
                *f.lock().unwrap() += 1;
                let json = b.lock().unwrap().clone();
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = s.write_all(res.as_bytes()).await;
            }
        });
        JwksServer { url, body, fetches }
    }

    fn set(&self, json: String) {
        *self.body.lock().unwrap() = json;
    }
}

#[tokio::test]
async fn a_jwks_url_is_refetched_when_the_provider_rotates_keys() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (old, new) = (Key::rsa("2026-11"), Key::ec("2026-12"));
    let server = JwksServer::start(jwks(&[&old])).await;
    let app = app(&db, None, Some(server.url.clone())).await;
    let scope = "system/AuditEvent.rs";
    assert_eq!(
        call(&app, &old.sign(&claims(scope)), true).await.status(),
        200
    );
    // The new key is not published yet: refused, whatever the refreshes.
    let rotated = new.sign(&claims(scope));
    assert_eq!(refusal(&app, &rotated).await, "unknown kid");
    // Published: a token naming it makes vellum re-read the set (at most
    // once a second here), and it is accepted; the old key is gone.
    server.set(jwks(&[&new]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = call(&app, &rotated, true).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 401);
        assert!(
            Instant::now() < deadline,
            "the rotated key was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        refusal(&app, &old.sign(&claims(scope))).await,
        "unknown kid"
    );
    let fetches = *server.fetches.lock().unwrap();
    assert!(fetches >= 2, "{fetches}");
}
