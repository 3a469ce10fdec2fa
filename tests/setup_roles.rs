//! setup-roles and create-client's realm, offline (realm.json) and live against the fake
//! Keycloak Admin API (SPEC §7 setup-roles, §8), run as the real binary.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use serde_json::Value;

use crate::{
    create_client::{bash_value, create},
    support::fake_keycloak::{FakeKeycloak, Request},
    test::{Output, Site, Test},
};

const ADMIN_PASSWORD: &str = "Kc-admin-pw-0123";

fn live<'a>(test: Test<'a>, fake: &FakeKeycloak) -> Test<'a> {
    test.env("KEYCLOAK_URL", &fake.url()).env("KEYCLOAK_ADMIN", "admin").env("KEYCLOAK_ADMIN_PASSWORD", ADMIN_PASSWORD)
}

fn fake() -> FakeKeycloak {
    FakeKeycloak::builder().admin("admin", ADMIN_PASSWORD).start()
}

fn lines(requests: &[Request]) -> String {
    requests.iter().map(Request::line).collect::<Vec<_>>().join("\n")
}

/// The keycloak steps of a `--json` report: (action, target, outcome).
fn keycloak_steps(output: &Output) -> Vec<(String, String, String)> {
    let json = output.json();
    json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["changes"].as_array().unwrap().clone())
        .filter(|c| c["action"].as_str().unwrap().starts_with("keycloak "))
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_string(),
                c["target"].as_str().unwrap().to_string(),
                c["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn realm_admin_password(site: &Site, id: &str) -> String {
    bash_value(&site.secrets_file(id), "REALM_ADMIN_PASSWORD")
}

fn assert_live_realm(fake: &FakeKeycloak, site: &Site, id: &str, name: &str) {
    let realm = fake.realm(id).unwrap_or_else(|| panic!("realm {id} missing in {:?}", fake.realm_names()));
    assert_eq!(realm["displayName"], name);
    assert_eq!(realm["enabled"], true);
    assert_eq!(fake.composite_names(id, "editor"), vec!["viewer"]);
    assert_eq!(fake.composite_names(id, "realm_admin"), vec!["editor", "realm-management/realm-admin"]);
    assert_eq!(fake.user_password(id, "realm-admin"), Some(realm_admin_password(site, id)));
    assert_eq!(
        fake.user_realm_role_names(id, "realm-admin"),
        vec![format!("default-roles-{id}"), "realm_admin".into()]
    );
    assert!(fake.effective_role_names(id, "realm-admin").contains("realm-management/manage-users"));
}

#[test]
fn setup_roles_live_twice_second_run_sends_no_change() {
    let site = Site::new();
    create(&site, "acme", "ACME Corporation");
    let fake = fake();

    let output = live(site.test(), &fake).args(["--json", "setup-roles", "CLIENT_ID=acme"]).run();
    let steps = keycloak_steps(&output);
    let expected = [
        ("keycloak realm", "acme"),
        ("keycloak role", "acme/viewer"),
        ("keycloak role", "acme/editor"),
        ("keycloak role", "acme/realm_admin"),
        ("keycloak composites", "acme/editor"),
        ("keycloak composites", "acme/realm_admin"),
        ("keycloak group", "acme/admins"),
        ("keycloak group", "acme/editors"),
        ("keycloak group", "acme/viewers"),
        ("keycloak group roles", "acme/admins"),
        ("keycloak group roles", "acme/editors"),
        ("keycloak group roles", "acme/viewers"),
        ("keycloak user", "acme/realm-admin"),
        ("keycloak password", "acme/realm-admin"),
        ("keycloak role mapping", "acme/realm-admin"),
        ("keycloak group membership", "acme/realm-admin"),
    ];
    assert_eq!(steps.iter().map(|(a, t, _)| (a.as_str(), t.as_str())).collect::<Vec<_>>(), expected);
    assert!(steps.iter().all(|(_, _, o)| o == "created"), "{steps:?}");
    assert_live_realm(&fake, &site, "acme", "ACME Corporation");
    assert!(!output.stdout.contains(&realm_admin_password(&site, "acme")));

    fake.clear_requests();
    let output = live(site.test(), &fake).args(["--json", "setup-roles", "CLIENT_ID=acme"]).run();
    let steps = keycloak_steps(&output);
    assert_eq!(steps.len(), expected.len());
    assert!(steps.iter().all(|(_, _, o)| o == "unchanged"), "{steps:?}");
    assert!(fake.mutations().is_empty(), "second run changed Keycloak:\n{}", lines(&fake.requests()));
    assert_live_realm(&fake, &site, "acme", "ACME Corporation");

    // The people's view says the same.
    live(site.test(), &fake)
        .args(["setup-roles", "CLIENT_ID=acme"])
        .stdout_contains("setup-roles: 0 created, 0 updated, 0 removed")
        .run();
}

