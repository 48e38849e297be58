//! A fake Clerk signing key for tests: mints RS256 session tokens, publishes its JWKS and
//! verifies tokens the way a correct API would, written independently of the daemon's code.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine as _;
use serde_json::{Value, json};

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub struct SigningKey {
    pub kid: String,
    pub issuer: String,
    key: RsaKeyPair,
}

impl SigningKey {
    pub fn new(kid: &str, issuer: &str) -> Self {
        SigningKey {
            kid: kid.to_string(),
            issuer: issuer.to_string(),
            key: RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA keygen"),
        }
    }

    /// A session token like Clerk's: 60 s by default, `nbf = iat - 10`.
    pub fn mint(&self, ttl_secs: i64) -> String {
        let t = now();
        let header = json!({"alg":"RS256","typ":"JWT","kid":self.kid});
        let claims = json!({
            "iss": self.issuer, "sub": "user_probe", "sid": "sess_probe", "azp": "http://localhost:3000",
            "iat": t, "nbf": t - 10, "exp": t + ttl_secs,
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("sign");
        format!("{input}.{}", b64(&sig))
    }

    pub fn jwk(&self) -> Value {
        let pk = self.key.public_key();
        json!({
            "use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
            "n": b64(pk.modulus().big_endian_without_leading_zero()),
            "e": b64(pk.exponent().big_endian_without_leading_zero()),
        })
    }

    /// What a correct verifier does: this key's signature, RS256, not expired, not before nbf.
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return false;
        }
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()
        };
        let (Some(h), Some(c), Some(sig)) = (dec(parts[0]), dec(parts[1]), dec(parts[2])) else {
            return false;
        };
        let (Ok(h), Ok(c)) = (
            serde_json::from_slice::<Value>(&h),
            serde_json::from_slice::<Value>(&c),
        ) else {
            return false;
        };
        if h["alg"] != "RS256" || h["kid"] != self.kid.as_str() {
            return false;
        }
        let pk = self.key.public_key();
        let key = RsaPublicKeyComponents {
            n: pk.modulus().big_endian_without_leading_zero(),
            e: pk.exponent().big_endian_without_leading_zero(),
        };
        let input = format!("{}.{}", parts[0], parts[1]);
        if key
            .verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                input.as_bytes(),
                &sig,
            )
            .is_err()
        {
            return false;
        }
        let t = now();
        c["exp"].as_i64().is_some_and(|e| t < e) && c["nbf"].as_i64().is_some_and(|n| t >= n)
    }
}
