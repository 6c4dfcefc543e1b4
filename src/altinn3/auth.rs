//! Tokens for the Altinn 3 API: Maskinporten's JWT grant, then (usually)
//! Altinn's token exchange.
//!
//! Why like this:
//! - **The grant** is a JWT we sign with the organisation's RSA key
//!   (RS256), carrying exactly `aud, iss, iat, exp, jti, scope`: Maskinporten
//!   answers "Invalid assertion" to any extra claim. The header names the key
//!   by `kid` (a key registered with the client) or carries the business
//!   certificate chain as `x5c`. A grant lives at most 120 s and its `jti` is
//!   single-use, so each token fetch signs a fresh one.
//! - **The exchange** turns the Maskinporten token into an Altinn token
//!   (30 minutes). The eFormidling proxy only takes Altinn tokens; the direct
//!   route may skip it (`exchange_url = ""`). The answer is a bare JWT, which
//!   may come JSON-quoted: quotes and whitespace are stripped.
//! - **Caching**: the token is reused until shortly before it expires; a 401
//!   from the API throws it away once ([`Auth::invalidate`]), and the caller
//!   tries once more with a new one.
//! - **Secrets** (the key, the grant, every token) never reach a log, an
//!   error message or `Debug` output: they live in [`Secret`], and errors
//!   carry what the *server* said, never what we sent.
//! - The key file must be readable by its owner only; a key others can read
//!   is refused with the `chmod` that fixes it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::Altinn3Config;

/// A string that must never be shown: `Debug` prints `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which step of getting a token failed (what `check-config --connect` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Our private key or certificate: unreadable, wrong format, not
    /// accepted by Maskinporten.
    Key,
    /// The Maskinporten client: unknown, or not allowed this grant.
    Client,
    /// A scope the client may not have.
    Scope,
    /// Altinn's token exchange.
    Exchange,
    /// The Correspondence API itself.
    Api,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Key => "key",
            Step::Client => "client",
            Step::Scope => "scope",
            Step::Exchange => "exchange",
            Step::Api => "API",
        })
    }
}

/// Why no token could be had.
#[derive(Debug, Clone)]
pub struct AuthError {
    pub step: Step,
    pub message: String,
    /// Trying again later may help (network, 5xx, 429).
    pub transient: bool,
    /// From a 429/503 Retry-After.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} step: {}", self.step, self.message)
    }
}

impl std::error::Error for AuthError {}

fn permanent(step: Step, message: String) -> AuthError {
    AuthError {
        step,
        message,
        transient: false,
        retry_after: None,
    }
}

/// A grant lives this long (Maskinporten's most).
pub const GRANT_SECONDS: u64 = 120;
/// A token is renewed when less than this is left of it.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// How long an exchanged token is assumed to live when its `exp` is unreadable.
const ALTINN_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Longest answer we read from a token endpoint.
const MAX_ANSWER: usize = 64 * 1024;

/// The claims of the grant: exactly these, nothing else.
#[derive(Debug, Serialize, Deserialize)]
pub struct GrantClaims {
    pub aud: String,
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub scope: String,
}

/// Signs grants. Holds the key; prints nothing of it.
pub struct Signer {
    key: EncodingKey,
    header: Header,
    client_id: String,
    audience: String,
    scope: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Load the key (and certificate chain) the config names.
    pub fn load(cfg: &Altinn3Config) -> Result<Signer, AuthError> {
        crate::config::altinn3::private_key_problem(&cfg.private_key)
            .map_err(|e| permanent(Step::Key, format!("transport.altinn3.private_key: {e}")))?;
        let pem = std::fs::read(&cfg.private_key).map_err(|e| {
            permanent(
                Step::Key,
                format!("{} cannot be read: {e}", cfg.private_key.display()),
            )
        })?;
        // The parser's error says nothing of the content; ours neither.
        let key = EncodingKey::from_rsa_pem(&pem).map_err(|_| {
            permanent(
                Step::Key,
                format!(
                    "{} is not an RSA private key in PEM format (-----BEGIN PRIVATE KEY----- \
                     or -----BEGIN RSA PRIVATE KEY-----)",
                    cfg.private_key.display()
                ),
            )
        })?;
        let mut header = Header::new(Algorithm::RS256);
        match (&cfg.key_id, &cfg.certificate_chain) {
            (Some(kid), _) => header.kid = Some(kid.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    permanent(
                        Step::Key,
                        format!("certificate_chain {} cannot be read: {e}", path.display()),
                    )
                })?;
                let chain = certificate_chain(&text).map_err(|e| {
                    permanent(
                        Step::Key,
                        format!("certificate_chain {}: {e}", path.display()),
                    )
                })?;
                header.x5c = Some(chain);
            }
            (None, None) => {
                return Err(permanent(
                    Step::Key,
                    "transport.altinn3 needs key_id or certificate_chain".into(),
                ))
            }
        }
        Ok(Signer {
            key,
            header,
            client_id: cfg.client_id.clone(),
            audience: cfg.audience.clone(),
            scope: cfg.scopes.join(" "),
        })
    }

    /// A fresh grant, valid from `now` for [`GRANT_SECONDS`].
    pub fn grant(&self, now: SystemTime) -> Result<Secret, AuthError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = GrantClaims {
            aud: self.audience.clone(),
            iss: self.client_id.clone(),
            iat,
            exp: iat + GRANT_SECONDS,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: self.scope.clone(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map(Secret)
            .map_err(|e| permanent(Step::Key, format!("the grant cannot be signed: {e}")))
    }
}

