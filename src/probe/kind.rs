//! What a probe kind is: the trait each kind's file implements (its config section, its
//! validated spec, its run, the state it keeps across runs, its metric families and its
//! status details), the context those get, and the `kinds!` macro the registry is made of.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use tokio::time::Instant;

use crate::config::base::{ConfigError, Cx, Pos, Role, Text};
use crate::config::clerk::Clerk;
use crate::config::connection::RawConnection;
use crate::encode::{Encoder, Family};
use crate::failure::{Failure, Reason};
use crate::net::http::{ConnSpec, HttpClient};
use crate::net::resolve::{Resolver, SystemFiles};
use crate::net::target::Target;
use crate::net::tls::TrustCache;
use crate::net::trace::{Phase, Trace};
use crate::probe::KindId;
use crate::probe::dns::ResolverHints;
use crate::probe::jwks::KeySource;
use crate::probe::state::ProbeState;

/// One probe kind. Implemented by a unit-like runner type in the kind's own file; registered
/// with one line in `probe/mod.rs`.
pub trait Kind: Sized + fmt::Debug + Send + Sync + 'static {
    /// The config section key and the `kind` label.
    const NAME: &'static str;
    /// Makes HTTP requests: takes a `connection` section, can fail with every HTTP reason,
    /// and gets the HTTP and TLS families.
    const HTTP: bool;
    /// The phases its runs go through (the `phase` label domain).
    const PHASES: &'static [Phase] = &Phase::ALL;
    /// Reasons its runs can fail with, beyond the HTTP ones when `HTTP`, in groups (such as
    /// `failure::DNS_REASONS`) that are concatenated.
    const REASONS: &'static [&'static [Reason]];
    /// The role a probe of this kind has when the config sets none.
    const DEFAULT_ROLE: Role = Role::Clerk;
    /// Whether a `/probe` module may be of this kind.
    const MODULE: bool = true;
    /// Whether a run may be repeated through another resolver while the container's fails
    /// (false when a run spends something of the customer's, such as minted tokens).
    const REPEATABLE: bool = true;
    /// The metric families `render` writes.
    const FAMILIES: &'static [&'static Family] = &[];
    /// The families `blackbox` writes into a `/probe` answer.
    const BLACKBOX_FAMILIES: &'static [&'static Family] = &[];

    /// The kind's config section, as written.
    type Raw: DeserializeOwned + fmt::Debug;
    /// The validated section.
    type Spec: fmt::Debug + Clone + PartialEq + Send + Sync;
    /// What one run found besides its failure.
    type Details: fmt::Debug + Clone + PartialEq + Send + Sync;
    /// What the probe keeps across runs (and across reloads that leave it unchanged).
    type State: fmt::Debug + Clone + Default + Send + Sync;

    /// Validates the section. For a module (`cx.module`) the target is a placeholder until
    /// `retarget` gives each request's.
    fn validate(raw: &Self::Raw, cx: &SectionCx<'_>) -> Result<Self::Spec, ConfigError>;
    /// Where an HTTP-based kind connects (its proxy is decided for this host).
    fn target(spec: &Self::Spec) -> Option<&Target>;
    /// The host the probe checks, for the `/probe` allowlist.
    fn host(spec: &Self::Spec) -> String {
        Self::target(spec)
            .map(|t| t.host.clone())
            .unwrap_or_default()
    }
    /// The port the probe connects to on that host, for the allowlist; `None` for a kind
    /// that connects nowhere of a request's choosing.
    fn port(spec: &Self::Spec) -> Option<u16> {
        Self::target(spec).map(|t| t.port)
    }
    /// The spec with a `/probe` request's target in place of the placeholder.
    fn retarget(spec: &Self::Spec, target: &str) -> Result<Self::Spec, String>;
    /// Links the spec to the other probes of the config once all are validated.
    fn link(_spec: &mut Self::Spec, _probes: &[(String, KindId)]) -> Result<(), String> {
        Ok(())
    }
    /// The runner for a spec.
    fn new(spec: &Self::Spec, conn: &ConnSpec, deps: &Deps) -> Self;
    /// One run. The caller enforces `deadline` by dropping the future; the trace says how
    /// far the run got.
    fn run(
        &self,
        trace: &Trace,
        deadline: Instant,
    ) -> impl Future<Output = Outcome<Self::Details>> + Send;
    /// Folds a finished run into the kept state.
    fn record(
        _kept: &mut Self::State,
        _details: Option<&Self::Details>,
        _succeeded: bool,
        _now: SystemTime,
    ) {
    }
    /// Writes the kind's own families (all of `FAMILIES`, each once, samples grouped).
    fn render(_e: &mut Encoder, _views: &[View<'_, Self>], _now: SystemTime) {}
    /// The kind's part of the status page and `/api/v1/status`.
    fn status(_view: &View<'_, Self>, _now: SystemTime) -> KindStatus {
        KindStatus::default()
    }
    /// The kind's extra blackbox-style samples for a `/probe` answer.
    fn blackbox(_e: &mut Encoder, _details: &Self::Details) {}
}

/// Every reason a kind's runs can fail with, in a stable order.
pub fn reasons_of<K: Kind>() -> Vec<Reason> {
    let mut r = if K::HTTP {
        crate::failure::HTTP_REASONS.to_vec()
    } else {
        Vec::new()
    };
    for group in K::REASONS {
        r.extend_from_slice(group);
    }
    r
}

/// What validating a kind's section may need.
pub struct SectionCx<'a> {
    pub cx: &'a Cx<'a>,
    /// The probe or module entry: where errors without a position of their own point.
    pub pos: Pos,
    pub clerk: &'a Clerk,
    /// Validating a `/probe` module, whose target comes with each request.
    pub module: bool,
    pub global_body_limit: u64,
}

/// The host `retarget` replaces; never resolved.
const PLACEHOLDER_HOST: &str = "placeholder.invalid";

impl SectionCx<'_> {
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        self.cx.err(self.pos, message)
    }

    /// The section's URL field: required on a probe, absent on a module.
    pub fn url(
        &self,
        kind: &str,
        key: &str,
        field: &Option<Spanned<Text>>,
    ) -> Result<Target, ConfigError> {
        match (field, self.module) {
            (Some(u), false) => self.cx.target(u),
            (None, false) => Err(self.err(format!("{kind}: {key} is required"))),
            (Some(u), true) => Err(self.cx.at(
                u,
                format!("{kind}: a module gets its target from each request; remove {key}"),
            )),
            (None, true) => Ok(Target {
                https: true,
                host: PLACEHOLDER_HOST.into(),
                port: 443,
                path: "/".into(),
            }),
        }
    }

    /// A connection with default settings to `target` (the auth probe's Backend API calls).
    pub fn default_conn(&self, target: &Target) -> Result<ConnSpec, ConfigError> {
        RawConnection::default().for_target(
            self.cx,
            self.pos,
            self.global_body_limit,
            &target.host,
            target.https,
        )
    }
}

