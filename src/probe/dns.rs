//! The `dns` probe: every name and record type against every resolver, side by side, so a
//! broken container resolver can be told apart from a name that does not exist.

use std::time::{Duration, SystemTime};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde::Deserialize;
use serde_json::json;
use serde_saphyr::Spanned;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::base::{ConfigError, Text};
use crate::net::target::is_hostname;
use crate::encode::{Encoder, Family, family, flag};
use crate::failure::{DNS_REASONS, Failure, Reason};
use crate::net::dns::rcode_name;
use crate::net::http::ConnSpec;
use crate::net::resolve::{
    ResolverSpec, SystemFiles, query_servers, severity_rank, system_servers,
};
use crate::net::target::Target;
use crate::net::trace::{Phase, Trace};
use crate::probe::kind::{Deps, Kind, KindStatus, Outcome, SectionCx, View};

family!(
    DNS_SUCCESS,
    "authwatch_dns_lookup_success",
    Gauge,
    "Whether the lookup of the name and type through the resolver returned answers."
);
family!(
    DNS_RCODE,
    "authwatch_dns_rcode",
    Gauge,
    "DNS response code of the lookup (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED; -1 no response)."
);
family!(
    DNS_ANSWERS,
    "authwatch_dns_answers",
    Gauge,
    "Records in the answer section of the lookup."
);
family!(
    DNS_DURATION,
    "authwatch_dns_lookup_duration_seconds",
    Gauge,
    "Duration of the lookup."
);
family!(
    PROBE_DNS_ANSWERS,
    "probe_dns_answer_rrs",
    Gauge,
    "Returns number of entries in the answer resource record list"
);
family!(
    PROBE_DNS_AUTHORITY,
    "probe_dns_authority_rrs",
    Gauge,
    "Returns number of entries in the authority resource record list"
);
family!(
    PROBE_DNS_ADDITIONAL,
    "probe_dns_additional_rrs",
    Gauge,
    "Returns number of entries in the additional resource record list"
);
family!(
    PROBE_DNS_DURATION,
    "probe_dns_duration_seconds",
    Gauge,
    "Duration of DNS request by phase"
);
family!(
    PROBE_DNS_QUERY_SUCCEEDED,
    "probe_dns_query_succeeded",
    Gauge,
    "Displays whether or not the query was executed successfully"
);

/// A module in blackbox_exporter's form: `query_name` (and `query_type`) fixed, the server
/// from each request. Only a module can be written so, and then without names or resolvers.
fn blackbox_style(raw: &RawDns, q: &Text, cx: &SectionCx<'_>) -> Result<DnsSpec, ConfigError> {
    if !cx.module {
        return Err(cx.err("dns: query_name is for modules, whose targets name the server; a probe uses names and resolvers"));
    }
    if raw.names.is_some() || raw.resolvers.is_some() || raw.record_types.is_some() {
        return Err(cx.err("dns: with query_name the target is the server: remove names, resolvers and record_types (use query_type)"));
    }
    let n = name(&q.0).map_err(|e| cx.err(e))?;
    let t = raw.query_type.as_ref().map_or("A", |t| t.0.as_str());
    let record_type = record_type(t).ok_or_else(|| cx.err(format!("dns: unsupported query_type {t:?}")))?;
    Ok(DnsSpec {
        names: vec![n],
        record_types: vec![record_type],
        resolvers: vec![ResolverSpec::parse("127.0.0.1").map_err(|e| cx.err(e))?],
        target_is_server: true,
    })
}

/// Lookups stop a little before the run's deadline so each can report its own timeout.
const MARGIN: Duration = Duration::from_millis(50);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    names: Option<Vec<Text>>,
    record_types: Option<Vec<Text>>,
    resolvers: Option<Vec<Spanned<Text>>>,
    /// blackbox_exporter's form, for modules: the name is fixed and each request's target is
    /// the server to ask.
    query_name: Option<Text>,
    /// With `query_name`: the one record type (blackbox's `query_type`, default A).
    query_type: Option<Text>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsSpec {
    pub names: Vec<String>,
    pub record_types: Vec<RecordType>,
    pub resolvers: Vec<ResolverSpec>,
    /// A module whose requests name the server (blackbox's semantics), not the query name.
    pub target_is_server: bool,
}

