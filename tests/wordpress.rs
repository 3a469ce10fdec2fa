//! The built-in WordPress stack of two clients through the shared ingress (SPEC §10), with
//! images built from Debian's packages that honour the official images' environment
//! (tests/images/build): each domain serves its own client's install page, which needs that
//! client's MariaDB; one client's web container cannot reach the other's database;
//! rotate-secrets keeps the site working and the old password is refused; stop-client and
//! deploy-client keep the data.

use std::process::Command;

use crate::{
    containers::{self, docker},
    stacks::{Deployed, Named, TRAEFIK_IMAGE, free_port, inspect, project, wait_for},
    test::Site,
};

const WORDPRESS_IMAGE: &str = "agency-test/wordpress:bookworm";
const MARIADB_IMAGE: &str = "agency-test/mariadb:bookworm";

fn secret(site: &Site, id: &str, key: &str) -> String {
    let text = std::fs::read_to_string(site.secrets_file(id)).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{key}="))).unwrap();
    line.split_once('=').unwrap().1.trim_matches('\'').to_string()
}

fn container_of(id: &str, service: &str) -> String {
    project(id).into_iter().find(|(s, _)| s == service).unwrap_or_else(|| panic!("{id} has no {service}")).1
}

/// `mariadb` in the client's database container as `user` with `password` (handed over by
/// environment, `docker exec -e MYSQL_PWD`), over TCP; its output, or the error.
fn sql(db: &str, user: &str, password: &str, statement: &str) -> Result<String, String> {
    let out = Command::new("docker")
        .env("MYSQL_PWD", password)
        .args(["exec", "-e", "MYSQL_PWD", db, "mariadb", "-h127.0.0.1", &format!("-u{user}"), "-N", "-e", statement])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Whether `from` opens a TCP connection to `address`:`port` (bash's /dev/tcp, 3 s).
fn reaches(from: &str, address: &str, port: u16) -> bool {
    let script = format!("timeout 3 bash -c '</dev/tcp/{address}/{port}' 2>/dev/null");
    docker(&["exec", from, "sh", "-c", &script]).status.success()
}

fn is_install_page(status: u16, body: &str) -> bool {
    status == 200 && body.contains("Installation") && !body.contains("Error establishing a database connection")
}

#[test]
fn two_wordpress_clients_through_the_ingress_survive_rotation_and_a_restart() {
    if !containers::engine_or_skip("wordpress::two_clients") {
        return;
    }
    for image in [WORDPRESS_IMAGE, MARIADB_IMAGE, TRAEFIK_IMAGE] {
        if !docker(&["image", "inspect", image]).status.success() {
            containers::skip("wordpress::two_clients", &format!("no image {image}; run tests/images/build"));
            return;
        }
    }
    let site = Site::with_docker();
    let ids = [containers::unique("wa"), containers::unique("wb")];
    let _cleanup = Deployed::new(&ids);
    let ingress = Named(containers::unique("agency-test-ingress-"));
    let port = free_port();
    let run = |args: &[&str]| {
        let test = site
            .test()
            .env("AGENCY_BACKUPS", "off")
            .env("WORDPRESS_IMAGE", WORDPRESS_IMAGE)
            .env("MARIADB_IMAGE", MARIADB_IMAGE)
            .env("INGRESS_NAME", &ingress.0)
            .env("INGRESS_IMAGE", TRAEFIK_IMAGE)
            .env("INGRESS_BIND", "127.0.0.1")
            .env("INGRESS_HTTP_PORT", &port.to_string())
            .args(args);
        test.run()
    };
    let domain = |id: &str| format!("{id}.example.test");
    for id in &ids {
        run(&[
            "create-client",
            &format!("CLIENT_ID={id}"),
            "CLIENT_NAME=Blog",
            &format!("CLIENT_DOMAIN={}", domain(id)),
        ]);
        run(&["deploy-client", &format!("CLIENT_ID={id}")]);
    }
    run(&["setup-ingress"]);

    // Each domain: its own WordPress, connected to its own MariaDB (the install page needs it).
    for id in &ids {
        let (_, page) = wait_for(port, "/wp-admin/install.php", &domain(id), 180, is_install_page);
        assert!(page.contains(&format!("X-Agency-Client: {id}")), "{page}");
    }

    // acme's web container reaches its own database and not beta's.
    let (a, b) = (&ids[0], &ids[1]);
    let address = |id: &str| {
        let db = inspect(&container_of(id, "db"));
        db["NetworkSettings"]["Networks"][format!("{id}_database")]["IPAddress"].as_str().unwrap().to_string()
    };
    let web_a = container_of(a, "wordpress");
    assert!(reaches(&web_a, &address(a), 3306), "acme's web does not reach its own database (the test proves nothing)");
    assert!(!reaches(&web_a, &address(b), 3306), "acme's web reaches beta's database");

    // Data written with the current password survives stop-client + deploy-client.
    let old = secret(&site, a, "DB_PASSWORD");
    sql(
        &container_of(a, "db"),
        "wordpress",
        &old,
        "CREATE TABLE wordpress.kept (v INT); INSERT INTO wordpress.kept VALUES (42)",
    )
    .unwrap();

    // rotate-secrets: db-passwords sets the new passwords in MariaDB, stack-redeploy restarts
    // WordPress with them; the page still loads and the old password is refused.
    let rotated = run(&["rotate-secrets", &format!("CLIENT_ID={a}")]);
    assert!(rotated.stdout.contains("stack-redeploy"), "{}", rotated.stdout);
    let new = secret(&site, a, "DB_PASSWORD");
    assert_ne!(old, new);
    wait_for(port, "/wp-admin/install.php", &domain(a), 180, is_install_page);
    let db_a = container_of(a, "db");
    assert_eq!(sql(&db_a, "wordpress", &new, "SELECT v FROM wordpress.kept").unwrap(), "42");
    let refused = sql(&db_a, "wordpress", &old, "SELECT 1").unwrap_err();
    assert!(refused.contains("Access denied"), "{refused}");

    run(&["stop-client", &format!("CLIENT_ID={a}")]);
    assert!(project(a).is_empty());
    let (status, _) = crate::stacks::get(port, "/wp-admin/install.php", &domain(a)).unwrap();
    assert_ne!(status, 200, "a stopped client's site still answers");
    run(&["deploy-client", &format!("CLIENT_ID={a}")]);
    wait_for(port, "/wp-admin/install.php", &domain(a), 180, is_install_page);
    let db_a = container_of(a, "db");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let kept = loop {
        match sql(&db_a, "wordpress", &new, "SELECT v FROM wordpress.kept") {
            Ok(value) => break value,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(kept, "42", "the database volume kept its data");
    // beta was never touched.
    wait_for(port, "/wp-admin/install.php", &domain(b), 30, is_install_page);
}
