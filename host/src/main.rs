fn main() -> std::process::ExitCode {
    velonotify::cli::main()
}
