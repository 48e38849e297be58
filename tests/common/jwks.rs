//! JWK / JWKS documents for tests of the daemon's JWKS checks: real RSA keys where aws-lc-rs can
//! generate them, and random moduli of any size where only the key's shape matters.

use base64::Engine;
use serde_json::{Value, json};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// RSA public key material as unsigned big-endian bytes without leading zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaPublic {
    pub modulus: Vec<u8>,
    pub exponent: Vec<u8>,
}

impl RsaPublic {
    pub fn bits(&self) -> usize {
        match self.modulus.first() {
            Some(b) => self.modulus.len() * 8 - b.leading_zeros() as usize,
            None => 0,
        }
    }

    pub fn jwk(&self, kid: &str) -> Value {
        json!({
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "alg": "RS256",
            "n": B64URL.encode(&self.modulus),
            "e": B64URL.encode(&self.exponent),
        })
    }

    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn spki_pem(&self) -> String {
        let pkcs1 = der_seq(&[der_uint(&self.modulus), der_uint(&self.exponent)]);
        // AlgorithmIdentifier { rsaEncryption, NULL }
        let alg = der_seq(&[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            der(0x05, &[]),
        ]);
        let mut bits = vec![0u8];
        bits.extend_from_slice(&pkcs1);
        pem("PUBLIC KEY", &der_seq(&[alg, der(0x03, &bits)]))
    }
}

/// A genuine RSA key from aws-lc-rs (2048, 3072 or 4096 bits).
pub fn real_rsa(bits: usize) -> RsaPublic {
    let size = match bits {
        2048 => rcgen::RsaKeySize::_2048,
        3072 => rcgen::RsaKeySize::_3072,
        4096 => rcgen::RsaKeySize::_4096,
        _ => panic!("aws-lc-rs generates only 2048/3072/4096-bit RSA keys, not {bits}"),
    };
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size).expect("RSA keygen");
    // For RSA, rcgen's raw public key is the PKCS#1 RSAPublicKey that goes inside the SPKI.
    parse_pkcs1(key.public_key_raw()).expect("parse PKCS#1 RSAPublicKey")
}

/// A random odd modulus of exactly `bits` bits with e = 65537: not a usable key, but the right
/// shape for checks that only look at key type and size.
pub fn synthetic_rsa(bits: usize) -> RsaPublic {
    assert!(bits >= 16, "modulus too small");
    let len = bits.div_ceil(8);
    let mut modulus: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
    let top_bit = (bits - 1) % 8;
    modulus[0] &= ((1u16 << (top_bit + 1)) - 1) as u8;
    modulus[0] |= 1 << top_bit;
    modulus[len - 1] |= 1;
    RsaPublic {
        modulus,
        exponent: vec![0x01, 0x00, 0x01],
    }
}

/// Real key for sizes aws-lc-rs supports, synthetic otherwise (e.g. 1024 for a weak-key test).
pub fn rsa_key(bits: usize) -> RsaPublic {
    match bits {
        2048 | 3072 | 4096 => real_rsa(bits),
        _ => synthetic_rsa(bits),
    }
}

/// `{"kty":"RSA","kid":..,"use":"sig","alg":"RS256","n":..,"e":"AQAB"}`
pub fn rsa_jwk(kid: &str, bits: usize) -> Value {
    rsa_key(bits).jwk(kid)
}

/// A P-256 signing key as a JWK, for mixing key types in one set.
pub fn ec_jwk(kid: &str) -> Value {
    let key = rcgen::KeyPair::generate().expect("P-256 keygen");
    // Uncompressed SEC1 point: 0x04 || x || y.
    let point = key.public_key_raw();
    assert_eq!(point.len(), 65, "unexpected P-256 point encoding");
    json!({
        "kty": "EC",
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
        "crv": "P-256",
        "x": B64URL.encode(&point[1..33]),
        "y": B64URL.encode(&point[33..]),
    })
}

/// `{"keys": [...]}`
pub fn jwks(keys: impl IntoIterator<Item = Value>) -> Value {
    json!({ "keys": keys.into_iter().collect::<Vec<_>>() })
}

/// Parses DER `SEQUENCE { INTEGER n, INTEGER e }`.
pub fn parse_pkcs1(der_bytes: &[u8]) -> Option<RsaPublic> {
    let (tag, body, _) = read_tlv(der_bytes)?;
    if tag != 0x30 {
        return None;
    }
    let (t1, n, rest) = read_tlv(body)?;
    let (t2, e, _) = read_tlv(rest)?;
    if t1 != 0x02 || t2 != 0x02 {
        return None;
    }
    let strip = |b: &[u8]| {
        let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        b[i..].to_vec()
    };
    Some(RsaPublic {
        modulus: strip(n),
        exponent: strip(e),
    })
}

fn read_tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        let bytes = data.get(2..2 + n)?;
        (
            bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize),
            2 + n,
        )
    };
    let body = data.get(hdr..hdr + len)?;
    Some((tag, body, &data[hdr + len..]))
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(body);
    out
}

fn der_seq(items: &[Vec<u8>]) -> Vec<u8> {
    der(0x30, &items.concat())
}

/// INTEGER from unsigned bytes: a leading zero keeps it positive when the top bit is set.
fn der_uint(unsigned: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(unsigned.len() + 1);
    if unsigned.first().is_none_or(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(unsigned);
    der(0x02, &body)
}

fn pem(label: &str, der_bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der_bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
