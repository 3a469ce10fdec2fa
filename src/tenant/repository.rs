//! A client's restic repository as runs use it: whether this host keeps backups, the
//! repository's config, what killed runs left cleared before use, and the rotation's key
//! steps (a key for the pending password, the previous password's key removed).

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    drivers::restic::{Location, Password, Restic, ResticError},
    effects::{Background, Finish, Outcome},
    tenant::{
        backup::{self, BackupConfig},
        context::Context,
        layout::ClientLayout,
        recovery, rotation, secrets,
    },
};

/// `AGENCY_BACKUPS`: `restic` (default) or `off` (this host keeps no backups).
pub fn backups_on(cx: &Context) -> Result<bool> {
    match cx.settings.get("AGENCY_BACKUPS") {
        "restic" | "" => Ok(true),
        "off" => Ok(false),
        other => bail!("AGENCY_BACKUPS={other:?} is neither restic nor off"),
    }
}

pub fn require_backups(cx: &Context) -> Result<()> {
    if backups_on(cx)? { Ok(()) } else { bail!("backups are turned off on this host (AGENCY_BACKUPS=off)") }
}

/// restic, or what to install (or that a host may keep no backups).
pub fn locate() -> Result<Restic> {
    Restic::locate().map_err(|e| anyhow!("{e}; or set AGENCY_BACKUPS=off on a host that keeps no backups"))
}

/// Clears what killed runs left before the repository is used (`recovery::before_use`);
/// the number of keys removed.
pub fn recover(cx: &Context, layout: &ClientLayout, config: &BackupConfig) -> Result<usize> {
    recovery::before_use(cx, layout, &config.repository, || backup::repo(&locate()?, layout, config))
}

pub fn layout(cx: &Context, id: &str) -> Result<ClientLayout> {
    ClientLayout::new(&cx.roots, id)
}

pub fn setup(cx: &Context, id: &str) -> Result<(ClientLayout, BackupConfig)> {
    require_backups(cx)?;
    let layout = layout(cx, id)?;
    let config = BackupConfig::load(&layout)?;
    Ok((layout, config))
}

