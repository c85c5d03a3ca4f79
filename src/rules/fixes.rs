//! The fixes twtune knows, per HTTP client library and version range: the behaviour that makes a
//! client churn connections, and the setting or change that stops it, each with the release note,
//! pull request or documentation it comes from (docs/fixes.md lists them for people). A churn
//! finding whose process was identified (see `inspect::identify`) puts the fix for the library and
//! version it runs first, before the general advice and the sysctls.
//!
//! Pure data and matching: which entries apply to an [`Identity`] and a churn signature.

use crate::model::records::{Identity, Library, Owner};
use crate::rules::Advice;

/// What the sampled connections of a bucket look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signature {
    /// Many short connections closed here (`conn.no-reuse`).
    NoReuse,
    /// Connections closed here at one lifetime (`conn.closed-at-timeout`).
    ClosedAtTimeout,
}

/// One known behaviour of a library (or of a runtime's own client), in a range of versions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fix {
    /// The runtime the library runs on (`go`, `python`, `java`, `node`, `nginx`).
    pub runtime: &'static str,
    /// The library as the identification names it (a Go module path, a Python distribution, a
    /// jar's artifact name);
    /// `None` for the runtime's own client, whose version is the runtime's.
    pub library: Option<&'static str>,
    /// The first version the entry applies to, and the first it no longer does.
    pub from: Option<&'static str>,
    pub before: Option<&'static str>,
    pub signatures: &'static [Signature],
    /// What the library does that churns connections.
    pub behaviour: &'static str,
    /// What fixes it.
    pub fix: &'static str,
    pub risk: &'static str,
    /// Where the behaviour is documented.
    pub source: &'static str,
}

use Signature::{ClosedAtTimeout, NoReuse};

