//! `sqlx::migrate!` embeds `migrations/sqlite/` at compile time; cargo does
//! not watch those files by itself, so a new or changed migration would
//! otherwise not rebuild the crate.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
