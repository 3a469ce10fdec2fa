//! The Keycloak driver against the fake Admin API (and a real Keycloak when
//! `KEYCLOAK_TEST_URL` is set).

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use agency::{
    drivers::{
        keycloak::{IfExists, Keycloak, KeycloakSettings, Secret},
        process,
    },
    tenant::realm::{RealmSettings, RealmSpec, RoleSpec, reconcile::RealmOutcome},
};
use serde_json::json;

use crate::support::fake_keycloak::{FakeKeycloak, Request};

const ADMIN_PASSWORD: &str = "admin-password";
const REALM_ADMIN_PASSWORD: &str = "Xq7-realm-admin-secret_value";

fn client(fake: &FakeKeycloak) -> Keycloak {
    let settings = KeycloakSettings::new(&fake.url(), "admin", Secret::new(ADMIN_PASSWORD)).unwrap();
    Keycloak::new(settings).unwrap()
}

fn spec() -> RealmSpec {
    RealmSpec::for_client("acme", "ACME Corporation", RealmSettings::default())
}

fn lines(requests: &[Request]) -> String {
    requests.iter().map(Request::line).collect::<Vec<_>>().join("\n")
}

fn assert_realm_set_up(fake: &FakeKeycloak) {
    let realm = fake.realm("acme").expect("realm acme exists");
    assert_eq!(realm["displayName"], "ACME Corporation");
    assert_eq!(realm["enabled"], true);
    assert_eq!(realm["bruteForceProtected"], true);
    let roles = fake.realm_role_names("acme");
    for role in ["realm_admin", "editor", "viewer"] {
        assert!(roles.contains(&role.to_string()), "role {role} missing: {roles:?}");
    }
    assert_eq!(fake.composite_names("acme", "viewer"), Vec::<String>::new());
    assert_eq!(fake.composite_names("acme", "editor"), vec!["viewer"]);
    assert_eq!(fake.composite_names("acme", "realm_admin"), vec!["editor", "realm-management/realm-admin"]);
    let user = fake.user("acme", "realm-admin").expect("realm admin user exists");
    assert_eq!(user["enabled"], true);
    assert_eq!(fake.user_password("acme", "realm-admin").as_deref(), Some(REALM_ADMIN_PASSWORD));
    assert_eq!(fake.user_realm_role_names("acme", "realm-admin"), vec!["default-roles-acme", "realm_admin"]);
    assert_eq!(fake.group_names("acme"), vec!["admins", "editors", "viewers"]);
    for (group, role) in [("admins", "realm_admin"), ("editors", "editor"), ("viewers", "viewer")] {
        assert_eq!(fake.group_role_names("acme", group), vec![role], "group {group}");
    }
    assert_eq!(fake.user_group_names("acme", "realm-admin"), vec!["admins"]);
    let effective = fake.effective_role_names("acme", "realm-admin");
    for role in ["viewer", "editor", "realm-management/manage-users", "realm-management/manage-realm"] {
        assert!(effective.contains(role), "realm admin lacks {role}: {effective:?}");
    }
}

fn setup_twice(prefix: &str) {
    let fake = FakeKeycloak::builder().prefix(prefix).start();
    let kc = client(&fake);
    let password = Secret::new(REALM_ADMIN_PASSWORD);

    let first = kc.setup_realm(&spec(), Some(&password), false).unwrap();
    let subjects: Vec<&str> = first.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "keycloak realm acme",
            "keycloak role acme/viewer",
            "keycloak role acme/editor",
            "keycloak role acme/realm_admin",
            "keycloak composites acme/editor",
            "keycloak composites acme/realm_admin",
            "keycloak group acme/admins",
            "keycloak group acme/editors",
            "keycloak group acme/viewers",
            "keycloak group roles acme/admins",
            "keycloak group roles acme/editors",
            "keycloak group roles acme/viewers",
            "keycloak user acme/realm-admin",
            "keycloak password acme/realm-admin",
            "keycloak role mapping acme/realm-admin",
            "keycloak group membership acme/realm-admin",
        ]
    );
    assert!(first.iter().all(|(_, o)| *o == RealmOutcome::Created), "{first:?}");
    assert_realm_set_up(&fake);
    let requests = fake.requests();
    assert!(
        requests.iter().skip(1).all(|r| r.path.starts_with(&format!("{prefix}/"))),
        "every call after the detection uses prefix {prefix:?}:\n{}",
        lines(&requests)
    );
    // Created with 201 and Location, updated with 204: nothing else was accepted.
    for request in fake.mutations() {
        assert!(matches!(request.status, 201 | 204), "{}", request.line());
    }

    fake.clear_requests();
    let second = kc.setup_realm(&spec(), Some(&password), false).unwrap();
    assert!(second.iter().all(|(_, o)| *o == RealmOutcome::Unchanged), "{second:?}");
    assert_eq!(fake.mutations().len(), 0, "second run mutated:\n{}", lines(&fake.requests()));

    // A new client (new process) finds the same: it only logs in and reads.
    fake.clear_requests();
    let third = client(&fake).setup_realm(&spec(), Some(&password), false).unwrap();
    assert!(third.iter().all(|(_, o)| *o == RealmOutcome::Unchanged), "{third:?}");
    assert!(fake.requests().iter().all(|r| r.method == "GET" || r.is_token_request()));
}

