//! The layout the README's Development section describes, checked on the source tree: modules use
//! only modules of their own layer or below (the layers are the rows of the README's table), with
//! no cycle between modules nor between the files of one module; the model does no I/O; no
//! function but plain data is longer than about 60 lines; and every subcommand's glue is in
//! `src/cmd/NAME.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file beneath `dir`.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/apply/journal.rs` -> `apply`), or `None` for the
/// crate root, the binary, and test-only files.
fn top_module(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src()).expect("beneath src");
    let first = relative.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.trim_end_matches(".rs").to_string();
    let file = relative.file_stem()?.to_string_lossy();
    if ["lib", "main", "testing", "fuzz"].contains(&name.as_str()) || file == "tests" {
        return None;
    }
    Some(name)
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests { ... }` block.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The top-level names after each `crate::` in `code`: `crate::a::b` gives `a`, and a grouped
/// `crate::{a, b::c}` gives `a` and `b`.
fn crate_names(code: &str) -> Vec<String> {
    let ident =
        |text: &str| -> String { text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut names = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                // Top-level items of the group: split at commas outside nested braces.
                let mut depth = 0;
                let mut start = 0;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            names.push(ident(group[start..j].trim()));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            names.push(ident(group[start..j].trim()));
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
            }
            None => names.push(ident(rest)),
        }
    }
    names
}

/// Top-level module -> the top-level modules its code names with `crate::`.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = top_module(file) else { continue };
        let used = graph.entry(module.clone()).or_default();
        for name in crate_names(&code(file)) {
            if name != module && modules.contains(&name) {
                used.insert(name);
            }
        }
    }
    graph
}

/// The layers of the README's layout table, top first: a module may use modules of lower layers
/// (and of its own layer, without a cycle), never of higher ones.
const LAYERS: &[&[&str]] = &[
    &["cmd", "streams"],
    &["config"],
    &["cli"],
    &["apply"],
    &["export", "explain", "snapshot", "watch"],
    &["report"],
    &["rules", "profile"],
    &["inspect"],
    &["model"],
    &["sysctl_d"],
    &["root"],
    &["sysctl"],
    &["files", "ports", "problem", "error", "json", "words"],
];

fn layer(module: &str) -> usize {
    LAYERS.iter().position(|l| l.contains(&module)).unwrap_or_else(|| panic!("module {module} is in no layer"))
}

#[test]
fn grouped_imports_are_read() {
    let names =
        crate_names("use crate::{error::{Error, Result}, sysctl::SysctlKey};\nlet x = crate::files::beneath(a, b);");
    assert_eq!(names, vec!["error", "sysctl", "files"]);
}

/// A cycle through `start`, if there is one: depth-first search for a path back to it.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![start.to_string()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_in_a_circle() {
    let graph = dependencies();
    assert!(graph.len() > 10, "the source tree was read: {graph:?}");
    assert!(graph["cmd"].contains("apply") && graph["apply"].contains("sysctl"), "imports were found: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            panic!("modules import each other in a circle: {}", cycle.join(" -> "));
        }
    }
    // The order the README describes: no module reaches up a layer.
    for (module, used) in &graph {
        for other in used {
            assert!(layer(other) >= layer(module), "{module} must not use {other}, a layer above it");
        }
    }
}

#[test]
fn every_subcommand_has_its_own_file_in_cmd() {
    let cli = twtune::cli::Cli::command();
    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).filter(|n| *n != "help").collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let file = src().join("cmd").join(format!("{name}.rs"));
        assert!(file.is_file(), "`twtune {name}` has no {}", file.display());
    }
}

/// The files of top-level module `module` (`src/model/connect.rs` -> `connect`), by name, with their
/// code, for modules that are a directory.
fn submodules(module: &str) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(&src().join(module), &mut files);
    files
        .iter()
        .filter(|f| f.file_stem().is_some_and(|s| s != "mod" && s != "tests"))
        .map(|f| (f.file_stem().expect("stem").to_string_lossy().into_owned(), code(f)))
        .collect()
}

#[test]
fn the_files_of_a_module_import_each_other_in_no_circle() {
    for module in ["apply", "export", "inspect", "model", "profile", "report", "rules", "sysctl", "sysctl_d", "watch"] {
        let files = submodules(module);
        let prefix = format!("crate::{module}::");
        let graph: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .map(|(name, code)| {
                let used = code
                    .match_indices(&prefix)
                    .flat_map(|(i, _)| crate_names(&format!("crate::{}", &code[i + prefix.len()..])))
                    .chain(code.match_indices("super::").map(|(i, _)| {
                        code[i + "super::".len()..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect::<String>()
                    }))
                    .filter(|used| used != name && files.contains_key(used))
                    .collect();
                (name.clone(), used)
            })
            .collect();
        if module == "model" {
            assert!(graph["table"].contains("connect") && graph["compare"].contains("table"), "{graph:?}");
        }
        for file in graph.keys() {
            if let Some(cycle) = cycle_through(&graph, file) {
                panic!("files of {module} import each other in a circle: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_model_does_no_io_and_imports_no_reader() {
    let files = submodules("model");
    assert!(files.len() >= 7, "{:?}", files.keys());
    // What reading or writing would need: files, processes, sockets, the terminal, the clock.
    let io = [
        "std::fs",
        "std::io",
        "std::process",
        "std::thread",
        "std::time::Instant",
        "rustix",
        "netlink",
        "crate::root",
        "crate::files",
        "crate::inspect",
        "libc",
    ];
    for (name, code) in &files {
        for word in io {
            assert!(!code.contains(word), "src/model/{name}.rs names {word}: the model does no I/O");
        }
    }
}

/// Functions whose length is plain data (tables of literals), allowed past the limit.
const PLAIN_DATA: &[(&str, &str)] = &[];

/// The non-test functions of every file longer than `limit` lines (from `fn` to its closing
/// brace), as `file:line name (length)`.
fn long_functions(limit: usize) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src()).expect("beneath src").to_string_lossy().into_owned();
        if relative.ends_with("tests.rs") || ["testing.rs", "fuzz.rs"].contains(&relative.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let signature = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn ", "const fn ", "pub(crate) const fn "]
                .iter()
                .find_map(|p| trimmed.strip_prefix(p));
            let Some(rest) = signature else { continue };
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let indent = &line[..line.len() - trimmed.len()];
            let end = lines[start..].iter().position(|l| *l == format!("{indent}}}"));
            let Some(length) = end.map(|e| e + 1) else { continue };
            if length > limit && !PLAIN_DATA.contains(&(relative.as_str(), name.as_str())) {
                long.push(format!("src/{relative}:{} {name} ({length} lines)", start + 1));
            }
        }
    }
    long
}

#[test]
fn no_function_but_plain_data_is_longer_than_about_sixty_lines() {
    assert!(!long_functions(20).is_empty(), "functions were found");
    let long = long_functions(62);
    assert!(long.is_empty(), "split these into named steps:\n{}", long.join("\n"));
}
