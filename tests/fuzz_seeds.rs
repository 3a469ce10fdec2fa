//! Replays every saved fuzz input (seeds and crash reproducers under fuzz/seeds/<target>/)
//! through the same checks the fuzz targets run, so a defect once found stays covered.

#[path = "../fuzz/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        check(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", dir.display());
}

#[test]
fn taskfile_seeds() {
    replay("taskfile", checks::taskfile);
}

#[test]
fn assignments_seeds() {
    replay("assignments", checks::assignments);
}

#[test]
fn envfile_round_trip_seeds() {
    replay("envfile_round_trip", checks::envfile_round_trip);
}

#[test]
fn validators_seeds() {
    replay("validators", checks::validators);
}

#[test]
fn yaml_round_trip_seeds() {
    replay("yaml_round_trip", checks::yaml_round_trip);
}
