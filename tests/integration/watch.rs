//! `twtune watch` driven as a person would drive it: the real binary on a terminal of `tmux`
//! (send-keys, capture-pane), inside the test's private network namespace, over real churn from
//! the python peers. Each tmux server is private to its test (a socket in a temporary directory)
//! and killed when the test ends.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::namespaces::{Process, private_run_netns};
use crate::netns::{enter, run, set_sysctl};
use crate::util::{Expect, Run};

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/peers.py");
const TERMINAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/terminal.py");

/// A tmux server of the test with one window running one command under `sh`, which afterwards
/// prints the command's exit status and the terminal's modes, so that a test can see both.
struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts `env ENV twtune ARGS` on a `width` x `height` terminal.
    fn start(env: &[&str], args: &[&str], width: u16, height: u16) -> Tmux {
        let dir = tempfile::tempdir().expect("temporary directory");
        let tmux = Tmux { dir };
        let mut command = vec!["env".to_string()];
        command.extend(env.iter().map(|e| e.to_string()));
        command.push(env!("CARGO_BIN_EXE_twtune").to_string());
        command.extend(args.iter().map(|a| a.to_string()));
        let shell = format!("{}; echo EXIT=$?; stty -a; echo MODES-DONE; sleep 600", command.join(" "));
        tmux.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &shell,
        ]);
        tmux
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("tmux")
    }

    fn tmux(&self, args: &[&str]) -> String {
        let socket = self.socket();
        let mut all = vec!["-S", socket.to_str().expect("socket path")];
        all.extend_from_slice(args);
        run("tmux", &all)
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// The screen as text.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }

    /// The screen with its colours and attributes as escape sequences.
    fn styled_screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-e"])
    }

    fn alternate_screen(&self) -> bool {
        self.tmux(&["display-message", "-p", "#{alternate_on}"]).trim() == "1"
    }

    /// Waits up to 20 s for the screen to satisfy `ready`, and returns it.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the command to end and returns its exit status, after checking that it left the
    /// terminal as it found it: the normal screen, line editing and echo on.
    fn exit_status(&self) -> i32 {
        let screen = self.wait_for("the exit status", |s| s.contains("MODES-DONE"));
        assert!(!self.alternate_screen(), "still on the alternate screen:\n{screen}");
        let modes: Vec<&str> = screen.split_whitespace().collect();
        for mode in ["icanon", "echo", "icrnl", "opost", "isig"] {
            assert!(modes.contains(&mode), "{mode} not restored:\n{screen}");
        }
        let status = screen.split("EXIT=").nth(1).and_then(|s| s.split_whitespace().next()).expect("status");
        status.parse().expect("a number")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let socket = self.socket();
        let _ = Command::new("tmux").arg("-S").arg(&socket).arg("kill-server").output();
    }
}

/// The first number after `label` on the line that holds it.
fn number_after(screen: &str, label: &str) -> u64 {
    shown_number(screen, label).unwrap_or_else(|| panic!("no number after {label:?} in\n{screen}"))
}

fn shown_number(screen: &str, label: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.contains(label))?;
    let rest = &line[line.find(label)? + label.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ' ')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The line of the screen holding `text`, as an index.
fn row_of(screen: &str, text: &str) -> usize {
    screen.lines().position(|l| l.contains(text)).unwrap_or_else(|| panic!("no {text:?} in\n{screen}"))
}

const CHURN: &str = "127.0.0.1 -> 127.0.0.1:7003";
const POOL: &str = "127.0.0.1 -> 127.0.0.1:7004";

/// A client without reuse (about 70 new connections a second, each closed by the client) and one
/// holding 300 connections, in the test's namespace.
fn churn_and_pool() -> Vec<Process> {
    vec![
        Process::peer(&["server", "7003"]),
        Process::peer(&["server", "7004"]),
        Process::peer(&["churn", "7003", "5", "60"]),
        Process::peer(&["hold", "7004", "300"]),
    ]
}

