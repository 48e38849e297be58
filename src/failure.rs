//! The closed set of failure reasons a probe run can end with, and their metric labels.

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
    ConnectRefused,
    ConnectTimeout,
    NetworkUnreachable,
    ConnectionReset,
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

/// Reasons any probe that makes an HTTP request can end with: the first 21 of `ALL`.
const HTTP_REASONS: &[Reason] = Reason::ALL.split_at(21).0;

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::DnsNxdomain,
        Reason::DnsNodata,
        Reason::DnsServfail,
        Reason::DnsRefused,
        Reason::DnsTimeout,
        Reason::DnsError,
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::NetworkUnreachable,
        Reason::ConnectionReset,
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
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::NetworkUnreachable => "network_unreachable",
            Reason::ConnectionReset => "connection_reset",
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

/// The probe kinds, each with the reasons its runs can end with (the one-hot domain of
/// `authwatch_probe_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Dns,
    Https,
    Jwks,
    ApiHealth,
    Clock,
    Auth,
}

impl Kind {
    pub fn as_label(self) -> &'static str {
        match self {
            Kind::Dns => "dns",
            Kind::Https => "https",
            Kind::Jwks => "jwks",
            Kind::ApiHealth => "api_health",
            Kind::Clock => "clock",
            Kind::Auth => "auth",
        }
    }

    /// Every reason a run of this kind can fail with, in a stable order.
    pub fn reasons(self) -> Vec<Reason> {
        match self {
            Kind::Dns => vec![
                Reason::DnsNxdomain,
                Reason::DnsNodata,
                Reason::DnsServfail,
                Reason::DnsRefused,
                Reason::DnsTimeout,
                Reason::DnsError,
                Reason::ConnectRefused,
                Reason::NetworkUnreachable,
                Reason::Timeout,
            ],
            Kind::Https => HTTP_REASONS.to_vec(),
            Kind::Jwks => {
                let mut r = HTTP_REASONS.to_vec();
                r.extend([
                    Reason::BodyInvalid,
                    Reason::JwksNoKeys,
                    Reason::JwksInvalidKey,
                    Reason::JwksDuplicateKid,
                    Reason::AuthSecretKeyInvalid,
                ]);
                r
            }
            Kind::ApiHealth => {
                let mut r = HTTP_REASONS.to_vec();
                r.extend([Reason::BodyInvalid, Reason::HealthCheckFailed]);
                r
            }
            Kind::Clock => {
                let mut r = HTTP_REASONS.to_vec();
                r.push(Reason::ClockSkew);
                r
            }
            Kind::Auth => {
                let mut r = HTTP_REASONS.to_vec();
                r.extend([
                    Reason::TokenMintFailed,
                    Reason::AuthSecretKeyInvalid,
                    Reason::TokenInvalid,
                    Reason::TokenKidUnknown,
                    Reason::AuthValidTokenRejected,
                    Reason::AuthAcceptsInvalidToken,
                ]);
                r
            }
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
    fn http_reasons_end_with_the_http_stage() {
        assert_eq!(HTTP_REASONS.last(), Some(&Reason::BodyTooLarge));
    }

    #[test]
    fn every_kind_reason_is_known() {
        for k in [
            Kind::Dns,
            Kind::Https,
            Kind::Jwks,
            Kind::ApiHealth,
            Kind::Clock,
        ] {
            for r in k.reasons() {
                assert!(Reason::ALL.contains(&r));
            }
        }
    }
}
