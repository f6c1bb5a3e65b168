//! What the podman engine reads from and computes for the host's cgroups: the memory working
//! set that is billed (the same quantity as Kubernetes' metrics API: usage less inactive
//! file cache, which the kernel reclaims first), and the CPU weight a reservation earns.

use std::path::Path;

/// The memory working set of the cgroup at `path` (as podman reports it in `CgroupPath`,
/// e.g. `/libpod_parent/<pod>/libpod-<id>`) below `root` (normally `/sys/fs/cgroup`):
/// cgroup v1's `memory.usage_in_bytes − total_inactive_file`, or v2's
/// `memory.current − inactive_file`. `None` when the files cannot be read.
pub fn working_set(root: &Path, path: &str) -> Option<u64> {
    let relative = path.trim_start_matches('/');
    let v1 = root.join("memory").join(relative);
    if let Some(usage) = read_u64(&v1.join("memory.usage_in_bytes")) {
        let inactive = stat_field(&v1.join("memory.stat"), "total_inactive_file")?;
        return Some(usage.saturating_sub(inactive));
    }
    let v2 = root.join(relative);
    let usage = read_u64(&v2.join("memory.current"))?;
    let inactive = stat_field(&v2.join("memory.stat"), "inactive_file")?;
    Some(usage.saturating_sub(inactive))
}

/// CPU shares (cgroup v1 `cpu.shares`, which podman maps to v2 `cpu.weight`) for a
/// reservation of `millis` millicores: proportional, 1,024 per core, as the kubelet sets
/// them from a pod's CPU request, at least 2.
pub fn cpu_shares(millis: u32) -> u64 {
    (u64::from(millis) * 1024 / 1000).max(2)
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_field(path: &Path, field: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == field).then(|| value.trim().parse().ok()).flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-cgroup-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn page_cache_the_kernel_can_drop_is_not_billed() {
        // v1: 100 MiB written to a file (inactive cache) and 2 MiB resident.
        let root = scratch("v1");
        let dir = root.join("memory/libpod_parent/pod/libpod-c");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("memory.usage_in_bytes"),
            format!("{}\n", 102 << 20),
        )
        .expect("usage");
        std::fs::write(
            dir.join("memory.stat"),
            format!(
                "cache {}\nrss {}\ninactive_file {}\ntotal_inactive_file {}\n",
                100 << 20,
                2 << 20,
                1,
                100 << 20
            ),
        )
        .expect("stat");
        assert_eq!(
            working_set(&root, "/libpod_parent/pod/libpod-c"),
            Some(2 << 20)
        );
        // v2.
        let root2 = scratch("v2");
        let dir = root2.join("libpod_parent/libpod-c");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("memory.current"), "5000\n").expect("current");
        std::fs::write(dir.join("memory.stat"), "anon 3000\ninactive_file 1500\n").expect("stat");
        assert_eq!(working_set(&root2, "/libpod_parent/libpod-c"), Some(3500));
        assert_eq!(working_set(&root2, "/nowhere"), None);
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_dir_all(root2);
    }

    #[test]
    fn cpu_weight_follows_the_reservation() {
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(250), 256);
        assert_eq!(cpu_shares(2000), 2048);
        assert_eq!(cpu_shares(1), 2);
        assert!(cpu_shares(500) < cpu_shares(1500));
    }
}
