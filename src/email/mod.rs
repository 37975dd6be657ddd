//! Email addresses: when two are the same address, and stored addresses kept to that rule.
//!
//! The rule (version [`RULE`]), applied wherever addresses are compared (one active
//! registration per address and event, accounts and logins, searches):
//!
//! - white space around the address is dropped;
//! - the local part (before the `@`) is put in Unicode normalization form NFKC, case-folded
//!   (Unicode default full case folding) and put in NFKC again: `Kate`, `\u{212a}ate` (Kelvin
//!   sign), `ｋａｔｅ` and `KATE` are one local part, and so are `Straße` and `STRASSE`;
//! - the domain goes through IDNA processing (UTS 46 ToASCII: mapping, NFC, Punycode, STD3
//!   rules and DNS lengths): `Пример.РФ` and `xn--e1afmkfd.xn--p1ai` are one domain. A
//!   domain IDNA refuses (which validation does not let in) is compared by the local part's
//!   rule instead.
//!
//! Strictly, a mailbox's local part may be case-sensitive (RFC 5321); no real mail system
//! makes `Anna` and `anna` two people, while taking them for two would let one person hold
//! two places. The comparison form is stored next to the address as written
//! (`email_normalized`), with the number of the rule that made it (`email_rule`); addresses
//! are shown and mailed as written. ICU4X does the Unicode work (the same data the `idna`
//! crate uses), so normalization, folding and IDNA agree on one Unicode version.

mod stored;

use std::borrow::Cow;

use icu_casemap::CaseMapper;
use icu_normalizer::ComposingNormalizerBorrowed;
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

pub use stored::bring_to_rule;

/// The number of the comparison rule. Raise it when the rule changes, together with a
/// migration that sets the `email_rule` columns' default to it and rebuilds the partial
/// index on `email_rule < RULE`; stored keys are then brought to it at the next start.
pub const RULE: i16 = 1;

/// The form of an address used to compare two of them.
pub fn normalise(address: &str) -> String {
    let address = address.trim();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let domain = domain_to_ascii(domain).unwrap_or_else(|| fold(domain));
            format!("{}@{domain}", fold(local))
        }
        None => fold(address),
    }
}

/// Text in the form local parts are compared in (NFKC, case-folded, NFKC): also for
/// searching part of an address.
pub fn fold(text: &str) -> String {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let folded = CaseMapper::new()
        .fold_string(&nfkc.normalize(text))
        .into_owned();
    nfkc.normalize(&folded).into_owned()
}

/// The domain's ASCII (Punycode) form, or `None` when IDNA refuses it.
pub fn domain_to_ascii(domain: &str) -> Option<String> {
    Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .ok()
        .map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) -> bool {
        normalise(a) == normalise(b)
    }

    #[test]
    fn case_and_compatibility_forms_do_not_make_another_address() {
        assert!(same("  Anna@Example.ORG ", "anna@example.org"));
        // K: the Kelvin sign, U+212A.
        assert!(same("\u{212a}ate@example.org", "kate@example.org"));
        assert!(same("Straße@example.org", "STRASSE@example.org"));
        assert!(same("ｋａｔｅ@example.org", "kate@example.org"));
        assert!(same("\u{fb01}nance@example.org", "finance@example.org"));
        assert!(same("Ёлкин@example.org", "ёлкин@example.org"));
        assert!(!same("anna@example.org", "anne@example.org"));
    }

    #[test]
    fn internationalised_domains_compare_in_their_ascii_form() {
        assert!(same("anna@пример.рф", "anna@xn--e1afmkfd.xn--p1ai"));
        assert!(same("anna@ПРИМЕР.РФ", "ANNA@XN--E1AFMKFD.XN--P1AI"));
        assert_eq!(normalise("Анна@Пример.РФ"), "анна@xn--e1afmkfd.xn--p1ai");
        // Full-width dot and letters map to the same domain (UTS 46).
        assert!(same("anna@ｅｘａｍｐｌｅ\u{ff0e}org", "anna@example.org"));
    }

    #[test]
    fn domains_that_idna_refuses_are_told() {
        assert_eq!(
            domain_to_ascii("Пример.рф").as_deref(),
            Some("xn--e1afmkfd.xn--p1ai")
        );
        for bad in ["b_c.d", "a..b", "-", &format!("{}.org", "a".repeat(64))] {
            assert_eq!(domain_to_ascii(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_rule_is_stable() {
        for address in [
            "\u{212a}ate@example.org",
            "Straße@Пример.рф",
            "ǅemal@example.org",
            "\u{1e9e}@example.org",
            "ΐ@example.org",
            "İstanbul@example.org",
            "a@b",
            "a@b_c.d",
            "no-at-sign",
        ] {
            let once = normalise(address);
            assert_eq!(normalise(&once), once, "{address}");
        }
    }
}
