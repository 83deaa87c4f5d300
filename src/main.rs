fn main() -> std::process::ExitCode {
    crm_username::cli::main()
}
