//! Password hashing for administrators: argon2id with a random salt, stored as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$...`). The CLI's `admin create-user` / `set-password` hash
//! with [`hash_password`]; the admin panel checks logins with [`verify_password`].

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use broadcast_domain::{Error, Result};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes (hashing very long inputs is a denial-of-service lever).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes a password with argon2id (the crate's recommended parameters) and a fresh random
/// salt. A password shorter than [`MIN_PASSWORD_CHARS`] characters or longer than
/// [`MAX_PASSWORD_BYTES`] bytes is [`Error::Invalid`].
pub fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Internal(format!("cannot hash the password: {e}")))
}

/// True when `password` matches `hash` (a PHC string made by [`hash_password`]). A malformed
/// hash, or a password over [`MAX_PASSWORD_BYTES`], never matches. The comparison of the
/// derived keys is constant-time.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::Invalid(format!(
            "the password is too short: use at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::Invalid(format!(
            "the password is too long: use at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password("correct horse", &a));
        assert!(verify_password("correct horse", &b));
        assert!(!verify_password("correct horsE", &a));
        assert!(!verify_password("", &a));
    }

    #[test]
    fn bad_input_is_refused_and_bad_hashes_never_match() {
        let err = hash_password("short").unwrap_err().to_string();
        assert!(err.contains("at least 8 characters"), "{err}");
        let err = hash_password(&"x".repeat(MAX_PASSWORD_BYTES + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("too long"), "{err}");
        assert!(!verify_password("anything", "not a hash"));
        assert!(!verify_password("anything", ""));
        assert!(!verify_password(
            "anything",
            "$argon2id$v=19$m=19456,t=2,p=1$bad$bad"
        ));
    }
}