#[test]
fn the_view_follows_real_churn_and_its_keys_sort_pause_help_resize_and_quit() {
    if !enter("watch::the_view_follows_real_churn_and_its_keys_sort_pause_help_resize_and_quit") {
        return;
    }
    let _peers = churn_and_pool();
    let tmux = Tmux::start(&[], &["watch", "--interval", "500ms"], 140, 40);
    let first = tmux.wait_for("both buckets with rates and the churn's owner", |s| {
        s.contains(CHURN) && s.contains(POOL) && s.contains("python3") && s.contains("conn.no-reuse")
    });
    assert!(tmux.alternate_screen(), "the view is on the alternate screen");
    // nf_conntrack is there (built into this kernel, or loaded): its use is shown.
    if std::path::Path::new("/proc/sys/net/netfilter/nf_conntrack_count").exists() {
        assert!(first.contains("conntrack") && first.contains("entries"), "{first}");
    }
    // The pool holds 300 ports, the churn far fewer (its TIME_WAIT is reusable on loopback).
    assert!(row_of(&first, POOL) < row_of(&first, CHURN), "fullest first:\n{first}");
    assert!(number_after(&first, "connects") > 20, "{first}");

    // The numbers move from one frame to the next: TIME_WAIT piles up behind the churn.
    std::thread::sleep(Duration::from_millis(1500));
    let later = tmux.screen();
    assert!(number_after(&later, "outbound") > number_after(&first, "outbound"), "{first}\n{later}");

    // s: by TIME_WAIT, the churn comes first.
    tmux.keys(&["s"]);
    let sorted = tmux.wait_for("the TIME_WAIT order", |s| s.contains("by TIME_WAIT"));
    assert!(row_of(&sorted, CHURN) < row_of(&sorted, POOL), "{sorted}");

    // p: the screen stands still while reading goes on; p again shows the latest.
    tmux.keys(&["p"]);
    let paused = tmux.wait_for("the pause", |s| s.contains("PAUSED"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(tmux.screen(), paused, "a paused view does not change");
    tmux.keys(&["p"]);
    let resumed = tmux.wait_for("the resumed view", |s| !s.contains("PAUSED"));
    assert!(number_after(&resumed, "outbound") > number_after(&paused, "outbound"), "{paused}\n{resumed}");

    // ?: the keys; any key closes them.
    tmux.keys(&["?"]);
    tmux.wait_for("the help", |s| s.contains("next sort order") && s.contains("pause the view"));
    tmux.keys(&["x"]);
    tmux.wait_for("the help to close", |s| !s.contains("next sort order"));

    // A smaller terminal: redrawn to fit, buckets still there.
    tmux.tmux(&["resize-window", "-x", "80", "-y", "24"]);
    let small = tmux.wait_for("the redraw at 80x24", |s| {
        s.lines().next().is_some_and(|l| l.starts_with("twtune watch"))
            && s.contains(CHURN)
            && s.lines().any(|l| l.ends_with('┘') && l.chars().count() == 80)
    });
    assert!(small.lines().all(|l| l.chars().count() <= 80), "{small}");

    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0);
}

#[test]
fn ctrl_c_a_signal_a_hang_up_a_suspend_and_a_panic_restore_the_terminal() {
    if !enter("watch::ctrl_c_a_signal_a_hang_up_a_suspend_and_a_panic_restore_the_terminal") {
        return;
    }
    let interrupted = Tmux::start(&[], &["watch"], 100, 30);
    interrupted.wait_for("the first frame", |s| s.contains("per second"));
    interrupted.keys(&["C-c"]);
    assert_eq!(interrupted.exit_status(), 0);

    let terminated = Tmux::start(&[], &["watch"], 100, 30);
    terminated.wait_for("the first frame", |s| s.contains("per second"));
    // The pane's shell has one child: twtune (`env` executes it).
    let shell = terminated.tmux(&["display-message", "-p", "#{pane_pid}"]);
    run("pkill", &["-TERM", "-P", shell.trim()]);
    assert_eq!(terminated.exit_status(), 0);

    // A hang-up (the terminal closes, as when an ssh session drops): twtune ends instead of spinning.
    let hung_up = Tmux::start(&[], &["watch"], 100, 30);
    hung_up.wait_for("the first frame", |s| s.contains("per second"));
    let shell = hung_up.tmux(&["display-message", "-p", "#{pane_pid}"]);
    let twtune = run("pgrep", &["-P", shell.trim()]).trim().to_string();
    drop(hung_up);
    let deadline = Instant::now() + Duration::from_secs(5);
    let ended = || {
        std::fs::read_to_string(format!("/proc/{twtune}/stat"))
            .map_or(true, |stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
    };
    while !ended() {
        assert!(Instant::now() < deadline, "twtune {twtune} still runs after its terminal hung up");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Ctrl-Z (and SIGTSTP): stopped as a job, with the terminal given back; continued, the view
    // takes it again.
    let suspended = Tmux::start(&[], &["watch"], 100, 30);
    suspended.wait_for("the first frame", |s| s.contains("per second"));
    let shell = suspended.tmux(&["display-message", "-p", "#{pane_pid}"]);
    let twtune = run("pgrep", &["-P", shell.trim()]).trim().to_string();
    let tty = suspended.tmux(&["display-message", "-p", "#{pane_tty}"]).trim().to_string();
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{twtune}/stat")).expect("twtune's stat");
        stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).unwrap_or_default().to_string()
    };
    for by_signal in [false, true] {
        if by_signal {
            run("kill", &["-TSTP", &twtune]);
        } else {
            suspended.keys(&["C-z"]);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while state() != "T" || suspended.alternate_screen() {
            assert!(Instant::now() < deadline, "not stopped with the terminal given back: {}", state());
            std::thread::sleep(Duration::from_millis(50));
        }
        let modes = run("stty", &["-a", "-F", &tty]);
        assert!(modes.split_whitespace().any(|m| m == "icanon"), "raw while stopped: {modes}");
        run("kill", &["-CONT", &twtune]);
        suspended.wait_for("the view again", |s| s.contains("per second"));
        assert!(suspended.alternate_screen());
    }
    suspended.keys(&["q"]);
    assert_eq!(suspended.exit_status(), 0);

    // A debug-build hook panics after the second frame.
    let panicked =
        Tmux::start(&["TWTUNE_TEST_WATCH_PANIC=2", "RUST_BACKTRACE=0"], &["watch", "--interval", "200ms"], 100, 30);
    assert_eq!(panicked.exit_status(), 101);
    assert!(panicked.screen().contains("a panic for the test"), "the message lands on the normal screen");
}

/// Checks a captured frame `width` wide: no line wider, and no number cut, neither where a line
/// was shortened (`…`) nor where a finding wraps onto the next line.
fn check_frame(screen: &str, width: usize) {
    let lines: Vec<&str> = screen.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        assert!(line.chars().count() <= width, "line {i} over {width} columns:\n{screen}");
        let cut = line.match_indices('…').any(|(at, _)| line[..at].ends_with(|c: char| c.is_ascii_digit()));
        assert!(!cut, "a number cut on line {i}:\n{screen}");
        let inner = |l: &str| l.trim_matches(|c| c == '│' || c == ' ').to_string();
        // A finding goes on under its message, indented; a table's next row is not.
        if let Some(next) = lines.get(i + 1).filter(|next| next.trim_start_matches('│').starts_with(' ')) {
            let (this, next) = (inner(line), inner(next));
            let split = this.ends_with(|c: char| c.is_ascii_digit()) && next.starts_with(|c: char| c.is_ascii_digit());
            assert!(!split || !line.starts_with('│'), "a number wrapped on line {i}:\n{screen}");
        }
    }
}

#[test]
fn at_80x24_the_owner_and_findings_fit_and_scroll_at_200x50_they_show_whole_and_a_full_bucket_runs_out_now() {
    if !enter(
        "watch::at_80x24_the_owner_and_findings_fit_and_scroll_at_200x50_they_show_whole_and_a_full_bucket_runs_out_now",
    ) {
        return;
    }
    // 100 ephemeral ports (an even count: the kernel's search covers every one), all held: the
    // bucket has nothing left and connect() to it is failing.
    set_sysctl("net.ipv4.ip_local_port_range", "40000 40099");
    let _server = Process::peer(&["server", "7004"]);
    let holder = Process::peer(&["hold", "7004", "100"]);
    let owner = format!("{} python3", holder.pid());
    let tmux = Tmux::start(&[], &["watch", "--interval", "500ms"], 80, 24);
    let small = tmux.wait_for("the full bucket with its owner and findings", |s| {
        s.contains(POOL) && s.contains(&owner) && s.contains("failing now")
    });
    check_frame(&small, 80);
    let header = small.lines().find(|l| l.contains("local -> remote")).expect("the table's header");
    assert!(header.contains("owner") && header.contains("runs out"), "{small}");
    let row = small.lines().find(|l| l.contains(POOL)).expect("the bucket's row");
    assert!(row.split_whitespace().any(|w| w == "now"), "nothing left runs out now:\n{small}");
    // More findings than rows: scrolled with Down, a line at a time.
    assert!(small.contains("lines 1-"), "{small}");
    tmux.keys(&["Down"]);
    let scrolled = tmux.wait_for("the findings scrolled", |s| s.contains("lines 2-"));
    check_frame(&scrolled, 80);

    tmux.tmux(&["resize-window", "-x", "200", "-y", "50"]);
    tmux.wait_for("the redraw at 200x50", |s| s.lines().any(|l| l.chars().count() == 200));
    let large =
        tmux.wait_for("every finding whole", |s| s.contains("(twtune audit explains each)") && s.contains(&owner));
    check_frame(&large, 200);
    assert!(large.contains("risk: ") && large.contains("ports used"), "the room is used:\n{large}");
    assert!(!large.contains('…') && !large.contains("lines 1-"), "nothing cut at 200x50:\n{large}");
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0);
}

