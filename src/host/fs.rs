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
//! | `fs::place_problem(path, name, want)` | no | what is wrong with `path` as a `want` (`"file"`: a regular file, or `"dir"`) called `name`: `""` when it is one, `"missing"` when absent, else a sentence (a symlink's says where it points); never following a symlink |
//! | `fs::unlink(path)` | yes | removes a symlink itself (never its target); "removed" / "unchanged" (no symlink there) |
//!
//! No change follows a symlink below a root (a mkdir, write, touch or chmod refuses a path
//! with one at any component; remove, rename and unlink act on the entry itself, never on a
//! link's target), and none reaches a regular file with other names (a hard link).

use std::{path::Path, rc::Rc};

use anyhow::Context;
use rhai::{Array, Dynamic, INT, Module};

use super::{Host, ScriptResult, mode_arg, script_error};
use crate::{effects::Outcome, tenant::filecheck};

/// The outcome of a step as scripts see it.
fn outcome_text(outcome: anyhow::Result<Outcome>) -> ScriptResult<String> {
    outcome.map(|o| o.as_str().into()).map_err(script_error)
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("mkdir", move |path: &str, mode: INT| -> ScriptResult<String> {
        let mode = mode_arg(mode)?;
        outcome_text(h.effects.mkdir(&h.roots.confine_change(path).map_err(script_error)?, mode))
    });

    let h = host.clone();
    module.set_native_fn("write", move |path: &str, text: &str, mode: INT| -> ScriptResult<String> {
        write_file(&h, path, text.as_bytes(), mode_arg(mode)?, "").map(|o| o.as_str().into())
    });

    let h = host.clone();
    module.set_native_fn("touch", move |path: &str, mode: INT| -> ScriptResult<String> {
        let mode = mode_arg(mode)?;
        outcome_text(h.effects.touch(&h.roots.confine_change(path).map_err(script_error)?, mode))
    });

    let h = host.clone();
    module.set_native_fn("chmod", move |path: &str, mode: INT| -> ScriptResult<String> {
        let mode = mode_arg(mode)?;
        outcome_text(h.effects.chmod(&h.roots.confine_change(path).map_err(script_error)?, mode))
    });

    let h = host.clone();
    module.set_native_fn("remove", move |path: &str| -> ScriptResult<String> {
        outcome_text(h.effects.remove_file(&h.roots.confine_change_entry(path).map_err(script_error)?, ""))
    });

    let h = host.clone();
    module.set_native_fn("rename", move |from: &str, to: &str| -> ScriptResult<String> {
        let from = h.roots.confine_change_entry(from).map_err(script_error)?;
        let to = h.roots.confine_change(to).map_err(script_error)?;
        outcome_text(h.effects.rename(&from, &to))
    });

    let h = host.clone();
    module.set_native_fn("read", move |path: &str| -> ScriptResult<String> {
        let path = h.roots.confine(path).map_err(script_error)?;
        h.effects.read_to_string(&path).with_context(|| format!("cannot read {}", path.display())).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("exists", move |path: &str| -> ScriptResult<bool> {
        Ok(h.effects.exists(&h.roots.confine(path).map_err(script_error)?))
    });

    let h = host.clone();
    module.set_native_fn("mode", move |path: &str| -> ScriptResult<INT> {
        let path = h.roots.confine(path).map_err(script_error)?;
        Ok(h.effects.mode(&path).map_or(-1, INT::from))
    });

    let h = host.clone();
    module.set_native_fn("list", move |path: &str| -> ScriptResult<Array> {
        let path = h.roots.confine(path).map_err(script_error)?;
        Ok(h.effects.list(&path).into_iter().map(Dynamic::from).collect())
    });

    let h = host.clone();
    module.set_native_fn("kind", move |path: &str| -> ScriptResult<String> {
        let path = h.roots.confine_entry(path).map_err(script_error)?;
        Ok(h.effects.kind(&path).into())
    });

    let h = host.clone();
    module.set_native_fn("link_target", move |path: &str| -> ScriptResult<String> {
        let path = h.roots.confine_entry(path).map_err(script_error)?;
        Ok(link_target(&h, &path))
    });

    let h = host.clone();
    module.set_native_fn("links", move |path: &str| -> ScriptResult<INT> {
        let path = h.roots.confine_entry(path).map_err(script_error)?;
        let names = std::fs::symlink_metadata(path).map_or(0, |m| std::os::unix::fs::MetadataExt::nlink(&m));
        Ok(INT::try_from(names).unwrap_or(INT::MAX))
    });

    let h = host.clone();
    module.set_native_fn("place_problem", move |path: &str, name: &str, want: &str| -> ScriptResult<String> {
        if want != "file" && want != "dir" {
            return Err(format!("fs::place_problem wants \"file\" or \"dir\", not {want:?}").into());
        }
        let path = h.roots.confine_entry(path).map_err(script_error)?;
        Ok(filecheck::place_problem(h.effects.kind(&path), &path, name, want).unwrap_or_default())
    });

    let h = host.clone();
    module.set_native_fn("unlink", move |path: &str| -> ScriptResult<String> {
        outcome_text(h.effects.remove_symlink(&h.roots.confine_change_entry(path).map_err(script_error)?))
    });

    module
}

/// Where the symlink at `path` points, `""` for anything else (or a link a planned step took away).
fn link_target(host: &Host, path: &Path) -> String {
    if host.effects.kind(path) != "symlink" {
        return String::new();
    }
    std::fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default()
}

/// Atomic write through the effects layer (see [`Context::write_file`]).
pub fn write_file(host: &Host, path: &str, bytes: &[u8], mode: u32, detail: &str) -> ScriptResult<Outcome> {
    host.context.write_file(path, bytes, mode, detail).map_err(script_error)
}
