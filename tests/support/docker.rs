//! Real-engine test support: connecting (or skipping loudly), unique names, the busybox
//! image, and a scratch guard that removes what a test created, also when it fails.

use std::{
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use super::guard::TrafficGuard;
use agency::drivers::{
    docker::{self, Docker},
    process,
};

/// The image every real-engine test runs: `FROM scratch` + Debian's static busybox.
pub const TEST_IMAGE: &str = "agency-test-busybox:latest";

/// Label on everything the tests create, so a leftover can be told apart.
pub const TEST_LABEL: &str = "agency.test";

/// The engine, or `None` after a loud SKIP line when there is none. With `CI=true` a missing
/// engine fails the test instead.
pub fn docker_or_skip(test: &str) -> Option<Docker> {
    match Docker::connect() {
        Ok(docker) => Some(docker),
        Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: the Docker engine is required in CI: {error:#}")
        }
        Err(error) => {
            super::loud_skip(&format!("{test}: no usable Docker engine ({error:#})"));
            None
        }
    }
}

/// `let docker = require_docker!();` at the top of a real-engine test.
#[macro_export]
macro_rules! require_docker {
    () => {
        match $crate::support::docker::docker_or_skip(module_path!()) {
            Some(docker) => docker,
            None => return,
        }
    };
}

/// Builds [`TEST_IMAGE`] once per test process (threads wait for the first build; other
/// processes building the same tag at the same time are harmless) and returns its name.
pub fn busybox_image(docker: &Docker) -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let busybox = docker::find_static_busybox().map_err(|e| format!("{e:#}"))?;
        docker.build_busybox_image(TEST_IMAGE, &busybox).map(drop).map_err(|e| format!("{e:#}"))
    });
    if let Err(error) = result {
        panic!("could not build the test image {TEST_IMAGE}: {error}");
    }
    TEST_IMAGE
}

/// A name no other test (in this or another process) uses: `prefix` + pid + time + counter,
/// lowercase, valid as a client id.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}{:x}{:x}{}", std::process::id(), nanos % 0xffff, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A random-ish /N inside 10.224.0.0/11 for tests that need their own address range (the
/// allocator copes with a collision anyway).
pub fn scratch_pool(prefix: u8) -> String {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0) as u64
        ^ (u64::from(std::process::id()) << 20);
    let span = 1u64 << (prefix - 11);
    let index = (seed.wrapping_mul(6364136223846793005) >> 20) % span;
    let base = (10u32 << 24 | 224 << 16) + (index as u32) * (1u32 << (32 - prefix));
    format!("{}/{prefix}", std::net::Ipv4Addr::from(base))
}

/// Removes, when dropped, every container, network and volume registered with it, and fails
/// the test when a packet from the test subnets was routed off the machine meanwhile (its
/// [`TrafficGuard`] counts from `new` to drop).
pub struct Scratch {
    docker: Docker,
    guard: TrafficGuard,
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
}

impl Scratch {
    pub fn new(docker: &Docker) -> Self {
        Self {
            docker: docker.clone(),
            guard: TrafficGuard::start(),
            containers: Mutex::default(),
            networks: Mutex::default(),
            volumes: Mutex::default(),
        }
    }

    pub fn network(&self, name: &str) -> String {
        self.networks.lock().unwrap().push(name.to_string());
        name.to_string()
    }

    pub fn container(&self, name: &str) -> String {
        self.containers.lock().unwrap().push(name.to_string());
        name.to_string()
    }

    pub fn volume(&self, name: &str) -> String {
        self.volumes.lock().unwrap().push(name.to_string());
        name.to_string()
    }