#[test]
fn create_client_applies_the_realm_live_and_converges() {
    let site = Site::new();
    let fake = FakeKeycloak::builder().prefix("/auth").admin("admin", ADMIN_PASSWORD).start();
    let args = ["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"];
    live(site.test(), &fake).args(args).run();
    assert_live_realm(&fake, &site, "acme", "ACME");
    let realm: Value =
        serde_json::from_str(&fs::read_to_string(site.client_dir("acme").join("keycloak/realm.json")).unwrap())
            .unwrap();
    assert_eq!(realm["users"][0]["username"], "realm-admin");

    fake.clear_requests();
    live(site.test(), &fake).args(args).stdout_contains("0 created, 0 updated, 0 removed").run();
    assert!(fake.mutations().is_empty(), "{}", lines(&fake.requests()));
}

#[test]
fn token_expiring_mid_run_is_renewed() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let fake = FakeKeycloak::builder().admin("admin", ADMIN_PASSWORD).expire_tokens_after(3).start();
    live(site.test(), &fake).args(["setup-roles", "CLIENT_ID=acme"]).run();
    assert_live_realm(&fake, &site, "acme", "ACME");
    let requests = fake.requests();
    let rejected = requests.iter().filter(|r| r.status == 401).count();
    let logins = requests.iter().filter(|r| r.is_token_request()).count();
    assert!(rejected >= 2, "tokens expired mid-run:\n{}", lines(&requests));
    assert_eq!(logins, rejected + 1, "one new login per rejected token:\n{}", lines(&requests));
}

#[test]
fn wrong_admin_password_fails_clearly() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let fake = fake();
    let wrong = "wrong-Password-987";
    let output = site
        .test()
        .env("KEYCLOAK_URL", &fake.url())
        .env("KEYCLOAK_ADMIN_PASSWORD", wrong)
        .args(["setup-roles", "CLIENT_ID=acme"])
        .status(1)
        .stderr_contains("Keycloak rejected the admin login of user admin in realm master")
        .stderr_contains("Invalid user credentials")
        .stderr_contains("check KEYCLOAK_ADMIN and KEYCLOAK_ADMIN_PASSWORD")
        .run();
    assert!(!output.stderr.contains(wrong) && !output.stdout.contains(wrong));
    assert!(fake.mutations().is_empty());
    let audit = fs::read_to_string(site.log_root().join("clients/acme/audit.log")).unwrap();
    assert!(audit.lines().last().unwrap().contains("\"outcome\":\"failed\""), "{audit}");
    assert!(!audit.contains(wrong));
}

#[test]
fn hostile_client_name_stays_valid_json() {
    let name = "Evil \"Corp\" \\ {\"enabled\":false} </script><b>x</b> $(id) `id` 'q' ünï 日本";
    let site = Site::new();
    let fake = fake();
    live(site.test(), &fake)
        .args(["create-client", "CLIENT_ID=evil", &format!("CLIENT_NAME={name}"), "CLIENT_DOMAIN=evil.example.com"])
        .run();
    let text = fs::read_to_string(site.client_dir("evil").join("keycloak/realm.json")).unwrap();
    let realm: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(realm["displayName"], name);
    assert_eq!(realm["enabled"], true);
    assert!(realm.get("displayNameHtml").is_none());
    assert_live_realm(&fake, &site, "evil", name);
    // What reached Keycloak was one JSON document with the name as one string.
    let create = fake.mutations().into_iter().find(|r| r.path == "/admin/realms").unwrap();
    assert_eq!(create.json()["displayName"], name);
}

