//! A binary that exports LuaJIT's API but is not LuaJIT (or a build whose
//! code nflame does not know): the layout reader says why, never guesses.

use std::process::Command;

use nflame_luajit::{Layout, NotReadable};

#[test]
fn an_unknown_build_gives_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("fake.c");
    // The four functions the layout is read from, with unrelated code.
    std::fs::write(
        &src,
        "int lua_pcall(void *L, int a, int b, int c) { return a + b + c; }\n\
         void lua_close(void *L) { (void)L; }\n\
         int lua_checkstack(void *L, int n) { return n > 0; }\n\
         void *lua_tocfunction(void *L, int i) { return (char *)L + i; }\n",
    )
    .unwrap();
    let so = dir.path().join("libluajit-fake.so");
    let ok = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .expect("run gcc (scripts/install-deps.sh installs it)")
        .success();
    assert!(ok, "gcc failed");
    let err = Layout::from_elf(&std::fs::read(&so).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            NotReadable::Code {
                function: "lua_pcall",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot read the VM entry (lj_vm_pcall) from the machine code of lua_pcall (unknown LuaJIT build)"
    );
}