#[test]
fn setup_twice_without_prefix() {
    setup_twice("");
}

#[test]
fn setup_twice_with_legacy_auth_prefix() {
    setup_twice("/auth");
}

#[test]
fn realm_admin_administers_its_own_realm_only() {
    let fake = FakeKeycloak::start();
    client(&fake).setup_realm(&spec(), Some(&Secret::new(REALM_ADMIN_PASSWORD)), false).unwrap();
    client(&fake).ensure_realm(&RealmSpec::for_client("other", "Other", RealmSettings::default())).unwrap();

    let mut settings = KeycloakSettings::new(&fake.url(), "realm-admin", Secret::new(REALM_ADMIN_PASSWORD)).unwrap();
    settings.admin_realm = "acme".into();
    let realm_admin = Keycloak::new(settings).unwrap();
    assert!(realm_admin.realm("acme").unwrap().is_some());
    assert!(realm_admin.user("acme", "realm-admin").unwrap().is_some());
    let err = realm_admin.realm("other").unwrap_err().to_string();
    assert!(err.contains("HTTP 403"), "{err}");
}

#[test]
fn explicit_prefix_skips_detection() {
    let fake = FakeKeycloak::builder().prefix("/auth").start();
    let mut settings = KeycloakSettings::new(&fake.url(), "admin", Secret::new(ADMIN_PASSWORD)).unwrap();
    settings.path_prefix = Some("auth".into());
    let kc = Keycloak::new(settings).unwrap();
    assert_eq!(kc.ensure_realm(&spec()).unwrap(), RealmOutcome::Created);
    let requests = fake.requests();
    assert!(requests.iter().all(|r| !r.path.contains(".well-known")), "{}", lines(&requests));
    assert!(requests.iter().all(|r| r.path.starts_with("/auth/")), "{}", lines(&requests));
}

#[test]
fn token_expiring_mid_run_is_renewed_and_the_call_retried() {
    let fake = FakeKeycloak::builder().expire_tokens_after(4).start();
    let kc = client(&fake);
    let report = kc.setup_realm(&spec(), Some(&Secret::new(REALM_ADMIN_PASSWORD)), false).unwrap();
    assert!(report.iter().all(|(_, o)| *o == RealmOutcome::Created), "{report:?}");
    assert_realm_set_up(&fake);

    let requests = fake.requests();
    let rejected: Vec<usize> = (0..requests.len()).filter(|&i| requests[i].status == 401).collect();
    assert!(!rejected.is_empty(), "no call hit an expired token:\n{}", lines(&requests));
    for &i in &rejected {
        // The 401 is followed by a new login and the same call again, which succeeds.
        let (login, retry) = (&requests[i + 1], &requests[i + 2]);
        assert!(login.is_token_request() && login.status == 200, "{}", lines(&requests));
        assert_eq!(
            (retry.method.as_str(), retry.path.as_str()),
            (requests[i].method.as_str(), requests[i].path.as_str())
        );
        assert_eq!(retry.body, requests[i].body);
        assert!(retry.status != 401, "{}", retry.line());
    }
    // Nothing was done twice.
    let creates: Vec<_> = fake.mutations().into_iter().filter(|r| r.status == 409).collect();
    assert!(creates.is_empty(), "{}", lines(&creates));
}