/// One lookup of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsLookup {
    pub resolver: ResolverSpec,
    pub name: String,
    pub rtype: RecordType,
    /// `None` when no reply came.
    pub rcode: Option<ResponseCode>,
    pub answers: usize,
    /// Authority and additional records (the OPT record counted), for `/probe`.
    pub authorities: u16,
    pub additionals: u16,
    /// The answering exchange's connect and request times (zero without a reply).
    pub exchange: [Duration; 2],
    pub duration: Duration,
    pub failure: Option<Reason>,
}

impl DnsLookup {
    /// The server answered NXDOMAIN.
    pub fn nxdomain(&self) -> bool {
        self.rcode == Some(ResponseCode::NXDomain)
    }

    /// The value of `authwatch_dns_rcode`: the numeric rcode, -1 for no reply.
    pub fn rcode_value(&self) -> f64 {
        self.rcode.map(|r| f64::from(u16::from(r))).unwrap_or(-1.0)
    }
}

/// A read handle to what the DNS probes last saw: which explicit resolver answers for a
/// host. The results store implements it; HTTP probes use it to measure through the fault.
pub trait ResolverHints: std::fmt::Debug + Send + Sync {
    /// An explicit (not `system`) resolver whose latest lookup of `host` got answers.
    fn answering(&self, host: &str) -> Option<ResolverSpec>;
}

#[derive(Debug)]
pub struct Dns {
    spec: DnsSpec,
    files: SystemFiles,
}

pub fn type_label(t: RecordType) -> &'static str {
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

fn record_type(s: &str) -> Option<RecordType> {
    match s.to_ascii_uppercase().as_str() {
        "A" => Some(RecordType::A),
        "AAAA" => Some(RecordType::AAAA),
        "CNAME" => Some(RecordType::CNAME),
        "TXT" => Some(RecordType::TXT),
        "MX" => Some(RecordType::MX),
        "NS" => Some(RecordType::NS),
        _ => None,
    }
}

fn name(raw: &str) -> Result<String, String> {
    let n = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if is_hostname(&n) {
        Ok(n)
    } else {
        Err(format!("dns: invalid name {n:?}"))
    }
}

