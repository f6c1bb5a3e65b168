//! The Merkle tree over a report's samples, so a tenant can check every charge: leaves are
//! `keccak256(abi.encode(leaseId, container, takenAtMs, cpuNs, memoryBytes))` in the order the
//! provider serves them (by container, then time); inner nodes hash their two children in
//! ascending order (as OpenZeppelin's `MerkleProof` does); an odd node is carried up. A
//! report with no samples has the zero root.

use alloy_primitives::{B256, U256, keccak256};
use alloy_sol_types::SolValue;

use super::Sample;

/// The leaf of one sample.
pub fn leaf(lease: U256, s: &Sample) -> B256 {
    keccak256(
        (
            lease,
            s.container.clone(),
            s.taken_at_ms,
            s.cpu_ns,
            s.memory_bytes,
        )
            .abi_encode(),
    )
}

fn node(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

fn next_level(level: &[B256]) -> Vec<B256> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [a, b] => node(*a, *b),
            [a] => *a,
            _ => B256::ZERO,
        })
        .collect()
}

/// The root over `leaves`.
pub fn root(leaves: &[B256]) -> B256 {
    if leaves.is_empty() {
        return B256::ZERO;
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// The root over a lease's samples.
pub fn samples_root(lease: U256, samples: &[Sample]) -> B256 {
    let leaves: Vec<B256> = samples.iter().map(|s| leaf(lease, s)).collect();
    root(&leaves)
}

/// The sibling hashes from leaf `index` up to the root (None when out of range).
pub fn proof(leaves: &[B256], index: usize) -> Option<Vec<B256>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut level = leaves.to_vec();
    let mut i = index;
    while level.len() > 1 {
        let sibling = i ^ 1;
        if sibling < level.len() {
            path.push(level[sibling]);
        }
        level = next_level(&level);
        i /= 2;
    }
    Some(path)
}

/// Whether `proof` leads from `leaf` to `root`.
pub fn verify(leaf: B256, proof: &[B256], root: B256) -> bool {
    proof.iter().fold(leaf, |acc, p| node(acc, *p)) == root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64) -> Sample {
        Sample {
            container: "web".into(),
            taken_at_ms: t,
            cpu_ns: t * 7,
            memory_bytes: 1 << 20,
        }
    }

    #[test]
    fn every_leaf_proves_into_the_root_for_every_size() {
        for n in 1..=9u64 {
            let samples: Vec<Sample> = (0..n).map(sample).collect();
            let leaves: Vec<B256> = samples.iter().map(|s| leaf(U256::from(1), s)).collect();
            let r = root(&leaves);
            assert_eq!(r, samples_root(U256::from(1), &samples));
            for (i, l) in leaves.iter().enumerate() {
                let p = proof(&leaves, i).expect("in range");
                assert!(verify(*l, &p, r), "n={n} i={i}");
            }
        }
    }

    #[test]
    fn any_change_changes_the_root() {
        let samples: Vec<Sample> = (0..5).map(sample).collect();
        let r = samples_root(U256::from(1), &samples);
        let mut tampered = samples.clone();
        tampered[3].cpu_ns += 1;
        assert_ne!(samples_root(U256::from(1), &tampered), r);
        assert_ne!(
            samples_root(U256::from(2), &samples),
            r,
            "bound to the lease"
        );
        assert_ne!(
            samples_root(U256::from(1), &samples[..4]),
            r,
            "a dropped sample shows"
        );
        assert_eq!(samples_root(U256::from(1), &[]), B256::ZERO);
    }
}
