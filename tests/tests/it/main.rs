//! End-to-end tests: real probes and controllers (in process and as spawned
//! binaries) on loopback, one test binary (one link) for the crate.

mod auth;
mod backlog;
mod drain;
mod email;
mod kill_controller;
mod kill_probe;
mod mtls;
mod offline_cut;
mod otel;
mod pager_faults;
mod pipeline;
mod prometheus;
mod receivers;
mod replicas;
mod restart;
mod schema;
mod secrets;
mod session_never;
