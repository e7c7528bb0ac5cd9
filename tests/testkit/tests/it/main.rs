//! Tests of the test kit's servers against real clients: one test binary
//! (one link) for the crate.

mod hostile;
mod http_tls;
mod pager;
mod tcp;
