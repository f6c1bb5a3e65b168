//! A lease's secret files on podman: one file per secret some service mounts, in
//! `<secret_files_dir>/<namespace>/`, bind-mounted read-only into its containers. The
//! directory must be memory-backed (tmpfs or ramfs), so a value never reaches the provider's
//! disk; the keeper checks that at start ([`prepare`]). The base directory is the keeper's
//! alone (mode 0700); a bind mount does not need the host path to be traversable, so the
//! container's user (any user: files are 0444) still reads its files.

use std::{
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use super::PodmanEngine;
use crate::{
    engine::EngineError,
    render::{LeaseKey, Rendered},
};

/// Why the secret files' directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFilesError {
    /// It cannot be created, restricted or read.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// It lives on a disk.
    #[error(
        "{path} is on {filesystem}, a file system on disk, not in memory: tenants' secret files would \
         reach the disk; use a directory on a tmpfs (systemd's RuntimeDirectory under /run is one)"
    )]
    OnDisk {
        /// The directory.
        path: PathBuf,
        /// The file system it is on.
        filesystem: String,
    },
}

/// Creates `dir` (mode 0700) when missing and checks that it is memory-backed.
pub fn prepare(dir: &Path) -> Result<(), SecretFilesError> {
    let io = |source| SecretFilesError::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let real = dir.canonicalize().map_err(io)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(io)?;
    in_memory(dir, &real, &mountinfo)
}

/// Whether `real` (`dir` made canonical) is on a tmpfs or ramfs, by `mountinfo`.
fn in_memory(dir: &Path, real: &Path, mountinfo: &str) -> Result<(), SecretFilesError> {
    let filesystem = filesystem_of(mountinfo, real).unwrap_or("unknown");
    if matches!(filesystem, "tmpfs" | "ramfs") {
        Ok(())
    } else {
        Err(SecretFilesError::OnDisk {
            path: dir.to_owned(),
            filesystem: filesystem.to_owned(),
        })
    }
}

/// The file system type of the mount holding `path` (canonical), from the text of
/// `/proc/self/mountinfo`: the deepest mount point that contains it, the last one mounted
/// when several share that point.
fn filesystem_of<'a>(mountinfo: &'a str, path: &Path) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let (Some(point), Some(fs)) = (left.split(' ').nth(4), right.split(' ').next()) else {
            continue;
        };
        let point = unescape(point);
        if path.starts_with(&point) {
            let depth = Path::new(&point).components().count();
            if best.is_none_or(|(d, _)| depth >= d) {
                best = Some((depth, fs));
            }
        }
    }
    best.map(|(_, fs)| fs)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl PodmanEngine {
    /// Writes the lease's secret files (each replaced whole: a new file renamed over the
    /// old, so a running container keeps what it read) and removes those no service mounts
    /// any more; no files, no directory.
    pub(super) async fn put_secret_files(&self, rendered: &Rendered) -> Result<(), EngineError> {
        let dir = rendered.secret_files_dir(&self.secret_files);
        let files: Vec<(String, Vec<u8>)> = rendered
            .secret_files()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.as_bytes().to_vec()))
            .collect();
        let written = tokio::task::spawn_blocking(move || write_files(&dir, &files)).await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(EngineError::Unavailable(format!(
                "writing the lease's secret files: {e}"
            ))),
            Err(e) => Err(EngineError::Unavailable(format!(
                "writing the lease's secret files: {e}"
            ))),
        }
    }

    /// Removes the lease's secret files.
    pub(super) async fn delete_secret_files(&self, key: &LeaseKey) -> Result<(), EngineError> {
        let dir = self.secret_files.join(key.namespace());
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::Unavailable(format!(
                "removing {}: {e}",
                dir.display()
            ))),
        }
    }
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    if files.is_empty() {
        return match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    for (name, value) in files {
        let temp = dir.join(format!(".{name}.new"));
        let _ = std::fs::remove_file(&temp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&temp)?;
        f.write_all(value)?;
        drop(f);
        std::fs::rename(&temp, dir.join(name))?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !files.iter().any(|(n, _)| name.to_str() == Some(n)) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
24 22 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1000k,mode=755
25 22 0:22 / /dev/shm rw,nosuid,nodev shared:6 - tmpfs tmpfs rw
26 24 8:1 /srv /run/disk rw,relatime shared:1 - ext4 /dev/sda1 rw
27 22 0:23 / /mnt/my\\040disk rw - xfs /dev/sdb1 rw
28 24 0:24 / /run rw shared:7 - ramfs ramfs rw
";

    #[test]
    fn the_deepest_mount_holding_a_path_names_its_file_system() {
        let fs = |p: &str| filesystem_of(MOUNTINFO, Path::new(p));
        assert_eq!(fs("/var/lib/berth"), Some("ext4"));
        assert_eq!(fs("/dev/shm/berth"), Some("tmpfs"));
        assert_eq!(
            fs("/run/disk/x"),
            Some("ext4"),
            "a disk mounted inside /run"
        );
        assert_eq!(
            fs("/run/berth-keeper"),
            Some("ramfs"),
            "the last mount at /run"
        );
        assert_eq!(fs("/mnt/my disk/s"), Some("xfs"), "octal escapes");
        assert_eq!(
            fs("/runner"),
            Some("ext4"),
            "components, not string prefixes"
        );
        assert_eq!(filesystem_of("garbage\n", Path::new("/x")), None);
    }

    #[test]
    fn files_are_replaced_whole_and_pruned() {
        let dir = std::env::temp_dir().join(format!("berth-sf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let one = |n: &str, v: &str| (n.to_owned(), v.as_bytes().to_vec());
        write_files(&dir, &[one("a", "1"), one("b", "2")]).expect("written");
        assert_eq!(std::fs::read_to_string(dir.join("b")).expect("b"), "2");
        let mode = std::fs::metadata(dir.join("a"))
            .expect("a")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
        write_files(&dir, &[one("a", "3")]).expect("rewritten");
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "3");
        assert!(!dir.join("b").exists(), "a file no service mounts any more");
        write_files(&dir, &[]).expect("emptied");
        assert!(!dir.exists());
    }

    #[test]
    fn a_directory_on_disk_is_refused_naming_its_file_system() {
        let e = in_memory(Path::new("/x"), Path::new("/var/lib/x"), MOUNTINFO)
            .expect_err("on ext4")
            .to_string();
        assert!(
            e.contains("/x is on ext4, a file system on disk, not in memory"),
            "{e}"
        );
        in_memory(Path::new("/x"), Path::new("/dev/shm/x"), MOUNTINFO).expect("tmpfs");
        let shm = Path::new("/dev/shm").join(format!("berth-sf-{}", std::process::id()));
        prepare(&shm).expect("/dev/shm is a tmpfs");
        let mode = std::fs::metadata(&shm).expect("made").permissions().mode();
        let _ = std::fs::remove_dir_all(&shm);
        assert_eq!(mode & 0o777, 0o700);
    }
}