/// The certificates of a PEM chain as `x5c` wants them: base64 DER, leaf first.
pub fn certificate_chain(pem: &str) -> Result<Vec<String>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(b) = rest.find(BEGIN) {
        let after = &rest[b + BEGIN.len()..];
        let e = after
            .find(END)
            .ok_or("a certificate has no -----END CERTIFICATE----- line")?;
        let body: String = after[..e].chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(&body)
            .map_err(|_| "a certificate is not valid base64")?;
        out.push(body);
        rest = &after[e + END.len()..];
    }
    if out.is_empty() {
        return Err("no -----BEGIN CERTIFICATE----- block found".into());
    }
    Ok(out)
}

/// Maskinporten's answer.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
}

/// An OAuth error answer.
#[derive(Deserialize, Default)]
#[serde(default)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

/// A token and when to stop using it.
#[derive(Clone)]
struct Cached {
    token: Secret,
    renew_at: Instant,
    /// Counts fetched tokens, so a 401 on an old one does not discard a newer one.
    generation: u64,
}

/// The token source for API calls.
pub struct Auth {
    http: reqwest::Client,
    signer: Signer,
    token_url: String,
    exchange_url: Option<String>,
    cache: Mutex<Option<Cached>>,
}

/// A token for a call, with the generation to name when it is refused.
#[derive(Clone, Debug)]
pub struct Token {
    pub secret: Secret,
    pub generation: u64,
}

impl Auth {
    pub fn new(cfg: &Altinn3Config, http: reqwest::Client) -> Result<Auth, AuthError> {
        Ok(Auth {
            http,
            signer: Signer::load(cfg)?,
            token_url: cfg.token_url.clone(),
            exchange_url: cfg.exchange().map(str::to_string),
            cache: Mutex::new(None),
        })
    }

