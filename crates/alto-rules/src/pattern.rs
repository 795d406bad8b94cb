//! Path patterns: globs and regular expressions, compiled twice from one parse.
//!
//! Both kinds are parsed once by `regex-syntax` into its high-level IR; from that IR we build
//! the Rust matcher the reference evaluator uses, and we render the *same* IR as a POSIX
//! advanced regular expression (PostgreSQL's `~` dialect) for candidate selection in the
//! database. The rendering spells every class out as explicit code-point ranges and every
//! non-alphanumeric character as a `\uXXXX` escape, so neither locale nor dialect quirks can
//! make the two disagree. Constructs whose meaning differs between engines (word boundaries,
//! multi-line anchors, byte classes) are refused, as are shapes that are catastrophic or
//! absurd (nested unbounded repetition, counts above 255, huge expansions).

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// Longest pattern text accepted.
pub const MAX_PATTERN_LEN: usize = 1024;
/// PostgreSQL's limit on a bounded repetition count.
const MAX_REPEAT: u32 = 255;
/// Largest product of nested bounded repetition counts.
const MAX_EXPANSION: u64 = 1000;
/// Largest rendered expression.
const MAX_RENDERED: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern is longer than {MAX_PATTERN_LEN} characters")]
    TooLong,
    #[error("pattern contains a NUL character")]
    Nul,
    #[error("invalid regular expression: {0}")]
    Syntax(String),
    #[error("invalid glob: {0}")]
    Glob(String),
    #[error("unsupported in path patterns: {0}")]
    Unsupported(&'static str),
    #[error("catastrophic pattern: {0}")]
    Catastrophic(&'static str),
    #[error("pattern is too large: {0}")]
    TooLarge(String),
}

/// A compiled pattern: the Rust matcher and its PostgreSQL rendering.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
    sql: String,
    shape: Shape,
}

/// A cheaper exact equivalent of a glob for the database, where one exists. Whatever the
/// shape, the Rust matcher is the same regex; the property test holds the two together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Only the regular expression expresses it.
    Regex,
    /// The path starts with this text (`/srv/a/**`).
    Prefix(String),
    /// The path ends with this text, which holds no `/` (`*.iso`).
    Suffix(String),
    /// The path is exactly this text (`/srv/a/x.iso`).
    Exact(String),
}

const GLOB_SPECIAL: &[char] = &['*', '?', '[', ']', '{', '}', ',', '\\'];

fn glob_shape(glob: &str) -> Shape {
    let plain = |s: &str| !s.contains(GLOB_SPECIAL);
    if !glob.contains('/') {
        if let Some(rest) = glob.strip_prefix('*') {
            if !rest.is_empty() && plain(rest) && !rest.starts_with('*') {
                return Shape::Suffix(rest.to_owned());
            }
        }
        return Shape::Regex;
    }
    if !glob.starts_with('/') {
        return Shape::Regex;
    }
    if plain(glob) {
        return Shape::Exact(glob.to_owned());
    }
    if let Some(lit) = glob.strip_suffix("**") {
        if plain(lit) {
            return Shape::Prefix(lit.to_owned());
        }
    }
    Shape::Regex
}

impl Pattern {
    /// Compiles a regular expression (searched anywhere in the path unless anchored).
    pub fn regex(src: &str) -> Result<Pattern, PatternError> {
        check_text(src)?;
        Self::from_regex_text(src, src)
    }

    /// Compiles a glob (see [`glob_to_regex`]).
    pub fn glob(src: &str) -> Result<Pattern, PatternError> {
        check_text(src)?;
        let re = glob_to_regex(src)?;
        let mut p = Self::from_regex_text(src, &re)?;
        p.shape = glob_shape(src);
        Ok(p)
    }

    /// The cheaper database form of a glob, if it has one.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    fn from_regex_text(source: &str, re: &str) -> Result<Pattern, PatternError> {
        let hir = regex_syntax::ParserBuilder::new()
            .nest_limit(32)
            .build()
            .parse(re)
            .map_err(|e| PatternError::Syntax(first_line(&e.to_string())))?;
        check_shape(&hir, 1)?;
        let mut sql = String::new();
        render(&hir, &mut sql)?;
        if sql.len() > MAX_RENDERED {
            return Err(PatternError::TooLarge("its character classes expand too far".into()));
        }
        let regex = regex::RegexBuilder::new(re)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => {
                    PatternError::TooLarge("the compiled matcher exceeds 1 MiB".into())
                }
                other => PatternError::Syntax(first_line(&other.to_string())),
            })?;
        Ok(Pattern { source: source.to_owned(), regex, sql, shape: Shape::Regex })
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }

    /// The expression for PostgreSQL's `~` operator.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

