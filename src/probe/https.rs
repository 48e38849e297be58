//! The `https` probe: one GET of any URL, judged by its status code.

use tokio::time::Instant;

use crate::config::HttpsSpec;
use crate::failure::Reason;
use crate::net::http::HttpClient;
use crate::outcome::{Details, Failure, RunResult, Trace};

#[derive(Debug)]
pub struct HttpsProbe {
    spec: HttpsSpec,
    client: HttpClient,
}

impl HttpsProbe {
    pub fn new(spec: HttpsSpec, client: HttpClient) -> Self {
        HttpsProbe { spec, client }
    }

    pub async fn run(&self, trace: &Trace, deadline: Instant) -> RunResult {
        match self
            .client
            .get(&self.spec.target, &[], trace, deadline)
            .await
        {
            Err(f) => f.into(),
            Ok(resp) if !self.spec.valid.contains(resp.status) => Failure::new(
                Reason::HttpStatus,
                format!("{} answered {}", self.spec.target, resp.status),
            )
            .into(),
            Ok(_) => RunResult::ok(Details::None),
        }
    }
}
