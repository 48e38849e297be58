//! JWK and JWKS documents: parsing and validating a key set as a verifier would need it
//! (shapes, algorithms, RSA sizes, unique kids), key-material fingerprints, and pinned copies
//! (a JWKS or PEM public keys) compared with the live set.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::failure::{Failure, Reason, quoted};

/// One key of a JWKS, as exported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct JwkInfo {
    pub kid: String,
    pub kty: String,
    pub alg: String,
    pub use_: String,
    pub bits: u32,
    /// A fingerprint of the key material, so a re-keyed kid counts as a change.
    pub material: u64,
    /// Modulus and exponent of an RSA key, for verifying tokens locally.
    pub rsa: Option<(Vec<u8>, Vec<u8>)>,
}

const MIN_RSA_BITS: u32 = 2048;
const KNOWN_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[first..]
}

fn bit_len(b: &[u8]) -> u32 {
    let b = strip_zeros(b);
    match b.first() {
        None => 0,
        Some(top) => (b.len() as u32 - 1) * 8 + (8 - top.leading_zeros()),
    }
}

/// A fingerprint of key material that a JWK and a PEM of the same RSA key share.
fn material(kty: &str, parts: &[&[u8]]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    kty.hash(&mut h);
    for p in parts {
        strip_zeros(p).hash(&mut h);
    }
    h.finish()
}

fn str_field<'a>(key: &'a Value, name: &str) -> Result<Option<&'a str>, String> {
    match key.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("field {name} is not a string")),
    }
}

/// Validates one JWK. Errors say what is wrong without quoting key material.
fn parse_key(key: &Value, index: usize) -> Result<JwkInfo, Failure> {
    let bad = |msg: String| Failure::new(Reason::JwksInvalidKey, format!("key #{index}: {msg}"));
    if !key.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    let kty = str_field(key, "kty")
        .map_err(bad)?
        .ok_or_else(|| bad("missing kty".into()))?;
    let kid = str_field(key, "kid")
        .map_err(bad)?
        .ok_or_else(|| bad("missing kid".into()))?;
    let alg = str_field(key, "alg").map_err(bad)?.unwrap_or("");
    let use_ = str_field(key, "use").map_err(bad)?.unwrap_or("");
    if !alg.is_empty() && !KNOWN_ALGS.contains(&alg) {
        return Err(bad(format!("unsupported alg {}", quoted(alg))));
    }
    if !use_.is_empty() && use_ != "sig" {
        return Err(bad(format!("use is {}, not \"sig\"", quoted(use_))));
    }
    let field = |name: &str| -> Result<Vec<u8>, Failure> {
        let s = str_field(key, name)
            .map_err(bad)?
            .ok_or_else(|| bad(format!("missing {name}")))?;
        b64url(s).ok_or_else(|| bad(format!("{name} is not base64url")))
    };
    let mut rsa = None;
    let (bits, fingerprint) = match kty {
        "RSA" => {
            let n = field("n")?;
            let e = field("e")?;
            let bits = bit_len(&n);
            if bits < MIN_RSA_BITS {
                return Err(bad(format!(
                    "RSA modulus is {bits} bits, below {MIN_RSA_BITS}"
                )));
            }
            if bit_len(&e) == 0 {
                return Err(bad("RSA exponent is zero".into()));
            }
            if !(alg.is_empty() || alg.starts_with("RS") || alg.starts_with("PS")) {
                return Err(bad(format!("alg {alg} does not fit kty RSA")));
            }
            let fingerprint = material("RSA", &[&n]);
            rsa = Some((strip_zeros(&n).to_vec(), strip_zeros(&e).to_vec()));
            (bits, fingerprint)
        }
        "EC" => {
            let crv = str_field(key, "crv").map_err(bad)?.unwrap_or("");
            let bits = match crv {
                "P-256" => 256,
                "P-384" => 384,
                "P-521" => 521,
                other => return Err(bad(format!("unsupported EC curve {}", quoted(other)))),
            };
            let (x, y) = (field("x")?, field("y")?);
            (bits, material("EC", &[&x, &y]))
        }
        "OKP" => {
            let x = field("x")?;
            (256, material("OKP", &[&x]))
        }
        other => return Err(bad(format!("unsupported kty {}", quoted(other)))),
    };
    Ok(JwkInfo {
        kid: kid.to_string(),
        kty: kty.to_string(),
        alg: alg.to_string(),
        use_: use_.to_string(),
        bits,
        material: fingerprint,
        rsa,
    })
}

