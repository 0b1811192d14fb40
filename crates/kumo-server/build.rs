//! Rebuilds when the dashboard's built assets change (new hashed files
//! included): `scripts/dashboard` writes them to `dashboard/dist`.

fn main() {
    println!("cargo:rerun-if-changed=../../dashboard/dist");
}