/// A `/probe` target for URL-based kinds: a URL, or a bare host taken as `https://host/`.
pub fn module_url(target: &str) -> Result<Target, String> {
    if target.contains("://") {
        Target::parse(target)
    } else {
        Target::parse(&format!("https://{target}/"))
    }
}

/// `spec` with its URL (at `slot`) replaced by a `/probe` request's target.
pub fn with_url<S: Clone>(
    spec: &S,
    target: &str,
    slot: fn(&mut S) -> &mut Target,
) -> Result<S, String> {
    let mut s = spec.clone();
    *slot(&mut s) = module_url(target)?;
    Ok(s)
}

/// What runners are built with: the system files, the trust store, and read handles to the
/// key sets the JWKS probes fetched and to the resolvers the DNS probes saw answer.
#[derive(Debug, Clone)]
pub struct Deps {
    pub files: SystemFiles,
    pub trust: Arc<TrustCache>,
    pub keys: Arc<dyn KeySource>,
    pub hints: Arc<dyn ResolverHints>,
}

impl Deps {
    /// An HTTP client for a probe's connection settings.
    pub fn http(&self, conn: &ConnSpec) -> HttpClient {
        HttpClient::new(
            conn.clone(),
            Resolver {
                spec: conn.resolver.clone(),
                files: self.files.clone(),
            },
            self.trust.clone(),
        )
    }
}

