//! The one shared ingress (SPEC §10): a Traefik container that publishes `INGRESS_HTTP_PORT`
//! on `INGRESS_BIND`, reads one dynamic file per client from a directory agency keeps for it
//! (`$AGENCY_ROOT/ingress/dynamic`, not the client config dirs), writes a JSON access log to
//! `$AGENCY_LOG_ROOT/ingress/access.json`, and is the one container allowed on every client's
//! frontend network (label `agency.shared-ingress=true`). `ACME_EMAIL` adds HTTPS on
//! `INGRESS_HTTPS_PORT` with Let's Encrypt certificates.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

use crate::{
    drivers::{
        compose as driver,
        docker::{Docker, LABEL_MANAGED, LABEL_SHARED_INGRESS},
    },
    effects::Outcome,
    tenant::context::Context,
    tenant::layout::Roots,
    tenant::policy::CLIENT_LABEL,
};

/// The label holding a hash of the container's settings: a change recreates it.
const LABEL_CONFIG: &str = "agency.ingress-config";
/// Traefik's certificate resolver name in generated routers.
pub const CERT_RESOLVER: &str = "letsencrypt";

pub fn dynamic_dir(roots: &Roots) -> PathBuf {
    roots.root.join("ingress").join("dynamic")
}

pub fn log_dir(roots: &Roots) -> PathBuf {
    roots.log_root.join("ingress")
}

fn acme_dir(roots: &Roots) -> PathBuf {
    roots.root.join("ingress").join("acme")
}

/// `docker run` arguments of the ingress, its settings checked, and their hash.
fn run_args(cx: &Context) -> Result<(String, Vec<String>)> {
    let setting = |name: &str| cx.settings.get(name).to_string();
    let name = setting("INGRESS_NAME");
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        bail!("INGRESS_NAME must be a container name (letters, digits, '-', '_', '.'), got {name:?}");
    }
    let bind: IpAddr = setting("INGRESS_BIND")
        .parse()
        .map_err(|_| anyhow::anyhow!("INGRESS_BIND must be an IP address, got {:?}", setting("INGRESS_BIND")))?;
    let port = |key: &str| -> Result<u16> {
        setting(key)
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| anyhow::anyhow!("{key} must be a port number, got {:?}", setting(key)))
    };
    let http = port("INGRESS_HTTP_PORT")?;
    let bind = match bind {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let image = setting("INGRESS_IMAGE");
    if image.is_empty() || image.starts_with('-') || image.contains(char::is_whitespace) {
        bail!("INGRESS_IMAGE must name an image, got {image:?}");
    }
    let acme = setting("ACME_EMAIL");
    let dynamic = dynamic_dir(&cx.roots);
    let logs = log_dir(&cx.roots);
    let mut args: Vec<String> = vec![
        "--name".into(),
        name.clone(),
        "--restart".into(),
        "unless-stopped".into(),
        "--label".into(),
        "agency.managed=true".into(),
        "--label".into(),
        "agency.shared-ingress=true".into(),
        "--label".into(),
        "agency.role=ingress".into(),
        "--cap-drop".into(),
        "NET_RAW".into(),
        "--security-opt".into(),
        "no-new-privileges:true".into(),
        "--log-driver".into(),
        "json-file".into(),
        "--log-opt".into(),
        "max-size=10m".into(),
        "--publish".into(),
        format!("{bind}:{http}:80"),
        "--volume".into(),
        format!("{}:/etc/agency/dynamic:ro", dynamic.display()),
        "--volume".into(),
        format!("{}:/var/log/agency", logs.display()),
    ];
    let mut traefik: Vec<String> = vec![
        "--global.checkNewVersion=false".into(),
        "--global.sendAnonymousUsage=false".into(),
        "--entryPoints.web.address=:80".into(),
        "--providers.file.directory=/etc/agency/dynamic".into(),
        "--providers.file.watch=true".into(),
        "--accessLog=true".into(),
        "--accessLog.format=json".into(),
        "--accessLog.filePath=/var/log/agency/access.json".into(),
        "--log.level=INFO".into(),
    ];
    if acme.is_empty() {
        // Without ACME the ingress needs no name from outside: clients' services are found by
        // Docker's embedded DNS, and anything else would be asked of the host's resolver,
        // off this machine. Its upstream is the container's own loopback, where none listens.
        args.extend(["--dns".into(), "127.0.0.1".into()]);
    } else {
        if !acme.contains('@') || acme.contains(|c: char| c.is_whitespace() || c.is_control()) {
            bail!("ACME_EMAIL must be an e-mail address, got {acme:?}");
        }
        let https = port("INGRESS_HTTPS_PORT")?;
        args.extend(["--publish".into(), format!("{bind}:{https}:443")]);
        args.extend(["--volume".into(), format!("{}:/etc/agency/acme", acme_dir(&cx.roots).display())]);
        traefik.extend([
            "--entryPoints.websecure.address=:443".into(),
            format!("--certificatesResolvers.{CERT_RESOLVER}.acme.email={acme}"),
            format!("--certificatesResolvers.{CERT_RESOLVER}.acme.storage=/etc/agency/acme/acme.json"),
            format!("--certificatesResolvers.{CERT_RESOLVER}.acme.httpChallenge.entryPoint=web"),
        ]);
    }
    let mut hash = Sha256::new();
    for arg in args.iter().chain([&image]).chain(&traefik) {
        hash.update(arg.as_bytes());
        hash.update([0]);
    }
    let digest: String = hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    args.extend(["--label".into(), format!("{LABEL_CONFIG}={digest}"), image]);
    args.extend(traefik);
    Ok((digest, args))
}

