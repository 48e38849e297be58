//! Just enough JWT for the auth probe: read a token, verify an RS256 signature against a JWK,
//! check its time and issuer claims, and forge a realistic token with a key of our own.

use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::failure::{Failure, Reason};
use crate::jwk::JwkInfo;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Why a token is not acceptable. Messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT (three base64url parts with JSON header and claims)")]
    Malformed,
    #[error("the token's alg is {0:?}, not RS256")]
    Algorithm(String),
    #[error("the token has no kid")]
    NoKid,
    #[error("the signature does not verify against the JWKS key {0:?}")]
    Signature(String),
    #[error("the token expired {0}s ago")]
    Expired(i64),
    #[error("the token is not valid for another {0}s (nbf/iat in the future: clock skew?)")]
    NotYetValid(i64),
    #[error("the token's issuer {got:?} is not the expected {want:?}")]
    Issuer { got: String, want: String },
}

/// What a token's issuer and lifetime must satisfy, and where its keys came from.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub leeway: Duration,
    pub issuer: Option<&'a str>,
    /// The JWKS probes the keys came from, for the message when the kid is in none.
    pub jwks_probes: &'a [String],
}

/// The verdict on a real token checked against the fetched keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenCheck {
    /// Its kid is in the keys (`None`: no keys fetched yet, or no kid).
    pub kid_known: Option<bool>,
    /// Signature, issuer and times verified (`None`: no keys to verify with yet).
    pub verified: Option<bool>,
    pub problem: Option<Failure>,
}

impl Token {
    /// Checks the real token against the fetched keys: (kid known, verified, problem).
    pub fn check_against(
        &self,
        keys: &[JwkInfo],
        rules: &Rules<'_>,
        now: SystemTime,
    ) -> TokenCheck {
        let token = self;
        let Some(kid) = token.kid.as_deref() else {
            return TokenCheck {
                kid_known: None,
                verified: Some(false),
                problem: Some(Failure::new(
                    Reason::TokenInvalid,
                    "the session token has no kid",
                )),
            };
        };
        if keys.is_empty() {
            // No JWKS fetched yet: nothing to compare with, which is not the token's fault.
            let claims = token.check_claims(now, rules.leeway, rules.issuer);
            return TokenCheck {
                kid_known: None,
                verified: None,
                problem: claims
                    .err()
                    .map(|e| Failure::new(Reason::TokenInvalid, e.to_string())),
            };
        }
        let Some(key) = keys.iter().find(|k| k.kid == kid) else {
            return TokenCheck {
                kid_known: Some(false),
                verified: Some(false),
                problem: Some(Failure::new(
                    Reason::TokenKidUnknown,
                    format!(
                        "the session token's kid {kid:?} is in none of the JWKS of {:?}: publishable and secret keys from different Clerk instances?",
                        rules.jwks_probes
                    ),
                )),
            };
        };
        let verified = match &key.rsa {
            Some((n, e)) => token.verify_rs256(n, e),
            None => Err(TokenError::Algorithm(token.alg.clone())),
        }
        .and_then(|()| token.check_claims(now, rules.leeway, rules.issuer));
        TokenCheck {
            kid_known: Some(true),
            verified: Some(verified.is_ok()),
            problem: verified
                .err()
                .map(|e| Failure::new(Reason::TokenInvalid, e.to_string())),
        }
    }
}

