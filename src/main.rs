//! `lethe`: the thin binary. Everything else is in the library.

fn main() {
    std::process::exit(lethe::cli::main());
}
