//! Where a thread is when an off-CPU recording starts: on a CPU, or asleep
//! (or runnable) in a system call, with its user registers and stack.
//!
//! A thread that is already off the CPU when the counters are enabled gives
//! no switch-out sample, so its stack for the time until it next runs is
//! read here instead: `/proc/PID/task/TID/syscall` (through `nflame-procfs`) gives the system call it
//! waits in with the user stack pointer and instruction pointer, `stat`
//! whether it is runnable, and the stack bytes are copied from its memory
//! with `process_vm_readv` (all need ptrace access to the thread: root).
//! The frame pointer is not known there, so DWARF unwinding starts without
//! it (frames that need it end the stack). Reads are bounded; a thread
//! that cannot be read is left unknown.

use nflame_procfs::process::{task_state, task_syscall, Syscall};

use crate::event::UserRegs;
use crate::sys;
use crate::tracker::StartState;

/// The state of thread `tid` of `pid` now, with up to `stack_bytes` of its
/// user stack. `None` if it cannot be read (gone, no access, a kernel
/// thread).
pub(crate) fn read(pid: u32, tid: u32, stack_bytes: usize) -> Option<StartState> {
    let (sp, pc) = match task_syscall(pid, tid)? {
        Syscall::Running => return Some(StartState::Running),
        Syscall::Blocked { sp, pc, .. } => (sp, pc),
    };
    let state = task_state(pid, tid)?;
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
