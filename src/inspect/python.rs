//! A Python interpreter told from its files: its version from the executable's name or the
//! extension modules it maps (`libpython3.11.so`, `_ssl.cpython-311-x86_64-linux-gnu.so`), the
//! directories it imports from (`site-packages` and `dist-packages` of the files it maps, its
//! virtual environment), and the versions of the HTTP client packages installed there, from their
//! `*.dist-info/METADATA`. Pure parsers of what [`super::identify`] reads; no I/O here.

/// The HTTP client distributions looked up, by their normalised name.
pub(crate) const HTTP_PACKAGES: &[&str] = &["requests", "urllib3", "aiohttp", "httpx", "httpcore"];
/// Distinct paths kept from one maps file.
pub(crate) const MAX_MAPPED_PATHS: usize = 4096;

/// The files a process maps (the path column of `/proc/PID/maps`), each once, in order, at most
/// [`MAX_MAPPED_PATHS`]; a file deleted since is left out.
pub(crate) fn mapped_paths(maps: &str) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in maps.lines() {
        // address perms offset dev inode path: the path starts after the fifth field.
        let mut rest = line.trim_start();
        for _ in 0..5 {
            rest = rest.trim_start().split_once(' ').map_or("", |(_, r)| r);
        }
        let path = rest.trim_start();
        if !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        if paths.len() == MAX_MAPPED_PATHS {
            break;
        }
        if seen.insert(path) {
            paths.push(path.to_string());
        }
    }
    paths
}

/// Whether the process runs a Python interpreter: its executable is called `python...`, or it
/// maps `libpython`.
pub(crate) fn is_python(executable: &str, mapped: &[String]) -> bool {
    let name = executable.rsplit('/').next().unwrap_or_default();
    name.starts_with("python") || mapped.iter().any(|p| file_name(p).starts_with("libpython"))
}

/// The interpreter's `MAJOR.MINOR`, from the executable's name (`python3.11`), a mapped
/// `libpython3.11.so`, or the ABI tag of a mapped extension module (`.cpython-311-`).
pub(crate) fn version(executable: &str, mapped: &[String]) -> Option<String> {
    let from_name = |name: &str, prefix: &str| {
        let rest = name.strip_prefix(prefix)?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let digits = digits.trim_end_matches('.');
        let (major, minor) = digits.split_once('.')?;
        (!major.is_empty() && !minor.is_empty() && !minor.contains('.')).then(|| format!("{major}.{minor}"))
    };
    let abi = |name: &str| {
        let tag = name.split(".cpython-").nth(1)?.split('-').next()?;
        let (major, minor) = tag.split_at_checked(1)?;
        (major.chars().all(|c| c.is_ascii_digit()) && !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit()))
            .then(|| format!("{major}.{minor}"))
    };
    from_name(file_name(executable), "python")
        .or_else(|| mapped.iter().find_map(|p| from_name(file_name(p), "libpython")))
        .or_else(|| mapped.iter().find_map(|p| abi(file_name(p))))
}

/// The import directories the mapped files lie in: each path up to its `site-packages` or
/// `dist-packages` component.
pub(crate) fn site_dirs_of(mapped: &[String]) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for path in mapped {
        for marker in ["/site-packages/", "/dist-packages/"] {
            if let Some(at) = path.find(marker) {
                let dir = &path[..at + marker.len() - 1];
                if !dirs.iter().any(|d| d == dir) {
                    dirs.push(dir.to_string());
                }
            }
        }
    }
    dirs
}

/// The directory a virtual environment's packages are in, for an interpreter started as `argv0`
/// (`/srv/app/venv/bin/python`): its `lib/pythonX.Y/site-packages`; the caller checks that
/// `pyvenv.cfg` is there.
pub(crate) fn venv_of(argv0: &str, version: &str) -> Option<(String, String)> {
    let bin = argv0.rsplit_once('/')?.0;
    let prefix = bin.strip_suffix("/bin")?;
    let prefix = if prefix.is_empty() { "/" } else { prefix };
    let base = prefix.trim_end_matches('/');
    Some((format!("{base}/pyvenv.cfg"), format!("{base}/lib/python{version}/site-packages")))
}

/// The distribution a `NAME-VERSION.dist-info` directory holds, if it is one of [`HTTP_PACKAGES`]:
/// its normalised name and the version the directory's name gives.
pub(crate) fn http_dist_info(entry: &str) -> Option<(&'static str, &str)> {
    let stem = entry.strip_suffix(".dist-info")?;
    let (name, version) = stem.split_once('-')?;
    let normalised = name.to_ascii_lowercase().replace(['_', '.'], "-");
    let known = HTTP_PACKAGES.iter().find(|p| **p == normalised)?;
    Some((known, version))
}

