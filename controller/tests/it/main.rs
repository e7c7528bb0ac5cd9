//! Integration tests of `outpost-controller`: one test binary (one link) for
//! the crate. [`support`] starts controllers on loopback and speaks to them as
//! probes; every other module is one concern.

mod alerting;
mod auth;
mod browser;
mod certificates;
mod check_detail;
mod cli;
mod confirm;
mod dependencies;
mod escaping;
mod events;
mod flapping;
mod grafana;
mod groups;
mod heartbeat;
mod history;
mod http;
mod ingest;
mod limits;
mod offline;
mod private_files;
mod silences;
mod slowloris;
mod support;
mod transport;
