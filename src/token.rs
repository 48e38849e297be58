//! Where the auth probe's real session token comes from: Clerk's Backend API (minted with the
//! secret key for the probe user's session), a file read every run, or a command's output.
//! The token and the secret key are held as secrets throughout.

use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Method};
use serde_json::Value;
use tokio::time::Instant;

use crate::failure::{Failure, Reason};
use crate::jwt::{self, Token};
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

fn mint_failed(m: String) -> Failure {
    Failure::new(Reason::TokenMintFailed, m)
}

impl TokenSource {
    /// Gets a fresh token. `mint_client` talks to the Backend API for a `Backend` source.
    pub async fn obtain(
        &self,
        mint_client: Option<&HttpClient>,
        deadline: Instant,
    ) -> Result<Secret, Failure> {
        match self {
            TokenSource::Backend { target, secret, .. } => {
                let client = mint_client
                    .ok_or_else(|| mint_failed("no client for the Backend API".into()))?;
                mint(client, target, secret, deadline).await
            }
            TokenSource::File(path) => read_file(path).await,
            TokenSource::Command(argv) => run_command(argv, deadline).await,
        }
    }
}

/// `POST /v1/sessions/{id}/tokens` with the secret key: the token is the answer's `jwt`.
async fn mint(
    client: &HttpClient,
    target: &Target,
    secret: &Secret,
    deadline: Instant,
) -> Result<Secret, Failure> {
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
        .map_err(|f| Failure::new(f.reason, format!("minting a session token: {}", f.message)))?;
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
            .ok_or_else(|| mint_failed("the Backend API's token response has no \"jwt\"".into())),
        s => Err(mint_failed(format!(
            "the Backend API answered {s} to the token request (is session_id a live session of the probe user?)"
        ))),
    }
}

async fn read_file(path: &std::path::Path) -> Result<Secret, Failure> {
    // Bounded and regular files only: /dev/zero or a FIFO must not cost memory or a thread.
    let text = crate::files::read_limited_async(path, MAX_TOKEN as u64)
        .await
        .map_err(|e| mint_failed(format!("token_file: {e}")))?;
    Ok(Secret::new(String::from_utf8_lossy(&text).trim()))
}

/// Runs the command (no stdin, stderr discarded so nothing it prints reaches a log) within
/// the deadline; its stdout is the token.
async fn run_command(argv: &[String], deadline: Instant) -> Result<Secret, Failure> {
    let Some((program, args)) = argv.split_first() else {
        return Err(mint_failed("token_command is empty".into()));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout_at(deadline, cmd.output())
        .await
        .map_err(|_| mint_failed(format!("token_command {program:?} did not finish in time")))?
        .map_err(|e| mint_failed(format!("token_command {program:?}: {e}")))?;
    if !out.status.success() {
        return Err(mint_failed(format!(
            "token_command {program:?} exited with {}",
            out.status
        )));
    }
    if out.stdout.len() > MAX_TOKEN {
        return Err(mint_failed(format!(
            "token_command {program:?} printed too much for a token"
        )));
    }
    Ok(Secret::new(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The auth probe's tokens across runs: the real token in use (minted once and reused while
/// it has life left, so runs do not spend the Backend API's rate limit), one waiting to expire
/// for the expired_token case and one that has, and when the negative cases last ran.
#[derive(Debug, Default)]
pub struct HeldTokens {
    current: Option<(Secret, i64)>,
    pending: Option<(Secret, i64)>,
    expired: Option<Secret>,
    /// Tokens obtained since start.
    pub mints: u64,
    /// When the forged and expired cases last ran, and what they found.
    pub negative_at: Option<SystemTime>,
    pub negative_results: Vec<crate::probe::auth::CaseResult>,
}

/// A token is reused while more than this much of its life is left, so a request made with it
/// cannot expire on the way.
const REUSE_MARGIN_SECS: i64 = 15;

impl HeldTokens {
    /// The real token in use, if it has life left.
    pub fn reusable(&self, now: SystemTime) -> Option<Secret> {
        let (t, exp) = self.current.as_ref()?;
        (*exp - jwt::unix(now) > REUSE_MARGIN_SECS).then(|| t.clone())
    }

    /// Keeps a freshly obtained token for reuse.
    pub fn obtained(&mut self, token: &Secret, parsed: Option<&Token>) {
        self.mints += 1;
        let exp = parsed.and_then(|p| p.claim_i64("exp")).unwrap_or(0);
        self.current = Some((token.clone(), exp));
    }

    /// An earlier real token once it has expired (past `leeway` seconds); holds this run's
    /// token for a later run when none is waiting.
    pub fn cycle(
        &mut self,
        minted: Option<(&Secret, &Token)>,
        leeway: i64,
        now: SystemTime,
    ) -> Option<Secret> {
        let held = self;
        if let Some((t, exp)) = held.pending.take() {
            if jwt::unix(now) > exp + leeway {
                held.expired = Some(t);
            } else {
                held.pending = Some((t, exp));
            }
        }
        if held.pending.is_none()
            && let Some((t, p)) = minted
        {
            held.pending = Some((t.clone(), p.claim_i64("exp").unwrap_or(i64::MAX)));
        }
        held.expired.clone()
    }
}