#[test]
fn curl_argv_on_path_never_holds_a_password_or_token() {
    let site = Site::new();
    let fake = FakeKeycloak::builder().admin("admin", ADMIN_PASSWORD).expire_tokens_after(4).start();
    let shim_dir = site.path().join("shim");
    fs::create_dir_all(&shim_dir).unwrap();
    let log = site.path().join("curl-argv.log");
    let real = which_curl();
    let shim = shim_dir.join("curl");
    fs::write(
        &shim,
        format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n", log.display(), real.display()),
    )
    .unwrap();
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    let site_path = site.env().into_iter().find(|(k, _)| k == "PATH").map(|(_, v)| v).unwrap();
    let path = format!("{}:{site_path}", shim_dir.display());

    let args = ["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"];
    live(site.test(), &fake).env("PATH", &path).args(args).run();
    // With a routed service, so a client secret travels too.
    crate::create_client::record_oidc_service(&site, "acme", "web");
    live(site.test(), &fake).env("PATH", &path).args(["setup-roles", "CLIENT_ID=acme", "RESET_PASSWORD=1"]).run();
    live(site.test(), &fake)
        .env("PATH", &path)
        .args(["rotate-secrets", "CLIENT_ID=acme", "SECRET=OIDC_SECRET_WEB"])
        .run();
    assert_live_realm(&fake, &site, "acme", "ACME");

    let argv = fs::read_to_string(&log).expect("curl was called through the shim");
    let calls: Vec<&str> = argv.lines().collect();
    assert_eq!(calls.len(), fake.requests().len(), "every request went through the shim");
    assert!(calls.iter().all(|line| *line == "-q -sS -K -"), "{argv}");
    let mut secrets = fake.issued_tokens();
    assert!(secrets.len() >= 4, "several tokens were issued");
    secrets.push(ADMIN_PASSWORD.to_string());
    secrets.push(realm_admin_password(&site, "acme"));
    secrets.push(bash_value(&site.secrets_file("acme"), "OIDC_SECRET_WEB"));
    secrets.extend(fake.client_rep("acme", "web").and_then(|c| c["secret"].as_str().map(String::from)));
    let history = site.root().join("secrets/acme/history");
    for entry in fs::read_dir(&history).into_iter().flatten().flatten() {
        secrets.push(bash_value(&entry.path(), "OIDC_SECRET_WEB"));
    }
    for secret in &secrets {
        assert!(!argv.contains(secret.as_str()), "a secret reached curl's argv");
    }
}

fn which_curl() -> std::path::PathBuf {
    std::env::var("PATH")
        .unwrap()
        .split(':')
        .map(|dir| Path::new(dir).join("curl"))
        .find(|p| p.is_file())
        .expect("curl is installed")
}

