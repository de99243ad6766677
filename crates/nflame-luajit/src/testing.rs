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
