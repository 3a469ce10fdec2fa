//! The checks of a client's private files for `multi-tenancy-status`: the log directory with
//! its four log files, and secrets.env in its directory. Nothing is followed through a symlink:
//! a link in a directory's or a file's place is reported (with where it points), and under a
//! log directory that is not a real directory nothing is looked at.
//!
//! They run once per client on every status run, so each place costs one `lstat`.

use std::{
    fs::{self, Metadata},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use serde_json::json;

use crate::{
    fsutil,
    tenant::check::{Check, Status},
    tenant::layout::ClientLayout,
    tenant::policy::{LOG_DIR_MODE, LOG_FILE_MODE, LOG_FILES, SECRETS_DIR_MODE, SECRETS_FILE_MODE},
    tenant::{backup, secrets},
};

/// What FIX=1 cannot do for a hard-linked file: only the operator knows what the other
/// names are.
const HARD_LINK_FIX: &str = "FIX=1 cannot: find the file's other names (find / -samefile FILE), then make it a file of its own \
     (cp -p FILE FILE.own && mv FILE.own FILE); agency changes no hard-linked file";

/// What is at a place, read with one `lstat` (never following a symlink).
struct Place {
    meta: Option<Metadata>,
}

impl Place {
    fn at(path: &Path) -> Self {
        Self { meta: fs::symlink_metadata(path).ok() }
    }

    fn kind(&self) -> &'static str {
        fsutil::kind(self.meta.as_ref())
    }

    fn mode(&self) -> Option<u32> {
        self.meta.as_ref().map(|m| m.permissions().mode() & 0o7777)
    }

    /// `Some(sentence)` when it is a regular file with other names (a hard link: a change of
    /// its mode or contents would reach a file that may lie outside every root).
    fn hard_linked(&self, name: &str) -> Option<String> {
        let meta = self.meta.as_ref().filter(|m| m.is_file() && m.nlink() > 1)?;
        Some(format!("{name} is hard-linked ({} names share the file)", meta.nlink()))
    }

    /// What is wrong with it as a `want` ("file" or "dir") named `name` (see [`place_problem`]).
    fn problem(&self, path: &Path, name: &str, want: &str) -> Option<String> {
        place_problem(self.kind(), path, name, want)
    }
}

/// What is wrong with the entry at `path`, of kind `kind` (`fsutil::kind`), as a `want`
/// ("file" or "dir") named `name`: `None` when it is one, `Some("missing")` when absent, else
/// a sentence (naming where a symlink points, never following it).
pub fn place_problem(kind: &str, path: &Path, name: &str, want: &str) -> Option<String> {
    if kind == want {
        return None;
    }
    if kind == "missing" {
        return Some("missing".into());
    }
    let what = if want == "file" { "a regular file" } else { "a directory" };
    Some(if kind == "symlink" {
        let target = fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default();
        format!("{name} is a symlink (to {target}), not {what}")
    } else {
        format!("{name} is not {what} ({kind})")
    })
}

/// `"0640"`, or `"missing"` (as `checks::octal`).
fn octal(mode: Option<u32>) -> String {
    mode.map_or_else(|| "missing".into(), |m| format!("{m:04o}"))
}

