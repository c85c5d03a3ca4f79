//! `twtune completions SHELL`: the completion script clap derives from the command line, with
//! what clap cannot know added for bash, zsh and fish: profile names (built-in and local, asked of
//! `twtune profiles list` when completing), the sysctl keys twtune knows for `explain`, the shells
//! for `completions` and the commands for `help`, and no file names where none is wanted.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::{Error, Outcome, Result};
use crate::sysctl::keys::KEYS;

const SHELLS: &str = "bash elvish fish powershell zsh";
const COMMANDS: &str = "audit explain apply rollback export snapshot profiles completions";

pub(crate) fn run(shell: Shell, out: &mut dyn Write) -> Result<Outcome> {
    // clap_complete panics when its writer fails: it writes into memory, and a full disk or a
    // closed pipe is reported like any other write error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "twtune", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    let keys: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
    let script = match shell {
        Shell::Bash => bash(&script, &keys.join(" ")),
        Shell::Zsh => zsh(&script, &keys.join(" ")),
        Shell::Fish => fish(script, &keys.join(" ")),
        _ => script,
    };
    out.write_all(script.as_bytes()).map_err(Error::Output)?;
    Ok(Outcome::Clean)
}

/// Profile names, asked of twtune itself (so local profiles are in), at completion time.
/// (A long description wraps onto lines that start with spaces: only the lines with a name count.)
const PROFILES: &str = "twtune profiles list 2>/dev/null | awk '/^[^ ]/ {print $1}'";

/// clap's `_twtune`, wrapped: values clap only knows as `<KEY>` or `<PROFILE>` come from twtune.
fn bash(script: &str, keys: &str) -> String {
    let script = script.replace("complete -F _twtune ", "complete -F _twtune_values ");
    format!(
        "{script}\n\
         # Added by twtune: values clap cannot know.\n\
         _twtune_values() {{\n\
         \x20   local cur=\"${{COMP_WORDS[COMP_CWORD]}}\" prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\" sub=\"${{COMP_WORDS[1]}}\"\n\
         \x20   local list=\"\"\n\
         \x20   if [[ \"$prev\" == --profile ]]; then\n\
         \x20       list=\"$({PROFILES})\"\n\
         \x20   elif [[ \"$cur\" != -* && ( \"$prev\" != -* || \"$prev\" == -y || \"$prev\" == --yes || \"$prev\" == --dry-run \
         || \"$prev\" == --recommended || \"$prev\" == --no-persist || \"$prev\" == --select ) ]]; then\n\
         \x20       case \"$sub\" in\n\
         \x20           explain) list=\"{keys}\" ;;\n\
         \x20           apply|export) list=\"$({PROFILES})\" ;;\n\
         \x20           profiles) [[ \"${{COMP_WORDS[2]}}\" == show || \"${{COMP_WORDS[2]}}\" == check ]] && (( COMP_CWORD > 2 )) \
         && list=\"$({PROFILES})\" ;;\n\
         \x20           completions) list=\"{SHELLS}\" ;;\n\
         \x20           help) list=\"{COMMANDS}\" ;;\n\
         \x20       esac\n\
         \x20   fi\n\
         \x20   if [[ -n \"$list\" && $COMP_CWORD -ge 2 ]]; then\n\
         \x20       COMPREPLY=( $(compgen -W \"$list\" -- \"$cur\") )\n\
         \x20       [[ ${{#COMPREPLY[@]}} -gt 0 || \"$sub\" == explain || \"$sub\" == completions || \"$sub\" == help ]] && return 0\n\
         \x20   fi\n\
         \x20   _twtune \"$@\"\n\
         }}\n"
    )
}

/// clap's zsh script with `_default` (files) replaced where a key or a profile is wanted.
fn zsh(script: &str, keys: &str) -> String {
    let lines: Vec<String> = script
        .lines()
        .map(|line| {
            let profile =
                line.contains("profile -- Profile") || line.contains("'--profile=[") || line.contains(":profile -- ");
            if line.starts_with("':key -- ") {
                line.replace(":_default'", ":_twtune_keys'")
            } else if profile {
                line.replace(":_default'", ":_twtune_profiles'")
            } else {
                line.to_string()
            }
        })
        .collect();
    let mut text = lines.join("\n");
    let helpers = format!(
        "# Added by twtune: values clap cannot know.\n\
         (( $+functions[_twtune_keys] )) ||\n_twtune_keys() {{\n    compadd -- {keys}\n}}\n\
         (( $+functions[_twtune_profiles] )) ||\n_twtune_profiles() {{\n    local -a profiles\n    \
         profiles=(${{(f)\"$({PROFILES})\"}})\n    _alternative 'profiles:profile:compadd -a profiles' 'files:file:_files'\n}}\n\n"
    );
    // Before the last lines, which run or register `_twtune`.
    match text.rfind("if [ \"$funcstack[1]\" = \"_twtune\" ]; then") {
        Some(at) => text.insert_str(at, &helpers),
        None => text.push_str(&helpers),
    }
    text.push('\n');
    text
}

/// clap's fish script, with values for positionals (fish offers files where nothing says not to).
fn fish(mut script: String, keys: &str) -> String {
    let on = |sub: &str| format!("complete -c twtune -n \"__fish_twtune_using_subcommand {sub}\"");
    script.push_str("\n# Added by twtune: values clap cannot know, and no file names where none is wanted.\n");
    script.push_str(&format!("function __fish_twtune_profiles\n    {PROFILES}\nend\n"));
    script.push_str(&format!("{} -f -a \"{keys}\"\n", on("explain")));
    script.push_str(&format!("{} -f -a \"{SHELLS}\"\n", on("completions")));
    script.push_str(&format!("{} -f -a \"{COMMANDS}\"\n", on("help")));
    for sub in ["apply", "export"] {
        script.push_str(&format!("{} -a \"(__fish_twtune_profiles)\"\n", on(sub)));
    }
    script.push_str(
        "complete -c twtune -n \"__fish_twtune_using_subcommand profiles; and __fish_seen_subcommand_from show check\" \
         -a \"(__fish_twtune_profiles)\"\n",
    );
    for sub in ["audit", "explain"] {
        script.push_str(&format!("{} -l profile -r -a \"(__fish_twtune_profiles)\"\n", on(sub)));
    }
    // clap's own condition for the global option is false while its value is missing
    // (`twtune --color <TAB>`), and fish fell back to file names.
    script.push_str("complete -c twtune -n \"__fish_prev_arg_in --color\" -f -a \"auto always never\"\n");
    script
}
