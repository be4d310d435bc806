//! `ipvlan`: the ipvlan-rs command. This first version has one job, `ipvlan matrix`: it runs the
//! HOWTO's example through the core in memory and prints what every mode × flag does with each
//! frame. The daemon and the iproute2-style CLI come with the data plane.

mod matrix;

use std::process::ExitCode;

const USAGE: &str =
    "Usage: ipvlan matrix    print what each mode x flag does with the HOWTO example's frames";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["matrix"] => match matrix::render() {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ipvlan: {e}");
                ExitCode::FAILURE
            }
        },
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        [] => {
            eprintln!("{USAGE}");
            ExitCode::from(255)
        }
        [other, ..] => {
            eprintln!("ipvlan: unknown command \"{other}\"\n{USAGE}");
            ExitCode::from(255)
        }
    }
}