/// The log directory 0750 with its four files 0640, all real (no symlinks).
pub fn logs(log_dir: &Path) -> Check {
    let dir_name = log_dir.display().to_string();
    let dir = Place::at(log_dir);
    let dir_problem = dir.problem(log_dir, &dir_name, "dir");
    let dir_usable = dir_problem.as_deref().is_none_or(|p| p == "missing");
    let dir_mode = if dir_problem.is_none() { dir.mode() } else { None };
    let mut problems = Vec::new();
    match dir_problem.as_deref() {
        Some("missing") => problems.push(format!("{dir_name} is missing")),
        Some(problem) => problems.push(problem.to_string()),
        None if dir_mode != Some(LOG_DIR_MODE) => {
            problems.push(format!("{dir_name} has mode {}, not 0750", octal(dir_mode)))
        }
        None => {}
    }
    let (mut links, mut hard_links) = (false, false);
    let mut files = Vec::new();
    for name in LOG_FILES {
        let path = log_dir.join(name);
        // Under a log dir that is not a directory nothing is looked at (it may lead anywhere).
        let file = if dir_usable { Place::at(&path) } else { Place { meta: None } };
        let problem = file.problem(&path, name, "file");
        let mode = if problem.is_none() { file.mode() } else { None };
        let kind = if dir_problem.is_none() { file.kind() } else { "unknown" };
        files.push(json!({ "name": name, "mode": octal(mode), "kind": kind }));
        if !dir_usable {
            continue;
        }
        match problem.as_deref() {
            Some("missing") => problems.push(format!("{name} is missing")),
            Some(problem) => {
                links = true;
                problems.push(problem.to_string());
            }
            None if file.hard_linked(name).is_some() => {
                hard_links = true;
                problems.extend(file.hard_linked(name));
            }
            None if mode != Some(LOG_FILE_MODE) => problems.push(format!("{name} has mode {}, not 0640", octal(mode))),
            None => {}
        }
    }
    let evidence = json!({ "dir": dir_name, "dir_mode": octal(dir_mode), "files": files });
    if problems.is_empty() {
        return Check::new("logs", Status::Ok, "log dir 0750, 4 log files 0640").evidence(evidence);
    }
    let fix = if !dir_usable {
        format!("FIX=1 cannot: make {dir_name} a real directory by hand")
    } else if hard_links {
        HARD_LINK_FIX.into()
    } else if links {
        "FIX=1 removes a symlink in a log file's place (never its target), creates missing log files and repairs modes"
            .into()
    } else {
        "FIX=1 creates missing log files and repairs modes".into()
    };
    Check::new("logs", Status::Fail, problems.join("; ")).evidence(evidence).fix(fix)
}

/// secrets.env 0600 in a 0700 directory, both real (no symlinks).
pub fn secrets(secrets_dir: &Path, secrets_file: &Path) -> Check {
    let dir_name = secrets_dir.display().to_string();
    let file_name = secrets_file.display().to_string();
    let dir = Place::at(secrets_dir);
    let dir_problem = dir.problem(secrets_dir, &dir_name, "dir");
    let file = if dir_problem.is_none() { Place::at(secrets_file) } else { Place { meta: None } };
    let problem = match &dir_problem {
        None => file.problem(secrets_file, "secrets.env", "file"),
        Some(problem) => Some(problem.clone()),
    };
    let mode = if problem.is_none() { file.mode() } else { None };
    let dir_mode = if dir_problem.is_none() { dir.mode() } else { None };
    let evidence = json!({ "file": file_name, "mode": octal(mode), "dir_mode": octal(dir_mode) });
    match problem.as_deref() {
        Some("missing") => {
            return Check::new("secrets", Status::Fail, format!("{file_name} is missing"))
                .evidence(evidence)
                .fix(RESTORE_SECRETS_FIX);
        }
        Some(problem) => {
            return Check::new("secrets", Status::Fail, problem)
                .evidence(evidence)
                .fix("FIX=1 cannot: put the real secrets.env (0600) in place of the link by hand");
        }
        None => {}
    }
    if let Some(problem) = file.hard_linked("secrets.env") {
        return Check::new("secrets", Status::Fail, problem).evidence(evidence).fix(HARD_LINK_FIX);
    }
    let mut problems = Vec::new();
    if mode != Some(SECRETS_FILE_MODE) {
        problems.push(format!("secrets.env has mode {}, not 0600", octal(mode)));
    }
    if dir_mode != Some(SECRETS_DIR_MODE) {
        problems.push(format!("{dir_name} has mode {}, not 0700", octal(dir_mode)));
    }
    if !problems.is_empty() {
        return Check::new("secrets", Status::Fail, problems.join("; "))
            .evidence(evidence)
            .fix("FIX=1 repairs the modes");
    }
    // Every task reads the file as bash would, so one it refuses is as broken as a missing one.
    match secrets::read(secrets_file) {
        Err(e) => Check::new("secrets", Status::Fail, format!("{e:#}")).evidence(evidence).fix(
            "FIX=1 cannot: edit the line so bash and agency read it alike (KEY='value', no comment after it, no CR)",
        ),
        Ok(values) if !values.contains_key(backup::PASSWORD_KEY) => {
            Check::new("secrets", Status::Fail, format!("secrets.env holds no {}", backup::PASSWORD_KEY))
                .evidence(evidence)
                .fix(RESTORE_SECRETS_FIX)
        }
        Ok(_) => Check::new("secrets", Status::Ok, "secrets.env 0600 in a 0700 dir").evidence(evidence),
    }
}

