//! `fs::` — files and directories inside the configured roots.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `fs::mkdir(path, mode)` | yes | "created" / "updated" (mode repaired) / "unchanged" |
//! | `fs::write(path, text, mode)` | yes | atomic write, mode set at creation |
//! | `fs::touch(path, mode)` | yes | creates an empty file if missing, repairs its mode |
//! | `fs::chmod(path, mode)` | yes | repairs a mode |
//! | `fs::remove(path)` | yes | removes a file |
//! | `fs::rename(from, to)` | yes | moves a file or a whole directory; never overwrites `to`; "moved", or "unchanged" when `from` is gone and `to` exists |
//! | `fs::read(path)` | no | the file's text |
//! | `fs::exists(path)` | no | bool |
//! | `fs::mode(path)` | no | permission bits, or -1 when missing |
//! | `fs::list(dir)` | no | sorted entry names, `[]` when missing |
//! | `fs::kind(path)` | no | `"file"`, `"dir"`, `"symlink"`, `"other"` or `"missing"`, never following a symlink |
//! | `fs::link_target(path)` | no | where a symlink points (`""` for anything else) |
//! | `fs::links(path)` | no | how many names the entry has (more than 1: a hard-linked file, which no change touches); 0 when missing, never following a symlink |
//! | `fs::unlink(path)` | yes | removes a symlink itself (never its target); "removed" / "unchanged" (no symlink there) |
//!
//! No change follows a symlink below a root (a mkdir, write, touch or chmod refuses a path
//! with one at any component; remove, rename and unlink act on the entry itself, never on a
//! link's target), and none reaches a regular file with other names (a hard link).

use std::{fs, rc::Rc};

use anyhow::Context;
use rhai::{Array, Dynamic, INT, Module};

