//! The `postamt` binary.
fn main() {}
