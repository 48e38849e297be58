//! A string that must never be printed: secret keys, tokens and proxy passwords.

use std::fmt;

/// Holds a secret value. `Debug` and `Display` print a placeholder so a secret that
/// ends up in a log field or error message by accident still does not leak.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that must send it (an Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_the_value() {
        let s = Secret::new("sk_test_canary");
        assert!(!format!("{s} {s:?}").contains("canary"));
        assert_eq!(s.expose(), "sk_test_canary");
    }
}