use super::{Host, ScriptResult, mode_arg, script_error};
use crate::{effects::Outcome, fsutil};

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("mkdir", move |path: &str, mode: INT| -> ScriptResult<String> {
        let mode = mode_arg(mode)?;
        let path = h.roots.confine_change(path).map_err(script_error)?;
        let target = path.display().to_string();
        let needed = match fsutil::mode(&path) {
            None => Outcome::Created,
            Some(current) if current != mode => Outcome::Updated,
            Some(_) => Outcome::Unchanged,
        };
        let outcome = h
            .effects
            .apply("mkdir", &target, &format!("mode {mode:04o}"), needed, || {
                fsutil::create_dir(&path, mode)?;
                fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                Ok(())
            })
            .map_err(script_error)?;
        Ok(outcome.as_str().into())
    });

    let h = host.clone();
    module.set_native_fn("write", move |path: &str, text: &str, mode: INT| -> ScriptResult<String> {
        write_file(&h, path, text.as_bytes(), mode_arg(mode)?, "").map(|o| o.as_str().into())
    });

    let h = host.clone();
    module.set_native_fn("touch", move |path: &str, mode: INT| -> ScriptResult<String> {
        let mode = mode_arg(mode)?;
        let path = h.roots.confine_change(path).map_err(script_error)?;
        let (needed, detail) = match fsutil::mode(&path) {
            None => (Outcome::Created, format!("mode {mode:04o}")),
            Some(current) if current != mode => (Outcome::Updated, format!("mode {current:04o} -> {mode:04o}")),
            Some(_) => (Outcome::Unchanged, format!("mode {mode:04o}")),
        };
        h.effects
            .apply("file", &path.display().to_string(), &detail, needed, || {
                fsutil::create_file(&path, mode)?;
                Ok(fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?)
            })
            .map(|o| o.as_str().into())
            .map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("chmod", move |path: &str, mode: INT| -> ScriptResult<String> {
        let mode = mode_arg(mode)?;
        let path = h.roots.confine_change(path).map_err(script_error)?;
        let current = fsutil::mode(&path).ok_or_else(|| format!("{} does not exist", path.display()))?;
        let (needed, detail) = if current == mode {
            (Outcome::Unchanged, format!("mode {mode:04o}"))
        } else {
            (Outcome::Updated, format!("mode {current:04o} -> {mode:04o}"))
        };
        h.effects
            .apply("chmod", &path.display().to_string(), &detail, needed, || {
                Ok(fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?)
            })
            .map(|o| o.as_str().into())
            .map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("remove", move |path: &str| -> ScriptResult<String> {
        let path = h.roots.confine_change_entry(path).map_err(script_error)?;
        let needed = if path.exists() { Outcome::Removed } else { Outcome::Unchanged };
        h.effects
            .apply("remove", &path.display().to_string(), "", needed, || Ok(fs::remove_file(&path)?))
            .map(|o| o.as_str().into())
            .map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("rename", move |from: &str, to: &str| -> ScriptResult<String> {
        let from = h.roots.confine_change_entry(from).map_err(script_error)?;
        let to = h.roots.confine_change(to).map_err(script_error)?;
        let (from_exists, to_exists) = (fs::symlink_metadata(&from).is_ok(), fs::symlink_metadata(&to).is_ok());
        let needed = match (from_exists, to_exists) {
            (true, false) => Outcome::Moved,
            // Already moved by an earlier, interrupted run.
            (false, true) => Outcome::Unchanged,
            (true, true) => {
                return Err(format!("cannot move {} to {}: it already exists", from.display(), to.display()).into());
            }
            (false, false) => return Err(format!("cannot move {}: it does not exist", from.display()).into()),
        };
        h.effects
            .apply("rename", &from.display().to_string(), &format!("to {}", to.display()), needed, || {
                if let Some(parent) = to.parent() {
                    anyhow::ensure!(parent.is_dir(), "directory {} does not exist", parent.display());
                }
                Ok(fsutil::rename_durable(&from, &to)?)
            })
            .map(|o| o.as_str().into())
            .map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("read", move |path: &str| -> ScriptResult<String> {
        let path = h.roots.confine(path).map_err(script_error)?;
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display())).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("exists", move |path: &str| -> ScriptResult<bool> {
        Ok(h.roots.confine(path).map_err(script_error)?.exists())
    });

    let h = host.clone();
    module.set_native_fn("mode", move |path: &str| -> ScriptResult<INT> {
        let path = h.roots.confine(path).map_err(script_error)?;
        Ok(fsutil::mode(&path).map_or(-1, INT::from))
    });

    let h = host.clone();
    module.set_native_fn("list", move |path: &str| -> ScriptResult<Array> {
        let path = h.roots.confine(path).map_err(script_error)?;
        let mut names: Vec<String> = fs::read_dir(&path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names.into_iter().map(Dynamic::from).collect())
    });

    let h = host.clone();
    module.set_native_fn("kind", move |path: &str| -> ScriptResult<String> {
        let path = h.roots.confine_entry(path).map_err(script_error)?;
        Ok(fsutil::kind(fs::symlink_metadata(path).ok().as_ref()).into())
    });

    let h = host.clone();
    module.set_native_fn("link_target", move |path: &str| -> ScriptResult<String> {
        let path = h.roots.confine_entry(path).map_err(script_error)?;
        Ok(fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default())
    });

    let h = host.clone();
    module.set_native_fn("links", move |path: &str| -> ScriptResult<INT> {
        let path = h.roots.confine_entry(path).map_err(script_error)?;
        let names = fs::symlink_metadata(path).map_or(0, |m| std::os::unix::fs::MetadataExt::nlink(&m));
        Ok(INT::try_from(names).unwrap_or(INT::MAX))
    });

    let h = host.clone();
    module.set_native_fn("unlink", move |path: &str| -> ScriptResult<String> {
        let path = h.roots.confine_change_entry(path).map_err(script_error)?;
        let target = fs::read_link(&path).ok();
        let needed = if target.is_some() { Outcome::Removed } else { Outcome::Unchanged };
        let detail = target.map(|t| format!("symlink to {}", t.display())).unwrap_or_else(|| "no symlink".into());
        h.effects
            .apply("remove symlink", &path.display().to_string(), &detail, needed, || {
                // remove_file on a symlink removes the link, never its target.
                if !fs::symlink_metadata(&path)?.file_type().is_symlink() {
                    anyhow::bail!("{} is no longer a symlink; left alone", path.display());
                }
                Ok(fs::remove_file(&path)?)
            })
            .map(|o| o.as_str().into())
            .map_err(script_error)
    });

    module
}

/// Atomic write through the effects layer (see [`Context::write_file`]).
pub fn write_file(host: &Host, path: &str, bytes: &[u8], mode: u32, detail: &str) -> ScriptResult<Outcome> {
    host.context.write_file(path, bytes, mode, detail).map_err(script_error)
}
