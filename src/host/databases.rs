//! `databases::` — a client's running databases (SPEC §11): logical dumps into its
//! repository, restores into the running servers, the named volumes' files back into its
//! volumes. Passwords come from the client's secrets.env and reach the database tools by
//! environment inside `docker exec`; a script never sees them.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `databases::list(id)` | no | `[#{service, container, engine, image, data_paths}]`: running containers labelled `agency.client=<id>` and `agency.db` |
//! | `databases::new_set()` | no | a snapshot set id for one backup run (tag `set=<id>` on every snapshot of the run) |
//! | `databases::backup(id, set, tags)` | yes | `#{set, dumps: [#{service, container, engine, image, planned, snapshot, bytes, sha256, tables, seconds}], excludes}`: one dump snapshot per service (tags `dump`, `service=`, `engine=`, `image=`, `set=`, then `tags`); `excludes` are the data directories the dumps stand for, to leave out of the files backup |
//! | `databases::restore(id, snapshot, force)` | yes | `[#{service, container, snapshot, tables, planned}]` (`planned`: a dry run, nothing restored): each service's dump of the snapshot set of `snapshot` (`latest`: the newest) into its running server; a server holding tables is refused unless `force`, which replaces its databases |
//! | `databases::restore_volumes(id, snapshot)` | yes | `#{snapshot, volumes, planned}`: the client's named volumes from the files snapshot (of the set of `snapshot`); refused while a container of the client runs |

use std::rc::Rc;

use rhai::{Array, Dynamic, FLOAT, INT, Map, Module};

use super::{Host, ScriptResult, script_error};
use crate::{
    drivers::docker::Docker,
    tenant::{client_data, data_restore, repository},
};

fn text(value: impl Into<String>) -> Dynamic {
    Dynamic::from(value.into())
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Dynamic {
    Dynamic::from(items.into_iter().map(|s| Dynamic::from(s.into())).collect::<Array>())
}

fn database_map(database: &client_data::Database) -> Map {
    let mut map = Map::new();
    map.insert("service".into(), text(&database.service));
    map.insert("container".into(), text(&database.container));
    map.insert("engine".into(), text(database.engine.as_str()));
    map.insert("image".into(), text(&database.image));
    map.insert("data_paths".into(), strings(database.data_paths.iter().map(|p| p.display().to_string())));
    map
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    module.set_native_fn("list", move |id: &str| -> ScriptResult<Array> {
        crate::format::validate::client_id(id).map_err(|e| format!("invalid client id: {e}"))?;
        let docker = Docker::locate().map_err(script_error)?;
        let (found, _) = client_data::databases(&docker, id).map_err(script_error)?;
        Ok(found.iter().map(|d| Dynamic::from(database_map(d))).collect())
    });

    module.set_native_fn("new_set", || -> ScriptResult<String> { client_data::new_set_id().map_err(script_error) });

    let h = host.clone();
    module.set_native_fn("backup", move |id: &str, set: &str, tags: Array| -> ScriptResult<Map> {
        let tags: Vec<String> = tags.into_iter().map(|t| t.to_string()).collect();
        backup(&h, id, set, &tags).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("restore", move |id: &str, snapshot: &str, force: bool| -> ScriptResult<Array> {
        let restored = data_restore::restore_databases(&h, id, snapshot, force).map_err(script_error)?;
        Ok(restored
            .into_iter()
            .map(|r| {
                let mut map = Map::new();
                map.insert("service".into(), text(r.service));
                map.insert("container".into(), text(r.container));
                map.insert("snapshot".into(), text(r.snapshot));
                map.insert("tables".into(), text(r.tables));
                map.insert("planned".into(), Dynamic::from(r.planned));
                Dynamic::from(map)
            })
            .collect())
    });

    let h = host.clone();
    module.set_native_fn("restore_volumes", move |id: &str, snapshot: &str| -> ScriptResult<Map> {
        let restored = data_restore::restore_volumes(&h, id, snapshot).map_err(script_error)?;
        let mut map = Map::new();
        map.insert("snapshot".into(), text(restored.snapshot));
        map.insert("volumes".into(), strings(restored.volumes));
        map.insert("planned".into(), Dynamic::from(restored.planned));
        Ok(map)
    });

    module
}

fn backup(host: &Host, id: &str, set: &str, tags: &[String]) -> anyhow::Result<Map> {
    if set.is_empty() || !set.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        anyhow::bail!("snapshot set id {set:?} must be letters, digits and '-' (databases::new_set() makes one)");
    }
    let mut map = Map::new();
    map.insert("set".into(), text(set));
    if !repository::backups_on(host)? {
        map.insert("dumps".into(), Dynamic::from(Array::new()));
        map.insert("excludes".into(), Dynamic::from(Array::new()));
        return Ok(map);
    }
    let results = client_data::backup_databases(host, id, set, tags)?;
    let mut dumps = Array::new();
    let mut excludes = Vec::new();
    for result in &results {
        let mut dump = database_map(&result.database);
        excludes.extend(result.database.data_paths.iter().map(|p| p.display().to_string()));
        dump.insert("planned".into(), Dynamic::from(result.record.is_none()));
        if let Some(record) = &result.record {
            dump.insert("snapshot".into(), text(&record.snapshot));
            dump.insert("bytes".into(), Dynamic::from(INT::try_from(record.bytes).unwrap_or(INT::MAX)));
            dump.insert("sha256".into(), text(&record.sha256));
            dump.insert("tables".into(), text(client_data::tables_text(&record.tables)));
            dump.insert("seconds".into(), Dynamic::from(record.seconds as FLOAT));
        }
        dumps.push(Dynamic::from(dump));
    }
    map.insert("dumps".into(), Dynamic::from(dumps));
    map.insert("excludes".into(), strings(excludes));
    Ok(map)
}
