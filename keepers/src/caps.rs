//! Places for things a tenant holds open on the keeper's API (log streams, shell sessions),
//! counted per lease and in all: each holds a connection and an engine stream, so one tenant
//! can take a few and never all of them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use alloy::primitives::U256;

/// Open places by lease, under a per-lease and a total cap.
#[derive(Debug, Clone)]
pub struct LeaseCaps {
    open: Arc<Mutex<HashMap<U256, usize>>>,
    /// Most of one lease at once.
    pub per_lease: usize,
    /// Most at once.
    pub total: usize,
}

/// One place taken; dropping it frees the place.
#[derive(Debug)]
pub struct Held {
    open: Arc<Mutex<HashMap<U256, usize>>>,
    lease: U256,
}

impl LeaseCaps {
    /// Nothing open yet.
    pub fn new(per_lease: usize, total: usize) -> Self {
        Self {
            open: Arc::default(),
            per_lease,
            total,
        }
    }

    /// A place for `lease`, unless it holds `per_lease` or all hold `total` already.
    pub fn enter(&self, lease: U256) -> Option<Held> {
        let mut open = self.open.lock().ok()?;
        let mine = open.get(&lease).copied().unwrap_or(0);
        if open.values().sum::<usize>() >= self.total || mine >= self.per_lease {
            return None;
        }
        *open.entry(lease).or_default() += 1;
        Some(Held {
            open: Arc::clone(&self.open),
            lease,
        })
    }

    /// Places taken now.
    pub fn taken(&self) -> usize {
        self.open.lock().map_or(0, |o| o.values().sum())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(n) = open.get_mut(&self.lease)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.lease);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_per_lease_and_in_all_and_freed_when_dropped() {
        let caps = LeaseCaps::new(2, 16);
        let one = U256::from(1);
        let (a, b) = (
            caps.enter(one).expect("first"),
            caps.enter(one).expect("second"),
        );
        assert!(caps.enter(one).is_none(), "a third of one lease");
        drop(a);
        let c = caps.enter(one).expect("a place freed");
        let others: Vec<Held> = (2..=15u64)
            .map(|l| caps.enter(U256::from(l)).expect("other leases"))
            .collect();
        assert_eq!(caps.taken(), 16);
        assert!(caps.enter(U256::from(99)).is_none(), "a 17th in all");
        drop((b, c, others));
        assert_eq!(caps.taken(), 0, "nothing left open");
        assert!(caps.open.lock().expect("lock").is_empty());
    }
}