/// What tests/support/terminal.py saw `twtune watch` do in `scenario`.
fn terminal_gone(scenario: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .args([TERMINAL, scenario, env!("CARGO_BIN_EXE_twtune"), "watch"])
        .output()
        .expect("run terminal.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{scenario}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{scenario}: {e}: {stdout}"))
}

#[test]
fn however_its_terminal_goes_the_view_ends_within_a_second_or_waits_without_cpu() {
    if !enter("watch::however_its_terminal_goes_the_view_ends_within_a_second_or_waits_without_cpu") {
        return;
    }
    // Gone (master closed), with SIGHUP reaching only the session leader, which ignores it; a
    // SIGCONT's redraw just as it goes (what left a view spinning on a deleted terminal); stopped
    // while it goes; SIGTERM, running or stopped; EIO from a background group ignoring SIGTTIN.
    for scenario in ["close", "cont-close", "stop-close-cont", "term", "stopped-term", "eio"] {
        let seen = terminal_gone(scenario);
        let ended = seen["ended"].as_f64().unwrap_or_else(|| panic!("{scenario}: still running: {seen}"));
        assert!(ended <= 1.0, "{scenario}: {seen}");
        assert_eq!(seen["asked"], false, "{scenario}: the terminal was asked a question: {seen}");
    }
    // A storm of SIGTSTP and SIGCONT: it still draws, and idles at next to no CPU.
    let storm = terminal_gone("storm");
    assert_eq!((&storm["drew"], &storm["ended"]), (&true.into(), &serde_json::Value::Null), "{storm}");
    assert!(storm["cpu"].as_f64().is_some_and(|cpu| cpu < 0.2), "CPU seconds over 2 s: {storm}");
    let stopped = terminal_gone("stopped");
    assert_eq!((&stopped["state"], stopped["cpu"].as_f64()), (&"T".into(), Some(0.0)), "{stopped}");
    // EBADF: stdout or stdin closed: refused at once, nothing drawn.
    for closed in [">&-", "<&-"] {
        let tmux = Tmux::start(&[], &["watch", closed], 80, 24);
        assert_eq!(tmux.exit_status(), 2, "{closed}");
    }
}

