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
//! | `secrets::rotation_commit(id)` | yes | copies `secrets.env` into the history (0600), then renames `secrets.env.next` over it (atomic); `#{rotated, history_file, planned}` (`planned`: a dry run, nothing swapped) |
//! | `secrets::prune_history(id, keep)` | yes | removes all but the newest `keep` history generations; the number removed |

use std::rc::Rc;

use rhai::{Array, Dynamic, INT, Map, Module};

use super::{Host, ScriptResult, fs::write_file, script_error};
use crate::{
    format::envfile,
    tenant::policy::SECRETS_FILE_MODE,
    tenant::secrets::{self, generate, read_planned},
};

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("ensure", move |path: &str, names: Array| -> ScriptResult<Array> {
        let file = h.roots.confine(path).map_err(script_error)?;
        let mut values = read_planned(&h.effects, &file).map_err(script_error)?;
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
        write_file(&h, path, text.as_bytes(), SECRETS_FILE_MODE, &detail)?;
        Ok(added.into_iter().map(Dynamic::from).collect())
    });

    let h = host.clone();
    module
        .set_native_fn("lost", move |id: &str| -> ScriptResult<String> { secrets::lost(&h, id).map_err(script_error) });

    let h = host.clone();
    module.set_native_fn("names", move |path: &str| -> ScriptResult<Array> {
        let file = h.roots.confine(path).map_err(script_error)?;
        Ok(read_planned(&h.effects, &file).map_err(script_error)?.into_keys().map(Dynamic::from).collect())
    });

    module.set_native_fn("generate", || -> ScriptResult<String> { generate().map_err(script_error) });

    let h = host.clone();
    module.set_native_fn("rotation_begin", move |id: &str, names: Array| -> ScriptResult<Map> {
        let names: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
        let begun = secrets::rotation_begin(&h, id, &names).map_err(script_error)?;
        let mut map = Map::new();
        map.insert("rotating".into(), names_array(&begun.rotating));
        map.insert("resumed".into(), names_array(&begun.resumed));
        map.insert("pending_file".into(), Dynamic::from(begun.pending_file));
        Ok(map)
    });

    let h = host.clone();
    module.set_native_fn("rotation_commit", move |id: &str| -> ScriptResult<Map> {
        let committed = secrets::rotation_commit(&h, id).map_err(script_error)?;
        let mut map = Map::new();
        map.insert("rotated".into(), names_array(&committed.rotated));
        map.insert("history_file".into(), Dynamic::from(committed.history_file));
        map.insert("planned".into(), Dynamic::from(committed.planned));
        Ok(map)
    });

    let h = host.clone();
    module.set_native_fn("prune_history", move |id: &str, keep: INT| -> ScriptResult<INT> {
        Ok(secrets::prune_history(&h, id, keep).map_err(script_error)? as INT)
    });

    module
}

fn names_array(names: &[String]) -> Dynamic {
    Dynamic::from(names.iter().cloned().map(Dynamic::from).collect::<Array>())
}
