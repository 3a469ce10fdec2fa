//! Per-client secrets: generated from the OS CSPRNG, kept in a 0600 env file, and rotated in
//! steps a killed run can resume (the next generation beside the current one, the previous
//! ones in the history).

use std::fs;

use anyhow::{Context as _, Result};
use base64::Engine as _;

use crate::{
    effects::{Effects, Outcome},
    format::envfile,
    fsutil,
    tenant::{
        context::Context,
        layout::ClientLayout,
        policy::{SECRETS_DIR_MODE, SECRETS_FILE_MODE},
        rotation,
    },
};

/// 32 bytes from the OS CSPRNG, url-safe base64 without padding (43 characters).
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Reads a secrets file; a missing file is empty.
pub fn read(path: &std::path::Path) -> Result<indexmap::IndexMap<String, String>> {
    values(path, fs::read_to_string(path))
}

/// [`read`] as the steps so far left the file (a dry run's planned writes included).
pub fn read_planned(effects: &Effects, path: &std::path::Path) -> Result<indexmap::IndexMap<String, String>> {
    values(path, effects.read_to_string(path))
}

fn values(path: &std::path::Path, read: std::io::Result<String>) -> Result<indexmap::IndexMap<String, String>> {
    match read {
        Ok(text) => envfile::parse(&text).with_context(|| format!("in {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `secrets::lost`: a client whose secrets are gone but whose client.env or repository is
/// not; new secrets would open neither the repository nor what the old ones protected.
pub fn lost(cx: &Context, id: &str) -> Result<String> {
    let layout = ClientLayout::new(&cx.roots, id)?;
    let repository = crate::tenant::backup::BackupConfig::load(&layout)
        .map(|config| config.repository)
        .unwrap_or_else(|_| crate::drivers::restic::Location::parse(&layout.repository));
    let has_repository = repository.is_initialized() == Some(true) || !repository.key_files()?.is_empty();
    let missing = if !layout.secrets_file.exists() {
        "its secrets.env is gone"
    } else if has_repository && !read(&layout.secrets_file)?.contains_key(crate::tenant::backup::PASSWORD_KEY) {
        "its secrets.env holds no RESTIC_PASSWORD"
    } else {
        return Ok(String::new());
    };
    let exists = match (layout.env_file.exists(), has_repository) {
        (true, true) => format!("a client.env and a restic repository ({repository})"),
        (true, false) => "a client.env".to_string(),
        (false, true) => format!("a restic repository ({repository})"),
        (false, false) => return Ok(String::new()),
    };
    let interrupted = if crate::tenant::inventory::interrupted_deletes(&cx.roots).iter().any(|i| i == id) {
        format!("{}. ", crate::tenant::inventory::interrupted_delete_problem(id))
    } else {
        String::new()
    };
    Ok(format!(
        "client {id} has {exists} but {missing}; new secrets would not open what the old ones protect. \
         {interrupted}Restore {} from {} or from the archive of a delete-client ({}/archive/{id}-*/), \
         or run again with REGENERATE_SECRETS=1 to make new ones",
        layout.secrets_file.display(),
        layout.secrets_history_dir.display(),
        cx.roots.root.display()
    ))
}

pub fn render(values: &indexmap::IndexMap<String, String>) -> Result<String> {
    envfile::render(values.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// What [`rotation_begin`] wrote: the names getting new values, those an interrupted run had
/// already given new values, and the pending file.
pub struct Begun {
    pub rotating: Vec<String>,
    pub resumed: Vec<String>,
    pub pending_file: String,
}

/// What [`rotation_commit`] swapped in, and where the previous generation went.
pub struct Committed {
    pub rotated: Vec<String>,
    pub history_file: String,
    /// A dry run's: the swap was only planned.
    pub planned: bool,
}

/// Step 1 of a rotation: the next generation beside the current one.
pub fn rotation_begin(cx: &Context, id: &str, names: &[String]) -> Result<Begun> {
    let layout = ClientLayout::new(&cx.roots, id)?;
    let current = rotation::current(&cx.effects, &layout)?;
    let names = rotation::check_names(&layout, &current, names)?;
    let pending_path = rotation::pending_path(&layout);
    let pending = rotation::read_optional(&cx.effects, &pending_path)?;
    let next = rotation::next_generation(&current, pending.as_ref(), &names, generate)?;
    let detail = match (next.resumed.is_empty(), next.rotating.len() == next.resumed.len()) {
        (true, _) => format!("new values for {}", next.rotating.join(" ")),
        (false, true) => format!("interrupted rotation of {} resumed", next.resumed.join(" ")),
        (false, false) => format!(
            "interrupted rotation of {} resumed; new values for {}",
            next.resumed.join(" "),
            next.rotating.iter().filter(|n| !next.resumed.contains(n)).cloned().collect::<Vec<_>>().join(" ")
        ),
    };
    let target = pending_path.display().to_string();
    cx.write_file(&target, render(&next.values)?.as_bytes(), SECRETS_FILE_MODE, &detail)?;
    Ok(Begun { rotating: next.rotating, resumed: next.resumed, pending_file: target })
}

/// Step 3 of a rotation: the previous generation into the history, the next one swapped in.
pub fn rotation_commit(cx: &Context, id: &str) -> Result<Committed> {
    let layout = ClientLayout::new(&cx.roots, id)?;
    let pending_path = rotation::pending_path(&layout);
    let current = rotation::current(&cx.effects, &layout)?;
    let pending = rotation::read_optional(&cx.effects, &pending_path)?;
    let rotated: Vec<String> = match &pending {
        Some(next) => {
            current.keys().filter(|k| next.get(*k).is_some_and(|v| Some(v) != current.get(*k))).cloned().collect()
        }
        None => anyhow::bail!("no new generation of {id}'s secrets to swap in ({} is missing)", pending_path.display()),
    };

    // The history dir, 0700 like the secrets dir.
    let dir = &layout.secrets_history_dir;
    let needed = if dir.is_dir() { Outcome::Unchanged } else { Outcome::Created };
    cx.effects.apply("mkdir", &dir.display().to_string(), "mode 0700", needed, || {
        fsutil::create_dir(dir, SECRETS_DIR_MODE)?;
        Ok(())
    })?;

    // The current generation into the history, unless an interrupted run put it there.
    let text = render(&current)?;
    let history = rotation::history_files(&cx.effects, &layout);
    let newest_is_current = match history.last() {
        Some(file) => read_planned(&cx.effects, file)? == current,
        None => false,
    };
    let history_file = if newest_is_current {
        history.last().cloned().expect("checked above")
    } else {
        dir.join(rotation::history_name(std::time::SystemTime::now()))
    };
    let keys: Vec<&str> = current.keys().map(String::as_str).collect();
    let detail = format!("previous generation: {}", keys.join(" "));
    cx.write_file(&history_file.display().to_string(), text.as_bytes(), SECRETS_FILE_MODE, &detail)?;

    // The swap: one rename, so secrets.env is always one whole generation.
    let detail = if rotated.is_empty() {
        "the new generation".to_string()
    } else {
        format!("new values for {}", rotated.join(" "))
    };
    cx.effects.swap_in(&pending_path, &layout.secrets_file, &detail)?;
    let planned = cx.effects.planned_on(&layout.secrets_file.display().to_string());

    Ok(Committed { rotated, history_file: history_file.display().to_string(), planned })
}

/// Removes the temp files of generations that killed rotations were writing
/// (`.secrets.env.<stamp>.XXXXXX.tmp`): no later write has that name, so none sweeps them, and
/// the client's lock is held, so none of them is live.
fn sweep_history_temp_files(cx: &Context, layout: &ClientLayout) -> Result<()> {
    let dir = &layout.secrets_history_dir;
    if !dir.is_dir() {
        return Ok(());
    }
    cx.effects.side_effect(|| Ok(fsutil::remove_temp_files_of_names(dir, rotation::HISTORY_PREFIX)?))?;
    Ok(())
}

/// Step 5 of a rotation: only the newest `keep` previous generations stay.
pub fn prune_history(cx: &Context, id: &str, keep: i64) -> Result<usize> {
    if keep < 1 {
        anyhow::bail!("SECRETS_HISTORY must keep at least 1 previous generation, got {keep}");
    }
    let layout = ClientLayout::new(&cx.roots, id)?;
    sweep_history_temp_files(cx, &layout)?;
    let files = rotation::history_files(&cx.effects, &layout);
    let excess = files.len().saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
    for file in &files[..excess] {
        cx.effects.remove_file(file, "old secrets generation")?;
    }
    Ok(excess)
}