/// What one run of a kind produced.
#[derive(Debug, Clone)]
pub struct Outcome<D> {
    pub details: Option<D>,
    pub failure: Option<Failure>,
}

impl<D> Outcome<D> {
    pub fn ok(details: D) -> Self {
        Outcome {
            details: Some(details),
            failure: None,
        }
    }

    /// A run with nothing to report but success.
    pub fn passed() -> Self {
        Outcome {
            details: None,
            failure: None,
        }
    }
}

impl<D> From<Failure> for Outcome<D> {
    fn from(f: Failure) -> Self {
        Outcome {
            details: None,
            failure: Some(f),
        }
    }
}

/// One probe of kind `K` as the renderers see it.
#[derive(Debug)]
pub struct View<'a, K: Kind> {
    pub probe: &'a ProbeState,
    pub spec: &'a K::Spec,
    pub kept: &'a K::State,
    /// What the latest run found (`None` before the first run or when it found nothing).
    pub details: Option<&'a K::Details>,
}

impl<'a, K: Kind> View<'a, K> {
    /// The `probe` and `kind` labels every per-probe series carries.
    pub fn labels(&self) -> [(&'static str, &'a str); 2] {
        self.probe.labels()
    }
}

/// A kind's part of the status: keys merged into the probe's JSON object, and one line for
/// the status page.
#[derive(Debug, Clone, Default)]
pub struct KindStatus {
    pub json: Map<String, Value>,
    pub note: Option<String>,
}

