//! Checksums and tables: Luhn, ABA routing numbers, SSN ranges, IBAN lengths and mod 97.

/// Luhn checksum over the digits of `s` (other bytes, i.e. separators, are skipped).
pub(super) fn luhn(s: &[u8]) -> bool {
    // the doubled digit, reduced: 2d or 2d - 9
    const DOUBLED: [u32; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
    let mut sum = 0u32;
    let mut double = false;
    for &b in s.iter().rev() {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            continue;
        }
        sum += if double { DOUBLED.get(usize::from(d)).copied().unwrap_or(0) } else { u32::from(d) };
        double = !double;
    }
    // (not `is_multiple_of`: the workspace supports Rust 1.80)
    matches!(sum % 10, 0)
}

/// ABA routing number: 9 digits, checksum 3·(d1+d4+d7) + 7·(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10),
/// and a Federal Reserve prefix (00–12, 21–32, 61–72, 80).
pub(super) fn aba(s: &[u8]) -> bool {
    let [a, b, c, d, e, f, g, h, i] = *s else { return false };
    let v = |x: u8| u32::from(x.wrapping_sub(b'0'));
    let prefix = v(a) * 10 + v(b);
    if !matches!(prefix, 0..=12 | 21..=32 | 61..=72 | 80) {
        return false;
    }
    let sum = 3 * (v(a) + v(d) + v(g)) + 7 * (v(b) + v(e) + v(h)) + (v(c) + v(f) + v(i));
    matches!(sum % 10, 0)
}

/// `ddd-dd-dddd` / `ddd dd dddd` (shape already checked): area not 000, 666 or 9xx, group not
/// 00, serial not 0000.
pub(super) fn ssn_ok(s: &[u8]) -> bool {
    let [a1, a2, a3, _, g1, g2, _, s1, s2, s3, s4] = *s else { return false };
    let area = [a1, a2, a3];
    area != *b"000" && area != *b"666" && a1 != b'9' && [g1, g2] != *b"00" && [s1, s2, s3, s4] != *b"0000"
}

/// IBAN length of a country (ISO 3166 alpha-2, uppercase), per the SWIFT IBAN registry.
pub(super) fn iban_len(a: u8, b: u8) -> Option<usize> {
    let len = match [a, b] {
        [b'A', b'D'] => 24, // Andorra
        [b'A', b'E'] => 23, // United Arab Emirates
        [b'A', b'L'] => 28, // Albania
        [b'A', b'T'] => 20, // Austria
        [b'A', b'Z'] => 28, // Azerbaijan
        [b'B', b'A'] => 20, // Bosnia and Herzegovina
        [b'B', b'E'] => 16, // Belgium
        [b'B', b'G'] => 22, // Bulgaria
        [b'B', b'H'] => 22, // Bahrain
        [b'B', b'I'] => 27, // Burundi
        [b'B', b'R'] => 29, // Brazil
        [b'B', b'Y'] => 28, // Belarus
        [b'C', b'H'] => 21, // Switzerland
        [b'C', b'R'] => 22, // Costa Rica
        [b'C', b'Y'] => 28, // Cyprus
        [b'C', b'Z'] => 24, // Czechia
        [b'D', b'E'] => 22, // Germany
        [b'D', b'J'] => 27, // Djibouti
        [b'D', b'K'] => 18, // Denmark
        [b'D', b'O'] => 28, // Dominican Republic
        [b'E', b'E'] => 20, // Estonia
        [b'E', b'G'] => 29, // Egypt
        [b'E', b'S'] => 24, // Spain
        [b'F', b'I'] => 18, // Finland
        [b'F', b'K'] => 18, // Falkland Islands
        [b'F', b'O'] => 18, // Faroe Islands
        [b'F', b'R'] => 27, // France
        [b'G', b'B'] => 22, // United Kingdom
        [b'G', b'E'] => 22, // Georgia
        [b'G', b'I'] => 23, // Gibraltar
        [b'G', b'L'] => 18, // Greenland
        [b'G', b'R'] => 27, // Greece
        [b'G', b'T'] => 28, // Guatemala
        [b'H', b'N'] => 28, // Honduras
        [b'H', b'R'] => 21, // Croatia
        [b'H', b'U'] => 28, // Hungary
        [b'I', b'E'] => 22, // Ireland
        [b'I', b'L'] => 23, // Israel
        [b'I', b'Q'] => 23, // Iraq
        [b'I', b'S'] => 26, // Iceland
        [b'I', b'T'] => 27, // Italy
        [b'J', b'O'] => 30, // Jordan
        [b'K', b'W'] => 30, // Kuwait
        [b'K', b'Z'] => 20, // Kazakhstan
        [b'L', b'B'] => 28, // Lebanon
        [b'L', b'C'] => 32, // Saint Lucia
        [b'L', b'I'] => 21, // Liechtenstein
        [b'L', b'T'] => 20, // Lithuania
        [b'L', b'U'] => 20, // Luxembourg
        [b'L', b'V'] => 21, // Latvia
        [b'L', b'Y'] => 25, // Libya
        [b'M', b'C'] => 27, // Monaco
        [b'M', b'D'] => 24, // Moldova
        [b'M', b'E'] => 22, // Montenegro
        [b'M', b'K'] => 19, // North Macedonia
        [b'M', b'N'] => 20, // Mongolia
        [b'M', b'R'] => 27, // Mauritania
        [b'M', b'T'] => 31, // Malta
        [b'M', b'U'] => 30, // Mauritius
        [b'N', b'I'] => 28, // Nicaragua
        [b'N', b'L'] => 18, // Netherlands
        [b'N', b'O'] => 15, // Norway
        [b'O', b'M'] => 23, // Oman
        [b'P', b'K'] => 24, // Pakistan
        [b'P', b'L'] => 28, // Poland
        [b'P', b'S'] => 29, // Palestine
        [b'P', b'T'] => 25, // Portugal
        [b'Q', b'A'] => 29, // Qatar
        [b'R', b'O'] => 24, // Romania
        [b'R', b'S'] => 22, // Serbia
        [b'R', b'U'] => 33, // Russia
        [b'S', b'A'] => 24, // Saudi Arabia
        [b'S', b'C'] => 31, // Seychelles
        [b'S', b'D'] => 18, // Sudan
        [b'S', b'E'] => 24, // Sweden
        [b'S', b'I'] => 19, // Slovenia
        [b'S', b'K'] => 24, // Slovakia
        [b'S', b'M'] => 27, // San Marino
        [b'S', b'O'] => 23, // Somalia
        [b'S', b'T'] => 25, // Sao Tome and Principe
        [b'S', b'V'] => 28, // El Salvador
        [b'T', b'L'] => 23, // Timor-Leste
        [b'T', b'N'] => 24, // Tunisia
        [b'T', b'R'] => 26, // Turkey
        [b'U', b'A'] => 29, // Ukraine
        [b'V', b'A'] => 22, // Vatican City
        [b'V', b'G'] => 24, // British Virgin Islands
        [b'X', b'K'] => 20, // Kosovo
        [b'Y', b'E'] => 30, // Yemen
        _ => return None,
    };
    Some(len)
}

