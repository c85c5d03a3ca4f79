//! Benchmark helper for bench/trace-bench: the loads whose cost the tracepoints raise, and the
//! event rates they must keep up with. Run it only inside a private network namespace.
//!
//!   trace_load null SECONDS              getppid() in a loop: calls per second
//!   trace_load connect SECONDS           connect, accept, close (the client first), one at a time
//!                                        over loopback: connections per second
//!   trace_load rate RATE SECONDS THREADS RATE connections a second in all (0: as many as they
//!                                        can), THREADS threads, to 64 ports each
//!   trace_load fail-bind RATE SECONDS    bind(127.0.0.2, 0) failing with EADDRINUSE RATE times a
//!                                        second (0: as fast as it can); the port range must hold
//!                                        at most 2 ports (the count includes the bind that found
//!                                        them taken)
//!
//! Each prints one line: `<count> in <seconds> s: <per second>/s`.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(n: usize) -> T {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: trace_load null|connect SECONDS | rate RATE SECONDS THREADS | fail-bind RATE SECONDS");
        std::process::exit(2)
    })
}

/// Runs `step` for `seconds`, `rate` times a second (0: as fast as it goes); returns how many.
fn paced(rate: f64, seconds: f64, mut step: impl FnMut()) -> u64 {
    let start = Instant::now();
    let end = Duration::from_secs_f64(seconds);
    let mut made = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= end {
            return made;
        }
        if rate > 0.0 {
            let due = Duration::from_secs_f64(made as f64 / rate);
            if due > elapsed {
                std::thread::sleep((due - elapsed).min(Duration::from_millis(5)));
                continue;
            }
        }
        step();
        made += 1;
    }
}

/// One connection over loopback to `listener`, closed by the client first.
fn connection(listener: &TcpListener) {
    let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    drop(client);
    let _ = server.read(&mut [0u8; 1]);
}

fn listeners(thread: usize) -> Vec<TcpListener> {
    (0..64)
        .map(|i| {
            let address = format!("127.0.{}.1:{}", thread + 1, 9000 + i);
            TcpListener::bind(&address).unwrap_or_else(|e| panic!("listen on {address}: {e}"))
        })
        .collect()
}

fn main() {
    let mode: String = arg(1);
    let start = Instant::now();
    let count = match mode.as_str() {
        "null" => paced(0.0, arg(2), || {
            std::hint::black_box(std::os::unix::process::parent_id());
        }),
        "connect" => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
            paced(0.0, arg(2), || connection(&listener))
        }
        "rate" => {
            let (rate, seconds, threads): (f64, f64, usize) = (arg(2), arg(3), arg(4));
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    std::thread::spawn(move || {
                        let listeners = listeners(t);
                        let mut i = 0;
                        paced(rate / threads as f64, seconds, || {
                            connection(&listeners[i % listeners.len()]);
                            i += 1;
                        })
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("worker")).sum()
        }
        "fail-bind" => {
            let held: Vec<TcpListener> =
                std::iter::from_fn(|| TcpListener::bind("127.0.0.2:0").ok()).take(1024).collect();
            assert!(held.len() <= 2, "the port range is wider than 2 ports");
            // The bind that found the range full failed too: it is counted.
            1 + paced(arg(2), arg(3), || {
                let err = TcpListener::bind("127.0.0.2:0").expect_err("no port is left");
                assert_eq!(err.raw_os_error(), Some(98), "{err}");
            })
        }
        _ => {
            eprintln!("trace_load: unknown mode {mode}");
            std::process::exit(2)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    println!("{count} in {seconds:.2} s: {:.0}/s", count as f64 / seconds);
}
