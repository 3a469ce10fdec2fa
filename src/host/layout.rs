//! `layout::` — where things live (read-only).
//!
//! | function | returns |
//! |---|---|
//! | `layout::client(id)` | map of the client's paths: `config_dir`, `env_file`, `compose_override`, `keycloak_dir`, `realm_file`, `backup_dir`, `backup_config`, `traefik_file`, `secrets_dir`, `secrets_file`, `secrets_history_dir`, `log_dir`, `audit_log`, `logrotate_file`, `repository`, and `networks` (tier → network name) |
//! | `layout::clients()` | ids of the clients that have a config dir, sorted |
//! | `layout::interrupted_deletes()` | ids of clients whose delete-client stopped half-way (an archive without archive.env while config, secrets or repository are still in place) |
//! | `layout::interrupted_delete_problem(id)` | what list-clients and status say of such a client (how to finish it) |
//! | `layout::inventory()` | one map per client (sorted by id): `id`, `name`, `domain`, `created`, `health` ("ok", "incomplete", "insecure", "broken") and `problems` (array of phrases); read from disk only, no Docker |
//! | `layout::inspect(id)` | the same map for one client |
//! | `layout::roots()` | map of `root`, `log_root`, `backup_root`, `logrotate_dir` |
//! | `layout::setting(name)` | a host-wide setting (`AGENCY_SUBNET_POOL` ...), see `agency --explain` |
//! | `layout::policy()` | the tenant policy, the table the Rust checks read too: `tiers` (`[#{name, internal, network_key, subnet_key, bridge_key}]`), `subnet_keys` and `bridge_keys` (tier → client.env key), `log_files`, `log_dir_mode`, `log_file_mode`, `secrets_dir_mode`, `secrets_file_mode`, `client_label` |
//! | `layout::verb(verb)` | `verb` as this run's messages say it: `"would repair"` in a dry run, `"repair"` otherwise |
//! | `layout::json()` | whether this run prints the `--json` document, which shows a task's result (status builds its per-client maps for it, or for a failed run's notification) |
//! | `layout::target()` | the task the operator asked for (deps run for it: `create-client` when `setup-log-segmentation` runs as its dep) |

use std::{path::Path, rc::Rc};

use rhai::{Array, Dynamic, Map, Module};

use super::{Host, ScriptResult, script_error};
use crate::tenant::{layout::ClientLayout, policy};

fn path(p: &Path) -> Dynamic {
    Dynamic::from(p.display().to_string())
}

/// The Rhai map of a client's layout.
pub fn client_map(layout: &ClientLayout) -> Map {
    let mut map = Map::new();
    map.insert("id".into(), Dynamic::from(layout.id.clone()));
    for (key, value) in [
        ("config_dir", &layout.config_dir),
        ("env_file", &layout.env_file),
        ("compose_override", &layout.compose_override),
        ("keycloak_dir", &layout.keycloak_dir),
        ("realm_file", &layout.realm_file),
        ("backup_dir", &layout.backup_dir),
        ("backup_config", &layout.backup_config),
        ("traefik_file", &layout.traefik_file),
        ("secrets_dir", &layout.secrets_dir),
        ("secrets_file", &layout.secrets_file),
        ("secrets_history_dir", &layout.secrets_history_dir),
        ("log_dir", &layout.log_dir),
        ("audit_log", &layout.audit_log),
        ("logrotate_file", &layout.logrotate_file),
    ] {
        map.insert(key.into(), path(value));
    }
    map.insert("repository".into(), Dynamic::from(layout.repository.clone()));
    let networks: Map = layout.networks().into_iter().map(|(tier, name)| (tier.into(), Dynamic::from(name))).collect();
    map.insert("networks".into(), networks.into());
    map
}

