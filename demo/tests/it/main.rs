//! Integration tests of `outpost-demo`, one test binary (one link) for the crate.

mod demo;
