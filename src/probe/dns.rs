//! The `dns` probe: every name and record type against every resolver, side by side, so a
//! broken container resolver can be told apart from a name that does not exist.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{DnsSpec, ResolverSpec};
use crate::failure::Reason;
use crate::net::dns::rcode_name;
use crate::net::resolve::{SystemFiles, query_servers, severity_rank, system_servers};
use crate::outcome::{Details, DnsLookup, Failure, Phase, RunResult, Trace};

#[derive(Debug)]
pub struct DnsProbe {
    spec: DnsSpec,
    files: SystemFiles,
}

/// Lookups stop a little before the run's deadline so each can report its own timeout.
const MARGIN: Duration = Duration::from_millis(50);

fn type_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::CNAME => "CNAME",
        RecordType::TXT => "TXT",
        RecordType::MX => "MX",
        RecordType::NS => "NS",
        _ => "other",
    }
}

impl DnsProbe {
    pub fn new(spec: DnsSpec, files: SystemFiles) -> Self {
        DnsProbe { spec, files }
    }

    pub async fn run(&self, trace: &Trace, deadline: Instant) -> RunResult {
        trace.enter(Phase::Resolve);
        let lookup_deadline = deadline.checked_sub(MARGIN).unwrap_or(deadline);
        let mut set = JoinSet::new();
        let mut index = 0usize;
        for resolver in &self.spec.resolvers {
            let (servers, tcp) = match resolver {
                ResolverSpec::System => (system_servers(&self.files).await, false),
                ResolverSpec::Server { addr, tcp } => (vec![*addr], *tcp),
            };
            for name in &self.spec.names {
                for rtype in &self.spec.record_types {
                    let (servers, name, rtype, label) =
                        (servers.clone(), name.clone(), *rtype, resolver.label());
                    let i = index;
                    index += 1;
                    set.spawn(async move {
                        let started = Instant::now();
                        let r = query_servers(&servers, tcp, &name, rtype, lookup_deadline).await;
                        let duration = started.elapsed();
                        let lookup = match r {
                            Ok(reply) => DnsLookup {
                                resolver: label,
                                name,
                                rtype: type_label(rtype),
                                rcode: Some(reply.rcode),
                                answers: reply.answer_count,
                                duration,
                                failure: reply.failure(),
                            },
                            Err(e) => DnsLookup {
                                resolver: label,
                                name,
                                rtype: type_label(rtype),
                                rcode: None,
                                answers: 0,
                                duration,
                                failure: Some(e.reason),
                            },
                        };
                        (i, lookup)
                    });
                }
            }
        }
        let mut lookups: Vec<(usize, DnsLookup)> = Vec::with_capacity(index);
        while let Some(joined) = set.join_next().await {
            if let Ok(pair) = joined {
                lookups.push(pair);
            }
        }
        trace.leave();
        lookups.sort_by_key(|(i, _)| *i);
        let lookups: Vec<DnsLookup> = lookups.into_iter().map(|(_, l)| l).collect();
        let failure = first_failure(&lookups);
        RunResult {
            details: Details::Dns(lookups),
            failure,
        }
    }
}

/// A (resolver, name) pair fails when none of its record types gave an answer; NODATA for
/// AAAA alone is normal for IPv4-only hosts. The first failing pair, in configured order,
/// names the run's reason.
fn first_failure(lookups: &[DnsLookup]) -> Option<Failure> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for l in lookups {
        if !pairs.contains(&(l.resolver.as_str(), l.name.as_str())) {
            pairs.push((&l.resolver, &l.name));
        }
    }
    for (resolver, name) in pairs {
        let of_pair: Vec<&DnsLookup> = lookups
            .iter()
            .filter(|l| l.resolver == resolver && l.name == name)
            .collect();
        if of_pair.iter().any(|l| l.failure.is_none()) {
            continue;
        }
        let worst = of_pair
            .iter()
            .min_by_key(|l| severity_rank(l.failure.unwrap_or(Reason::DnsError)))?;
        let reason = worst.failure.unwrap_or(Reason::DnsError);
        let what = match worst.rcode {
            Some(rc) => format!("{} with {} answers", rcode_name(rc), worst.answers),
            None => format!("no answer ({})", reason.as_label()),
        };
        return Some(Failure::new(
            reason,
            format!("resolver {resolver}: {name} {}: {what}", worst.rtype),
        ));
    }
    None
}