#[test]
fn colours_follow_color_and_no_color() {
    if !enter("watch::colours_follow_color_and_no_color") {
        return;
    }
    // A colour escape: SGR with a foreground of the 8, 16 or 256 colours (39 is the default colour).
    let coloured = |screen: &str| {
        screen.split("\x1b[").skip(1).any(|sequence| {
            let params = sequence.split('m').next().unwrap_or_default();
            params.split(';').any(|p| matches!(p.parse::<u8>(), Ok(30..=38 | 90..=97)))
        })
    };
    for (env, args, expected) in [
        (&[][..], &["watch"][..], true),
        (&["NO_COLOR=1"][..], &["watch"][..], false),
        (&[][..], &["--color", "never", "watch"][..], false),
        (&["NO_COLOR=1"][..], &["--color", "always", "watch"][..], true),
    ] {
        let tmux = Tmux::start(env, args, 100, 30);
        tmux.wait_for("the first frame", |s| s.contains("per second"));
        let screen = tmux.styled_screen();
        assert_eq!(coloured(&screen), expected, "{env:?} {args:?}:\n{screen:?}");
        tmux.keys(&["q"]);
        assert_eq!(tmux.exit_status(), 0);
    }
}

#[test]
fn every_namespace_has_a_row_and_enter_opens_one() {
    if !enter("watch::every_namespace_has_a_row_and_enter_opens_one") {
        return;
    }
    private_run_netns();
    run("ip", &["netns", "add", "twtune-watch"]);
    run("ip", &["netns", "exec", "twtune-watch", "ip", "link", "set", "lo", "up"]);
    let in_namespace = |args: &[&str]| {
        let mut all = vec!["netns", "exec", "twtune-watch", "python3", PEERS];
        all.extend_from_slice(args);
        Process::ready("ip", &all)
    };
    let _server = in_namespace(&["server", "7003"]);
    let _churn = in_namespace(&["churn", "7003", "5", "60"]);

    let tmux = Tmux::start(&[], &["watch", "--all-netns"], 160, 50);
    tmux.wait_for("the namespace table with ours", |s| {
        s.contains("network namespaces, by") && s.contains("twtune-watch")
    });
    // --netns NAME watches the one namespace.
    let one = Tmux::start(&[], &["watch", "--netns", "twtune-watch"], 140, 40);
    one.wait_for("the named namespace's view", |s| {
        s.lines().next().is_some_and(|l| l.contains("twtune-watch")) && s.contains(CHURN)
    });
    one.keys(&["q"]);
    assert_eq!(one.exit_status(), 0);

    // By name, then Down until ours is the highlighted row (other tests' namespaces may be listed
    // too; the highlight stays on its namespace when rows come and go).
    for _ in 0..3 {
        tmux.keys(&["s"]);
    }
    tmux.wait_for("the order by name", |s| s.contains("network namespaces, by name"));
    let selected =
        |styled: &str| styled.lines().find(|l| l.contains("\x1b[7m")).map(str::to_string).unwrap_or_default();
    for _ in 0..100 {
        if selected(&tmux.styled_screen()).contains("twtune-watch") {
            break;
        }
        tmux.keys(&["Down"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(selected(&tmux.styled_screen()).contains("twtune-watch"), "{}", tmux.screen());
    tmux.keys(&["Enter"]);
    let opened = tmux.wait_for("the namespace opened", |s| {
        s.lines().next().is_some_and(|l| l.contains("twtune-watch"))
            && s.contains(CHURN)
            && s.contains("Esc back")
            && shown_number(s, "connects").is_some()
    });
    assert!(number_after(&opened, "connects") > 20, "{opened}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("the table again", |s| s.contains("network namespaces, by"));

    // A namespace that goes away leaves the table, and twtune lets go of it; it never holds more
    // than a reader thread's worth of namespaces at once (#24), not one per namespace.
    let holder = Process::ready("unshare", &["--net", "sh", "-c", "echo ready; exec sleep 600"]);
    let inode = std::fs::metadata(format!("/proc/{}/ns/net", holder.pid())).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    let inode = inode.expect("the holder's namespace");
    let label = format!("pid {} (sleep)", holder.pid());
    tmux.wait_for("the holder's row", |s| s.contains(&label));
    let twtune = run("pgrep", &["-P", tmux.tmux(&["display-message", "-p", "#{pane_pid}"]).trim()]).trim().to_string();
    let links = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{twtune}/fd"))
            .expect("twtune's fds")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|link| link.to_string_lossy().into_owned())
            .collect()
    };
    let holds = || links().contains(&format!("net:[{inode}]"));
    for _ in 0..20 {
        let namespaces = links().iter().filter(|l| l.starts_with("net:[")).count();
        assert!(namespaces <= 4, "twtune holds {namespaces} namespaces at once");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(holder);
    tmux.wait_for("the holder's row to go", |s| !s.contains(&label));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!holds(), "twtune still holds net:[{inode}] after it went away");

    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0);
    drop(_churn);
    drop(_server);
    run("ip", &["netns", "del", "twtune-watch"]);
}

#[test]
fn a_watched_namespace_left_by_its_last_process_says_so() {
    if !enter("watch::a_watched_namespace_left_by_its_last_process_says_so") {
        return;
    }
    let holder = Process::ready("unshare", &["--net", "sh", "-c", "echo ready; exec sleep 600"]);
    let pid = holder.pid().to_string();
    let tmux = Tmux::start(&[], &["watch", "--netns-pid", &pid], 160, 30);
    tmux.wait_for("the namespace's view", |s| s.contains(&format!("/proc/{pid}/ns/net")) && s.contains("per second"));
    drop(holder);
    // Owners (and with them the listing) are looked up every 10 s.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let screen = tmux.screen();
        if screen.contains("has no process and no name any more") {
            break;
        }
        assert!(Instant::now() < deadline, "no note that the namespace was left:\n{screen}");
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0);
}