/// The table. Entries of a library come before the runtime's own client, which applies only when
/// no library entry does.
pub(crate) const FIXES: &[Fix] = &[
    Fix {
        runtime: "go",
        library: Some("github.com/valyala/fasthttp"),
        from: Some("1.39.0"),
        before: None,
        signatures: &[ClosedAtTimeout],
        behaviour: "from v1.39.0 a client timeout (DoTimeout, DoDeadline, Request.SetTimeout, ReadTimeout) is \
                    enforced by the connection's deadline instead of a goroutine left running, so every request \
                    that times out closes its connection.",
        fix: "set the timeout above the server's slowest normal response so that only real failures time out, \
              and send slow endpoints through a client of their own with a longer timeout.",
        risk: "A longer timeout holds a caller longer on a server that has really stalled.",
        source: "valyala/fasthttp PR #1346 (Improve Client timeout), released in v1.39.0",
    },
    Fix {
        runtime: "go",
        library: Some("github.com/valyala/fasthttp"),
        from: None,
        before: Some("1.39.0"),
        signatures: &[ClosedAtTimeout],
        behaviour: "before v1.39.0 ReadTimeout and WriteTimeout close the connection when they fire, while \
                    DoTimeout returns at its deadline and lets the request finish in a goroutine, which keeps \
                    the connection (PR #1346 changed DoTimeout to close it as well from v1.39.0).",
        fix: "set ReadTimeout above the server's slowest normal response, and plan for v1.39.0 and later, where \
              DoTimeout closes on a timeout too.",
        risk: "A longer timeout holds a caller longer on a server that has really stalled.",
        source: "valyala/fasthttp client.go (a read error closes the connection); PR #1346",
    },
    Fix {
        runtime: "go",
        library: Some("github.com/valyala/fasthttp"),
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "MaxIdleConnDuration is a time.Duration: a bare `MaxIdleConnDuration: 30` means 30 ns, and the \
                    idle cleaner closes every connection as soon as it is idle; a fasthttp.Client created per \
                    request pools nothing.",
        fix: "write the unit (`MaxIdleConnDuration: 30 * time.Second`; 0 means the default 10 s) and keep one \
              fasthttp.Client for the process.",
        risk: "Idle connections stay open up to that duration on both ends; keep it below the server's idle timeout.",
        source: "valyala/fasthttp client.go (MaxIdleConnDuration, DefaultMaxIdleConnDuration); Go time.Duration",
    },
    Fix {
        runtime: "go",
        library: None,
        from: None,
        before: None,
        signatures: &[NoReuse, ClosedAtTimeout],
        behaviour: "if it uses the standard library's net/http (no other known client module is linked): a \
                    Transport keeps MaxIdleConnsPerHost = 2 idle connections per host by default, so concurrent \
                    requests beyond two close when they finish; an http.Client or Transport created per request \
                    pools nothing; a response body not read to EOF and closed is not reused.",
        fix: "one http.Client for the process, its Transport's MaxIdleConnsPerHost raised to the concurrency to \
              this host, and every resp.Body drained and closed.",
        risk: "More idle connections held between bursts; keep IdleConnTimeout below the server's idle timeout.",
        source: "Go net/http documentation (DefaultMaxIdleConnsPerHost, Client, Response.Body)",
    },
    Fix {
        runtime: "python",
        library: Some("requests"),
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "requests.get(), requests.post() and the other module functions make a Session for the one \
                    call and close it, with its connection.",
        fix: "one requests.Session for the process (or per thread), used for every call; mount an \
              HTTPAdapter(pool_maxsize=N) for more than 10 concurrent calls to a host.",
        risk: "A Session is not guaranteed thread-safe: give each thread its own, or guard it.",
        source: "requests documentation, Advanced Usage: Session Objects; requests/api.py",
    },
    Fix {
        runtime: "python",
        library: Some("urllib3"),
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "a connection pool keeps maxsize connections per host (1 by default for a PoolManager, 10 in \
                    requests' HTTPAdapter); with more concurrent requests the extra connections are closed after \
                    use (\"Connection pool is full, discarding connection\").",
        fix: "raise maxsize (pool_maxsize in requests) to the number of threads calling this host.",
        risk: "More idle connections held per host.",
        source: "urllib3 documentation, Advanced Usage: Customizing Pool Behavior",
    },
    Fix {
        runtime: "python",
        library: Some("aiohttp"),
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "a ClientSession made per request (`async with aiohttp.ClientSession()` around each call) closes \
                    its connector and every connection with it.",
        fix: "one ClientSession for the life of the application, used for all requests.",
        risk: "The session must be closed at shutdown; its connector's limit (100) bounds concurrent connections.",
        source: "aiohttp documentation, Client Quickstart (a session per application, not per request)",
    },
    Fix {
        runtime: "python",
        library: Some("httpx"),
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "httpx.get() and the other top-level functions, and a Client made per request, open a new \
                    connection each time.",
        fix: "one httpx.Client (or AsyncClient) for the process, used for every request.",
        risk: "The client must be closed at shutdown; its limits bound the pool.",
        source: "httpx documentation, Advanced: Clients",
    },
    Fix {
        runtime: "java",
        library: Some("httpclient"),
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "a CloseableHttpClient built per request (HttpClients.createDefault() or a builder in the call) \
                    closes its connection manager, and every pooled connection with it, when it is closed; a \
                    shared client's PoolingHttpClientConnectionManager keeps only 2 connections per route (20 in \
                    all) by default, so concurrent requests beyond 2 to one host close their connection after use; \
                    a response whose entity is not consumed is not returned to the pool.",
        fix: "one CloseableHttpClient for the process, built with a PoolingHttpClientConnectionManager whose \
              setDefaultMaxPerRoute is the concurrency to this host (and setMaxTotal above the sum); consume \
              every entity (EntityUtils.consume) and close every response.",
        risk: "More idle connections held per route; evict idle ones (evictIdleConnections) below the server's \
               idle timeout.",
        source: "Apache HttpClient 4.5 tutorial, chapter 2.3.3 Pooling connection manager",
    },
    Fix {
        runtime: "java",
        library: Some("httpclient5"),
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "a CloseableHttpClient built per request closes its pool with it; a shared client's \
                    PoolingHttpClientConnectionManager keeps 5 connections per route (25 in all) by default, so \
                    concurrent requests beyond 5 to one host close their connection after use.",
        fix: "one CloseableHttpClient for the process, its PoolingHttpClientConnectionManager's \
              setDefaultMaxPerRoute raised to the concurrency to this host; consume every entity and close \
              every response.",
        risk: "More idle connections held per route; set an idle eviction below the server's idle timeout.",
        source: "Apache HttpClient 5.x PoolingHttpClientConnectionManager (DEFAULT_MAX_CONNECTIONS_PER_ROUTE 5, \
                 DEFAULT_MAX_TOTAL_CONNECTIONS 25)",
    },
    Fix {
        runtime: "java",
        library: Some("okhttp"),
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "an OkHttpClient made per request has a connection pool of its own, which the next request \
                    does not see; a response body not closed keeps its connection out of the pool.",
        fix: "one OkHttpClient for the process (derive variants with newBuilder(), which share its pool), and \
              close every Response.",
        risk: "The shared pool keeps up to 5 idle connections for 5 minutes by default; lower the keep-alive \
               below the server's idle timeout.",
        source: "OkHttp documentation, OkHttpClient (OkHttpClients should be shared)",
    },
    Fix {
        runtime: "java",
        library: None,
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "if it uses the JDK's HttpURLConnection (no known client jar is open): it keeps connections \
                    alive only while http.keepAlive is true and only http.maxConnections (5) idle per host; a \
                    response stream not read to the end and closed, or a disconnect() after each request, \
                    closes the connection.",
        fix: "read every response stream to the end and close it instead of calling disconnect(), leave \
              -Dhttp.keepAlive at true, raise -Dhttp.maxConnections to the concurrency to this host; or one \
              java.net.http.HttpClient for the process.",
        risk: "More idle connections held per host.",
        source: "Java SE documentation, Networking Properties (http.keepAlive, http.maxConnections) and \
                 Persistent Connections",
    },
    Fix {
        runtime: "node",
        library: None,
        from: None,
        before: Some("19"),
        signatures: &[NoReuse],
        behaviour: "before Node.js 19 the global HTTP agent does not keep connections alive: each request opens \
                    and closes its own.",
        fix: "pass an `new http.Agent({ keepAlive: true })` (https.Agent for TLS) to requests, or move to Node.js \
              19 or later, where keep-alive is the default.",
        risk: "Idle sockets stay open; set maxSockets and a timeout below the server's idle timeout.",
        source: "Node.js 19.0.0 release notes (HTTP(S)/1.1 keep-alive by default), nodejs/node PR #43522",
    },
    Fix {
        runtime: "node",
        library: None,
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "if it makes an http.Agent per request (or passes `agent: false`, which does the same), no \
                    connection outlives its request: each agent pools only its own.",
        fix: "one `http.Agent({ keepAlive: true })` (https.Agent for TLS) for the process, passed to every \
              request, with maxSockets at the concurrency to this host.",
        risk: "Idle sockets stay open; set the agent's timeout below the server's idle timeout.",
        source: "Node.js documentation, http.Agent (keepAlive; `agent: false` makes a new Agent per request)",
    },
    Fix {
        runtime: "nginx",
        library: None,
        from: None,
        before: None,
        signatures: &[NoReuse],
        behaviour: "proxying without `keepalive` in the upstream block opens a connection to the backend per \
                    request and closes it.",
        fix: "`keepalive N;` in the upstream block, with `proxy_http_version 1.1;` and `proxy_set_header \
              Connection \"\";` in the location.",
        risk: "Each worker keeps up to N idle connections per upstream.",
        source: "nginx documentation, ngx_http_upstream_module, the keepalive directive",
    },
];

