//! The machine a run ran on, for the report: cores, memory, CPU model, OS, and the filesystem a
//! directory is on.

use crate::report::Machine;
use std::path::{Path, PathBuf};

pub fn describe(postgres: Option<String>) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, model)| model.trim().to_owned());
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|r| {
            r.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))?
                .split_once('=')
                .map(|(_, v)| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    Machine { cores: std::thread::available_parallelism().map_or(1, |n| n.get()), memory_mib, cpu, os, postgres }
}

/// The type of the filesystem `dir` is on (`tmpfs`, `ext4`, ...), from `/proc/mounts`: the
/// mount point that is the longest prefix of the directory's canonical path.
pub fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            Some((PathBuf::from(point.replace("\\040", " ")), kind))
        })
        .filter(|(point, _)| dir.starts_with(point))
        .max_by_key(|(point, _)| point.as_os_str().len())
        .map_or_else(|| "unknown filesystem".to_owned(), |(_, kind)| kind.to_owned())
}

/// Where a local run puts its files unless told: memory (`/dev/shm`) where there is one, else
/// the system's temporary directory. A preview container has a filesystem of its own; here a
/// hundred agents share one, and on a disk the figure would measure that disk's state.
pub fn default_work_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filesystem_of_a_directory_is_its_longest_mount_point() {
        assert_eq!(filesystem_of(Path::new("/proc/self")), "proc");
        if Path::new("/dev/shm").is_dir() {
            assert_eq!(filesystem_of(Path::new("/dev/shm")), "tmpfs");
        }
        assert_ne!(filesystem_of(Path::new("/")), "unknown filesystem");
    }
}