#[test]
fn a_process_name_with_escape_sequences_is_shown_escaped() {
    if !enter("watch::a_process_name_with_escape_sequences_is_shown_escaped") {
        return;
    }
    let _server = Process::peer(&["server", "7005"]);
    // Any user can name their process so: `comm` is theirs to write.
    let holder = Process::ready(
        "python3",
        &[
            "-c",
            "import socket\nopen('/proc/self/comm', 'w').write('ev\\x1b[2J\\x1b[31mil')\n\
             held = [socket.create_connection(('127.0.0.1', 7005)) for _ in range(3)]\nprint('ready', flush=True)\n\
             import time\ntime.sleep(600)",
        ],
    );
    let tmux = Tmux::start(&[], &["watch"], 160, 30);
    let screen = tmux.wait_for("the holder as the owner", |s| s.contains(&format!("{} ev", holder.pid())));
    // Shown as text (the control character replaced), so not obeyed: no screen cleared, no red.
    assert!(screen.contains("ev?[2J?[31mil"), "{screen}");
    let styled = tmux.styled_screen();
    let line = styled.lines().find(|l| l.contains("?[31mil")).expect("the owner's line");
    assert!(!line.contains("\x1b[31m"), "the name's colour reached the terminal:\n{line:?}");
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0);
}