/// The fixes that apply to a process running `identity`, for `signature`, as advice worded for
/// what was found, library entries first.
pub(crate) fn advice_for(owner: &Owner, signature: Signature) -> Vec<Advice> {
    let Some(identity) = &owner.identity else { return Vec::new() };
    let matching = |fix: &&Fix| fix.runtime == identity.runtime && fix.signatures.contains(&signature);
    let mut found: Vec<(Fix, String, bool)> = FIXES
        .iter()
        .filter(matching)
        .filter_map(|fix| {
            let library = identity.library(fix.library?)?;
            let applies = match library.version.as_deref() {
                Some(version) => in_range(fix, version),
                None => fix.from.is_none() && fix.before.is_none(),
            };
            let version = library.version.as_deref().unwrap_or("(version unknown)");
            applies.then(|| (*fix, format!("{} {version}", library.name), library.found_in == "search path"))
        })
        .collect();
    // A library the process is seen to use (mapped, open, linked) before one only installed.
    found.sort_by_key(|(_, _, only_installed)| *only_installed);
    let mut found: Vec<(Fix, String)> = found.into_iter().map(|(fix, what, _)| (fix, what)).collect();
    let Some(read) = config_read(identity) else { return Vec::new() };
    if found.is_empty() {
        let any_version = |fix: &&Fix| fix.from.is_none() && fix.before.is_none();
        found = FIXES
            .iter()
            .filter(matching)
            .filter(|fix| fix.library.is_none())
            .filter(|fix| identity.version.as_deref().is_some_and(|v| in_range(fix, v)) || any_version(fix))
            .map(|fix| (*fix, runtime_name(identity)))
            .collect();
    }
    found
        .into_iter()
        .map(|(fix, what)| Advice {
            action: format!(
                "Process {} ({}) runs {what}: {}{read} Fix: {} (Source: {}.)",
                owner.pid, owner.command, fix.behaviour, fix.fix, fix.source
            ),
            risk: fix.risk.to_string(),
        })
        .collect()
}

