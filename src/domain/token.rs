//! Bearer tokens: long random secrets shown once and stored only as SHA-256.
//!
//! A token reads `tsa_<merchant>_<secret>` (merchant admin) or
//! `tst_<merchant>_<secret>` (terminal). The merchant id in clear lets the
//! lookup be routed by merchant (the key every tenant table leads with) and
//! the prefix lets secret scanners recognise a leaked token. The secret is
//! 256 random bits, so a fast hash is enough: there is nothing to brute-force.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    MerchantAdmin,
    Terminal,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::MerchantAdmin => "tsa",
            TokenKind::Terminal => "tst",
        }
    }
}

/// A token as presented by a client, checked for shape but not yet looked up.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PresentedToken {
    pub kind: TokenKind,
    pub merchant_id: Uuid,
    pub hash: TokenHash,
}

/// SHA-256 of the whole token text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Makes a new token for `merchant_id`; the caller shows the text once and stores the hash.
pub fn generate(kind: TokenKind, merchant_id: Uuid) -> (String, TokenHash) {
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let text = format!(
        "{}_{}_{}",
        kind.prefix(),
        merchant_id.simple(),
        URL_SAFE_NO_PAD.encode(secret)
    );
    let hash = TokenHash::of(&text);
    (text, hash)
}

/// Reads a token's shape. `None` for anything that cannot be one of ours.
pub fn parse(text: &str) -> Option<PresentedToken> {
    let mut parts = text.splitn(3, '_');
    let kind = match parts.next()? {
        "tsa" => TokenKind::MerchantAdmin,
        "tst" => TokenKind::Terminal,
        _ => return None,
    };
    let merchant = parts.next()?;
    let secret = parts.next()?;
    if merchant.len() != 32 || URL_SAFE_NO_PAD.decode(secret).ok()?.len() != SECRET_BYTES {
        return None;
    }
    let merchant_id = Uuid::try_parse(merchant).ok()?;
    Some(PresentedToken {
        kind,
        merchant_id,
        hash: TokenHash::of(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_to_its_merchant_and_hash() {
        let merchant = Uuid::new_v4();
        let (text, hash) = generate(TokenKind::Terminal, merchant);
        let parsed = parse(&text).expect("own token parses");
        assert_eq!(parsed.kind, TokenKind::Terminal);
        assert_eq!(parsed.merchant_id, merchant);
        assert!(parsed.hash == hash);
    }

    #[test]
    fn two_tokens_never_repeat() {
        let merchant = Uuid::new_v4();
        assert_ne!(
            generate(TokenKind::MerchantAdmin, merchant).0,
            generate(TokenKind::MerchantAdmin, merchant).0
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let (text, _) = generate(TokenKind::MerchantAdmin, Uuid::new_v4());
        assert!(parse("").is_none());
        assert!(parse("Bearer x").is_none());
        assert!(parse(&text.replace("tsa_", "tsx_")).is_none());
        assert!(parse(&text[..text.len() - 1]).is_none());
        assert!(parse(&format!("{text}A")).is_none());
    }
}