fn first_line(s: &str) -> String {
    // regex-syntax errors are multi-line drawings; keep the gist.
    let last = s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(s);
    last.trim().trim_start_matches("error: ").to_owned()
}

fn check_text(src: &str) -> Result<(), PatternError> {
    if src.chars().count() > MAX_PATTERN_LEN {
        return Err(PatternError::TooLong);
    }
    if src.contains('\0') {
        return Err(PatternError::Nul);
    }
    Ok(())
}

/// Translates a glob into an anchored regular expression.
///
/// `*` is any run of characters but `/`, `?` one such character, `**` any run including `/`
/// (`/**/` also matches a single `/`), `[abc]`/`[!abc]` a class, `{a,b}` alternatives, and
/// `\x` the character `x`. A glob without `/` matches the last path component; one with `/`
/// must start with `/` or `**` and matches the whole path.
pub fn glob_to_regex(glob: &str) -> Result<String, PatternError> {
    if glob.is_empty() {
        return Err(PatternError::Glob("empty glob".into()));
    }
    let basename = !glob.contains('/');
    if !(basename || glob.starts_with('/') || glob.starts_with("**")) {
        return Err(PatternError::Glob(
            "a glob with `/` must be absolute (start with `/` or `**`)".into(),
        ));
    }
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::from(if basename { "(?s)(?:^|/)" } else { "(?s)^" });
    let mut i = 0;
    let mut braces = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                let at_start = i == 0 || chars[i - 1] == '/';
                let slash_after = chars.get(i + 2) == Some(&'/');
                if at_start && slash_after {
                    out.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    out.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('!') | Some('^'));
                if negated {
                    j += 1;
                }
                let start = j;
                let mut inner = String::new();
                while j < chars.len() && (chars[j] != ']' || j == start) {
                    let ch = chars[j];
                    if ch == '/' {
                        return Err(PatternError::Glob("`/` inside `[...]`".into()));
                    }
                    if matches!(ch, '\\' | '[' | ']' | '&' | '~') {
                        inner.push('\\');
                    }
                    inner.push(ch);
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(PatternError::Glob("unclosed `[`".into()));
                }
                // A class never matches `/`, like `*` and `?`.
                if negated {
                    out.push_str(&format!("[^/{inner}]"));
                } else {
                    out.push_str(&format!("[{inner}&&[^/]]"));
                }
                i = j + 1;
                continue;
            }
            '{' => {
                braces += 1;
                out.push_str("(?:");
            }
            '}' if braces > 0 => {
                braces -= 1;
                out.push(')');
            }
            ',' if braces > 0 => out.push('|'),
            '\\' => {
                let Some(next) = chars.get(i + 1) else {
                    return Err(PatternError::Glob("trailing `\\`".into()));
                };
                out.push_str(&regex_syntax::escape(&next.to_string()));
                i += 2;
                continue;
            }
            other => out.push_str(&regex_syntax::escape(&other.to_string())),
        }
        i += 1;
    }
    if braces > 0 {
        return Err(PatternError::Glob("unclosed `{`".into()));
    }
    out.push('$');
    Ok(out)
}

/// Refuses unbounded repetition of something that matches text of varying length (`(a+)+`,
/// `(a|aa)*`: the classic catastrophic shapes), bounded counts
/// above PostgreSQL's limit, and nested counts that multiply past [`MAX_EXPANSION`].
fn check_shape(h: &Hir, expansion: u64) -> Result<(), PatternError> {
    match h.kind() {
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => Ok(()),
        HirKind::Repetition(r) => {
            if r.min > MAX_REPEAT || r.max.is_some_and(|m| m > MAX_REPEAT) {
                return Err(PatternError::TooLarge(format!(
                    "a repetition count is above {MAX_REPEAT}"
                )));
            }
            let unbounded = r.max.is_none();
            let (lo, hi) = char_len(&r.sub);
            let variable = hi != Some(lo);
            if unbounded && variable {
                return Err(PatternError::Catastrophic(
                    "nested unbounded repetition such as `(a+)+` or `(.*)*`",
                ));
            }
            let factor = u64::from(r.max.unwrap_or(r.min).max(1));
            let e = expansion.saturating_mul(factor);
            if e > MAX_EXPANSION {
                return Err(PatternError::TooLarge(format!(
                    "nested repetitions expand to more than {MAX_EXPANSION} copies"
                )));
            }
            check_shape(&r.sub, e)
        }
        HirKind::Capture(c) => check_shape(&c.sub, expansion),
        HirKind::Concat(v) | HirKind::Alternation(v) => {
            v.iter().try_for_each(|s| check_shape(s, expansion))
        }
    }
}