#[test]
fn token_renewed_before_expiry_uses_the_refresh_token() {
    // Tokens announced as expiring at once: the client renews before every call.
    let fake = FakeKeycloak::builder().announce_lifespan(std::time::Duration::ZERO).start();
    let kc = client(&fake);
    kc.setup_realm(&spec(), Some(&Secret::new(REALM_ADMIN_PASSWORD)), false).unwrap();
    let grants: Vec<String> =
        fake.requests().iter().filter(|r| r.is_token_request()).map(|r| url_param(&r.body, "grant_type")).collect();
    assert_eq!(grants[0], "password");
    assert!(grants.len() > 5, "{grants:?}");
    assert!(grants[1..].iter().all(|g| g == "refresh_token"), "{grants:?}");
    assert!(fake.requests().iter().all(|r| r.status != 401));
}

fn url_param(form: &str, name: &str) -> String {
    form.split('&').find_map(|pair| pair.strip_prefix(&format!("{name}="))).unwrap_or_default().to_string()
}

#[test]
fn wrong_admin_password_is_one_clear_error() {
    let fake = FakeKeycloak::start();
    let wrong = "not-the-Password-42";
    let settings = KeycloakSettings::new(&fake.url(), "admin", Secret::new(wrong)).unwrap();
    let kc = Keycloak::new(settings).unwrap();
    let err = format!("{:#}", kc.setup_realm(&spec(), None, false).unwrap_err());
    assert!(err.contains("Invalid user credentials"), "{err}");
    assert!(err.contains("KEYCLOAK_ADMIN_PASSWORD"), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(!err.contains(wrong), "{err}");
    assert!(fake.mutations().is_empty());
    assert!(fake.realm("acme").is_none());
}

#[test]
fn errors_quote_keycloak() {
    let fake = FakeKeycloak::start();
    let kc = client(&fake);
    let rep = json!({"realm": "acme", "enabled": true});
    kc.create_realm(&rep).unwrap();
    let err = kc.create_realm(&rep).unwrap_err().to_string();
    assert_eq!(
        err,
        "Keycloak refused to create realm acme: HTTP 409 Conflict detected. See logs for details (POST /admin/realms)"
    );

    kc.create_user("acme", &json!({"username": "bob", "enabled": true})).unwrap();
    let err = kc.create_user("acme", &json!({"username": "Bob"})).unwrap_err().to_string();
    assert!(err.contains("HTTP 409 User exists with same username"), "{err}");

    kc.create_realm_role("acme", &json!({"name": "viewer"})).unwrap();
    let err = kc.create_realm_role("acme", &json!({"name": "viewer"})).unwrap_err().to_string();
    assert!(err.contains("HTTP 409 Role with name viewer already exists"), "{err}");

    let err = kc.add_role_composites("acme", "viewer", &[json!({"id": "nope", "name": "x"})]).unwrap_err().to_string();
    assert!(err.contains("HTTP 404 Could not find composite role"), "{err}");

    let err = kc.update_realm("missing", &json!({"enabled": true})).unwrap_err().to_string();
    assert!(err.contains("HTTP 404 Realm not found."), "{err}");

    // Reads: 404 is "absent", not an error.
    assert!(kc.realm("missing").unwrap().is_none());
    assert!(kc.realm_role("missing", "viewer").unwrap().is_none());
    assert!(kc.realm_role("acme", "nope").unwrap().is_none());
    assert!(kc.user("missing", "bob").unwrap().is_none());
    assert!(kc.role_composites("missing", "viewer").unwrap().is_empty());

    // The realm's password policy speaks through reset-password.
    kc.update_realm("acme", &json!({"passwordPolicy": "length(12)"})).unwrap();
    let bob = kc.user("acme", "bob").unwrap().unwrap();
    let err = kc.reset_password("acme", bob["id"].as_str().unwrap(), &Secret::new("short")).unwrap_err().to_string();
    assert!(err.contains("HTTP 400 Invalid password: minimum length 12. (invalidPasswordMinLengthMessage)"), "{err}");
    assert!(!err.contains("short"), "{err}");
}

#[test]
fn names_in_urls_are_percent_encoded() {
    let fake = FakeKeycloak::start();
    let kc = client(&fake);
    kc.ensure_realm(&spec()).unwrap();
    let role = RoleSpec {
        name: "content editor/ä?x=1#y".into(),
        description: "hostile name".into(),
        composites: vec!["offline_access".into()],
        client_composites: vec![],
    };
    assert_eq!(kc.ensure_role("acme", &role).unwrap(), RealmOutcome::Created);
    assert_eq!(kc.ensure_composites("acme", &role).unwrap(), RealmOutcome::Created);
    assert_eq!(kc.ensure_role("acme", &role).unwrap(), RealmOutcome::Unchanged);
    assert_eq!(kc.ensure_composites("acme", &role).unwrap(), RealmOutcome::Unchanged);
    assert!(fake.realm_role_names("acme").contains(&role.name));
    assert_eq!(fake.composite_names("acme", &role.name), vec!["offline_access"]);
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.iter().any(|p| p == "/admin/realms/acme/roles/content%20editor%2F%C3%A4%3Fx%3D1%23y/composites"),
        "{paths:#?}"
    );
    assert!(fake.requests().iter().all(|r| r.query.is_empty() || !r.query.contains(' ')));
}

