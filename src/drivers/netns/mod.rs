//! Network namespaces of the runner, joined to bridges on this machine by veth pairs: for the
//! kernel's bridge and netfilter path a namespace there is what a container is (its veth on the
//! bridge), without an engine starting anything. They are anonymous, held only by a file
//! descriptor of the runner: when the runner ends, killed too, the kernel frees them and their
//! veth pairs, so no run leaves one behind and there is nothing for a later run to sweep.
//! [`Veths`] waits for the host ends of its links to be gone when the namespaces are
//! dropped, so that a run ends with nothing of it left.

pub mod attempts;

use std::{
    fs::File,
    net::Ipv4Addr,
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use super::process::{self, Command};

/// How the host ends of agency's veth pairs begin, before the runner's pid in hex (so a link
/// names the run it belongs to).
pub const LINK_PREFIX: &str = "agp";

/// A network namespace of its own, alive while this is.
pub struct Namespace {
    fd: OwnedFd,
}

impl Namespace {
    /// A new, empty namespace (loopback down, IPv6 off, as Docker sets up a container on an
    /// IPv4 network).
    pub fn new() -> Result<Self> {
        let fd = std::thread::scope(|scope| {
            scope
                .spawn(|| -> std::io::Result<OwnedFd> {
                    // SAFETY: only the network namespace is unshared, on this short-lived
                    // thread; its file descriptor table stays shared with the runner.
                    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }?;
                    for knob in ["all", "default"] {
                        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6"), "1");
                    }
                    Ok(File::open("/proc/thread-self/ns/net")?.into())
                })
                .join()
                .map_err(|_| std::io::Error::other("the thread creating a network namespace panicked"))?
        });
        Ok(Self { fd: fd.context("creating a network namespace (needs root, as the engine does)")? })
    }

    /// Runs `f` on a thread of its own inside the namespace: the sockets it opens and the
    /// children it starts belong to the namespace (a socket stays in the namespace it was made in).
    pub fn run_inside<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    rustix::thread::move_into_link_name_space(self.fd.as_fd(), Some(LinkNameSpaceType::Network))
                        .context("entering a network namespace")?;
                    Ok(f())
                })
                .join()
                .map_err(|_| anyhow!("a thread inside a network namespace panicked"))?
        })
    }

    /// The path by which other processes of this machine open it, while the runner lives.
    fn path(&self) -> String {
        use std::os::fd::AsRawFd;
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }
}

/// One link of a namespace: its end inside (`eth<n>`, `address/prefix`) and the host end,
/// enslaved to `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub bridge: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// The namespace's default route (one link of a namespace at most has it).
    pub gateway: Option<Ipv4Addr>,
}

/// How long the kernel may take to remove the links of dropped namespaces.
const REMOVAL_WAIT: Duration = Duration::from_secs(10);

static NEXT_LINK: AtomicUsize = AtomicUsize::new(0);

/// A host end's name: the prefix, the runner's pid and a counter, in hex (15 characters at
/// most, as Linux allows).
fn host_link_name() -> String {
    format!("{LINK_PREFIX}{:x}-{:x}", std::process::id(), NEXT_LINK.fetch_add(1, Ordering::Relaxed))
}

