//! The `tokenwarden` binary: hands the command line to [`tokenwarden::cli::run`].

fn main() -> std::process::ExitCode {
    tokenwarden::cli::run()
}