#[test]
fn dry_run_reads_but_changes_nothing() {
    let site = Site::new();
    let fake = fake();
    // A first create-client, planned: no secrets.env yet, and Keycloak only read.
    let before = site.snapshot();
    live(site.test(), &fake)
        .args(["-n", "create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .stdout_contains("would create keycloak realm acme")
        .stdout_contains("would create keycloak password acme/realm-admin")
        .stdout_contains("nothing was changed")
        .run();
    assert_eq!(site.snapshot(), before);
    assert!(fake.mutations().is_empty(), "{}", lines(&fake.requests()));
    assert!(
        fake.requests().iter().any(|r| r.path == "/admin/realms/acme" && r.status == 404),
        "the plan read Keycloak"
    );

    create(&site, "acme", "ACME");
    let output = live(site.test(), &fake).args(["--json", "-n", "setup-roles", "CLIENT_ID=acme"]).run();
    let json = output.json();
    assert_eq!(json["dry_run"], true);
    let steps = keycloak_steps(&output);
    assert_eq!(steps.len(), 16);
    assert!(steps.iter().all(|(_, _, o)| o == "created"), "{steps:?}");
    assert!(fake.mutations().is_empty());
    assert!(fake.realm("acme").is_none());
}

#[test]
fn offline_setup_roles_brings_realm_json_up_to_date() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let file = site.client_dir("acme").join("keycloak/realm.json");
    let mut realm: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    // An operator's edits: a role of their own, and our editor role gone; a password pasted in.
    let roles = realm["roles"]["realm"].as_array_mut().unwrap();
    roles.retain(|r| r["name"] != "editor");
    roles.push(serde_json::json!({"name": "auditor"}));
    realm["users"][0]["credentials"] = serde_json::json!([{"type": "password", "value": "pasted"}]);
    fs::write(&file, serde_json::to_string(&realm).unwrap()).unwrap();

    site.test()
        .args(["setup-roles", "CLIENT_ID=acme"])
        .stdout_contains("KEYCLOAK_URL is not set")
        .stdout_contains(&format!("kc.sh import --file {}", file.display()))
        .stdout_contains("1 updated")
        .run();
    let text = fs::read_to_string(&file).unwrap();
    let realm: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> =
        realm["roles"]["realm"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"editor") && names.contains(&"auditor"), "{names:?}");
    assert!(!text.contains("pasted") && !text.contains("credentials"));
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o640);

    site.test().args(["setup-roles", "CLIENT_ID=acme"]).stdout_contains("0 created, 0 updated").run();

    // That file, imported as `kc.sh import` would, then set up live: only the password is missing.
    let fake = fake();
    fake.import_realm(&realm);
    let output = live(site.test(), &fake).args(["--json", "setup-roles", "CLIENT_ID=acme"]).run();
    let changed: Vec<_> = keycloak_steps(&output).into_iter().filter(|(_, _, o)| o != "unchanged").collect();
    assert_eq!(changed, [("keycloak password".into(), "acme/realm-admin".into(), "created".into())]);
    assert_live_realm(&fake, &site, "acme", "ACME");
}

#[test]
fn password_is_reset_only_when_asked() {
    let site = Site::new();
    let fake = fake();
    let args = ["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"];
    live(site.test(), &fake).args(args).run();
    let first = realm_admin_password(&site, "acme");

    // secrets.env gets a new value (as rotate-secrets would write it).
    let path = site.secrets_file("acme");
    let text = fs::read_to_string(&path).unwrap().replace(&first, "new-Realm-admin-password-42");
    fs::write(&path, text).unwrap();
    live(site.test(), &fake).args(["setup-roles", "CLIENT_ID=acme"]).stdout_contains("0 updated").run();
    assert_eq!(fake.user_password("acme", "realm-admin"), Some(first));

    live(site.test(), &fake)
        .args(["setup-roles", "CLIENT_ID=acme", "RESET_PASSWORD=1"])
        .stdout_contains("1 updated")
        .run();
    assert_eq!(fake.user_password("acme", "realm-admin").as_deref(), Some("new-Realm-admin-password-42"));
}

#[test]
fn admin_credentials_from_a_0600_file() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let fake = fake();
    let file = site.root().join("secrets/keycloak.env");
    fs::write(&file, format!("KEYCLOAK_URL='{}'\nKEYCLOAK_ADMIN_PASSWORD='{ADMIN_PASSWORD}'\n", fake.url())).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    site.test().args(["setup-roles", "CLIENT_ID=acme"]).run();
    assert_live_realm(&fake, &site, "acme", "ACME");

    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    site.test()
        .args(["setup-roles", "CLIENT_ID=acme"])
        .status(1)
        .stderr_contains("has mode 0644")
        .stderr_contains("chmod 600")
        .run();
}

#[test]
fn setup_roles_needs_the_client() {
    Test::new()
        .args(["setup-roles", "CLIENT_ID=ghost"])
        .status(1)
        .stderr_contains("client ghost does not exist")
        .stderr_contains("run create-client first")
        .run();
}

