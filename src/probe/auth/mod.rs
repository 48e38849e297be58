//! The `auth` probe: calls a protected route of the API with a real token (expect 2xx), with no
//! token, a forged token and an expired one (expect rejections), after checking the real token
//! locally against the JWKS the daemon already fetched.


mod cases;

pub use cases::{AuthCase, CaseResult};
use cases::severity;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;
use tokio::time::Instant;

use crate::config::base::{ConfigError, Role, StatusSet, Text, de_duration};
use crate::encode::{Encoder, Family, family, flag};
use crate::failure::{Failure, Reason};
use crate::jwk::JwkInfo;
use crate::jwt::{self, Forger, Token};
use crate::lock;
use crate::net::http::{ConnSpec, HttpClient};
use crate::net::target::Target;
use crate::net::trace::Trace;
use crate::probe::KindId;
use crate::probe::jwks::KeySource;
use crate::probe::kind::{Deps, Kind, KindStatus, Outcome, SectionCx, View};
use crate::secret::Secret;
use crate::token::{HeldTokens, TokenSource};

family!(
    AUTH_CASE_SUCCESS,
    "authwatch_auth_case_success",
    Gauge,
    "Whether the API answered the case as it must: valid_token 2xx; no_token, forged_token, expired_token a rejection status."
);
family!(
    AUTH_CASE_DURATION,
    "authwatch_auth_case_duration_seconds",
    Gauge,
    "How long the API took to answer the case (a verifier stalling on its JWKS fetch shows here)."
);
family!(
    AUTH_CASE_STATUS,
    "authwatch_auth_case_status_code",
    Gauge,
    "HTTP status the API answered the case with (0: no answer)."
);
family!(
    AUTH_FAIL_OPEN,
    "authwatch_auth_fail_open",
    Gauge,
    "1 when the API answered 2xx to a request it must reject (no, forged or expired token)."
);
family!(
    AUTH_MINT_SUCCESS,
    "authwatch_auth_token_mint_success",
    Gauge,
    "Whether getting a real session token (Backend API, file or command) worked."
);
family!(
    AUTH_MINT_DURATION,
    "authwatch_auth_token_mint_duration_seconds",
    Gauge,
    "How long getting the session token took."
);
family!(
    AUTH_TOKEN_VERIFIED,
    "authwatch_auth_token_verified",
    Gauge,
    "Whether the real token verified locally against the fetched JWKS (signature, issuer, exp/nbf with leeway)."
);
family!(
    AUTH_CASE_CLERK_REASON,
    "authwatch_auth_case_clerk_reason",
    Gauge,
    "1 with the x-clerk-auth-reason the API's Clerk middleware answered the case with (bounded to 64 characters)."
);
family!(
    AUTH_MINTS,
    "authwatch_auth_token_mints",
    Counter,
    "Real tokens obtained since start (Backend API requests, file reads or command runs): one per token lifetime, not per run."
);
family!(
    AUTH_TOKEN_REUSED,
    "authwatch_auth_token_reused",
    Gauge,
    "1 when the latest run reused the token obtained earlier."
);
family!(
    AUTH_NEGATIVE_LAST,
    "authwatch_auth_negative_cases_last_run_timestamp_seconds",
    Gauge,
    "When the forged and expired cases last ran (every negative_every, never while a JWKS probe fails)."
);
family!(
    AUTH_KID_KNOWN,
    "authwatch_auth_token_kid_known",
    Gauge,
    "Whether the real token's kid is in the fetched JWKS (0: keys from different Clerk instances)."
);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    url: Option<Spanned<Text>>,
    token_source: Spanned<Text>,
    session_id: Option<Text>,
    token_file: Option<Text>,
    token_command: Option<Vec<Text>>,
    rejection_status_codes: Option<Vec<Spanned<Text>>>,
    issuer: Option<Text>,
    jwks_probes: Option<Vec<Spanned<Text>>>,
    #[serde(default, deserialize_with = "de_duration")]
    leeway: Option<Duration>,
    cases: Option<Vec<Spanned<Text>>>,
    #[serde(default, deserialize_with = "de_duration")]
    negative_every: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthSpec {
    pub target: Target,
    pub source: TokenSource,
    pub rejection: StatusSet,
    pub issuer: Option<String>,
    /// The JWKS probes whose keys the token is checked against; filled with every jwks probe
    /// when not configured.
    pub jwks_probes: Vec<String>,
    pub leeway: Duration,
    pub cases: Vec<AuthCase>,
    /// How often the forged and expired cases run (a forged signature makes the Python SDK
    /// drop its cached key), and never while a JWKS probe fails.
    pub negative_every: Duration,
}

