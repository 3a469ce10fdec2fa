//! The traffic guard itself (SPEC §14): it counts and drops what a test subnet routes out of
//! an exit. Here the exit is a namespace's link, so nothing leaves the machine.

use crate::{
    require_docker,
    support::{
        docker::{Scratch, scratch_pool, unique},
        guard::TrafficGuard,
        netns::TestNamespace,
    },
};

#[test]
fn the_guard_counts_and_drops_what_a_test_subnet_routes_out_of_an_exit() {
    let docker = require_docker!();
    let scratch = Scratch::new(&docker);
    let network = scratch.network(&unique("guard"));
    let subnet = scratch_pool(26);
    scratch.docker(&["network", "create", "--subnet", &subnet, "--label", "agency.test=true", &network]);
    let container = scratch.server(&unique("guard"), &network, &[]);
    let outside = TestNamespace::new();
    let target = outside.address.to_string();
    let ping = || scratch.docker_status(&["exec", &container, "ping", "-c", "3", "-W", "1", &target]);

    let guard = TrafficGuard::counting_exits(std::slice::from_ref(&outside.host_link));
    assert!(!ping(), "the guard let a ping out of its exit");
    assert!(guard.leaked() >= 3, "the guard counted {} of 3 pings", guard.leaked());
    drop(guard);
    assert!(ping(), "without the guard the namespace answers, so the guard was what stopped it");
}
