//! systemd's unit-file syntax, in one place.
//!
//! Everything the user declares (argv words, environment values, descriptions) passes through
//! here on its way into a unit file, so that the process receives *exactly* what app.toml says.
//! systemd applies, in this order: `%` specifier expansion on the whole line, then word
//! splitting with C-style unquoting, then (for `ExecStart=` arguments only) `$VAR` expansion at
//! exec time. Each encoder below undoes exactly those steps, and refuses what systemd cannot
//! carry rather than writing a unit that means something else.

use std::fmt::Write as _;

/// A value that cannot be written into a unit file without changing its meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// NUL cannot be passed through execve(2) at all.
    #[error("contains a NUL character, which no process argument or variable can hold")]
    Nul,
    /// systemd refuses environment values with control characters other than tab and newline.
    #[error("contains the control character {0:?}, which systemd refuses in environment values")]
    ControlInEnv(char),
    /// systemd treats these characters at the start of the program path as flags.
    #[error(
        "starts with `{0}`, which systemd reads as an `ExecStart=` flag, not as part of the path"
    )]
    ExecPrefix(char),
    /// The program path is not expanded like the arguments, so `$` would reach `argv[0]` changed.
    #[error("contains `$`, which systemd would expand in argv[0] but not in the program path")]
    DollarInProgram,
    /// systemd refuses a unit line holding one of these as "not UTF-8 clean".
    #[error("contains the noncharacter U+{:04X}, which systemd refuses in unit files", u32::from(*.0))]
    Noncharacter(char),
    /// Environment variable names are restricted by systemd to shell-like identifiers.
    #[error(
        "is not a valid variable name; use letters, digits and `_`, not starting with a digit"
    )]
    EnvName,
}

/// Code points systemd's `utf8_is_valid` refuses although they are valid UTF-8: the
/// noncharacters U+FDD0..U+FDEF and U+nFFFE, U+nFFFF (`unichar_is_valid`). A unit line
/// holding one is ignored ("String is not UTF-8 clean"), which fails the unit's load for
/// `ExecStart=` and drops an `Environment=` assignment; escapes do not get them through.
pub fn is_noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// Characters systemd interprets as prefixes of the first `ExecStart=` word.
const EXEC_PREFIXES: &[char] = &['@', '-', ':', '+', '!', '|'];

/// Appends `s` as one double-quoted word with C escapes, `%` doubled, and (when `dollar`) `$`
/// doubled. Control characters other than NUL become escapes, so newlines and tabs survive.
fn push_quoted(out: &mut String, s: &str, dollar: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if dollar => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                // `\u` escapes are decoded by systemd's cunescape for any code point.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Renders an argv as the value of `ExecStart=`: every word quoted, so `;`, spaces, quotes,
/// backslashes, `%` and `$` all reach the process unchanged.
pub fn exec_line(argv: &[String]) -> Result<String, (usize, SyntaxError)> {
    let mut out = String::new();
    for (i, word) in argv.iter().enumerate() {
        if word.contains('\0') {
            return Err((i, SyntaxError::Nul));
        }
        if let Some(c) = word.chars().find(|&c| is_noncharacter(c)) {
            return Err((i, SyntaxError::Noncharacter(c)));
        }
        if i == 0 {
            if let Some(c) = word.chars().next().filter(|c| EXEC_PREFIXES.contains(c)) {
                return Err((0, SyntaxError::ExecPrefix(c)));
            }
            if word.contains('$') {
                return Err((0, SyntaxError::DollarInProgram));
            }
        } else {
            out.push(' ');
        }
        push_quoted(&mut out, word, true);
    }
    Ok(out)
}

/// Checks an environment variable name the way systemd does (`env_name_is_valid`).
pub fn check_env_name(name: &str) -> Result<(), SyntaxError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(SyntaxError::EnvName)
    }
}

/// Checks an environment value the way systemd does (`env_value_is_valid`): any UTF-8 but NUL
/// and control characters other than tab and newline.
pub fn check_env_value(value: &str) -> Result<(), SyntaxError> {
    match value
        .chars()
        .find(|&c| (c.is_ascii_control() && c != '\t' && c != '\n') || is_noncharacter(c))
    {
        None => Ok(()),
        Some('\0') => Err(SyntaxError::Nul),
        Some(c) if is_noncharacter(c) => Err(SyntaxError::Noncharacter(c)),
        Some(c) => Err(SyntaxError::ControlInEnv(c)),
    }
}