/// What a proxy's configuration says, worded to follow the behaviour (empty when none was read);
/// `None` when it was read whole and every backend keeps connections alive, so the proxy's entry
/// does not apply.
fn config_read(identity: &Identity) -> Option<String> {
    let Some(config) = &identity.proxy_config else { return Some(String::new()) };
    let quoted = |names: &[String]| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    let mut said = Vec::new();
    if !config.upstreams_without_keepalive.is_empty() {
        said.push(format!("upstream {} without keepalive", quoted(&config.upstreams_without_keepalive)));
    }
    if !config.direct_proxy_pass.is_empty() {
        said.push(format!(
            "proxy_pass to {}, which names no upstream block, so no keepalive is possible there (define an upstream \
             block for it)",
            quoted(&config.direct_proxy_pass)
        ));
    }
    if said.is_empty() && config.unread.is_none() {
        return None;
    }
    let files = if config.files_read == 1 { "1 file".to_string() } else { format!("{} files", config.files_read) };
    let unread = config.unread.as_ref().map(|u| format!("; not read: {u}")).unwrap_or_default();
    let found = if said.is_empty() { "no backend without keepalive".to_string() } else { said.join("; ") };
    Some(format!(" Its configuration ({}, {files} read) has {found}{unread}.", config.path))
}

/// `Go go1.19.8`, `Python 3.11`.
fn runtime_name(identity: &Identity) -> String {
    let name = match identity.runtime {
        "go" => "Go",
        "python" => "Python",
        "node" => "Node.js",
        "java" => "Java",
        "haproxy" => "HAProxy",
        "envoy" => "Envoy",
        other => other,
    };
    format!("{name} {}", identity.version.as_deref().unwrap_or("(version unknown)"))
}

/// What a process runs in a few words, with the libraries the table knows: `Go go1.19.8 with
/// github.com/valyala/fasthttp v1.31.0`; `None` when nothing is known.
pub(crate) fn describe(identity: &Identity) -> Option<String> {
    if identity.runtime == "unknown" {
        return None;
    }
    let mut known: Vec<&Library> =
        identity.libraries.iter().filter(|l| FIXES.iter().any(|f| f.library == Some(l.name.as_str()))).collect();
    known.sort_by_key(|l| l.found_in == "search path");
    let known: Vec<String> =
        known.iter().map(|l| format!("{} {}", l.name, l.version.as_deref().unwrap_or("(version unknown)"))).collect();
    let with = if known.is_empty() { String::new() } else { format!(" with {}", known.join(", ")) };
    Some(format!("{}{with}", runtime_name(identity)))
}

