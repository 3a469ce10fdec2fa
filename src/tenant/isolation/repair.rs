//! What `FIX=1` repairs on a client's networks, planned from the snapshot.

use super::*;

use std::collections::BTreeMap;

use crate::{
    drivers::docker::{LABEL_CLIENT, NetworkDetails},
    tenant::subnet::Ipv4Net,
};

/// A repair `FIX=1` makes to one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    Create(Expected),
    /// Remove the drifted network (by ID) and create it again.
    Recreate {
        expected: Expected,
        id: String,
        subnet: Option<Ipv4Net>,
    },
    /// Several networks carry the expected name (an interrupted create, then a re-run): all
    /// but the one with the recorded subnet to be removed by ID, if that is safe (checked on
    /// the engine: the snapshot may know one of them only).
    RemoveTwins(Expected),
    /// Cannot be repaired safely; the message says why.
    Refuse(String),
}

/// A network of the client's name that `FIX=1 ADOPT=1` may replace: labelled for no other
/// client, and with no container attached (running or stopped).
fn adoptable(network: &NetworkDetails, attached: &[String], client: &str) -> bool {
    network.label(LABEL_CLIENT).is_none_or(|owner| owner == client) && attached.is_empty()
}

/// The next step for a network of the client's name that is not the client's.
pub(super) fn foreign_advice(network: &NetworkDetails, attached: &[String], client: &str) -> String {
    let name = &network.name;
    match network.label(LABEL_CLIENT) {
        Some(owner) if owner != client => format!("{name} is labelled as client {owner}'s; left alone"),
        _ if !attached.is_empty() => format!(
            "{name} is not {client}'s and has containers attached ({}); left alone: detach them \
             (`docker network disconnect {name} CONTAINER`), then run FIX=1 ADOPT=1 to replace it",
            attached.join(", ")
        ),
        _ => format!(
            "{name} is not {client}'s and is empty; left alone: remove it (`docker network rm {name}`) and run \
             FIX=1, or run FIX=1 ADOPT=1 to replace it"
        ),
    }
}

/// `network` recreated as `expected` (keeping the recorded subnet, else its first) when no
/// container is `attached`, else refused with `refusal`.
fn recreate_unless_attached(
    expected: Expected,
    network: &NetworkDetails,
    attached: &[String],
    refusal: String,
) -> Repair {
    if attached.is_empty() {
        let subnet = expected.subnet.or_else(|| network.subnets.first().copied());
        Repair::Recreate { expected, id: network.id.clone(), subnet }
    } else {
        Repair::Refuse(refusal)
    }
}

/// What `FIX=1` would do for the client's networks; with `adopt` (`ADOPT=1`), an empty
/// network of exactly a client network's name, labelled for no other client, is replaced.
pub fn plan_repairs(
    snapshot: &Snapshot,
    client: &str,
    driver: &str,
    recorded: &BTreeMap<String, String>,
    adopt: bool,
) -> Vec<Repair> {
    let mut repairs = Vec::new();
    for expected in expected_networks(client, driver, recorded) {
        if snapshot.shared_names.contains_key(&expected.name) {
            repairs.push(Repair::RemoveTwins(expected));
            continue;
        }
        let actual = snapshot.network(&expected.name);
        match assess(&expected, actual) {
            State::Ok => {
                // Made before agency named its bridges: recreated with a name, when nothing is
                // attached (until then the firewall covers it by Docker's `br-<id>` name).
                let network = actual.expect("ok implies a network");
                if expected.driver != "bridge"
                    || network.bridge.as_deref()
                        != Some(crate::tenant::firewall::docker_bridge_name(&network.id).as_str())
                {
                    continue;
                }
                let attached: Vec<String> = snapshot.attached(&expected.name).iter().map(|c| c.name.clone()).collect();
                let refusal = format!(
                    "{}'s bridge has no name of agency's ({}) but has containers attached ({}); not touched: the \
                     firewall covers it by that name; detach them and run FIX=1 again to name it",
                    expected.name,
                    network.bridge.as_deref().unwrap_or_default(),
                    attached.join(", ")
                );
                repairs.push(recreate_unless_attached(expected, network, &attached, refusal));
            }
            State::Missing => repairs.push(Repair::Create(expected)),
            State::Foreign => {
                let network = actual.expect("foreign implies a network");
                let attached: Vec<String> = snapshot.attached(&expected.name).iter().map(|c| c.name.clone()).collect();
                if adopt && adoptable(network, &attached, client) {
                    let subnet = expected.subnet;
                    repairs.push(Repair::Recreate { expected, id: network.id.clone(), subnet });
                } else {
                    repairs.push(Repair::Refuse(foreign_advice(network, &attached, client)));
                }
            }
            State::Drift(problems) => {
                let network = actual.expect("drift implies a network");
                let attached: Vec<String> = snapshot.attached(&expected.name).iter().map(|c| c.name.clone()).collect();
                let refusal = format!(
                    "{} {} but has containers attached ({}); not touched: detach them and run FIX=1 again",
                    expected.name,
                    problems.join(", "),
                    attached.join(", ")
                );
                repairs.push(recreate_unless_attached(expected, network, &attached, refusal));
            }
        }
    }
    repairs
}