/// The MAC address Docker gives a container's interface at `address` (`02:42` and the four
/// bytes of the address): the host's neighbour entry for an address this run takes, left by
/// a container or an earlier run that had it, then still points at the right link.
fn mac_of(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The commands of `ip -batch` that join a namespace: on the host, each veth pair with its
/// host end on the bridge; inside, addresses, links up, the default route.
fn batches(links: &[(String, Link)], namespace: &str) -> (String, String) {
    let mut host = String::new();
    let mut inside = String::from("link set lo up\n");
    for (index, (name, link)) in links.iter().enumerate() {
        host.push_str(&format!(
            "link add {name} master {} up type veth peer name eth{index} address {} netns {namespace}\n",
            link.bridge,
            mac_of(link.address)
        ));
        inside.push_str(&format!("addr add {}/{} dev eth{index}\n", link.address, link.prefix));
        inside.push_str(&format!("link set eth{index} up\n"));
        if let Some(gateway) = link.gateway {
            inside.push_str(&format!("route add default via {gateway} dev eth{index}\n"));
        }
    }
    (host, inside)
}

/// The veth pairs that join namespaces to bridges: made, and seen gone.
pub struct Veths {
    ip: PathBuf,
    host_links: std::sync::Mutex<Vec<String>>,
}

impl Veths {
    pub fn new() -> Result<Self> {
        let ip = process::locate("ip", "install iproute2")?;
        Ok(Self { ip, host_links: Default::default() })
    }

    /// A new namespace with `links` (a namespace must be able to reach them all at once: an
    /// error when one cannot be made, a bridge that is gone, say).
    pub fn join(&self, links: &[Link]) -> Result<Namespace> {
        let namespace = Namespace::new()?;
        let named: Vec<(String, Link)> = links.iter().map(|l| (host_link_name(), l.clone())).collect();
        let (host, inside) = batches(&named, &namespace.path());
        self.host_links.lock().unwrap_or_else(|e| e.into_inner()).extend(named.iter().map(|(n, _)| n.clone()));
        self.batch(&host)?;
        namespace.run_inside(|| self.batch(&inside))??;
        Ok(namespace)
    }

    fn batch(&self, commands: &str) -> Result<()> {
        let output = Command::new(&self.ip).args(["-batch", "-"]).stdin(commands).output()?;
        if !output.success() {
            return Err(anyhow!("ip: {}", output.first_error_line()));
        }
        Ok(())
    }

    /// Waits until the host ends of every link made so far are gone, once their namespaces
    /// have been dropped: the kernel then removes them all in one go, in the background, far
    /// faster than `ip link del` does one by one (each waits for the others' traffic to
    /// settle). What is still there after a while is deleted.
    pub fn await_removal(&self) {
        let links = std::mem::take(&mut *self.host_links.lock().unwrap_or_else(|e| e.into_inner()));
        let present = |l: &&String| std::path::Path::new("/sys/class/net").join(l).exists();
        let deadline = Instant::now() + REMOVAL_WAIT;
        while links.iter().any(|l| present(&l)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left: String = links.iter().filter(present).map(|l| format!("link del {l}\n")).collect();
        if !left.is_empty() {
            let _ = Command::new(&self.ip).args(["-force", "-batch", "-"]).stdin(left).output();
        }
    }
}

impl Drop for Veths {
    fn drop(&mut self) {
        self.await_removal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_joins_its_bridges_through_ip_batches() {
        let links = [
            (
                "agp1f-0".to_string(),
                Link {
                    bridge: "agb-0ac90000".into(),
                    address: Ipv4Addr::new(10, 201, 0, 62),
                    prefix: 26,
                    gateway: Some(Ipv4Addr::new(10, 201, 0, 1)),
                },
            ),
            (
                "agp1f-1".to_string(),
                Link {
                    bridge: "br-0123456789ab".into(),
                    address: Ipv4Addr::new(10, 201, 0, 126),
                    prefix: 26,
                    gateway: None,
                },
            ),
        ];
        let (host, inside) = batches(&links, "/proc/31/fd/7");
        assert_eq!(
            host,
            "link add agp1f-0 master agb-0ac90000 up type veth peer name eth0 address 02:42:0a:c9:00:3e netns \
             /proc/31/fd/7\n\
             link add agp1f-1 master br-0123456789ab up type veth peer name eth1 address 02:42:0a:c9:00:7e netns \
             /proc/31/fd/7\n"
        );
        assert_eq!(
            inside,
            "link set lo up\naddr add 10.201.0.62/26 dev eth0\nlink set eth0 up\n\
             route add default via 10.201.0.1 dev eth0\naddr add 10.201.0.126/26 dev eth1\nlink set eth1 up\n"
        );
        assert!(host_link_name().len() <= 15);
    }
}
