//! Network building blocks shared by the probes: URLs, the run trace, DNS queries, name
//! resolution, TLS and the phase-timed HTTP client. Nothing here knows the configuration
//! file or a probe kind; it depends only on the closed reason set.

pub mod allow;
pub mod dns;
pub mod http;
pub mod resolve;
pub mod target;
pub mod tls;
pub mod trace;