#[test]
fn without_a_terminal_it_refuses_in_one_line() {
    Run::new(&["watch"]).status(2).stderr(Expect::one_line(&["needs a terminal", "twtune audit --sample"])).run();
    Run::new(&["watch", "--netns", "../etc"]).status(2).stderr(Expect::one_line(&["--netns", "not a path"])).run();
    Run::new(&["watch", "--interval", "0s"]).status(2).stderr(Expect::one_line(&["--interval", "100ms"])).run();
}

/// The columns of the `--all-netns` table, most important first.
const NAMESPACE_COLUMNS: [&str; 8] =
    ["namespace", "findings", "TW out", "used", "fullest destination", "new/s", "conntrack", "TW in"];

/// The rows of the namespace table on `screen`, each as its cells by column name: cut at the
/// starts of the names in the header.
fn namespace_rows(screen: &str) -> Vec<Vec<(&'static str, String)>> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with(&['│']) && l.iter().collect::<String>().contains("namespace"))
        .unwrap_or_else(|| panic!("no header in\n{screen}"));
    let head: String = lines[header].iter().collect();
    let mut starts: Vec<(usize, &str)> =
        NAMESPACE_COLUMNS.iter().filter_map(|n| Some((head[..head.find(n)?].chars().count(), *n))).collect();
    starts.sort();
    let row = |line: &Vec<char>| -> Vec<(&'static str, String)> {
        let end = line.iter().rposition(|c| *c == '│').unwrap_or(line.len());
        let at = |i: usize| starts.get(i).map_or(end, |s| s.0);
        let cell = |i: usize| line[at(i)..at(i + 1)].iter().collect::<String>().trim().to_string();
        (0..starts.len()).map(|i| (starts[i].1, cell(i))).collect()
    };
    lines[header + 1..].iter().take_while(|l| l.starts_with(&['│'])).map(row).collect()
}

