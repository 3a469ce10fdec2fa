//! A single-node Swarm for one test: this engine made a Swarm manager advertising 127.0.0.1
//! (so no Swarm traffic leaves the host), left again when the guard drops, with the
//! `docker_gwbridge` network Swarm made. An engine already in a swarm is not ours to touch:
//! [`SingleNodeSwarm::init`] skips then.

use std::process::Command;

pub struct SingleNodeSwarm {
    gwbridge_existed: bool,
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("docker runs")
}

impl SingleNodeSwarm {
    /// `None` (with a loud SKIP) when the engine is in a swarm already or has no Docker.
    pub fn init(test: &str) -> Option<SingleNodeSwarm> {
        let state = Command::new("docker").args(["info", "--format", "{{.Swarm.LocalNodeState}}"]).output().ok()?;
        let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
        if state != "inactive" {
            super::loud_skip(&format!("{test}: the engine is already in a swarm ({state}); not touching it"));
            return None;
        }
        let gwbridge_existed = docker(&["network", "inspect", "docker_gwbridge"]).status.success();
        let out = docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        assert!(out.status.success(), "docker swarm init: {}", String::from_utf8_lossy(&out.stderr));
        Some(SingleNodeSwarm { gwbridge_existed })
    }
}

impl Drop for SingleNodeSwarm {
    fn drop(&mut self) {
        let _ = docker(&["swarm", "leave", "--force"]);
        if !self.gwbridge_existed {
            let _ = docker(&["network", "rm", "docker_gwbridge"]);
        }
    }
}
