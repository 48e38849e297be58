//! The `auth` probe: calls a protected route of the API with a real token (expect 2xx), with no
//! token, a forged token and an expired one (expect rejections), after checking the real token
//! locally against the JWKS the daemon already fetched.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method};
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{AuthCase, AuthSpec, TokenSource};
use crate::failure::Reason;
use crate::jwt::{self, Forger, Token};
use crate::lock;
use crate::net::http::HttpClient;
use crate::outcome::{AuthDetails, CaseResult, Details, Failure, JwkInfo, RunResult, Trace};
use crate::secret::Secret;
use crate::store::Store;

/// Cases stop a little before the run's deadline so a stalled API is reported per case.
const MARGIN: Duration = Duration::from_millis(50);
/// Tokens are a few kilobytes; anything bigger from a file or command is not a token.
const MAX_TOKEN: usize = 64 * 1024;

#[derive(Debug)]
pub struct AuthProbe {
    spec: AuthSpec,
    /// Talks to the API.
    client: HttpClient,
    /// Talks to Clerk's Backend API when tokens are minted there.
    mint_client: Option<HttpClient>,
    store: Arc<Store>,
    forger: Option<Forger>,
    held: Mutex<HeldTokens>,
}

/// Real tokens kept for the expired_token case: one waiting to expire, and one that has.
#[derive(Debug, Default)]
struct HeldTokens {
    pending: Option<(Secret, i64)>,
    expired: Option<Secret>,
}

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl AuthProbe {
    pub fn new(
        spec: AuthSpec,
        client: HttpClient,
        mint_client: Option<HttpClient>,
        store: Arc<Store>,
    ) -> Self {
        let forger = Forger::new().ok();
        if forger.is_none() {
            tracing::error!(
                "cannot generate the RSA key for forged tokens; the forged_token case is skipped"
            );
        }
        AuthProbe {
            spec,
            client,
            mint_client,
            store,
            forger,
            held: Mutex::new(HeldTokens::default()),
        }
    }

    async fn obtain_token(&self, deadline: Instant) -> Result<Secret, Failure> {
        let mint_failed = |m: String| Failure::new(Reason::TokenMintFailed, m);
        match &self.spec.source {
            TokenSource::Backend { target, secret, .. } => {
                let client = self
                    .mint_client
                    .as_ref()
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

    /// Calls the protected route once. Returns the case result and, when it failed, why.
    async fn call(
        &self,
        case: AuthCase,
        token: Option<&str>,
        trace: &Trace,
        deadline: Instant,
    ) -> (CaseResult, Option<Failure>) {
        let started = Instant::now();
        let headers: Vec<_> = token
            .and_then(bearer)
            .map(|v| (http::header::AUTHORIZATION, v))
            .into_iter()
            .collect();
        let result = self
            .client
            .get(&self.spec.target, &headers, trace, deadline)
            .await;
        let duration = started.elapsed();
        let label = case.as_label();
        let (passed, status, failure) = match result {
            Err(f) => (
                false,
                None,
                Some(Failure::new(f.reason, format!("{label}: {}", f.message))),
            ),
            Ok(resp) => {
                let s = resp.status;
                let ok = (200..=299).contains(&s);
                let failure = match case {
                    AuthCase::ValidToken if ok => None,
                    AuthCase::ValidToken if (400..=499).contains(&s) => Some(Failure::new(
                        Reason::AuthValidTokenRejected,
                        format!("a valid token was answered {s} by {}", self.spec.target),
                    )),
                    AuthCase::ValidToken => Some(Failure::new(
                        Reason::HttpStatus,
                        format!("{label}: {} answered {s}", self.spec.target),
                    )),
                    _ if self.spec.rejection.contains(s) => None,
                    _ if ok => Some(Failure::new(
                        Reason::AuthAcceptsInvalidToken,
                        format!(
                            "{label}: {} answered {s}: the API accepts requests it must reject",
                            self.spec.target
                        ),
                    )),
                    _ => Some(Failure::new(
                        Reason::HttpStatus,
                        format!(
                            "{label}: {} answered {s}, not a configured rejection status",
                            self.spec.target
                        ),
                    )),
                };
                (failure.is_none(), Some(s), failure)
            }
        };
        (
            CaseResult {
                case,
                passed,
                status,
                duration,
            },
            failure,
        )
    }

    /// Checks the real token against the fetched keys: (kid known, verified, problem).
    fn check_token(
        &self,
        token: &Token,
        keys: &[JwkInfo],
        now: SystemTime,
    ) -> (Option<bool>, Option<bool>, Option<Failure>) {
        let Some(kid) = token.kid.as_deref() else {
            return (
                None,
                Some(false),
                Some(Failure::new(
                    Reason::TokenInvalid,
                    "the session token has no kid",
                )),
            );
        };
        if keys.is_empty() {
            // No JWKS fetched yet: nothing to compare with, which is not the token's fault.
            let claims = token.check_claims(now, self.spec.leeway, self.spec.issuer.as_deref());
            return (
                None,
                None,
                claims
                    .err()
                    .map(|e| Failure::new(Reason::TokenInvalid, e.to_string())),
            );
        }
        let Some(key) = keys.iter().find(|k| k.kid == kid) else {
            return (
                Some(false),
                Some(false),
                Some(Failure::new(
                    Reason::TokenKidUnknown,
                    format!(
                        "the session token's kid {kid:?} is in none of the JWKS of {:?}: publishable and secret keys from different Clerk instances?",
                        self.spec.jwks_probes
                    ),
                )),
            );
        };
        let verified = match &key.rsa {
            Some((n, e)) => token.verify_rs256(n, e),
            None => Err(jwt::TokenError::Algorithm(token.alg.clone())),
        }
        .and_then(|()| token.check_claims(now, self.spec.leeway, self.spec.issuer.as_deref()));
        match verified {
            Ok(()) => (Some(true), Some(true), None),
            Err(e) => (
                Some(true),
                Some(false),
                Some(Failure::new(Reason::TokenInvalid, e.to_string())),
            ),
        }
    }

    pub async fn run(&self, trace: &Trace, deadline: Instant) -> RunResult {
        let now = SystemTime::now();
        let case_deadline = deadline.checked_sub(MARGIN).unwrap_or(deadline);
        let keys = self.store.jwks_keys(&self.spec.jwks_probes);
        let mut d = AuthDetails::default();
        let mut problems: Vec<Failure> = Vec::new();

        let started = Instant::now();
        let minted = self.obtain_token(case_deadline).await;
        d.mint = Some((minted.is_ok(), started.elapsed()));
        let parsed = match &minted {
            Ok(t) => match Token::parse(t.expose()) {
                Ok(p) => {
                    let (kid_known, verified, problem) = self.check_token(&p, &keys, now);
                    d.kid_known = kid_known;
                    d.token_verified = verified;
                    problems.extend(problem);
                    Some(p)
                }
                Err(e) => {
                    d.token_verified = Some(false);
                    problems.push(Failure::new(Reason::TokenInvalid, e.to_string()));
                    None
                }
            },
            Err(f) => {
                problems.push(f.clone());
                None
            }
        };

        let wants = |c| self.spec.cases.contains(&c);
        let forged = match (&self.forger, wants(AuthCase::ForgedToken)) {
            (Some(f), true) => {
                let kid = parsed
                    .as_ref()
                    .and_then(|p| p.kid.clone())
                    .or_else(|| keys.first().map(|k| k.kid.clone()))
                    .unwrap_or_else(|| "ins_authwatch".into());
                let claims = jwt::fresh_claims(parsed.as_ref(), self.spec.issuer.as_deref(), now);
                f.sign(&kid, &claims).map(Secret::new)
            }
            _ => None,
        };
        let expired = {
            let mut held = lock(&self.held);
            let leeway = i64::try_from(self.spec.leeway.as_secs()).unwrap_or(0);
            if let Some((t, exp)) = held.pending.take() {
                if jwt::unix(now) > exp + leeway {
                    held.expired = Some(t);
                } else {
                    held.pending = Some((t, exp));
                }
            }
            if held.pending.is_none()
                && let (Ok(t), Some(p)) = (&minted, &parsed)
            {
                held.pending = Some((t.clone(), p.claim_i64("exp").unwrap_or(i64::MAX)));
            }
            held.expired.clone()
        };

        let valid_token = minted.as_ref().ok().filter(|_| wants(AuthCase::ValidToken));
        let scratch = (Trace::default(), Trace::default(), Trace::default());
        let (valid, none, forged_r, expired_r) = tokio::join!(
            async {
                match valid_token {
                    Some(t) => Some(
                        self.call(AuthCase::ValidToken, Some(t.expose()), trace, case_deadline)
                            .await,
                    ),
                    None => None,
                }
            },
            async {
                match wants(AuthCase::NoToken) {
                    true => Some(
                        self.call(AuthCase::NoToken, None, &scratch.0, case_deadline)
                            .await,
                    ),
                    false => None,
                }
            },
            async {
                match &forged {
                    Some(t) => Some(
                        self.call(
                            AuthCase::ForgedToken,
                            Some(t.expose()),
                            &scratch.1,
                            case_deadline,
                        )
                        .await,
                    ),
                    None => None,
                }
            },
            async {
                match expired.as_ref().filter(|_| wants(AuthCase::ExpiredToken)) {
                    Some(t) => Some(
                        self.call(
                            AuthCase::ExpiredToken,
                            Some(t.expose()),
                            &scratch.2,
                            case_deadline,
                        )
                        .await,
                    ),
                    None => None,
                }
            },
        );
        for (result, failure) in [valid, none, forged_r, expired_r].into_iter().flatten() {
            if failure
                .as_ref()
                .is_some_and(|f| f.reason == Reason::AuthAcceptsInvalidToken)
            {
                d.fail_open = true;
            }
            d.cases.push(result);
            problems.extend(failure);
        }
        // The most serious problem names the run: fail-open first, then what explains a
        // rejected valid token, then the rejection itself, then transport trouble.
        problems.sort_by_key(|f| match f.reason {
            Reason::AuthAcceptsInvalidToken => 0,
            Reason::TokenKidUnknown => 1,
            Reason::TokenInvalid => 2,
            Reason::AuthSecretKeyInvalid => 3,
            Reason::TokenMintFailed => 4,
            Reason::AuthValidTokenRejected => 5,
            _ => 6,
        });
        RunResult {
            details: Details::Auth(d),
            failure: problems.into_iter().next(),
        }
    }
}
