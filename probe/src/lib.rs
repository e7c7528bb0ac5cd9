//! outpost-probe: the agent that runs scripted checks and streams results to
//! the controller.
//!
//! Read in this order: [`check`] (the check schema shared with the
//! controller, failure codes, the one dispatch `match`), [`check::http`],
//! [`scheduler`], [`reporter`] (the gRPC stream), then [`run`] which wires them.

pub mod check;
pub mod config;
pub mod scheduler;
pub mod tls;
