//! outpost-proto: the protobuf contract between `outpost-probe` and
//! `outpost-controller`. The package is versioned (`outpost.v1`) so a `v2`
//! can live beside it; read `proto/outpost/v1/probe.proto` first.

/// `outpost.v1`: one bidirectional stream per probe.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("outpost.v1");
}
