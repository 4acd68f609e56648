//! Placeholder: filled by the component's owner.
fn main() {}
