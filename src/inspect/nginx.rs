//! What an nginx configuration says about keeping connections to its backends alive: the
//! `upstream` blocks with and without `keepalive`, and the `proxy_pass` targets that name an
//! address or host instead of an upstream block (nginx makes an implicit upstream of those, which
//! cannot keep connections alive). The parser follows `include` as nginx does (a path relative
//! to the main file's directory, `*` and `?` in the last component), through a loader given by
//! [`super::identify`], which opens every file beneath the process's root. No I/O here.
//!
//! The configuration is untrusted and bounded: [`MAX_CONF_FILES`] files, [`MAX_CONF_BYTES`] each
//! (the loader reads no more), [`MAX_INCLUDE_DEPTH`] levels of include, [`MAX_BLOCK_DEPTH`]
//! nested blocks, [`MAX_NAMES`] names per list. What is left unread is said, not guessed.

use crate::model::records::ProxyConfig;

/// Files read at most, the main one included.
pub(crate) const MAX_CONF_FILES: usize = 64;
/// Bytes read of one file at most.
pub(crate) const MAX_CONF_BYTES: u64 = 256 << 10;
/// Includes followed at most one inside another.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 8;
/// Blocks nested at most (deeper ones are skipped whole).
pub(crate) const MAX_BLOCK_DEPTH: usize = 64;
/// Names kept per list.
pub(crate) const MAX_NAMES: usize = 32;
/// The longest word kept.
const MAX_WORD: usize = 4096;

/// Files read: each path and its bytes.
pub(crate) type Files = Vec<(String, Vec<u8>)>;
/// The files an include pattern (an absolute path) names, in order, at most the count given, each
/// read at most [`MAX_CONF_BYTES`]; or why they cannot be read.
pub(crate) type Loader<'a> = dyn FnMut(&str, usize) -> Result<Files, String> + 'a;

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
    /// The directive being read.
    words: Vec<String>,
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
        let pattern =
            if pattern.starts_with('/') { pattern.to_string() } else { format!("{}/{pattern}", self.conf_dir) };
        let files = match load(&pattern, left + 1) {
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
            self.parse(&bytes, depth, load);
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
        while let Some(token) = tokens.next() {
            match token {
                Token::Word(word) if self.words.len() < 64 => self.words.push(word),
                Token::Word(_) => {}
                Token::End => {
                    let words = std::mem::take(&mut self.words);
                    self.directive(&words, depth, load);
                }
                Token::Open => {
                    let words = std::mem::take(&mut self.words);
                    let upstream = (words.first().map(String::as_str) == Some("upstream"))
                        .then(|| (words.get(1).cloned().unwrap_or_default(), false));
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

    fn directive(&mut self, words: &[String], depth: usize, load: &mut Loader) {
        match (words.first().map(String::as_str), words.get(1)) {
            (Some("include"), Some(pattern)) => self.include(pattern, depth + 1, load),
            (Some("keepalive"), Some(_)) => {
                if let Some(Some((_, keepalive))) = self.blocks.last_mut() {
                    *keepalive = true;
                }
            }
            (Some("proxy_pass"), Some(target)) if !target.contains('$') && self.targets.len() < MAX_NAMES => {
                let without_scheme = target.split_once("://").map_or(target.as_str(), |(_, rest)| rest);
                let host = without_scheme.split([':', '/']).next().unwrap_or_default().to_string();
                if !self.targets.iter().any(|(t, _)| t == target) {
                    self.targets.push((target.clone(), host));
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

enum Token {
    Word(String),
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

impl Tokens<'_> {
    fn next(&mut self) -> Option<Token> {
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
                b'"' | b'\'' => return Some(Token::Word(self.quoted(byte))),
                _ => {
                    self.at -= 1;
                    return Some(Token::Word(self.word()));
                }
            }
        }
    }

    fn quoted(&mut self, quote: u8) -> String {
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
        word.truncate(MAX_WORD);
        String::from_utf8_lossy(&word).into_owned()
    }

    fn word(&mut self) -> String {
        let rest = &self.bytes[self.at..];
        let end = rest.iter().position(|b| b.is_ascii_whitespace() || b";{}\"'".contains(b)).unwrap_or(rest.len());
        self.at += end;
        String::from_utf8_lossy(&rest[..end.min(MAX_WORD)]).into_owned()
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
    pub(crate) fn loader(files: Vec<(&'static str, String)>) -> impl FnMut(&str, usize) -> Result<Files, String> {
        move |pattern: &str, most: usize| {
            let (dir, name) = pattern.rsplit_once('/').expect("absolute");
            let found: Vec<(String, Vec<u8>)> = files
                .iter()
                .filter(|(path, _)| path.rsplit_once('/').is_some_and(|(d, n)| d == dir && name_matches(name, n)))
                .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
                .take(most)
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
