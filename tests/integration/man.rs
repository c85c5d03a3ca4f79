//! The committed man page is what the clap definition and man/sections.roff generate, and `man`
//! renders it without warnings. Regenerate it with `TWTUNE_BLESS=1 cargo test man_page`.

use std::path::PathBuf;
use std::process::Command;

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, italic, roman};

fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// One COMMANDS subsection per subcommand (nested ones too), with its options.
fn commands(cmd: &clap::Command, prefix: &str, roff: &mut Roff) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = format!("{prefix} {}", sub.get_name());
        roff.control("SS", [name.as_str()]);
        let about = sub.get_long_about().or(sub.get_about()).map(ToString::to_string).unwrap_or_default();
        for (i, paragraph) in about.split("\n\n").enumerate() {
            if i > 0 {
                roff.control("PP", []);
            }
            roff.text([roman(paragraph.replace('\n', " "))]);
        }
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version" | "color"))
        {
            argument(arg, roff);
        }
        commands(sub, &name, roff);
    }
}

/// One option: its flags and value names, then its help, possible values and default.
fn argument(arg: &clap::Arg, roff: &mut Roff) {
    roff.control("TP", []);
    // An on/off flag takes no value, whatever name clap gives it.
    let takes_values = arg.get_action().takes_values();
    let values: Vec<String> = arg
        .get_value_names()
        .filter(|_| takes_values)
        .map(|v| v.iter().map(|n| format!("<{n}>")).collect())
        .unwrap_or_default();
    let mut head = vec![];
    match (arg.get_short(), arg.get_long()) {
        (Some(s), Some(l)) => head.push(bold(format!("-{s}, --{l}"))),
        (None, Some(l)) => head.push(bold(format!("--{l}"))),
        (Some(s), None) => head.push(bold(format!("-{s}"))),
        (None, None) => {}
    }
    if !values.is_empty() {
        if !head.is_empty() {
            head.push(roman(" "));
        }
        head.push(italic(values.join(" ")));
    }
    roff.text(head);
    let mut help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string().replace('\n', " ")).unwrap_or_default();
    if !help.is_empty() && !help.ends_with('.') {
        help.push('.');
    }
    let possible: Vec<String> =
        arg.get_possible_values().iter().filter(|v| !v.is_hide_set()).map(|v| v.get_name().to_string()).collect();
    if !possible.is_empty() && arg.get_action().takes_values() {
        help.push_str(&format!(" One of: {}.", possible.join(", ")));
    }
    let defaults: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if !defaults.is_empty() && takes_values {
        help.push_str(&format!(" Default: {}.", defaults.join(" ")));
    }
    roff.text([roman(help)]);
}

/// The date of the page's `.TH` line, in the form mandoc reads (the version goes in the source slot).
const PAGE_DATE: &str = "2026-12-01";

fn generated() -> String {
    let cli = twtune::cli::Cli::command();
    let man = clap_mangen::Man::new(cli.clone())
        .section("8")
        .date(PAGE_DATE)
        .source(format!("twtune {}", env!("CARGO_PKG_VERSION")));
    let mut page = Vec::new();
    man.render_title(&mut page).expect("title");
    man.render_name_section(&mut page).expect("name");
    man.render_synopsis_section(&mut page).expect("synopsis");
    man.render_description_section(&mut page).expect("description");
    // The global options rendered as the commands' are: clap_mangen's own puts `.br` around `.sp`,
    // which mandoc warns about.
    let mut roff = Roff::new();
    roff.control("SH", ["OPTIONS"]);
    // Built, so that clap's own -h and -V are among them.
    let mut built = cli.clone();
    built.build();
    for arg in built.get_arguments().filter(|a| !a.is_hide_set()) {
        argument(arg, &mut roff);
    }
    roff.control("SH", ["COMMANDS"]);
    commands(&cli, "twtune", &mut roff);
    page.extend(roff.render().into_bytes());
    page.extend(std::fs::read(path("man/sections.roff")).expect("man/sections.roff"));
    // Titles are upper case, as mandoc's style check (and every page of section 8) has them.
    tidy(&String::from_utf8(page).expect("utf-8 man page").replacen(".TH twtune ", ".TH TWTUNE ", 1))
}

