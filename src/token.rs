//! Where the auth probe's real session token comes from: Clerk's Backend API (minted with the
//! secret key for the probe user's session), a file read every run, or a command's output.
//! The token and the secret key are held as secrets throughout.

use std::path::PathBuf;

use bytes::Bytes;
use http::{HeaderValue, Method};
use serde_json::Value;
use tokio::time::Instant;

use crate::failure::{Failure, Reason};
use crate::net::http::{ConnSpec, HttpClient};
use crate::net::target::Target;
use crate::net::trace::Trace;
use crate::secret::Secret;

/// Tokens are a few kilobytes; anything bigger from a file or command is not a token.
const MAX_TOKEN: usize = 64 * 1024;

/// Where the auth probe gets a real session token.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    /// Clerk's Backend API: POST /v1/sessions/{id}/tokens with the secret key, over `conn`.
    Backend {
        target: Target,
        secret: Secret,
        conn: Box<ConnSpec>,
    },
    /// A file holding the token, read on every run.
    File(PathBuf),
    /// A command whose standard output is the token.
    Command(Vec<String>),
}

/// An `Authorization: Bearer` value, marked sensitive so it is never logged.
pub fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl TokenSource {
    /// Gets a fresh token. `mint_client` talks to the Backend API for a `Backend` source.
    pub async fn obtain(
        &self,
        mint_client: Option<&HttpClient>,
        deadline: Instant,
    ) -> Result<Secret, Failure> {
        let mint_failed = |m: String| Failure::new(Reason::TokenMintFailed, m);
        match self {
            TokenSource::Backend { target, secret, .. } => {
                let client = mint_client
                    .ok_or_else(|| mint_failed("no client for the Backend API".into()))?;
                let auth = bearer(secret.expose()).ok_or_else(|| {
                    Failure::new(
                        Reason::AuthSecretKeyInvalid,
                        "the secret key is not a valid header value",
                    )
                })?;
                let resp = client
                    .send(
                        Method::POST,
                        target,
                        &[(http::header::AUTHORIZATION, auth)],
                        Bytes::new(),
                        &Trace::default(),
                        deadline,
                    )
                    .await
                    .map_err(|f| {
                        Failure::new(f.reason, format!("minting a session token: {}", f.message))
                    })?;
                match resp.status {
                    401 | 403 => Err(Failure::new(
                        Reason::AuthSecretKeyInvalid,
                        format!(
                            "the Backend API answered {} to the token request: secret key rejected",
                            resp.status
                        ),
                    )),
                    200..=299 => serde_json::from_slice::<Value>(&resp.body)
                        .ok()
                        .and_then(|v| v.get("jwt").and_then(Value::as_str).map(Secret::new))
                        .ok_or_else(|| {
                            mint_failed("the Backend API's token response has no \"jwt\"".into())
                        }),
                    s => Err(mint_failed(format!(
                        "the Backend API answered {s} to the token request (is session_id a live session of the probe user?)"
                    ))),
                }
            }
            TokenSource::File(path) => {
                let text = tokio::fs::read(path).await.map_err(|e| {
                    mint_failed(format!("reading token_file {}: {e}", path.display()))
                })?;
                if text.len() > MAX_TOKEN {
                    return Err(mint_failed(format!(
                        "token_file {} is too large for a token",
                        path.display()
                    )));
                }
                Ok(Secret::new(String::from_utf8_lossy(&text).trim()))
            }
            TokenSource::Command(argv) => {
                let mut cmd = tokio::process::Command::new(&argv[0]);
                cmd.args(&argv[1..])
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true);
                let out = tokio::time::timeout_at(deadline, cmd.output())
                    .await
                    .map_err(|_| {
                        mint_failed(format!(
                            "token_command {:?} did not finish in time",
                            argv[0]
                        ))
                    })?
                    .map_err(|e| mint_failed(format!("token_command {:?}: {e}", argv[0])))?;
                if !out.status.success() {
                    return Err(mint_failed(format!(
                        "token_command {:?} exited with {}",
                        argv[0], out.status
                    )));
                }
                if out.stdout.len() > MAX_TOKEN {
                    return Err(mint_failed(format!(
                        "token_command {:?} printed too much for a token",
                        argv[0]
                    )));
                }
                Ok(Secret::new(String::from_utf8_lossy(&out.stdout).trim()))
            }
        }
    }
}
