//! OAuth2 / SMART Backend Services access tokens: JWTs signed by the
//! site's identity provider (RS256 or ES256), verified against its JWK Set
//! (a file, or an https URL fetched at start, refreshed on an interval and
//! when a token names an unknown key, at most once per
//! `auth.jwks_refresh_min_s`). The `scope` claim's scopes map to roles
//! through `auth.jwt_scope_roles`; the subject is `sub` (for SMART Backend
//! Services: the client id).

pub mod jwks;
pub mod scopes;
pub mod verify;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use jwks::{Alg, Jwk, JwksError};
pub use scopes::{ScopeLineError, ScopeRoles, DEFAULT_SCOPE_ROLES};
pub use verify::{looks_like_jwt, Claims, Expectations, JwtError};

use super::principal::{Credential, Principal};

/// Where the JWK Set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// Validated JWT settings (`auth.jwks_*`, `auth.jwt_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub source: JwksSource,
    pub expect: Expectations,
    pub scope_roles: ScopeRoles,
    /// Re-read the key set this often.
    pub refresh_every: Duration,
    /// At most one re-read per this interval, however many tokens name an
    /// unknown key.
    pub refresh_min: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksLoadError {
    #[error("cannot read the JWKS file: {0}")]
    File(#[from] std::io::Error),
    #[error("cannot fetch the JWKS URL: {0}")]
    Fetch(String),
    #[error("the JWKS is unusable: {0}")]
    Parse(#[from] JwksError),
}

/// Largest JWK Set accepted from a URL, bytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Verifies JWTs with the current key set, refreshing it as configured.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: RwLock<Arc<Vec<Jwk>>>,
    /// When the key set was last (re)loaded or tried; one refresh at a time.
    last_load: tokio::sync::Mutex<Instant>,
    http: reqwest::Client,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .finish()
    }
}

impl JwtVerifier {
    /// Loads the key set once. A file that cannot be used stops the start;
    /// an unreachable URL is logged and retried when tokens arrive, so an
    /// identity provider being down does not keep vellum from starting.
    pub async fn start(settings: JwtSettings) -> Result<Arc<Self>, JwksLoadError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| JwksLoadError::Fetch(e.to_string()))?;
        let verifier = JwtVerifier {
            settings,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_load: tokio::sync::Mutex::new(Instant::now()),
            http,
        };
        match verifier.load().await {
            Ok(keys) => verifier.replace(keys),
            Err(e) if matches!(verifier.settings.source, JwksSource::Url(_)) => {
                tracing::error!(error = %e, "JWKS not loaded; JWTs are refused until it is");
            }
            Err(e) => return Err(e),
        }
        Ok(Arc::new(verifier))
    }

    /// Re-reads the key set every `refresh_every` for as long as it lives.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = self.settings.refresh_every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(v) = weak.upgrade() else { return };
                v.refresh(Duration::ZERO).await;
            }
        })
    }

    /// The caller holding this JWT.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, JwtError> {
        let claims = match self.check(token) {
            // A key the set does not hold (yet): the provider may have
            // rotated; re-read, at most once per `refresh_min`.
            Err(JwtError::UnknownKey | JwtError::NoKeys) => {
                self.refresh(self.settings.refresh_min).await;
                self.check(token)?
            }
            other => other?,
        };
        Ok(Principal {
            roles: self.settings.scope_roles.roles(&claims.scope),
            subject: claims.subject,
            credential: Credential::Jwt,
        })
    }

    fn check(&self, token: &str) -> Result<Claims, JwtError> {
        let keys = self.keys.read().map(|k| k.clone()).unwrap_or_default();
        if keys.is_empty() {
            return Err(JwtError::NoKeys);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        verify::verify(token, &keys, &self.settings.expect, now)
    }

    /// Reloads the key set unless the last load is less than `min_age` old.
    async fn refresh(&self, min_age: Duration) {
        let mut last = self.last_load.lock().await;
        if last.elapsed() < min_age {
            return;
        }
        *last = Instant::now();
        match self.load().await {
            Ok(keys) => self.replace(keys),
            // The old keys stay in use.
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed"),
        }
    }

    fn replace(&self, keys: Vec<Jwk>) {
        tracing::info!(keys = keys.len(), "JWKS loaded");
        if let Ok(mut k) = self.keys.write() {
            *k = Arc::new(keys);
        }
    }

    async fn load(&self) -> Result<Vec<Jwk>, JwksLoadError> {
        let bytes = match &self.settings.source {
            JwksSource::File(path) => tokio::fs::read(path).await?,
            JwksSource::Url(url) => self.fetch(url).await?,
        };
        Ok(jwks::parse(&bytes)?)
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, JwksLoadError> {
        let mut res = self
            .http
            .get(url)
            .header("Accept", "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(|e| JwksLoadError::Fetch(e.without_url().to_string()))?;
        if !res.status().is_success() {
            return Err(JwksLoadError::Fetch(format!("HTTP {}", res.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| JwksLoadError::Fetch(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksLoadError::Fetch(format!(
                    "larger than {MAX_JWKS_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
