//! Java, Node.js and the proxies told from their files, without running them. Pure parsers of
//! what [`super::identify`] reads; no I/O here.
//!
//! - Java: the JVM's version from the `release` file of the Java home that holds the mapped
//!   `libjvm.so` (`JAVA_VERSION="17.0.15"`), or from a version in that home's name
//!   (`/usr/lib/jvm/java-17-openjdk-amd64`: `17`); the HTTP client jars from the names of the jars
//!   the JVM maps or has open (`httpclient-4.5.14.jar`: `httpclient` 4.5.14). A JVM reads class
//!   files through a file descriptor, so the open jars matter more than the mapped ones.
//! - Node.js: the version a binary built for release carries in its `process.release` URLs
//!   (`nodejs.org/download/release/v20.20.2/`), read from its `.rodata`; else the version in the
//!   executable's path (`/opt/node-v18.19.0-linux-x64/bin/node`, nvm's `.../v18.19.0/bin/node`);
//!   else the major version that the soname of a mapped `libnode.so.NNN` stands for (Debian links
//!   its `node` against `libnode`, whose soname is the `NODE_MODULE_VERSION`, [`NODE_MODULE_VERSIONS`]).
//! - nginx, HAProxy and Envoy: by the executable's name; nginx's version from the `nginx/1.22.1`
//!   its binary carries (the `Server` header it sends), HAProxy's from the banner in its `.data`
//!   (`HAProxy version 2.6.12-1+deb12u4, released 2026/10/17`); Envoy's is not read.

use crate::model::records::Library;

/// The HTTP client jars recognised, by the artifact name their file starts with.
pub(crate) const HTTP_JARS: &[&str] = &[
    "httpclient5",
    "httpclient",
    "httpasyncclient",
    "okhttp",
    "netty-codec-http",
    "netty-transport",
    "netty-all",
    "jetty-client",
    "async-http-client",
    "vertx-web-client",
];

/// `NODE_MODULE_VERSION` (the ABI number a `libnode.so` soname carries) to Node.js major
/// version, from nodejs/node doc/abi_version_registry.json.
pub(crate) const NODE_MODULE_VERSIONS: &[(u32, u32)] = &[
    (64, 10),
    (67, 11),
    (72, 12),
    (79, 13),
    (83, 14),
    (88, 15),
    (93, 16),
    (102, 17),
    (108, 18),
    (111, 19),
    (115, 20),
    (120, 21),
    (127, 22),
    (131, 23),
    (137, 24),
];

/// What a binary carries before its version, and the runtime it names: the Node.js release URL
/// and nginx's `Server` token.
pub(crate) const NODE_MARKER: &[u8] = b"nodejs.org/download/release/v";
pub(crate) const NGINX_MARKER: &[u8] = b"nginx/";
/// HAProxy's `haproxy_version_here` (`HAProxy version 2.6.12-1+deb12u4, released 2026/10/17`),
/// in its `.data`: the version follows this, and `, released` follows the version.
pub(crate) const HAPROXY_MARKER: &[u8] = b" version ";

/// Where nginx reads its configuration without `-c` (`--conf-path` of Debian's and nginx.org's
/// builds), and where a relative `-c` is resolved without `-p` (Debian's `--prefix`).
pub(crate) const NGINX_DEFAULT_CONF: &str = "/etc/nginx/nginx.conf";
const NGINX_DEFAULT_PREFIX: &str = "/usr/share/nginx";

/// The longest version kept.
const MAX_VERSION: usize = 64;

/// The proxy (`nginx`, `haproxy`, `envoy`) or runtime (`java`, `node`) the executable's name
/// says, if any.
pub(crate) fn runtime_by_name(executable: &str) -> Option<&'static str> {
    match file_name(executable) {
        "nginx" => Some("nginx"),
        "haproxy" => Some("haproxy"),
        "envoy" => Some("envoy"),
        "java" => Some("java"),
        "node" | "nodejs" => Some("node"),
        _ => None,
    }
}

/// The Java home of a JVM from its mapped `lib/server/libjvm.so` (or `lib/client`, `lib/zero`, a
/// Java 8 `jre/lib/amd64/server`).
pub(crate) fn java_home(mapped: &[String]) -> Option<String> {
    let libjvm = mapped.iter().find(|p| file_name(p) == "libjvm.so")?;
    let lib = libjvm.rsplit_once('/')?.0.rsplit_once('/')?.0;
    let lib = lib.strip_suffix("/amd64").or_else(|| lib.strip_suffix("/aarch64")).unwrap_or(lib);
    let home = lib.strip_suffix("/lib")?;
    Some(home.strip_suffix("/jre").unwrap_or(home).to_string())
}

/// `JAVA_VERSION` of a Java home's `release` file.
pub(crate) fn release_version(text: &str) -> Option<String> {
    let value = text.lines().find_map(|l| l.strip_prefix("JAVA_VERSION="))?;
    clean_version(value.trim().trim_matches('"'))
}