#[test]
fn unreachable_keycloak_is_reported() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    site.test()
        .env("KEYCLOAK_URL", &format!("http://127.0.0.1:{port}"))
        .env("KEYCLOAK_ADMIN_PASSWORD", "x")
        .args(["setup-roles", "CLIENT_ID=acme"])
        .status(1)
        .stderr_contains(&format!("could not reach Keycloak at http://127.0.0.1:{port}"))
        .run();
}

/// The whole task against a real Keycloak, only when `KEYCLOAK_TEST_URL` is set (admin from
/// `KEYCLOAK_TEST_ADMIN` / `KEYCLOAK_TEST_ADMIN_PASSWORD`, default admin/admin). The realm it
/// creates is deleted afterwards.
#[test]
fn real_keycloak_setup_roles_twice() {
    let Ok(url) = std::env::var("KEYCLOAK_TEST_URL") else {
        crate::support::loud_skip("real_keycloak_setup_roles_twice: KEYCLOAK_TEST_URL is not set");
        return;
    };
    let user = std::env::var("KEYCLOAK_TEST_ADMIN").unwrap_or_else(|_| "admin".into());
    let password = std::env::var("KEYCLOAK_TEST_ADMIN_PASSWORD").unwrap_or_else(|_| "admin".into());
    let id = format!("agencyt{}", std::process::id());
    let settings = agency::drivers::keycloak::KeycloakSettings::new(
        &url,
        &user,
        agency::drivers::keycloak::Secret::new(password.clone()),
    )
    .unwrap();
    let kc = agency::drivers::keycloak::Keycloak::new(settings).unwrap();
    struct Cleanup(agency::drivers::keycloak::Keycloak, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.delete_realm(&self.1);
        }
    }
    let cleanup = Cleanup(kc, id.clone());

    let site = Site::new();
    let run = |args: &[&str]| {
        let test = site
            .test()
            .env("KEYCLOAK_URL", &url)
            .env("KEYCLOAK_ADMIN", &user)
            .env("KEYCLOAK_ADMIN_PASSWORD", &password)
            .args(args);
        test.run()
    };
    run(&[
        "create-client",
        &format!("CLIENT_ID={id}"),
        "CLIENT_NAME=Agency \"test\"",
        &format!("CLIENT_DOMAIN={id}.example.com"),
        "SSO_SESSION_IDLE=2h",
        "BRUTE_FORCE_FAILURES=4",
    ]);
    let output = run(&["--json", "setup-roles", &format!("CLIENT_ID={id}")]);
    assert!(keycloak_steps(&output).iter().all(|(_, _, o)| o == "unchanged"), "{}", output.stdout);
    let kc = &cleanup.0;
    let realm = kc.realm(&id).unwrap().unwrap();
    assert_eq!(realm["displayName"], "Agency \"test\"");
    assert_eq!(realm["ssoSessionIdleTimeout"], 7200);
    assert_eq!(realm["failureFactor"], 4);
    let user = kc.user(&id, "realm-admin").unwrap().unwrap();
    let groups = kc.groups(&id).unwrap();
    for (group, role) in [("admins", "realm_admin"), ("editors", "editor"), ("viewers", "viewer")] {
        let found = groups.iter().find(|g| g["name"] == group).unwrap_or_else(|| panic!("no group {group}"));
        let roles = kc.group_realm_roles(&id, found["id"].as_str().unwrap()).unwrap();
        assert!(roles.iter().any(|r| r["name"] == role), "group {group}: {roles:?}");
    }
    let joined = kc.user_groups(&id, user["id"].as_str().unwrap()).unwrap();
    assert!(joined.iter().any(|g| g["name"] == "admins"), "{joined:?}");

    // A routed service's confidential client, then its rotated secret.
    crate::create_client::record_oidc_service(&site, &id, "web");
    let output = run(&["--json", "setup-roles", &format!("CLIENT_ID={id}")]);
    assert!(
        keycloak_steps(&output).iter().any(|(a, _, o)| a == "keycloak client" && o == "created"),
        "{}",
        output.stdout
    );
    let output = run(&["--json", "setup-roles", &format!("CLIENT_ID={id}")]);
    assert!(keycloak_steps(&output).iter().all(|(_, _, o)| o == "unchanged"), "{}", output.stdout);
    let client = kc.client(&id, "web").unwrap().expect("client web");
    let secret_of = |kc: &agency::drivers::keycloak::Keycloak| {
        kc.client_secret(&id, client["id"].as_str().unwrap()).unwrap().unwrap().expose().to_string()
    };
    assert_eq!(secret_of(kc), bash_value(&site.secrets_file(&id), "OIDC_SECRET_WEB"));
    run(&["rotate-secrets", &format!("CLIENT_ID={id}"), "SECRET=OIDC_SECRET_WEB"]);
    assert_eq!(secret_of(kc), bash_value(&site.secrets_file(&id), "OIDC_SECRET_WEB"));
}

