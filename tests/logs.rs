//! Log collection (SPEC §12, issue 20) with real containers behind the real Traefik ingress:
//! two clients, requests through the ingress, collect-logs splitting the ingress's access log
//! by client and each client's containers' stderr into its error.log; exact across a second
//! collect, a rotation of the source, a rotation of the client's files, a restart, a stop and
//! a re-deploy of the stack, and kills during a collect.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    containers::{self, docker},
    stacks::{Deployed, Named, TRAEFIK_IMAGE, free_port, get, project, wait_for},
    support::docker::Scratch,
    test::{Output, Site},
};

/// `web` writes one stderr line when it starts and serves its client id; `worker` writes one
/// line to stderr and one to stdout (not error output) each time it starts.
fn noisy_stack() -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    command: [\"sh\", \"-c\", \"echo \\\"web of $$CLIENT failing: boom\\\" >&2; mkdir -p /www && echo \\\"hello $$CLIENT\\\" > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n    labels:\n      agency.tiers: frontend\n      agency.http.port: \"8080\"\n    environment:\n      CLIENT: ${{CLIENT_ID}}\n  worker:\n    image: {image}\n    command: [\"sh\", \"-c\", \"echo \\\"worker of $$CLIENT stderr\\\" >&2; echo \\\"worker of $$CLIENT stdout\\\"; exec sleep 100000\"]\n    labels:\n      agency.tiers: backend\n    environment:\n      CLIENT: ${{CLIENT_ID}}\n",
        image = containers::busybox_image()
    )
}

/// Two deployed clients behind a running ingress, everything removed on drop.
struct Fixture {
    site: Site,
    ids: [String; 2],
    port: u16,
    ingress: Named,
    _deployed: Deployed,
    _scratch: Scratch,
}

impl Fixture {
    fn new(test: &str) -> Option<Self> {
        let engine = crate::support::docker::docker_or_skip(test)?;
        if crate::compose::compose_tool().is_none() {
            containers::skip(test, "neither `docker compose` nor `docker-compose` is installed");
            return None;
        }
        if !docker(&["image", "inspect", TRAEFIK_IMAGE]).status.success() {
            containers::skip(test, &format!("no image {TRAEFIK_IMAGE}; run tests/images/build"));
            return None;
        }
        let scratch = Scratch::new(&engine);
        let site = Site::with_docker();
        site.site_file("stacks/noisy/compose.yml", &noisy_stack());
        let ids = [containers::unique("la"), containers::unique("lb")];
        let fixture = Fixture {
            site,
            port: free_port(),
            ingress: Named(containers::unique("agency-test-ingress-")),
            _deployed: Deployed::new(&ids),
            ids,
            _scratch: scratch,
        };
        for id in &fixture.ids {
            fixture.run(&[
                "create-client",
                &format!("CLIENT_ID={id}"),
                "CLIENT_NAME=Logged",
                &format!("CLIENT_DOMAIN={}", domain(id)),
                "STACK=noisy",
            ]);
            fixture.run(&["deploy-client", &format!("CLIENT_ID={id}")]);
        }
        fixture.run(&["setup-ingress"]);
        // Traefik and the stacks start asynchronously; on a loaded CI machine that took over a minute.
        for id in &fixture.ids {
            wait_for(fixture.port, "/", &domain(id), 180, |status, body| status == 200 && body.contains("hello"));
        }
        Some(fixture)
    }

