//! What an nginx configuration says about keeping connections to its backends alive: the
//! `upstream` blocks with and without `keepalive`, and the `proxy_pass` targets that name an
//! address or host instead of an upstream block (nginx makes an implicit upstream of those, which
//! cannot keep connections alive). The parser follows `include` as nginx does (a path relative
//! to the main file's directory, `*` and `?` in the last component), through a loader given by
//! [`super::identify`], which opens every file beneath the process's root. No I/O here.
//!
//! The configuration is untrusted and bounded: [`MAX_CONF_FILES`] files, [`MAX_CONF_BYTES`] each
//! (the loader reads no more), [`MAX_CONF_TOTAL_BYTES`] in all, [`MAX_INCLUDE_DEPTH`] levels of
//! include, [`MAX_BLOCK_DEPTH`] nested blocks, [`MAX_NAMES`] names per list. What is left unread
//! is said, not guessed.

use std::borrow::Cow;

use crate::model::records::ProxyConfig;

/// Files read at most, the main one included.
pub(crate) const MAX_CONF_FILES: usize = 64;
/// Bytes read of one file at most.
pub(crate) const MAX_CONF_BYTES: u64 = 256 << 10;
/// Includes followed at most one inside another.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 8;
/// Blocks nested at most (deeper ones are skipped whole).
pub(crate) const MAX_BLOCK_DEPTH: usize = 64;
/// Bytes read of all files together at most (a large site's configuration is a few hundred KiB;
/// parsing the whole bound costs about 8 ms, see bench/identify-bench).
pub(crate) const MAX_CONF_TOTAL_BYTES: usize = 1 << 20;
/// Names kept per list.
pub(crate) const MAX_NAMES: usize = 32;
/// The longest word kept.
const MAX_WORD: usize = 4096;

/// Files read: each path and its bytes.
pub(crate) type Files = Vec<(String, Vec<u8>)>;
/// What a loader may read for one include: files, and bytes of them all.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub files: usize,
    pub bytes: usize,
}
/// The files an include pattern (an absolute path) names, in order, within the budget, each read
/// at most [`MAX_CONF_BYTES`]; or why they cannot be read.
pub(crate) type Loader<'a> = dyn FnMut(&str, Budget) -> Result<Files, String> + 'a;

/// Reads the configuration whose main file is `main` (an absolute path) through `load`.
pub(crate) fn read_config(main: &str, load: &mut Loader) -> ProxyConfig {
    let mut state =
        State { config: ProxyConfig { path: main.to_string(), ..ProxyConfig::default() }, ..State::default() };
    state.conf_dir = main.rsplit_once('/').map_or("/", |(dir, _)| if dir.is_empty() { "/" } else { dir }).to_string();
    state.include(main, 0, load);
    let upstreams: Vec<String> = state
        .config
        .upstreams_with_keepalive
        .iter()
        .chain(&state.config.upstreams_without_keepalive)
        .cloned()
        .collect();
    state.config.direct_proxy_pass = std::mem::take(&mut state.targets)
        .into_iter()
        .filter(|(_, host)| !upstreams.contains(host))
        .map(|(target, _)| target)
        .collect();
    state.config
}

#[derive(Default)]
struct State {
    config: ProxyConfig,
    conf_dir: String,
    /// Open blocks: the upstream's name and whether it has `keepalive`, or `None` for others.
    blocks: Vec<Option<(String, bool)>>,
    /// `proxy_pass` targets and their host, classified once every upstream is known.
    targets: Vec<(String, String)>,
    /// Bytes read so far, of all files.
    bytes: usize,
}

impl State {
    fn include(&mut self, pattern: &str, depth: usize, load: &mut Loader) {
        if depth > MAX_INCLUDE_DEPTH {
            return self.unread(format!("includes deeper than {MAX_INCLUDE_DEPTH} levels ({pattern})"));
        }
        let left = MAX_CONF_FILES - (self.config.files_read as usize).min(MAX_CONF_FILES);
        if left == 0 {
            return self.unread(format!("more than {MAX_CONF_FILES} files ({pattern})"));
        }
        if self.bytes == MAX_CONF_TOTAL_BYTES {
            return self.unread(format!("the files past {MAX_CONF_TOTAL_BYTES} bytes in all ({pattern})"));
        }
        let pattern =
            if pattern.starts_with('/') { pattern.to_string() } else { format!("{}/{pattern}", self.conf_dir) };
        // One more of each than is left, to tell that a bound was reached.
        let budget = Budget { files: left + 1, bytes: MAX_CONF_TOTAL_BYTES - self.bytes + 1 };
        let files = match load(&pattern, budget) {
            Ok(files) => files,
            Err(why) => return self.unread(format!("{pattern}: {why}")),
        };
        for (path, bytes) in files {
            if self.config.files_read as usize >= MAX_CONF_FILES {
                return self.unread(format!("more than {MAX_CONF_FILES} files ({path})"));
            }
            self.config.files_read += 1;
            if bytes.len() as u64 >= MAX_CONF_BYTES {
                self.unread(format!("{path} is read only up to {MAX_CONF_BYTES} bytes"));
            }
            let left = MAX_CONF_TOTAL_BYTES - self.bytes;
            if bytes.len() > left {
                self.unread(format!("the files past {MAX_CONF_TOTAL_BYTES} bytes in all ({path})"));
            }
            self.bytes += bytes.len().min(left);
            self.parse(&bytes[..bytes.len().min(left)], depth, load);
            if self.bytes == MAX_CONF_TOTAL_BYTES {
                return;
            }
        }
    }

