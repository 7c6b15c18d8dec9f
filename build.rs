//! Rebuilds the crate when a migration is added or changed: `sqlx::migrate!`
//! embeds `migrations/` at compile time, and cargo does not watch that
//! folder by itself (the sqlx documentation asks for this script).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
