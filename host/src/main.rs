fn main() {
    println!("gale {}", env!("CARGO_PKG_VERSION"));
}