/// Whether two strings are equal, usable in constants (the registry checks that each kind's
/// section key is its `NAME` at compile time).
pub const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Builds the registry from one line per kind: `key: Type,` for the kind type `Type` in
/// the file `probe/key.rs` (the key is also the config section and the `kind` label). It
/// declares the kind modules and generates
/// the kind enums (`KindId`, `Spec`, `Details`, `Kept`), the raw probe and module entries
/// with one optional section per kind, and the dispatch from each to the kind's file.
macro_rules! kinds {
    ($($key:ident: $V:ident,)+) => {
        $(pub mod $key;)+
        kinds!(@expand $($key: $V => $key::$V,)+);
    };
    (@expand $($key:ident: $V:ident => $ty:ty,)+) => {
        $(const _: () = assert!(
            $crate::probe::kind::same(stringify!($key), <$ty as Kind>::NAME),
            "a kind's registry key must be its NAME"
        );)+

        /// Every registered probe kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum KindId {
            $($V,)+
        }

        impl KindId {
            pub const ALL: &'static [KindId] = &[$(KindId::$V,)+];

            pub fn as_label(self) -> &'static str {
                match self {
                    $(KindId::$V => <$ty as Kind>::NAME,)+
                }
            }

            pub fn is_http(self) -> bool {
                match self {
                    $(KindId::$V => <$ty as Kind>::HTTP,)+
                }
            }

            pub fn phases(self) -> &'static [Phase] {
                match self {
                    $(KindId::$V => <$ty as Kind>::PHASES,)+
                }
            }

            /// Every reason a run of this kind can fail with, in a stable order. Built once
            /// per kind: a scrape asks for it once per probe.
            pub fn reasons(self) -> &'static [Reason] {
                match self {
                    $(KindId::$V => {
                        static REASONS: std::sync::OnceLock<Vec<Reason>> =
                            std::sync::OnceLock::new();
                        REASONS.get_or_init(reasons_of::<$ty>)
                    })+
                }
            }

            /// The metric families of every kind's own block.
            pub fn families() -> Vec<&'static Family> {
                let mut v: Vec<&'static Family> = Vec::new();
                $(v.extend_from_slice(<$ty as Kind>::FAMILIES);)+
                $(v.extend_from_slice(<$ty as Kind>::BLACKBOX_FAMILIES);)+
                v
            }

            /// Whether a run may be repeated through another resolver.
            pub fn repeatable(self) -> bool {
                match self {
                    $(KindId::$V => <$ty as Kind>::REPEATABLE,)+
                }
            }

            fn can_be_module(self) -> bool {
                match self {
                    $(KindId::$V => <$ty as Kind>::MODULE,)+
                }
            }

            fn default_role(self) -> Role {
                match self {
                    $(KindId::$V => <$ty as Kind>::DEFAULT_ROLE,)+
                }
            }
        }

        /// The validated kind section of one probe.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Spec {
            $($V(<$ty as Kind>::Spec),)+
        }

        impl Spec {
            pub fn kind(&self) -> KindId {
                match self {
                    $(Spec::$V(_) => KindId::$V,)+
                }
            }

            /// Where an HTTP-based probe connects.
            pub fn target(&self) -> Option<&Target> {
                match self {
                    $(Spec::$V(s) => <$ty as Kind>::target(s),)+
                }
            }

            /// The host the probe checks.
            pub fn host(&self) -> String {
                match self {
                    $(Spec::$V(s) => <$ty as Kind>::host(s),)+
                }
            }

            /// The port the probe connects to, for the allowlist.
            pub fn port(&self) -> Option<u16> {
                match self {
                    $(Spec::$V(s) => <$ty as Kind>::port(s),)+
                }
            }

            /// The spec for a `/probe` request's target.
            pub fn retarget(&self, target: &str) -> Result<Spec, String> {
                match self {
                    $(Spec::$V(s) => <$ty as Kind>::retarget(s, target).map(Spec::$V),)+
                }
            }

            fn link(&mut self, probes: &[(String, KindId)]) -> Result<(), String> {
                match self {
                    $(Spec::$V(s) => <$ty as Kind>::link(s, probes),)+
                }
            }
        }

        /// What the latest run of a probe found, by kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Details {
            $($V(<$ty as Kind>::Details),)+
        }

        /// What a probe keeps across runs, by kind.
        #[derive(Debug, Clone)]
        pub enum Kept {
            $($V(<$ty as Kind>::State),)+
        }

        impl Kept {
            pub fn new(kind: KindId) -> Kept {
                match kind {
                    $(KindId::$V => Kept::$V(Default::default()),)+
                }
            }

            fn record(&mut self, details: Option<&Details>, succeeded: bool, now: SystemTime) {
                match self {
                    $(Kept::$V(k) => <$ty as Kind>::record(
                        k,
                        details.and_then(<$ty as Member>::details_of),
                        succeeded,
                        now,
                    ),)+
                }
            }
        }

        /// Typed access to one kind's part of the probe enums.
        pub trait Member: Kind {
            fn spec_of(s: &Spec) -> Option<&Self::Spec>;
            fn details_of(d: &Details) -> Option<&Self::Details>;
            fn kept_of(k: &Kept) -> Option<&Self::State>;
        }

        $(
            #[allow(unreachable_patterns)]
            impl Member for $ty {
                fn spec_of(s: &Spec) -> Option<&Self::Spec> {
                    match s {
                        Spec::$V(x) => Some(x),
                        _ => None,
                    }
                }
                fn details_of(d: &Details) -> Option<&Self::Details> {
                    match d {
                        Details::$V(x) => Some(x),
                        _ => None,
                    }
                }
                fn kept_of(k: &Kept) -> Option<&Self::State> {
                    match k {
                        Kept::$V(x) => Some(x),
                        _ => None,
                    }
                }
            }
        )+

        /// The runner of each kind. Boxed: kinds differ a lot in size (the auth probe carries
        /// an RSA key) and every probe would otherwise pay for the largest.
        #[derive(Debug)]
        enum Runner {
            $($V(Box<$ty>),)+
        }

        impl Probe {
            /// A runner for `spec`; pass an `Arc` to share the spec with the probe's state.
            pub fn new(spec: impl Into<std::sync::Arc<ProbeSpec>>, deps: &Deps) -> Probe {
                let spec: std::sync::Arc<ProbeSpec> = spec.into();
                let imp = match &spec.settings {
                    $(Spec::$V(s) => Runner::$V(Box::new(<$ty as Kind>::new(s, &spec.conn, deps))),)+
                };
                Probe {
                    spec,
                    imp,
                    deps: deps.clone(),
                    detour: std::sync::Mutex::new(None),
                }
            }

            /// Runs once. The caller enforces `deadline` by dropping the future. The kind's
            /// future is boxed so that a probe task holds only a pointer to it while waiting
            /// for the next run.
            pub async fn run(&self, trace: &Trace, deadline: Instant) -> RunResult {
                match &self.imp {
                    $(Runner::$V(r) => {
                        let o = Box::pin(r.run(trace, deadline)).await;
                        RunResult {
                            details: o.details.map(Details::$V),
                            failure: o.failure,
                        }
                    })+
                }
            }

            /// The size of the kind's own run future (for the memory benchmark).
            #[doc(hidden)]
            pub fn run_future_size(&self, trace: &Trace, deadline: Instant) -> usize {
                match &self.imp {
                    $(Runner::$V(r) => std::mem::size_of_val(&r.run(trace, deadline)),)+
                }
            }
        }

        /// One entry of `probes:` as written: the common keys and one kind section.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawProbe {
            pub name: Spanned<Text>,
            #[serde(default, deserialize_with = "de_duration")]
            pub interval: Option<Duration>,
            #[serde(default, deserialize_with = "de_duration")]
            pub timeout: Option<Duration>,
            pub role: Option<Spanned<Text>>,
            pub connection: Option<RawConnection>,
            /// Fetch the way this Clerk SDK does (`python`, `node`, `go`, `generic`).
            pub sdk: Option<Spanned<Text>>,
            $(pub $key: Option<<$ty as Kind>::Raw>,)+
        }

        /// One entry of `modules:` as written: a probe without name and target.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawModule {
            /// The pre-0.2 flat form (`kind: https` next to the settings), kept only to say
            /// how to write it now.
            pub kind: Option<Spanned<Text>>,
            #[serde(default, deserialize_with = "de_duration")]
            pub timeout: Option<Duration>,
            pub connection: Option<RawConnection>,
            $(pub $key: Option<<$ty as Kind>::Raw>,)+
        }

        /// The sections of one entry, one per kind.
        struct Sections<'a> {
            $($key: Option<&'a <$ty as Kind>::Raw>,)+
        }

        impl Sections<'_> {
            /// Validates the one kind section.
            fn settings(&self, what: &str, cx: &SectionCx<'_>) -> Result<Spec, ConfigError> {
                exactly_one(what, cx, &[$((KindId::$V, self.$key.is_some()),)+])?;
                $(if let Some(r) = self.$key {
                    return Ok(Spec::$V(<$ty as Kind>::validate(r, cx)?));
                })+
                Err(cx.err(format!("{what} has no kind")))
            }
        }

        impl RawProbe {
            /// Validates the one kind section.
            pub fn settings(&self, what: &str, cx: &SectionCx<'_>) -> Result<Spec, ConfigError> {
                Sections { $($key: self.$key.as_ref(),)+ }.settings(what, cx)
            }
        }

        impl RawModule {
            /// Validates the one kind section.
            pub fn settings(&self, what: &str, cx: &SectionCx<'_>) -> Result<Spec, ConfigError> {
                Sections { $($key: self.$key.as_ref(),)+ }.settings(what, cx)
            }
        }

        /// Each kind's own metric block.
        pub fn render_kinds(e: &mut Encoder, probes: &[std::sync::Arc<ProbeState>], now: SystemTime) {
            $({
                let views: Vec<View<'_, $ty>> = probes.iter().filter_map(|p| p.view::<$ty>()).collect();
                <$ty as Kind>::render(e, &views, now);
            })+
        }

        /// The kind's part of a probe's status.
        pub fn kind_status(p: &ProbeState, now: SystemTime) -> KindStatus {
            match &p.spec.settings {
                $(Spec::$V(_) => p
                    .view::<$ty>()
                    .map(|v| <$ty as Kind>::status(&v, now))
                    .unwrap_or_default(),)+
            }
        }

        /// The kind's extra samples of a `/probe` answer.
        pub fn blackbox_details(e: &mut Encoder, d: &Details) {
            match d {
                $(Details::$V(x) => <$ty as Kind>::blackbox(e, x),)+
            }
        }
    };
}
pub(crate) use kinds;
