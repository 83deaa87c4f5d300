// mimalloc: loading and indexing an org allocates millions of small strings; it is
// markedly faster at that than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    crm_username::cli::main()
}
