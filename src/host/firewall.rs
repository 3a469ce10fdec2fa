//! `firewall::` — agency's own nftables table (SPEC §9; `crate::tenant::firewall` builds it). The table
//! is generated from the records of every client of this root, so any task that changes a
//! record applies it again; the saved copy (`AGENCY_ROOT/firewall/<table>.nft`) is what the boot
//! unit loads.
//!
//! | function | mutates | returns |
//! |---|---|---|
//! | `firewall::enabled()` | no | false when `FIREWALL=off` |
//! | `firewall::apply()` | yes | replaces the table with what the records imply, in one `nft -f` transaction, and saves it; `created` / `updated` / `unchanged`. A dry run shows the diff |
//! | `firewall::apply(id, env)` | yes | the same with `env` as client `id`'s record (the one this run writes; `#{}`: the client is going) |
//! | `firewall::checks(snap, [ids])` | no | map id → the `firewall` check: the table present and equal to what the records imply, the bridges as recorded (one `nft list table`) |
//! | `firewall::install_unit()` | yes | writes `agency-firewall.service` (before docker.service) into `SYSTEMD_UNIT_DIR` and enables it; `created` / `updated` / `unchanged` |

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    rc::Rc,
};

use anyhow::{Result, bail};
use rhai::{Array, Map, Module};
use serde_json::json;

use super::{Host, ScriptResult, checks::check_dynamic, docker::DockerSnapshot, script_error};
use crate::{
    drivers::nft::Nft,
    effects::Outcome,
    fsutil,
    tenant::check::{Check, Status},
    tenant::firewall::{self, Bridge, FirewallSettings, Ruleset},
    tenant::isolation::{self, Snapshot},
    tenant::layout::{ClientLayout, Roots},
};

pub(super) fn settings(host: &Host) -> Result<FirewallSettings> {
    FirewallSettings::parse(
        host.settings.get("AGENCY_FIREWALL_TABLE"),
        host.settings.get("FIREWALL"),
        host.settings.get("FIREWALL_HOST_ALLOW"),
    )
}

/// A client's id and its client.env.
type Record = (String, BTreeMap<String, String>);

