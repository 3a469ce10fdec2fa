//! delete-client (SPEC §7, issue 7): confirmation, config and secrets archived (0700),
//! logs kept, audited; a later create-client with the same id starts fresh.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::{
    create_client::{bash_value, create},
    test::{Site, audit_lines},
};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

pub fn delete(site: &Site, id: &str) -> crate::test::Output {
    site.test().args(["--yes", "delete-client", &format!("CLIENT_ID={id}")]).run()
}

/// The archive dirs of a client, oldest first.
pub fn archives(site: &Site, id: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(site.root().join("archive"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{id}-")))
        .collect();
    found.sort();
    found
}

#[test]
fn refuses_without_yes_when_stdin_is_not_a_terminal() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let before = site.snapshot();
    site.test()
        .args(["delete-client", "CLIENT_ID=acme"])
        .status(1)
        .stderr_contains("asks for confirmation and stdin is not a terminal")
        .stderr_contains("--yes")
        .run();
    assert_eq!(site.snapshot(), before, "a refused delete changed something");
}

#[test]
fn dry_run_plans_the_moves_and_changes_nothing() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let before = site.snapshot();
    site.test()
        .args(["-n", "delete-client", "CLIENT_ID=acme"])
        .stdout_contains("would move")
        .stdout_contains(&site.client_dir("acme").display().to_string())
        .stdout_contains("nothing was changed")
        .run();
    assert_eq!(site.snapshot(), before);
}

#[test]
fn archives_config_and_secrets_and_keeps_the_logs() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    create(&site, "beta", "Beta");
    let env_before = fs::read_to_string(site.client_dir("acme").join("client.env")).unwrap();
    let secrets_before = fs::read_to_string(site.secrets_file("acme")).unwrap();
    let beta = |s: Vec<(String, u32, Option<Vec<u8>>)>| {
        s.into_iter().filter(|(p, _, _)| p.contains("/beta") || p.contains("-beta")).collect::<Vec<_>>()
    };
    let beta_before = beta(site.snapshot());

    let output = site.test().args(["--json", "--yes", "delete-client", "CLIENT_ID=acme"]).run();
    let result = &output.json()["tasks"][0]["result"];

    assert!(!site.client_dir("acme").exists());
    assert!(!site.secrets_file("acme").parent().unwrap().exists());
    let archived = archives(&site, "acme");
    assert_eq!(archived.len(), 1);
    let archive = &archived[0];
    assert_eq!(result["archive"], archive.display().to_string());
    assert_eq!(mode(&site.root().join("archive")), 0o700);
    assert_eq!(mode(archive), 0o700);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name.strip_prefix("acme-").unwrap();
    assert!(stamp.len() == 16 && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T', "{name}");

    // Moved whole, modes kept: the secrets still 0600 in a 0700 dir.
    assert_eq!(fs::read_to_string(archive.join("config/client.env")).unwrap(), env_before);
    assert!(archive.join("config/keycloak/realm.json").is_file());
    assert_eq!(fs::read_to_string(archive.join("secrets/secrets.env")).unwrap(), secrets_before);
    assert_eq!(mode(&archive.join("secrets")), 0o700);
    assert_eq!(mode(&archive.join("secrets/secrets.env")), 0o600);
    let manifest = archive.join("archive.env");
    assert_eq!(mode(&manifest), 0o600);
    assert_eq!(bash_value(&manifest, "CLIENT_ID"), "acme");
    // The local repository moved aside within the backup root (kept, out of a new client's way).
    let repository = bash_value(&manifest, "RESTIC_REPOSITORY");
    assert_eq!(repository, site.backup_root().join(format!("archive/client-{name}")).display().to_string());
    assert!(Path::new(&repository).join("config").is_file(), "repository moved whole");
    assert!(!site.backup_root().join("client-acme").exists());
    assert_eq!(result["repository"], repository.as_str());
    assert_eq!(bash_value(&manifest, "SECRETS_FILE"), archive.join("secrets/secrets.env").display().to_string());

    // Logs stay, and the last audit line records the delete.
    let logs = site.log_root().join("clients/acme");
    for log in ["access.log", "error.log", "audit.log", "backup.log"] {
        assert!(logs.join(log).is_file(), "{log} kept");
    }
    let line = audit_lines(&site, "acme").pop().unwrap();
    assert_eq!(line["task"], "delete-client");
    assert_eq!(line["outcome"], "ok");
    let moved: Vec<&str> = line["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "moved")
        .map(|c| c["target"].as_str().unwrap())
        .collect();
    assert_eq!(moved.len(), 3, "config, secrets and the repository: {line}");

    // The other tenant is untouched, and the listing no longer shows acme.
    assert_eq!(beta(site.snapshot()), beta_before);
    site.test().arg("list-clients").stdout_contains("beta").stdout_lacks("acme").run();
}

#[test]
fn a_client_that_does_not_exist_is_an_error() {
    let site = Site::new();
    site.test()
        .args(["--yes", "delete-client", "CLIENT_ID=ghost"])
        .status(1)
        .stderr_contains("client ghost does not exist")
        .run();
    assert!(!site.root().join("archive").exists());
}

#[test]
fn recreating_the_same_id_starts_fresh_with_new_secrets() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let old_secrets = fs::read_to_string(site.secrets_file("acme")).unwrap();
    delete(&site, "acme");
    create(&site, "acme", "ACME Again");

    assert_eq!(bash_value(&site.client_dir("acme").join("client.env"), "CLIENT_NAME"), "ACME Again");
    let new_secrets = fs::read_to_string(site.secrets_file("acme")).unwrap();
    for line in old_secrets.lines() {
        let (key, value) = line.split_once('=').unwrap();
        let value = value.trim_matches('\'');
        assert!(!new_secrets.contains(value), "{key} reused after delete");
        assert_eq!(bash_value(&site.secrets_file("acme"), key).len(), 43, "{key} regenerated");
    }
    // The archived copy is untouched by the new client.
    assert_eq!(fs::read_to_string(archives(&site, "acme")[0].join("secrets/secrets.env")).unwrap(), old_secrets);
    site.test().arg("list-clients").stdout_contains("ACME Again").run();

    // And it can be deleted again: a second archive beside the first.
    delete(&site, "acme");
    assert_eq!(archives(&site, "acme").len(), 2);
}