    /// Runs `docker ARGS` (test plumbing: containers, connects) and panics with its stderr on
    /// failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let output = process::Command::new(self.docker.program()).args(args).output().unwrap();
        assert!(output.success(), "docker {} failed: {}", args.join(" "), output.stderr);
        output.stdout
    }

    /// Replaces a client's database network by one with the client's labels but without
    /// `--internal`: the drift an old or hand-made network leaves.
    pub fn recreate_database_network_not_internal(&self, client: &str) -> String {
        let database = format!("{client}_database");
        self.docker.remove_network(&database).unwrap();
        let client_label = format!("agency.client={client}");
        self.docker(&[
            "network",
            "create",
            "--label",
            "agency.managed=true",
            "--label",
            &client_label,
            "--label",
            "agency.tier=database",
            &database,
        ]);
        database
    }

    /// Starts a detached busybox container named `name` on `network` that answers TCP on
    /// port 80 and stays up; returns its name.
    pub fn server(&self, name: &str, network: &str, labels: &[(&str, &str)]) -> String {
        let image = busybox_image(&self.docker);
        self.container(name);
        let mut args = vec![
            "run".to_string(),
            "-d".into(),
            "--name".into(),
            name.into(),
            "--network".into(),
            network.into(),
            "--label".into(),
            format!("{TEST_LABEL}=true"),
        ];
        for (key, value) in labels {
            args.push("--label".into());
            args.push(format!("{key}={value}"));
        }
        args.extend([
            image.to_string(),
            "sh".into(),
            "-c".into(),
            "while true; do nc -l -p 80 -e echo hi; done".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.docker(&args);
        name.to_string()
    }

    /// The IPv4 address of `container` on `network`.
    pub fn address(&self, container: &str, network: &str) -> std::net::Ipv4Addr {
        let template = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        self.docker(&["inspect", "--format", &template, container]).trim().parse().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let program = self.docker.program().to_path_buf();
        let run = |args: Vec<String>| {
            let _ = process::Command::new(&program).args(args).output();
        };
        let containers = std::mem::take(&mut *self.containers.lock().unwrap_or_else(|e| e.into_inner()));
        if !containers.is_empty() {
            run([vec!["rm".to_string(), "-f".into(), "-v".into()], containers].concat());
        }
        let networks = std::mem::take(&mut *self.networks.lock().unwrap_or_else(|e| e.into_inner()));
        if !networks.is_empty() {
            run([vec!["network".to_string(), "rm".into()], networks].concat());
        }
        let volumes = std::mem::take(&mut *self.volumes.lock().unwrap_or_else(|e| e.into_inner()));
        if !volumes.is_empty() {
            run([vec!["volume".to_string(), "rm".into(), "-f".into()], volumes].concat());
        }
        if !std::thread::panicking() {
            self.guard.assert_nothing_left_the_host();
        }
    }
}

/// The four network names of a client.
pub fn client_networks(id: &str) -> [String; 4] {
    ["frontend", "backend", "database", "network"].map(|tier| format!("{id}_{tier}"))
}

impl Scratch {
    /// Registers a client's four networks (and nothing else) for removal.
    pub fn client(&self, id: &str) -> String {
        for name in client_networks(id) {
            self.network(&name);
        }
        id.to_string()
    }
}

/// A client's report in a status `--json` document.
pub fn report<'a>(json: &'a serde_json::Value, client: &str) -> &'a serde_json::Value {
    json["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["task"] == "multi-tenancy-status"))
        .and_then(|task| task["result"]["clients"].as_array())
        .and_then(|clients| clients.iter().find(|c| c["client"] == client))
        .unwrap_or_else(|| panic!("no report for {client} in {json:#}"))
}

/// One named check of a client report.
pub fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// Names of the checks of a report that have `status`.
pub fn checks_with(report: &serde_json::Value, status: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|checks| {
            checks.iter().filter(|c| c["status"] == status).map(|c| c["name"].as_str().unwrap().to_string()).collect()
        })
        .unwrap_or_default()
}

/// How many docker processes a status run reported starting.
pub fn docker_calls(json: &serde_json::Value) -> i64 {
    json["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["task"] == "multi-tenancy-status"))
        .and_then(|task| task["result"]["docker_calls"].as_i64())
        .unwrap_or_else(|| panic!("no docker_calls in {json:#}"))
}

impl Scratch {
    /// Runs `docker ARGS`; true when it exits 0 (for probing from the test itself).
    pub fn docker_status(&self, args: &[&str]) -> bool {
        process::Command::new(self.docker.program()).args(args).output().unwrap().success()
    }
}