    fn unread(&mut self, why: String) {
        if self.config.unread.is_none() {
            self.config.unread = Some(why);
        }
    }

    /// Reads one file's directives, in the blocks left open by the file that includes it.
    fn parse(&mut self, bytes: &[u8], depth: usize, load: &mut Loader) {
        let mut tokens = Tokens { bytes, at: 0 };
        // The first two words of the directive being read, as they are in the file (the only ones
        // any directive read here needs); the rest are skipped, not copied.
        let mut words: Vec<Cow<[u8]>> = Vec::with_capacity(2);
        while let Some(token) = tokens.next() {
            match token {
                Token::Word(word) if words.len() < 2 => words.push(word),
                Token::Word(_) => {}
                Token::End => {
                    self.directive(&words, depth, load);
                    words.clear();
                }
                Token::Open => {
                    let upstream = (words.first().map(|w| &w[..]) == Some(b"upstream"))
                        .then(|| (words.get(1).map(|w| text(w)).unwrap_or_default(), false));
                    words.clear();
                    self.blocks.push(upstream);
                    if self.blocks.len() > MAX_BLOCK_DEPTH {
                        self.unread(format!("blocks nested deeper than {MAX_BLOCK_DEPTH}"));
                        self.blocks.pop();
                        tokens.skip_block();
                    }
                }
                Token::Close => self.close(),
            }
        }
    }

    fn directive(&mut self, words: &[Cow<[u8]>], depth: usize, load: &mut Loader) {
        let Some(argument) = words.get(1) else { return };
        match &words[0][..] {
            b"include" => self.include(&text(argument), depth + 1, load),
            b"keepalive" => {
                if let Some(Some((_, keepalive))) = self.blocks.last_mut() {
                    *keepalive = true;
                }
            }
            b"proxy_pass" if !argument.contains(&b'$') && self.targets.len() < MAX_NAMES => {
                let target = text(argument);
                let without_scheme = target.split_once("://").map_or(target.as_str(), |(_, rest)| rest);
                let host = without_scheme.split([':', '/']).next().unwrap_or_default().to_string();
                if !self.targets.iter().any(|(t, _)| *t == target) {
                    self.targets.push((target, host));
                }
            }
            _ => {}
        }
    }

    fn close(&mut self) {
        if let Some(Some((name, keepalive))) = self.blocks.pop() {
            let list = if keepalive {
                &mut self.config.upstreams_with_keepalive
            } else {
                &mut self.config.upstreams_without_keepalive
            };
            if list.len() < MAX_NAMES && !list.contains(&name) {
                list.push(name);
            }
        }
    }
}

enum Token<'a> {
    /// A word as it is in the file, or unquoted.
    Word(Cow<'a, [u8]>),
    /// `;`
    End,
    Open,
    Close,
}

/// nginx's lexer: words, `"..."` and `'...'` with backslash escapes, `#` comments to the end of
/// the line, and `;`, `{`, `}`.
struct Tokens<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            match byte {
                b';' => return Some(Token::End),
                b'{' => return Some(Token::Open),
                b'}' => return Some(Token::Close),
                b'#' => {
                    let rest = &self.bytes[self.at..];
                    self.at += rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
                }
                b if b.is_ascii_whitespace() => {}
                b'"' | b'\'' => return Some(Token::Word(self.quoted(byte).into())),
                _ => {
                    self.at -= 1;
                    return Some(Token::Word(self.word().into()));
                }
            }
        }
    }

    fn quoted(&mut self, quote: u8) -> Vec<u8> {
        let mut word = Vec::new();
        while let Some(&byte) = self.bytes.get(self.at) {
            self.at += 1;
            match byte {
                b'\\' if self.bytes.get(self.at).is_some() => {
                    word.push(self.bytes[self.at]);
                    self.at += 1;
                }
                _ if byte == quote => break,
                _ => word.push(byte),
            }
        }
        word
    }

    fn word(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        let end = rest.iter().position(|b| b.is_ascii_whitespace() || b";{}\"'".contains(b)).unwrap_or(rest.len());
        self.at += end;
        &rest[..end]
    }

    /// Skips to the end of the block just opened.
    fn skip_block(&mut self) {
        let mut open = 1usize;
        while open > 0 {
            match self.next() {
                Some(Token::Open) => open += 1,
                Some(Token::Close) => open -= 1,
                Some(_) => {}
                None => break,
            }
        }
    }
}