/// The version a Java home's name carries (`java-17-openjdk-amd64`, `jdk-21.0.2`, `temurin-25-jdk`).
pub(crate) fn version_in_home(home: &str) -> Option<String> {
    file_name(home).split(['-', '_']).find_map(|part| {
        let part = part.strip_prefix("jdk").or_else(|| part.strip_prefix("jre")).unwrap_or(part);
        let part = part.strip_prefix("1.").filter(|rest| rest.starts_with('8')).unwrap_or(part);
        (part.starts_with(|c: char| c.is_ascii_digit()) && part.chars().all(|c| c.is_ascii_digit() || c == '.'))
            .then(|| clean_version(part))
            .flatten()
    })
}

/// The HTTP client library a jar's file name says (`httpclient-4.5.14.jar`), if it is one of
/// [`HTTP_JARS`].
pub(crate) fn http_jar(path: &str, found_in: &'static str) -> Option<Library> {
    let stem = file_name(path).strip_suffix(".jar")?;
    let split = stem.char_indices().find(|(i, c)| *c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()));
    let (name, version) = match split {
        Some((at, _)) => (&stem[..at], clean_version(&stem[at + 1..])),
        None => (stem, None),
    };
    let name = HTTP_JARS.iter().find(|known| **known == name)?;
    Some(Library { name: (*name).to_string(), version, found_in })
}

/// The Node.js major version a mapped `libnode.so.NNN` stands for.
pub(crate) fn node_from_libnode(mapped: &[String]) -> Option<String> {
    let abi: u32 =
        mapped.iter().find_map(|p| file_name(p).strip_prefix("libnode.so.")?.split('.').next()?.parse().ok())?;
    NODE_MODULE_VERSIONS.iter().find(|(module, _)| *module == abi).map(|(_, major)| major.to_string())
}

/// A `vX.Y.Z` component of a path (`node-v18.19.0-linux-x64`, nvm's `v18.19.0`).
pub(crate) fn node_from_path(executable: &str) -> Option<String> {
    executable.split('/').find_map(|part| {
        let at = part.find('v')?;
        let rest = &part[at + 1..];
        let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let fits = (at == 0 || part[..at].ends_with('-')) && version.matches('.').count() == 2;
        fits.then(|| format!("v{}", version.trim_end_matches('.'))).filter(|v| !v.ends_with('v'))
    })
}

/// The version after a marker found in a binary (`20.20.2/` after the Node.js release URL,
/// `1.22.1` after `nginx/`): digits and dots, at least one dot.
pub(crate) fn version_after(bytes: &[u8]) -> Option<String> {
    let digits: Vec<u8> =
        bytes.iter().take(MAX_VERSION).copied().take_while(|b| b.is_ascii_digit() || *b == b'.').collect();
    let text = String::from_utf8(digits).ok()?;
    let text = text.trim_end_matches('.');
    (text.contains('.') && text.starts_with(|c: char| c.is_ascii_digit())).then(|| text.to_string())
}

/// The configuration file an nginx command line names with `-c` (resolved against `-p`), as
/// `argv` (NUL-separated) or as the title nginx gives its master process (`nginx: master process
/// /usr/sbin/nginx -c /srv/nginx.conf`, one string: a path with a space in it is cut there).
pub(crate) fn nginx_conf(cmdline: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(cmdline);
    let words: Vec<&str> = text.split(['\0', ' ']).filter(|w| !w.is_empty()).collect();
    let option = |flag: &str| {
        words.iter().enumerate().find_map(|(i, w)| match w.strip_prefix(flag)? {
            "" => words.get(i + 1).map(|v| v.to_string()),
            attached => Some(attached.to_string()),
        })
    };
    let conf = option("-c")?;
    if conf.starts_with('/') {
        return Some(conf);
    }
    let prefix = option("-p").unwrap_or_else(|| NGINX_DEFAULT_PREFIX.to_string());
    Some(format!("{}/{conf}", prefix.trim_end_matches('/')))
}

/// HAProxy's version after [`HAPROXY_MARKER`]: the whole version token (`2.6.12-1+deb12u4`), when
/// `, released` follows it (any other " version " is passed over).
pub(crate) fn haproxy_version(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_VERSION)]);
    let (version, _) = text.split_once(", released")?;
    version_after(version.as_bytes())?;
    clean_version(version)
}

