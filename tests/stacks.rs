//! Stacks that run (SPEC §10): a site stack of busybox images deployed on the real engine with
//! the client's tiers, labels, limits, volumes and secrets; a second deploy recreating
//! nothing; stop-client keeping the data; the shared ingress routing each domain to its client.

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    compose::compose_tool,
    containers::{self, ClientNetworks, docker},
    test::Site,
};

/// The test's Traefik image (tests/images/build, which .ci/run calls).
pub const TRAEFIK_IMAGE: &str = "agency-test/traefik:v3";

/// A stack of two busybox services: `web` (frontend + backend, serving its client id and a
/// file of its volume on 8080) and `worker` (backend + database).
pub fn busybox_stack() -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo \\\"hello $$CLIENT\\\" > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n    labels:\n      agency.tiers: frontend,backend\n      agency.http.port: \"8080\"\n    environment:\n      CLIENT: ${{CLIENT_ID}}\n      SECRET: ${{DB_PASSWORD}}\n    volumes:\n      - data:/data\n  worker:\n    image: {image}\n    command: [\"sleep\", \"100000\"]\n    labels:\n      agency.tiers: backend,database\nvolumes:\n  data: {{}}\n",
        image = containers::busybox_image()
    )
}

/// Removes a client's stack containers, its volumes and (through [`ClientNetworks`]) its
/// networks on drop; all are named and labelled by the test's unique client id.
pub struct Deployed {
    ids: Vec<String>,
    _networks: ClientNetworks,
}

impl Deployed {
    pub fn new(ids: &[String]) -> Self {
        Self { ids: ids.to_vec(), _networks: ClientNetworks(ids.to_vec()) }
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        for id in &self.ids {
            let listed = docker(&["ps", "-aq", "--filter", &format!("label=com.docker.compose.project={id}")]);
            let containers: Vec<String> =
                String::from_utf8_lossy(&listed.stdout).split_whitespace().map(String::from).collect();
            if !containers.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(containers.iter().map(String::as_str));
                docker(&args);
            }
            let listed = docker(&["volume", "ls", "-q", "--filter", &format!("label=agency.client={id}")]);
            for volume in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                docker(&["volume", "rm", "-f", volume]);
            }
        }
    }
}

/// A container removed (`rm -f`) on drop.
pub struct Named(pub String);

impl Drop for Named {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.0]);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An HTTP/1.0 GET of 127.0.0.1:`port` with `Host: host`: (status, whole response).
pub fn get(port: u16, path: &str, host: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

/// Polls `get` until `done` holds for the answer (services and Traefik start asynchronously).
pub fn wait_for(port: u16, path: &str, host: &str, seconds: u64, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let answer = get(port, path, host);
        if let Some((status, body)) = &answer
            && done(*status, body)
        {
            return answer.unwrap();
        }
        assert!(Instant::now() < deadline, "GET {path} with Host {host} never answered as expected: {answer:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn inspect(container: &str) -> serde_json::Value {
    let out = docker(&["inspect", container]);
    assert!(out.status.success(), "inspect {container}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

/// The containers of the client's project, service name → container id.
pub fn project(id: &str) -> Vec<(String, String)> {
    let out = docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={id}"),
        "--format",
        "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
    ]);
    let mut found: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(s, c)| (s.to_string(), c.to_string())))
        .collect();
    found.sort();
    found
}

fn secret(site: &Site, id: &str, key: &str) -> String {
    let text = fs::read_to_string(site.secrets_file(id)).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{key}="))).unwrap();
    line.split_once('=').unwrap().1.trim_matches('\'').to_string()
}

