//! Notifications (SPEC §13) received by a local HTTP server on 127.0.0.1: the event and the
//! healthchecks-style pings of a failing and a passing run, of a run that fails before its
//! script starts, of a failed systemd unit, and the daily digest. No secret in any of them.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    sync::{Arc, Mutex},
    thread,
};

use serde_json::Value;

use crate::{operations::site_with_a_broken_client, test::Site};

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: String,
}

/// An HTTP/1.1 server on 127.0.0.1 that answers 200 to everything and records it.
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(Request { method, path, body: String::from_utf8_lossy(&body).into_owned() });
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
            }
        });
        Self { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests received since the last call.
    fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

fn events(requests: &[Request]) -> Vec<Value> {
    requests.iter().filter(|r| r.path == "/hook").map(|r| serde_json::from_str(&r.body).unwrap()).collect()
}

fn pings(requests: &[Request]) -> Vec<String> {
    requests.iter().filter(|r| r.path.starts_with("/hc/")).map(|r| r.path.clone()).collect()
}

/// Every value of every client's secrets.env.
fn secret_values(site: &Site, clients: &[&str]) -> Vec<String> {
    clients
        .iter()
        .flat_map(|id| {
            std::fs::read_to_string(site.secrets_file(id)).unwrap().lines().map(str::to_string).collect::<Vec<_>>()
        })
        .filter_map(|line| line.split_once('=').map(|(_, v)| v.trim_matches('\'').to_string()))
        .filter(|v| v.len() >= 8)
        .collect()
}

fn assert_no_secret(requests: &[Request], secrets: &[String]) {
    assert!(!secrets.is_empty());
    for request in requests {
        for secret in secrets {
            assert!(
                !request.body.contains(secret.as_str()) && !request.path.contains(secret.as_str()),
                "a secret in {request:?}"
            );
        }
    }
}

#[test]
fn a_failing_and_a_passing_run_send_their_event_and_pings_and_no_secret() {
    let receiver = Receiver::start();
    let site = site_with_a_broken_client();
    let hook = format!("NOTIFY_URL={}", receiver.url("/hook"));
    let ping = format!("HEALTHCHECK_URL={}", receiver.url("/hc/{task}-{client}"));
    let secrets = secret_values(&site, &["acme", "beta"]);

    site.test().args(["multi-tenancy-status", &hook, &ping]).status(1).run();
    let failing = receiver.take();
    assert_eq!(
        pings(&failing),
        ["/hc/multi-tenancy-status-all/start", "/hc/multi-tenancy-status-all/fail"],
        "{failing:?}"
    );
    assert!(failing.iter().all(|r| r.method == "POST"));
    let sent = events(&failing);
    assert_eq!(sent.len(), 1, "one event: {sent:?}");
    let event = &sent[0];
    assert_eq!(event["event"], "failure");
    assert_eq!(event["task"], "multi-tenancy-status");
    assert_eq!(event["outcome"], "failed");
    assert_eq!(event["exit_code"], 1);
    assert_eq!(event["client"], Value::Null);
    assert_eq!(event["problems_total"], 1);
    assert_eq!(event["problems"][0]["client"], "beta");
    assert_eq!(event["problems"][0]["check"], "secrets");
    assert!(event["problems"][0]["summary"].as_str().unwrap().contains("0644"));
    assert!(failing.iter().find(|r| r.path.ends_with("/fail")).unwrap().body.contains("not fully isolated: beta"));
    assert_no_secret(&failing, &secrets);

    site.test().args(["multi-tenancy-status", "CLIENT_ID=acme", &hook, &ping]).run();
    let passing = receiver.take();
    assert_eq!(pings(&passing), ["/hc/multi-tenancy-status-acme/start", "/hc/multi-tenancy-status-acme"]);
    assert!(events(&passing).is_empty(), "no event for a passing run: {passing:?}");

    // A dry run sends nothing.
    site.test().args(["-n", "multi-tenancy-status", &hook, &ping]).status(1).run();
    assert!(receiver.take().is_empty());
}

#[test]
fn a_run_that_fails_before_its_script_starts_still_reports_it() {
    let receiver = Receiver::start();
    let site = Site::new();
    crate::create_client::create(&site, "acme", "Tenant");
    let hook = format!("NOTIFY_URL={}", receiver.url("/hook"));
    let ping = format!("HEALTHCHECK_URL={}", receiver.url("/hc/{task}"));

    // An invalid variable value: a usage error, exit 2, before anything runs.
    site.test().args(["backup-client", "CLIENT_ID=Not-Valid!", &hook, &ping]).status(2).run();
    let requests = receiver.take();
    assert_eq!(pings(&requests), ["/hc/backup-client/start", "/hc/backup-client/fail"]);
    let event = &events(&requests)[0];
    assert_eq!(event["task"], "backup-client");
    assert_eq!(event["exit_code"], 2);
    assert!(event["message"].as_str().unwrap().contains("CLIENT_ID"), "{event}");

    // A site's task file that does not parse: the catalog fails to load.
    site.site_file("tasks/backup-client.toml", "description = \"broken\n");
    site.test().args(["backup-client", "CLIENT_ID=acme", &hook, &ping]).status(2).run();
    let requests = receiver.take();
    assert_eq!(pings(&requests), ["/hc/backup-client/start", "/hc/backup-client/fail"]);
    assert_eq!(events(&requests)[0]["exit_code"], 2);
    assert_eq!(events(&requests)[0]["client"], "acme");

    // A URL that is not http(s) is refused before anything happens.
    site.test()
        .args(["multi-tenancy-status", "NOTIFY_URL=file:///etc/passwd"])
        .status(2)
        .stderr_contains("invalid NOTIFY_URL")
        .run();
}

#[test]
fn a_failed_unit_and_the_daily_digest_are_one_event_each() {
    let receiver = Receiver::start();
    let site = site_with_a_broken_client();
    let hook = format!("NOTIFY_URL={}", receiver.url("/hook"));
    let ping = format!("HEALTHCHECK_URL={}", receiver.url("/hc/{task}-{client}"));
    let secrets = secret_values(&site, &["acme", "beta"]);

    site.test().args(["notify-failure", "UNIT=agency-backup@acme.service", &hook, &ping]).run();
    let requests = receiver.take();
    assert_eq!(pings(&requests), ["/hc/backup-client-acme/fail"], "only the failed job's ping: {requests:?}");
    let event = &events(&requests)[0];
    assert_eq!(event["event"], "unit-failed");
    assert_eq!(event["unit"], "agency-backup@acme.service");
    assert_eq!((event["task"].as_str(), event["client"].as_str()), (Some("backup-client"), Some("acme")));

    site.test().args(["multi-tenancy-status", "DIGEST=1", &hook]).status(1).run();
    let requests = receiver.take();
    let sent = events(&requests);
    let digest: Vec<&Value> = sent.iter().filter(|e| e["event"] == "digest").collect();
    assert_eq!(digest.len(), 1, "{sent:?}");
    assert_eq!(digest[0]["clients"], 2);
    assert_eq!(digest[0]["isolated"], 1);
    assert_eq!(digest[0]["not_isolated"][0]["client"], "beta");
    assert_eq!(digest[0]["not_isolated"][0]["failing"][0], "secrets");
    assert_eq!(digest[0]["pool"]["total"], 1024);
    assert_no_secret(&requests, &secrets);
}

#[test]
fn a_standing_problem_is_sent_once_and_its_end_once() {
    let receiver = Receiver::start();
    let site = site_with_a_broken_client();
    let hook = format!("NOTIFY_URL={}", receiver.url("/hook"));
    let kinds = |requests: &[Request]| -> Vec<String> {
        events(requests).iter().map(|e| e["event"].as_str().unwrap().to_string()).collect()
    };

    // The job every 15 minutes: the same problem is news once.
    for _ in 0..3 {
        site.test().args(["multi-tenancy-status", &hook]).status(1).run();
    }
    assert_eq!(kinds(&receiver.take()), ["failure"]);
    let memory = site.root().join("notify").join("multi-tenancy-status@all.json");
    assert_eq!(std::fs::metadata(&memory).unwrap().permissions().mode() & 0o777, 0o600);
    // NOTIFY_REPEAT=0 sends every failure; a new problem is news at once.
    site.test().args(["multi-tenancy-status", &hook, "NOTIFY_REPEAT=0"]).status(1).run();
    assert_eq!(kinds(&receiver.take()), ["failure"]);
    std::fs::remove_file(site.log_root().join("clients/acme/error.log")).unwrap();
    site.test().args(["multi-tenancy-status", &hook]).status(1).run();
    let requests = receiver.take();
    assert_eq!(kinds(&requests), ["failure"]);
    assert_eq!(events(&requests)[0]["problems_total"], 2);

    // Repaired: one `recovered`, then silence.
    site.test().args(["multi-tenancy-status", "FIX=1"]).run();
    site.test().args(["multi-tenancy-status", &hook]).run();
    site.test().args(["multi-tenancy-status", &hook]).run();
    let requests = receiver.take();
    assert_eq!(kinds(&requests), ["recovered"]);
    assert_eq!(events(&requests)[0]["outcome"], "ok");
    assert!(!memory.exists());

    site.test()
        .args(["multi-tenancy-status", &hook, "NOTIFY_REPEAT=soon"])
        .status(2)
        .stderr_contains("invalid NOTIFY_REPEAT")
        .run();
}

#[test]
fn a_job_that_reported_its_problem_is_not_reported_again_by_systemd() {
    let receiver = Receiver::start();
    let site = site_with_a_broken_client();
    let hook = format!("NOTIFY_URL={}", receiver.url("/hook"));
    let ping = format!("HEALTHCHECK_URL={}", receiver.url("/hc/{task}-{client}"));
    let kinds = |requests: &[Request]| -> Vec<String> {
        events(requests).iter().map(|e| e["event"].as_str().unwrap().to_string()).collect()
    };
    let (start, fail) = ("/hc/multi-tenancy-status-all/start", "/hc/multi-tenancy-status-all/fail");

    // The status job every 15 minutes exits 1 on its standing problem, and systemd starts
    // the OnFailure= unit each time: the run's own event (sent once) and pings are all.
    for _ in 0..3 {
        site.test().args(["multi-tenancy-status", &hook, &ping]).status(1).run();
        site.test().args(["notify-failure", "UNIT=agency-status.service", &hook, &ping]).run();
    }
    let requests = receiver.take();
    assert_eq!(kinds(&requests), ["failure"], "{requests:?}");
    assert_eq!(pings(&requests), [start, fail, start, fail, start, fail]);

    // A run killed half-way reported nothing of its end: the unit's failure is sent, with the
    // /fail ping the run never sent; the same failure again is old news, pinged all the same.
    let killed = site
        .test()
        .args(["multi-tenancy-status", "FIX=1", &hook, &ping])
        .env("AGENCY_FAULT_CRASH_AFTER", "1")
        .run_unchecked();
    assert_eq!(killed.status, -1, "aborted: {}", killed.stderr);
    site.test().args(["notify-failure", "UNIT=agency-status.service", &hook, &ping]).run();
    site.test().args(["notify-failure", "UNIT=agency-status.service", &hook, &ping]).run();
    let requests = receiver.take();
    assert_eq!(kinds(&requests), ["unit-failed"], "{requests:?}");
    assert_eq!(pings(&requests), [start, fail, fail], "{requests:?}");
    assert_eq!(events(&requests)[0]["unit"], "agency-status.service");

    // A backup unit whose run never got to start (binary missing, docker unreachable at
    // start-up): one unit-failed event for the standing failure, every failure pinged.
    for _ in 0..2 {
        site.test().args(["notify-failure", "UNIT=agency-backup@acme.service", &hook, &ping]).run();
    }
    let requests = receiver.take();
    assert_eq!(kinds(&requests), ["unit-failed"], "{requests:?}");
    assert_eq!(pings(&requests), ["/hc/backup-client-acme/fail", "/hc/backup-client-acme/fail"]);
    assert_eq!(events(&requests)[0]["client"], "acme");

    site.test().args(["notify-failure", "UNIT=agency-backup@acme.service", &hook, "NOTIFY_REPEAT=0"]).run();
    assert_eq!(kinds(&receiver.take()), ["unit-failed"], "NOTIFY_REPEAT=0 sends every one");
}
