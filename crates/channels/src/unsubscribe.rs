//! Signed one-click unsubscribe links: `<PUBLIC_BASE_URL>/unsubscribe/<token>`, where the token
//! carries the user id and a truncated HMAC-SHA256 of it, so nobody can unsubscribe someone
//! else by guessing ids.
//!
//! Token = base64url (no padding) of the user id (8 bytes, big-endian) followed by the first
//! 16 bytes (128 bits) of HMAC-SHA256(secret, "broadcast-unsubscribe-v1\0" + id): 32 characters.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broadcast_domain::{UnsubscribeLinks, UserId};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

use crate::error::{Error, Result};

/// Separates these MACs from any other use of the same secret.
const CONTEXT: &[u8] = b"broadcast-unsubscribe-v1\0";
/// Bytes of the MAC kept in the token.
const TAG_LEN: usize = 16;
/// Bytes of the user id in the token.
const ID_LEN: usize = 8;
/// Shortest secret accepted, in bytes.
const MIN_SECRET_LEN: usize = 16;

/// Makes and checks unsubscribe links.
#[derive(Clone)]
pub struct SignedUnsubscribeLinks {
    base_url: Option<String>,
    secret: SecretString,
}

impl fmt::Debug for SignedUnsubscribeLinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedUnsubscribeLinks")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl SignedUnsubscribeLinks {
    /// Links under `base_url` (`PUBLIC_BASE_URL`; `None` makes no links but still verifies
    /// tokens), signed with `secret` (at least 16 bytes).
    pub fn new(base_url: Option<Url>, secret: SecretString) -> Result<Self> {
        if secret.expose_secret().len() < MIN_SECRET_LEN {
            return Err(Error::config(format!(
                "the unsubscribe signing secret must be at least {MIN_SECRET_LEN} bytes long"
            )));
        }
        let base_url = match base_url {
            None => None,
            Some(url) => {
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(Error::config(format!(
                        "the public base URL must be an http(s) URL with a host, not `{url}`"
                    )));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(Error::config(format!(
                        "the public base URL must not have a query or fragment: `{url}`"
                    )));
                }
                Some(url.as_str().trim_end_matches('/').to_owned())
            }
        };
        Ok(Self { base_url, secret })
    }

    /// The token of a user (URL-safe, 32 characters).
    pub fn token_for(&self, user: UserId) -> String {
        let id = user.to_be_bytes();
        let tag = self.mac(&id).finalize().into_bytes();
        let mut raw = [0u8; ID_LEN + TAG_LEN];
        raw[..ID_LEN].copy_from_slice(&id);
        raw[ID_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The user a token belongs to, when it was made with this secret; the MAC is compared in
    /// constant time.
    pub fn verify(&self, token: &str) -> Option<UserId> {
        if token.len() != (ID_LEN + TAG_LEN).div_ceil(3) * 4 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() != ID_LEN + TAG_LEN {
            return None;
        }
        let (id, tag) = raw.split_at(ID_LEN);
        let id: [u8; ID_LEN] = id.try_into().ok()?;
        self.mac(&id).verify_truncated_left(tag).ok()?;
        Some(UserId::from_be_bytes(id))
    }

    fn mac(&self, id: &[u8; ID_LEN]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(self.secret.expose_secret().as_bytes())
                .expect("HMAC accepts keys of any length");
        mac.update(CONTEXT);
        mac.update(id);
        mac
    }
}

impl UnsubscribeLinks for SignedUnsubscribeLinks {
    fn url_for(&self, user: UserId) -> Option<String> {
        let base = self.base_url.as_ref()?;
        Some(format!("{base}/unsubscribe/{}", self.token_for(user)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(base: Option<&str>, secret: &str) -> SignedUnsubscribeLinks {
        SignedUnsubscribeLinks::new(
            base.map(|b| Url::parse(b).unwrap()),
            SecretString::from(secret.to_owned()),
        )
        .unwrap()
    }

    #[test]
    fn urls_round_trip_and_never_show_the_secret() {
        let l = links(
            Some("https://b.example.org/app/"),
            "0123456789abcdef-secret",
        );
        let url = l.url_for(42).unwrap();
        let token = url
            .strip_prefix("https://b.example.org/app/unsubscribe/")
            .unwrap();
        assert_eq!(token.len(), 32);
        assert_eq!(l.verify(token), Some(42));
        assert_eq!(l.verify(&l.token_for(i64::MAX)), Some(i64::MAX));
        assert!(!format!("{l:?}").contains("secret"));
        assert_eq!(links(None, "0123456789abcdef").url_for(1), None);
    }

    #[test]
    fn tampered_and_foreign_tokens_are_rejected() {
        let l = links(Some("https://b.example.org"), "0123456789abcdef-secret");
        let token = l.token_for(42);
        // Another user's id with this user's MAC.
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[7] ^= 1;
        assert_eq!(l.verify(&URL_SAFE_NO_PAD.encode(&raw)), None);
        // A flipped MAC bit.
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[20] ^= 0x80;
        assert_eq!(l.verify(&URL_SAFE_NO_PAD.encode(&raw)), None);
        // Another secret, truncation, garbage.
        assert_eq!(links(None, "another-secret-of-16").verify(&token), None);
        assert_eq!(l.verify(&token[..31]), None);
        assert_eq!(l.verify(&format!("{token}A")), None);
        assert_eq!(l.verify("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"), None);
        assert_eq!(l.verify(""), None);
    }

    #[test]
    fn short_secrets_and_bad_urls_are_refused() {
        let err =
            SignedUnsubscribeLinks::new(None, SecretString::from("short".to_owned())).unwrap_err();
        assert!(err.to_string().contains("at least 16 bytes"), "{err}");
        let err = SignedUnsubscribeLinks::new(
            Some(Url::parse("https://x.org/?a=b").unwrap()),
            SecretString::from("0123456789abcdef".to_owned()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("query"), "{err}");
    }
}