/// ISO 7064 mod 97-10 of an IBAN (spaces skipped): the first four characters moved to the end,
/// letters as 10–35; valid when the remainder is 1. Bytes other than `A`–`Z`, `0`–`9` and space
/// make it invalid.
pub(super) fn iban_mod97(s: &[u8]) -> bool {
    let mut chars = s.iter().copied().filter(|&b| b != b' ');
    let mut head = [0u8; 4];
    for h in &mut head {
        match chars.next() {
            Some(b) => *h = b,
            None => return false,
        }
    }
    // reduce only when the accumulator grows large: one division every few characters, not one
    // per character (r * 100 + 99 cannot overflow while r < 2^56)
    let mut r = 0u64;
    for b in chars.chain(head) {
        r = match b {
            b'0'..=b'9' => r * 10 + u64::from(b - b'0'),
            b'A'..=b'Z' => r * 100 + u64::from(b - b'A') + 10,
            _ => return false,
        };
        if r >= 1 << 56 {
            r %= 97;
        }
    }
    r % 97 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"4111 1111 1111 1111"));
        assert!(luhn(b"378282246310005"));
        assert!(luhn(b"5555555555554444"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b"4111111111111111123"));
    }

    #[test]
    fn aba_known() {
        assert!(aba(b"011000015")); // Federal Reserve Bank of Boston
        assert!(aba(b"021000021")); // JPMorgan Chase
        assert!(aba(b"121000358")); // Bank of America
        assert!(!aba(b"021000022")); // checksum
        assert!(!aba(b"131000021")); // checksum fine, but 13 is not a Federal Reserve prefix
        assert!(!aba(b"13100002"));
    }

    #[test]
    fn ssn_ranges() {
        assert!(ssn_ok(b"123-45-6789"));
        assert!(ssn_ok(b"123 45 6789"));
        assert!(!ssn_ok(b"000-45-6789"));
        assert!(!ssn_ok(b"666-45-6789"));
        assert!(!ssn_ok(b"900-45-6789"));
        assert!(!ssn_ok(b"123-00-6789"));
        assert!(!ssn_ok(b"123-45-0000"));
    }

    #[test]
    fn mod97_known() {
        assert!(iban_mod97(b"DE89370400440532013000"));
        assert!(iban_mod97(b"GB82 WEST 1234 5698 7654 32"));
        assert!(iban_mod97(b"NO9386011117947"));
        assert!(!iban_mod97(b"DE89370400440532013001"));
        assert!(!iban_mod97(b"DE8"));
        assert!(!iban_mod97(b"de89370400440532013000"));
    }

    #[test]
    fn iban_table() {
        assert_eq!(iban_len(b'D', b'E'), Some(22));
        assert_eq!(iban_len(b'N', b'O'), Some(15));
        assert_eq!(iban_len(b'R', b'U'), Some(33));
        assert_eq!(iban_len(b'U', b'S'), None);
        assert_eq!(iban_len(b'd', b'e'), None);
    }
}