impl Kind for Dns {
    const NAME: &'static str = "dns";
    const HTTP: bool = false;
    const PHASES: &'static [Phase] = &[Phase::Resolve];
    const REASONS: &'static [&'static [Reason]] = &[
        DNS_REASONS,
        &[Reason::LocalResourcesExhausted, Reason::Timeout],
    ];
    const FAMILIES: &'static [&'static Family] =
        &[&DNS_SUCCESS, &DNS_RCODE, &DNS_ANSWERS, &DNS_DURATION];
    const BLACKBOX_FAMILIES: &'static [&'static Family] = &[
        &PROBE_DNS_ANSWERS,
        &PROBE_DNS_AUTHORITY,
        &PROBE_DNS_ADDITIONAL,
        &PROBE_DNS_QUERY_SUCCEEDED,
        &PROBE_DNS_DURATION,
    ];
    type Raw = RawDns;
    type Spec = DnsSpec;
    type Details = Vec<DnsLookup>;
    type State = ();

    fn validate(raw: &RawDns, cx: &SectionCx<'_>) -> Result<DnsSpec, ConfigError> {
        if let Some(q) = &raw.query_name {
            return blackbox_style(raw, q, cx);
        }
        if raw.query_type.is_some() {
            return Err(cx.err("dns: query_type goes with query_name; use record_types"));
        }
        let names = match (&raw.names, cx.module) {
            (Some(_), true) => {
                return Err(cx.err("dns: a module gets its name from each request; remove names"));
            }
            (None, true) => vec!["placeholder.invalid".to_string()],
            (None, false) => return Err(cx.err("dns: names is required")),
            (Some(list), false) => list
                .iter()
                .map(|n| name(&n.0).map_err(|e| cx.err(e)))
                .collect::<Result<Vec<_>, _>>()?,
        };
        if names.is_empty() {
            return Err(cx.err("dns: names must not be empty"));
        }
        let record_types = match &raw.record_types {
            None => vec![RecordType::A, RecordType::AAAA],
            Some(list) => list
                .iter()
                .map(|t| {
                    record_type(&t.0)
                        .ok_or_else(|| cx.err(format!("dns: unsupported record type {:?}", t.0)))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let resolvers = match &raw.resolvers {
            None => vec![ResolverSpec::System],
            Some(list) => cx.cx.resolvers(list)?,
        };
        if resolvers.is_empty() || record_types.is_empty() {
            return Err(cx.err("dns: resolvers and record_types must not be empty"));
        }
        Ok(DnsSpec {
            names,
            record_types,
            resolvers,
            target_is_server: false,
        })
    }

    fn target(_spec: &DnsSpec) -> Option<&Target> {
        None
    }

    /// For the allowlist: the server a blackbox-style module asks, or the name looked up.
    fn host(spec: &DnsSpec) -> String {
        match (spec.target_is_server, spec.resolvers.first()) {
            (true, Some(ResolverSpec::Server { addr, .. })) => addr.ip().to_string(),
            _ => spec.names.first().cloned().unwrap_or_default(),
        }
    }

    fn port(spec: &DnsSpec) -> Option<u16> {
        match (spec.target_is_server, spec.resolvers.first()) {
            (true, Some(ResolverSpec::Server { addr, .. })) => Some(addr.port()),
            _ => None,
        }
    }

    fn retarget(spec: &DnsSpec, target: &str) -> Result<DnsSpec, String> {
        if spec.target_is_server {
            // blackbox takes `host[:port]`, maybe with a scheme-like transport prefix.
            let server = ResolverSpec::parse(target)
                .map_err(|_| format!("target {target:?} is not a DNS server address (IP or IP:port)"))?;
            if server == ResolverSpec::System {
                return Err("the target of this module is a DNS server address".into());
            }
            return Ok(DnsSpec {
                resolvers: vec![server],
                ..spec.clone()
            });
        }
        let n = name(target).map_err(|_| format!("target {target:?} is not a host name"))?;
        Ok(DnsSpec {
            names: vec![n],
            ..spec.clone()
        })
    }

    fn new(spec: &DnsSpec, _conn: &ConnSpec, deps: &Deps) -> Self {
        Dns {
            spec: spec.clone(),
            files: deps.files.clone(),
        }
    }

    async fn run(&self, trace: &Trace, deadline: Instant) -> Outcome<Vec<DnsLookup>> {
        trace.enter(Phase::Resolve);
        if let Some(ResolverSpec::Server { addr, .. }) = self.spec.resolvers.first() {
            trace.update(|t| t.dialled = Some(addr.ip()));
        }
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
                    let (servers, name, rtype, resolver) =
                        (servers.clone(), name.clone(), *rtype, resolver.clone());
                    let i = index;
                    index += 1;
                    set.spawn(async move {
                        let started = Instant::now();
                        let r = query_servers(&servers, tcp, &name, rtype, lookup_deadline).await;
                        let duration = started.elapsed();
                        let lookup = match r {
                            Ok(reply) => DnsLookup {
                                resolver,
                                name,
                                rtype,
                                rcode: Some(reply.rcode),
                                answers: reply.answer_count,
                                authorities: reply.authority_count,
                                additionals: reply.additional_count,
                                exchange: [reply.connect, reply.request],
                                duration,
                                failure: reply.failure(),
                            },
                            Err(e) => DnsLookup {
                                resolver,
                                name,
                                rtype,
                                rcode: None,
                                answers: 0,
                                authorities: 0,
                                additionals: 0,
                                exchange: [Duration::ZERO; 2],
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
        Outcome {
            details: Some(lookups),
            failure,
        }
    }

    fn render(e: &mut Encoder, views: &[View<'_, Self>], _now: SystemTime) {
        type Get = fn(&DnsLookup) -> f64;
        let families: [(&Family, Get); 4] = [
            (&DNS_SUCCESS, |l| flag(l.failure.is_none())),
            (&DNS_RCODE, DnsLookup::rcode_value),
            (&DNS_ANSWERS, |l| l.answers as f64),
            (&DNS_DURATION, |l| l.duration.as_secs_f64()),
        ];
        for (f, get) in families {
            e.header(f);
            for v in views {
                let [a, b] = v.labels();
                for l in v.details.iter().flat_map(|d| d.iter()) {
                    let resolver = l.resolver.label();
                    let labels = [
                        a,
                        b,
                        ("resolver", resolver.as_str()),
                        ("name", l.name.as_str()),
                        ("type", type_label(l.rtype)),
                    ];
                    e.sample(f, &labels, get(l));
                }
            }
        }
    }

    fn status(view: &View<'_, Self>, _now: SystemTime) -> KindStatus {
        let mut s = KindStatus::default();
        if let Some(lookups) = view.details {
            s.json.insert(
                "dns".into(),
                lookups
                    .iter()
                    .map(|d| {
                        json!({"resolver": d.resolver.label(), "name": d.name,
                               "type": type_label(d.rtype), "rcode": d.rcode.map(u16::from),
                               "answers": d.answers, "ok": d.failure.is_none()})
                    })
                    .collect(),
            );
            let ok = lookups.iter().filter(|l| l.failure.is_none()).count();
            s.note = Some(format!("{ok} of {} lookups answered", lookups.len()));
        }
        s
    }

    fn blackbox(e: &mut Encoder, details: &Vec<DnsLookup>) {
        // A module makes one lookup; sums keep a many-lookup run meaningful too.
        let sum = |f: fn(&DnsLookup) -> usize| details.iter().map(f).sum::<usize>() as f64;
        let counts: [(&Family, f64); 3] = [
            (&PROBE_DNS_ANSWERS, sum(|l| l.answers)),
            (&PROBE_DNS_AUTHORITY, sum(|l| usize::from(l.authorities))),
            (&PROBE_DNS_ADDITIONAL, sum(|l| usize::from(l.additionals))),
        ];
        for (f, v) in counts {
            e.header(f);
            e.sample(f, &[], v);
        }
        // blackbox's phases: resolving the server (an address here, so nothing), setting up
        // the socket, and the exchange; summed over the run's lookups.
        let phase = |i: usize| details.iter().map(|l| l.exchange[i].as_secs_f64()).sum::<f64>();
        e.header(&PROBE_DNS_DURATION);
        for (name, v) in [("resolve", 0.0), ("connect", phase(0)), ("request", phase(1))] {
            e.sample(&PROBE_DNS_DURATION, &[("phase", name)], v);
        }
        // As blackbox: the exchange got a reply (whatever its rcode says).
        e.header(&PROBE_DNS_QUERY_SUCCEEDED);
        let replied = !details.is_empty() && details.iter().all(|l| l.rcode.is_some());
        e.sample(&PROBE_DNS_QUERY_SUCCEEDED, &[], flag(replied));
    }
}

/// A (resolver, name) pair fails when none of its record types gave an answer; NODATA for
/// AAAA alone is normal for IPv4-only hosts. The first failing pair, in configured order,
/// names the run's reason — unless a lookup could not get a socket at all: a run that ran out
/// of descriptors observed the daemon, not the network, so that names the run wherever in the
/// order it happened (which lookups got a socket first is up to the scheduler).
fn first_failure(lookups: &[DnsLookup]) -> Option<Failure> {
    let exhausted = lookups
        .iter()
        .find(|l| l.failure == Some(Reason::LocalResourcesExhausted));
    let worst = exhausted.or_else(|| worst_of_first_failing_pair(lookups))?;
    let reason = worst.failure.unwrap_or(Reason::DnsError);
    let what = match worst.rcode {
        Some(rc) => format!("{} with {} answers", rcode_name(rc), worst.answers),
        None => format!("no answer ({})", reason.as_label()),
    };
    Some(Failure::new(
        reason,
        format!(
            "resolver {}: {} {}: {what}",
            worst.resolver.label(),
            worst.name,
            type_label(worst.rtype)
        ),
    ))
}

/// The most telling lookup of the first (resolver, name) pair, in configured order, of which
/// no record type answered.
fn worst_of_first_failing_pair(lookups: &[DnsLookup]) -> Option<&DnsLookup> {
    let mut pairs: Vec<(&ResolverSpec, &str)> = Vec::new();
    for l in lookups {
        if !pairs.contains(&(&l.resolver, l.name.as_str())) {
            pairs.push((&l.resolver, &l.name));
        }
    }
    pairs.into_iter().find_map(|(resolver, name)| {
        let of_pair = || {
            lookups
                .iter()
                .filter(move |l| &l.resolver == resolver && l.name == name)
        };
        if of_pair().any(|l| l.failure.is_none()) {
            return None;
        }
        of_pair().min_by_key(|l| severity_rank(l.failure.unwrap_or(Reason::DnsError)))
    })
}