/// Renders one `NAME=value` assignment for `Environment=`, quoted. `Environment=` expands `%`
/// specifiers but not `$`, so only `%` and the quoting characters are escaped.
pub fn env_assignment(name: &str, value: &str) -> Result<String, SyntaxError> {
    check_env_name(name)?;
    check_env_value(value)?;
    let mut out = String::new();
    push_quoted(&mut out, &format!("{name}={value}"), false);
    Ok(out)
}

/// Escapes free text (a `Description=`) for a single-line unit setting: `%` doubled, control
/// characters replaced by spaces and noncharacters by U+FFFD, since a description is for
/// people.
pub fn free_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            c if is_noncharacter(c) => char::REPLACEMENT_CHARACTER,
            c => c,
        })
        .collect::<String>()
        .replace('%', "%%")
}

/// Escapes a path for settings that take one path and expand specifiers (`WorkingDirectory=`,
/// `ListenStream=`): `%` doubled. Paths with control characters are refused by the caller.
pub fn path_value(s: &str) -> String {
    s.replace('%', "%%")
}

/// Splits a command string into words like a POSIX shell would, without running one: single
/// quotes are literal, double quotes allow `\"`, `\\`, `\$` and `` \` `` escapes, a backslash
/// outside quotes escapes the next character. Expansions (`$x`, globs, `~`) are *not* performed:
/// the words are kept literally. Returns the byte offset of an unterminated quote on error.
pub fn split_shell_words(s: &str) -> Result<Vec<String>, ShellSplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => word.push(c),
                        None => return Err(ShellSplitError::Unterminated { quote: '\'', at }),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.peek() {
                            Some(&(_, e @ ('"' | '\\' | '$' | '`'))) => {
                                word.push(e);
                                chars.next();
                            }
                            Some(&(_, '\n')) => {
                                chars.next();
                            }
                            _ => word.push('\\'),
                        },
                        Some((_, c)) => word.push(c),
                        None => return Err(ShellSplitError::Unterminated { quote: '"', at }),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some((_, '\n')) => {}
                    Some((_, e)) => word.push(e),
                    None => return Err(ShellSplitError::TrailingBackslash { at }),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Why a command string could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellSplitError {
    /// A quote was opened and never closed.
    #[error("the {quote} quote opened here is never closed")]
    Unterminated {
        /// Which quote character.
        quote: char,
        /// Byte offset of the opening quote.
        at: usize,
    },
    /// The string ends with a lone backslash.
    #[error("the string ends with a lone backslash")]
    TrailingBackslash {
        /// Byte offset of the backslash.
        at: usize,
    },
}

impl ShellSplitError {
    /// Byte offset of the problem inside the command string.
    pub fn offset(&self) -> usize {
        match *self {
            Self::Unterminated { at, .. } | Self::TrailingBackslash { at } => at,
        }
    }
}

