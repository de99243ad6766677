//! Prints raw Lua stacks of a process for a few seconds (development aid).
use std::os::fd::AsFd;

fn main() {
    let mut args = std::env::args().skip(1);
    let pid: u32 = args.next().expect("pid").parse().unwrap();
    let secs: u64 = args.next().map(|s| s.parse().unwrap()).unwrap_or(2);
    let mut probe = nflame_luajit::LuaProbe::load().unwrap();
    let info = probe.add_process(pid).unwrap();
    eprintln!("{info:#x?}");
    let counters: Vec<_> = nflame_luajit::testing::threads(pid)
        .into_iter()
        .map(|t| nflame_luajit::testing::open_cpu_clock(t, 999).unwrap())
        .collect();
    for c in &counters {
        probe.attach(c.as_fd()).unwrap();
    }
    let t0 = std::time::Instant::now();
    let mut n = 0;
    while t0.elapsed().as_secs() < secs {
        std::thread::sleep(std::time::Duration::from_millis(100));
        probe.drain(|s| {
            n += 1;
            if n % 200 == 1 {
                println!("{s:x?}");
            }
        });
    }
    eprintln!("{n} records, {:?}", probe.stats());
}
