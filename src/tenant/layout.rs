//! Where a client's files live (SPEC §6). Every root is a setting, so tests and sites can
//! move them; every path is built from a validated client id, so none leaves its root.

use std::path::{Component, Path, PathBuf};

use anyhow::{Result, bail};

use crate::{format::validate, fsutil, tenant::policy, tenant::settings::Settings};

#[derive(Debug, Clone)]
pub struct Roots {
    pub root: PathBuf,
    pub log_root: PathBuf,
    pub backup_root: PathBuf,
    pub logrotate_dir: PathBuf,
    /// `s3:...`, `rest:...`: repositories live there instead of under `backup_root`.
    pub repository_base: String,
}

impl Roots {
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        Self {
            root: settings.path("AGENCY_ROOT"),
            log_root: settings.path("AGENCY_LOG_ROOT"),
            backup_root: settings.path("AGENCY_BACKUP_ROOT"),
            logrotate_dir: settings.path("LOGROTATE_DIR"),
            repository_base: settings.get("RESTIC_REPOSITORY_BASE").to_string(),
        }
    }

    pub(crate) fn clients_dir(&self) -> PathBuf {
        self.root.join("clients")
    }

    /// `$AGENCY_ROOT/secrets/keycloak.env`: the Keycloak admin's credentials (0600).
    pub(crate) fn keycloak_credentials(&self) -> PathBuf {
        self.root.join("secrets").join("keycloak.env")
    }

    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.root.join(".locks")
    }

    /// The directories scripts may touch.
    pub(crate) fn all(&self) -> [&Path; 4] {
        [&self.root, &self.log_root, &self.backup_root, &self.logrotate_dir]
    }

    /// Ids of the clients that have a config dir, sorted; none when there is no clients dir
    /// yet. A dir that cannot be read (permission denied) is an error, never "no clients".
    pub(crate) fn client_ids(&self) -> Result<Vec<String>> {
        let dir = self.clients_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => bail!("cannot read the clients of {}: {e}", dir.display()),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Resolves `path` if it lies inside one of the roots, following no `..` and no
    /// symlink out of the root.
    pub fn confine(&self, path: &str) -> Result<PathBuf> {
        let candidate = Path::new(path);
        if !candidate.is_absolute() {
            bail!("path {path:?} must be absolute");
        }
        if candidate.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
            bail!("path {path:?} must not contain '.' or '..'");
        }
        let Some(root) = self.all().into_iter().find(|root| candidate.starts_with(root)) else {
            bail!("path {path:?} is outside the configured roots ({})", self.describe());
        };
        // A symlink inside the root must not lead out of it. Without any symlink below the
        // root (the usual case: one lstat per component, stopping at the first missing one)
        // the path cannot leave it; with one, resolve the deepest existing ancestor.
        let mut walked = root.to_path_buf();
        for part in candidate.strip_prefix(root).unwrap_or(Path::new("")).components() {
            walked.push(part);
            match std::fs::symlink_metadata(&walked) {
                Ok(meta) if meta.file_type().is_symlink() => return self.confine_through_symlink(path, root),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(candidate.to_path_buf())
    }

    /// Resolves `path` for a change (a directory made, a file written, a mode set): inside
    /// one of the roots, and no symlink at any of its components below the root, even one
    /// staying inside it (`clients/x/keycloak -> ../../secrets/y` would have a mkdir make
    /// y 0750). A regular file there with other names (a hard link, which may be a file
    /// outside every root) is refused too.
    pub(crate) fn confine_change(&self, path: &str) -> Result<PathBuf> {
        let candidate = self.confine_change_entry(path)?;
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => bail!(
                "{path} is a symlink; a change never follows one (replace the link with a real directory or \
                 file by hand; multi-tenancy-status names it)"
            ),
            Ok(meta) => fsutil::refuse_hard_link(&candidate, &meta)?,
            Err(_) => {}
        }
        Ok(candidate)
    }

    /// [`Roots::confine_change`] for a change of the entry `path` itself (removing or moving
    /// it, never following it): its directories below the root hold no symlink; the entry may
    /// be one.
    pub(crate) fn confine_change_entry(&self, path: &str) -> Result<PathBuf> {
        let candidate = self.confine_lexically(path)?;
        let root =
            self.all().into_iter().filter(|root| candidate.starts_with(root)).max_by_key(|r| r.as_os_str().len());
        let root = root.expect("confined lexically");
        let mut walked = root.to_path_buf();
        let below: Vec<Component> = candidate.strip_prefix(root).unwrap_or(Path::new("")).components().collect();
        for part in below.iter().take(below.len().saturating_sub(1)) {
            walked.push(part);
            match std::fs::symlink_metadata(&walked) {
                Ok(meta) if meta.file_type().is_symlink() => bail!(
                    "{path} leads through the symlink {}; a change never follows one inside the roots",
                    walked.display()
                ),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Ok(candidate)
    }

    /// [`Roots::confine`] for a path with a symlink below its root: the deepest existing
    /// ancestor, resolved, must still lie inside the resolved root.
    fn confine_through_symlink(&self, path: &str, root: &Path) -> Result<PathBuf> {
        let candidate = Path::new(path);
        let existing = candidate.ancestors().find(|a| a.exists()).unwrap_or(root);
        if let (Ok(real), Ok(real_root)) = (existing.canonicalize(), root.canonicalize())
            && !real.starts_with(&real_root)
        {
            bail!("path {path:?} leads outside {} through a symlink", root.display());
        }
        Ok(candidate.to_path_buf())
    }

    /// The client a change's target belongs to: a path inside one of its directories, its
    /// logrotate policy or repository, or one of its network names (`acme_backend`).
    pub(crate) fn client_of_target(&self, target: &str) -> Option<String> {
        let path = Path::new(target);
        let first = |base: PathBuf, prefix: &str| -> Option<String> {
            let rest = path.strip_prefix(base).ok()?;
            let Some(Component::Normal(name)) = rest.components().next() else { return None };
            name.to_str()?.strip_prefix(prefix).map(str::to_string)
        };
        let id = if path.is_absolute() {
            first(self.clients_dir(), "")
                .or_else(|| first(self.root.join("secrets"), ""))
                .or_else(|| first(self.log_root.join("clients"), ""))
                .or_else(|| first(self.logrotate_dir.clone(), "agency_stack-"))
                .or_else(|| first(self.backup_root.clone(), "client-"))?
        } else {
            let (id, tier) = target.rsplit_once('_')?;
            if !policy::TIER_NAMES.contains(&tier) {
                return None;
            }
            id.to_string()
        };
        validate::client_id(&id).is_ok().then_some(id)
    }

    /// Like [`Roots::confine`] for the directory holding `path`, not for `path` itself: the
    /// entry may be a symlink pointing anywhere (to be reported or removed, never followed).
    pub(crate) fn confine_entry(&self, path: &str) -> Result<PathBuf> {
        let candidate = Path::new(path);
        let (Some(parent), Some(_)) = (candidate.parent(), candidate.file_name()) else {
            bail!("path {path:?} has no parent directory");
        };
        self.confine(&parent.to_string_lossy())?;
        self.confine_lexically(path)
    }

    /// The checks of [`Roots::confine`] that do not look at the disk.
    fn confine_lexically(&self, path: &str) -> Result<PathBuf> {
        let candidate = Path::new(path);
        if !candidate.is_absolute() {
            bail!("path {path:?} must be absolute");
        }
        if candidate.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
            bail!("path {path:?} must not contain '.' or '..'");
        }
        if !self.all().into_iter().any(|root| candidate.starts_with(root)) {
            bail!("path {path:?} is outside the configured roots ({})", self.describe());
        }
        Ok(candidate.to_path_buf())
    }

    fn describe(&self) -> String {
        self.all().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// Every path of one client.
#[derive(Debug, Clone)]
pub struct ClientLayout {
    pub id: String,
    pub config_dir: PathBuf,
    pub env_file: PathBuf,
    pub compose_override: PathBuf,
    pub keycloak_dir: PathBuf,
    pub realm_file: PathBuf,
    pub backup_dir: PathBuf,
    pub backup_config: PathBuf,
    pub traefik_file: PathBuf,
    pub secrets_dir: PathBuf,
    pub secrets_file: PathBuf,
    pub secrets_history_dir: PathBuf,
    pub log_dir: PathBuf,
    pub audit_log: PathBuf,
    pub logrotate_file: PathBuf,
    /// A local path or a remote restic repository URL.
    pub repository: String,
}

impl ClientLayout {
    pub fn new(roots: &Roots, id: &str) -> Result<Self> {
        if let Err(e) = validate::client_id(id) {
            bail!("invalid client id: {e}");
        }
        let config_dir = roots.clients_dir().join(id);
        let secrets_dir = roots.root.join("secrets").join(id);
        let log_dir = roots.log_root.join("clients").join(id);
        let repository = repository_of(id, &roots.repository_base, &roots.backup_root);
        Ok(Self {
            id: id.to_string(),
            env_file: config_dir.join("client.env"),
            compose_override: config_dir.join("docker-compose.override.yml"),
            keycloak_dir: config_dir.join("keycloak"),
            realm_file: config_dir.join("keycloak/realm.json"),
            backup_dir: config_dir.join("backup"),
            backup_config: config_dir.join("backup/config.sh"),
            traefik_file: config_dir.join("traefik.yml"),
            config_dir,
            secrets_file: secrets_dir.join("secrets.env"),
            secrets_history_dir: secrets_dir.join("history"),
            secrets_dir,
            audit_log: log_dir.join("audit.log"),
            log_dir,
            logrotate_file: roots.logrotate_dir.join(format!("agency_stack-{id}")),
            repository,
        })
    }

    /// The Docker networks of the client, by tier.
    pub(crate) fn networks(&self) -> [(&'static str, String); 4] {
        policy::TIER_NAMES.map(|tier| (tier, format!("{}_{tier}", self.id)))
    }
}

/// The repository of client `id`: `<base>/client-<id>` when `base` (the
/// `RESTIC_REPOSITORY_BASE`) is set and not blank, else `<backup_root>/client-<id>`. A base
/// ending in `/` or `:` takes the name as it is (`sftp:backup@host:` names the sftp user's
/// home, `sftp:backup@host:/client-<id>` would be the host's root).
pub(crate) fn repository_of(id: &str, base: &str, backup_root: &Path) -> String {
    let name = format!("client-{id}");
    match base.trim() {
        "" => backup_root.join(name).display().to_string(),
        base => {
            let separator = if base.ends_with('/') || base.ends_with(':') { "" } else { "/" };
            format!("{base}{separator}{name}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Roots {
        Roots {
            root: "/srv/a".into(),
            log_root: "/srv/log".into(),
            backup_root: "/srv/bk".into(),
            logrotate_dir: "/srv/lr".into(),
            repository_base: String::new(),
        }
    }

    #[test]
    fn confines_paths_to_roots() {
        let roots = roots();
        assert!(roots.confine("/srv/a/clients/acme/client.env").is_ok());
        assert!(roots.confine("/srv/a/../etc/passwd").is_err());
        assert!(roots.confine("/etc/passwd").is_err());
        assert!(roots.confine("relative/path").is_err());
        assert!(roots.confine("/srv/ab/x").is_err());
    }

    /// Roots under a temp dir, the main one at `base/root`.
    fn roots_in(base: &Path) -> Roots {
        Roots {
            root: base.join("root"),
            log_root: base.join("log"),
            backup_root: base.join("bk"),
            logrotate_dir: base.join("lr"),
            repository_base: String::new(),
        }
    }

    #[test]
    fn symlinks_below_a_root_are_followed_only_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("root/clients/acme")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::os::unix::fs::symlink(base.join("root/clients/acme"), base.join("root/clients/alias")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), base.join("root/clients/escape")).unwrap();
        let root = base.join("root");
        let roots = roots_in(base);
        let at = |rel: &str| root.join(rel).display().to_string();
        assert!(roots.confine(&at("clients/acme/client.env")).is_ok());
        assert!(roots.confine(&at("clients/new/deeper/file")).is_ok(), "missing components are fine");
        assert!(roots.confine(&at("clients/alias/client.env")).is_ok(), "a symlink staying inside the root");
        let error = roots.confine(&at("clients/escape/secrets.env")).unwrap_err().to_string();
        assert!(error.contains("through a symlink"), "{error}");
        assert!(roots.confine(&at("clients/escape/a/b")).is_err());
        assert!(roots.confine(&at("clients/escape")).is_err());
    }

    #[test]
    fn a_change_follows_no_symlink_and_touches_no_hard_linked_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("clients/x")).unwrap();
        std::fs::create_dir_all(root.join("secrets/y")).unwrap();
        std::os::unix::fs::symlink(root.join("secrets/y"), root.join("clients/x/keycloak")).unwrap();
        std::fs::write(base.join("outside"), "").unwrap();
        std::fs::hard_link(base.join("outside"), root.join("clients/x/client.env")).unwrap();
        let roots = roots_in(base);
        let at = |rel: &str| root.join(rel).display().to_string();
        assert!(roots.confine(&at("clients/x/keycloak/realm.json")).is_ok(), "reads may follow it inside the root");
        let error = roots.confine_change(&at("clients/x/keycloak")).unwrap_err().to_string();
        assert!(error.contains("is a symlink; a change never follows one"), "{error}");
        let error = roots.confine_change(&at("clients/x/keycloak/realm.json")).unwrap_err().to_string();
        assert!(error.contains("leads through the symlink"), "{error}");
        assert!(roots.confine_change_entry(&at("clients/x/keycloak")).is_ok(), "the link itself may be removed");
        let error = roots.confine_change(&at("clients/x/client.env")).unwrap_err().to_string();
        assert!(error.contains("is hard-linked (2 names share the file)"), "{error}");
        assert!(roots.confine_change(&at("clients/x/new/deeper")).is_ok(), "missing components are fine");
        assert!(roots.confine_change("/etc/passwd").is_err());
    }

    #[test]
    fn repository_paths_follow_the_base() {
        let root = Path::new("/var/backups/agency_stack");
        let of = |base: &str| repository_of("acme", base, root);
        assert_eq!(of(""), "/var/backups/agency_stack/client-acme");
        assert_eq!(of("  "), "/var/backups/agency_stack/client-acme");
        assert_eq!(of("s3:https://s3.example.com/bucket"), "s3:https://s3.example.com/bucket/client-acme");
        assert_eq!(of("rest:https://backup.example.com/"), "rest:https://backup.example.com/client-acme");
        assert_eq!(of("sftp:backup@host:"), "sftp:backup@host:client-acme");
        assert_eq!(of("sftp:backup@host:/srv/restic"), "sftp:backup@host:/srv/restic/client-acme");
        assert_eq!(of("/mnt/backups"), "/mnt/backups/client-acme");
        let roots = Roots { repository_base: "sftp:backup@host:".into(), ..roots() };
        assert_eq!(ClientLayout::new(&roots, "acme").unwrap().repository, "sftp:backup@host:client-acme");
    }

    #[test]
    fn layout_rejects_hostile_ids() {
        assert!(ClientLayout::new(&roots(), "../etc").is_err());
        let layout = ClientLayout::new(&roots(), "acme").unwrap();
        assert_eq!(layout.secrets_file, Path::new("/srv/a/secrets/acme/secrets.env"));
        assert_eq!(layout.repository, "/srv/bk/client-acme");
    }

    #[test]
    fn finds_the_client_a_target_belongs_to() {
        let roots = roots();
        let of = |t: &str| roots.client_of_target(t);
        assert_eq!(of("/srv/a/clients/acme/client.env").as_deref(), Some("acme"));
        assert_eq!(of("/srv/a/clients/acme").as_deref(), Some("acme"));
        assert_eq!(of("/srv/a/secrets/beta/secrets.env").as_deref(), Some("beta"));
        assert_eq!(of("/srv/log/clients/acme/audit.log").as_deref(), Some("acme"));
        assert_eq!(of("/srv/lr/agency_stack-acme").as_deref(), Some("acme"));
        assert_eq!(of("/srv/bk/client-acme/snapshots").as_deref(), Some("acme"));
        assert_eq!(of("acme-2_backend").as_deref(), Some("acme-2"));
        assert_eq!(of("/srv/a/archive/acme-20240101T000000Z"), None);
        assert_eq!(of("/srv/lr"), None);
        assert_eq!(of("/srv/log/clients/x"), None, "not a valid client id");
        assert_eq!(of("bridge"), None);
        assert_eq!(of("acme_other"), None);
    }
}
