//! Operations (SPEC §13): Prometheus textfile metrics checked by `promtool` against `--json`,
//! and the one-page report opened in headless Chromium.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    containers::skip,
    create_client::create,
    support::docker::report,
    test::{Output, Site},
};

/// Two clients, `beta` not isolated (its secrets.env readable by all).
pub fn site_with_a_broken_client() -> Site {
    let site = Site::new();
    create(&site, "acme", "Tenant");
    create(&site, "beta", "Tenant");
    fs::set_permissions(site.secrets_file("beta"), fs::Permissions::from_mode(0o644)).unwrap();
    site
}

fn program(name: &str, package: &str, test: &str) -> Option<PathBuf> {
    match which::which(name) {
        Ok(path) => Some(path),
        Err(_) => {
            skip(test, &format!("{name} is not installed (apt-get install {package})"));
            None
        }
    }
}

/// `promtool check metrics` on a file; its findings on failure.
fn promtool_accepts(promtool: &Path, file: &Path) {
    let output = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(fs::File::open(file).unwrap())
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool rejects {}:\n{}{}\n{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        fs::read_to_string(file).unwrap()
    );
}

/// The samples of a textfile: `name{labels}` (as written) → value.
fn samples(file: &Path) -> BTreeMap<String, f64> {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn status_json(site: &Site, args: &[&str]) -> (Output, serde_json::Value) {
    let test = site.test().args(["--json", "multi-tenancy-status"]).args(args);
    let output = test.run_unchecked();
    let json = output.json();
    (output, json)
}

#[test]
fn status_metrics_pass_promtool_and_equal_the_json_report() {
    let Some(promtool) = program("promtool", "prometheus", module_path!()) else { return };
    let site = site_with_a_broken_client();
    let metrics = site.path().join("textfile");
    fs::create_dir(&metrics).unwrap();
    let (output, json) = status_json(&site, &[&format!("METRICS_DIR={}", metrics.display())]);
    assert_eq!(output.status, 1, "{}", output.stderr);
    let file = metrics.join("agency-status.prom");
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644);
    promtool_accepts(&promtool, &file);
    let values = samples(&file);

    let mut series = 0;
    for client in ["acme", "beta"] {
        let report = report(&json, client);
        let isolated = report["isolated"].as_bool().unwrap();
        assert_eq!(values[&format!("agency_client_isolated{{client=\"{client}\"}}")], if isolated { 1.0 } else { 0.0 });
        for check in report["checks"].as_array().unwrap() {
            let name = format!("agency_check_ok{{client=\"{client}\",check=\"{}\"}}", check["name"].as_str().unwrap());
            match check["status"].as_str().unwrap() {
                "skip" => assert!(!values.contains_key(&name), "{name} of a skipped check"),
                status => {
                    assert_eq!(values[&name], if status == "ok" { 1.0 } else { 0.0 }, "{name}");
                    series += 1;
                }
            }
        }
    }
    assert_eq!(values["agency_client_isolated{client=\"beta\"}"], 0.0);
    assert_eq!(values["agency_check_ok{client=\"beta\",check=\"secrets\"}"], 0.0);
    assert_eq!(values["agency_check_ok{client=\"acme\",check=\"secrets\"}"], 1.0);
    assert_eq!(values.keys().filter(|k| k.starts_with("agency_check_ok{")).count(), series);
    let result = &json["tasks"][0]["result"];
    assert_eq!(values["agency_subnet_pool_used_blocks"], result["pool"]["used"].as_f64().unwrap());
    assert_eq!(values["agency_subnet_pool_size_blocks"], result["pool"]["total"].as_f64().unwrap());
    assert_eq!(values["agency_clients"], 2.0);
    assert!((now() - values["agency_status_last_run_timestamp_seconds"]).abs() < 120.0);
    // Written whole, never left half: no temp file beside it.
    assert_eq!(fs::read_dir(&metrics).unwrap().count(), 1);
}

