//! Test fixtures shared by the integration tests.

pub mod docker;
pub mod fake_keycloak;
pub mod guard;
pub mod netns;

/// Prints `*** SKIP what ***` so it is seen: straight to the process's stderr, past the test
/// harness's capture of `print!`/`eprint!` (which would hide it unless the test fails).
pub fn loud_skip(what: &str) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "\n*** SKIP {what} ***\n");
    let _ = stderr.flush();
}
pub mod state;
pub mod swarm;