#[test]
fn plan_only_reads() {
    let fake = FakeKeycloak::start();
    let kc = client(&fake);
    let password = Secret::new(REALM_ADMIN_PASSWORD);
    let steps = kc.plan(&spec(), Some(&password), false).unwrap();
    assert_eq!(steps.len(), 16);
    assert!(steps.iter().all(|s| s.change.is_some()), "{steps:#?}");
    assert!(fake.mutations().is_empty(), "{}", lines(&fake.requests()));
    let text = format!("{steps:?}");
    assert!(!text.contains(REALM_ADMIN_PASSWORD), "{text}");
    assert_eq!(
        steps[5].change.as_ref().unwrap().description,
        "add editor, realm-management/realm-admin to role realm_admin in realm acme"
    );
    // The plan, applied later, does what it said.
    for step in &steps {
        kc.apply(step.change.as_ref().unwrap()).unwrap();
    }
    assert_realm_set_up(&fake);
}

#[test]
fn imported_realm_gets_its_password_and_drift_is_converged() {
    let fake = FakeKeycloak::start();
    // realm.json as `kc.sh import` would load it: the admin user has no credentials.
    fake.import_realm(&spec().to_json());
    assert!(fake.user_password("acme", "realm-admin").is_none());
    assert_eq!(fake.composite_names("acme", "realm_admin"), vec!["editor", "realm-management/realm-admin"]);

    let kc = client(&fake);
    let password = Secret::new(REALM_ADMIN_PASSWORD);
    let report = kc.setup_realm(&spec(), Some(&password), false).unwrap();
    let changed: Vec<_> = report.iter().filter(|(_, o)| *o != RealmOutcome::Unchanged).collect();
    assert_eq!(changed, [&("keycloak password acme/realm-admin".to_string(), RealmOutcome::Created)], "{report:?}");
    assert_realm_set_up(&fake);

    // Someone changes the display name and drops a composite: the next run puts them back.
    kc.update_realm("acme", &json!({"displayName": "Renamed", "bruteForceProtected": false})).unwrap();
    let editor = kc.realm_role("acme", "editor").unwrap().unwrap();
    let viewer = kc.realm_role("acme", "viewer").unwrap().unwrap();
    kc.admin_call("DELETE", "/admin/realms/acme/roles/editor/composites", Some(&json!([viewer]))).unwrap();
    assert!(editor["composite"] == true);
    fake.clear_requests();
    let report = kc.setup_realm(&spec(), Some(&password), false).unwrap();
    let changed: Vec<_> =
        report.iter().filter(|(_, o)| *o != RealmOutcome::Unchanged).map(|(s, o)| (s.as_str(), *o)).collect();
    assert_eq!(
        changed,
        [("keycloak realm acme", RealmOutcome::Updated), ("keycloak composites acme/editor", RealmOutcome::Created)]
    );
    let put = fake.mutations().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.json(), json!({"realm": "acme", "displayName": "ACME Corporation", "bruteForceProtected": true}));
    assert_realm_set_up(&fake);

    // Rotation: asked explicitly, the password is reset (an update, always).
    let rotated = Secret::new("rotated-Secret-value-123");
    assert_eq!(kc.ensure_password("acme", "realm-admin", &rotated, true).unwrap(), RealmOutcome::Updated);
    assert_eq!(fake.user_password("acme", "realm-admin").as_deref(), Some("rotated-Secret-value-123"));
}