#[test]
fn backup_and_verify_metrics_record_their_last_success() {
    let Some(promtool) = program("promtool", "prometheus", module_path!()) else { return };
    let site = Site::new();
    create(&site, "acme", "Tenant");
    let metrics = site.path().join("textfile");
    fs::create_dir(&metrics).unwrap();
    let dir = format!("METRICS_DIR={}", metrics.display());
    let before = now().floor();
    site.test().args(["backup-client", "CLIENT_ID=acme", &dir]).run();
    site.test().args(["verify-backup", "CLIENT_ID=acme", &dir]).run();
    let after = now().ceil();

    let backup = metrics.join("agency-backup-acme.prom");
    promtool_accepts(&promtool, &backup);
    let values = samples(&backup);
    let last = values["agency_backup_last_success_timestamp_seconds{client=\"acme\"}"];
    assert!(before <= last && last <= after, "{before} <= {last} <= {after}");
    let (_, json) = status_json(&site, &[]);
    let evidence = &crate::support::docker::check(report(&json, "acme"), "backup")["evidence"];
    assert_eq!(values["agency_backup_snapshots{client=\"acme\"}"], evidence["snapshots"].as_f64().unwrap());
    let repository = site.backup_root().join("client-acme");
    let bytes: u64 = walkdir::WalkDir::new(&repository)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(bytes > 0);
    assert_eq!(values["agency_backup_repository_bytes{client=\"acme\"}"], bytes as f64);

    let verify = metrics.join("agency-verify-acme.prom");
    promtool_accepts(&promtool, &verify);
    let verified = samples(&verify)["agency_verify_last_success_timestamp_seconds{client=\"acme\"}"];
    assert!(last <= verified && verified <= after);

    // A failed backup leaves the last success as it was.
    fs::write(site.secrets_file("acme"), "RESTIC_PASSWORD='wrong'\n").unwrap();
    site.test().args(["backup-client", "CLIENT_ID=acme", &dir]).status(1).run();
    assert_eq!(samples(&backup)["agency_backup_last_success_timestamp_seconds{client=\"acme\"}"], last);
}

/// A deleted client's backup and verify series would stand forever (and its backup-age alert
/// fire): delete-client removes its files, and only its.
#[test]
fn delete_client_removes_its_metrics_files_and_no_other() {
    let site = Site::new();
    create(&site, "acme", "Tenant");
    create(&site, "beta", "Tenant");
    let metrics = site.path().join("textfile");
    fs::create_dir(&metrics).unwrap();
    let dir = format!("METRICS_DIR={}", metrics.display());
    for id in ["acme", "beta"] {
        site.test().args(["backup-client", &format!("CLIENT_ID={id}"), &dir]).run();
        site.test().args(["verify-backup", &format!("CLIENT_ID={id}"), &dir]).run();
    }
    site.test().args(["multi-tenancy-status", &dir]).run();
    let names = || -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(&metrics).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(names().len(), 5, "{:?}", names());
    site.test().args(["--yes", "delete-client", "CLIENT_ID=acme", &dir]).run();
    assert_eq!(names(), ["agency-backup-beta.prom", "agency-status.prom", "agency-verify-beta.prom"]);
}

#[test]
fn a_metrics_dir_that_does_not_exist_is_one_clear_error() {
    let site = Site::new();
    create(&site, "acme", "Tenant");
    site.test()
        .args(["multi-tenancy-status", "METRICS_DIR=/nonexistent/textfile"])
        .status(1)
        .stderr_contains("METRICS_DIR /nonexistent/textfile is not a directory")
        .run();
}

