//! The `herald` binary. Only a placeholder until the binary's issue is taken: it says so and
//! exits with the "runtime failure" code.

fn main() -> std::process::ExitCode {
    eprintln!("herald: the command-line interface is not built yet");
    std::process::ExitCode::from(1)
}
