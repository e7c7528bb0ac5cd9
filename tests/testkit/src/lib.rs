//! outpost-testkit
