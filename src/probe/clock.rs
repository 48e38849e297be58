//! The `clock` probe: the local clock's offset from a server's `Date` header, failing when it
//! exceeds the tolerance behind Clerk's "iat in the future" / "not active yet" rejections.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
use tokio::time::Instant;

use crate::config::base::{ConfigError, Text, de_duration};
use crate::failure::{Failure, Reason};
use crate::net::http::{ConnSpec, HttpClient};
use crate::net::target::Target;
use crate::net::trace::Trace;
use crate::probe::kind::{Deps, Kind, Outcome, SectionCx, with_url};

/// The SDKs' default tolerance (DESIGN.md §10: JS and Python allow 5 s).
const DEFAULT_MAX_OFFSET: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClock {
    url: Option<Spanned<Text>>,
    #[serde(default, deserialize_with = "de_duration")]
    max_offset: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClockSpec {
    pub target: Target,
    pub max_offset: Duration,
}

#[derive(Debug)]
pub struct Clock {
    spec: ClockSpec,
    client: HttpClient,
}

impl Kind for Clock {
    const NAME: &'static str = "clock";
    const HTTP: bool = true;
    const REASONS: &'static [&'static [Reason]] = &[&[Reason::ClockSkew]];
    type Raw = RawClock;
    type Spec = ClockSpec;
    type Details = ();
    type State = ();

    fn validate(raw: &RawClock, cx: &SectionCx<'_>) -> Result<ClockSpec, ConfigError> {
        Ok(ClockSpec {
            target: cx.url(Self::NAME, "url", &raw.url)?,
            max_offset: raw.max_offset.unwrap_or(DEFAULT_MAX_OFFSET),
        })
    }

    fn target(spec: &ClockSpec) -> Option<&Target> {
        Some(&spec.target)
    }

    fn retarget(spec: &ClockSpec, target: &str) -> Result<ClockSpec, String> {
        with_url(spec, target, |s| &mut s.target)
    }

    fn new(spec: &ClockSpec, conn: &ConnSpec, deps: &Deps) -> Self {
        Clock {
            spec: spec.clone(),
            client: deps.http(conn),
        }
    }

    async fn run(&self, trace: &Trace, deadline: Instant) -> Outcome<()> {
        let resp = match self
            .client
            .get(&self.spec.target, &[], trace, deadline)
            .await
        {
            Ok(r) => r,
            Err(f) => return f.into(),
        };
        let Some(offset) = resp.clock_offset() else {
            return Failure::new(
                Reason::HttpProtocol,
                format!("{} sent no valid Date header", self.spec.target),
            )
            .into();
        };
        let max = self.spec.max_offset.as_secs_f64();
        if offset.surely_beyond(max) {
            return Failure::new(
                Reason::ClockSkew,
                format!(
                    "local clock is {:+.1}s off {} (between {:+.1}s and {:+.1}s; tolerance {max}s)",
                    offset.estimate, self.spec.target.host, offset.lower, offset.upper
                ),
            )
            .into();
        }
        Outcome::passed()
    }
}
