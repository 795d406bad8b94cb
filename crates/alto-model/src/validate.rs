//! Validation of names that users type: tenant names, usernames, host names.
//! Each returns a human sentence on failure; the API maps it to `validation_failed`.

/// A display name: 1–128 characters, no control characters, not only whitespace.
pub fn display_name(field: &str, s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if s.chars().count() > 128 {
        return Err(format!("{field} must be at most 128 characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

/// A login name: 3–64 characters of `a-z 0-9 . _ @ + -`, starting with a letter or digit.
/// Usernames are compared in lower case.
pub fn username(s: &str) -> Result<(), String> {
    let len = s.len();
    if !(3..=64).contains(&len) {
        return Err("username must be 3 to 64 characters".into());
    }
    let ok = s.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '@' | '+' | '-')
    });
    if !ok {
        return Err("username may contain only a-z, 0-9 and . _ @ + -".into());
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("username must start with a letter or digit".into());
    }
    Ok(())
}

/// A password: 12–1024 bytes. Length beats composition rules (NIST SP 800-63B).
pub fn password(s: &str) -> Result<(), String> {
    if s.len() < 12 {
        return Err("password must be at least 12 characters".into());
    }
    if s.len() > 1024 {
        return Err("password must be at most 1024 bytes".into());
    }
    Ok(())
}

/// A host name as the agent reports it: 1–253 characters of letters, digits, `.`, `-`, `_`.
pub fn hostname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("hostname must be 1 to 253 characters".into());
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return Err("hostname may contain only letters, digits and . - _".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(username("alice@example.com").is_ok());
        assert!(username("Alice").is_err());
        assert!(username("a'; drop table users;--").is_err());
        assert!(username("ab").is_err());
        assert!(username(".alice").is_err());
    }

    #[test]
    fn names() {
        assert!(display_name("name", "Acme Corp").is_ok());
        assert!(display_name("name", "  ").is_err());
        assert!(display_name("name", "a\nb").is_err());
        assert!(display_name("name", &"x".repeat(129)).is_err());
        assert!(hostname("fs-01.example").is_ok());
        assert!(hostname("fs 01").is_err());
        assert!(password("short").is_err());
        assert!(password("correct horse battery").is_ok());
    }
}
