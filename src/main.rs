//! The `twtune` binary: all the work is in the library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(twtune::run(std::env::args_os()))
}