/// Archive names have one-second resolution: a delete in a second that already has a whole
/// archive of the id gets a name of its own, and the earlier archive is untouched.
#[test]
fn two_deletes_of_one_id_within_a_second_get_two_archives() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let secrets = fs::read_to_string(site.secrets_file("acme")).unwrap();
    // Whole archives (archive.env written) for this second and the next few, as a delete of
    // the id just before would have left.
    let archive_root = site.root().join("archive");
    fs::create_dir_all(&archive_root).unwrap();
    let now = std::time::SystemTime::now();
    let mut earlier = Vec::new();
    for ahead in 0..4 {
        let time = now + std::time::Duration::from_secs(ahead);
        let stamp = humantime::format_rfc3339_seconds(time).to_string().replace(['-', ':'], "");
        let dir = archive_root.join(format!("acme-{stamp}"));
        fs::create_dir_all(dir.join("config")).unwrap();
        fs::write(dir.join("archive.env"), "CLIENT_ID='acme'\n").unwrap();
        earlier.push(dir);
    }

    let output = site.test().args(["--json", "--yes", "delete-client", "CLIENT_ID=acme"]).run();
    let archive = PathBuf::from(output.json()["tasks"][0]["result"]["archive"].as_str().unwrap());
    assert!(!earlier.contains(&archive), "{} was taken already", archive.display());
    assert_eq!(fs::read_to_string(archive.join("secrets/secrets.env")).unwrap(), secrets);
    assert_eq!(archives(&site, "acme").len(), 5);
    for dir in &earlier {
        assert_eq!(fs::read_dir(dir.join("config")).unwrap().count(), 0, "{} changed", dir.display());
    }
}