/// Minimum and maximum length in characters (not bytes) of what `h` matches.
fn char_len(h: &Hir) -> (u64, Option<u64>) {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => (0, Some(0)),
        HirKind::Literal(l) => {
            let n = String::from_utf8_lossy(&l.0).chars().count() as u64;
            (n, Some(n))
        }
        HirKind::Class(_) => (1, Some(1)),
        HirKind::Repetition(r) => {
            let (lo, hi) = char_len(&r.sub);
            let min = lo.saturating_mul(u64::from(r.min));
            let max = match (hi, r.max) {
                (Some(0), _) => Some(0),
                (Some(h), Some(m)) => Some(h.saturating_mul(u64::from(m))),
                _ => None,
            };
            (min, max)
        }
        HirKind::Capture(c) => char_len(&c.sub),
        HirKind::Concat(v) => v.iter().map(char_len).fold((0, Some(0)), |(a, b), (c, d)| {
            (a.saturating_add(c), b.zip(d).map(|(b, d)| b.saturating_add(d)))
        }),
        HirKind::Alternation(v) => {
            let parts: Vec<_> = v.iter().map(char_len).collect();
            let lo = parts.iter().map(|p| p.0).min().unwrap_or(0);
            let hi = parts.iter().try_fold(0u64, |m, p| p.1.map(|x| m.max(x)));
            (lo, hi)
        }
    }
}

fn push_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else if (c as u32) <= 0xFFFF {
        out.push_str(&format!("\\u{:04X}", c as u32));
    } else {
        out.push_str(&format!("\\U{:08X}", c as u32));
    }
}

