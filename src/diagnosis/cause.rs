//! The closed set of causes the diagnosis can name, each with its severity, a one-line
//! summary and the fix to try first. Alert rules and the dashboard are written against these.

/// A cause of an auth outage (or of one to come). The set is closed: alert rules and the
/// dashboard are written against these labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    DnsResolverBroken,
    DnsNameMissing,
    EgressBlocked,
    CaCertificatesMissing,
    TlsIntercepted,
    ProxyMisconfigured,
    ClockSkew,
    ProviderOutage,
    SecretKeyInvalid,
    JwksStale,
    JwksKeyMismatch,
    ApiNetworkUnhealthy,
    CertExpiring,
    AuthFailOpen,
    AuthRejectsValidTokens,
}

impl Cause {
    pub const ALL: [Cause; 15] = [
        Cause::DnsResolverBroken,
        Cause::DnsNameMissing,
        Cause::EgressBlocked,
        Cause::CaCertificatesMissing,
        Cause::TlsIntercepted,
        Cause::ProxyMisconfigured,
        Cause::ClockSkew,
        Cause::ProviderOutage,
        Cause::SecretKeyInvalid,
        Cause::JwksStale,
        Cause::JwksKeyMismatch,
        Cause::ApiNetworkUnhealthy,
        Cause::CertExpiring,
        Cause::AuthFailOpen,
        Cause::AuthRejectsValidTokens,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            Cause::DnsResolverBroken => "dns_resolver_broken",
            Cause::DnsNameMissing => "dns_name_missing",
            Cause::EgressBlocked => "egress_blocked",
            Cause::CaCertificatesMissing => "ca_certificates_missing",
            Cause::TlsIntercepted => "tls_intercepted",
            Cause::ProxyMisconfigured => "proxy_misconfigured",
            Cause::ClockSkew => "clock_skew",
            Cause::ProviderOutage => "provider_outage",
            Cause::SecretKeyInvalid => "secret_key_invalid",
            Cause::JwksStale => "jwks_stale",
            Cause::JwksKeyMismatch => "jwks_key_mismatch",
            Cause::ApiNetworkUnhealthy => "api_network_unhealthy",
            Cause::CertExpiring => "cert_expiring",
            Cause::AuthFailOpen => "auth_fail_open",
            Cause::AuthRejectsValidTokens => "auth_rejects_valid_tokens",
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            Cause::ClockSkew | Cause::CertExpiring | Cause::JwksStale => "warning",
            _ => "critical",
        }
    }

    /// One line for a page title.
    pub fn summary(self) -> &'static str {
        match self {
            Cause::DnsResolverBroken => {
                "The container's DNS resolver fails for the Clerk names while public resolvers answer."
            }
            Cause::DnsNameMissing => "Every resolver answers NXDOMAIN for a Clerk name.",
            Cause::EgressBlocked => {
                "Clerk names resolve, but TCP connections to every Clerk host are refused or time out."
            }
            Cause::CaCertificatesMissing => {
                "TLS to Clerk fails because the local trust store lacks CA certificates."
            }
            Cause::TlsIntercepted => {
                "The certificate presented for Clerk verifies against no trusted root: TLS is intercepted."
            }
            Cause::ProxyMisconfigured => "The HTTP proxy refuses to tunnel to Clerk.",
            Cause::ClockSkew => "The local clock is off from Clerk's beyond the token tolerance.",
            Cause::ProviderOutage => "Clerk is reachable but failing (5xx or unhealthy).",
            Cause::SecretKeyInvalid => "Clerk's Backend API rejects the secret key.",
            Cause::JwksStale => "No successful JWKS fetch for longer than the allowed age.",
            Cause::JwksKeyMismatch => {
                "A live signing key is missing from the pinned copy, or grouped JWKS sources disagree."
            }
            Cause::ApiNetworkUnhealthy => {
                "The API's own network health check fails while authwatch reaches the same dependencies."
            }
            Cause::CertExpiring => "A certificate presented for a probed host expires soon.",
            Cause::AuthFailOpen => {
                "The API accepts requests with no token, a forged token or an expired token."
            }
            Cause::AuthRejectsValidTokens => "The API rejects a valid session token.",
        }
    }

    /// What to do about it, drawn from the outage that started this project.
    pub fn remediation(self) -> &'static str {
        match self {
            Cause::DnsResolverBroken => {
                "Give the service working DNS servers (docker-compose `dns: [8.8.8.8, 8.8.4.4]` or your internal resolvers), check the Docker daemon's DNS settings, or fix the resolver named in the container's /etc/resolv.conf."
            }
            Cause::DnsNameMissing => {
                "Check that the publishable key belongs to this environment (it encodes the Frontend API host) and that the clerk.<your-domain> CNAME exists in your DNS zone."
            }
            Cause::EgressBlocked => {
                "Allow outbound HTTPS (TCP 443) to Clerk in the firewall, security group or container network policy; use a custom bridge network, or host networking (network_mode: host) only as a last resort for testing."
            }
            Cause::CaCertificatesMissing => {
                "Install CA certificates in the image (apt-get install ca-certificates, apk add ca-certificates) or mount the host's bundle and point SSL_CERT_FILE at it."
            }
            Cause::TlsIntercepted => {
                "Exempt Clerk's domains from TLS inspection on the proxy or firewall, or add the intercepting proxy's CA to the image's trust store."
            }
            Cause::ProxyMisconfigured => {
                "Check HTTPS_PROXY/NO_PROXY and the proxy's allowlist and credentials for Clerk's domains; the Python SDK ignores HTTPS_PROXY for its JWKS fetch, so allow direct egress or pin the JWKS."
            }
            Cause::ClockSkew => {
                "Enable time synchronisation (chrony, systemd-timesyncd or NTP) on the host; containers share the host clock."
            }
            Cause::ProviderOutage => {
                "Check Clerk's status page; tokens keep verifying with cached keys, but new keys and sessions will not load until Clerk recovers."
            }
            Cause::SecretKeyInvalid => {
                "Set CLERK_SECRET_KEY to a current key of the same Clerk instance as the publishable key, then redeploy."
            }
            Cause::JwksStale => {
                "Restore connectivity to the JWKS endpoint; on networks that cannot reach Clerk, pin the JWKS (download it and configure it as a static key) and watch authwatch_jwks_pinned_missing_kids."
            }
            Cause::JwksKeyMismatch => {
                "Refresh the pinned JWKS from Clerk, and check that the publishable key and the secret key come from the same Clerk instance."
            }
            Cause::ApiNetworkUnhealthy => {
                "The fault is inside the API's container: compare its /etc/resolv.conf, CA certificates, proxy variables and network mode with authwatch's; run authwatch as a sidecar in the API's network namespace to see what it sees."
            }
            Cause::CertExpiring => {
                "Renew the certificate for your own domains; for Clerk's custom domain check that the CNAME still points to Clerk so it can renew."
            }
            Cause::AuthFailOpen => {
                "Make every protected route require a verified token: check that the auth dependency is applied to the route and that a verification error rejects the request instead of falling through; redeploy and watch authwatch_auth_fail_open."
            }
            Cause::AuthRejectsValidTokens => {
                "Check the API's Clerk settings (secret key, publishable key and JWKS URL of one instance, authorized parties), restart it to drop a JWKS cached before a key rotation, and check its clock; its logs say why verification failed."
            }
        }
    }
}
