//! The residency report (rule R6): what is held where.

use std::collections::BTreeMap;

use wardline_protocol::Region;
use wardline_protocol::residency::ADEQUACY_SOURCE;
use wardline_protocol::wire::{AdminResidencyOk, RegionHoldings};

use crate::admin::require_admin;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::State;

/// `admin_residency`: users, conversations, messages and bytes by region.
pub fn report(state: &State, authed: &Authed) -> Result<AdminResidencyOk, ApiError> {
    require_admin(state, authed, "admin_residency")?;
    let mut by: BTreeMap<Region, RegionHoldings> = BTreeMap::new();
    let entry = |by: &mut BTreeMap<Region, RegionHoldings>, r: Region| {
        by.entry(r)
            .or_insert(RegionHoldings {
                region: r,
                users: 0,
                conversations: 0,
                messages: 0,
                message_bytes: 0,
            })
            .region
    };
    for u in state.store.all_users()? {
        entry(&mut by, u.region);
        by.get_mut(&u.region).expect("just inserted").users += 1;
    }
    for c in state.store.all_conversations()? {
        entry(&mut by, c.residency);
        let (n, bytes) = state.store.message_stats(&c.id)?;
        let h = by.get_mut(&c.residency).expect("just inserted");
        h.conversations += 1;
        h.messages += n;
        h.message_bytes += bytes;
    }
    Ok(AdminResidencyOk {
        deployment_region: state.config.region,
        permitted: state.config.policy.regions().collect(),
        policy_source: if state.config.policy == wardline_protocol::Policy::trust_default() {
            ADEQUACY_SOURCE.to_string()
        } else {
            "residency.permitted in this deployment's configuration".to_string()
        },
        regions: by.into_values().collect(),
    })
}
