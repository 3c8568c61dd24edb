//! What the operating system says about memory: the budgets of sessions and of models read into
//! memory are checked against it before anything large is allocated.

/// Physical memory of the machine in bytes, lowered to the control group's limit when the
/// process runs in one with a limit (Linux cgroup v2 `memory.max`). `None` when unknown.
pub fn physical_memory() -> Option<u64> {
    if cfg!(miri) {
        return None; // Miri does not model the machine's memory
    }
    // SAFETY: sysconf only reads system parameters.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let phys = (pages > 0 && size > 0).then(|| pages as u64 * size as u64);
    match (phys, cgroup_limit()) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// Memory that can be had now without swapping, in bytes: Linux's `MemAvailable` (free memory
/// plus reclaimable caches), else the physical memory. `None` when unknown.
pub fn available_memory() -> Option<u64> {
    if cfg!(miri) {
        return None;
    }
    let avail = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    match (avail, physical_memory()) {
        (Some(a), Some(p)) => Some(a.min(p)),
        (a, p) => a.or(p),
    }
}

fn cgroup_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_known_and_plausible() {
        let p = physical_memory().expect("physical memory");
        let a = available_memory().expect("available memory");
        assert!(p >= 64 << 20, "{p} bytes of memory");
        assert!(a <= p && a > 0, "available {a} of {p}");
    }
}