/// Realm settings given to create-client are recorded in client.env and realm.json, kept on a
/// re-run without them, applied live by setup-roles, and drift from them is reported by status
/// and put back by setup-roles.
#[test]
fn realm_settings_are_recorded_applied_and_drift_is_put_back() {
    let site = Site::new();
    site.test()
        .args([
            "create-client",
            "CLIENT_ID=acme",
            "CLIENT_NAME=ACME",
            "CLIENT_DOMAIN=acme.example.com",
            "KEYCLOAK_LOGIN_THEME=acme-brand",
            "PASSWORD_POLICY=length(14) and upperCase(1) and notUsername",
            "SSO_SESSION_IDLE=2h",
            "BRUTE_FORCE_FAILURES=3",
        ])
        .run();
    let env = site.client_dir("acme").join("client.env");
    for (key, value) in [
        ("KEYCLOAK_LOGIN_THEME", "acme-brand"),
        ("PASSWORD_POLICY", "length(14) and upperCase(1) and notUsername"),
        ("SSO_SESSION_IDLE", "2h"),
        ("BRUTE_FORCE_FAILURES", "3"),
    ] {
        assert_eq!(bash_value(&env, key), value, "{key}");
    }
    let realm_file = site.client_dir("acme").join("keycloak/realm.json");
    let realm_json = || -> Value { serde_json::from_str(&fs::read_to_string(&realm_file).unwrap()).unwrap() };
    let realm = realm_json();
    assert_eq!(realm["loginTheme"], "acme-brand");
    assert_eq!(realm["passwordPolicy"], "length(14) and upperCase(1) and notUsername");
    assert_eq!(realm["ssoSessionIdleTimeout"], 7200);
    assert_eq!(realm["failureFactor"], 3);
    assert_eq!(realm["groups"][0]["name"], "admins");
    assert_eq!(realm["groups"][0]["realmRoles"], serde_json::json!(["realm_admin"]));
    assert_eq!(realm["users"][0]["groups"], serde_json::json!(["/admins"]));

    // A re-run without them keeps them.
    create(&site, "acme", "ACME");
    assert_eq!(bash_value(&env, "KEYCLOAK_LOGIN_THEME"), "acme-brand");
    assert_eq!(realm_json()["loginTheme"], "acme-brand");

    // Live: applied, then drift is reported by status and put back by setup-roles.
    let fake = fake();
    live(site.test(), &fake).args(["setup-roles", "CLIENT_ID=acme"]).run();
    let live_realm = fake.realm("acme").unwrap();
    assert_eq!(live_realm["loginTheme"], "acme-brand");
    assert_eq!(live_realm["ssoSessionIdleTimeout"], 7200);
    assert_eq!(fake.user_group_names("acme", "realm-admin"), vec!["admins"]);

    fake.set_realm_attribute("acme", "loginTheme", serde_json::json!("keycloak"));
    let output = live(site.test(), &fake).args(["multi-tenancy-status", "CLIENT_ID=acme"]).status(1).run();
    assert!(
        output.stdout.contains("realm acme in Keycloak differs from the recorded settings in loginTheme"),
        "{}",
        output.stdout
    );
    fake.clear_requests();
    let output = live(site.test(), &fake).args(["--json", "setup-roles", "CLIENT_ID=acme"]).run();
    let changed: Vec<_> = keycloak_steps(&output).into_iter().filter(|(_, _, o)| o != "unchanged").collect();
    assert_eq!(changed, vec![("keycloak realm".to_string(), "acme".to_string(), "updated".to_string())]);
    let put = fake.mutations().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.json(), serde_json::json!({"realm": "acme", "loginTheme": "acme-brand"}));
    let output = live(site.test(), &fake).args(["--json", "multi-tenancy-status", "CLIENT_ID=acme"]).run_unchecked();
    assert!(!output.stdout.contains("differs from the recorded settings"), "{}", output.stdout);

    // A new value given to setup-roles is recorded and applied.
    live(site.test(), &fake).args(["setup-roles", "CLIENT_ID=acme", "SSO_SESSION_IDLE=45m"]).run();
    assert_eq!(bash_value(&env, "SSO_SESSION_IDLE"), "45m");
    assert_eq!(fake.realm("acme").unwrap()["ssoSessionIdleTimeout"], 2700);
    fake.clear_requests();
    live(site.test(), &fake).args(["setup-roles", "CLIENT_ID=acme"]).run();
    assert!(fake.mutations().is_empty(), "{}", lines(&fake.requests()));

    // Values that are not settings stop the run before anything changes.
    for bad in ["PASSWORD_POLICY=length(12) and x\"y", "KEYCLOAK_LOGIN_THEME=../x", "SSO_SESSION_IDLE=soon"] {
        site.test().args(["setup-roles", "CLIENT_ID=acme", bad]).status(2).stderr_contains("invalid ").run();
    }
}

