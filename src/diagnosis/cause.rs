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
    NetworkDown,
    DnsEgressBlocked,
    CertInvalid,
    RateLimited,
    ResponseInvalid,
    EndpointRejected,
    ApiUnreachable,
    VerifierStalling,
    ProbeTokenUnavailable,
    LocalResourcesExhausted,
    CoverageMissing,
    SdkIgnoresProxy,
    SdkTrustMismatch,
    SystemTrustUnused,
}

impl Cause {
    pub const ALL: [Cause; 29] = [
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
        Cause::NetworkDown,
        Cause::DnsEgressBlocked,
        Cause::CertInvalid,
        Cause::RateLimited,
        Cause::ResponseInvalid,
        Cause::EndpointRejected,
        Cause::ApiUnreachable,
        Cause::VerifierStalling,
        Cause::ProbeTokenUnavailable,
        Cause::LocalResourcesExhausted,
        Cause::CoverageMissing,
        Cause::SdkIgnoresProxy,
        Cause::SdkTrustMismatch,
        Cause::SystemTrustUnused,
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
            Cause::NetworkDown => "network_down",
            Cause::DnsEgressBlocked => "dns_egress_blocked",
            Cause::CertInvalid => "cert_invalid",
            Cause::RateLimited => "rate_limited",
            Cause::ResponseInvalid => "response_invalid",
            Cause::EndpointRejected => "endpoint_rejected",
            Cause::ApiUnreachable => "api_unreachable",
            Cause::VerifierStalling => "verifier_stalling",
            Cause::ProbeTokenUnavailable => "probe_token_unavailable",
            Cause::LocalResourcesExhausted => "local_resources_exhausted",
            Cause::CoverageMissing => "coverage_missing",
            Cause::SdkIgnoresProxy => "sdk_ignores_proxy",
            Cause::SdkTrustMismatch => "sdk_trust_mismatch",
            Cause::SystemTrustUnused => "system_trust_unused",
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            Cause::ClockSkew
            | Cause::CertExpiring
            | Cause::JwksStale
            | Cause::ProbeTokenUnavailable
            | Cause::LocalResourcesExhausted
            | Cause::CoverageMissing
            | Cause::SystemTrustUnused => "warning",
            _ => "critical",
        }
    }

    /// A short human name, for headings (the runbooks in docs/runbooks/ are titled with it).
    pub fn title(self) -> &'static str {
        match self {
            Cause::DnsResolverBroken => "Container DNS resolver broken",
            Cause::DnsNameMissing => "Clerk name missing from DNS",
            Cause::EgressBlocked => "Outbound HTTPS to Clerk blocked",
            Cause::CaCertificatesMissing => "CA certificates missing",
            Cause::TlsIntercepted => "TLS to Clerk intercepted",
            Cause::ProxyMisconfigured => "HTTP proxy misconfigured",
            Cause::ClockSkew => "Clock skew",
            Cause::ProviderOutage => "Clerk outage",
            Cause::SecretKeyInvalid => "Secret key rejected",
            Cause::JwksStale => "JWKS stale",
            Cause::JwksKeyMismatch => "JWKS key mismatch",
            Cause::ApiNetworkUnhealthy => "API network unhealthy",
            Cause::CertExpiring => "Certificate expiring",
            Cause::AuthFailOpen => "API fails open",
            Cause::AuthRejectsValidTokens => "API rejects valid tokens",
            Cause::NetworkDown => "Network down",
            Cause::DnsEgressBlocked => "Outbound DNS blocked",
            Cause::CertInvalid => "Clerk certificate invalid",
            Cause::RateLimited => "Rate limited by Clerk",
            Cause::ResponseInvalid => "Invalid response from Clerk",
            Cause::EndpointRejected => "Clerk endpoint rejects the request",
            Cause::ApiUnreachable => "API unreachable",
            Cause::VerifierStalling => "Token verifier stalling",
            Cause::ProbeTokenUnavailable => "Probe token unavailable",
            Cause::LocalResourcesExhausted => "authwatch out of file descriptors or memory",
            Cause::CoverageMissing => "Coverage missing",
            Cause::SdkIgnoresProxy => "Clerk SDK ignores the proxy",
            Cause::SdkTrustMismatch => "Clerk SDK trust mismatch",
            Cause::SystemTrustUnused => "System trust store unused",
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
            Cause::NetworkDown => {
                "Nothing outside the container can be reached: there is no route to the resolvers or to Clerk."
            }
            Cause::DnsEgressBlocked => {
                "No resolver answers, neither the container's nor the public ones: DNS traffic out of the container is dropped."
            }
            Cause::CertInvalid => {
                "The certificate presented for a Clerk host is expired, not yet valid, or issued for another name."
            }
            Cause::RateLimited => {
                "Clerk answers 429 Too Many Requests: the instance's request budget is spent."
            }
            Cause::ResponseInvalid => {
                "A Clerk endpoint answers, but not with what Clerk sends: an HTML page from a captive portal or proxy, or a malformed or empty JWKS."
            }
            Cause::EndpointRejected => {
                "A Clerk endpoint answers with a client error (a 4xx other than 401, 403 and 429): the URL or the instance is wrong."
            }
            Cause::ApiUnreachable => {
                "authwatch cannot reach the API itself (name, connection or TLS to the API fail)."
            }
            Cause::VerifierStalling => {
                "The API's protected route hangs while Clerk answers: its token verifier is stuck, most likely retrying a JWKS fetch."
            }
            Cause::ProbeTokenUnavailable => {
                "authwatch cannot get a usable session token for its auth probe, so the valid-token check cannot run."
            }
            Cause::LocalResourcesExhausted => {
                "authwatch ran out of file descriptors or memory, so its failed connections say nothing about the network."
            }
            Cause::CoverageMissing => {
                "authwatch watches none of your Clerk instance or of your API: a healthy verdict would mean nothing."
            }
            Cause::SdkIgnoresProxy => {
                "The API's Clerk SDK ignores the proxy this network needs: its direct JWKS fetch fails while the same fetch through the proxy works."
            }
            Cause::SdkTrustMismatch => {
                "The API's Clerk SDK verifies against its own CA bundle, which lacks the root the system trust store has."
            }
            Cause::SystemTrustUnused => {
                "The system trust store does not verify Clerk, but the API's Clerk SDK uses its own bundle, which does: auth is not affected."
            }
        }
    }

    /// What to do about it, drawn from the outage that started this project. (One arm per
    /// cause: a table of texts, so longer than the usual function.)
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
            Cause::NetworkDown => {
                "Check the container's network: that it is attached to a network (docker network connect, network_mode), that its interface is up with a default route (ip route inside the container), and that the host itself is online."
            }
            Cause::DnsEgressBlocked => {
                "Allow outbound DNS (UDP and TCP port 53) from the container to its resolvers in the firewall, security group or network policy, or give the service a resolver it can reach (docker-compose `dns:` with your internal resolvers)."
            }
            Cause::CertInvalid => {
                "For a custom clerk.<your-domain>, check that its CNAME still points to Clerk (so Clerk can issue and renew the certificate) and that DNS answers for it are not redirected elsewhere; a certificate not yet valid usually means the local clock is behind."
            }
            Cause::RateLimited => {
                "Find what spends the Backend API budget (100 requests per 10 s on development instances, 1,000 on production, shared with your app): cache session and user lookups in the API, run the auth probe less often, or move to a production instance."
            }
            Cause::ResponseInvalid => {
                "Find what answers in Clerk's place (a captive portal, a proxy's error page, a wrong URL) and let the API reach Clerk directly; a malformed key set from Clerk itself is Clerk's to fix: check its status page."
            }
            Cause::EndpointRejected => {
                "Check the configured URLs and that the publishable key and secret key belong to the instance the API uses; a 404 on the JWKS path usually means a wrong Frontend API host or API URL."
            }
            Cause::ApiUnreachable => {
                "Check that the API is running and listening where authwatch expects it (app_api_url, the auth probe's url), and the network between them; a sidecar reaches it on localhost."
            }
            Cause::VerifierStalling => {
                "Check the API's own path to Clerk's JWKS: the proxy its SDK uses (the Python SDK ignores HTTPS_PROXY), the CA bundle it trusts (certifi in Python), and its egress; the Python SDK retries a failing fetch for minutes, so pin the JWKS or fix that path."
            }
            Cause::ProbeTokenUnavailable => {
                "This is authwatch's own credential, not the API's: renew the probe user's session and set auth.session_id, or fix token_file or token_command; check that the secret key and the publishable key are of the same instance."
            }
            Cause::LocalResourcesExhausted => {
                "Raise authwatch's open-files limit (ulimit -n, systemd LimitNOFILE, docker --ulimit nofile) or run fewer probes; compare process_open_fds with process_max_fds."
            }
            Cause::CoverageMissing => {
                "Give authwatch the settings the API has: CLERK_PUBLISHABLE_KEY (and CLERK_SECRET_KEY_FILE) for the Clerk instance, AUTHWATCH_API_URL for the API, or add jwks probes and probes with role api to the config."
            }
            Cause::SdkIgnoresProxy => {
                "The Python SDK builds its httpx client with an explicit transport, so HTTPS_PROXY and NO_PROXY do not apply to its JWKS fetch (Node's fetch ignores them too): allow the API direct egress to Clerk (api.clerk.com:443), or pin the JWKS so verification needs no fetch."
            }
            Cause::SdkTrustMismatch => {
                "Point the SDK at the system bundle (SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt for Python; NODE_EXTRA_CA_CERTS for Node), or add the (proxy's) CA to certifi's bundle."
            }
            Cause::SystemTrustUnused => {
                "Nothing to do for auth; install ca-certificates in the image if other clients in it need the system store."
            }
        }
    }
}
