//! Benchmark helper: leaves N client-side TIME_WAIT sockets on loopback, spread over destination
//! addresses 127.0.0.1..127.0.0.K so that no (local IP, remote IP, remote port) bucket comes near
//! its port limit (a full bucket makes connect() search long for a free port).
//!
//! Run it only inside a private network namespace (bench/tw-bench does): it binds listeners and
//! makes N connections. Usage: tw_gen N

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// Sockets per destination: a third of a 1024-65535 range keeps connect()'s port search short.
const PER_BUCKET: usize = 20_000;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: tw_gen N");
        std::process::exit(2)
    });
    let buckets = n.div_ceil(PER_BUCKET).max(1);
    let listeners: Vec<TcpListener> = (0..buckets)
        .map(|i| {
            let address = format!("127.0.{}.{}:9000", (i + 1) / 256, (i + 1) % 256);
            TcpListener::bind(&address).unwrap_or_else(|e| panic!("listen on {address}: {e}"))
        })
        .collect();
    let start = Instant::now();
    let mut buffer = [0u8; 1];
    for i in 0..n {
        let listener = &listeners[i % buckets];
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        drop(client); // the client closes first: TIME_WAIT on the client side
        let _ = server.read(&mut buffer);
    }
    eprintln!("tw_gen: {n} connections to {buckets} destinations in {:.1} s", start.elapsed().as_secs_f64());
}
