//! Maskinporten, the Altinn token exchange, and who may call what.
//!
//! Three kinds of token meet here:
//! - the client's *JWT grant*, signed RS256/384/512 with its private key and
//!   checked against `--client-key` as Maskinporten checks it (signature,
//!   `aud` = the advertised audience, `iss` present, `exp − iat ≤ 120 s`,
//!   `exp` not passed, `iat` not in the future, `jti` used once, scopes
//!   known);
//! - the *Maskinporten token* the simulator issues for it (120 s, issuer =
//!   the audience);
//! - the *Altinn token* the exchange issues for a Maskinporten token (30
//!   minutes, issuer = `…/authentication/api/v1/openid/`, same scopes).
//!
//! Both issued kinds are HS256 JWTs signed with a secret kept in
//! `DIR/state/token-secret`, so tokens outlive a restart of the simulator
//! on the same address, as Altinn's outlive a redeploy.
//!
//! The API's policies (`DependencyInjection.SenderScopePolicy`): an Altinn
//! token needs `altinn:correspondence.write`, a Maskinporten token both
//! `altinn:serviceowner` and `altinn:correspondence.write`. The eFormidling
//! DPV proxy sits in front of the same paths in real life and wants an
//! exchanged token with `eformidling:dpv`; the simulator is both at once, so
//! an Altinn token with `eformidling:dpv` passes too. No or a bad token is a
//! bare 401 (JwtBearer's challenge), a token without the scopes a bare 403.

// A handler step fails with the response to send; boxing it would only add
// noise to code that is nowhere near a hot path.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::problem;

/// Scopes the simulated Maskinporten grants to any client.
const KNOWN_SCOPES: &[&str] = &[
    "eformidling:dpv",
    "altinn:serviceowner",
    "altinn:correspondence.write",
    "altinn:correspondence.read",
    "altinn:events.subscribe",
];

/// Lifetime of a Maskinporten access token (Maskinporten's default).
pub const MASKINPORTEN_TOKEN_SECS: i64 = 120;
/// Lifetime of an exchanged Altinn token (`JwtValidityMinutes: 30`).
pub const ALTINN_TOKEN_SECS: i64 = 30 * 60;

/// What a policy asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Initialize, upload, attachments.
    Sender,
    /// Overview, search, purge.
    SenderOrRecipient,
}

/// The claims of the tokens the simulator issues.
#[derive(Debug, Serialize, Deserialize)]
struct IssuedClaims {
    iss: String,
    scope: String,
    client_id: String,
    iat: i64,
    exp: i64,
    jti: String,
    consumer: Value,
}

/// The claims of a client's grant; all optional so a missing one is our
/// error message, not a decoder's.
#[derive(Debug, Deserialize)]
struct GrantClaims {
    aud: Option<Value>,
    iss: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
    scope: Option<String>,
}

