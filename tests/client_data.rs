//! Client data on real databases (SPEC §11), with the test images of tests/images/build:
//! rows written in acme's MariaDB (the built-in WordPress stack) and in a PostgreSQL site
//! stack are dumped by backup-client, the database dropped, restore-client brings back the
//! same rows (the checksum of a dump); verify-backup loads the newest dump into a throwaway
//! server and fails once the repository's dump was replaced by a tampered one. The argv shim
//! of every docker and restic child proves no password is in any argument list. db-passwords
//! against the real PostgreSQL server: after rotate-secrets the new password logs in and the
//! old one is refused; a rotation stopped before the plugin ran recovers on a re-run.

use std::{
    fs,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::{
    argv::{Shim, secret_values},
    containers::{self, docker},
    stacks::{Deployed, project},
    test::{Output, Site},
};

const WORDPRESS_IMAGE: &str = "agency-test/wordpress:bookworm";
const MARIADB_IMAGE: &str = "agency-test/mariadb:bookworm";
const POSTGRES_IMAGE: &str = "agency-test/postgres:15";

const PG_STACK: &str = "services:\n  db:\n    image: ${POSTGRES_IMAGE:-postgres:15}\n    labels:\n      agency.tiers: database\n      agency.db: postgres\n    environment:\n      POSTGRES_PASSWORD: ${DB_ROOT_PASSWORD}\n      POSTGRES_DB: app\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n  files:\n    image: agency-test/busybox:static\n    command: [\"sleep\", \"100000\"]\n    labels:\n      agency.tiers: backend\n    volumes:\n      - uploads:/uploads\nvolumes:\n  pgdata: {}\n  uploads: {}\n";

fn images_or_skip(test: &str, images: &[&str]) -> bool {
    if !containers::engine_or_skip(test) {
        return false;
    }
    for image in images {
        if !docker(&["image", "inspect", image]).status.success() {
            return containers::skip(test, &format!("no image {image}; run tests/images/build"));
        }
    }
    true
}

fn secret(site: &Site, id: &str, key: &str) -> String {
    let text = fs::read_to_string(site.secrets_file(id)).unwrap();
    let values = agency::format::envfile::parse(&text).unwrap();
    values.get(key).unwrap_or_else(|| panic!("{key} in secrets.env")).clone()
}

fn container_of(id: &str, service: &str) -> String {
    project(id).into_iter().find(|(s, _)| s == service).unwrap_or_else(|| panic!("{id} has no {service}")).1
}

/// Runs `argv` in `container` with `variable`=`password` handed over by environment.
fn exec(container: &str, variable: &str, password: &str, argv: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .env(variable, password)
        .args(["exec", "-e", variable, container])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn until_ok(what: &str, seconds: u64, mut attempt: impl FnMut() -> Result<String, String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        match attempt() {
            Ok(out) => return out,
            Err(e) => assert!(Instant::now() < deadline, "{what}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// restic on the client's repository, the password by environment.
fn restic(site: &Site, id: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut command = Command::new("restic");
    command
        .env("RESTIC_REPOSITORY", site.backup_root().join(format!("client-{id}")))
        .env("RESTIC_PASSWORD", secret(site, id, "RESTIC_PASSWORD"))
        .arg("--no-cache")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "restic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dump_snapshots(site: &Site, id: &str) -> Vec<serde_json::Value> {
    let listed: serde_json::Value =
        serde_json::from_str(&restic(site, id, &["snapshots", "--json", "--tag=dump"], None)).unwrap();
    listed.as_array().unwrap().clone()
}

/// Replaces the repository's newest dump of `service` by `edit` of it, under the same tags
/// (a forged snapshot of the same set), and forgets the original.
fn tamper(site: &Site, id: &str, service: &str, edit: impl Fn(&str) -> String) {
    let dumps = dump_snapshots(site, id);
    let original = dumps.last().unwrap();
    let file = format!("db-{service}.sql");
    let text = restic(site, id, &["dump", original["id"].as_str().unwrap(), &format!("/{file}")], None);
    let forged = edit(&text);
    assert_ne!(forged, text, "the edit changed the dump");
    let mut args = vec!["backup".to_string(), "--stdin".into(), format!("--stdin-filename={file}")];
    for tag in original["tags"].as_array().unwrap() {
        args.push(format!("--tag={}", tag.as_str().unwrap()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    restic(site, id, &args, Some(&forged));
    restic(site, id, &["forget", original["id"].as_str().unwrap()], None);
}

/// No value of any generation of the client's secrets in any recorded argv.
fn assert_no_secret_in_argv(site: &Site, id: &str, shim: &Shim) {
    let argvs = shim.argvs();
    assert!(
        argvs.iter().any(|a| a[0] == "docker" && a.iter().any(|w| w == "exec")),
        "docker exec ran through the shim"
    );
    assert!(
        argvs.iter().any(|a| a[0] == "restic" && a.iter().any(|w| w == "--stdin")),
        "restic --stdin ran through the shim"
    );
    assert!(
        argvs.iter().any(|a| a[0] == "restic" && a.iter().any(|w| w == "dump")),
        "restic dump ran through the shim"
    );
    let secrets = secret_values(site, id);
    assert!(secrets.iter().any(|(name, _)| name.starts_with("DB_ROOT_PASSWORD")));
    for argv in &argvs {
        for (name, value) in &secrets {
            assert!(!argv.iter().any(|a| a.contains(value.as_str())), "{name} is in the argv of {argv:?}");
        }
    }
}

struct Client<'a> {
    site: &'a Site,
    shim: &'a Shim,
    id: String,
}

impl Client<'_> {
    fn run_unchecked(&self, args: &[&str]) -> Output {
        let mut test = self
            .site
            .test()
            .env("PATH", &self.shim.path())
            .env("WORDPRESS_IMAGE", WORDPRESS_IMAGE)
            .env("MARIADB_IMAGE", MARIADB_IMAGE)
            .env("POSTGRES_IMAGE", POSTGRES_IMAGE)
            .arg(args[0])
            .arg(&format!("CLIENT_ID={}", self.id));
        for arg in &args[1..] {
            test = test.arg(arg);
        }
        test.run_unchecked()
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.run_unchecked(args);
        assert_eq!(out.status, 0, "agency {args:?}\n--- stdout:\n{}\n--- stderr:\n{}", out.stdout, out.stderr);
        out
    }

    fn create(&self, extra: &[&str]) {
        let domain = format!("CLIENT_DOMAIN={}.example.test", self.id);
        let mut args = vec!["create-client", "CLIENT_NAME=Data", domain.as_str()];
        args.extend_from_slice(extra);
        self.run(&args);
        self.run(&["deploy-client"]);
    }

    fn backup_log(&self) -> String {
        fs::read_to_string(self.site.log_root().join(format!("clients/{}/backup.log", self.id))).unwrap()
    }
}

#[test]
fn acme_mariadb_round_trip_restore_and_verify_against_a_tampered_dump() {
    if !images_or_skip("client_data::mariadb", &[WORDPRESS_IMAGE, MARIADB_IMAGE]) {
        return;
    }
    let site = Site::with_docker();
    let shim = Shim::new(site.path());
    let acme = Client { site: &site, shim: &shim, id: containers::unique("acme") };
    let _cleanup = Deployed::new(std::slice::from_ref(&acme.id));
    acme.create(&[]);
    let db = container_of(&acme.id, "db");
    let root = secret(&site, &acme.id, "DB_ROOT_PASSWORD");
    let sql = |statement: &str| exec(&db, "MYSQL_PWD", &root, &["mariadb", "-uroot", "-N", "-e", statement]);
    until_ok("MariaDB accepts root", 120, || sql("SELECT 1"));
    sql("CREATE TABLE wordpress.kept (id INT PRIMARY KEY, v TEXT); CREATE TABLE wordpress.more (x INT);\
         INSERT INTO wordpress.kept VALUES (1, 'one'), (2, 'it''s two'), (3, REPEAT('x', 5000));\
         CREATE DATABASE shop; CREATE TABLE shop.orders (n INT); INSERT INTO shop.orders VALUES (7)")
    .unwrap();
    let checksum = || {
        let dump = exec(
            &db,
            "MYSQL_PWD",
            &root,
            &["mariadb-dump", "-uroot", "--skip-dump-date", "--databases", "wordpress", "shop"],
        );
        sha256(&dump.unwrap())
    };
    let before = checksum();

    acme.run(&["backup-client"]);
    let log = acme.backup_log();
    let line = log.lines().find(|l| l.contains("dump ok service=db")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("engine=mariadb") && line.contains("tables=shop:1,wordpress:2"), "{line}");
    let dumps = dump_snapshots(&site, &acme.id);
    assert_eq!(dumps.len(), 1);
    let tags: Vec<&str> = dumps[0]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&"service=db") && tags.contains(&format!("image={MARIADB_IMAGE}").as_str()), "{tags:?}");
    let set = tags.iter().find(|t| t.starts_with("set=")).unwrap();
    // The files snapshot of the same set leaves the dumped data directory out.
    let files: serde_json::Value =
        serde_json::from_str(&restic(&site, &acme.id, &["snapshots", "--json", &format!("--tag={set}")], None))
            .unwrap();
    let files: Vec<&serde_json::Value> =
        files.as_array().unwrap().iter().filter(|s| !s["tags"].to_string().contains("\"dump\"")).collect();
    assert_eq!(files.len(), 1, "one files snapshot in the set");
    let listing = restic(&site, &acme.id, &["ls", files[0]["id"].as_str().unwrap()], None);
    assert!(listing.contains("/client.env"), "the files snapshot holds the config");
    assert!(!listing.contains("ibdata1") && !listing.contains("/wordpress/kept"), "the live data directory was copied");

    sql("DROP DATABASE wordpress; DROP DATABASE shop").unwrap();
    assert!(sql("SELECT COUNT(*) FROM wordpress.kept").is_err(), "the database was dropped");
    let refused = acme.run_unchecked(&["restore-client", "ONLY=volumes"]);
    assert_eq!(refused.status, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("stop-client first"), "{}", refused.stderr);
    acme.run(&["restore-client", "ONLY=databases"]);
    assert_eq!(checksum(), before, "the rows restored are not the rows backed up");
    let refused = acme.run_unchecked(&["restore-client", "ONLY=databases"]);
    assert_eq!(refused.status, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("FORCE=1"), "{}", refused.stderr);
    sql("INSERT INTO wordpress.kept VALUES (4, 'after')").unwrap();
    acme.run(&["restore-client", "ONLY=databases", "FORCE=1"]);
    assert_eq!(checksum(), before, "FORCE=1 replaces the databases with the dump");

    let verified = acme.run(&["verify-backup"]);
    assert!(verified.stdout.contains("loads into") && verified.stdout.contains("wordpress:2"), "{}", verified.stdout);
    let leftovers = docker(&["ps", "-aq", "--filter", &format!("label=agency.verify={}", acme.id)]);
    assert!(leftovers.stdout.is_empty(), "the throwaway server was not removed");

    tamper(&site, &acme.id, "db", |dump| dump.replace("'it\\'s two'", "'it\\'s forged'"));
    let failed = acme.run_unchecked(&["verify-backup"]);
    assert_eq!(failed.status, 1, "{}\n{}", failed.stdout, failed.stderr);
    assert!(failed.stdout.contains("FAILED") && failed.stdout.contains("SHA-256"), "{}", failed.stdout);
    tamper(&site, &acme.id, "db", |dump| dump.replace("CREATE TABLE `more`", "CREATE TEMPORARY TABLE `more`"));
    let failed = acme.run_unchecked(&["verify-backup"]);
    assert_eq!(failed.status, 1);
    assert!(failed.stdout.contains("other tables than backup recorded"), "{}", failed.stdout);
    let leftovers = docker(&["ps", "-aq", "--filter", &format!("label=agency.verify={}", acme.id)]);
    assert!(leftovers.stdout.is_empty(), "a failed verify left its throwaway server");

    // db-passwords on the real MariaDB: the new root password logs in, the old is refused.
    acme.run(&["rotate-secrets"]);
    let new = secret(&site, &acme.id, "DB_ROOT_PASSWORD");
    assert_ne!(new, root);
    let db = container_of(&acme.id, "db");
    exec(&db, "MYSQL_PWD", &new, &["mariadb", "-uroot", "-N", "-e", "SELECT 1"]).unwrap();
    let refused = exec(&db, "MYSQL_PWD", &root, &["mariadb", "-uroot", "-N", "-e", "SELECT 1"]).unwrap_err();
    assert!(refused.contains("Access denied"), "{refused}");

    assert_no_secret_in_argv(&site, &acme.id, &shim);
}

#[test]
fn postgres_site_stack_round_trip_and_db_passwords_on_the_real_server() {
    if !images_or_skip("client_data::postgres", &[POSTGRES_IMAGE, "agency-test/busybox:static"]) {
        return;
    }
    let site = Site::with_docker();
    site.site_file("stacks/pgsite/compose.yml", PG_STACK);
    let shim = Shim::new(site.path());
    let client = Client { site: &site, shim: &shim, id: containers::unique("pg") };
    let _cleanup = Deployed::new(std::slice::from_ref(&client.id));
    client.create(&["STACK=pgsite"]);
    let psql = |password: &str, statement: &str| {
        let db = container_of(&client.id, "db");
        exec(
            &db,
            "PGPASSWORD",
            password,
            &["psql", "-X", "-w", "-h", "127.0.0.1", "-U", "postgres", "-d", "app", "-Atc", statement],
        )
    };
    let root = secret(&site, &client.id, "DB_ROOT_PASSWORD");
    until_ok("PostgreSQL accepts postgres", 120, || psql(&root, "SELECT 1"));
    psql(&root, "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g")
        .unwrap();
    let files = container_of(&client.id, "files");
    assert!(docker(&["exec", &files, "sh", "-c", "echo upload-1 > /uploads/a.txt"]).status.success());
    let checksum = |password: &str| {
        let db = container_of(&client.id, "db");
        let dump = exec(&db, "PGPASSWORD", password, &["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "app"]).unwrap();
        // pg_dump 15.14 guards each dump with a random `\restrict` key.
        let rows: Vec<&str> =
            dump.lines().filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")).collect();
        sha256(&rows.join("\n"))
    };
    let before = checksum(&root);

    client.run(&["backup-client"]);
    assert!(client.backup_log().contains("engine=postgres"), "{}", client.backup_log());
    assert!(client.backup_log().contains("tables=app:1,postgres:0"), "{}", client.backup_log());

    // Drop the database, lose the upload; the stack stopped, restore-client puts back both.
    psql(&root, "SELECT 1").unwrap();
    let db = container_of(&client.id, "db");
    exec(
        &db,
        "PGPASSWORD",
        &root,
        &["psql", "-X", "-w", "-U", "postgres", "-d", "postgres", "-c", "DROP DATABASE app WITH (FORCE)"],
    )
    .unwrap();
    assert!(docker(&["exec", &files, "rm", "/uploads/a.txt"]).status.success());
    client.run(&["stop-client"]);
    client.run(&["restore-client", "FORCE=1"]);
    let files = container_of(&client.id, "files");
    assert_eq!(String::from_utf8_lossy(&docker(&["exec", &files, "cat", "/uploads/a.txt"]).stdout), "upload-1\n");
    until_ok("PostgreSQL is back", 120, || psql(&root, "SELECT count(*) FROM items"));
    assert_eq!(checksum(&root), before, "the rows restored are not the rows backed up");
    client.run(&["verify-backup"]);

    // db-passwords: the new superuser password logs in, the old one is refused by the server.
    client.run(&["rotate-secrets"]);
    let new = secret(&site, &client.id, "DB_ROOT_PASSWORD");
    assert_ne!(new, root);
    psql(&new, "SELECT 1").unwrap();
    let refused = psql(&root, "SELECT 1").unwrap_err();
    assert!(refused.contains("password authentication failed"), "{refused}");

    // A rotation stopped right before the plugin's step: the server still has the previous
    // password; the re-run logs in with it and sets the newest.
    let plan = client.run(&["-n", "--json", "rotate-secrets"]).json();
    let changes: Vec<&serde_json::Value> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["changes"].as_array().unwrap())
        .filter(|c| c["outcome"] != "unchanged")
        .collect();
    let step = changes.iter().position(|c| c["action"] == "docker exec").expect("the plan has the plugin's step");
    let stopped = {
        let mut test = site
            .test()
            .env("PATH", &shim.path())
            .env("AGENCY_FAULT_FAIL_AT", &(step + 1).to_string())
            .args(["rotate-secrets", &format!("CLIENT_ID={}", client.id)]);
        test = test.status(1);
        test.run()
    };
    assert!(stopped.stderr.contains("docker exec"), "{}", stopped.stderr);
    let newest = secret(&site, &client.id, "DB_ROOT_PASSWORD");
    client.run(&["rotate-secrets"]);
    let newest_after = secret(&site, &client.id, "DB_ROOT_PASSWORD");
    psql(&newest_after, "SELECT 1").unwrap();
    for old in [&root, &new, &newest].into_iter().filter(|p| *p != &newest_after) {
        let refused = psql(old, "SELECT 1").unwrap_err();
        assert!(refused.contains("password authentication failed"), "{refused}");
    }
    assert_no_secret_in_argv(&site, &client.id, &shim);
}

/// `pid`'s live children (zombies are dead) with their command names.
fn children(pid: u32) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() != Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str()) {
            found.push((child, head.split_once(" (").map(|(_, name)| name.to_string()).unwrap_or_default()));
        }
    }
    found
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// A database whose dump never ends (a busybox container with a fake `mariadb-dump`): agency
/// killed with SIGKILL mid-stream takes its `docker exec` and `restic` children with it, and
/// the repository holds no snapshot of the cut dump.
#[test]
fn a_killed_backup_leaves_no_dump_child_and_no_cut_snapshot() {
    if !containers::engine_or_skip("client_data::killed") {
        return;
    }
    let site = Site::with_docker();
    let id = containers::unique("kill");
    let _networks = containers::ClientNetworks(vec![id.clone()]);
    site.test()
        .args([
            "create-client",
            &format!("CLIENT_ID={id}"),
            "CLIENT_NAME=Kill",
            &format!("CLIENT_DOMAIN={id}.example.test"),
        ])
        .run();
    let db = containers::Container::start(
        &containers::unique("agency-test-killdb-"),
        &[("agency.client", &id), ("agency.db", "mariadb"), ("agency.service", "db")],
        "exec sleep 3600",
    );
    let fakes = "mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho shop\\n' > /usr/local/bin/mariadb && \
                 printf '#!/bin/sh\\necho \"USE \\x60shop\\x60;\"\\nwhile :; do echo \"INSERT INTO t VALUES (1);\"; usleep 2000; done\\n' > /usr/local/bin/mariadb-dump && \
                 chmod 755 /usr/local/bin/mariadb /usr/local/bin/mariadb-dump";
    let out = db.exec(fakes, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut agency = Command::new(env!("CARGO_BIN_EXE_agency"))
        .args(["backup-client", &format!("CLIENT_ID={id}")])
        .env_clear()
        .envs(site.env())
        .current_dir(site.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let streaming = loop {
        let found = children(agency.id());
        if found.iter().any(|(_, n)| n == "docker") && found.iter().any(|(_, n)| n == "restic") {
            break found;
        }
        assert!(Instant::now() < deadline, "the dump never started: {found:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    agency.kill().unwrap();
    agency.wait().unwrap();
    for (pid, name) in &streaming {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(*pid) {
            assert!(Instant::now() < deadline, "{name} ({pid}) outlived the killed agency");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // restic's lock of the killed run is stale; the listing does not need it gone.
    assert!(dump_snapshots(&site, &id).is_empty(), "a snapshot of the cut dump was written");
}
