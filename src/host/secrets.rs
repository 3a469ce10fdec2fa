//! `secrets::` — per-client secrets, generated from the OS CSPRNG and kept in a 0600 env
//! file. Values never pass through scripts' output: `ensure` only reports key names.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `secrets::ensure(path, [names])` | yes | names added; existing values are never changed |
//! | `secrets::lost(id)` | no | why new secrets for client `id` would lose what exists (its secrets.env, or the `RESTIC_PASSWORD` in it, gone while its client.env or restic repository is there), with how to restore them; `""` when nothing would be lost |
//! | `secrets::names(path)` | no | the keys present, `[]` when the file is missing |
//! | `secrets::generate()` | no | a fresh url-safe random value (32 bytes, base64url, no padding) |
//! | `secrets::rotation_begin(id, names)` | yes | writes the next generation beside `secrets.env` (`secrets.env.next`, 0600): fresh values for `names` (all when `[]`), reusing a pending generation of an interrupted run; `#{rotating, resumed, pending_file}` |
//! | `secrets::rotation_commit(id)` | yes | copies `secrets.env` into the history (0600), then renames `secrets.env.next` over it (atomic); `#{rotated, history_file}` |
//! | `secrets::prune_history(id, keep)` | yes | removes all but the newest `keep` history generations; the number removed |

use std::{fs, rc::Rc};

use anyhow::{Context, Result};
use base64::Engine as _;
use rhai::{Array, Dynamic, INT, Map, Module};

use super::{Host, ScriptResult, fs::write_file, script_error};
use crate::{effects::Outcome, format::envfile, fsutil, tenant::layout::ClientLayout, tenant::rotation};

/// File mode of every secrets file.
pub const SECRETS_MODE: u32 = 0o600;

