//! Stable ids for VIPs and backends.
//!
//! Flow-table entries and counters refer to backends and VIPs by small integer ids. The
//! registry hands them out and remembers them for the life of the process, so that across
//! reloads the same VIP (address, port, protocol) and the same backend of that VIP keep their
//! ids: flow entries stay valid and counters keep counting. Ids are never reused; a process
//! that sees more than 2²⁴ distinct backends over its lifetime refuses further reloads (the
//! flow table stores backend ids in 24 bits).

use std::collections::HashMap;

use crate::dataplane::snapshot::VipKey;

pub use crate::dataplane::flow_table::MAX_BACKEND_ID;

/// The id allocator. Owned by the control plane; survives reloads.
#[derive(Debug, Default)]
pub struct Registry {
    vips: HashMap<VipKey, u32>,
    backends: HashMap<(u32, [u8; 16]), u32>,
}

/// The registry ran out of backend ids.
#[derive(Debug, thiserror::Error)]
#[error(
    "more than {MAX_BACKEND_ID} distinct backends were configured over this process's life; restart the MUX to reset backend ids"
)]
pub struct IdsExhausted;

impl Registry {
    /// The id of the VIP with this key, allocating one the first time.
    pub fn vip_id(&mut self, key: VipKey) -> u32 {
        let next = self.vips.len() as u32;
        *self.vips.entry(key).or_insert(next)
    }

    /// The id of backend `address` of VIP `vip_id`, allocating one the first time.
    pub fn backend_id(&mut self, vip_id: u32, address: [u8; 16]) -> Result<u32, IdsExhausted> {
        let next = self.backends.len() as u32;
        if let Some(id) = self.backends.get(&(vip_id, address)) {
            return Ok(*id);
        }
        if next > MAX_BACKEND_ID {
            return Err(IdsExhausted);
        }
        self.backends.insert((vip_id, address), next);
        Ok(next)
    }

    /// Number of VIP ids handed out.
    pub fn vip_count(&self) -> usize {
        self.vips.len()
    }

    /// Number of backend ids handed out.
    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> VipKey {
        VipKey {
            addr: [1; 16],
            port,
            protocol: 6,
        }
    }

    #[test]
    fn ids_are_stable_and_never_reused() {
        let mut r = Registry::default();
        let a = r.vip_id(key(80));
        let b = r.vip_id(key(443));
        assert_ne!(a, b);
        assert_eq!(r.vip_id(key(80)), a);
        let x = r.backend_id(a, [2; 16]).unwrap();
        let y = r.backend_id(b, [2; 16]).unwrap();
        assert_ne!(x, y, "same DIP under two VIPs is two backends");
        assert_eq!(r.backend_id(a, [2; 16]).unwrap(), x);
        assert_eq!(r.backend_count(), 2);
    }
}