/// What a client whose secrets are gone needs: create-client refuses to make new ones.
const RESTORE_SECRETS_FIX: &str = "FIX=1 cannot: restore secrets.env from the secrets history or a delete-client archive \
     (create-client makes new secrets only with REGENERATE_SECRETS=1, and they would not open the repository)";

/// The client's config files (client.env, the compose override, realm.json, the backup
/// config, traefik.yml) and their directories: none a symlink, no file hard-linked. A missing
/// one is left to the checks that use it.
pub fn config(layout: &ClientLayout) -> Check {
    let dirs = [&layout.config_dir, &layout.keycloak_dir, &layout.backup_dir];
    let files =
        [&layout.env_file, &layout.compose_override, &layout.realm_file, &layout.backup_config, &layout.traefik_file];
    let mut problems = Vec::new();
    let mut hard_links = false;
    for dir in dirs {
        let place = Place::at(dir);
        if let Some(problem) = place.problem(dir, &dir.display().to_string(), "dir").filter(|p| p != "missing") {
            problems.push(problem);
        }
    }
    // Under a config dir that is not a real one nothing is looked at (it may lead anywhere).
    if problems.is_empty() {
        for file in files {
            let place = Place::at(file);
            let name = file.strip_prefix(&layout.config_dir).unwrap_or(file).display().to_string();
            if let Some(problem) = place.problem(file, &name, "file").filter(|p| p != "missing") {
                problems.push(problem);
            } else if let Some(problem) = place.hard_linked(&name) {
                hard_links = true;
                problems.push(problem);
            }
        }
    }
    let evidence = json!({ "dir": layout.config_dir.display().to_string() });
    if problems.is_empty() {
        return Check::new("config", Status::Ok, "config files and dirs are real, none hard-linked").evidence(evidence);
    }
    let fix = if hard_links && problems.len() == 1 {
        HARD_LINK_FIX.to_string()
    } else {
        "FIX=1 cannot: put the real directory or file in place of each link by hand (agency follows none, \
         and changes no hard-linked file)"
            .to_string()
    };
    Check::new("config", Status::Fail, problems.join("; ")).evidence(evidence).fix(fix)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn log_dir(root: &Path) -> std::path::PathBuf {
        let dir = root.join("logs");
        fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o750);
        for name in LOG_FILES {
            fs::write(dir.join(name), "").unwrap();
            set_mode(&dir.join(name), 0o640);
        }
        dir
    }

    #[test]
    fn a_complete_log_dir_passes_with_its_modes_as_evidence() {
        let tmp = tempfile::tempdir().unwrap();
        let check = logs(&log_dir(tmp.path()));
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert_eq!(check.evidence["dir_mode"], "0750");
        assert_eq!(check.evidence["files"][2], json!({ "name": "audit.log", "mode": "0640", "kind": "file" }));
    }

    #[test]
    fn log_problems_are_listed_with_what_fix_does() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = log_dir(tmp.path());
        set_mode(&dir.join("error.log"), 0o644);
        fs::remove_file(dir.join("backup.log")).unwrap();
        fs::remove_file(dir.join("access.log")).unwrap();
        symlink("/etc/passwd", dir.join("access.log")).unwrap();
        let check = logs(&dir);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.summary,
            "access.log is a symlink (to /etc/passwd), not a regular file; error.log has mode 0644, not 0640; \
             backup.log is missing"
        );
        assert!(check.fix.starts_with("FIX=1 removes a symlink"), "{}", check.fix);
        assert_eq!(check.evidence["files"][0]["kind"], "symlink");
    }

    #[test]
    fn nothing_under_a_symlinked_log_dir_is_looked_at() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = log_dir(tmp.path());
        let dir = tmp.path().join("linked");
        symlink(&elsewhere, &dir).unwrap();
        let check = logs(&dir);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.summary,
            format!("{} is a symlink (to {}), not a directory", dir.display(), elsewhere.display())
        );
        assert_eq!(check.evidence["files"][0], json!({ "name": "access.log", "mode": "missing", "kind": "unknown" }));
        assert!(check.fix.contains("a real directory by hand"));
    }

    #[test]
    fn a_missing_log_dir_names_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let check = logs(&tmp.path().join("absent"));
        assert!(check.summary.ends_with("absent is missing; access.log is missing; error.log is missing; audit.log is missing; backup.log is missing"), "{}", check.summary);
        assert_eq!(check.fix, "FIX=1 creates missing log files and repairs modes");
    }

    #[test]
    fn secrets_modes_and_places() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("secrets");
        let file = dir.join("secrets.env");
        assert!(secrets(&dir, &file).summary.ends_with("secrets.env is missing"));
        fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o700);
        fs::write(&file, "A='b'\n").unwrap();
        set_mode(&file, 0o600);
        assert_eq!(secrets(&dir, &file).summary, "secrets.env holds no RESTIC_PASSWORD");
        fs::write(&file, "RESTIC_PASSWORD='b' # note\n").unwrap();
        assert_eq!(secrets(&dir, &file).status, Status::Fail, "a line bash reads differently");
        fs::write(&file, "RESTIC_PASSWORD='b'\n").unwrap();
        assert_eq!(secrets(&dir, &file).status, Status::Ok);
        set_mode(&file, 0o644);
        set_mode(&dir, 0o755);
        let check = secrets(&dir, &file);
        assert_eq!(
            check.summary,
            format!("secrets.env has mode 0644, not 0600; {} has mode 0755, not 0700", dir.display())
        );
        assert_eq!(check.fix, "FIX=1 repairs the modes");
        fs::remove_file(&file).unwrap();
        symlink("/etc/shadow", &file).unwrap();
        let check = secrets(&dir, &file);
        assert_eq!(check.summary, "secrets.env is a symlink (to /etc/shadow), not a regular file");
        assert_eq!(check.evidence["mode"], "missing");
    }

    #[test]
    fn hard_linked_secrets_logs_and_config_fail() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, "").unwrap();
        set_mode(&outside, 0o600);
        let dir = log_dir(tmp.path());
        fs::remove_file(dir.join("audit.log")).unwrap();
        fs::hard_link(&outside, dir.join("audit.log")).unwrap();
        set_mode(&outside, 0o640);
        let check = logs(&dir);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.summary, "audit.log is hard-linked (2 names share the file)");
        assert!(check.fix.starts_with("FIX=1 cannot"), "{}", check.fix);

        let secrets_dir = tmp.path().join("secrets");
        fs::create_dir(&secrets_dir).unwrap();
        set_mode(&secrets_dir, 0o700);
        fs::hard_link(&outside, secrets_dir.join("secrets.env")).unwrap();
        let check = secrets(&secrets_dir, &secrets_dir.join("secrets.env"));
        assert_eq!(
            (check.status, check.summary.as_str()),
            (Status::Fail, "secrets.env is hard-linked (3 names share the file)")
        );

        let roots = crate::tenant::layout::Roots {
            root: tmp.path().join("root"),
            log_root: tmp.path().join("log"),
            backup_root: tmp.path().join("bk"),
            logrotate_dir: tmp.path().join("lr"),
            repository_base: String::new(),
        };
        let layout = ClientLayout::new(&roots, "acme").unwrap();
        fs::create_dir_all(&layout.config_dir).unwrap();
        fs::write(&layout.env_file, "CLIENT_ID='acme'\n").unwrap();
        assert_eq!(config(&layout).status, Status::Ok);
        fs::hard_link(&layout.env_file, tmp.path().join("elsewhere.env")).unwrap();
        let check = config(&layout);
        assert_eq!(
            (check.status, check.summary.as_str()),
            (Status::Fail, "client.env is hard-linked (2 names share the file)")
        );
        symlink(&secrets_dir, &layout.keycloak_dir).unwrap();
        let check = config(&layout);
        assert!(
            check.summary.starts_with(&format!(
                "{} is a symlink (to {})",
                layout.keycloak_dir.display(),
                secrets_dir.display()
            )),
            "{}",
            check.summary
        );
        assert!(check.fix.contains("in place of each link"), "{}", check.fix);
    }
}