    /// A usable token: the cached one, or a new one.
    pub async fn token(&self) -> Result<Token, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if Instant::now() < c.renew_at {
                return Ok(Token {
                    secret: c.token.clone(),
                    generation: c.generation,
                });
            }
        }
        let generation = cache.as_ref().map_or(1, |c| c.generation + 1);
        let (token, lifetime) = self.fetch().await?;
        let renew_at = Instant::now() + renew_after(lifetime);
        *cache = Some(Cached {
            token: token.clone(),
            renew_at,
            generation,
        });
        Ok(Token {
            secret: token,
            generation,
        })
    }

    /// The API refused the token of `generation`: forget it (unless a newer
    /// one is cached already).
    pub async fn invalidate(&self, generation: u64) {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_mut() {
            if c.generation == generation {
                c.renew_at = Instant::now();
            }
        }
    }

    /// Fetch the Maskinporten token, and exchange it when configured.
    /// Returns the token for the API and how long it lives.
    pub async fn fetch(&self) -> Result<(Secret, Duration), AuthError> {
        let (mp, mp_life) = self.maskinporten().await?;
        match &self.exchange_url {
            None => Ok((mp, mp_life)),
            Some(url) => self.exchange(url, &mp).await,
        }
    }

    /// The grant → Maskinporten's access token.
    pub async fn maskinporten(&self) -> Result<(Secret, Duration), AuthError> {
        let grant = self.signer.grant(SystemTime::now())?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", grant.expose()),
        ];
        let resp = self
            .http
            .post(&self.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| network(Step::Client, "Maskinporten", &self.token_url, &e))?;
        let status = resp.status();
        let retry_after = super::client::retry_after(resp.headers());
        let body = read_capped(resp, MAX_ANSWER)
            .await
            .map_err(|e| network(Step::Client, "Maskinporten", &self.token_url, &e))?;
        if status.is_success() {
            let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
                permanent(
                    Step::Client,
                    format!(
                        "Maskinporten ({}) answered {status} with something that is not a token \
                         response ({} bytes); is token_url right?",
                        self.token_url,
                        body.len()
                    ),
                )
            })?;
            let token = parsed
                .access_token
                .filter(|t| !t.trim().is_empty() && !t.contains(char::is_whitespace))
                .ok_or_else(|| {
                    permanent(
                        Step::Client,
                        format!(
                            "Maskinporten ({}) answered without an access_token",
                            self.token_url
                        ),
                    )
                })?;
            let life = parsed
                .expires_in
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
                .map_or(Duration::from_secs(GRANT_SECONDS), Duration::from_secs);
            return Ok((Secret(token), life));
        }
        let transient = status.is_server_error() || status.as_u16() == 429;
        let oauth: OAuthError = serde_json::from_slice(&body).unwrap_or_default();
        let error = oauth.error.unwrap_or_default();
        let description = printable(oauth.error_description.as_deref().unwrap_or(""), 300);
        let step = match error.as_str() {
            "invalid_scope" => Step::Scope,
            "invalid_client" | "unauthorized_client" => Step::Client,
            "invalid_grant" if description.to_lowercase().contains("scope") => Step::Scope,
            "invalid_grant" => Step::Key,
            _ => Step::Client,
        };
        let hint = match step {
            Step::Scope => " (the client must be granted the scopes in transport.altinn3.scopes)",
            Step::Key => " (is the key registered with the client, and key_id its kid?)",
            _ => " (is client_id right, and audience Maskinporten's issuer id?)",
        };
        Err(AuthError {
            step,
            message: format!(
                "Maskinporten refused the grant: HTTP {status}{}{}{hint}",
                if error.is_empty() {
                    String::new()
                } else {
                    format!(", {error}")
                },
                if description.is_empty() {
                    String::new()
                } else {
                    format!(": {description}")
                },
            ),
            transient,
            retry_after,
        })
    }

    /// Maskinporten token → Altinn token.
    async fn exchange(&self, url: &str, mp: &Secret) -> Result<(Secret, Duration), AuthError> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(mp.expose())
            .header(reqwest::header::ACCEPT, "text/plain, application/json")
            .send()
            .await
            .map_err(|e| network(Step::Exchange, "the token exchange", url, &e))?;
        let status = resp.status();
        let retry_after = super::client::retry_after(resp.headers());
        let body = read_capped(resp, MAX_ANSWER)
            .await
            .map_err(|e| network(Step::Exchange, "the token exchange", url, &e))?;
        if !status.is_success() {
            let transient = status.is_server_error() || status.as_u16() == 429;
            let why = match status.as_u16() {
                401 => {
                    " (it did not accept the Maskinporten token: wrong audience or environment?)"
                }
                403 => " (the client lacks a scope the exchange needs)",
                _ => "",
            };
            return Err(AuthError {
                step: Step::Exchange,
                message: format!("the token exchange ({url}) answered HTTP {status}{why}"),
                transient,
                retry_after,
            });
        }
        let text = String::from_utf8_lossy(&body);
        let token = text.trim().trim_matches('"').trim();
        if !looks_like_jwt(token) {
            return Err(permanent(
                Step::Exchange,
                format!(
                    "the token exchange ({url}) answered with something that is not a token \
                     ({} bytes); is exchange_url right?",
                    body.len()
                ),
            ));
        }
        let life = jwt_lifetime(token).unwrap_or(ALTINN_TOKEN_LIFETIME);
        Ok((Secret(token.to_string()), life))
    }
}

/// When to renew a token that lives `life`: a margin before the end (at
/// least half its life is used). A lifetime a server states is believed
/// within bounds only: "expired already" must not make every call fetch a
/// token (a 401 sorts that out), "ten years" must not keep one for ever.
fn renew_after(life: Duration) -> Duration {
    let life = life.clamp(MIN_LIFETIME, MAX_LIFETIME);
    life.saturating_sub(RENEW_MARGIN).max(life / 2)
}

const MIN_LIFETIME: Duration = Duration::from_secs(20);
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Three dot-separated base64url segments, nothing else.
fn looks_like_jwt(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

/// `exp` − now of an (unverified) JWT: only used to know when to renew it.
fn jwt_lifetime(t: &str) -> Option<Duration> {
    let payload = t.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?.as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(exp.saturating_sub(now)))
}

fn network(step: Step, who: &str, url: &str, e: &reqwest::Error) -> AuthError {
    AuthError {
        step,
        message: format!("{who} ({url}) could not be reached: {}", describe(e)),
        transient: true,
        retry_after: None,
    }
}

/// A reqwest error in words, with its causes (no request content).
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Read at most `cap` bytes of an answer (a hostile server cannot make us
/// hold more).
pub async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..room.min(chunk.len())]);
        if out.len() >= cap {
            break;
        }
    }
    Ok(out)
}