/// A parsed (not yet trusted) token.
#[derive(Debug, Clone)]
pub struct Token {
    pub kid: Option<String>,
    pub alg: String,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Token {
    pub fn parse(raw: &str) -> Result<Token, TokenError> {
        let mut parts = raw.trim().split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Value = serde_json::from_slice(&unb64(h).ok_or(TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Value = serde_json::from_slice(&unb64(c).ok_or(TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        let Value::Object(claims) = claims else {
            return Err(TokenError::Malformed);
        };
        Ok(Token {
            kid: header
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_string),
            alg: header
                .get("alg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            claims,
            signing_input: format!("{h}.{c}"),
            signature: unb64(s).ok_or(TokenError::Malformed)?,
        })
    }

    pub fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(Value::as_i64)
    }

    /// Verifies the RS256 signature with the key's modulus and exponent.
    pub fn verify_rs256(&self, n: &[u8], e: &[u8]) -> Result<(), TokenError> {
        if self.alg != "RS256" {
            return Err(TokenError::Algorithm(self.alg.clone()));
        }
        let key = RsaPublicKeyComponents { n, e };
        key.verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.signing_input.as_bytes(),
            &self.signature,
        )
        .map_err(|_| TokenError::Signature(self.kid.clone().unwrap_or_default()))
    }

    /// Checks `exp`, `nbf` (with `leeway`) and, when given, `iss`.
    pub fn check_claims(
        &self,
        now: SystemTime,
        leeway: Duration,
        issuer: Option<&str>,
    ) -> Result<(), TokenError> {
        let now = unix(now);
        let leeway = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
        if let Some(exp) = self.claim_i64("exp")
            && now > exp + leeway
        {
            return Err(TokenError::Expired(now - exp));
        }
        if let Some(nbf) = self.claim_i64("nbf")
            && now + leeway < nbf
        {
            return Err(TokenError::NotYetValid(nbf - now));
        }
        if let Some(want) = issuer {
            let got = self.claims.get("iss").and_then(Value::as_str).unwrap_or("");
            if got.trim_end_matches('/') != want.trim_end_matches('/') {
                return Err(TokenError::Issuer {
                    got: got.to_string(),
                    want: want.to_string(),
                });
            }
        }
        Ok(())
    }
}

pub fn unix(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// An RSA key authwatch made for itself, to sign tokens a correct API must reject.
#[derive(Debug)]
pub struct Forger {
    key: RsaKeyPair,
    rng: SystemRandom,
}

/// Key generation failed: the crypto library refused (should not happen).
#[derive(Debug, thiserror::Error)]
#[error("cannot generate an RSA key for forged tokens")]
pub struct KeyGenError;

impl Forger {
    pub fn new() -> Result<Forger, KeyGenError> {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyGenError)?;
        Ok(Forger {
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The public modulus and exponent, big-endian.
    pub fn public_components(&self) -> (Vec<u8>, Vec<u8>) {
        let pk = self.key.public_key();
        (
            pk.modulus().big_endian_without_leading_zero().to_vec(),
            pk.exponent().big_endian_without_leading_zero().to_vec(),
        )
    }

    /// Signs `claims` with our key under the given `kid`, as RS256.
    pub fn sign(&self, kid: &str, claims: &Map<String, Value>) -> Option<String> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(Value::Object(claims.clone()).to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                input.as_bytes(),
                &mut sig,
            )
            .ok()?;
        Some(format!("{input}.{}", b64(&sig)))
    }
}

/// Realistic session-token claims, fresh now: those of `like` when given (a real token),
/// with new times.
pub fn fresh_claims(
    like: Option<&Token>,
    issuer: Option<&str>,
    now: SystemTime,
) -> Map<String, Value> {
    let now = unix(now);
    let mut claims = like.map(|t| t.claims.clone()).unwrap_or_default();
    claims
        .entry("sub")
        .or_insert_with(|| json!("user_authwatch_probe"));
    claims
        .entry("sid")
        .or_insert_with(|| json!("sess_authwatch_probe"));
    if let Some(iss) = issuer {
        claims.entry("iss").or_insert_with(|| json!(iss));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now - 10));
    claims.insert("exp".into(), json!(now + 60));
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_token_round_trips_and_fails_against_another_key() {
        let f = Forger::new().unwrap();
        let other = Forger::new().unwrap();
        let now = SystemTime::now();
        let claims = fresh_claims(None, Some("https://clerk.test"), now);
        let t = Token::parse(&f.sign("ins_1", &claims).unwrap()).unwrap();
        assert_eq!(t.kid.as_deref(), Some("ins_1"));
        let (n, e) = f.public_components();
        t.verify_rs256(&n, &e).unwrap();
        let (n2, e2) = other.public_components();
        assert!(matches!(
            t.verify_rs256(&n2, &e2),
            Err(TokenError::Signature(_))
        ));
        t.check_claims(now, Duration::from_secs(5), Some("https://clerk.test"))
            .unwrap();
        assert!(matches!(
            t.check_claims(now + Duration::from_secs(120), Duration::from_secs(5), None),
            Err(TokenError::Expired(_))
        ));
        assert!(matches!(
            t.check_claims(now, Duration::ZERO, Some("https://other")),
            Err(TokenError::Issuer { .. })
        ));
        assert_eq!(Token::parse("a.b").unwrap_err(), TokenError::Malformed);
    }
}