/// The page as `mandoc -T lint` wants its source: no white space at the end of a line, and text
/// lines of at most 80 bytes, broken at a space (not an escaped one); a piece that would start
/// like a request (`.` or `'`) is guarded with `\&`.
fn tidy(page: &str) -> String {
    let mut out = String::new();
    for line in page.lines().map(str::trim_end) {
        if line.len() <= 80 || line.starts_with(['.', '\'']) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut current = String::new();
        for word in split_at_plain_spaces(line) {
            if !current.is_empty() && current.len() + 1 + word.len() > 80 {
                out.push_str(&current);
                out.push('\n');
                current.clear();
            }
            if current.is_empty() {
                if word.starts_with(['.', '\'']) {
                    current.push_str("\\&");
                }
            } else {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
}

/// The words of a text line, split at spaces that are not escaped (`\ ` stays inside a word).
fn split_at_plain_spaces(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b' ' && (i == 0 || bytes[i - 1] != b'\\') {
            if i > start {
                words.push(&line[start..i]);
            }
            start = i + 1;
        }
    }
    if start < line.len() {
        words.push(&line[start..]);
    }
    words
}

#[test]
fn man_page_is_up_to_date() {
    let page = generated();
    if std::env::var_os("TWTUNE_BLESS").is_some() {
        std::fs::write(path("man/twtune.8"), &page).expect("write man page");
    }
    let committed = std::fs::read_to_string(path("man/twtune.8")).unwrap_or_default();
    assert!(committed == page, "man/twtune.8 is stale: run TWTUNE_BLESS=1 cargo test man_page and commit it");
    for command in [
        "twtune audit",
        "twtune apply",
        "twtune rollback",
        "twtune export",
        "twtune explain",
        "twtune snapshot",
        "twtune completions",
        "twtune profiles check",
    ] {
        assert!(
            page.contains(&format!(".SS \"{command}\"")) || page.contains(&format!(".SS {command}")),
            "{command} is not documented"
        );
    }
    for section in ["EXIT STATUS", "FILES", "SAFETY", "EXAMPLES", "SEE ALSO"] {
        assert!(
            page.contains(&format!(".SH \"{section}\"")) || page.contains(&format!(".SH {section}")),
            "no {section}"
        );
    }
}

#[test]
fn man_renders_the_page_without_warnings() {
    let output = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(path("man/twtune.8"))
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .output();
    let Ok(output) = output else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but `man` is missing: scripts/test installs man-db"
        );
        eprintln!("SKIPPED: man is not installed");
        return;
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "man warned:\n{stderr}");
    // Without a terminal man marks bold text by overstriking (c BS c): undo that to read it.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&output.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    assert!(text.contains("EXIT STATUS") && text.contains("twtune apply") && text.contains("SAFETY"), "{text}");
}

#[test]
fn mandoc_lint_finds_nothing_in_either_page() {
    let output = Command::new("mandoc")
        .args(["-T", "lint"])
        .arg(path("man/twtune.8"))
        .arg(path("man/twtune-profile.5"))
        .output();
    let Ok(output) = output else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but mandoc is missing: scripts/test installs it"
        );
        eprintln!("SKIPPED: mandoc is not installed");
        return;
    };
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "mandoc -T lint, down to style messages:\n{said}");
    // Flags are shown as flags: no value after an on/off option.
    let page = std::fs::read_to_string(path("man/twtune.8")).expect("page");
    for flag in ["yes", "dry\\-run", "no\\-persist", "persist", "all\\-netns", "list"] {
        assert!(!page.contains(&format!("\\-\\-{flag}\\fR \\fI<")), "--{flag} shown as taking a value");
    }
}

/// The text of section `name` of a page's source: from its `.SH` line to the next.
fn section<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page.find(&format!(".SH {name}\n")).unwrap_or_else(|| panic!("no {name} section"));
    let rest = &page[start + 4..];
    &rest[..rest.find("\n.SH ").unwrap_or(rest.len())]
}

#[test]
fn every_finding_id_and_the_environment_are_in_the_page() {
    let page = std::fs::read_to_string(path("man/twtune.8")).expect("page");
    let findings = section(&page, "FINDINGS");
    // The ids the JSON schema allows, which a unit test holds to the ids the rules make.
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("docs/schema/audit.json")).expect("schema")).expect("json");
    let ids = schema["$defs"]["finding"]["properties"]["id"]["anyOf"][0]["enum"].as_array().expect("the id enum");
    assert!(ids.len() > 20, "{ids:?}");
    for id in ids.iter().filter_map(|i| i.as_str()).chain(["profile.KEY"]) {
        let entry = format!(".TP\n.B {}\n", id.replace('-', "\\-"));
        let line = findings.split(&entry).nth(1).and_then(|rest| rest.lines().next());
        assert!(line.is_some_and(|l| l.len() > 20 && !l.starts_with('.')), "{id}: no line of its own in FINDINGS");
    }
    let environment = section(&page, "ENVIRONMENT");
    for variable in ["NO_COLOR", "CLICOLOR_FORCE", "COLUMNS", "TERM"] {
        assert!(environment.contains(variable), "{variable} is not in ENVIRONMENT");
    }
    assert!(section(&page, "\"SEE ALSO\"").contains("twtune\\-profile (5)"));
}

#[test]
fn the_profile_page_documents_every_field_and_renders_without_warnings() {
    let page = std::fs::read_to_string(path("man/twtune-profile.5")).expect("page");
    // Every field a setting can have, as `profiles show --format json` lists them.
    let shown = crate::util::Run::new(&["profiles", "show", "baseline", "--format", "json"])
        .stdout(crate::util::Expect::satisfies("JSON", |s| s.starts_with('{')))
        .run();
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    let setting = shown["settings"].as_object().and_then(|s| s.values().next()).expect("a setting");
    let fields: Vec<&String> = setting.as_object().expect("fields").keys().filter(|k| *k != "defined_in").collect();
    assert!(fields.len() > 10, "{fields:?}");
    for field in fields.iter().map(|f| f.as_str()).chain(["name", "description", "extends", "notes", "thresholds"]) {
        let bold = format!(".B {field}");
        let among = format!("\\fB{field}");
        assert!(page.contains(&bold) || page.contains(&among), "{field} is not documented");
    }
    let output =
        Command::new("man").args(["--warnings", "-l"]).arg(path("man/twtune-profile.5")).env("MANWIDTH", "80").output();
    let Ok(output) = output else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but `man` is missing");
        return;
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "man warned:\n{stderr}");
}
