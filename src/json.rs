//! Checking that a body is JSON every consumer can read, without building it: strings valid
//! UTF-8 with no lone surrogate escapes, numbers within the range of a double.
//! (`serde::de::IgnoredAny` checks neither: it skips strings and numbers by syntax alone, so
//! `1e99999` or `"\ud800"` would pass and then fail in Genesys or in the function.)

use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Ok when `bytes` is one JSON value that parses in full, numbers and strings included.
pub fn check(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    Checked.deserialize(&mut deserializer)?;
    deserializer.end()
}

/// Escapes what is written through it for the inside of a JSON string, as serde_json does:
/// `"`, `\\` and control characters; everything else, non-ASCII included, passes unchanged.
pub struct Escaper<'a, W: fmt::Write>(pub &'a mut W);

impl<W: fmt::Write> fmt::Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
        let bytes = s.as_bytes();
        // Most text needs no escape: one scan, one write. The scan has no early exit, so the
        // compiler checks many bytes at a time.
        if bytes.iter().fold(true, |all, &b| all & plain(b)) {
            return self.0.write_str(s);
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if plain(b) {
                continue;
            }
            // Only ASCII bytes are cut at, so every slice is on a char boundary.
            self.0.write_str(&s[start..i])?;
            match b {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                0x08 => self.0.write_str("\\b")?,
                0x0c => self.0.write_str("\\f")?,
                _ => {
                    let code = [
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ];
                    self.0
                        .write_str(std::str::from_utf8(&code).expect("ASCII"))?;
                }
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// Writes `value` as a JSON string, escaped as serde_json escapes it.
pub fn write_string(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    use fmt::Write as _;
    out.write_char('"')?;
    Escaper(out).write_str(value)?;
    out.write_char('"')
}

/// Visits every value through `deserialize_any`, so serde_json converts (and so checks) each
/// number and string, and keeps nothing.
#[derive(Clone, Copy)]
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_serde_json_values_accept() {
        for ok in [
            "{}",
            "[]",
            "null",
            " 1 ",
            "-0.5e10",
            "18446744073709551615",
            r#"{"a":[1,{"b":"\u00e9\ud83d\ude00"}],"c":true}"#,
        ] {
            assert!(check(ok.as_bytes()).is_ok(), "{ok}");
            assert!(
                serde_json::from_str::<serde_json::Value>(ok).is_ok(),
                "{ok}"
            );
        }
    }

    /// Found by the `lambda_response` fuzz target: a Lambda answer `1111e11111` passed the
    /// gateway's check and was returned, though no JSON consumer with doubles can read it.
    #[test]
    fn refuses_numbers_out_of_range_and_lone_surrogates() {
        for bad in [
            "1111e11111 ",
            r#"{"n":-1e400}"#,
            r#""\ud800""#,
            r#"["\udc00x"]"#,
            "{} {}",
            "[1,]",
        ] {
            assert!(check(bad.as_bytes()).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
    }

    /// So callers need no UTF-8 pass of their own: bad bytes in a string, a key, or between
    /// tokens fail the check.
    #[test]
    fn refuses_invalid_utf8_anywhere() {
        for bad in [
            &b"\"\xff\""[..],
            b"{\"a\xc3\":1}",
            b"[\"\xed\xa0\x80\"]",
            b"\xef\xbb\xbf{}",
            b"{} \xff",
            b"[1,\xa0 2]",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut samples: Vec<String> = (0u8..0x80).map(|b| format!("a{}b", b as char)).collect();
        samples.extend(
            [
                "",
                "plain",
                "é 漢 🦀",
                "\"\\\"",
                "\u{7f}\u{1f}\u{0}end",
                "x\ty\r\nz",
            ]
            .map(String::from),
        );
        for sample in samples {
            let mut ours = String::new();
            write_string(&mut ours, &sample).unwrap();
            assert_eq!(ours, serde_json::to_string(&sample).unwrap(), "{sample:?}");
        }
    }
}