/// The records and the kernel's table (`nft list`), the table listed while the records are
/// read: neither needs the other.
fn records_and_table(roots: &Roots, nft: &Nft, table: &str) -> (Result<Vec<Record>>, Result<Option<String>>) {
    std::thread::scope(|scope| {
        let listing = scope.spawn(|| nft.list_table(table));
        (records(roots), listing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// Every client of this root with its client.env, in id order. An unreadable clients dir is
/// an error: a table made without its clients would drop their rules.
fn records(roots: &Roots) -> Result<Vec<Record>> {
    Ok(roots
        .client_ids()?
        .into_iter()
        .filter_map(|id| {
            let layout = ClientLayout::new(roots, &id).ok()?;
            let text = std::fs::read_to_string(&layout.env_file).ok()?;
            let env = crate::format::envfile::parse(&text).ok()?.into_iter().collect();
            Some((id, env))
        })
        .collect())
}

fn all_bridges(records: &[(String, BTreeMap<String, String>)]) -> Vec<Bridge> {
    records.iter().flat_map(|(id, env)| firewall::client_bridges(id, env).0).collect()
}

/// The saved ruleset the boot unit loads.
fn saved_path(host: &Host, settings: &FirewallSettings) -> PathBuf {
    host.roots.root.join("firewall").join(format!("{}.nft", settings.table))
}

/// Held while the records are read and the table applied, so two runs (two clients' locks)
/// never apply tables that each miss the other's client.
fn apply_lock(host: &Host) -> Result<Option<File>> {
    let dir = host.roots.locks_dir();
    host.effects.lock(&dir.join("firewall.lock"), &[(&host.roots.root, 0o755), (&dir, 0o700)])
}

/// Diff lines shown in a plan or a check, at most this many.
const DIFF_LINES: usize = 40;

fn capped(lines: Vec<String>) -> Vec<String> {
    let total = lines.len();
    let mut lines: Vec<String> = lines.into_iter().take(DIFF_LINES).collect();
    if total > DIFF_LINES {
        lines.push(format!("... and {} more", total - DIFF_LINES));
    }
    lines
}

/// `planned`: one client's record as this run writes it (`None`: the client goes), in place
/// of what is on disk, so a dry run's diff is exact.
fn apply(host: &Host, planned: Option<(&str, Option<BTreeMap<String, String>>)>) -> Result<String> {
    let settings = settings(host)?;
    let target = format!("table inet {}", settings.table);
    if !settings.enabled {
        host.effects.unchanged("firewall", &target, "FIREWALL=off: not applied, isolation is not enforced");
        return Ok(Outcome::Unchanged.as_str().into());
    }
    let nft = Nft::locate()?;
    let _lock = apply_lock(host)?;
    let (records, listing) = records_and_table(&host.roots, &nft, &settings.table);
    let mut records = records?;
    if let Some((id, env)) = planned {
        records.retain(|(r, _)| r != id);
        records.extend(env.map(|env| (id.to_string(), env)));
    }
    let ruleset = Ruleset::new(&settings, all_bridges(&records));
    let live = listing?.map(|text| firewall::parse_listing(&text));
    let comparison = ruleset.compare(live.as_ref());
    let needed = match (comparison.present, comparison.is_equal()) {
        (false, _) => Outcome::Created,
        (true, true) => Outcome::Unchanged,
        (true, false) => Outcome::Updated,
    };
    let mut detail = format!("{} bridge(s) of {} client(s)", ruleset.bridges.len(), records.len());
    if needed == Outcome::Updated {
        detail = format!("{detail}; {}", capped(comparison.lines()).join("; "));
    }
    let script = ruleset.script();
    let outcome = host.effects.apply("firewall", &target, &detail, needed, || nft.apply(&script))?.outcome;
    save(host, &settings, &script)?;
    Ok(outcome.as_str().into())
}

/// Writes the saved ruleset when it differs from what is on disk.
fn save(host: &Host, settings: &FirewallSettings, script: &str) -> Result<()> {
    let path = saved_path(host, settings);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(script) {
        // A run killed while writing it left its temp file; the firewall lock is held, so no
        // write is live (an unchanged file is not written, which would sweep them).
        let dir = path.parent().expect("in a dir");
        let prefix = format!(".{}.", path.file_name().expect("a file").to_string_lossy());
        host.effects.side_effect(|| Ok(fsutil::remove_stale_temp_files(dir, &prefix, std::time::Duration::ZERO)?))?;
        return Ok(());
    }
    let needed = if path.exists() { Outcome::Updated } else { Outcome::Created };
    host.effects.apply(
        "write",
        &path.display().to_string(),
        "0640, the ruleset the boot unit loads",
        needed,
        || {
            fsutil::create_dir(path.parent().expect("in a dir"), 0o750)?;
            fsutil::write_atomic(&path, script.as_bytes(), 0o640)?;
            Ok(())
        },
    )?;
    Ok(())
}

/// The firewall check of each of `ids`, in their order. Needs nothing of the run but the
/// settings and the roots, so status runs it beside its other checks.
pub(super) fn checks(
    settings: &FirewallSettings,
    roots: &Roots,
    snapshot: &Snapshot,
    ids: &[String],
) -> Result<Vec<Check>> {
    let every = |check: Check| ids.iter().map(|_| check.clone()).collect();
    if !settings.enabled {
        return Ok(every(
            Check::new(
                "firewall",
                Status::Fail,
                "isolation not enforced: FIREWALL=off (agency's firewall table is not applied)",
            )
            .fix("set FIREWALL=on (the default) and run setup-firewall"),
        ));
    }
    let nft = match Nft::locate() {
        Ok(nft) => nft,
        Err(error) => return Ok(every(not_enforced(&error))),
    };
    let (records, live) = records_and_table(roots, &nft, &settings.table);
    let live = match live {
        Ok(live) => live.map(|text| firewall::parse_listing(&text)),
        Err(error) => return Ok(every(not_enforced(&error))),
    };
    // Only the bridges of each record are kept: thousands of whole client.env maps are not.
    let records: BTreeMap<String, RecordedBridges> =
        records?.into_iter().map(|(id, env)| (id.clone(), RecordedBridges::of(&id, &env))).collect();
    let bridges = records.values().flat_map(|r| r.bridges.iter().cloned()).collect();
    let comparison = Ruleset::new(settings, bridges).compare(live.as_ref());
    // The same for every client: made once (a whole missing table is thousands of lines).
    let diff = capped(comparison.lines());
    let listing = live.unwrap_or_default();
    Ok(ids
        .iter()
        .map(|id| {
            let unrecorded;
            let record = match records.get(id) {
                Some(record) => record,
                None => {
                    unrecorded = RecordedBridges::of(id, &BTreeMap::new());
                    &unrecorded
                }
            };
            client_check(settings, snapshot, record, &listing, &comparison, &diff)
        })
        .collect())
}

/// What the firewall check reads of a client's record: whether its networks are bridges
/// (overlay networks are not in the table), its bridges, and what keeps a network out.
struct RecordedBridges {
    bridge_driver: bool,
    bridges: Vec<Bridge>,
    problems: Vec<String>,
}

impl RecordedBridges {
    fn of(id: &str, env: &BTreeMap<String, String>) -> Self {
        let (bridges, problems) = firewall::client_bridges(id, env);
        Self { bridge_driver: isolation::client_driver(env, "") == "bridge", bridges, problems }
    }
}

fn not_enforced(error: &anyhow::Error) -> Check {
    Check::new("firewall", Status::Fail, format!("isolation not enforced: {error:#}"))
}

fn client_check(
    settings: &FirewallSettings,
    snapshot: &Snapshot,
    record: &RecordedBridges,
    listing: &firewall::Listing,
    comparison: &firewall::Comparison,
    diff: &[String],
) -> Check {
    let table = format!("table inet {}", settings.table);
    if !record.bridge_driver {
        return Check::new(
            "firewall",
            Status::Warn,
            format!("overlay networks: their traffic runs in Swarm's own namespaces, {table} does not see it"),
        );
    }
    let (bridges, mut problems) = (&record.bridges, record.problems.clone());
    let mut notes = Vec::new();
    for bridge in bridges {
        let Some(actual) = snapshot.network(&bridge.network).and_then(|n| n.bridge.clone().map(|b| (n, b))) else {
            continue;
        };
        let (network, interface) = actual;
        if interface != bridge.interface {
            problems.push(format!(
                "{}'s bridge is {interface} but client.env records {} (the network was recreated)",
                bridge.network, bridge.interface
            ));
        } else if interface == firewall::docker_bridge_name(&network.id) {
            notes.push(format!(
                "{}'s bridge has Docker's name {interface} (FIX=1 names it when no container is attached)",
                bridge.network
            ));
        }
    }
    // The client's own elements in the kernel's sets (the rules are shared by all).
    let missing = firewall::missing(bridges, listing);
    if !comparison.present {
        problems.push(format!("{table} is missing"));
    } else {
        problems.extend(comparison.rules.iter().map(|r| format!("{table}: {r}")));
        if !missing.is_empty() {
            problems.push(format!("{table} lacks {} of this client's element(s)", missing.len()));
        }
        if comparison.added.len() > missing.len() || !comparison.removed.is_empty() {
            notes.push(format!("{table} differs for other clients: {}", comparison.summary()));
        }
    }
    let evidence = json!({
        "table": table,
        "bridges": bridges.iter().map(|b| json!({
            "network": b.network, "interface": b.interface, "subnet": b.subnet.to_string(), "internal": b.internal,
        })).collect::<Vec<_>>(),
        "missing": capped(missing),
        "diff": diff,
    });
    if !problems.is_empty() {
        Check::new("firewall", Status::Fail, problems.join("; "))
            .evidence(evidence)
            .fix("FIX=1 records the bridges and applies the table again")
    } else if !notes.is_empty() {
        Check::new("firewall", Status::Warn, notes.join("; ")).evidence(evidence).fix("FIX=1 applies the table again")
    } else {
        Check::new("firewall", Status::Ok, format!("{table} holds its {} bridges", bridges.len())).evidence(evidence)
    }
}

/// A path systemd reads as one word: absolute, no spaces, quotes, `%` or specifiers.
fn unit_path(path: &Path) -> Result<String> {
    let text = path.display().to_string();
    if !text.starts_with('/') || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.-+".contains(&b)) {
        bail!("{text} cannot be named in a systemd unit (only letters, digits and / _ . - +)");
    }
    Ok(text)
}

fn unit_name(settings: &FirewallSettings) -> String {
    if settings.table == "agency" {
        "agency-firewall.service".to_string()
    } else {
        format!("agency-firewall-{}.service", settings.table)
    }
}

fn unit_text(settings: &FirewallSettings, nft: &str, ruleset: &str) -> String {
    format!(
        "# Written by agency setup-firewall: re-applies agency's firewall table (table inet {table}) at boot,\n\
         # before Docker starts any container. The ruleset is regenerated by every agency task that\n\
         # changes a client's networks.\n\
         [Unit]\n\
         Description=agency tenant isolation (nftables table inet {table})\n\
         DefaultDependencies=no\n\
         Before=network-pre.target docker.service\n\
         Wants=network-pre.target\n\
         RequiresMountsFor={ruleset}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={nft} -f {ruleset}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target docker.service\n",
        table = settings.table,
    )
}

fn install_unit(host: &Host) -> Result<String> {
    let settings = settings(host)?;
    let nft = Nft::locate()?;
    let dir = host.settings.path("SYSTEMD_UNIT_DIR");
    let name = unit_name(&settings);
    let text = unit_text(&settings, &unit_path(nft.program())?, &unit_path(&saved_path(host, &settings))?);
    let path = dir.join(&name);
    let needed = match std::fs::read_to_string(&path) {
        Ok(existing) if existing == text => Outcome::Unchanged,
        Ok(_) => Outcome::Updated,
        Err(_) => Outcome::Created,
    };
    let outcome = host
        .effects
        .apply("write", &path.display().to_string(), "0644, systemd unit", needed, || {
            fsutil::create_dir(&dir, 0o755)?;
            fsutil::write_atomic(&path, text.as_bytes(), 0o644)?;
            Ok(())
        })?
        .outcome;
    // `systemctl enable` without a running systemd: the links its [Install] section asks for.
    for wants in ["multi-user.target.wants", "docker.service.wants"] {
        let link = dir.join(wants).join(&name);
        let target = Path::new("..").join(&name);
        if std::fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
            continue;
        }
        host.effects.apply(
            "symlink",
            &link.display().to_string(),
            &format!("-> {}", target.display()),
            Outcome::Created,
            || {
                fsutil::create_dir(link.parent().expect("in a dir"), 0o755)?;
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&target, &link)?;
                Ok(())
            },
        )?;
    }
    Ok(outcome.as_str().into())
}

pub fn create_module(host: &Rc<Host>) -> Module {
    let mut module = Module::new();

    let h = host.clone();
    module.set_native_fn("enabled", move || -> ScriptResult<bool> {
        settings(&h).map(|s| s.enabled).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("apply", move || -> ScriptResult<String> { apply(&h, None).map_err(script_error) });

    let h = host.clone();
    module.set_native_fn("apply", move |id: &str, env: Map| -> ScriptResult<String> {
        crate::format::validate::client_id(id).map_err(|e| script_error(anyhow::anyhow!("invalid client id: {e}")))?;
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        apply(&h, Some((id, (!env.is_empty()).then_some(env)))).map_err(script_error)
    });

    let h = host.clone();
    module.set_native_fn("checks", move |snap: DockerSnapshot, ids: Array| -> ScriptResult<Map> {
        let ids: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
        let checks = settings(&h).and_then(|s| checks(&s, &h.roots, &snap.0, &ids)).map_err(script_error)?;
        Ok(ids.iter().zip(&checks).map(|(id, check)| (id.as_str().into(), check_dynamic(check))).collect())
    });

    let h = host.clone();
    module.set_native_fn("install_unit", move || -> ScriptResult<String> { install_unit(&h).map_err(script_error) });

    module
}