/// A word as text, at most [`MAX_WORD`] bytes of it.
fn text(word: &[u8]) -> String {
    String::from_utf8_lossy(&word[..word.len().min(MAX_WORD)]).into_owned()
}

/// Whether a file name matches an include's last component (`*` and `?`; `[...]` is taken
/// literally), without recursion.
pub(crate) fn name_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) && p[i] != '*' {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    // A hidden file matches only a pattern that starts with a dot, as glob(3) has it.
    (pattern.starts_with('.') || !name.starts_with('.')) && p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const MAIN: &str = "\
user www-data;
worker_processes auto;  # a comment { ; }
events { worker_connections 768; }
http {
    upstream pooled { server 10.0.0.1:8080; keepalive 32; }
    upstream \"plain\" {
        server 10.0.0.2:8080;
    }
    include conf.d/*.conf;
    server {
        listen 80;
        location /a { proxy_pass http://pooled; }
        location /b { proxy_pass http://plain/b; }
        location /c { proxy_pass http://127.0.0.1:9000; }
        location /d { proxy_pass http://$backend; }
    }
}
";

    /// The files a test tree holds, by path; `*` patterns matched by [`name_matches`].
    pub(crate) fn loader(files: Vec<(&'static str, String)>) -> impl FnMut(&str, Budget) -> Result<Files, String> {
        move |pattern: &str, budget: Budget| {
            let (dir, name) = pattern.rsplit_once('/').expect("absolute");
            let found: Vec<(String, Vec<u8>)> = files
                .iter()
                .filter(|(path, _)| path.rsplit_once('/').is_some_and(|(d, n)| d == dir && name_matches(name, n)))
                .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
                .take(budget.files)
                .collect();
            if found.is_empty() && !name.contains(['*', '?']) { Err("no such file".into()) } else { Ok(found) }
        }
    }

    #[test]
    fn upstreams_with_and_without_keepalive_and_direct_targets_are_told_apart() {
        let files = vec![
            ("/etc/nginx/nginx.conf", MAIN.to_string()),
            ("/etc/nginx/conf.d/api.conf", "upstream api { server 10.0.0.3:80; }\n".to_string()),
            ("/etc/nginx/conf.d/.hidden.conf", "upstream hidden { }\n".to_string()),
            ("/etc/nginx/conf.d/notes.txt", "upstream notes { }\n".to_string()),
        ];
        let config = read_config("/etc/nginx/nginx.conf", &mut loader(files));
        assert_eq!(config.files_read, 2);
        assert_eq!(config.upstreams_with_keepalive, ["pooled"]);
        assert_eq!(config.upstreams_without_keepalive, ["plain", "api"]);
        assert_eq!(config.direct_proxy_pass, ["http://127.0.0.1:9000"], "a variable's target is not guessed");
        assert_eq!(config.unread, None);
    }

    #[test]
    fn includes_that_loop_or_go_missing_are_bounded_and_said() {
        let files = vec![("/etc/nginx/nginx.conf", "include nginx.conf;\n".to_string())];
        let config = read_config("/etc/nginx/nginx.conf", &mut loader(files));
        assert_eq!(config.files_read as usize, MAX_INCLUDE_DEPTH + 1);
        assert!(config.unread.as_deref().is_some_and(|u| u.contains("deeper")), "{config:?}");
        let missing = read_config("/x/nginx.conf", &mut loader(vec![]));
        assert_eq!((missing.files_read, missing.unread.as_deref()), (0, Some("/x/nginx.conf: no such file")));
        let nested = "http { ".repeat(MAX_BLOCK_DEPTH + 5) + "upstream deep { }" + &" }".repeat(MAX_BLOCK_DEPTH + 5);
        let config = read_config("/n.conf", &mut loader(vec![("/n.conf", nested + "upstream after { }")]));
        assert_eq!(config.upstreams_without_keepalive, ["after"], "the too-deep block is skipped whole");
        assert!(name_matches("*.conf", "a.conf") && !name_matches("*.conf", "a.txt") && name_matches("a?c", "abc"));
    }
}
