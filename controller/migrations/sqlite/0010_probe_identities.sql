-- outpost controller schema v10: per-probe mutual TLS identities (controller/src/identity.rs).
-- enrollment_tokens: one-time tokens printed by `outpost-controller probe enroll`; only the
-- SHA-256 of the token is stored. used_ms is set, with the certificate row, in one transaction.
-- probe_certificates: every client certificate the probe CA issued; a verified peer
-- certificate is mapped to its probe by serial here, and refused once revoked_ms is set;
-- cert_pem (public) feeds the certificate inventory and its expiry alerts.
CREATE TABLE enrollment_tokens (
    token_hash TEXT PRIMARY KEY,
    probe TEXT NOT NULL,
    region TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms BIGINT
);
CREATE TABLE probe_certificates (
    serial TEXT PRIMARY KEY,
    probe TEXT NOT NULL,
    region TEXT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    not_after_ms BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    issued_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE INDEX probe_certificates_by_probe ON probe_certificates (probe, issued_ms);
