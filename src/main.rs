// Status builds many small maps per client; mimalloc allocates them much faster than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(agency::run(std::env::args_os()));
}
