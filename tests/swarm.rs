//! A client's stack on a Swarm (SPEC §10): with overlay networks on a Swarm manager,
//! deploy-client runs `docker stack deploy`. On a single-node Swarm this test makes (and
//! leaves), a busybox site stack's tasks run with the client's labels, limits, networks,
//! volume and secret; a second deploy changes nothing; stop-client removes the stack and keeps
//! the volume. Runs alone (dev.mk's QUIET_ENGINE_TESTS): it changes the engine's Swarm state.

use std::{
    fs,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    containers::{self, ClientNetworks, docker},
    stacks::{busybox_stack, inspect},
    support::swarm::SingleNodeSwarm,
    test::Site,
};

fn lines(out: std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

/// `<name> <replicas>` of the client's Swarm services, sorted.
fn services(id: &str) -> Vec<String> {
    let filter = format!("label=com.docker.stack.namespace={id}");
    let mut found = lines(docker(&["service", "ls", "--filter", &filter, "--format", "{{.Name}} {{.Replicas}}"]));
    found.sort();
    found
}

/// The running task containers of the client's stack: service name → container id.
fn tasks(id: &str) -> Vec<(String, String)> {
    let filter = format!("label=com.docker.stack.namespace={id}");
    let format = "{{.Label \"com.docker.swarm.service.name\"}} {{.ID}}";
    let mut found: Vec<(String, String)> =
        lines(docker(&["ps", "--no-trunc", "--filter", &filter, "--format", format]))
            .iter()
            .filter_map(|l| l.split_once(' ').map(|(s, c)| (s.to_string(), c.to_string())))
            .collect();
    found.sort();
    found
}

fn wait_until(what: &str, seconds: u64, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {seconds} s");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// On drop: the client's stack, its task containers, volumes and networks (all named or
/// labelled by the test's unique id), before the Swarm is left.
struct SwarmClient {
    id: String,
    _networks: ClientNetworks,
}

impl Drop for SwarmClient {
    fn drop(&mut self) {
        docker(&["stack", "rm", &self.id]);
        let filter = format!("label=com.docker.stack.namespace={}", self.id);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lines(docker(&["service", "ls", "-q", "--filter", &filter])).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        let containers = lines(docker(&["ps", "-aq", "--filter", &filter]));
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(containers.iter().map(String::as_str));
            docker(&args);
        }
        for volume in lines(docker(&["volume", "ls", "-q", "--filter", &format!("label=agency.client={}", self.id)])) {
            docker(&["volume", "rm", "-f", &volume]);
        }
    }
}

#[test]
fn a_site_stack_runs_as_a_swarm_stack_on_overlay_networks() {
    if !containers::engine_or_skip("swarm::site_stack") {
        return;
    }
    let Some(_swarm) = SingleNodeSwarm::init("swarm::site_stack") else { return };
    let site = Site::with_docker();
    // By its image ID: a Swarm task of an image named by tag asks the registry for it first
    // (docker.io here, a lookup off the machine), whatever `--resolve-image` says.
    let image_id = lines(docker(&["image", "inspect", "--format", "{{.Id}}", containers::busybox_image()]));
    let stack = busybox_stack().replace(containers::busybox_image(), &image_id[0]);
    site.site_file("stacks/bb/compose.yml", &stack);
    let id = containers::unique("sw");
    let _client = SwarmClient { id: id.clone(), _networks: ClientNetworks(vec![id.clone()]) };
    let (shim_dir, argv_log) = containers::docker_argv_shim(site.path());
    let path = format!("{}:{}", shim_dir.display(), std::env::var("PATH").unwrap());
    let run = |args: &[&str]| {
        let test = site.test().env("AGENCY_BACKUPS", "off").env("PATH", &path).args(args);
        test.run()
    };
    let id_arg = format!("CLIENT_ID={id}");
    run(&[
        "create-client",
        &id_arg,
        "CLIENT_NAME=Swarm Test",
        &format!("CLIENT_DOMAIN={id}.example.test"),
        "STACK=bb",
        "NETWORK_DRIVER=overlay",
        "CPU_LIMIT=0.5",
        "MEMORY_LIMIT=64m",
        "PIDS_LIMIT=100",
    ]);

    // A dry run names the Swarm command and starts nothing.
    let plan = run(&["-n", "deploy-client", &id_arg]);
    assert!(plan.stderr.contains("would run: docker stack deploy --prune --resolve-image never"), "{}", plan.stderr);
    assert!(services(&id).is_empty(), "a dry run deployed services");

    let first = run(&["--json", "deploy-client", &id_arg]).json();
    let changes = first["tasks"][0]["changes"].as_array().unwrap();
    let deployed = changes.iter().find(|c| c["action"] == "stack deploy").unwrap_or_else(|| panic!("{first:#}"));
    assert_eq!(deployed["outcome"], "created", "{deployed:#}");
    assert!(changes.iter().all(|c| c["action"] != "compose up"), "Compose ran on a Swarm: {first:#}");
    let expected = [format!("{id}_web 1/1"), format!("{id}_worker 1/1")];
    wait_until("both services run their task", 90, || services(&id) == expected);
    wait_until("both task containers run", 30, || tasks(&id).len() == 2);

    let password = fs::read_to_string(site.secrets_file(&id)).unwrap();
    let password =
        password.lines().find_map(|l| l.strip_prefix("DB_PASSWORD=")).unwrap().trim_matches('\'').to_string();
    let running = tasks(&id);
    for (service, container) in &running {
        let c = inspect(container);
        let labels = &c["Config"]["Labels"];
        assert_eq!(labels["agency.client"], id.as_str(), "{service}");
        assert_eq!(labels["agency.managed"], "true", "{service}");
        assert_eq!(labels["agency.stack"], "bb", "{service}");
        let host = &c["HostConfig"];
        assert_eq!(host["NanoCpus"], 500_000_000, "{service}");
        assert_eq!(host["Memory"], 64 * 1024 * 1024, "{service}");
        assert_eq!(host["PidsLimit"], 100, "{service}");
        assert_eq!(host["CapDrop"], json!(["CAP_NET_RAW"]), "{service}");
        assert_eq!(host["LogConfig"]["Config"]["tag"], format!("agency.{id}.{{{{.Name}}}}"), "{service}");
        let mut networks: Vec<&String> = c["NetworkSettings"]["Networks"].as_object().unwrap().keys().collect();
        networks.sort();
        let expected = if service.ends_with("_web") {
            [format!("{id}_backend"), format!("{id}_frontend")]
        } else {
            [format!("{id}_backend"), format!("{id}_database")]
        };
        assert_eq!(networks, expected.iter().collect::<Vec<_>>(), "{service}");
        let spec = inspect(service);
        assert_eq!(spec["Spec"]["Labels"]["agency.client"], id.as_str(), "{service}");
        assert_eq!(spec["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"], "any", "{service}");
        assert_eq!(spec["Spec"]["EndpointSpec"]["Mode"], "dnsrr", "{service}");
    }
    let web = &running.iter().find(|(s, _)| s.ends_with("_web")).unwrap().1;
    // The routed service answers at its alias on the frontend, where the ingress reaches it
    // (Swarm's name service learns new tasks within seconds).
    let url = format!("http://{id}-web:8080/");
    let network = format!("{id}_frontend");
    let fetch =
        || docker(&["run", "--rm", "--network", &network, containers::busybox_image(), "wget", "-q", "-O-", &url]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answer = fetch();
    while String::from_utf8_lossy(&answer.stdout).trim() != format!("hello {id}") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        answer = fetch();
    }
    assert_eq!(
        String::from_utf8_lossy(&answer.stdout).trim(),
        format!("hello {id}"),
        "{}",
        String::from_utf8_lossy(&answer.stderr)
    );
    // The secret reached the task through the CLI's environment, and no argument list.
    let out = docker(&["exec", web, "sh", "-c", "printf %s \"$SECRET\""]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), password);
    let argv = fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("stack deploy --prune --resolve-image never"), "{argv}");
    assert!(!argv.contains(&password), "a secret was in an argument list");
    for file in ["compose.yml", "docker-compose.override.yml", "client.env"] {
        assert!(!fs::read_to_string(site.client_dir(&id).join(file)).unwrap().contains(&password), "{file}");
    }
    let volume = docker(&["volume", "inspect", &format!("{id}_data")]);
    let volume: serde_json::Value = serde_json::from_slice(&volume.stdout).unwrap();
    assert_eq!(volume[0]["Labels"]["agency.client"], id.as_str(), "{volume:#}");
    docker(&["exec", web, "sh", "-c", "echo kept > /data/proof"]);

    // A second deploy: every step unchanged, the same tasks.
    let second = run(&["--json", "deploy-client", &id_arg]).json();
    for change in second["tasks"][0]["changes"].as_array().unwrap() {
        assert_eq!(change["outcome"], "unchanged", "{change:#}");
    }
    assert_eq!(tasks(&id), running, "the second deploy replaced tasks");

    // Status reads the services: running, limited; Swarm's missing no-new-privileges named.
    let status = run(&["--json", "multi-tenancy-status", &id_arg]).json();
    let checks = status["tasks"][0]["result"]["clients"][0]["checks"].as_array().unwrap().clone();
    let stack = checks.iter().find(|c| c["name"] == "stack").unwrap();
    assert_eq!(stack["status"], "warn", "{stack:#}");
    assert!(stack["summary"].as_str().unwrap().contains("no-new-privileges"), "{stack:#}");
    assert_eq!(stack["evidence"]["swarm_services"].as_array().map(Vec::len), Some(2), "{stack:#}");

    // stop-client removes the stack and keeps the volume; deploy-client brings the data back.
    let stopped = run(&["--json", "stop-client", &id_arg]).json();
    assert_eq!(stopped["tasks"][0]["result"]["stopped"], "removed", "{stopped:#}");
    assert!(services(&id).is_empty(), "stop-client left services");
    assert!(tasks(&id).is_empty(), "stop-client returned with task containers running");
    assert!(docker(&["volume", "inspect", &format!("{id}_data")]).status.success(), "the volume went");
    run(&["deploy-client", &id_arg]);
    wait_until("the web task runs again", 90, || tasks(&id).iter().any(|(s, _)| s.ends_with("_web")));
    let web = tasks(&id).into_iter().find(|(s, _)| s.ends_with("_web")).unwrap().1;
    let out = docker(&["exec", &web, "cat", "/data/proof"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "kept");
}
