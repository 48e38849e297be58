//! Network building blocks shared by the probes: DNS queries, name resolution, TLS and the
//! phase-timed HTTP client.

pub mod dns;
pub mod http;
pub mod resolve;
pub mod tls;