/// A version as printable, bounded text (`17.0.15`, `4.1.100.Final`).
pub(crate) fn clean_version(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= MAX_VERSION
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    ok.then(|| text.to_string())
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Lines of the maps of `java -cp httpclient-4.5.14.jar:okhttp-4.12.0.jar Client` on Debian 12
    /// (openjdk-17-jre-headless), as captured.
    pub(crate) const JAVA_MAPS: &str = "\
55f1d7a00000-55f1d7a01000 r--p 00000000 08:01 3932313                    /usr/lib/jvm/java-17-openjdk-amd64/bin/java
7f3a10000000-7f3a10d4b000 r-xp 00000000 08:01 3932400                    /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so
7f3a11000000-7f3a11400000 r--s 00000000 08:01 3932450                    /usr/lib/jvm/java-17-openjdk-amd64/lib/modules
7f3a12000000-7f3a12001000 r--s 00000000 08:01 4000001                    /usr/share/java/okhttp-4.12.0.jar
";

    #[test]
    fn a_jvm_is_told_by_its_home_release_file_and_jar_names() {
        let mapped = crate::inspect::python::mapped_paths(JAVA_MAPS);
        assert_eq!(java_home(&mapped).as_deref(), Some("/usr/lib/jvm/java-17-openjdk-amd64"));
        let java8 = ["/opt/jdk1.8.0_392/jre/lib/amd64/server/libjvm.so".to_string()];
        assert_eq!(java_home(&java8).as_deref(), Some("/opt/jdk1.8.0_392"));
        assert_eq!(java_home(&[]), None);
        let release = "IMPLEMENTOR=\"Debian\"\nJAVA_RUNTIME_VERSION=\"17.0.15+6\"\nJAVA_VERSION=\"17.0.15\"\n";
        assert_eq!(release_version(release).as_deref(), Some("17.0.15"));
        assert_eq!(release_version("JAVA_VERSION=\"\x1b[2J\"\n"), None);
        assert_eq!(version_in_home("/usr/lib/jvm/java-17-openjdk-amd64").as_deref(), Some("17"));
        assert_eq!(version_in_home("/usr/lib/jvm/temurin-25-jdk-amd64").as_deref(), Some("25"));
        assert_eq!(version_in_home("/opt/jdk-21.0.2").as_deref(), Some("21.0.2"));
        assert_eq!(version_in_home("/opt/java"), None);
        let jar = http_jar("/usr/share/java/httpclient-4.5.14.jar", "open").expect("httpclient");
        assert_eq!((jar.name.as_str(), jar.version.as_deref()), ("httpclient", Some("4.5.14")));
        let netty = http_jar("/app/lib/netty-codec-http-4.1.100.Final.jar", "open").expect("netty");
        assert_eq!((netty.name.as_str(), netty.version.as_deref()), ("netty-codec-http", Some("4.1.100.Final")));
        assert_eq!(http_jar("/usr/share/java/httpclient.jar", "open").map(|l| l.version), Some(None));
        assert!(http_jar("/app/lib/httpcore-4.4.16.jar", "open").is_none(), "not a client");
        assert!(http_jar("/app/lib/okhttp.txt", "open").is_none());
    }

    #[test]
    fn node_and_the_proxies_are_told_by_name_soname_path_and_marker() {
        assert_eq!(runtime_by_name("/usr/sbin/nginx"), Some("nginx"));
        assert_eq!(runtime_by_name("/usr/local/bin/envoy"), Some("envoy"));
        assert_eq!(runtime_by_name("/usr/bin/python3"), None);
        assert_eq!(node_from_libnode(&["/usr/lib/x86_64-linux-gnu/libnode.so.108".into()]).as_deref(), Some("18"));
        assert_eq!(node_from_libnode(&["/usr/lib/libnode.so.115".into()]).as_deref(), Some("20"));
        assert_eq!(node_from_libnode(&["/usr/lib/libnode.so.1".into()]), None, "an unknown ABI stays unknown");
        assert_eq!(node_from_path("/opt/node-v18.19.0-linux-x64/bin/node").as_deref(), Some("v18.19.0"));
        assert_eq!(node_from_path("/root/.nvm/versions/node/v16.20.2/bin/node").as_deref(), Some("v16.20.2"));
        assert_eq!(node_from_path("/usr/bin/node"), None);
        assert_eq!(node_from_path("/srv/dev-v1/node"), None);
        assert_eq!(version_after(b"20.20.2/node-v20.20.2-headers").as_deref(), Some("20.20.2"));
        assert_eq!(version_after(b"1.22.1\0").as_deref(), Some("1.22.1"));
        assert_eq!(version_after(b"%s\0"), None);
        assert_eq!(version_after(b"1\0"), None);
        // As in Debian's haproxy 2.6 binary.
        assert_eq!(haproxy_version(b"2.6.12-1+deb12u4, released 2026/10/17\0").as_deref(), Some("2.6.12-1+deb12u4"));
        assert_eq!(haproxy_version(b"%s, released %s\0"), None);
        assert_eq!(haproxy_version(b"2.6.12 of the protocol\0"), None);
        let title = b"nginx: master process /usr/sbin/nginx -c /tmp/t/nginx.conf -g daemon off;\0\0";
        assert_eq!(nginx_conf(title).as_deref(), Some("/tmp/t/nginx.conf"));
        assert_eq!(nginx_conf(b"/usr/sbin/nginx\0-p\0/srv/n/\0-cconf/n.conf\0").as_deref(), Some("/srv/n/conf/n.conf"));
        assert_eq!(nginx_conf(b"nginx: worker process\0"), None);
    }
}
