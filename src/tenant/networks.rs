//! A client's Docker networks: each gets an explicit subnet from agency's pool, and a race
//! with another runner for the same block moves on to the next one.

use crate::{
    drivers::docker::{CreateNetworkError, Docker, NetworkDetails, NetworkSpec, network_age_key},
    tenant::subnet::{Allocator, Ipv4Net},
};
use anyhow::Result;

/// Every IPv4 subnet in use by any network of the engine (for the allocator).
pub fn used_subnets(docker: &Docker) -> Result<Vec<Ipv4Net>> {
    Ok(docker.inspect_all_networks()?.into_iter().flat_map(|n| n.subnets).collect())
}

/// Creates a network with the next free block of `allocator` (ignoring `spec.subnet`).
/// When Docker says the block overlaps (another runner took it meanwhile), marks it taken
/// and tries the next; fails when the pool is full. Returns the ID and the subnet.
pub fn create_network_in_pool(
    docker: &Docker,
    spec: &NetworkSpec,
    allocator: &mut Allocator,
) -> std::result::Result<(String, Ipv4Net), CreateNetworkError> {
    loop {
        let subnet = allocator.peek().map_err(CreateNetworkError::Failed)?;
        allocator.mark_taken(subnet);
        let id = match docker.create_with_subnet(spec, Some(subnet)) {
            Ok(id) => id,
            Err(CreateNetworkError::SubnetOverlaps { .. }) => continue,
            Err(other) => return Err(other),
        };
        if spec.driver == "bridge" {
            return Ok((id, subnet));
        }
        // Swarm does not refuse overlapping subnets (nor does it compare overlay and
        // bridge networks), so check afterwards: when an older network claims the block,
        // give it up and take the next one. Both racers apply the same rule, so exactly
        // one keeps the block.
        let networks = docker.inspect_all_networks().map_err(CreateNetworkError::Failed)?;
        let ours = networks.iter().find(|n| n.id == id);
        let loses = |other: &NetworkDetails| match ours {
            Some(ours) => network_age_key(other) < network_age_key(ours),
            None => false,
        };
        let older = networks
            .iter()
            .filter(|n| n.id != id && n.subnets.iter().any(|s| s.overlaps(&subnet)))
            .any(|other| loses(other) || ours.is_none());
        if !older {
            return Ok((id, subnet));
        }
        for network in &networks {
            for other in &network.subnets {
                allocator.mark_taken(*other);
            }
        }
        docker.remove_network(&id).map_err(CreateNetworkError::Failed)?;
    }
}