/// The clients of this root with a stack deployed (containers of theirs, by label), sorted.
/// Another root's clients on the same engine are not this ingress's.
fn deployed_clients(cx: &Context, docker: &Path) -> Result<Vec<String>> {
    let ours = cx.roots.client_ids()?;
    let docker = Docker::with_program(docker);
    let containers = docker.list_containers_with_labels(&[(LABEL_MANAGED.into(), "true".into())])?;
    let mut ids: Vec<String> = containers
        .iter()
        .filter(|c| !c.is_probe() && c.label(LABEL_SHARED_INGRESS) != Some("true"))
        .filter_map(|c| c.label(CLIENT_LABEL).map(str::to_string))
        .filter(|id| ours.contains(id))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Creates (or recreates, when its settings changed; starts, when stopped) the ingress and
/// attaches it to every deployed client's frontend network. The outcome and the networks
/// newly attached.
pub fn setup(cx: &Context, docker: &Path) -> Result<(String, Outcome, Vec<String>)> {
    let (digest, args) = run_args(cx)?;
    let name = cx.settings.get("INGRESS_NAME").to_string();
    let found = driver::container(docker, &name)?;
    if let Some((_, labels, _)) = &found
        && labels.get("agency.shared-ingress").and_then(|v| v.as_str()) != Some("true")
    {
        bail!("a container named {name} exists and is not agency's ingress; remove it or set INGRESS_NAME");
    }
    let current = found.as_ref().and_then(|(_, labels, _)| labels.get(LABEL_CONFIG).and_then(|v| v.as_str()));
    let running = found.as_ref().is_some_and(|(running, _, _)| *running);
    let target = format!("container {name}");
    let detail = format!(
        "image {}, {}",
        cx.settings.get("INGRESS_IMAGE"),
        args[args.iter().position(|a| a == "--publish").unwrap_or(0) + 1]
    );
    let outcome = match (&found, current == Some(digest.as_str())) {
        (None, _) => {
            cx.effects
                .apply("ingress", &target, &detail, Outcome::Created, || driver::run_detached(docker, &args).map(drop))?
                .outcome
        }
        (Some(_), false) => {
            cx.effects
                .apply("ingress", &target, &format!("{detail} (settings changed)"), Outcome::Updated, || {
                    driver::container_command(docker, &["rm", "-f"], &name)?;
                    driver::run_detached(docker, &args).map(drop)
                })?
                .outcome
        }
        (Some(_), true) if !running => {
            cx.effects
                .apply("ingress", &target, "start", Outcome::Updated, || {
                    driver::container_command(docker, &["start"], &name)
                })?
                .outcome
        }
        (Some(_), true) => {
            cx.effects.unchanged("ingress", &target, &detail);
            Outcome::Unchanged
        }
    };
    let on: Vec<String> = if outcome == Outcome::Unchanged {
        found.map(|(_, _, networks)| networks).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut connected = Vec::new();
    for id in deployed_clients(cx, docker)? {
        let network = format!("{id}_frontend");
        if on.contains(&network) {
            cx.effects.unchanged("network connect", &network, &format!("container {name}"));
            continue;
        }
        cx.effects.apply("network connect", &network, &format!("container {name}"), Outcome::Created, || {
            driver::container_command(docker, &["network", "connect", &network], &name)
        })?;
        connected.push(network);
    }
    Ok((name, outcome, connected))
}

/// Attaches a running ingress to the client's frontend network.
pub fn connect(cx: &Context, docker: &Path, id: &str) -> Result<Outcome> {
    crate::tenant::layout::ClientLayout::new(&cx.roots, id)?;
    let name = cx.settings.get("INGRESS_NAME").to_string();
    let network = format!("{id}_frontend");
    let Some((running, labels, networks)) = driver::container(docker, &name)? else {
        cx.effects.unchanged("network connect", &network, &format!("no ingress {name} (run setup-ingress)"));
        return Ok(Outcome::Unchanged);
    };
    if labels.get("agency.shared-ingress").and_then(|v| v.as_str()) != Some("true") || !running {
        cx.effects.unchanged("network connect", &network, &format!("{name} is not a running ingress"));
        return Ok(Outcome::Unchanged);
    }
    if networks.contains(&network) {
        cx.effects.unchanged("network connect", &network, &format!("container {name}"));
        return Ok(Outcome::Unchanged);
    }
    cx.effects
        .apply("network connect", &network, &format!("container {name}"), Outcome::Created, || {
            driver::container_command(docker, &["network", "connect", &network], &name)
        })
        .map(|applied| applied.outcome)
}
