//! The `https` probe: one request (GET unless told otherwise) of any URL, judged by its status
//! code.

use serde::Deserialize;
use serde_saphyr::Spanned;
use tokio::time::Instant;

use crate::config::base::{ConfigError, StatusSet, Text};
use crate::failure::{Failure, Reason};
use crate::net::http::{ConnSpec, HttpClient};
use crate::net::target::Target;
use crate::net::trace::Trace;
use crate::probe::kind::{Deps, Kind, Outcome, SectionCx, with_url};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttps {
    url: Option<Spanned<Text>>,
    valid_status_codes: Option<Vec<Spanned<Text>>>,
    /// GET, HEAD or POST (with an empty body, as blackbox_exporter's `http_post_2xx`).
    method: Option<Spanned<Text>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpsSpec {
    pub target: Target,
    pub valid: StatusSet,
    pub method: http::Method,
}

#[derive(Debug)]
pub struct Https {
    spec: HttpsSpec,
    client: HttpClient,
}

impl Kind for Https {
    const NAME: &'static str = "https";
    const HTTP: bool = true;
    const REASONS: &'static [&'static [Reason]] = &[];
    type Raw = RawHttps;
    type Spec = HttpsSpec;
    type Details = ();
    type State = ();

    fn validate(raw: &RawHttps, cx: &SectionCx<'_>) -> Result<HttpsSpec, ConfigError> {
        let method = match raw.method.as_ref() {
            None => http::Method::GET,
            Some(m) => match m.value.0.to_ascii_uppercase().as_str() {
                "GET" => http::Method::GET,
                "HEAD" => http::Method::HEAD,
                "POST" => http::Method::POST,
                _ => return Err(cx.cx.at(m, "https: method must be GET, HEAD or POST")),
            },
        };
        Ok(HttpsSpec {
            method,
            target: cx.url(Self::NAME, "url", &raw.url)?,
            valid: cx
                .cx
                .status_set(&raw.valid_status_codes, StatusSet::range(200, 299))?,
        })
    }

    fn target(spec: &HttpsSpec) -> Option<&Target> {
        Some(&spec.target)
    }

    fn retarget(spec: &HttpsSpec, target: &str) -> Result<HttpsSpec, String> {
        with_url(spec, target, |s| &mut s.target)
    }

    fn new(spec: &HttpsSpec, conn: &ConnSpec, deps: &Deps) -> Self {
        Https {
            spec: spec.clone(),
            client: deps.http(conn),
        }
    }

    async fn run(&self, trace: &Trace, deadline: Instant) -> Outcome<()> {
        let sent = self.client.send(
            self.spec.method.clone(),
            &self.spec.target,
            &[],
            bytes::Bytes::new(),
            trace,
            deadline,
        );
        match sent.await {
            Err(f) => f.into(),
            Ok(resp) if !self.spec.valid.contains(resp.status) => Failure::new(
                Reason::HttpStatus,
                format!("{} answered {}", self.spec.target, resp.status),
            )
            .into(),
            Ok(_) => Outcome::passed(),
        }
    }
}
