//! The `clock` probe: the local clock's offset from a server's `Date` header, failing when it
//! exceeds the tolerance behind Clerk's "iat in the future" / "not active yet" rejections.

use tokio::time::Instant;

use crate::config::ClockSpec;
use crate::failure::Reason;
use crate::net::http::HttpClient;
use crate::outcome::{Details, Failure, RunResult, Trace};

#[derive(Debug)]
pub struct ClockProbe {
    spec: ClockSpec,
    client: HttpClient,
}

impl ClockProbe {
    pub fn new(spec: ClockSpec, client: HttpClient) -> Self {
        ClockProbe { spec, client }
    }

    pub async fn run(&self, trace: &Trace, deadline: Instant) -> RunResult {
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
        if offset.abs() > max {
            return Failure::new(
                Reason::ClockSkew,
                format!(
                    "local clock is {offset:+.1}s off {} (tolerance {max}s)",
                    self.spec.target.host
                ),
            )
            .into();
        }
        RunResult::ok(Details::None)
    }
}
