//! Integration tests of `outpost-probe`: one test binary (one link) for the
//! crate, one module per concern, against real loopback servers from the test kit;
//! [`support`] builds and runs checks from TOML.

mod cli;
mod dns_check;
mod exporter;
mod flow_check;
mod grpc_check;
mod http_assertions;
mod http_check;
mod http_hostile;
mod http_redirect;
mod icmp_check;
mod outbox;
mod scheduler;
mod session_check;
mod support;
mod tcp_check;
mod telemetry;
mod tls_matrix;