/// Headless Chromium without a network (a namespace of its own: only a loopback, down), so
/// it reads the page and nothing else.
fn chromium(chromium: &Path, args: &[&str], page: &Path) -> std::process::Output {
    let url = format!("file://{}", page.display());
    Command::new("unshare")
        .arg("--net")
        .arg(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        .arg(format!("--user-data-dir={}", page.parent().unwrap().join("chromium-profile").display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// The text of an HTML DOM dump: tags dropped, entities of the page decoded.
fn dom_text(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

#[test]
fn the_report_opened_in_chromium_shows_every_clients_verdict() {
    let Some(browser) = program("chromium", "chromium", module_path!()) else { return };
    let site = site_with_a_broken_client();
    let page = site.path().join("out").join("status.html");
    fs::create_dir(page.parent().unwrap()).unwrap();
    let (output, json) = status_json(&site, &[&format!("REPORT={}", page.display())]);
    assert_eq!(output.status, 1, "{}", output.stderr);
    let html = fs::read_to_string(&page).unwrap();
    assert_eq!(fs::metadata(&page).unwrap().permissions().mode() & 0o777, 0o644);
    // Self-contained: no script, no reference to anything outside the file.
    for outside in ["<script", "src=", "href=\"http", "url(", "@import", "<link"] {
        assert!(!html.contains(outside), "the page holds {outside}");
    }
    for secret in fs::read_to_string(site.secrets_file("acme")).unwrap().lines() {
        let value = secret.split_once('=').unwrap().1.trim_matches('\'');
        assert!(!html.contains(value), "a secret value is in the page");
    }

    let dumped = chromium(&browser, &["--dump-dom"], &page);
    assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
    let text = dom_text(&String::from_utf8_lossy(&dumped.stdout));
    for client in ["acme", "beta"] {
        let verdict = report(&json, client)["verdict"].as_str().unwrap();
        let row = text.split(&format!(" {client} ")).last().unwrap();
        assert!(row.trim_start().starts_with(verdict), "{client}: {verdict} not shown in the row: {row}");
    }
    assert!(text.contains("secrets.env has mode 0644, not 0600"));
    assert!(text.contains("Subnet pool 10.201.0.0/16"));
    // The services column shows the `stack` check, as a word and its summary.
    for client in ["acme", "beta"] {
        let stack = crate::support::docker::check(report(&json, client), "stack");
        let word = match stack["status"].as_str().unwrap() {
            "warn" => "WARN",
            "fail" => "FAIL",
            other => other,
        };
        let shown = format!("{word}: {}", stack["summary"].as_str().unwrap());
        assert!(text.contains(&shown), "{client}: the services column lacks {shown:?}");
    }

    let screenshot = site.path().join("out").join("status.png");
    let shot =
        chromium(&browser, &[&format!("--screenshot={}", screenshot.display()), "--window-size=1400,600"], &page);
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    // The verdicts' colours are on screen: the red of a failure, the green of a pass.
    let decoder = png::Decoder::new(fs::File::open(&screenshot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(frame.width, 1400);
    let channels = frame.color_type.samples();
    let count = |rgb: [u8; 3]| pixels[..frame.buffer_size()].chunks(channels).filter(|p| p[..3] == rgb).count();
    assert!(count([0xf8, 0xc8, 0xc8]) > 500, "no failure cell on screen");
    assert!(count([0xd8, 0xf0, 0xd8]) > 500, "no passing cell on screen");
}

/// The status job and the digest job start at the same minute: concurrent status runs all
/// write their metrics, none fails on the other's temp file, and the file stays whole.
#[test]
fn concurrent_status_runs_each_write_the_metrics_whole() {
    let Some(promtool) = program("promtool", "prometheus", module_path!()) else { return };
    let site = site_with_a_broken_client();
    let metrics = site.path().join("textfile");
    fs::create_dir(&metrics).unwrap();
    let dir = format!("METRICS_DIR={}", metrics.display());
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let runs: Vec<_> =
            (0..6).map(|_| scope.spawn(|| site.test().args(["multi-tenancy-status", &dir]).run_unchecked())).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for output in &outputs {
        assert_eq!(output.status, 1, "{}", output.stderr);
        assert!(!output.stderr.contains("write metrics"), "{}", output.stderr);
    }
    promtool_accepts(&promtool, &metrics.join("agency-status.prom"));
    assert_eq!(fs::read_dir(&metrics).unwrap().count(), 1, "no temp file left");
}