/// Server text made safe for one log line: printable, at most `max` chars.
pub fn printable(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shapes() {
        assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(!looks_like_jwt("<html>oops</html>"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a b.c.d"));
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{{\"exp\":{}}}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 1800
        ));
        let life = jwt_lifetime(&format!("eyJh.{payload}.c2ln")).unwrap();
        assert!(life > Duration::from_secs(1790) && life <= Duration::from_secs(1800));
        assert_eq!(
            renew_after(Duration::from_secs(1800)),
            Duration::from_secs(1740)
        );
        assert_eq!(
            renew_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        // Hostile lifetimes are bounded.
        assert_eq!(renew_after(Duration::ZERO), Duration::from_secs(10));
        assert_eq!(
            renew_after(Duration::from_secs(10 * 365 * 86_400)),
            Duration::from_secs(3540)
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret("eyJhbGciOi.secret.token".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let t = Token {
            secret: s,
            generation: 1,
        };
        assert!(!format!("{t:?}").contains("secret.token"));
    }

    /// The test key, copied to `dir` with mode `mode`; a config using it.
    pub(crate) fn test_config(dir: &std::path::Path, mode: u32) -> Altinn3Config {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("client.pem");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/altinn3/client.pem"
            ),
            &key,
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut cfg = Altinn3Config::new("test-client-id", key);
        cfg.key_id = Some("test-kid".into());
        cfg.fill_defaults();
        cfg
    }

    #[test]
    fn the_grant_verifies_with_the_public_key_and_has_only_the_allowed_claims() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = test_config(dir.path(), 0o600);
        let signer = Signer::load(&cfg).unwrap();
        assert!(!format!("{signer:?}").contains("BEGIN"));
        let now = SystemTime::now();
        let grant = signer.grant(now).unwrap();
        let other = signer.grant(now).unwrap();
        let public = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/altinn3/client.pub.pem"
        ))
        .unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.set_audience(&["https://test.maskinporten.no/"]);
        v.set_issuer(&["test-client-id"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(grant.expose(), &key, &v).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some("test-kid"));
        assert_eq!(data.header.alg, Algorithm::RS256);
        assert!(data.header.x5c.is_none());
        let claims = data.claims.as_object().unwrap();
        let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["aud", "exp", "iat", "iss", "jti", "scope"]);
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap() - iat, GRANT_SECONDS);
        assert_eq!(claims["scope"], "eformidling:dpv");
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(jti).unwrap().get_version_num(), 4);
        // Every grant is single-use: a new jti each time.
        let data2 = jsonwebtoken::decode::<serde_json::Value>(other.expose(), &key, &v).unwrap();
        assert_ne!(data2.claims["jti"], claims["jti"]);
    }

    #[test]
    fn direct_route_scopes_and_x5c() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path(), 0o600);
        cfg.route = crate::config::Route::Direct;
        cfg.scopes.clear();
        cfg.key_id = None;
        let chain = dir.path().join("chain.pem");
        std::fs::write(
            &chain,
            "-----BEGIN CERTIFICATE-----\nTUlJ\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        cfg.certificate_chain = Some(chain);
        cfg.fill_defaults();
        let grant = Signer::load(&cfg)
            .unwrap()
            .grant(SystemTime::now())
            .unwrap();
        let header = jsonwebtoken::decode_header(grant.expose()).unwrap();
        assert_eq!(header.x5c, Some(vec!["TUlJ".to_string()]));
        assert!(header.kid.is_none());
        let payload = grant.expose().split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims["scope"],
            "altinn:serviceowner altinn:correspondence.write"
        );
    }

    #[test]
    fn a_key_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = test_config(dir.path(), 0o644);
        let e = Signer::load(&cfg).unwrap_err();
        assert_eq!(e.step, Step::Key);
        assert!(e.message.contains("chmod 600"), "{}", e.message);
        // Not a key at all: named, never printed.
        let cfg = test_config(dir.path(), 0o600);
        std::fs::write(&cfg.private_key, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
        let e = Signer::load(&cfg).unwrap_err();
        assert!(
            e.message.contains("not an RSA private key"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("c2VjcmV0"));
    }

    #[test]
    fn certificate_chains() {
        let pem = "-----BEGIN CERTIFICATE-----\nTUlJ\nQkFB\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nQ0NDQw==\n-----END CERTIFICATE-----\n";
        assert_eq!(certificate_chain(pem).unwrap(), ["TUlJQkFB", "Q0NDQw=="]);
        assert!(certificate_chain("nothing").is_err());
        assert!(
            certificate_chain("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----")
                .is_err()
        );
    }
}