/// Reverses `push_quoted` the way systemd's `extract_first_word` with `EXTRACT_UNQUOTE |
/// EXTRACT_CUNESCAPE` does after specifier expansion. Used by the tests to check the encoders
/// without a running systemd; the real-systemd tests check the same round trip for real.
#[cfg(test)]
pub(crate) fn systemd_unquote_words(line: &str, dollar: bool) -> Vec<String> {
    // Specifier pass: `%%` -> `%` over the whole line (the only specifier we ever emit escaped).
    let line = line.replace("%%", "%");
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                '\\' => match chars.next() {
                    Some('n') => word.push('\n'),
                    Some('t') => word.push('\t'),
                    Some('r') => word.push('\r'),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| chars.next()).collect();
                        let cp = u32::from_str_radix(&hex, 16).expect("hex escape");
                        word.push(char::from_u32(cp).expect("code point"));
                    }
                    Some(e) => word.push(e),
                    None => {}
                },
                c if c.is_whitespace() && !quoted => break,
                c => word.push(c),
            }
        }
        if dollar {
            word = word.replace("$$", "$");
        }
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exec_line_quotes_every_word() {
        let argv = [
            "/usr/bin/node",
            "app.js",
            "a b",
            ";",
            "100%",
            "$HOME",
            "x\"y",
            "c:\\d",
        ]
        .map(String::from);
        assert_eq!(
            exec_line(&argv).unwrap(),
            r#""/usr/bin/node" "app.js" "a b" ";" "100%%" "$$HOME" "x\"y" "c:\\d""#
        );
    }

    #[test]
    fn exec_line_refuses_what_systemd_would_misread() {
        let refused = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            exec_line(&argv).unwrap_err()
        };
        assert_eq!(refused(&["-node"]), (0, SyntaxError::ExecPrefix('-')));
        assert_eq!(refused(&["@x"]), (0, SyntaxError::ExecPrefix('@')));
        assert_eq!(refused(&["/bin/$x"]), (0, SyntaxError::DollarInProgram));
        assert_eq!(refused(&["node", "a\0b"]), (1, SyntaxError::Nul));
        assert_eq!(
            refused(&["node", "a\u{10FFFF}"]),
            (1, SyntaxError::Noncharacter('\u{10FFFF}'))
        );
        assert_eq!(
            refused(&["/bin/\u{FDD0}"]),
            (0, SyntaxError::Noncharacter('\u{FDD0}'))
        );
        assert_eq!(
            check_env_value("\u{FFFE}"),
            Err(SyntaxError::Noncharacter('\u{FFFE}'))
        );
        assert!(check_env_value("\u{FEFF}\u{FFFD}\u{10FFFD}").is_ok());
        assert_eq!(free_text("a\u{FFFF}%"), "a\u{FFFD}%%");
    }

    #[test]
    fn env_values_follow_systemds_rules() {
        assert_eq!(
            env_assignment("A", "x \"y\" 50% $z").unwrap(),
            r#""A=x \"y\" 50%% $z""#
        );
        assert_eq!(env_assignment("A", "l1\nl2").unwrap(), r#""A=l1\nl2""#);
        assert_eq!(env_assignment("1A", "x"), Err(SyntaxError::EnvName));
        assert_eq!(env_assignment("A-B", "x"), Err(SyntaxError::EnvName));
        assert_eq!(
            env_assignment("A", "\u{1b}"),
            Err(SyntaxError::ControlInEnv('\u{1b}'))
        );
        assert_eq!(env_assignment("A", "\0"), Err(SyntaxError::Nul));
    }

    #[test]
    fn shell_words_split_like_sh() {
        let w = |s: &str| split_shell_words(s).unwrap();
        assert_eq!(
            w("node  app.js --port 3000"),
            ["node", "app.js", "--port", "3000"]
        );
        assert_eq!(
            w(r#"a 'b c' "d \"e\" \$f" g\ h"#),
            ["a", "b c", "d \"e\" $f", "g h"]
        );
        assert_eq!(w(r#"'' """#), ["", ""]);
        assert_eq!(w("$HOME ~ *"), ["$HOME", "~", "*"]);
        assert_eq!(
            split_shell_words("a 'b"),
            Err(ShellSplitError::Unterminated { quote: '\'', at: 2 })
        );
        assert_eq!(
            split_shell_words("a\\"),
            Err(ShellSplitError::TrailingBackslash { at: 1 })
        );
    }

    fn arg() -> impl Strategy<Value = String> {
        // Bias towards the characters that matter to systemd's parser.
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(vec![
                    ' ', '"', '\'', '\\', '%', '$', ';', '{', '}', 'i', 'n', '\n', '\t', 'é', '☃'
                ]),
                1 => any::<char>().prop_filter("no NUL", |c| *c != '\0'),
            ],
            0..12,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #[test]
        fn exec_line_round_trips(args in prop::collection::vec(arg(), 0..6)) {
            let mut argv = vec!["/bin/prog".to_string()];
            argv.extend(args);
            let line = exec_line(&argv).unwrap();
            prop_assert!(!line.contains('\n'), "a unit line must stay one line");
            prop_assert_eq!(systemd_unquote_words(&line, true), argv);
        }

        #[test]
        fn env_assignment_round_trips(value in arg()) {
            match env_assignment("V", &value) {
                Ok(line) => {
                    prop_assert!(!line.contains('\n'));
                    prop_assert_eq!(systemd_unquote_words(&line, false), vec![format!("V={value}")]);
                }
                Err(SyntaxError::ControlInEnv(c)) => prop_assert!(value.contains(c)),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn shell_split_of_quoted_words_is_identity(args in prop::collection::vec(arg(), 1..6)) {
            // Quoting each word in single quotes (with '\'' for quotes) must split back exactly.
            let line = args
                .iter()
                .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
                .collect::<Vec<_>>()
                .join(" ");
            prop_assert_eq!(split_shell_words(&line).unwrap(), args);
        }
    }
}