/// A number as twtune shows one whole: `7`, `12 345`, `0.5`, `88%`, `1.2%`.
fn whole_number(cell: &str) -> bool {
    let digits = cell.trim_end_matches('%');
    let (whole, tenths) = digits.split_once('.').unwrap_or((digits, "0"));
    let mut groups = whole.split(' ');
    let first = groups.next().unwrap_or_default();
    (1..=3).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_digit())
        && groups.all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
        && tenths.len() == 1
        && tenths.chars().all(|c| c.is_ascii_digit())
}

#[test]
fn at_80x24_the_namespace_table_keeps_its_first_columns_and_every_number_whole() {
    if !enter("watch::at_80x24_the_namespace_table_keeps_its_first_columns_and_every_number_whole") {
        return;
    }
    private_run_netns();
    // Two namespaces with TIME_WAIT that stays put while the test reads it: connections made and
    // closed by the client, then nothing.
    let mut peers = Vec::new();
    for (name, connections) in [("twtune-cols-a", "1200"), ("twtune-cols-b", "40")] {
        run("ip", &["netns", "add", name]);
        run("ip", &["netns", "exec", name, "ip", "link", "set", "lo", "up"]);
        let peer = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name, "python3", PEERS];
            all.extend_from_slice(args);
            Process::ready("ip", &all)
        };
        peers.push(peer(&["server", "7003"]));
        peers.push(peer(&["closed", "7003", connections]));
    }
    let tmux = Tmux::start(&[], &["watch", "--all-netns", "--interval", "500ms"], 80, 24);
    // By name, and down to the second of ours (the first is then the row above it).
    for _ in 0..3 {
        tmux.keys(&["s"]);
    }
    tmux.wait_for("the order by name", |s| s.contains("network namespaces, by name"));
    let selected = || tmux.styled_screen().lines().find(|l| l.contains("\x1b[7m")).map(str::to_string);
    for _ in 0..100 {
        if selected().unwrap_or_default().contains("twtune-cols-b") {
            break;
        }
        tmux.keys(&["Down"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    let ours = |rows: &[Vec<(&str, String)>]| -> usize {
        rows.iter()
            .filter(|r| r[0].1.starts_with("twtune-cols-") && r.iter().any(|(n, c)| *n == "new/s" && c != "-"))
            .count()
    };
    let screen =
        tmux.wait_for("both of ours with their rates", |s| s.contains("by name") && ours(&namespace_rows(s)) == 2);
    check_frame(&screen, 80);
    let rows = namespace_rows(&screen);
    let names: Vec<&str> = rows[0].iter().map(|(name, _)| *name).collect();
    assert_eq!(names.len(), NAMESPACE_COLUMNS.iter().take_while(|n| names.contains(n)).count(), "{screen}");
    assert!(names.len() >= 5, "the namespace, its findings, TW out and the fullest destination:\n{screen}");
    for row in &rows {
        for (name, cell) in
            row.iter().filter(|(name, _)| ["TW out", "TW in", "used", "new/s", "conntrack"].contains(name))
        {
            assert!(cell == "-" || whole_number(cell), "{name} {cell:?} is not a whole number:\n{screen}");
        }
    }
    // Our rows against the model: what `twtune audit` reads in the same namespace.
    for row in rows.iter().filter(|r| r[0].1.starts_with("twtune-cols-")) {
        let (_, report) = crate::util::audit_json(&["--netns", &row[0].1]);
        let fullest = report.sockets.buckets.first().expect("a destination");
        for (name, cell) in row {
            let expected = match *name {
                "TW out" => Some(report.sockets.time_wait.outbound.to_string()),
                "TW in" => Some(report.sockets.time_wait.inbound.to_string()),
                "used" => Some(format!("{:.0}%", fullest.usage_pct)),
                "fullest destination" => Some(fullest.remote.clone()),
                "new/s" => Some("0.0".to_string()),
                _ => None,
            };
            let shown = if *name == "fullest destination" { cell.clone() } else { cell.replace(' ', "") };
            assert!(
                expected.as_ref().is_none_or(|e| *e == shown),
                "{name}: {cell:?}, the audit says {expected:?}:\n{screen}"
            );
        }
    }
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0);
    drop(peers);
    for name in ["twtune-cols-a", "twtune-cols-b"] {
        run("ip", &["netns", "del", name]);
    }
}

#[test]
fn the_readme_shows_a_frame_of_80x24_with_no_number_cut() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let section = readme.split("## `twtune watch`").nth(1).expect("the watch section");
    let frame = section.split("```text\n").nth(1).and_then(|s| s.split("```").next()).expect("a frame");
    assert_eq!(frame.lines().count(), 24, "{frame}");
    assert!(frame.lines().any(|l| l.chars().count() == 80), "{frame}");
    check_frame(frame, 80);
    // As the view is now: the findings scroll where they do not fit, with the keys that scroll them.
    for piece in ["twtune watch", "lines 1-", "(Up/Down)", "Up/Down findings  ? help", "owner"] {
        assert!(frame.contains(piece), "{piece:?} not in\n{frame}");
    }
}

