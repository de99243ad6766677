//! The built-in workload of `nflame demo`: a loopback HTTP server, a userland
//! relay in front of it (what docker-proxy does for a published port), and a
//! keep-alive load client. Each runs as its own process (`nflame __worker …`,
//! [`Role`]), so a recording sees three processes with their own names, as it would see
//! nginx, docker-proxy and wrk.
//!
//! Only 127.0.0.1 is used; every loop is bounded by a deadline.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n";

/// Names the calling process (its `comm`, at most 15 bytes), as tools show it.
pub fn set_process_name(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes
    // from the pointer, and `buf` is 16 bytes with a NUL at the end.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// Serves `RESPONSE` to every request on keep-alive connections until `deadline`.
/// Prints the bound address on stdout first.
pub fn serve(deadline: Instant) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    announce(listener.local_addr()?)?;
    accept_until(listener, deadline, |stream| {
        let _ = handle_http(stream);
    })
}

fn announce(addr: SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{addr}")?;
    out.flush()
}

fn accept_until(
    listener: TcpListener,
    deadline: Instant,
    handle: impl Fn(TcpStream) + Send + Sync + Clone + 'static,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                let remaining = deadline.saturating_duration_since(Instant::now());
                stream.set_read_timeout(Some(remaining.max(Duration::from_millis(10))))?;
                let handle = handle.clone();
                thread::spawn(move || handle(stream));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn handle_http(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(16 * 1024, stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        // One request: header lines up to the empty line (the load sends no body).
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        writer.write_all(RESPONSE)?;
    }
}

/// Relays every connection to `upstream`, copying bytes both ways through user
/// space, until `deadline`. Prints the bound address on stdout first.
pub fn relay(upstream: SocketAddr, deadline: Instant) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    announce(listener.local_addr()?)?;
    accept_until(listener, deadline, move |client| {
        let Ok(server) = TcpStream::connect(upstream) else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        let up = thread::spawn(move || copy_stream(client, server));
        copy_stream(s2, c2);
        let _ = up.join();
    })
}

fn copy_stream(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Sends keep-alive GET requests on `connections` connections to `target` for
/// `duration`; returns the number of complete responses.
pub fn load(target: SocketAddr, connections: usize, duration: Duration) -> io::Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + duration;
    let mut handles = Vec::new();
    for _ in 0..connections.max(1) {
        let done = Arc::clone(&done);
        let stop = Arc::clone(&stop);
        handles.push(thread::spawn(move || -> io::Result<()> {
            let stream = TcpStream::connect(target)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut reader = BufReader::with_capacity(16 * 1024, stream.try_clone()?);
            let mut writer = stream;
            let request =
                format!("GET / HTTP/1.1\r\nHost: {target}\r\nUser-Agent: nflame-demo\r\n\r\n");
            let mut line = String::new();
            let mut body = [0u8; 13];
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                writer.write_all(request.as_bytes())?;
                let mut length = 0usize;
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let n = length.min(body.len());
                reader.read_exact(&mut body[..n])?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(io::Error::other("a load thread panicked"));
            }
        }
    }
    let n = done.load(Ordering::Relaxed);
    match first_err {
        Some(e) if n == 0 => Err(e),
        _ => Ok(n),
    }
}

/// One role of the demo workload, run in a process of its own.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Role {
    /// Serve HTTP on 127.0.0.1 (prints the address) for `secs` seconds.
    Server {
        /// How long.
        secs: f64,
    },
    /// Relay 127.0.0.1 connections to `upstream` (prints the address) for
    /// `secs` seconds.
    Relay {
        /// Where to relay to.
        upstream: SocketAddr,
        /// How long.
        secs: f64,
    },
    /// Load `target` with `connections` connections for `secs` seconds,
    /// starting when a line arrives on standard input; prints the requests
    /// done.
    Load {
        /// The server or relay.
        target: SocketAddr,
        /// Concurrent keep-alive connections.
        connections: usize,
        /// How long.
        secs: f64,
    },
}

/// Runs one worker role until its deadline, naming the process after it
/// (`nflame-server`, `nflame-relay`, `nflame-load`).
pub fn run_role(role: &Role) -> io::Result<()> {
    let deadline = |secs: f64| Instant::now() + Duration::from_secs_f64(secs.clamp(0.1, 3600.0));
    match *role {
        Role::Server { secs } => {
            set_process_name("nflame-server");
            serve(deadline(secs))
        }
        Role::Relay { upstream, secs } => {
            set_process_name("nflame-relay");
            relay(upstream, deadline(secs))
        }
        Role::Load {
            target,
            connections,
            secs,
        } => {
            set_process_name("nflame-load");
            // The demo says "go" on standard input once it records.
            let mut go = String::new();
            io::stdin().read_line(&mut go)?;
            let n = load(
                target,
                connections,
                Duration::from_secs_f64(secs.clamp(0.1, 3600.0)),
            )?;
            let mut out = io::stdout().lock();
            writeln!(out, "{n}")?;
            out.flush()
        }
    }
}
