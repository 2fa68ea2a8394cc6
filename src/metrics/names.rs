//! Every metric name casfront exports, in one place (the `/metrics` test
//! checks each of them). The registry adds `_total` to counters.

pub const REQUESTS: &str = "casfront_requests";
pub const FALLTHROUGHS: &str = "casfront_fallthroughs";
pub const UPSTREAM_DURATION: &str = "casfront_upstream_duration_seconds";
pub const UPSTREAM_FAILURES: &str = "casfront_upstream_failures";
pub const CLIENT_CONNECTIONS: &str = "casfront_client_connections";
pub const CLIENT_CONNECTIONS_PARKED: &str = "casfront_client_connections_parked";
pub const TLS_HANDSHAKE_FAILURES: &str = "casfront_tls_handshake_failures";
pub const NODE_STATE: &str = "casfront_node_state";
pub const LEARNED_ENTRIES: &str = "casfront_learned_entries";
pub const RELOADS: &str = "casfront_reloads";
pub const REFUSALS: &str = "casfront_refusals";
pub const CLIENT_CERTIFICATES: &str = "casfront_client_certificates";
pub const LOGIN_ATTEMPTS: &str = "casfront_login_attempts";
pub const DISCOVERY_FAILURES: &str = "casfront_discovery_failures";
pub const CERTIFICATE_EXPIRY: &str = "casfront_certificate_expiry_seconds";

/// Every name as it appears in the exposition (counters end in `_total`).
pub const ALL: [&str; 15] = [
    "casfront_requests_total",
    "casfront_fallthroughs_total",
    "casfront_upstream_duration_seconds",
    "casfront_upstream_failures_total",
    "casfront_client_connections",
    "casfront_client_connections_parked",
    "casfront_tls_handshake_failures_total",
    "casfront_node_state",
    "casfront_learned_entries",
    "casfront_reloads_total",
    "casfront_refusals_total",
    "casfront_client_certificates_total",
    "casfront_certificate_expiry_seconds",
    "casfront_login_attempts_total",
    "casfront_discovery_failures_total",
];
