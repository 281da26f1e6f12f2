//! `${VAR}` and `${VAR:-default}` in connection strings.
//!
//! Secrets (database passwords, endpoints with credentials) come from the
//! environment, never from a committed file. Interpolation happens on the
//! parsed string values that accept it, not on the raw file, so every error
//! still points at the right line and column.

/// Expand `${VAR}` / `${VAR:-default}` using `lookup`. `$$` is a literal `$`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body_and_more) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body_and_more
            .find('}')
            .ok_or_else(|| "unterminated `${` in value".to_string())?;
        let body = &body_and_more[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{body}}}` is not a valid variable reference"));
        }
        match lookup(name).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(&v),
            None => match default {
                Some(d) => out.push_str(d),
                None => {
                    return Err(format!(
                        "environment variable {name} is not set and `${{{name}}}` has no default (write `${{{name}:-default}}`)"
                    ));
                }
            },
        }
        rest = &body_and_more[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// True when a URL written in a file carries a literal password
/// (`scheme://user:secret@host`), which must come from the environment instead.
pub fn has_literal_password(raw: &str) -> bool {
    let Some((_, after_scheme)) = raw.split_once("://") else {
        return false;
    };
    let authority = after_scheme.split('/').next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => match userinfo.split_once(':') {
            Some((_, pw)) => !pw.is_empty() && !pw.starts_with("${"),
            None => false,
        },
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_and_defaulted_variables() {
        assert_eq!(expand("pg://${HOST}/x", env).unwrap(), "pg://db.internal/x");
        assert_eq!(
            expand("${NOPE:-sqlite://a.db}", env).unwrap(),
            "sqlite://a.db"
        );
        assert_eq!(expand("${EMPTY:-d}", env).unwrap(), "d");
        assert_eq!(expand("a$$b", env).unwrap(), "a$b");
        assert!(expand("${NOPE}", env).unwrap_err().contains("NOPE"));
        assert!(expand("${oops", env).is_err());
    }

    #[test]
    fn spots_literal_passwords_only() {
        assert!(has_literal_password("postgres://u:hunter2@h/db"));
        assert!(!has_literal_password("postgres://u:${PGPASS}@h/db"));
        assert!(!has_literal_password("postgres://u@h/db"));
        assert!(!has_literal_password("sqlite://var/app.db?mode=rwc"));
    }
}