/// A directory with a `docker-compose` that logs its arguments to `log`, then runs the real one.
fn compose_argv_shim(dir: &Path, log: &Path) {
    let Some(real) = containers::which("docker-compose") else { return };
    let shim = dir.join("docker-compose");
    fs::write(
        &shim,
        format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n", log.display(), real.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
}

fn ready(test: &str) -> bool {
    if !containers::engine_or_skip(test) {
        return false;
    }
    if compose_tool().is_none() {
        return containers::skip(test, "neither `docker compose` nor `docker-compose` is installed");
    }
    true
}

#[test]
fn a_site_stack_deploys_with_tiers_labels_limits_volumes_and_secrets_and_redeploys_nothing() {
    if !ready("stacks::site_stack_deploys") {
        return;
    }
    let site = Site::with_docker();
    site.site_file("stacks/bb/compose.yml", &busybox_stack());
    let id = containers::unique("sk");
    let _cleanup = Deployed::new(std::slice::from_ref(&id));
    let (shim_dir, argv_log) = containers::docker_argv_shim(site.path());
    compose_argv_shim(&shim_dir, &argv_log);
    let path = format!("{}:{}", shim_dir.display(), std::env::var("PATH").unwrap());
    let run = |args: &[&str]| {
        let test = site.test().env("AGENCY_BACKUPS", "off").env("PATH", &path).args(args);
        test.run()
    };
    run(&[
        "create-client",
        &format!("CLIENT_ID={id}"),
        "CLIENT_NAME=Stack Test",
        &format!("CLIENT_DOMAIN={id}.example.test"),
        "STACK=bb",
        "CPU_LIMIT=0.5",
        "MEMORY_LIMIT=64m",
        "PIDS_LIMIT=100",
    ]);
    let env = fs::read_to_string(site.client_dir(&id).join("client.env")).unwrap();
    for line in ["STACK='bb'", "CPU_LIMIT='0.5'", "MEMORY_LIMIT='64m'", "PIDS_LIMIT='100'"] {
        assert!(env.contains(line), "client.env lacks {line}:\n{env}");
    }

    // A dry run names the Compose command and changes nothing.
    let plan = site
        .test()
        .env("AGENCY_BACKUPS", "off")
        .env("PATH", &path)
        .args(["-n", "deploy-client", &format!("CLIENT_ID={id}")])
        .run();
    assert!(plan.stderr.contains("would run: docker"), "{}", plan.stderr);
    assert!(plan.stderr.contains("up -d --remove-orphans"), "{}", plan.stderr);
    assert!(project(&id).is_empty(), "a dry run started containers");
    let first = run(&["--json", "deploy-client", &format!("CLIENT_ID={id}")]).json();
    let changes = first["tasks"][0]["changes"].as_array().unwrap();
    let up = changes.iter().find(|c| c["action"] == "compose up").unwrap();
    assert_eq!(up["outcome"], "created", "{up:#}");
    let services = project(&id);
    assert_eq!(services.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["web", "worker"]);

    let password = secret(&site, &id, "DB_PASSWORD");
    for (service, container) in &services {
        let c = inspect(container);
        assert_eq!(c["State"]["Status"], "running", "{service}: {:#}", c["State"]);
        let labels = &c["Config"]["Labels"];
        assert_eq!(labels["agency.client"], id.as_str());
        assert_eq!(labels["agency.managed"], "true");
        assert_eq!(labels["agency.stack"], "bb");
        let host = &c["HostConfig"];
        assert_eq!(host["NanoCpus"], 500_000_000, "{service}");
        assert_eq!(host["Memory"], 64 * 1024 * 1024, "{service}");
        assert_eq!(host["PidsLimit"], 100, "{service}");
        assert_eq!(host["CapDrop"], serde_json::json!(["NET_RAW"]), "{service}");
        assert_eq!(host["SecurityOpt"], serde_json::json!(["no-new-privileges:true"]), "{service}");
        assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped", "{service}");
        assert_eq!(host["LogConfig"]["Config"]["tag"], format!("agency.{id}.{{{{.Name}}}}"), "{service}");
        let mut networks: Vec<&String> = c["NetworkSettings"]["Networks"].as_object().unwrap().keys().collect();
        networks.sort();
        let expected = match service.as_str() {
            "web" => [format!("{id}_backend"), format!("{id}_frontend")],
            _ => [format!("{id}_backend"), format!("{id}_database")],
        };
        assert_eq!(networks, expected.iter().collect::<Vec<_>>(), "{service}");
        if service == "web" {
            let aliases = &c["NetworkSettings"]["Networks"][format!("{id}_frontend")]["Aliases"];
            assert!(aliases.as_array().unwrap().iter().any(|a| a == &format!("{id}-web")), "{aliases}");
            // The secret reached the service through Compose's environment ...
            let out = docker(&["exec", container, "sh", "-c", "printf %s \"$SECRET\""]);
            assert_eq!(String::from_utf8_lossy(&out.stdout), password);
            docker(&["exec", container, "sh", "-c", "echo kept > /data/proof"]);
        }
    }
    // ... and nowhere else: not in a file agency wrote, not in an argument list.
    for file in ["compose.yml", "docker-compose.override.yml", "client.env", "traefik.yml"] {
        let text = fs::read_to_string(site.client_dir(&id).join(file)).unwrap();
        assert!(!text.contains(&password), "{file} holds the secret");
    }
    let argv = fs::read_to_string(&argv_log).unwrap_or_default();
    assert!(argv.contains("up -d --remove-orphans"), "compose ran through the shims: {argv}");
    assert!(!argv.contains(&password), "a secret was in an argument list");
    let volume = docker(&["volume", "inspect", &format!("{id}_data")]);
    let volume: serde_json::Value = serde_json::from_slice(&volume.stdout).unwrap();
    assert_eq!(volume[0]["Labels"]["agency.client"], id.as_str(), "{volume:#}");

    // A second deploy: every step unchanged, the same containers.
    let second = run(&["--json", "deploy-client", &format!("CLIENT_ID={id}")]).json();
    for change in second["tasks"][0]["changes"].as_array().unwrap() {
        assert_eq!(change["outcome"], "unchanged", "{change:#}");
    }
    assert_eq!(project(&id), services, "the second deploy recreated containers");

    // Status sees the stack running, limited and hardened.
    let status = run(&["--json", "multi-tenancy-status", &format!("CLIENT_ID={id}")]).json();
    let checks = status["tasks"][0]["result"]["clients"][0]["checks"].as_array().unwrap().clone();
    let stack = checks.iter().find(|c| c["name"] == "stack").unwrap();
    assert_eq!(stack["status"], "ok", "{stack:#}");
    let listed = run(&["list-clients"]);
    assert!(listed.stdout.lines().any(|l| l.starts_with(&id) && l.ends_with("running")), "{}", listed.stdout);

    // stop-client removes the containers and keeps the volume; deploy-client brings the data back.
    run(&["stop-client", &format!("CLIENT_ID={id}")]);
    assert!(project(&id).is_empty(), "stop-client left containers");
    assert!(docker(&["volume", "inspect", &format!("{id}_data")]).status.success(), "the volume went");
    let listed = run(&["list-clients"]);
    assert!(listed.stdout.lines().any(|l| l.starts_with(&id) && l.ends_with("not deployed")), "{}", listed.stdout);
    run(&["deploy-client", &format!("CLIENT_ID={id}")]);
    let web = project(&id).into_iter().find(|(s, _)| s == "web").unwrap().1;
    let out = docker(&["exec", &web, "cat", "/data/proof"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "kept");

    // A container that lost its hardening is a failing status check (exit 1).
    docker(&["update", "--pids-limit", "4000", &web]);
    let output = site
        .test()
        .env("AGENCY_BACKUPS", "off")
        .args(["multi-tenancy-status", &format!("CLIENT_ID={id}")])
        .status(1)
        .run();
    assert!(output.stdout.contains("without the client's limits"), "{}", output.stdout);
}

#[test]
fn a_stack_that_would_break_isolation_is_refused_before_anything_changes() {
    let site = Site::new();
    site.site_file(
        "stacks/open/compose.yml",
        "services:\n  web:\n    image: x\n    labels:\n      agency.tiers: frontend\n      agency.http.port: \"80\"\n    ports: [\"80:80\"]\n",
    );
    site.test()
        .args([
            "create-client",
            "CLIENT_ID=openco",
            "CLIENT_NAME=Open",
            "CLIENT_DOMAIN=open.example.test",
            "STACK=open",
        ])
        .status(1)
        .stderr_contains("service web: `ports` is not allowed")
        .run();
    assert!(!site.client_dir("openco").exists(), "a refused stack still created the client");
    site.test()
        .args(["create-client", "CLIENT_ID=nostack", "CLIENT_NAME=N", "CLIENT_DOMAIN=n.example.test", "STACK=nope"])
        .status(1)
        .stderr_contains("no stack \"nope\"")
        .run();
}

#[test]
fn a_domain_belongs_to_one_client() {
    let site = Site::new();
    site.test()
        .env("AGENCY_BACKUPS", "off")
        .args(["create-client", "CLIENT_ID=first", "CLIENT_NAME=F", "CLIENT_DOMAIN=shop.example.test", "STACK=static"])
        .run();
    site.test()
        .env("AGENCY_BACKUPS", "off")
        .args(["create-client", "CLIENT_ID=second", "CLIENT_NAME=S", "CLIENT_DOMAIN=shop.example.test"])
        .status(1)
        .stderr_contains("CLIENT_DOMAIN shop.example.test belongs to client first")
        .run();
    assert!(!site.client_dir("second").exists());
    // Its own domain again is fine (a re-run).
    site.test()
        .env("AGENCY_BACKUPS", "off")
        .args(["create-client", "CLIENT_ID=first", "CLIENT_NAME=F", "CLIENT_DOMAIN=shop.example.test"])
        .run();
}

#[test]
fn the_ingress_routes_each_domain_to_its_own_client() {
    if !ready("stacks::ingress_routes") {
        return;
    }
    if !docker(&["image", "inspect", TRAEFIK_IMAGE]).status.success() {
        containers::skip("stacks::ingress_routes", &format!("no image {TRAEFIK_IMAGE}; run tests/images/build"));
        return;
    }
    let site = Site::with_docker();
    site.site_file("stacks/bb/compose.yml", &busybox_stack());
    let ids = [containers::unique("ia"), containers::unique("ib")];
    let _cleanup = Deployed::new(&ids);
    let ingress = Named(containers::unique("agency-test-ingress-"));
    let port = free_port().to_string();
    let run = |args: &[&str]| {
        let test = site
            .test()
            .env("AGENCY_BACKUPS", "off")
            .env("INGRESS_NAME", &ingress.0)
            .env("INGRESS_IMAGE", TRAEFIK_IMAGE)
            .env("INGRESS_BIND", "127.0.0.1")
            .env("INGRESS_HTTP_PORT", &port)
            .args(args);
        test.run()
    };
    // The first client is deployed before the ingress runs, the second after.
    let id_arg = |id: &str| format!("CLIENT_ID={id}");
    for id in &ids {
        run(&[
            "create-client",
            &id_arg(id),
            "CLIENT_NAME=Routed",
            &format!("CLIENT_DOMAIN={id}.example.test"),
            "STACK=bb",
        ]);
    }
    run(&["deploy-client", &id_arg(&ids[0])]);
    let setup = run(&["--json", "setup-ingress"]).json();
    assert_eq!(setup["tasks"][0]["result"]["outcome"], "created", "{setup:#}");
    run(&["deploy-client", &id_arg(&ids[1])]);
    let port: u16 = port.parse().unwrap();
    for id in &ids {
        let (_, response) = wait_for(port, "/", &format!("{id}.example.test"), 60, |status, _| status == 200);
        assert!(response.contains(&format!("hello {id}")), "{response}");
        assert!(response.contains(&format!("X-Agency-Client: {id}")), "{response}");
    }
    let (status, _) = get(port, "/", "unknown.example.test").unwrap();
    assert_eq!(status, 404, "a domain no client has is not routed");

    // A second setup changes nothing; the ingress is on both frontends and nothing else of theirs.
    let again = run(&["--json", "setup-ingress"]).json();
    for change in again["tasks"][0]["changes"].as_array().unwrap() {
        assert_eq!(change["outcome"], "unchanged", "{change:#}");
    }
    let c = inspect(&ingress.0);
    let networks: Vec<&String> = c["NetworkSettings"]["Networks"].as_object().unwrap().keys().collect();
    for id in &ids {
        assert!(networks.contains(&&format!("{id}_frontend")), "{networks:?}");
        assert!(!networks.contains(&&format!("{id}_backend")), "{networks:?}");
    }
    // Status accepts the shared ingress on the frontends.
    for id in &ids {
        let status = run(&["--json", "multi-tenancy-status", &id_arg(id)]).json();
        assert_eq!(status["tasks"][0]["result"]["ok"], true, "{status:#}");
    }
    // The JSON access log names the host of each request.
    let log = site.log_root().join("ingress/access.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&log).unwrap_or_default().contains(&format!("{}.example.test", ids[1])) {
        assert!(Instant::now() < deadline, "no access log line in {}", log.display());
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(line["RequestHost"].is_string(), "{line:#}");

    // delete-client unroutes the domain and disconnects the ingress.
    site.test()
        .env("AGENCY_BACKUPS", "off")
        .env("INGRESS_NAME", &ingress.0)
        .args(["--yes", "delete-client", &id_arg(&ids[0])])
        .run();
    assert!(!site.root().join(format!("ingress/dynamic/{}.yml", ids[0])).exists());
    wait_for(port, "/", &format!("{}.example.test", ids[0]), 20, |status, _| status == 404);
    assert!(project(&ids[0]).is_empty(), "delete-client left the stack's containers");
}