/// The forged and expired cases run this often unless configured: rarely enough that the
/// API's verifier is not made to refetch its keys more than a few times an hour.
const DEFAULT_NEGATIVE_EVERY: Duration = Duration::from_secs(600);

/// What the auth probe saw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthDetails {
    pub cases: Vec<CaseResult>,
    /// A rejection case was answered 2xx: the API accepts tokens it must refuse.
    pub fail_open: bool,
    /// Getting a real token: whether it worked and how long it took.
    pub mint: Option<(bool, Duration)>,
    /// The real token verified locally (signature, issuer, times) against the fetched JWKS.
    pub token_verified: Option<bool>,
    /// The real token's kid is in one of the fetched JWKS.
    pub kid_known: Option<bool>,
    /// This run reused the token obtained earlier (no Backend API request).
    pub token_reused: bool,
    /// Tokens obtained since start.
    pub mints: u64,
    /// When the forged and expired cases last ran.
    pub negative_at: Option<SystemTime>,
}

/// Cases stop a little before the run's deadline so a stalled API is reported per case.
const MARGIN: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Auth {
    spec: AuthSpec,
    /// Talks to the API.
    client: HttpClient,
    /// Talks to Clerk's Backend API when tokens are minted there.
    mint_client: Option<HttpClient>,
    keys: Arc<dyn KeySource>,
    forger: Option<Forger>,
    held: Mutex<HeldTokens>,
}

impl Auth {
    /// Parses the real token and checks it against the fetched keys.
    fn inspect(
        &self,
        token: &Secret,
        keys: &[JwkInfo],
        now: SystemTime,
        d: &mut AuthDetails,
        problems: &mut Vec<Failure>,
    ) -> Option<Token> {
        match Token::parse(token.expose()) {
            Ok(p) => {
                let rules = jwt::Rules {
                    leeway: self.spec.leeway,
                    issuer: self.spec.issuer.as_deref(),
                    jwks_probes: &self.spec.jwks_probes,
                };
                let check = p.check_against(keys, &rules, now);
                // Keys rotate: a token signed with a key newer than the last fetch is not a
                // mismatch until a fetch made after the token was issued still lacks its kid
                // (the SDKs refetch on an unknown kid, so the API answers it).
                let issued = p.claim_i64("iat").unwrap_or(i64::MAX);
                let fetched = self.keys.fetched_at(&self.spec.jwks_probes).map(jwt::unix);
                if check.kid_known == Some(false) && fetched.is_none_or(|f| f <= issued) {
                    return Some(p);
                }
                d.kid_known = check.kid_known;
                d.token_verified = check.verified;
                problems.extend(check.problem);
                Some(p)
            }
            Err(e) => {
                d.token_verified = Some(false);
                problems.push(Failure::new(Reason::TokenInvalid, e.to_string()));
                None
            }
        }
    }


}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Where the real token comes from: `token_source` and the keys it needs.
fn token_source(a: &RawAuth, cx: &SectionCx<'_>) -> Result<TokenSource, ConfigError> {
    let clerk = cx.clerk;
    Ok(match a.token_source.value.0.as_str() {
        "backend" => {
            let sid = a
                .session_id
                .as_ref()
                .map(|s| s.0.trim().to_string())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| cx.err("auth: token_source backend needs session_id"))?;
            if !sid.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(cx.err("auth: session_id must be letters, digits and '_' (sess_...)"));
            }
            let secret = clerk.secret.clone().ok_or_else(|| {
                cx.err("auth: token_source backend needs clerk.secret_key or clerk.secret_key_file")
            })?;
            let mint = clerk.api_url.join(&format!("/v1/sessions/{sid}/tokens"));
            let conn = Box::new(cx.default_conn(&mint)?);
            TokenSource::Backend {
                target: mint,
                secret,
                conn,
            }
        }
        "file" => TokenSource::File(
            a.token_file
                .as_ref()
                .map(|t| PathBuf::from(&t.0))
                .filter(|p| !p.as_os_str().is_empty())
                .ok_or_else(|| cx.err("auth: token_source file needs token_file"))?,
        ),
        "command" => {
            let cmd: Vec<String> = a
                .token_command
                .iter()
                .flatten()
                .map(|t| t.0.clone())
                .collect();
            if cmd.is_empty() {
                return Err(cx.err("auth: token_source command needs token_command (a list: program and arguments)"));
            }
            TokenSource::Command(cmd)
        }
        other => {
            return Err(cx.cx.at(
                &a.token_source,
                format!("auth: unknown token_source {other:?}: use backend, file or command"),
            ));
        }
    })
}