fn render(h: &Hir, out: &mut String) -> Result<(), PatternError> {
    match h.kind() {
        HirKind::Empty => out.push_str("(?:)"),
        HirKind::Literal(lit) => {
            let s = std::str::from_utf8(&lit.0)
                .map_err(|_| PatternError::Unsupported("byte-oriented literals"))?;
            s.chars().for_each(|c| push_char(out, c));
        }
        HirKind::Class(Class::Unicode(cls)) => {
            // Text in PostgreSQL never holds NUL, so ranges start at U+0001.
            let ranges: Vec<(char, char)> = cls
                .ranges()
                .iter()
                .filter_map(|r| {
                    let start = if r.start() == '\0' { '\u{1}' } else { r.start() };
                    (r.end() >= start && r.end() != '\0').then_some((start, r.end()))
                })
                .collect();
            if ranges.is_empty() {
                // Matches nothing: only NUL, which text cannot hold.
                out.push_str("[\\u0000]");
                return Ok(());
            }
            out.push('[');
            for (a, b) in ranges {
                push_char(out, a);
                if b != a {
                    out.push('-');
                    push_char(out, b);
                }
            }
            out.push(']');
        }
        HirKind::Class(Class::Bytes(_)) => {
            return Err(PatternError::Unsupported("byte classes (`(?-u)`)"));
        }
        HirKind::Look(look) => match look {
            Look::Start => out.push('^'),
            Look::End => out.push('$'),
            _ => {
                return Err(PatternError::Unsupported(
                    "word boundaries and multi-line anchors (use `^`, `$` and `/`)",
                ))
            }
        },
        HirKind::Repetition(r) => {
            out.push_str("(?:");
            render(&r.sub, out)?;
            out.push(')');
            match (r.min, r.max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (m, None) => out.push_str(&format!("{{{m},}}")),
                (m, Some(n)) if m == n => out.push_str(&format!("{{{m}}}")),
                (m, Some(n)) => out.push_str(&format!("{{{m},{n}}}")),
            }
        }
        HirKind::Capture(c) => {
            out.push_str("(?:");
            render(&c.sub, out)?;
            out.push(')');
        }
        HirKind::Concat(v) => {
            for s in v {
                render(s, out)?;
            }
        }
        HirKind::Alternation(v) => {
            out.push_str("(?:");
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                render(s, out)?;
            }
            out.push(')');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(glob: &str, path: &str) -> bool {
        Pattern::glob(glob).unwrap().is_match(path)
    }

    #[test]
    fn globs() {
        assert!(g("*.iso", "/srv/a/b/x.iso"));
        assert!(!g("*.iso", "/srv/a/b/x.iso.part"));
        assert!(g("/srv/*/x.iso", "/srv/a/x.iso"));
        assert!(!g("/srv/*/x.iso", "/srv/a/b/x.iso"));
        assert!(g("/srv/**/x.iso", "/srv/x.iso"));
        assert!(g("/srv/**/x.iso", "/srv/a/b/x.iso"));
        assert!(g("/srv/**", "/srv/a/b"));
        assert!(!g("/srv/**", "/srvx/a"));
        assert!(g("**/cache/*", "/home/u/cache/f"));
        assert!(g("file?.log", "/var/file1.log"));
        assert!(!g("file?.log", "/var/file/.log"));
        assert!(g("*.{jpg,png}", "/p/a.png"));
        assert!(g("[ab]*.txt", "/p/b1.txt"));
        assert!(!g("[!ab]*.txt", "/p/b1.txt"));
        assert!(g("[!ab]*.txt", "/p/c1.txt"));
        assert!(g("\\*.txt", "/p/*.txt"));
        assert!(!g("\\*.txt", "/p/a.txt"));
        assert!(g("*", "/p/with\nnewline"));
    }

    #[test]
    fn glob_shapes_agree_with_the_matcher() {
        for (glob, shape) in [
            ("*.iso", Shape::Suffix(".iso".into())),
            ("/srv/a/**", Shape::Prefix("/srv/a/".into())),
            ("/srv/a**", Shape::Prefix("/srv/a".into())),
            ("/srv/a/x.iso", Shape::Exact("/srv/a/x.iso".into())),
            ("*", Shape::Regex),
            ("**.iso", Shape::Regex),
            ("/srv/*/x", Shape::Regex),
            ("a*", Shape::Regex),
            ("**/tmp/*", Shape::Regex),
        ] {
            let p = Pattern::glob(glob).unwrap();
            assert_eq!(p.shape(), &shape, "{glob}");
            for path in [
                "/srv/a/x.iso",
                "/srv/a",
                "/srv/ab/y.iso",
                "x.iso",
                "/srv/a/b/c",
                "/q/.iso",
                "/iso",
            ] {
                let by_shape = match p.shape() {
                    Shape::Regex => continue,
                    Shape::Prefix(x) => path.starts_with(x.as_str()),
                    Shape::Suffix(x) => path.ends_with(x.as_str()),
                    Shape::Exact(x) => path == x,
                };
                assert_eq!(by_shape, p.is_match(path), "{glob} on {path}");
            }
        }
    }

    #[test]
    fn bad_globs() {
        for (glob, want) in [
            ("", "empty"),
            ("srv/*.iso", "absolute"),
            ("[abc", "unclosed"),
            ("{a,b", "unclosed"),
            ("a\\", "trailing"),
        ] {
            let e = Pattern::glob(glob).unwrap_err().to_string();
            assert!(e.contains(want), "{glob}: {e}");
        }
    }

    #[test]
    fn refuses_dangerous_regexes() {
        for (re, want) in [
            ("(a+)+$", "catastrophic"),
            ("(.*)*x", "catastrophic"),
            ("(a|aa)*b*", "catastrophic"),
            ("(foo|bar)*[a-z]+(ab)+", "ok"),
            ("((ab)*c)*", "catastrophic"),
            ("a{300}", "above 255"),
            ("(a{100}){100}", "more than 1000"),
            ("\\bword\\b", "word boundaries"),
            ("(?m)^x", "multi-line"),
            ("(?-u)[\\x80-\\xff]", "invalid UTF-8"),
            ("(unclosed", "invalid regular expression"),
            ("a\0b", "NUL"),
        ] {
            let r = Pattern::regex(re);
            if want == "ok" {
                assert!(r.is_ok(), "{re}: {r:?}");
            } else {
                let e = r.unwrap_err().to_string();
                assert!(e.contains(want), "{re}: {e}");
            }
        }
        assert!(Pattern::regex(&"a".repeat(2000)).unwrap_err().to_string().contains("longer"));
    }

    #[test]
    fn renders_explicit_sql() {
        let p = Pattern::regex(r"^/srv/(?i:tmp)[0-9]+\.log$").unwrap();
        assert_eq!(p.sql(), r"^\u002Fsrv\u002F[Tt][Mm][Pp](?:[0-9])+\u002Elog$");
    }
}