#[test]
fn partial_import_of_realm_json() {
    let fake = FakeKeycloak::start();
    let kc = client(&fake);
    kc.create_realm(&json!({"realm": "acme", "enabled": true})).unwrap();
    kc.create_realm_role("acme", &json!({"name": "viewer", "description": "theirs"})).unwrap();
    let rep = spec().to_json();

    let err = kc.partial_import("acme", &rep, IfExists::Fail).unwrap_err().to_string();
    assert!(err.contains("HTTP 409 Realm role 'viewer' already exists."), "{err}");
    assert_eq!(fake.realm_role_names("acme").iter().filter(|r| r.as_str() == "editor").count(), 0);

    let summary = kc.partial_import("acme", &rep, IfExists::Skip).unwrap();
    assert_eq!((summary.added, summary.skipped, summary.overwritten), (6, 1, 0), "{summary:?}");
    assert_eq!(fake.group_role_names("acme", "admins"), vec!["realm_admin"]);
    assert_eq!(fake.user_group_names("acme", "realm-admin"), vec!["admins"]);
    assert_eq!(fake.composite_names("acme", "realm_admin"), vec!["editor", "realm-management/realm-admin"]);
    assert_eq!(fake.user_realm_role_names("acme", "realm-admin"), vec!["default-roles-acme", "realm_admin"]);
    let request = fake.mutations().into_iter().last().unwrap();
    assert_eq!(request.path, "/admin/realms/acme/partialImport");
    assert_eq!(request.json()["ifResourceExists"], "SKIP");

    let summary = kc.partial_import("acme", &rep, IfExists::Overwrite).unwrap();
    assert_eq!((summary.added, summary.skipped, summary.overwritten), (0, 0, 7), "{summary:?}");
    assert_eq!(IfExists::parse("skip").unwrap(), IfExists::Skip);
    assert!(IfExists::parse("merge").is_err());
}

#[test]
fn no_keycloak_at_the_url_is_reported() {
    // A server that answers, but not as Keycloak under either prefix.
    let fake = FakeKeycloak::builder().prefix("/sso").start();
    let err = client(&fake).realm("acme").unwrap_err().to_string();
    assert!(err.starts_with("no Keycloak admin realm master found at http://127.0.0.1:"), "{err}");
    assert!(err.contains("GET /realms/master/.well-known/openid-configuration answered HTTP 404"), "{err}");
    assert!(err.contains("GET /auth/realms/master/.well-known/openid-configuration answered HTTP 404"), "{err}");

    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = KeycloakSettings::new(&format!("http://127.0.0.1:{port}"), "admin", Secret::new("x")).unwrap();
    let err = Keycloak::new(settings).unwrap().realm("acme").unwrap_err().to_string();
    assert!(err.starts_with(&format!("could not reach Keycloak at http://127.0.0.1:{port}:")), "{err}");
}

/// curl wrapped by a script that logs its argv: no password or token ever appears there.
#[test]
fn curl_argv_never_holds_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let real = process::locate("curl", "").unwrap();
    let log = dir.path().join("argv.log");
    let shim = dir.path().join("curl");
    fs::write(
        &shim,
        format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n", log.display(), real.display()),
    )
    .unwrap();
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();

    let fake =
        FakeKeycloak::builder().expire_tokens_after(5).announce_lifespan(std::time::Duration::from_secs(1)).start();
    let settings = KeycloakSettings::new(&fake.url(), "admin", Secret::new(ADMIN_PASSWORD)).unwrap();
    let kc = Keycloak::with_curl(settings, Path::new(&shim));
    kc.setup_realm(&spec(), Some(&Secret::new(REALM_ADMIN_PASSWORD)), true).unwrap();

    let argv = fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = argv.lines().collect();
    assert_eq!(calls.len(), kc.requests_sent());
    assert!(calls.iter().all(|line| *line == "-q -sS -K -"), "{argv}");
    let mut secrets = fake.issued_tokens();
    assert!(secrets.len() >= 4);
    secrets.push(ADMIN_PASSWORD.into());
    secrets.push(REALM_ADMIN_PASSWORD.into());
    for secret in &secrets {
        assert!(!argv.contains(secret.as_str()));
    }
    // ...while they did reach the server (through curl's stdin).
    let requests = fake.requests();
    assert!(requests.iter().any(|r| r.body.contains(REALM_ADMIN_PASSWORD)));
    assert!(requests.iter().any(|r| { r.header("Authorization").is_some_and(|h| h.starts_with("Bearer eyJ")) }));
}