/// `keycloak::realm_status`, the realm check of multi-tenancy-status, from a site task.
#[test]
fn realm_status_checks_the_file_and_the_live_realm() {
    let site = Site::new();
    site.site_file(
        "tasks/realm-status.toml",
        r#"description = "realm check"
lock = "none"
script = '''
let c = layout::client(CLIENT_ID);
keycloak::realm_status(CLIENT_ID, c.realm_file, if fs::exists(c.env_file) { envfile::read(c.env_file) } else { #{} })
'''
[vars.CLIENT_ID]
required = true
kind = "client_id"
"#,
    );
    // A map with `ok: false` makes the task exit 1, as multi-tenancy-status does.
    let status = |test: Test| {
        let output = test.args(["--json", "realm-status", "CLIENT_ID=acme"]).run_unchecked();
        let result = output.json()["tasks"][0]["result"].clone();
        assert_eq!(output.status, if result["ok"] == true { 0 } else { 1 }, "{}", output.stdout);
        result
    };

    let result = status(site.test());
    assert_eq!(result["ok"], false);
    assert!(result["problems"][0].as_str().unwrap().contains("realm.json is missing"), "{result}");

    create(&site, "acme", "ACME");
    let result = status(site.test());
    assert_eq!(result, serde_json::json!({"ok": true, "source": "file", "problems": []}));

    let fake = fake();
    let result = status(live(site.test(), &fake));
    assert_eq!(result["source"], "live");
    assert_eq!(result["problems"], serde_json::json!(["realm acme does not exist in Keycloak"]));
    assert!(fake.mutations().is_empty());

    live(site.test(), &fake).args(["setup-roles", "CLIENT_ID=acme"]).run();
    assert_eq!(status(live(site.test(), &fake)), serde_json::json!({"ok": true, "source": "live", "problems": []}));

    // A role removed in Keycloak shows.
    use agency::drivers::keycloak::{Keycloak, KeycloakSettings, Secret};
    let kc = Keycloak::new(KeycloakSettings::new(&fake.url(), "admin", Secret::new(ADMIN_PASSWORD)).unwrap()).unwrap();
    kc.admin_call("DELETE", "/admin/realms/acme/roles/viewer", None).unwrap();
    let result = status(live(site.test(), &fake));
    assert_eq!(
        result["problems"],
        serde_json::json!([
            "realm acme lacks role viewer in Keycloak",
            "Keycloak: give group viewers the realm roles viewer in realm acme (setup-roles does it)"
        ])
    );
}