pub struct Auth {
    client_key: DecodingKey,
    secret: Vec<u8>,
    /// The Maskinporten issuer id clients must put in `aud`.
    pub audience: String,
    /// The issuer of exchanged tokens.
    pub altinn_issuer: String,
    /// jti → its grant's exp, until that has passed.
    seen_jti: Mutex<HashMap<String, i64>>,
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Auth {
    /// `client_key_pem`: the client's public key. The token secret is read
    /// from (or first written to) `state_dir/token-secret`.
    pub fn new(
        client_key_pem: &[u8],
        state_dir: &Path,
        audience: String,
        altinn_issuer: String,
    ) -> Result<Auth, String> {
        let client_key = DecodingKey::from_rsa_pem(client_key_pem)
            .map_err(|e| format!("--client-key is not an RSA public key in PEM: {e}"))?;
        let path = state_dir.join("token-secret");
        let secret = match std::fs::read(&path) {
            Ok(s) if s.len() >= 32 => s,
            _ => {
                let s: Vec<u8> = (0..4)
                    .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
                    .collect();
                std::fs::write(&path, &s)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                s
            }
        };
        Ok(Auth {
            client_key,
            secret,
            audience,
            altinn_issuer,
            seen_jti: Mutex::new(HashMap::new()),
        })
    }

    fn issue(&self, iss: &str, scope: &str, client_id: &str, lifetime: i64) -> String {
        let now = now_secs();
        let claims = IssuedClaims {
            iss: iss.to_string(),
            scope: scope.to_string(),
            client_id: client_id.to_string(),
            iat: now,
            exp: now + lifetime,
            jti: uuid::Uuid::new_v4().to_string(),
            consumer: json!({"authority": "iso6523-actorid-upis", "ID": "0192:991825827"}),
        };
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret).expect("non-empty secret"),
        )
        .unwrap_or_default()
    }

    /// Verify a token this simulator issued; `Err` is JwtBearer's reason.
    fn verify_issued(&self, token: &str) -> Result<IssuedClaims, &'static str> {
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_aud = false;
        v.leeway = 0; // ClockSkew = TimeSpan.Zero
        let key = DecodingKey::from_secret(&self.secret)
            .map_err(|_| "The signature key was not found")?;
        match decode::<IssuedClaims>(token, &key, &v) {
            Ok(t) => Ok(t.claims),
            Err(e) => Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "The token expired",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "The signature is invalid",
                _ => "The token is malformed",
            }),
        }
    }

    /// `POST /maskinporten/token` with the form already parsed.
    pub fn token_endpoint(&self, form: &HashMap<String, String>) -> Response {
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return oauth_error(
                "unsupported_grant_type",
                "grant_type must be urn:ietf:params:oauth:grant-type:jwt-bearer",
            );
        }
        let Some(assertion) = form.get("assertion").filter(|a| !a.is_empty()) else {
            return oauth_error("invalid_request", "Missing assertion");
        };
        match self.check_grant(assertion) {
            Ok((client_id, scope)) => {
                let token = self.issue(&self.audience, &scope, &client_id, MASKINPORTEN_TOKEN_SECS);
                let mut r = axum::Json(json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": MASKINPORTEN_TOKEN_SECS,
                    "scope": scope,
                }))
                .into_response();
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err((error, why)) => oauth_error(error, &why),
        }
    }

    /// Maskinporten's checks of a JWT grant: `Ok((client_id, scope))`.
    fn check_grant(&self, assertion: &str) -> Result<(String, String), (&'static str, String)> {
        let invalid = |why: &str| {
            (
                "invalid_grant",
                format!("Invalid assertion. Client authentication failed. {why}"),
            )
        };
        let header = decode_header(assertion).map_err(|_| invalid("Malformed JWT"))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
        ) {
            return Err(invalid("Unsupported algorithm; use RS256, RS384 or RS512"));
        }
        let mut v = Validation::new(header.alg);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let claims = decode::<GrantClaims>(assertion, &self.client_key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    invalid("Invalid JWT signature")
                }
                _ => invalid("Malformed JWT"),
            })?
            .claims;
        let aud_ok = match &claims.aud {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(invalid(&format!(
                "Invalid audience; expected {}",
                self.audience
            )));
        }
        let client_id = claims
            .iss
            .filter(|i| !i.is_empty())
            .ok_or_else(|| invalid("Missing iss (the client_id)"))?;
        let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
            return Err(invalid("Missing iat or exp"));
        };
        if exp - iat > 120 {
            return Err(invalid(
                "The difference between exp and iat must not be more than 120 seconds",
            ));
        }
        let now = now_secs();
        if exp < now {
            return Err(invalid("The assertion has expired"));
        }
        if iat > now + 10 {
            return Err(invalid("iat is in the future"));
        }
        if let Some(jti) = claims.jti {
            let mut seen = self.seen_jti.lock().unwrap_or_else(|p| p.into_inner());
            seen.retain(|_, e| *e >= now);
            if seen.insert(jti, exp).is_some() {
                return Err(invalid("The jti has been used before"));
            }
        }
        let scope = claims.scope.unwrap_or_default();
        let scopes: Vec<&str> = scope.split_whitespace().collect();
        if scopes.is_empty() {
            return Err(("invalid_scope", "No scope requested".into()));
        }
        if let Some(bad) = scopes.iter().find(|s| !KNOWN_SCOPES.contains(s)) {
            return Err((
                "invalid_scope",
                format!("Scope {bad} is not allowed for this client"),
            ));
        }
        Ok((client_id, scopes.join(" ")))
    }

    /// `GET /authentication/api/v1/exchange/maskinporten`.
    pub fn exchange(&self, headers: &HeaderMap) -> Response {
        if headers.contains_key("X-Altinn-EnterpriseUser-Authentication") {
            return StatusCode::GONE.into_response();
        }
        let Some(token) = bearer(headers) else {
            return problem::unauthenticated();
        };
        let claims = match self.verify_issued(token) {
            Ok(c) if c.iss == self.audience => c,
            Ok(_) => return problem::unauthorized("The token is not a Maskinporten token"),
            Err(why) => return problem::unauthorized(why),
        };
        let altinn = self.issue(
            &self.altinn_issuer,
            &claims.scope,
            &claims.client_id,
            ALTINN_TOKEN_SECS,
        );
        // A bare string; JSON-quoted only for a client that asks for JSON
        // alone (ASP.NET's content negotiation of `Ok(string)`).
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        if accept.contains("application/json")
            && !accept.contains("text/plain")
            && !accept.contains("*/*")
        {
            axum::Json(altinn).into_response()
        } else {
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                altinn,
            )
                .into_response()
        }
    }

    /// The API's authentication and policy check.
    pub fn authorize(&self, headers: &HeaderMap, policy: Policy) -> Result<(), Response> {
        let token = bearer(headers).ok_or_else(problem::unauthenticated)?;
        let claims = self.verify_issued(token).map_err(problem::unauthorized)?;
        let scopes: Vec<&str> = claims.scope.split_whitespace().collect();
        let has = |s: &str| scopes.contains(&s);
        let allowed = if claims.iss == self.altinn_issuer {
            has("altinn:correspondence.write")
                || has("eformidling:dpv")
                || (policy == Policy::SenderOrRecipient && has("altinn:correspondence.read"))
        } else if claims.iss == self.audience {
            has("altinn:serviceowner") && has("altinn:correspondence.write")
        } else {
            return Err(problem::unauthorized("The issuer is invalid"));
        };
        if allowed {
            Ok(())
        } else {
            Err(problem::forbidden())
        }
    }
}

/// The token of `Authorization: Bearer …` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Maskinporten's error answer: 400 with an OAuth error object.
pub fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}