/// Parses and validates a JWKS document.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<JwkInfo>, Failure> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| {
        let looks_html = body.iter().take(512).any(|b| *b == b'<');
        Failure::new(
            Reason::BodyInvalid,
            if looks_html {
                "JWKS response is HTML, not JSON (a captive portal or proxy error page?)"
                    .to_string()
            } else {
                format!("JWKS response is not JSON: {e}")
            },
        )
    })?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::new(Reason::BodyInvalid, "JWKS has no \"keys\" array"))?;
    if keys.is_empty() {
        return Err(Failure::new(Reason::JwksNoKeys, "JWKS \"keys\" is empty"));
    }
    let mut out = Vec::with_capacity(keys.len());
    let mut kids = HashSet::new();
    for (i, k) in keys.iter().enumerate() {
        let info = parse_key(k, i)?;
        if !kids.insert(info.kid.clone()) {
            return Err(Failure::new(
                Reason::JwksDuplicateKid,
                format!("kid {} appears more than once", quoted(&info.kid)),
            ));
        }
        out.push(info);
    }
    out.sort();
    Ok(out)
}

/// A pinned key: its kid when the pin is a JWKS, and its material.
#[derive(Debug)]
pub struct Pinned {
    kid: Option<String>,
    material: u64,
}

pub fn load_pinned(text: &[u8]) -> Result<Vec<Pinned>, String> {
    if let Ok(keys) = parse_jwks(text) {
        return Ok(keys
            .into_iter()
            .map(|k| Pinned {
                kid: Some(k.kid),
                material: k.material,
            })
            .collect());
    }
    let mut out = Vec::new();
    for spki in SubjectPublicKeyInfoDer::pem_slice_iter(text).flatten() {
        let Ok((_, parsed)) =
            <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
                spki.as_ref(),
            )
        else {
            continue;
        };
        if let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = parsed.parsed() {
            out.push(Pinned {
                kid: None,
                material: material("RSA", &[rsa.modulus]),
            });
        }
    }
    if out.is_empty() {
        return Err("pinned file is neither a valid JWKS nor PEM RSA public keys".into());
    }
    Ok(out)
}

/// Live keys that the pinned copy does not cover (same material, and same kid when known).
pub fn missing_from_pin(live: &[JwkInfo], pinned: &[Pinned]) -> usize {
    live.iter()
        .filter(|k| {
            !pinned.iter().any(|p| {
                p.material == k.material && p.kid.as_deref().is_none_or(|kid| kid == k.kid)
            })
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n_of(bits: usize) -> String {
        let mut n = vec![0x5au8; bits / 8];
        n[0] = 0xc1;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n)
    }

    fn jwks(keys: &[(&str, usize)]) -> Vec<u8> {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(kid, bits)| {
                serde_json::json!({"kty":"RSA","kid":kid,"use":"sig","alg":"RS256","n":n_of(*bits),"e":"AQAB"})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn validates_shapes() {
        let ok = parse_jwks(&jwks(&[("ins_1", 2048)])).unwrap();
        assert_eq!(ok[0].bits, 2048);
        assert_eq!(
            parse_jwks(&jwks(&[("a", 1024)])).unwrap_err().reason,
            Reason::JwksInvalidKey
        );
        assert_eq!(
            parse_jwks(&jwks(&[("a", 2048), ("a", 2048)]))
                .unwrap_err()
                .reason,
            Reason::JwksDuplicateKid
        );
        assert_eq!(
            parse_jwks(br#"{"keys":[]}"#).unwrap_err().reason,
            Reason::JwksNoKeys
        );
        assert_eq!(
            parse_jwks(b"<html>portal</html>").unwrap_err().reason,
            Reason::BodyInvalid
        );
        assert_eq!(
            parse_jwks(br#"{"nokeys":1}"#).unwrap_err().reason,
            Reason::BodyInvalid
        );
    }

    #[test]
    fn pinned_jwks_coverage() {
        let live = parse_jwks(&jwks(&[("ins_1", 2048), ("ins_2", 2048)])).unwrap();
        let pinned = load_pinned(&jwks(&[("ins_1", 2048)])).unwrap();
        assert_eq!(missing_from_pin(&live, &pinned), 1);
    }
}
