//! The auth probe's cases: the requests to the protected route (a valid token, none, a forged
//! one, an expired one), how each answer is judged, and the schedule that keeps the cases that
//! make an SDK refetch its keys rare.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Auth, AuthDetails};
use crate::failure::{Failure, Reason};
use crate::jwk::JwkInfo;
use crate::jwt::{self, Token};
use crate::lock;
use crate::net::trace::Trace;
use crate::secret::Secret;
use crate::token::bearer;

/// The cases the auth probe runs against the protected route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthCase {
    ValidToken,
    NoToken,
    ForgedToken,
    ExpiredToken,
}

impl AuthCase {
    pub const ALL: [AuthCase; 4] = [
        AuthCase::ValidToken,
        AuthCase::NoToken,
        AuthCase::ForgedToken,
        AuthCase::ExpiredToken,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            AuthCase::ValidToken => "valid_token",
            AuthCase::NoToken => "no_token",
            AuthCase::ForgedToken => "forged_token",
            AuthCase::ExpiredToken => "expired_token",
        }
    }
}

/// One case of the auth probe.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub case: AuthCase,
    pub passed: bool,
    /// The API's status, when it answered.
    pub status: Option<u16>,
    pub duration: Duration,
    /// What Clerk's middleware said of the request (`x-clerk-auth-reason`, as set by
    /// `@clerk/backend`: packages/backend/src/constants.ts, `Headers.AuthReason`), bounded.
    pub clerk_reason: Option<String>,
}

/// Clerk's reason codes are short kebab-case words (`jwk-remote-failed-to-load`); anything
/// else is cut to this and to those characters, so it stays a bounded label.
const MAX_CLERK_REASON: usize = 64;

/// The `x-clerk-auth-reason` header of an answer, as a label value.
fn clerk_reason(headers: &http::HeaderMap) -> Option<String> {
    let raw = headers.get("x-clerk-auth-reason")?.to_str().ok()?;
    let label: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_,. ".contains(*c))
        .take(MAX_CLERK_REASON)
        .collect();
    (!label.is_empty()).then_some(label)
}

/// The four cases' results, in order: valid, none, forged, expired.
pub(super) type Cases = (
    Option<(CaseResult, Option<Failure>)>,
    Option<(CaseResult, Option<Failure>)>,
    Option<(CaseResult, Option<Failure>)>,
    Option<(CaseResult, Option<Failure>)>,
);

/// Which problem names the run: fail-open first, then what explains a rejected valid token,
/// then the rejection itself, then transport trouble.
pub(super) fn severity(reason: Reason) -> u8 {
    match reason {
        Reason::AuthAcceptsInvalidToken => 0,
        Reason::TokenKidUnknown => 1,
        Reason::TokenInvalid => 2,
        Reason::AuthSecretKeyInvalid => 3,
        Reason::TokenMintFailed => 4,
        Reason::AuthValidTokenRejected => 5,
        _ => 6,
    }
}

impl Auth {
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
        let mut said = None;
        let (passed, status, failure) = match result {
            Err(f) => (
                false,
                None,
                Some(Failure::new(f.reason, format!("{label}: {}", f.message))),
            ),
            Ok(resp) => {
                said = clerk_reason(&resp.headers);
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
                clerk_reason: said,
            },
            failure,
        )
    }

    /// A token like the real one (live kid, realistic claims) signed with authwatch's own key.
    pub(super) fn forge(&self, parsed: Option<&Token>, keys: &[JwkInfo], now: SystemTime) -> Option<Secret> {
        let forger = self.forger.as_ref()?;
        let kid = parsed
            .and_then(|p| p.kid.clone())
            .or_else(|| keys.first().map(|k| k.kid.clone()))
            .unwrap_or_else(|| "ins_authwatch".into());
        let claims = jwt::fresh_claims(parsed, self.spec.issuer.as_deref(), now);
        forger.sign(&kid, &claims).map(Secret::new)
    }

    /// Whether the forged and expired cases run this time: their period has passed and every
    /// JWKS probe passes (an outage is when the API lives on its cached keys).
    pub(super) fn negative_due(&self, now: SystemTime) -> bool {
        let last = lock(&self.held).negative_at;
        let period_over = last.is_none_or(|t| {
            now.duration_since(t)
                .is_ok_and(|d| d >= self.spec.negative_every)
        });
        period_over && self.keys.passing(&self.spec.jwks_probes)
    }

    /// Keeps the negative cases' results between their runs, so their series and a fail-open
    /// verdict stay until the next run of those cases says otherwise.
    pub(super) fn keep_negative(
        &self,
        (a, b, c, e): Cases,
        ran: bool,
        now: SystemTime,
        d: &mut AuthDetails,
    ) -> Cases {
        let mut held = lock(&self.held);
        let (c, e) = if ran {
            held.negative_at = Some(now);
            held.negative_results = [&c, &e].into_iter().flatten().map(|(r, _)| r.clone()).collect();
            (c, e)
        } else {
            let kept = |case: AuthCase| {
                held.negative_results
                    .iter()
                    .find(|r| r.case == case)
                    .map(|r| (r.clone(), None))
            };
            (kept(AuthCase::ForgedToken), kept(AuthCase::ExpiredToken))
        };
        d.negative_at = held.negative_at;
        if held.negative_results.iter().any(|r| !r.passed && r.status.is_some_and(|s| (200..300).contains(&s))) {
            d.fail_open = true;
        }
        (a, b, c, e)
    }

    /// Runs one case if it is configured and has its token (`token` is `None` for the case
    /// that sends none, `Some(None)` when the token it needs is not available).
    pub(super) async fn case(
        &self,
        case: AuthCase,
        token: Option<Option<&Secret>>,
        trace: &Trace,
        deadline: Instant,
    ) -> Option<(CaseResult, Option<Failure>)> {
        if !self.spec.cases.contains(&case) {
            return None;
        }
        let token = match token {
            None => None,
            Some(t) => Some(t?.expose()),
        };
        Some(self.call(case, token, trace, deadline).await)
    }
}