    fn test(&self) -> crate::test::Test<'_> {
        self.site
            .test()
            .env("AGENCY_BACKUPS", "off")
            .env("INGRESS_NAME", &self.ingress.0)
            .env("INGRESS_IMAGE", TRAEFIK_IMAGE)
            .env("INGRESS_BIND", "127.0.0.1")
            .env("INGRESS_HTTP_PORT", &self.port.to_string())
    }

    fn run(&self, args: &[&str]) -> Output {
        let test = self.test().args(args);
        test.run()
    }

    /// One collect-logs; its result.
    fn collect(&self) -> serde_json::Value {
        self.run(&["--json", "collect-logs"]).json()["tasks"][0]["result"].clone()
    }

    fn log(&self, id: &str, name: &str) -> PathBuf {
        self.site.log_root().join("clients").join(id).join(name)
    }

    fn source(&self) -> PathBuf {
        self.site.log_root().join("ingress/access.json")
    }

    /// GETs `/<batch>-<i>` for i in 0..n on the client's domain, then waits until the ingress
    /// has logged the last one; the paths requested, in order. A request the ingress answers
    /// with a 5xx (its upstream not answering in time on a loaded machine) is logged too, and
    /// sent again: it is in the list as often as it was sent.
    fn requests(&self, id: &str, batch: &str, n: usize) -> Vec<String> {
        let mut sent = Vec::new();
        for i in 0..n {
            let path = format!("/{batch}-{i}");
            for attempt in 0.. {
                let answer = get(self.port, &path, &domain(id));
                sent.push(path.clone());
                match answer {
                    // busybox httpd answers a missing page with 404, through the client's router.
                    Some((404, _)) => break,
                    other => assert!(attempt < 5, "GET {path} on {id}: {other:?}"),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.wait_logged(&format!("\"/{batch}-{}\"", n - 1));
        sent
    }

    /// Waits until the ingress's access log (or its rotated copy) holds `needle`.
    fn wait_logged(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = [self.source(), rotated(&self.source())]
                .iter()
                .map(|p| fs::read_to_string(p).unwrap_or_default())
                .collect::<String>();
            if text.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "the ingress never logged {needle}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn domain(id: &str) -> String {
    format!("{id}.example.test")
}

fn rotated(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.1", path.display()))
}

fn lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "{} ends in the middle of a line", path.display());
    text.lines().map(String::from).collect()
}

/// The request paths of an access.log's lines (the fourth field), checking each line has the
/// documented eight fields and the client's host.
fn paths(lines: &[String], host: &str) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.len(), 8, "not time method host path status duration client bytes: {line}");
            assert_eq!(fields[2], host, "a line of another host: {line}");
            assert!(fields[5].ends_with("ms"), "{line}");
            fields[3].to_string()
        })
        .collect()
}

fn with_prefix(paths: &[String], prefix: &str) -> Vec<String> {
    paths.iter().filter(|p| p.starts_with(prefix)).cloned().collect()
}

/// The logrotate policy `name` in the site's LOGROTATE_DIR: accepted by `logrotate -d` (no
/// `error:`, every file of it considered), then forced (`logrotate -f`), with a state file of
/// the test's own.
fn logrotate(site: &Site, name: &str, files: &[PathBuf]) {
    let Some(program) = containers::which("logrotate") else {
        panic!("logrotate is not installed (apt-get install logrotate)");
    };
    for mode in ["-d", "-f"] {
        let out = Command::new(&program)
            .arg(mode)
            .arg("-s")
            .arg(site.path().join("logrotate.state"))
            .arg(site.logrotate_dir().join(name))
            .output()
            .unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && !all.contains("error:"), "logrotate {mode} {name}: {all}");
        if mode == "-d" {
            for file in files {
                assert!(all.contains(&format!("considering log {}", file.display())), "{name} lacks {file:?}: {all}");
            }
        }
    }
}

fn count(lines: &[String], text: &str) -> usize {
    lines.iter().filter(|l| l.contains(text)).count()
}

