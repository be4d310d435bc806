//! Prints whether the fast path is available here (loads both programs: the verifier runs).
fn main() {
    match ipvlan_bpf::available() {
        Ok(a) => println!("available: {a:?}"),
        Err(e) => {
            println!("{e}");
            std::process::exit(1);
        }
    }
}