/// As root the view traces for as long as it runs: a client of the watched namespace fails
/// exactly 29 connect() calls for want of a port, and the view counts 29 since it started, with
/// the client's pid and destination, and no more at the ticks after. Its three tracepoints are open
/// on every CPU while it runs; `q`, SIGTERM and a panic end it (the terminal restored), and its
/// events with it.
#[test]
fn the_view_counts_a_clients_failed_connects_exactly_with_its_pid_and_closes_its_events() {
    if !enter("watch::the_view_counts_a_clients_failed_connects_exactly_with_its_pid_and_closes_its_events") {
        return;
    }
    use crate::trace::{Failer, online_cpus, perf_events};
    set_sysctl("net.ipv4.ip_local_port_range", "40000 40003");
    let _server = Process::peer(&["server", "7701"]);
    let mut client = Failer::peer(&["fail-connect", "7701"]);
    let twtune_of = |tmux: &Tmux| -> u32 {
        let shell = tmux.tmux(&["display-message", "-p", "#{pane_pid}"]);
        let child = run("pgrep", &["-P", shell.trim(), "-x", "twtune"]);
        child.trim().parse().expect("twtune's pid")
    };
    let tmux = Tmux::start(&[], &["watch", "--interval", "500ms"], 120, 40);
    tmux.wait_for("the traced view", |s| s.contains("since the start: 0 connect(), 0 bind()"));
    let pid = twtune_of(&tmux);
    assert!(perf_events(pid) >= 3 * online_cpus(), "armed on every CPU while it runs");
    client.fail(29);
    let counted = |s: &str| s.contains("since the start: 29 connect(), 0 bind()");
    let screen = tmux.wait_for("the 29 failures", counted);
    let named = format!("pid {} python3: 29 connect() to 127.0.0.1:7701", client.pid());
    assert!(screen.contains(&named), "{named:?} not in\n{screen}");
    // Two more ticks: still 29, none counted twice.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(counted(&tmux.screen()), "{}", tmux.screen());
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0);
    assert_eq!(perf_events(pid), 0);

    let tmux = Tmux::start(&[], &["watch", "--interval", "500ms"], 120, 40);
    tmux.wait_for("the traced view", |s| s.contains("since the start:"));
    let pid = twtune_of(&tmux);
    run("kill", &["-TERM", &pid.to_string()]);
    assert_eq!(tmux.exit_status(), 0);
    assert_eq!(perf_events(pid), 0);

    // A panic of the view (debug builds panic at the tick TWTUNE_TEST_WATCH_PANIC names) ends it
    // too, with the events.
    let tmux = Tmux::start(&["TWTUNE_TEST_WATCH_PANIC=4"], &["watch", "--interval", "500ms"], 120, 40);
    tmux.wait_for("the traced view", |s| s.contains("since the start:"));
    let pid = twtune_of(&tmux);
    assert_eq!(tmux.exit_status(), 101);
    assert_eq!(perf_events(pid), 0);

    // --no-trace: nothing armed, and the status line says so.
    let tmux = Tmux::start(&[], &["watch", "--no-trace"], 160, 40);
    tmux.wait_for("the untraced view", |s| s.contains("failed calls not traced: --no-trace"));
    assert_eq!(perf_events(twtune_of(&tmux)), 0);
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0);
}
