//! The built-in db-passwords plugin against real containers: busybox containers whose fake
//! `mysql` and `psql` accept only the current root password (as a database would), record
//! their arguments and the SQL they got on stdin, and adopt the new root password from it.
//! A site `rotate-secrets` task stands in for the real one: it keeps the old generation in
//! the secrets history and writes new values, then the plugin's after-hook applies them.

use std::{fs, os::unix::fs::PermissionsExt};

use crate::{
    containers::{self, Container},
    create_client::bash_value,
    test::Site,
};

const FAKE_MYSQL: &str = r#"#!/bin/sh
printf '%s\n' "$*" >> /fake/argv
[ "$MYSQL_PWD" = "$(cat /fake/root-password)" ] || { echo "ERROR 1045 (28000): Access denied for user 'root'@'localhost'" >&2; exit 1; }
case "$*" in *--execute*) exit 0 ;; esac
cat > /fake/stdin.sql
printf '%s' "$MYSQL_PWD" > /fake/login
new=$(sed -n "s/^ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY '\([^']*\)';\$/\1/p" /fake/stdin.sql)
[ -z "$new" ] || printf '%s' "$new" > /fake/root-password
"#;

const FAKE_PSQL: &str = r#"#!/bin/sh
printf '%s\n' "$*" >> /fake/argv
[ "$PGPASSWORD" = "$(cat /fake/root-password)" ] || { echo "psql: error: password authentication failed for user" >&2; exit 2; }
case "$*" in *"-c SELECT 1"*) exit 0 ;; esac
cat > /fake/stdin.sql
printf '%s' "$PGPASSWORD" > /fake/login
new=$(sed -n "s/^ALTER ROLE \"postgres\" WITH PASSWORD '\([^']*\)';\$/\1/p" /fake/stdin.sql)
[ -z "$new" ] || printf '%s' "$new" > /fake/root-password
"#;

const ROTATE: &str = r#"
let c = layout::client(CLIENT_ID);
let current = envfile::read(c.secrets_file);
fs::mkdir(c.secrets_history_dir, 0o700);
let generation = 1000 + fs::list(c.secrets_history_dir).len();
envfile::write(c.secrets_history_dir + "/secrets-" + generation + ".env", current, 0o600);
let next = current;
next.DB_ROOT_PASSWORD = secrets::generate();
next.DB_PASSWORD = secrets::generate();
envfile::write(c.secrets_file, next, 0o600);
#{ rotated: ["DB_ROOT_PASSWORD", "DB_PASSWORD"] }
"#;

/// A fake database container of `client`, its root password set to `root`.
fn fake_db(client: &str, engine: &str, extra: &[(&str, &str)], root: &str) -> Container {
    let name = format!("agency-test-{client}-{engine}");
    let mut labels = vec![("agency.client", client), ("agency.db", engine)];
    labels.extend_from_slice(extra);
    let container = Container::start(&name, &labels, "exec sleep 3600");
    let (tool, fake) = if engine == "postgres" { ("psql", FAKE_PSQL) } else { ("mysql", FAKE_MYSQL) };
    let install =
        format!("mkdir -p /usr/local/bin /fake && cat > /usr/local/bin/{tool} && chmod 755 /usr/local/bin/{tool}");
    let out = container.exec(&install, fake);
    assert!(out.status.success(), "installing the fake {tool}: {}", String::from_utf8_lossy(&out.stderr));
    let out = container.exec("cat > /fake/root-password", root);
    assert!(out.status.success());
    container
}

fn site_with_client(id: &str, root: &str, app: &str) -> Site {
    let site = Site::with_docker();
    let secrets = site.secrets_file(id);
    let dir = secrets.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(&secrets, format!("DB_ROOT_PASSWORD='{root}'\nDB_PASSWORD='{app}'\nRESTIC_PASSWORD='r-{id}'\n")).unwrap();
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
    site.site_file(
        "tasks/rotate-secrets.toml",
        "description = \"rotate (test stand-in)\"\nscript_file = \"rotate-secrets.rhai\"\n\n\
         [vars.CLIENT_ID]\nrequired = true\nkind = \"client_id\"\n",
    );
    site.site_file("tasks/rotate-secrets.rhai", ROTATE);
    site
}

fn assert_absent(haystack: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(!haystack.contains(secret), "a password appears in {what}:\n{haystack}");
    }
}

