//! outpost-controller
