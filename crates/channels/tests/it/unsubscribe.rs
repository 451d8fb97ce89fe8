//! Signed unsubscribe links through the public API.

use broadcast_channels::SignedUnsubscribeLinks;
use broadcast_domain::UnsubscribeLinks;
use secrecy::SecretString;

#[test]
fn links_verify_and_tampering_is_rejected() {
    let links = SignedUnsubscribeLinks::new(
        Some("https://broadcast.example.org".parse().unwrap()),
        SecretString::from("an-admin-secret-of-enough-length".to_owned()),
    )
    .unwrap();
    let url = links.url_for(1234).unwrap();
    let token = url
        .strip_prefix("https://broadcast.example.org/unsubscribe/")
        .unwrap();
    assert_eq!(links.verify(token), Some(1234));
    assert_ne!(links.token_for(1234), links.token_for(1235));
    for i in 0..token.len() {
        let mut chars: Vec<char> = token.chars().collect();
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(links.verify(&tampered), None, "position {i}: {tampered}");
    }
}
