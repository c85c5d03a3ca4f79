//! Benchmark helper: opens N loopback connections to a listener of its own and keeps both ends
//! open (2N + 1 TCP sockets, all in this process) until it is killed or its parent dies.
//!
//! Run it only inside a private network namespace (bench/netns-bench does). It raises its own
//! file limit as far as it may, prints `ready PID` on stdout once every connection is made, then
//! sleeps. Usage: conn_hold N [LISTEN_ADDRESS] (default 127.0.0.1:9000)

use std::io::Write;
use std::net::{TcpListener, TcpStream};

use rustix::process::{Resource, Rlimit, Signal};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: conn_hold N [LISTEN_ADDRESS]");
        std::process::exit(2)
    });
    let address = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    // Whoever started us cleans up by exiting: take the sockets with it.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::TERM));
    let want = (2 * n + 64) as u64;
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < want) {
        let maximum = limit.maximum.map(|m| m.max(want));
        let _ = rustix::process::setrlimit(Resource::Nofile, Rlimit { current: Some(want), maximum });
    }
    let listener = TcpListener::bind(&address).unwrap_or_else(|e| panic!("listen on {address}: {e}"));
    let target = listener.local_addr().expect("address");
    let mut held = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let client = TcpStream::connect(target).unwrap_or_else(|e| panic!("connect to {target}: {e}"));
        let (server, _) = listener.accept().expect("accept");
        held.push(client);
        held.push(server);
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready {}", std::process::id());
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