/// The `Version:` of a package's METADATA (the header, before the first blank line).
pub(crate) fn metadata_version(text: &str) -> Option<String> {
    let value = text.lines().take_while(|l| !l.trim().is_empty()).find_map(|l| l.strip_prefix("Version:"))?.trim();
    let ok = !value.is_empty() && value.len() <= 64 && value.chars().all(|c| c.is_ascii_graphic());
    ok.then(|| value.to_string())
}

/// Whether a file of the import package `name` (in one of `dirs`) is mapped.
pub(crate) fn package_mapped(name: &str, dirs: &[String], mapped: &[String]) -> bool {
    let package = name.replace('-', "_");
    dirs.iter().any(|dir| {
        let prefix = format!("{dir}/{package}/");
        mapped.iter().any(|p| p.starts_with(&prefix))
    })
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const MAPS: &str = "\
55d0c0a00000-55d0c0a2e000 r--p 00000000 08:01 1835132                    /usr/bin/python3.11
7f1c2a000000-7f1c2a021000 rw-p 00000000 00:00 0 
7f1c2b000000-7f1c2b004000 r--p 00000000 08:01 2000001                    /srv/app/venv/lib/python3.11/site-packages/charset_normalizer/md.cpython-311-x86_64-linux-gnu.so
7f1c2b004000-7f1c2b008000 r-xp 00004000 08:01 2000001                    /srv/app/venv/lib/python3.11/site-packages/charset_normalizer/md.cpython-311-x86_64-linux-gnu.so
7f1c2c000000-7f1c2c004000 r--p 00000000 08:01 2000002                    /usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so
7f1c2d000000-7f1c2d004000 r--p 00000000 08:01 2000003                    /tmp/old lib.so (deleted)
7f1c2e000000-7f1c2e004000 r--p 00000000 08:01 2000004                    /opt/with space/x.so
7ffd5a000000-7ffd5a021000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn the_maps_give_each_file_once_and_the_interpreter_and_its_import_directories() {
        let mapped = mapped_paths(MAPS);
        assert_eq!(
            mapped,
            [
                "/usr/bin/python3.11",
                "/srv/app/venv/lib/python3.11/site-packages/charset_normalizer/md.cpython-311-x86_64-linux-gnu.so",
                "/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so",
                "/opt/with space/x.so",
            ]
        );
        assert!(is_python("/usr/bin/python3.11", &mapped));
        assert!(!is_python("/usr/sbin/nginx", &[]));
        assert_eq!(version("/usr/bin/python3.11", &[]).as_deref(), Some("3.11"));
        assert_eq!(version("/usr/bin/python3", &mapped[1..]).as_deref(), Some("3.11"), "from the ABI tag");
        assert_eq!(version("/usr/bin/python3", &["/usr/lib/libpython3.12.so.1.0".into()]).as_deref(), Some("3.12"));
        assert_eq!(version("/usr/bin/python3", &[]), None, "unknown stays unknown");
        assert_eq!(site_dirs_of(&mapped), ["/srv/app/venv/lib/python3.11/site-packages"]);
        assert!(package_mapped("charset-normalizer", &site_dirs_of(&mapped), &mapped));
        assert!(!package_mapped("requests", &site_dirs_of(&mapped), &mapped));
    }

    #[test]
    fn a_virtual_environment_and_the_dist_info_of_http_clients_are_recognised() {
        assert_eq!(
            venv_of("/srv/app/venv/bin/python", "3.11"),
            Some(("/srv/app/venv/pyvenv.cfg".into(), "/srv/app/venv/lib/python3.11/site-packages".into()))
        );
        assert_eq!(venv_of("python3", "3.11"), None);
        assert_eq!(http_dist_info("requests-2.32.3.dist-info"), Some(("requests", "2.32.3")));
        assert_eq!(http_dist_info("HTTPX-0.27.0.dist-info"), Some(("httpx", "0.27.0")));
        assert_eq!(http_dist_info("flask-3.0.0.dist-info"), None);
        assert_eq!(http_dist_info("requests"), None);
        let metadata = "Metadata-Version: 2.1\nName: requests\nVersion: 2.32.3\n\nVersion: 9.9.9 in the body\n";
        assert_eq!(metadata_version(metadata).as_deref(), Some("2.32.3"));
        assert_eq!(metadata_version("Name: x\n\nVersion: 1\n"), None);
        assert_eq!(metadata_version("Version: \x1b[2J\n"), None);
    }
}