impl Kind for Auth {
    const NAME: &'static str = "auth";
    const HTTP: bool = true;
    const REASONS: &'static [&'static [Reason]] = &[&[
        Reason::TokenMintFailed,
        Reason::AuthSecretKeyInvalid,
        Reason::TokenInvalid,
        Reason::TokenKidUnknown,
        Reason::AuthValidTokenRejected,
        Reason::AuthAcceptsInvalidToken,
    ]];
    /// It tests the API's behaviour, not a Clerk dependency.
    const DEFAULT_ROLE: Role = Role::Api;
    /// A module runs against any target a caller names: it must never mint tokens with the
    /// secret key for one, nor spend the Backend API's rate limit per request.
    const MODULE: bool = false;
    /// Repeating a run would mint another token through the Backend API's rate limit.
    const REPEATABLE: bool = false;
    const FAMILIES: &'static [&'static Family] = &[
        &AUTH_CASE_SUCCESS,
        &AUTH_CASE_DURATION,
        &AUTH_CASE_STATUS,
        &AUTH_CASE_CLERK_REASON,
        &AUTH_FAIL_OPEN,
        &AUTH_MINT_SUCCESS,
        &AUTH_MINT_DURATION,
        &AUTH_TOKEN_VERIFIED,
        &AUTH_KID_KNOWN,
        &AUTH_MINTS,
        &AUTH_TOKEN_REUSED,
        &AUTH_NEGATIVE_LAST,
    ];
    type Raw = RawAuth;
    type Spec = AuthSpec;
    type Details = AuthDetails;
    type State = ();

    fn validate(a: &RawAuth, cx: &SectionCx<'_>) -> Result<AuthSpec, ConfigError> {
        let target = cx.url("auth", "url", &a.url)?;
        let clerk = cx.clerk;
        let source = token_source(a, cx)?;
        let cases = match &a.cases {
            None => AuthCase::ALL.to_vec(),
            Some(list) => list
                .iter()
                .map(|c| {
                    AuthCase::ALL
                        .into_iter()
                        .find(|k| k.as_label() == c.value.0)
                        .ok_or_else(|| cx.cx.at(c, format!("auth: unknown case {:?}", c.value.0)))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(AuthSpec {
            target,
            source,
            rejection: cx
                .cx
                .status_set(&a.rejection_status_codes, StatusSet::range(401, 401))?,
            issuer: a
                .issuer
                .as_ref()
                .map(|i| i.0.clone())
                .filter(|i| !i.is_empty())
                .or_else(|| clerk.fapi_host.as_ref().map(|h| format!("https://{h}"))),
            jwks_probes: a
                .jwks_probes
                .iter()
                .flatten()
                .map(|n| n.value.0.clone())
                .collect(),
            leeway: a.leeway.unwrap_or(Duration::from_secs(5)),
            cases,
            negative_every: a.negative_every.unwrap_or(DEFAULT_NEGATIVE_EVERY),
        })
    }

    fn target(spec: &AuthSpec) -> Option<&Target> {
        Some(&spec.target)
    }

    fn retarget(_spec: &AuthSpec, _target: &str) -> Result<AuthSpec, String> {
        Err("an auth probe cannot be a /probe module".into())
    }

    /// Points the probe at the JWKS probes it checks tokens against: the configured names
    /// (which must exist and be jwks probes) or every jwks probe.
    fn link(spec: &mut AuthSpec, probes: &[(String, KindId)]) -> Result<(), String> {
        let jwks: Vec<String> = probes
            .iter()
            .filter(|(_, k)| *k == KindId::Jwks)
            .map(|(n, _)| n.clone())
            .collect();
        if spec.jwks_probes.is_empty() {
            spec.jwks_probes = jwks;
        } else if let Some(bad) = spec.jwks_probes.iter().find(|n| !jwks.contains(n)) {
            return Err(format!(
                "jwks_probes names {bad:?}, which is not a jwks probe"
            ));
        }
        Ok(())
    }

    fn new(spec: &AuthSpec, conn: &ConnSpec, deps: &Deps) -> Self {
        let forger = Forger::new().ok();
        if forger.is_none() {
            tracing::error!(
                "cannot generate the RSA key for forged tokens; the forged_token case is skipped"
            );
        }
        let mint_client = match &spec.source {
            TokenSource::Backend { conn, .. } => Some(deps.http(conn)),
            _ => None,
        };
        Auth {
            spec: spec.clone(),
            client: deps.http(conn),
            mint_client,
            keys: deps.keys.clone(),
            forger,
            held: Mutex::new(HeldTokens::default()),
        }
    }

    async fn run(&self, trace: &Trace, deadline: Instant) -> Outcome<AuthDetails> {
        let now = SystemTime::now();
        let case_deadline = deadline.checked_sub(MARGIN).unwrap_or(deadline);
        let keys = self.keys.keys(&self.spec.jwks_probes);
        let mut d = AuthDetails::default();
        let mut problems: Vec<Failure> = Vec::new();

        let started = Instant::now();
        let reused = lock(&self.held).reusable(now);
        d.token_reused = reused.is_some();
        let minted = match reused {
            Some(t) => Ok(t),
            None => {
                self.spec
                    .source
                    .obtain(self.mint_client.as_ref(), case_deadline)
                    .await
            }
        };
        d.mint = Some((minted.is_ok(), started.elapsed()));
        let parsed = match &minted {
            Ok(t) => self.inspect(t, &keys, now, &mut d, &mut problems),
            Err(f) => {
                problems.push(f.clone());
                None
            }
        };
        let negative_due = self.negative_due(now);
        let (forged, expired) = {
            let mut held = lock(&self.held);
            if let (Ok(t), false) = (&minted, d.token_reused) {
                held.obtained(t, parsed.as_ref());
            }
            let leeway = i64::try_from(self.spec.leeway.as_secs()).unwrap_or(0);
            let expired = held.cycle(minted.as_ref().ok().zip(parsed.as_ref()), leeway, now);
            d.mints = held.mints;
            match negative_due {
                true => (self.forge(parsed.as_ref(), &keys, now), expired),
                false => (None, None),
            }
        };
        let valid = minted.as_ref().ok();
        let scratch = (Trace::default(), Trace::default(), Trace::default());
        let results = tokio::join!(
            self.case(AuthCase::ValidToken, Some(valid), trace, case_deadline),
            self.case(AuthCase::NoToken, None, &scratch.0, case_deadline),
            self.case(
                AuthCase::ForgedToken,
                Some(forged.as_ref()),
                &scratch.1,
                case_deadline
            ),
            self.case(
                AuthCase::ExpiredToken,
                Some(expired.as_ref()),
                &scratch.2,
                case_deadline
            ),
        );
        let (a, b, c, e) = self.keep_negative(results, negative_due, now, &mut d);
        for (result, failure) in [a, b, c, e].into_iter().flatten() {
            if failure
                .as_ref()
                .is_some_and(|f| f.reason == Reason::AuthAcceptsInvalidToken)
            {
                d.fail_open = true;
            }
            d.cases.push(result);
            problems.extend(failure);
        }
        problems.sort_by_key(|f| severity(f.reason));
        Outcome {
            details: Some(d),
            failure: problems.into_iter().next(),
        }
    }

    fn render(e: &mut Encoder, views: &[View<'_, Self>], _now: SystemTime) {
        type CaseGet = fn(&CaseResult) -> f64;
        let case_families: [(&Family, CaseGet); 3] = [
            (&AUTH_CASE_SUCCESS, |c| flag(c.passed)),
            (&AUTH_CASE_DURATION, |c| c.duration.as_secs_f64()),
            (&AUTH_CASE_STATUS, |c| {
                c.status.map(f64::from).unwrap_or(0.0)
            }),
        ];
        for (f, get) in case_families {
            e.header(f);
            for v in views {
                let [a, b] = v.labels();
                for c in v.details.iter().flat_map(|d| d.cases.iter()) {
                    e.sample(f, &[a, b, ("case", c.case.as_label())], get(c));
                }
            }
        }
        e.header(&AUTH_CASE_CLERK_REASON);
        for v in views {
            let [a, b] = v.labels();
            for c in v.details.iter().flat_map(|d| d.cases.iter()) {
                if let Some(r) = &c.clerk_reason {
                    let labels = [a, b, ("case", c.case.as_label()), ("reason", r.as_str())];
                    e.sample(&AUTH_CASE_CLERK_REASON, &labels, 1.0);
                }
            }
        }
        type Get = fn(&AuthDetails) -> Option<f64>;
        let families: [(&Family, Get); 8] = [
            (&AUTH_FAIL_OPEN, |d| Some(flag(d.fail_open))),
            (&AUTH_MINT_SUCCESS, |d| d.mint.map(|(ok, _)| flag(ok))),
            (&AUTH_MINT_DURATION, |d| {
                d.mint.map(|(_, t)| t.as_secs_f64())
            }),
            (&AUTH_TOKEN_VERIFIED, |d| d.token_verified.map(flag)),
            (&AUTH_KID_KNOWN, |d| d.kid_known.map(flag)),
            (&AUTH_MINTS, |d| Some(d.mints as f64)),
            (&AUTH_TOKEN_REUSED, |d| Some(flag(d.token_reused))),
            (&AUTH_NEGATIVE_LAST, |d| d.negative_at.map(unix_secs)),
        ];
        for (f, get) in families {
            e.header(f);
            for v in views {
                if let Some(x) = v.details.and_then(get) {
                    e.sample(f, &v.labels(), x);
                }
            }
        }
    }

    fn status(view: &View<'_, Self>, _now: SystemTime) -> KindStatus {
        let mut s = KindStatus::default();
        if let Some(a) = view.details {
            s.json.insert(
                "auth".into(),
                json!({
                    "fail_open": a.fail_open,
                    "token_verified": a.token_verified,
                    "kid_known": a.kid_known,
                    "cases": a.cases.iter().map(|c| json!({"case": c.case.as_label(), "passed": c.passed,
                        "status": c.status, "duration_seconds": c.duration.as_secs_f64()})).collect::<Vec<_>>(),
                }),
            );
            let failed: Vec<&str> = a
                .cases
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.case.as_label())
                .collect();
            s.note = Some(match failed.as_slice() {
                [] => format!("{} cases pass", a.cases.len()),
                f => format!("failing cases: {}", f.join(", ")),
            });
        }
        s
    }
}