/// A routed service recorded in OIDC_SERVICES (an operator or a site plugin records it) gets a confidential
/// OIDC client with redirect URIs from CLIENT_DOMAIN and the secret from secrets.env, generated
/// once; a second run sends nothing; a drifted redirect URI is reported and put back; the
/// secret never shows.
#[test]
fn a_routed_service_gets_a_confidential_client_with_the_secret_from_secrets_env() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    crate::create_client::record_oidc_service(&site, "acme", "web");

    let fake = fake();
    let output = live(site.test(), &fake).args(["--json", "setup-roles", "CLIENT_ID=acme"]).run();
    let secret = bash_value(&site.secrets_file("acme"), "OIDC_SECRET_WEB");
    assert!(secret.len() >= 32, "a generated secret: {secret:?}");
    let client = fake.client_rep("acme", "web").expect("client web exists");
    assert_eq!(client["publicClient"], false);
    assert_eq!(client["secret"], secret.as_str());
    assert_eq!(client["redirectUris"], serde_json::json!(["https://acme.example.com/*"]));
    assert_eq!(client["webOrigins"], serde_json::json!(["https://acme.example.com"]));
    assert!(!output.stdout.contains(&secret) && !output.stderr.contains(&secret));
    for request in fake.requests() {
        assert!(!request.line().contains(&secret), "a request line holds the secret: {}", request.line());
    }
    let realm_json = fs::read_to_string(site.client_dir("acme").join("keycloak/realm.json")).unwrap();
    assert!(realm_json.contains("\"clientId\": \"web\"") && !realm_json.contains(&secret), "{realm_json}");

    fake.clear_requests();
    live(site.test(), &fake).args(["setup-roles", "CLIENT_ID=acme"]).run();
    assert!(fake.mutations().is_empty(), "{}", lines(&fake.requests()));
    assert_eq!(bash_value(&site.secrets_file("acme"), "OIDC_SECRET_WEB"), secret, "generated once");

    // Drift: another redirect URI and another secret in Keycloak.
    use agency::drivers::keycloak::{Keycloak, KeycloakSettings, Secret};
    let kc = Keycloak::new(KeycloakSettings::new(&fake.url(), "admin", Secret::new(ADMIN_PASSWORD)).unwrap()).unwrap();
    let uuid = client["id"].as_str().unwrap();
    kc.update_client("acme", uuid, &serde_json::json!({"redirectUris": ["https://evil.example.net/*"], "secret": "x"}))
        .unwrap();
    let output = live(site.test(), &fake).args(["multi-tenancy-status", "CLIENT_ID=acme"]).status(1).run();
    assert!(output.stdout.contains("client web of realm acme differs in redirectUris"), "{}", output.stdout);
    let output = live(site.test(), &fake).args(["--json", "setup-roles", "CLIENT_ID=acme"]).run();
    let changed: Vec<_> = keycloak_steps(&output).into_iter().filter(|(_, _, o)| o != "unchanged").collect();
    assert_eq!(
        changed.iter().map(|(a, t, o)| (a.as_str(), t.as_str(), o.as_str())).collect::<Vec<_>>(),
        vec![("keycloak client", "acme/web", "updated"), ("keycloak client secret", "acme/web", "updated")]
    );
    let client = fake.client_rep("acme", "web").unwrap();
    assert_eq!(client["redirectUris"], serde_json::json!(["https://acme.example.com/*"]));
    assert_eq!(client["secret"], secret.as_str());

    // rotate-secrets sets the new secret in Keycloak before the swap.
    let output =
        live(site.test(), &fake).args(["--json", "rotate-secrets", "CLIENT_ID=acme", "SECRET=OIDC_SECRET_WEB"]).run();
    let rotated = bash_value(&site.secrets_file("acme"), "OIDC_SECRET_WEB");
    assert_ne!(rotated, secret);
    assert_eq!(fake.client_rep("acme", "web").unwrap()["secret"], rotated.as_str());
    assert!(!output.stdout.contains(&rotated) && !output.stderr.contains(&rotated));
}