#[test]
fn with_backups_off_there_is_no_final_backup_and_nothing_to_move_aside() {
    let site = Site::new();
    site.test()
        .args(["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .env("AGENCY_BACKUPS", "off")
        .run();
    assert!(!site.backup_root().join("client-acme").exists());
    let output = site
        .test()
        .args(["--yes", "delete-client", "CLIENT_ID=acme"])
        .env("AGENCY_BACKUPS", "off")
        .stdout_contains("AGENCY_BACKUPS=off")
        .stdout_lacks("restic backup")
        .run();
    assert!(output.stdout.contains("no final backup of acme"), "{}", output.stdout);
    let archive = &archives(&site, "acme")[0];
    assert_eq!(
        bash_value(&archive.join("archive.env"), "RESTIC_REPOSITORY"),
        site.backup_root().join("client-acme").display().to_string(),
        "no repository was made, none moved"
    );
    assert!(!site.backup_root().join("archive").exists());
}

#[cfg(feature = "fault-injection")]
#[test]
fn an_interrupted_delete_is_completed_by_a_rerun() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    // Crash right after the config dir moved: its number among the run's mutations is its
    // place among the changes the plan lists.
    let plan = site.test().args(["--json", "-n", "delete-client", "CLIENT_ID=acme"]).run().json();
    let planned: Vec<serde_json::Value> =
        plan["tasks"][0]["changes"].as_array().unwrap().iter().filter(|c| c["planned"] == true).cloned().collect();
    let config = site.client_dir("acme").display().to_string();
    let number = 1 + planned
        .iter()
        .position(|c| c["action"] == "rename" && c["target"] == config.as_str())
        .unwrap_or_else(|| panic!("no rename of {config} in the plan: {planned:?}"));
    let output = site
        .test()
        .args(["--yes", "delete-client", "CLIENT_ID=acme"])
        .env("AGENCY_FAULT_CRASH_AFTER", &number.to_string())
        .status(-1)
        .run();
    assert!(output.stderr.contains("injected crash"), "{}", output.stderr);
    assert!(!site.client_dir("acme").exists());
    assert!(site.secrets_file("acme").exists(), "crashed before the secrets moved");
    // No archive.env yet: it would name paths that are not there.
    assert!(archives(&site, "acme").iter().all(|a| !a.join("archive.env").exists()));

    delete(&site, "acme");
    assert!(!site.secrets_file("acme").parent().unwrap().exists());
    // The re-run completed the same archive: one, with everything its archive.env names.
    let archived: Vec<PathBuf> = archives(&site, "acme");
    assert_eq!(archived.len(), 1, "{archived:?}");
    let archive = &archived[0];
    assert!(archive.join("config/client.env").is_file());
    let manifest = archive.join("archive.env");
    for key in ["SECRETS_FILE", "RESTIC_REPOSITORY"] {
        let path = bash_value(&manifest, key);
        assert!(std::path::Path::new(&path).exists(), "archive.env {key}={path} does not exist");
    }
    site.test().arg("list-clients").stdout_lacks("acme").run();
}

/// The state a kill between the secrets' rename and the repository's leaves: config and
/// secrets in an archive without archive.env, the repository still in its place.
#[cfg(feature = "fault-injection")]
#[test]
fn a_half_finished_delete_is_reported_and_named_by_create_client() {
    let site = Site::new();
    create(&site, "acme", "ACME");
    let plan = site.test().args(["--json", "-n", "delete-client", "CLIENT_ID=acme"]).run().json();
    let planned: Vec<serde_json::Value> =
        plan["tasks"][0]["changes"].as_array().unwrap().iter().filter(|c| c["planned"] == true).cloned().collect();
    let secrets = site.secrets_file("acme").parent().unwrap().display().to_string();
    let number = 1 + planned
        .iter()
        .position(|c| c["action"] == "rename" && c["target"] == secrets.as_str())
        .unwrap_or_else(|| panic!("no rename of {secrets} in the plan: {planned:?}"));
    site.test()
        .args(["--yes", "delete-client", "CLIENT_ID=acme"])
        .env("AGENCY_FAULT_CRASH_AFTER", &number.to_string())
        .status(-1)
        .run();
    assert!(!site.client_dir("acme").exists());
    assert!(!site.secrets_file("acme").exists());
    assert!(site.backup_root().join("client-acme").exists(), "crashed before the repository moved");

    let finish = "delete-client was interrupted; run delete-client CLIENT_ID=acme again to finish";
    site.test().arg("list-clients").stdout_contains("acme").stdout_contains(finish).run();
    let listed = site.test().args(["--json", "list-clients"]).run().json();
    let row = &listed["tasks"][0]["result"]["clients"][0];
    assert_eq!(row["health"], "broken", "{listed}");
    site.test().arg("multi-tenancy-status").status(1).stdout_contains(finish).run();
    site.test()
        .args(["create-client", "CLIENT_ID=acme", "CLIENT_NAME=ACME", "CLIENT_DOMAIN=acme.example.com"])
        .status(1)
        .stderr_contains("delete-client was interrupted; run delete-client CLIENT_ID=acme again to finish")
        .run();
    // The refusal made nothing that would stand in the way of the delete's re-run.
    assert!(!site.client_dir("acme").exists());
    assert!(!site.secrets_file("acme").parent().unwrap().exists());

    delete(&site, "acme");
    site.test().arg("list-clients").stdout_lacks("acme").run();
    site.test().arg("multi-tenancy-status").stdout_lacks("acme").run();
}

// ---- the real engine --------------------------------------------------

mod engine {
    use std::{path::Path, process::Command};

    use super::{archives, mode};
    use crate::{
        create_client::bash_value,
        require_docker,
        support::docker::{Scratch, client_networks, scratch_pool, unique},
        test::Site,
    };

    fn create(site: &Site, id: &str, pool: &str) {
        let output = site
            .test()
            .args([
                "create-client",
                &format!("CLIENT_ID={id}"),
                "CLIENT_NAME=Delete Me",
                &format!("CLIENT_DOMAIN={id}.example.com"),
                &format!("AGENCY_SUBNET_POOL={pool}"),
            ])
            .run_unchecked();
        assert_eq!(output.status, 0, "create-client {id}:\n{}\n{}", output.stdout, output.stderr);
    }

    /// The snapshots of a repository, opened with the password of a secrets.env (by
    /// environment, as the runner does).
    fn snapshots(repository: &Path, secrets: &Path) -> Vec<serde_json::Value> {
        let password = bash_value(secrets, "RESTIC_PASSWORD");
        let output = Command::new("restic")
            .args(["--no-cache", "-r"])
            .arg(repository)
            .args(["snapshots", "--json"])
            .env("RESTIC_PASSWORD", password)
            .output()
            .expect("restic runs");
        assert!(
            output.status.success(),
            "restic could not open {}: {}",
            repository.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Whether `multi-tenancy-status --json` reports on the client.
    fn status_lists(site: &Site, id: &str) -> bool {
        let status = site.test().args(["--json", "multi-tenancy-status"]).run_unchecked().json();
        let reported = status["tasks"]
            .as_array()
            .and_then(|tasks| tasks.iter().find(|t| t["task"] == "multi-tenancy-status"))
            .and_then(|task| task["result"]["clients"].as_array())
            .unwrap_or_else(|| panic!("no client list in the status report: {status:#}"));
        reported.iter().any(|c| c["client"] == id)
    }

    fn networks_left(scratch: &Scratch, id: &str) -> Vec<String> {
        client_networks(id).into_iter().filter(|n| scratch.docker_status(&["network", "inspect", n])).collect()
    }

    #[test]
    fn full_delete_removes_networks_archives_and_keeps_an_openable_repository() {
        let docker = require_docker!();
        let scratch = Scratch::new(&docker);
        let site = Site::with_docker();
        let id = scratch.client(&unique("del"));
        create(&site, &id, &scratch_pool(24));
        // A shared ingress (Traefik) on the frontend does not block the delete.
        let ingress =
            scratch.server(&unique("ingress"), &format!("{id}_frontend"), &[("agency.shared-ingress", "true")]);

        assert!(status_lists(&site, &id));

        let output = site.test().args(["--json", "--yes", "delete-client", &format!("CLIENT_ID={id}")]).run();
        let result = &output.json()["tasks"][0]["result"];

        assert_eq!(networks_left(&scratch, &id), Vec::<String>::new(), "networks left on the engine");
        assert!(scratch.docker_status(&["inspect", &ingress]), "the ingress container itself stays");

        let archive = &archives(&site, &id)[0];
        assert_eq!(mode(archive), 0o700);
        assert_eq!(mode(&site.root().join("archive")), 0o700);
        let secrets = archive.join("secrets/secrets.env");
        assert_eq!(mode(&secrets), 0o600);

        assert_eq!(result["archive"], archive.display().to_string());

        // The repository is kept (moved aside in the backup root) and opens with the archived
        // password; its newest snapshot is the final one.
        let repository = bash_value(&archive.join("archive.env"), "RESTIC_REPOSITORY");
        assert_eq!(result["repository"], repository.as_str());
        assert!(repository.starts_with(&site.backup_root().join("archive").display().to_string()));
        assert!(!site.backup_root().join(format!("client-{id}")).exists());
        let kept = snapshots(Path::new(&repository), &secrets);
        let last = kept.last().expect("a snapshot");
        assert!(last["tags"].as_array().unwrap().iter().any(|t| t == "final"), "{last}");

        // Gone from the status report and the listing; the audit line lists the removals.
        assert!(!status_lists(&site, &id), "status still reports {id}");
        site.test().arg("list-clients").stdout_lacks(&id).run();
        let line = crate::test::audit_lines(&site, &id).pop().unwrap();
        let removed = line["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["action"] == "network" && c["outcome"] == "removed")
            .count();
        assert_eq!(removed, 4, "{line}");

        // Re-created with the same id: new networks, a new repository, new secrets.
        create(&site, &id, &scratch_pool(24));
        let new_secrets = site.secrets_file(&id);
        assert_ne!(bash_value(&new_secrets, "RESTIC_PASSWORD"), bash_value(&secrets, "RESTIC_PASSWORD"));
        assert!(snapshots(&site.backup_root().join(format!("client-{id}")), &new_secrets).is_empty());
        assert_eq!(snapshots(Path::new(&repository), &secrets).len(), kept.len(), "the old repository untouched");
        assert_eq!(networks_left(&scratch, &id).len(), 4);
    }

    #[test]
    fn refuses_while_containers_are_attached_unless_forced() {
        let docker = require_docker!();
        let scratch = Scratch::new(&docker);
        let site = Site::with_docker();
        let id = scratch.client(&unique("att"));
        create(&site, &id, &scratch_pool(24));
        let app = scratch.server(&unique("app"), &format!("{id}_backend"), &[]);
        let audit = site.log_root().join(format!("clients/{id}/audit.log")).display().to_string();
        let files = || site.snapshot().into_iter().filter(|(p, _, _)| *p != audit).collect::<Vec<_>>();
        let before = files();

        site.test()
            .args(["--yes", "delete-client", &format!("CLIENT_ID={id}")])
            .status(1)
            .stderr_contains(&format!("{app} ({id}_backend)"))
            .stderr_contains("FORCE=1")
            .run();
        assert_eq!(files(), before, "a refused delete changed files");
        assert_eq!(crate::test::audit_lines(&site, &id).pop().unwrap()["outcome"], "failed");
        assert_eq!(networks_left(&scratch, &id).len(), 4, "a refused delete removed networks");

        site.test().args(["--yes", "delete-client", &format!("CLIENT_ID={id}"), "FORCE=1"]).run();
        assert!(networks_left(&scratch, &id).is_empty());
        assert!(scratch.docker_status(&["inspect", &app]), "FORCE disconnects, it does not remove containers");
        assert!(!site.client_dir(&id).exists());
    }

    /// `network inspect` lists running containers only: a stopped one is disconnected too, so
    /// it does not keep an endpoint on a network that is gone (it would then fail to start).
    #[test]
    fn force_disconnects_a_stopped_container_too() {
        let docker = require_docker!();
        let scratch = Scratch::new(&docker);
        let site = Site::with_docker();
        let id = scratch.client(&unique("stp"));
        create(&site, &id, &scratch_pool(24));
        let backend = format!("{id}_backend");
        let app = scratch.container(&unique("stopped"));
        let label = format!("{}=true", crate::support::docker::TEST_LABEL);
        let image = crate::support::docker::busybox_image(&docker);
        scratch.docker(&["create", "--name", &app, "--network", &backend, "--label", &label, image, "true"]);

        site.test().args(["--yes", "delete-client", &format!("CLIENT_ID={id}"), "FORCE=1"]).run();
        assert!(networks_left(&scratch, &id).is_empty());
        let networks = scratch.docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", &app]);
        assert!(!networks.contains(&backend), "the stopped container still names {backend}: {networks}");
        let line = crate::test::audit_lines(&site, &id).pop().unwrap();
        let disconnected = line["changes"].as_array().unwrap().iter().any(|c| {
            c["action"] == "network disconnect" && c["target"] == backend.as_str() && c["outcome"] == "removed"
        });
        assert!(disconnected, "{line}");
    }
}