#[test]
fn each_clients_requests_and_errors_reach_its_own_logs_exactly_once() {
    let Some(f) = Fixture::new("logs::each_clients_requests") else { return };
    let [a, b] = [&f.ids[0], &f.ids[1]];
    let (status, _) = get(f.port, "/", "nobody.example.test").unwrap();
    assert_eq!(status, 404);
    f.wait_logged("nobody.example.test");
    // What the readiness polls logged, collected first.
    f.collect();
    let before = [lines(&f.log(a, "access.log")).len(), lines(&f.log(b, "access.log")).len()];

    // 50 requests to each domain: each client's access.log gains exactly its own 50.
    let sent = [f.requests(a, "n0", 50), f.requests(b, "n0", 50)];
    let result = f.collect();
    assert_eq!(result["access"][a], sent[0].len(), "{result:#}");
    assert_eq!(result["access"][b], sent[1].len(), "{result:#}");
    for (index, id) in [a, b].into_iter().enumerate() {
        let all = lines(&f.log(id, "access.log"));
        let new = paths(&all[before[index]..], &domain(id));
        assert_eq!(new, sent[index], "{id}'s access.log");
        paths(&all, &domain(id));
    }
    let unrouted = lines(&f.site.log_root().join("ingress/unrouted.log"));
    assert!(unrouted.iter().any(|l| l.contains(" nobody.example.test / 404 ")), "{unrouted:#?}");
    for id in [a, b] {
        assert!(!fs::read_to_string(f.log(id, "access.log")).unwrap().contains("nobody"), "an unknown host in {id}'s");
    }

    // stderr: each service's line in its own client's error.log, tagged; stdout is not there.
    for (id, other) in [(a, b), (b, a)] {
        let errors = lines(&f.log(id, "error.log"));
        assert_eq!(count(&errors, &format!(" web web of {id} failing: boom")), 1, "{errors:#?}");
        assert_eq!(count(&errors, &format!(" worker worker of {id} stderr")), 1, "{errors:#?}");
        assert_eq!(count(&errors, "stdout"), 0, "stdout is not error output: {errors:#?}");
        assert_eq!(count(&errors, other.as_str()), 0, "{other}'s lines in {id}'s error.log: {errors:#?}");
        assert!(errors.iter().all(|l| l.split(' ').next().unwrap().ends_with('Z')), "{errors:#?}");
    }

    // A second collect adds nothing.
    let sizes = |f: &Fixture| -> Vec<u64> {
        [a, b]
            .iter()
            .flat_map(|id| ["access.log", "error.log"].map(|n| fs::metadata(f.log(id, n)).unwrap().len()))
            .collect()
    };
    let sizes_before = sizes(&f);
    let again = f.collect();
    assert_eq!(again["access"], serde_json::json!({}), "{again:#}");
    assert_eq!(again["errors"], serde_json::json!({}), "{again:#}");
    assert_eq!(sizes(&f), sizes_before);

    // The source rotated between two collects (the ingress's own logrotate policy, which
    // renames access.json and signals Traefik to reopen it): nothing lost, nothing doubled.
    let mut rotation = f.requests(a, "r1", 20);
    logrotate(&f.site, "agency_stack_ingress", &[f.source(), f.site.log_root().join("ingress/unrouted.log")]);
    assert!(rotated(&f.source()).exists(), "logrotate did not rotate access.json");
    rotation.extend(f.requests(a, "r2", 20));
    assert!(fs::read_to_string(f.source()).unwrap().contains("\"/r2-19\""), "Traefik did not reopen access.json");
    let result = f.collect();
    assert_eq!(result["access"][a], rotation.len(), "{result:#}");
    assert_eq!(result["lost"], serde_json::json!([]), "{result:#}");
    let all = paths(&lines(&f.log(a, "access.log")), &domain(a));
    assert_eq!(with_prefix(&all, "/r"), rotation);

    // The client's own files rotated (its policy, setup-log-segmentation's): the new
    // access.log gets only what is new; the old lines and the new ones, each once.
    logrotate(&f.site, &format!("agency_stack-{a}"), &[f.log(a, "access.log"), f.log(a, "error.log")]);
    let after_rotation = f.requests(a, "c1", 10);
    f.collect();
    let current = paths(&lines(&f.log(a, "access.log")), &domain(a));
    assert_eq!(current, after_rotation);
    let mut whole = paths(&lines(&rotated(&f.log(a, "access.log"))), &domain(a));
    whole.extend(current);
    assert_eq!(with_prefix(&whole, "/n0-"), sent[0]);
    assert_eq!(with_prefix(&whole, "/r"), rotation);

    // Restarted, stopped (stop-client collects before the containers go) and re-deployed:
    // every start's stderr line once.
    let worker = project(b).into_iter().find(|(s, _)| s == "worker").unwrap().1;
    docker(&["restart", "-t", "1", &worker]);
    f.collect();
    docker(&["restart", "-t", "1", &worker]);
    std::thread::sleep(Duration::from_millis(500));
    f.run(&["stop-client", &format!("CLIENT_ID={b}")]);
    assert!(project(b).is_empty());
    let errors = lines(&f.log(b, "error.log"));
    assert_eq!(count(&errors, " worker worker of "), 3, "initial start and two restarts: {errors:#?}");
    f.run(&["deploy-client", &format!("CLIENT_ID={b}")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        f.collect();
        let errors = lines(&f.log(b, "error.log"));
        if count(&errors, " worker worker of ") == 4 && count(&errors, " web web of ") == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the re-deployed stack's stderr never arrived once: {errors:#?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let errors = lines(&f.log(b, "error.log"));
    f.collect();
    assert_eq!(lines(&f.log(b, "error.log")), errors, "a collect after the re-deploy added lines again");
    assert_eq!(count(&lines(&f.log(a, "error.log")), b.as_str()), 0);
}

/// Runs collect-logs as a child of its own process group and SIGKILLs the group (agency and
/// the docker processes it started) after `delay`; whether it was still running.
fn kill_collect(f: &Fixture, delay: Duration) -> bool {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_agency"));
    command.arg("collect-logs").env_clear().envs(f.site.env()).env("AGENCY_BACKUPS", "off");
    command.current_dir(f.site.path()).process_group(0);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    // SAFETY: kill(2) of the child's own process group.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    running
}

#[test]
fn a_collect_killed_at_any_point_and_run_again_is_still_exact() {
    let Some(f) = Fixture::new("logs::killed_collect") else { return };
    let [a, b] = [&f.ids[0], &f.ids[1]];
    f.collect();
    let start = [lines(&f.log(a, "access.log")).len(), lines(&f.log(b, "access.log")).len()];
    let mut expected: [Vec<String>; 2] = Default::default();
    let mut crashed = 0;

    // Injected crashes (test builds): inside and right after every step of the collect.
    if cfg!(feature = "fault-injection") {
        for point in ["AGENCY_FAULT_CRASH_DURING", "AGENCY_FAULT_CRASH_AFTER"] {
            for n in 1..=4 {
                let name = format!("f{}{n}", &point[19..20].to_lowercase());
                expected[0].extend(f.requests(a, &name, 3));
                expected[1].extend(f.requests(b, &name, 3));
                let out = f.test().args(["collect-logs"]).env(point, &n.to_string()).run_unchecked();
                if out.status != 0 {
                    assert!(out.stderr.contains("injected crash"), "{}", out.stderr);
                    crashed += 1;
                }
            }
        }
        assert!(crashed >= 6, "only {crashed} injected crashes happened: the test proves little");
    }

    // Real SIGKILLs at spread-out moments of a collect of several hundred lines.
    let mut killed_running = 0;
    for (round, delay) in [2u64, 8, 15, 25, 40, 60].into_iter().enumerate() {
        let name = format!("k{round}");
        expected[0].extend(f.requests(a, &name, 40));
        expected[1].extend(f.requests(b, &name, 40));
        if kill_collect(&f, Duration::from_millis(delay)) {
            killed_running += 1;
        }
    }
    assert!(killed_running > 0, "every collect had finished before its kill: the test proves little");
    let result = f.collect();
    assert_eq!(result["docker_error"], "", "{result:#}");
    for (index, id) in [a, b].into_iter().enumerate() {
        let all = lines(&f.log(id, "access.log"));
        assert_eq!(paths(&all[start[index]..], &domain(id)), expected[index], "{id}'s access.log after the kills");
        let errors = lines(&f.log(id, "error.log"));
        assert_eq!(count(&errors, " worker worker of "), 1, "{errors:#?}");
        assert_eq!(count(&errors, " web web of "), 1, "{errors:#?}");
    }
    assert_eq!(f.collect()["access"], serde_json::json!({}));
}