/// The Rhai map of the tenant policy ([`policy`]).
fn policy_map() -> Map {
    let tier_keys = |key: fn(&policy::Tier) -> &'static str| -> Map {
        policy::TIERS.iter().map(|t| (t.name.into(), Dynamic::from(key(t)))).collect()
    };
    let tiers: Array = policy::TIERS
        .iter()
        .map(|t| {
            Dynamic::from(Map::from_iter([
                ("name".into(), Dynamic::from(t.name)),
                ("internal".into(), Dynamic::from(t.internal)),
                ("network_key".into(), Dynamic::from(t.env_network)),
                ("subnet_key".into(), Dynamic::from(t.env_subnet)),
                ("bridge_key".into(), Dynamic::from(t.env_bridge)),
            ]))
        })
        .collect();
    let mode = |m: u32| Dynamic::from(rhai::INT::from(m));
    Map::from_iter([
        ("tiers".into(), tiers.into()),
        ("subnet_keys".into(), tier_keys(|t| t.env_subnet).into()),
        ("bridge_keys".into(), tier_keys(|t| t.env_bridge).into()),
        ("log_files".into(), policy::LOG_FILES.iter().map(|f| Dynamic::from(*f)).collect::<Array>().into()),
        ("log_dir_mode".into(), mode(policy::LOG_DIR_MODE)),
        ("log_file_mode".into(), mode(policy::LOG_FILE_MODE)),
        ("secrets_dir_mode".into(), mode(policy::SECRETS_DIR_MODE)),
        ("secrets_file_mode".into(), mode(policy::SECRETS_FILE_MODE)),
        ("client_label".into(), Dynamic::from(policy::CLIENT_LABEL)),
    ])
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    module.set_native_fn("policy", || -> ScriptResult<Map> { Ok(policy_map()) });

    let h = host.clone();
    module.set_native_fn("client", move |id: &str| -> ScriptResult<Map> {
        Ok(client_map(&ClientLayout::new(&h.roots, id).map_err(script_error)?))
    });

    let h = host.clone();
    module.set_native_fn("clients", move || -> ScriptResult<Array> {
        Ok(h.roots.client_ids().map_err(script_error)?.into_iter().map(Dynamic::from).collect())
    });

    let h = host.clone();
    module.set_native_fn("interrupted_deletes", move || -> ScriptResult<Array> {
        Ok(crate::tenant::inventory::interrupted_deletes(&h.roots).into_iter().map(Dynamic::from).collect())
    });

    module.set_native_fn("interrupted_delete_problem", |id: &str| -> ScriptResult<String> {
        Ok(crate::tenant::inventory::interrupted_delete_problem(id))
    });

    let h = host.clone();
    module.set_native_fn("inventory", move || -> ScriptResult<Array> {
        crate::tenant::inventory::all(&h.roots, h.settings.get("AGENCY_BACKUPS") != "off")
            .map_err(script_error)?
            .iter()
            .map(rhai::serde::to_dynamic)
            .collect()
    });

    let h = host.clone();
    module.set_native_fn("inspect", move |id: &str| -> ScriptResult<Dynamic> {
        rhai::serde::to_dynamic(crate::tenant::inventory::inspect(
            &h.roots,
            id,
            h.settings.get("AGENCY_BACKUPS") != "off",
        ))
    });

    let h = host.clone();
    module.set_native_fn("roots", move || -> ScriptResult<Map> {
        let r = &h.roots;
        Ok([
            ("root", &r.root),
            ("log_root", &r.log_root),
            ("backup_root", &r.backup_root),
            ("logrotate_dir", &r.logrotate_dir),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), path(v)))
        .collect())
    });

    let h = host.clone();
    module.set_native_fn("setting", move |name: &str| -> ScriptResult<String> {
        if !crate::tenant::settings::Settings::is_setting(name) {
            return Err(format!("unknown setting {name}").into());
        }
        Ok(h.settings.get(name).to_string())
    });

    let h = host.clone();
    module.set_native_fn("verb", move |verb: &str| -> ScriptResult<String> { Ok(h.effects.verb(verb)) });

    let h = host.clone();
    module.set_native_fn("json", move || -> ScriptResult<bool> { Ok(h.output.json) });

    let h = host.clone();
    module.set_native_fn("target", move || -> ScriptResult<String> { Ok(h.target.clone()) });

    module
}