#[test]
fn rotated_passwords_reach_mysql_and_postgres_on_stdin_only() {
    if !containers::engine_or_skip("db_passwords::rotated_passwords_reach_mysql_and_postgres_on_stdin_only") {
        return;
    }
    let id = containers::unique("dbpw");
    let other = containers::unique("dbpw");
    let (old_root, old_app) = (format!("OldRoot{id}x9"), format!("OldApp{id}x9"));
    let site = site_with_client(&id, &old_root, &old_app);
    let mysql = fake_db(&id, "mysql", &[("agency.db-user", "appuser")], &old_root);
    let postgres = fake_db(&id, "postgres", &[], &old_root);
    let bystander = fake_db(&other, "mysql", &[], &old_root);
    let (shim, argv_log) = containers::docker_argv_shim(site.path());
    let path = format!("{}:{}", shim.display(), std::env::var("PATH").unwrap());

    // Dry run first: the hook runs and plans its docker exec, and nothing is done.
    let output = site
        .test()
        .env("PATH", &path)
        .args(["-n", "rotate-secrets", &format!("CLIENT_ID={id}")])
        .stdout_contains(&format!("would update docker exec {}", mysql.name))
        .stdout_contains(&format!("would update docker exec {}", postgres.name))
        .stdout_contains("[plugin db-passwords]")
        .stdout_contains("db-passwords: would set the passwords of root and appuser")
        .run();
    assert_absent(&output.stdout, &[&old_root, &old_app], "the dry run's output");
    assert_eq!(mysql.read("/fake/stdin.sql"), None, "a dry run executed SQL");
    assert_eq!(postgres.read("/fake/stdin.sql"), None, "a dry run executed SQL");
    assert_eq!(bash_value(&site.secrets_file(&id), "DB_ROOT_PASSWORD"), old_root);

    // The real rotation.
    let output = site
        .test()
        .env("PATH", &path)
        .args(["rotate-secrets", &format!("CLIENT_ID={id}")])
        .stdout_contains(&format!("db-passwords: set the passwords of root and appuser in {} (mysql)", mysql.name))
        .stdout_contains(&format!(
            "db-passwords: set the passwords of postgres and {id} in {} (postgres)",
            postgres.name
        ))
        .run();
    let new_root = bash_value(&site.secrets_file(&id), "DB_ROOT_PASSWORD");
    let new_app = bash_value(&site.secrets_file(&id), "DB_PASSWORD");
    assert_ne!(new_root, old_root);
    let all = [old_root.as_str(), old_app.as_str(), new_root.as_str(), new_app.as_str()];
    assert_absent(&format!("{}{}", output.stdout, output.stderr), &all, "agency's output");

    // MySQL: logged in with the old root password, got the new ones in SQL on stdin.
    assert_eq!(mysql.read("/fake/login").unwrap(), old_root);
    let sql = mysql.read("/fake/stdin.sql").unwrap();
    assert!(sql.contains(&format!("ALTER USER IF EXISTS 'root'@'%' IDENTIFIED BY '{new_root}';")), "{sql}");
    assert!(sql.contains(&format!("ALTER USER IF EXISTS 'appuser'@'%' IDENTIFIED BY '{new_app}';")), "{sql}");
    assert_eq!(mysql.read("/fake/root-password").unwrap(), new_root);
    // PostgreSQL: the superuser and the app user (default name: the client id).
    assert_eq!(postgres.read("/fake/login").unwrap(), old_root);
    let sql = postgres.read("/fake/stdin.sql").unwrap();
    assert!(sql.contains(&format!("ALTER ROLE \"postgres\" WITH PASSWORD '{new_root}';")), "{sql}");
    assert!(sql.contains(&format!("'{id}', '{new_app}'")), "{sql}");
    // Another client's database is not touched.
    assert_eq!(bystander.read("/fake/stdin.sql"), None, "another client's container was changed");

    // No password in any argument list: not docker's (the shim's log), not the tools' inside
    // the containers, not the containers' own command lines.
    let argv = fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains(&format!("exec -i -- {} sh -c", mysql.name)), "{argv}");
    assert_absent(&argv, &all, "docker's argv");
    for container in [&mysql, &postgres] {
        assert_absent(&container.read("/fake/argv").unwrap(), &all, "a database tool's argv");
        let inspect =
            containers::docker(&["inspect", "--format", "{{.Path}} {{.Args}} {{.Config.Cmd}}", &container.name]);
        assert_absent(&String::from_utf8_lossy(&inspect.stdout), &all, "docker inspect");
    }

    // A second rotation logs in with the previous generation (the first rotation's root).
    site.test().env("PATH", &path).args(["rotate-secrets", &format!("CLIENT_ID={id}")]).run();
    let newer_root = bash_value(&site.secrets_file(&id), "DB_ROOT_PASSWORD");
    assert_ne!(newer_root, new_root);
    assert_eq!(mysql.read("/fake/login").unwrap(), new_root);
    assert_eq!(mysql.read("/fake/root-password").unwrap(), newer_root);
    assert_eq!(postgres.read("/fake/root-password").unwrap(), newer_root);
}

#[test]
fn a_database_refusing_every_known_password_fails_the_hook_without_leaking_it() {
    if !containers::engine_or_skip("db_passwords::a_database_refusing_every_known_password_fails_the_hook") {
        return;
    }
    let id = containers::unique("dbpw");
    let (old_root, old_app) = (format!("OldRoot{id}y7"), format!("OldApp{id}y7"));
    let site = site_with_client(&id, &old_root, &old_app);
    let mysql = fake_db(&id, "mysql", &[], "a-password-agency-never-had");
    let output = site
        .test()
        .args(["rotate-secrets", &format!("CLIENT_ID={id}")])
        .status(1)
        .stderr_contains("rotate-secrets failed: plugin db-passwords: after_rotate_secrets:")
        .stderr_contains(&format!("in container {} failed (exit 3)", mysql.name))
        .stderr_contains("no known root password")
        .run();
    // The location is the plugin's call that failed.
    let source = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/db-passwords/plugin.rhai")).unwrap();
    let line = source
        .lines()
        .position(|l| l.contains("docker::exec_with_stdin(db.name, [\"sh\", \"-c\", mysql_script()]"))
        .unwrap()
        + 1;
    assert!(output.stderr.contains(&format!("plugins/db-passwords/plugin.rhai:{line}:")), "{}", output.stderr);
    let new_root = bash_value(&site.secrets_file(&id), "DB_ROOT_PASSWORD");
    let new_app = bash_value(&site.secrets_file(&id), "DB_PASSWORD");
    assert_absent(
        &format!("{}{}", output.stdout, output.stderr),
        &[&old_root, &old_app, &new_root, &new_app],
        "the error",
    );
    assert_eq!(mysql.read("/fake/stdin.sql"), None);
}