/// Against a real Keycloak: runs only when `KEYCLOAK_TEST_URL` is set (admin credentials from
/// `KEYCLOAK_TEST_ADMIN` / `KEYCLOAK_TEST_ADMIN_PASSWORD`, default admin/admin). Creates a
/// uniquely named realm and deletes it afterwards.
#[test]
fn real_keycloak_setup_twice() {
    let Ok(url) = std::env::var("KEYCLOAK_TEST_URL") else {
        crate::support::loud_skip("real_keycloak_setup_twice: KEYCLOAK_TEST_URL is not set");
        return;
    };
    let user = std::env::var("KEYCLOAK_TEST_ADMIN").unwrap_or_else(|_| "admin".into());
    let password = std::env::var("KEYCLOAK_TEST_ADMIN_PASSWORD").unwrap_or_else(|_| "admin".into());
    let kc = Keycloak::new(KeycloakSettings::new(&url, &user, Secret::new(password)).unwrap()).unwrap();
    let id = format!("agency-test-{}", std::process::id());
    let spec = RealmSpec::for_client(&id, "Agency \"test\" <realm>", RealmSettings::default());
    struct Cleanup<'a>(&'a Keycloak, String);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = self.0.delete_realm(&self.1);
        }
    }
    let _cleanup = Cleanup(&kc, id.clone());

    let secret = Secret::new("Real-test-password-0123456789");
    let first = kc.setup_realm(&spec, Some(&secret), false).unwrap();
    assert!(first.iter().all(|(_, o)| *o == RealmOutcome::Created), "{first:?}");
    let second = kc.setup_realm(&spec, Some(&secret), false).unwrap();
    assert!(second.iter().all(|(_, o)| *o == RealmOutcome::Unchanged), "{second:?}");
    let realm = kc.realm(&id).unwrap().unwrap();
    assert_eq!(realm["displayName"], "Agency \"test\" <realm>");

    // The realm admin logs in to its realm and can administer it.
    let mut settings = KeycloakSettings::new(&url, &spec.admin.username, secret).unwrap();
    settings.admin_realm = id.clone();
    let realm_admin = Keycloak::new(settings).unwrap();
    assert!(realm_admin.user(&id, &spec.admin.username).unwrap().is_some());
}

/// Every value of the hostile corpus as a realm's display name and a role description: what
/// Keycloak stores is exactly the value (curl's config quoting and the JSON body hold).
#[test]
fn hostile_values_reach_keycloak_intact() {
    let fake = FakeKeycloak::start();
    let kc = client(&fake);
    let values: Vec<String> = crate::hostile::corpus().into_iter().filter(|v| !v.contains('\0')).collect();
    assert!(values.len() > 50);
    for (i, value) in values.iter().enumerate() {
        let realm = format!("hostile{i}");
        assert_eq!(
            kc.ensure_realm(&RealmSpec::for_client(&realm, value, RealmSettings::default())).unwrap(),
            RealmOutcome::Created,
            "{value:?}"
        );
        assert_eq!(fake.realm(&realm).unwrap()["displayName"], value.as_str(), "{value:?}");
        assert_eq!(
            kc.ensure_realm(&RealmSpec::for_client(&realm, value, RealmSettings::default())).unwrap(),
            RealmOutcome::Unchanged,
            "{value:?}"
        );
    }
    // A hostile name in a URL path segment, too.
    let role = RoleSpec {
        name: values[3].clone(),
        description: values[4].clone(),
        composites: vec![],
        client_composites: vec![],
    };
    assert_eq!(kc.ensure_role("hostile0", &role).unwrap(), RealmOutcome::Created);
    assert_eq!(kc.ensure_role("hostile0", &role).unwrap(), RealmOutcome::Unchanged);
}
