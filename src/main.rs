//! The `mugaika` command line.
fn main() {}
