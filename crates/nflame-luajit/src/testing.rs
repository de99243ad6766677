//! Paths of the LuaJIT builds the tests run against (not part of the API).

use std::path::PathBuf;

/// Where scripts/install-deps.sh unpacks Debian's upstream `luajit`
/// (`NFLAME_UPSTREAM_LUAJIT` overrides).
pub fn upstream_root() -> PathBuf {
    std::env::var_os("NFLAME_UPSTREAM_LUAJIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/nflame-test/luajit-upstream"))
}

/// The unpacked upstream `libluajit-5.1.so.2.1.0`.
pub fn upstream_lib() -> PathBuf {
    upstream_root().join("usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2.1.0")
}

/// The unpacked upstream `luajit` interpreter.
pub fn upstream_bin() -> PathBuf {
    upstream_root().join("usr/bin/luajit")
}

/// Opens a software `cpu-clock` sampling counter on thread `tid` (any CPU)
/// at `freq` Hz, enabled, without a ring buffer: what the tests and the
/// example attach the probe to (the recorder attaches it to its own).
pub fn open_cpu_clock(tid: u32, freq: u64) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // struct perf_event_attr, PERF_ATTR_SIZE_VER5 (112 bytes), as u64 words.
    let mut attr = [0u64; 14];
    attr[0] = 1 | (112u64 << 32); // type PERF_TYPE_SOFTWARE, size
    attr[1] = 0; // config PERF_COUNT_SW_CPU_CLOCK
    attr[2] = freq; // sample_freq
    attr[3] = 2 | 4; // sample_type TID | TIME
    attr[5] = 1 << 10; // flags: freq
                       // SAFETY: perf_event_open reads `size` bytes of a valid, initialised
                       // attribute struct; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            tid as libc::pid_t,
            -1,
            -1,
            0u64,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// The threads of process `pid`.
pub fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