/// 32 bytes from the OS CSPRNG, url-safe base64 without padding (43 characters).
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Reads a secrets file; a missing file is empty.
pub fn read(path: &std::path::Path) -> Result<indexmap::IndexMap<String, String>> {
    match fs::read_to_string(path) {
        Ok(text) => envfile::parse(&text).with_context(|| format!("in {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("ensure", move |path: &str, names: Array| -> ScriptResult<Array> {
        let file = h.roots.confine(path).map_err(script_error)?;
        let mut values = read(&file).map_err(script_error)?;
        let mut added = Vec::new();
        for name in names {
            let name = name.to_string();
            crate::format::validate::secret_name(&name).map_err(|e| format!("invalid secret name: {e}"))?;
            if !values.contains_key(&name) {
                values.insert(name.clone(), generate().map_err(script_error)?);
                added.push(name);
            }
        }
        let text = envfile::render(values.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(script_error)?;
        let detail = if added.is_empty() { "no new keys".to_string() } else { format!("new keys {}", added.join(" ")) };
        write_file(&h, path, text.as_bytes(), SECRETS_MODE, &detail)?;
        Ok(added.into_iter().map(Dynamic::from).collect())
    });

    let h = host.clone();
    module.set_native_fn("lost", move |id: &str| -> ScriptResult<String> { lost(&h, id).map_err(script_error) });

    let h = host.clone();
    module.set_native_fn("names", move |path: &str| -> ScriptResult<Array> {
        let file = h.roots.confine(path).map_err(script_error)?;
        Ok(read(&file).map_err(script_error)?.into_keys().map(Dynamic::from).collect())
    });

    module.set_native_fn("generate", || -> ScriptResult<String> { generate().map_err(script_error) });

    let h = host.clone();
    module.set_native_fn("rotation_begin", move |id: &str, names: Array| -> ScriptResult<Map> {
        let names: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
        rotation_begin(&h, id, &names).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("rotation_commit", move |id: &str| -> ScriptResult<Map> {
        rotation_commit(&h, id).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("prune_history", move |id: &str, keep: INT| -> ScriptResult<INT> {
        prune_history(&h, id, keep).map_err(script_error)
    });

    module
}

/// `secrets::lost`: a client whose secrets are gone but whose client.env or repository is
/// not; new secrets would open neither the repository nor what the old ones protected.
fn lost(host: &Host, id: &str) -> Result<String> {
    let layout = ClientLayout::new(&host.roots, id)?;
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
    Ok(format!(
        "client {id} has {exists} but {missing}; new secrets would not open what the old ones protect. \
         Restore {} from {} or from the archive of a delete-client ({}/archive/{id}-*/), \
         or run again with REGENERATE_SECRETS=1 to make new ones",
        layout.secrets_file.display(),
        layout.secrets_history_dir.display(),
        host.roots.root.display()
    ))
}

/// A script error of a shared helper, back into the host's error type.
fn plain<T>(result: ScriptResult<T>) -> Result<T> {
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

fn names_array(names: &[String]) -> Dynamic {
    Dynamic::from(names.iter().cloned().map(Dynamic::from).collect::<Array>())
}

fn render(values: &indexmap::IndexMap<String, String>) -> Result<String> {
    envfile::render(values.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Step 1 of a rotation: the next generation beside the current one.
fn rotation_begin(host: &Host, id: &str, names: &[String]) -> Result<Map> {
    let layout = ClientLayout::new(&host.roots, id)?;
    let current = rotation::current(&layout)?;
    let names = rotation::check_names(&layout, &current, names)?;
    let pending_path = rotation::pending_path(&layout);
    let pending = rotation::read_optional(&pending_path)?;
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
    plain(write_file(host, &target, render(&next.values)?.as_bytes(), SECRETS_MODE, &detail))?;
    let mut map = Map::new();
    map.insert("rotating".into(), names_array(&next.rotating));
    map.insert("resumed".into(), names_array(&next.resumed));
    map.insert("pending_file".into(), Dynamic::from(target));
    Ok(map)
}

/// Step 3 of a rotation: the previous generation into the history, the next one swapped in.
fn rotation_commit(host: &Host, id: &str) -> Result<Map> {
    let layout = ClientLayout::new(&host.roots, id)?;
    let pending_path = rotation::pending_path(&layout);
    let current = rotation::current(&layout)?;
    let pending = rotation::read_optional(&pending_path)?;
    let rotated: Vec<String> = match &pending {
        Some(next) => {
            current.keys().filter(|k| next.get(*k).is_some_and(|v| Some(v) != current.get(*k))).cloned().collect()
        }
        None if host.effects.dry_run() => Vec::new(),
        None => anyhow::bail!("no new generation of {id}'s secrets to swap in ({} is missing)", pending_path.display()),
    };

    // The history dir, 0700 like the secrets dir.
    let dir = &layout.secrets_history_dir;
    let needed = if dir.is_dir() { Outcome::Unchanged } else { Outcome::Created };
    host.effects.apply("mkdir", &dir.display().to_string(), "mode 0700", needed, || {
        fsutil::create_dir(dir, rotation::HISTORY_DIR_MODE)?;
        Ok(())
    })?;

    // The current generation into the history, unless an interrupted run put it there.
    let text = render(&current)?;
    let history = rotation::history_files(&layout)?;
    let newest_is_current = match history.last() {
        Some(file) => secrets_equal(file, &current)?,
        None => false,
    };
    let history_file = if newest_is_current {
        history.last().cloned().expect("checked above")
    } else {
        dir.join(rotation::history_name(std::time::SystemTime::now()))
    };
    let keys: Vec<&str> = current.keys().map(String::as_str).collect();
    let detail = format!("previous generation: {}", keys.join(" "));
    plain(write_file(host, &history_file.display().to_string(), text.as_bytes(), SECRETS_MODE, &detail))?;

    // The swap: one rename, so secrets.env is always one whole generation.
    let needed = if pending.is_some() || host.effects.dry_run() { Outcome::Updated } else { Outcome::Unchanged };
    let detail = if rotated.is_empty() {
        "the new generation".to_string()
    } else {
        format!("new values for {}", rotated.join(" "))
    };
    host.effects.apply("swap in", &layout.secrets_file.display().to_string(), &detail, needed, || {
        let file = std::fs::File::open(&pending_path)?;
        file.sync_all()?;
        std::fs::rename(&pending_path, &layout.secrets_file).with_context(|| {
            format!("cannot rename {} over {}", pending_path.display(), layout.secrets_file.display())
        })?;
        std::fs::File::open(&layout.secrets_dir)?.sync_all()?;
        Ok(())
    })?;

    let mut map = Map::new();
    map.insert("rotated".into(), names_array(&rotated));
    map.insert("history_file".into(), Dynamic::from(history_file.display().to_string()));
    Ok(map)
}

fn secrets_equal(file: &std::path::Path, values: &indexmap::IndexMap<String, String>) -> Result<bool> {
    Ok(&read(file)? == values)
}

/// Step 5 of a rotation: only the newest `keep` previous generations stay.
fn prune_history(host: &Host, id: &str, keep: INT) -> Result<INT> {
    if keep < 1 {
        anyhow::bail!("SECRETS_HISTORY must keep at least 1 previous generation, got {keep}");
    }
    let layout = ClientLayout::new(&host.roots, id)?;
    let files = rotation::history_files(&layout)?;
    let excess = files.len().saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
    for file in &files[..excess] {
        host.effects.apply(
            "remove",
            &file.display().to_string(),
            "old secrets generation",
            Outcome::Removed,
            || std::fs::remove_file(file).with_context(|| format!("cannot remove {}", file.display())),
        )?;
    }
    Ok(excess as INT)
}