/// Whether `version` lies in the fix's range.
fn in_range(fix: &Fix, version: &str) -> bool {
    let version = numbers(version);
    !version.is_empty()
        && fix.from.is_none_or(|from| version >= numbers(from))
        && fix.before.is_none_or(|before| version < numbers(before))
}

/// The numeric components of a version (`v1.39.0` and `go1.19.8` alike), up to the first that is
/// not a number (`1.2.3-rc1` is 1.2.3).
fn numbers(version: &str) -> Vec<u64> {
    let version = version.trim_start_matches("go").trim_start_matches('v');
    let mut out = Vec::new();
    for part in version.split('.') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse() {
            Ok(n) => out.push(n),
            Err(_) => break,
        }
        if digits.len() != part.len() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::ProxyConfig;

    fn owner(runtime: &'static str, version: &str, libraries: &[(&str, &str)]) -> Owner {
        let libraries = libraries
            .iter()
            .map(|(name, v)| Library { name: (*name).into(), version: Some((*v).into()), found_in: "mapped" })
            .collect();
        let identity = Identity {
            runtime,
            version: Some(version.into()),
            main_module: None,
            libraries,
            proxy_config: None,
            unknown: None,
        };
        Owner { pid: 4242, command: "api".into(), container: None, sockets: 3, identity: Some(identity) }
    }

    #[test]
    fn fasthttp_before_and_from_1_39_get_the_timeout_behaviour_of_their_version() {
        let new = owner("go", "go1.22.1", &[("github.com/valyala/fasthttp", "v1.59.0")]);
        let advice = advice_for(&new, ClosedAtTimeout);
        assert_eq!(advice.len(), 1, "{advice:?}");
        assert!(
            advice[0].action.starts_with("Process 4242 (api) runs github.com/valyala/fasthttp v1.59.0: from v1.39.0")
        );
        assert!(advice[0].action.contains("#1346"));
        let old = owner("go", "go1.19.8", &[("github.com/valyala/fasthttp", "v1.31.0")]);
        let advice = advice_for(&old, ClosedAtTimeout);
        assert!(advice[0].action.contains("v1.31.0: before v1.39.0 ReadTimeout"), "{advice:?}");
        let advice = advice_for(&old, NoReuse);
        assert!(advice[0].action.contains("30 ns") && advice[0].action.contains("30 * time.Second"), "{advice:?}");
        assert_eq!(advice.len(), 1, "net/http is not advised when fasthttp is linked");
    }

    #[test]
    fn a_go_program_without_a_known_client_gets_net_http_and_python_gets_each_package_found() {
        let plain = owner("go", "go1.19.8", &[("golang.org/x/net", "v0.1.0")]);
        let advice = advice_for(&plain, NoReuse);
        assert_eq!(advice.len(), 1);
        assert!(advice[0].action.contains("runs Go go1.19.8: if it uses the standard library's net/http"));
        assert!(advice[0].action.contains("MaxIdleConnsPerHost = 2"));
        let python = owner("python", "3.11", &[("requests", "2.32.3"), ("urllib3", "2.2.3")]);
        let advice = advice_for(&python, NoReuse);
        assert_eq!(advice.len(), 2);
        assert!(
            advice[0].action.contains("runs requests 2.32.3: requests.get()") && advice[0].action.contains("Session")
        );
        assert!(advice[1].action.contains("urllib3 2.2.3"));
        assert!(advice_for(&python, ClosedAtTimeout).is_empty(), "no timeout entry for requests");
        let aiohttp = owner("python", "3.12", &[("aiohttp", "3.9.5")]);
        assert!(advice_for(&aiohttp, NoReuse)[0].action.contains("ClientSession made per request"));
        let mut unknown = owner("go", "go1.19.8", &[]);
        unknown.identity = None;
        assert!(advice_for(&unknown, NoReuse).is_empty(), "nothing is guessed");
    }

    #[test]
    fn node_before_19_and_versions_compare_by_number() {
        assert!(advice_for(&owner("node", "v18.19.0", &[]), NoReuse)[0].action.contains("before Node.js 19"));
        let node18 = advice_for(&owner("node", "v18.19.0", &[]), NoReuse);
        assert!(node18[1].action.contains("an http.Agent per request"), "{node18:?}");
        let node20 = advice_for(&owner("node", "v20.1.0", &[]), NoReuse);
        assert_eq!(node20.len(), 1, "keep-alive is the default from 19: {node20:?}");
        assert!(node20[0].action.starts_with("Process 4242 (api) runs Node.js v20.1.0: if it makes an http.Agent"));
        assert_eq!(numbers("v1.39.0"), [1, 39, 0]);
        assert_eq!(numbers("go1.19.8"), [1, 19, 8]);
        assert_eq!(numbers("1.2.3rc1"), [1, 2, 3]);
        assert!(numbers("(devel)").is_empty());
        assert!(numbers("v1.100.0") > numbers("v1.39.0"));
        let fasthttp = FIXES[0];
        assert!(!in_range(&fasthttp, "(devel)"), "an unknown version matches no range");
        assert_eq!(
            describe(
                &owner("go", "go1.19.8", &[("github.com/valyala/fasthttp", "v1.31.0"), ("x/y", "v1")])
                    .identity
                    .expect("id")
            ),
            Some("Go go1.19.8 with github.com/valyala/fasthttp v1.31.0".into())
        );
    }

    #[test]
    fn java_clients_and_nginx_get_their_fix_worded_with_what_was_read() {
        let httpclient = owner("java", "17.0.15", &[("httpclient", "4.5.14")]);
        let advice = advice_for(&httpclient, NoReuse);
        assert_eq!(advice.len(), 1, "the JDK's own client is not advised when a client jar is open");
        assert!(advice[0].action.starts_with("Process 4242 (api) runs httpclient 4.5.14: a CloseableHttpClient"));
        let mut unversioned = owner("java", "17.0.15", &[("okhttp", "4.12.0")]);
        unversioned.identity.as_mut().expect("id").libraries[0].version = None;
        assert!(advice_for(&unversioned, NoReuse)[0].action.contains("runs okhttp (version unknown): an OkHttpClient"));
        let jdk = advice_for(&owner("java", "17.0.15", &[]), NoReuse);
        assert!(jdk[0].action.contains("runs Java 17.0.15: if it uses the JDK's HttpURLConnection"), "{jdk:?}");

        let mut nginx = owner("nginx", "1.22.1", &[]);
        let config = ProxyConfig {
            path: "/etc/nginx/nginx.conf".into(),
            files_read: 3,
            upstreams_without_keepalive: vec!["plain".into()],
            upstreams_with_keepalive: vec!["pooled".into()],
            direct_proxy_pass: vec!["http://10.0.0.9:8080".into()],
            unread: None,
        };
        nginx.identity.as_mut().expect("id").proxy_config = Some(config.clone());
        let advice = advice_for(&nginx, NoReuse);
        assert!(advice[0].action.starts_with("Process 4242 (api) runs nginx 1.22.1: proxying without `keepalive`"));
        assert!(advice[0].action.contains(
            "Its configuration (/etc/nginx/nginx.conf, 3 files read) has upstream `plain` without keepalive; \
             proxy_pass to `http://10.0.0.9:8080`, which names no upstream block"
        ));
        let pooled = ProxyConfig { upstreams_without_keepalive: vec![], direct_proxy_pass: vec![], ..config };
        nginx.identity.as_mut().expect("id").proxy_config = Some(pooled);
        assert!(advice_for(&nginx, NoReuse).is_empty(), "every backend keeps alive: the entry does not apply");
        nginx.identity.as_mut().expect("id").version = None;
        nginx.identity.as_mut().expect("id").proxy_config = None;
        assert!(advice_for(&nginx, NoReuse)[0].action.contains("runs nginx (version unknown): proxying"));
    }

    #[test]
    fn every_entry_is_in_the_docs_with_its_source() {
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/fixes.md")).expect("docs/fixes.md");
        for fix in FIXES {
            assert!(docs.contains(fix.source), "docs/fixes.md lacks the source {:?}", fix.source);
            let name = fix.library.unwrap_or(fix.runtime);
            assert!(docs.contains(name), "docs/fixes.md lacks {name}");
        }
    }
}
