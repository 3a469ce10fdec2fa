fn main() {
    std::process::exit(agency::run(std::env::args_os()));
}