/// `restic::start_init`: decides whether the repository needs an init and starts it — cheap
/// for a local repository (its config file), one open for a remote one (only restic can tell
/// whether it exists). restic derives its key (≈ 2.5 s) while the caller goes on; the
/// returned step is awaited with [`Effects::wait`](crate::effects::Effects::wait).
pub fn start_init(cx: &Context, id: &str) -> Result<Background> {
    if !backups_on(cx)? {
        let layout = layout(cx, id)?;
        cx.effects.unchanged("restic init", &layout.repository, "skipped: AGENCY_BACKUPS=off");
        return Ok(Background::done(Outcome::Unchanged));
    }
    let (layout, config) = setup(cx, id)?;
    let location = config.repository.clone();
    let needed = match location.is_initialized() {
        Some(true) => Outcome::Unchanged,
        Some(false) => Outcome::Created,
        None => {
            // A dry run of a new client reads the secrets.env it planned.
            let secrets = secrets::read_planned(&cx.effects, &layout.secrets_file)?;
            let password = password_in(&secrets, &layout.secrets_file)?;
            match locate()?.repo(location.clone(), password).open() {
                Ok(()) => Outcome::Unchanged,
                Err(e) if matches!(ResticError::of(&e), Some(ResticError::RepositoryMissing { .. })) => {
                    Outcome::Created
                }
                Err(e) => return Err(e),
            }
        }
    };
    let half_done = location.is_half_initialized()?;
    let detail = if half_done {
        "password from secrets.env; again: a stopped init had left keys but no config"
    } else {
        "password from secrets.env"
    };
    let started = cx.effects.start("restic init", &location.to_string(), detail, needed, || {
        let repo = backup::repo(&locate()?, &layout, &config)?;
        if let Location::Local(path) = &location {
            // restic makes the directory 0700 itself; its parent must exist.
            if let Some(parent) = path.parent() {
                crate::fsutil::create_dir(parent, 0o700)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
        }
        if half_done {
            location.clear_half_init()?;
        }
        let running = repo.start_init()?;
        Ok(Box::new(move || running.wait()) as Finish)
    })?;
    // A second init of an earlier run may have left a key whose master key does not open the
    // config (restic then fails for the password on disk whenever it tries that key first).
    if needed == Outcome::Unchanged {
        recover(cx, &layout, &config)?;
    }
    Ok(started)
}

/// The `RESTIC_PASSWORD` of an env file of the client's secrets.
pub fn password_in(values: &indexmap::IndexMap<String, String>, file: &Path) -> Result<Password> {
    let value = values
        .get(backup::PASSWORD_KEY)
        .ok_or_else(|| anyhow!("{} holds no {}", file.display(), backup::PASSWORD_KEY))?;
    Password::new(value.as_str()).with_context(|| format!("{} in {}", backup::PASSWORD_KEY, file.display()))
}

/// Rotation, "applied": the new password (in `secrets.env.next`) gets a key of its own,
/// added with the current password, and is proved to open the repository. Until the swap
/// both passwords open it.
pub fn add_pending_key(cx: &Context, id: &str) -> Result<Outcome> {
    let (layout, config) = match setup(cx, id) {
        Ok(found) => found,
        Err(_) if !backups_on(cx)? => return Ok(Outcome::Unchanged),
        Err(e) => return Err(e),
    };
    let target = config.repository.to_string();
    let pending_path = rotation::pending_path(&layout);
    // A dry run reads the secrets.env.next its rotation_begin planned.
    let Some(pending) = rotation::read_optional(&cx.effects, &pending_path)? else {
        bail!(
            "no new generation of {id}'s secrets ({} is missing); rotation_begin comes first",
            pending_path.display()
        );
    };
    recover(cx, &layout, &config)?;
    let restic = locate()?;
    let current = backup::password(&layout)?;
    let next = password_in(&pending, &pending_path)?;
    if next == current {
        cx.effects.unchanged("restic key add", &target, "RESTIC_PASSWORD is not rotated");
        return Ok(Outcome::Unchanged);
    }
    let with_next = restic.repo(config.repository.clone(), next.clone());
    let needed = match with_next.open() {
        Ok(()) => Outcome::Unchanged,
        Err(e) if matches!(ResticError::of(&e), Some(ResticError::WrongPassword { .. })) => Outcome::Created,
        Err(e) => return Err(e),
    };
    let detail = if needed == Outcome::Unchanged {
        "the new RESTIC_PASSWORD opens it already"
    } else {
        "a key for the new RESTIC_PASSWORD (secrets.env.next)"
    };
    let outcome = cx
        .effects
        .apply("restic key add", &target, detail, needed, || {
            restic.repo(config.repository.clone(), current.clone()).key_add(&next, &layout.secrets_dir)?;
            with_next.open().context("the new key was added but does not open the repository")
        })?
        .outcome;
    Ok(outcome)
}

/// Rotation, "old keys removed": every key that neither the current password nor a pending
/// one opens is removed (after the swap: the previous password's; first thing in a run:
/// what an interrupted one left).
pub fn remove_previous_keys(cx: &Context, id: &str) -> Result<usize> {
    if !backups_on(cx)? {
        return Ok(0);
    }
    let (layout, config) = setup(cx, id)?;
    let target = config.repository.to_string();
    // A swap that is only planned leaves the password on disk a previous one: its key is
    // what the swap's run would remove.
    let planned = secrets::read_planned(&cx.effects, &layout.secrets_file)?;
    let on_disk = secrets::read(&layout.secrets_file)?;
    if planned.get(backup::PASSWORD_KEY) != on_disk.get(backup::PASSWORD_KEY) {
        let detail = "key of the previous RESTIC_PASSWORD";
        cx.effects.apply("restic key remove", &target, detail, Outcome::Removed, || Ok(()))?;
        return Ok(1);
    }
    let removed = recover(cx, &layout, &config)?;
    if removed == 0 {
        cx.effects.unchanged("restic key remove", &target, "no key of a previous RESTIC_PASSWORD is left");
    }
    Ok(removed)
}
