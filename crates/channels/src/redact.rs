//! Removes secrets (the bot token, the SMTP password) from every text a channel produces.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// What replaces a secret in messages.
pub(crate) const REDACTED: &str = "<redacted>";

/// Knows the secrets of one channel, in every spelling they may appear in, and scrubs them.
#[derive(Clone)]
pub(crate) struct Redactor {
    secrets: Vec<SecretString>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor for the given spellings; empty ones are ignored.
    pub(crate) fn new(spellings: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = spellings.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so that a spelling containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self {
            secrets: secrets.into_iter().map(SecretString::from).collect(),
        }
    }

    /// `text` with every secret replaced by `<redacted>`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            let secret = secret.expose_secret();
            if out.contains(secret) {
                out = out.replace(secret, REDACTED);
            }
        }
        out
    }

    /// The error and its whole source chain as one line, scrubbed.
    pub(crate) fn error_chain(&self, error: &(dyn std::error::Error + 'static)) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(inner) = source {
            let inner_text = inner.to_string();
            if !text.contains(&inner_text) {
                text.push_str(": ");
                text.push_str(&inner_text);
            }
            source = inner.source();
        }
        self.scrub(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_spelling_and_the_source_chain() {
        let r = Redactor::new(["12:AB".to_owned(), "12%3AAB".to_owned(), String::new()]);
        assert_eq!(
            r.scrub("url http://x/bot12:AB/send and bot12%3AAB"),
            "url http://x/bot<redacted>/send and bot<redacted>"
        );
        let io = std::io::Error::other("inner 12:AB");
        let outer = Outer(io);
        assert_eq!(r.error_chain(&outer), "outer: inner <redacted>");
        assert!(!format!("{r:?}").contains("12:AB"));
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
