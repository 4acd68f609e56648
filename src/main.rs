fn main() {
    println!("trunkline {}", env!("CARGO_PKG_VERSION"));
}
