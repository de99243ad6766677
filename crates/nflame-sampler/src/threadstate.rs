//! Where a thread is when an off-CPU recording starts: on a CPU, or asleep
//! (or runnable) in a system call, with its user registers and stack.
//!
//! A thread that is already off the CPU when the counters are enabled gives
//! no switch-out sample, so its stack for the time until it next runs is
//! read here instead: `/proc/PID/task/TID/syscall` gives the system call it
//! waits in with the user stack pointer and instruction pointer, `stat`
//! whether it is runnable, and the stack bytes are copied from its memory
//! with `process_vm_readv` (all need ptrace access to the thread: root).
//! The frame pointer is not known there, so DWARF unwinding starts without
//! it (frames that need it end the stack). Reads are bounded; a thread
//! that cannot be read is left unknown.

use std::fs::File;
use std::io::Read;

use crate::event::UserRegs;
use crate::procfs::parse_stat_state;
use crate::sys;
use crate::tracker::StartState;

/// What `/proc/PID/task/TID/syscall` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syscall {
    /// The thread is on a CPU.
    Running,
    /// Blocked, in system call `nr` (`None`: not in a system call), with
    /// the user stack and instruction pointers.
    Blocked { nr: Option<u64>, sp: u64, pc: u64 },
}

/// Parses `/proc/PID/task/TID/syscall`: `running`, `-1 SP PC`, or the
/// number, six arguments, SP and PC, in hexadecimal but for the number.
pub(crate) fn parse_syscall(text: &str) -> Option<Syscall> {
    let text = text.trim();
    if text == "running" {
        return Some(Syscall::Running);
    }
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    match fields.as_slice() {
        ["-1", sp, pc] => Some(Syscall::Blocked {
            nr: None,
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        [nr, _, _, _, _, _, _, sp, pc] => Some(Syscall::Blocked {
            nr: Some(nr.parse().ok()?),
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        _ => None,
    }
}

/// Reads at most `max` bytes of a small `/proc` file.
fn read_small(path: &str, max: u64) -> Option<String> {
    let mut s = String::new();
    File::open(path)
        .ok()?
        .take(max)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// The state of thread `tid` of `pid` now, with up to `stack_bytes` of its
/// user stack. `None` if it cannot be read (gone, no access, a kernel
/// thread).
pub(crate) fn read(pid: u32, tid: u32, stack_bytes: usize) -> Option<StartState> {
    let dir = format!("/proc/{pid}/task/{tid}");
    let (sp, pc) = match parse_syscall(&read_small(&format!("{dir}/syscall"), 512)?)? {
        Syscall::Running => return Some(StartState::Running),
        Syscall::Blocked { sp, pc, .. } => (sp, pc),
    };
    let state = parse_stat_state(&read_small(&format!("{dir}/stat"), 4096)?)?;
    if sp == 0 || pc == 0 {
        // A kernel thread, or one without user context.
        return None;
    }
    let mut stack = vec![0; stack_bytes];
    let n = sys::read_process_memory(pid, sp, &mut stack).unwrap_or(0);
    stack.truncate(n);
    Some(StartState::Off {
        preempted: state == 'R',
        regs: Some(UserRegs { ip: pc, sp, bp: 0 }),
        stack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_file_forms() {
        assert_eq!(parse_syscall("running\n"), Some(Syscall::Running));
        assert_eq!(
            parse_syscall(
                "230 0x0 0x0 0x7ffedb8a69b0 0x7ffedb8a69f0 0x0 0x0 0x7ffedb8a6998 0x7fa78341d503\n"
            ),
            Some(Syscall::Blocked {
                nr: Some(230),
                sp: 0x7ffe_db8a_6998,
                pc: 0x7fa7_8341_d503
            })
        );
        assert_eq!(
            parse_syscall("-1 0x7ffc00 0x401000"),
            Some(Syscall::Blocked {
                nr: None,
                sp: 0x7f_fc00,
                pc: 0x40_1000
            })
        );
        assert_eq!(parse_syscall(""), None);
        assert_eq!(parse_syscall("1 2 3"), None);
        assert_eq!(parse_syscall("x 0x0 0x0 0x0 0x0 0x0 0x0 0x1 0x2"), None);
    }

    #[test]
    fn a_sleeping_child_is_read_as_blocked_with_its_stack() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        // Wait until it sleeps (readiness, not a fixed delay).
        let mut state = None;
        for _ in 0..500 {
            state = read(pid, pid, 4096);
            if matches!(state, Some(StartState::Off { .. })) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        match state {
            Some(StartState::Off {
                preempted,
                regs: Some(regs),
                stack,
            }) => {
                assert!(!preempted);
                assert!(regs.sp != 0 && regs.ip != 0);
                assert!(!stack.is_empty());
            }
            other => panic!("unexpected state {other:?}"),
        }
    }
}
