//! The closed set of failure reasons a probe run can end with, their metric labels, and the
//! failure value (one reason plus text for logs) every layer returns.

/// Why a probe run failed. Every failed run carries exactly one of these; the label is the
/// only thing that reaches metrics, the error text goes to the log and status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    DnsNxdomain,
    DnsNodata,
    DnsServfail,
    DnsRefused,
    DnsTimeout,
    DnsError,
    DnsUnreachable,
    ConnectRefused,
    ConnectTimeout,
    NetworkUnreachable,
    ConnectionReset,
    LocalResourcesExhausted,
    ProxyConnectFailed,
    ProxyAuthRequired,
    TlsUnknownIssuer,
    TlsExpired,
    TlsNotYetValid,
    TlsHostnameMismatch,
    TlsHandshake,
    HttpStatus,
    HttpProtocol,
    Timeout,
    BodyTooLarge,
    BodyInvalid,
    JwksNoKeys,
    JwksInvalidKey,
    JwksDuplicateKid,
    AuthSecretKeyInvalid,
    HealthCheckFailed,
    ClockSkew,
    TokenMintFailed,
    TokenInvalid,
    TokenKidUnknown,
    AuthValidTokenRejected,
    AuthAcceptsInvalidToken,
}

/// Reasons any probe that makes an HTTP request can end with: the first 23 of `ALL`.
pub const HTTP_REASONS: &[Reason] = Reason::ALL.split_at(23).0;

/// The DNS stage: the first 7 of `ALL`.
pub const DNS_REASONS: &[Reason] = Reason::ALL.split_at(7).0;

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::DnsNxdomain,
        Reason::DnsNodata,
        Reason::DnsServfail,
        Reason::DnsRefused,
        Reason::DnsTimeout,
        Reason::DnsError,
        Reason::DnsUnreachable,
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::NetworkUnreachable,
        Reason::ConnectionReset,
        Reason::LocalResourcesExhausted,
        Reason::ProxyConnectFailed,
        Reason::ProxyAuthRequired,
        Reason::TlsUnknownIssuer,
        Reason::TlsExpired,
        Reason::TlsNotYetValid,
        Reason::TlsHostnameMismatch,
        Reason::TlsHandshake,
        Reason::HttpStatus,
        Reason::HttpProtocol,
        Reason::Timeout,
        Reason::BodyTooLarge,
        Reason::BodyInvalid,
        Reason::JwksNoKeys,
        Reason::JwksInvalidKey,
        Reason::JwksDuplicateKid,
        Reason::AuthSecretKeyInvalid,
        Reason::HealthCheckFailed,
        Reason::ClockSkew,
        Reason::TokenMintFailed,
        Reason::TokenInvalid,
        Reason::TokenKidUnknown,
        Reason::AuthValidTokenRejected,
        Reason::AuthAcceptsInvalidToken,
    ];

    /// The stable lowercase label used in metrics and alert rules.
    pub fn as_label(self) -> &'static str {
        match self {
            Reason::DnsNxdomain => "dns_nxdomain",
            Reason::DnsNodata => "dns_nodata",
            Reason::DnsServfail => "dns_servfail",
            Reason::DnsRefused => "dns_refused",
            Reason::DnsTimeout => "dns_timeout",
            Reason::DnsError => "dns_error",
            Reason::DnsUnreachable => "dns_unreachable",
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::NetworkUnreachable => "network_unreachable",
            Reason::ConnectionReset => "connection_reset",
            Reason::LocalResourcesExhausted => "local_resources_exhausted",
            Reason::ProxyConnectFailed => "proxy_connect_failed",
            Reason::ProxyAuthRequired => "proxy_auth_required",
            Reason::TlsUnknownIssuer => "tls_unknown_issuer",
            Reason::TlsExpired => "tls_expired",
            Reason::TlsNotYetValid => "tls_not_yet_valid",
            Reason::TlsHostnameMismatch => "tls_hostname_mismatch",
            Reason::TlsHandshake => "tls_handshake",
            Reason::HttpStatus => "http_status",
            Reason::HttpProtocol => "http_protocol",
            Reason::Timeout => "timeout",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BodyInvalid => "body_invalid",
            Reason::JwksNoKeys => "jwks_no_keys",
            Reason::JwksInvalidKey => "jwks_invalid_key",
            Reason::JwksDuplicateKid => "jwks_duplicate_kid",
            Reason::AuthSecretKeyInvalid => "auth_secret_key_invalid",
            Reason::HealthCheckFailed => "health_check_failed",
            Reason::ClockSkew => "clock_skew",
            Reason::TokenMintFailed => "token_mint_failed",
            Reason::TokenInvalid => "token_invalid",
            Reason::TokenKidUnknown => "token_kid_unknown",
            Reason::AuthValidTokenRejected => "auth_valid_token_rejected",
            Reason::AuthAcceptsInvalidToken => "auth_accepts_invalid_token",
        }
    }

    pub fn from_label(label: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_label() == label)
    }
}

/// A failed run: one reason from the closed set, and text for the log and status page only.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

/// Whether an I/O error says this machine ran out of something (file descriptors, buffers,
/// memory) rather than anything about the network: such a failure must never read as a
/// network cause. The numbers are Linux's errno values, the platform authwatch runs on.
pub fn local_exhaustion(e: &std::io::Error) -> bool {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOBUFS: i32 = 105;
    matches!(e.raw_os_error(), Some(ENOMEM | ENFILE | EMFILE | ENOBUFS))
}

/// A remote value as it may appear in a message: quoted, and cut to 64 characters, so a
/// server cannot fill logs, the status page or `/probe` answers with what it sends.
pub fn quoted(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}… ({} bytes)", &s[..i], s.len()),
        None => format!("{s:?}"),
    }
}

/// A value cut to `max` characters for a label (labels must stay small: every scrape carries
/// them).
pub fn bounded(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(
                seen.insert(r.as_label()),
                "duplicate label {}",
                r.as_label()
            );
            assert_eq!(Reason::from_label(r.as_label()), Some(*r));
        }
    }

    #[test]
    fn running_out_of_descriptors_is_local_not_the_network() {
        for errno in [12, 23, 24, 105] {
            assert!(
                local_exhaustion(&std::io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        // ENETUNREACH and ECONNREFUSED say something about the network.
        for errno in [101, 111] {
            assert!(
                !local_exhaustion(&std::io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    #[test]
    fn stage_slices_end_where_their_stage_does() {
        assert_eq!(HTTP_REASONS.last(), Some(&Reason::BodyTooLarge));
        assert_eq!(DNS_REASONS.last(), Some(&Reason::DnsUnreachable));
    }
}
