//! Checking that a body is JSON every consumer can read, without building it: one value, strings
//! valid UTF-8 with no lone surrogate escapes, numbers within the range of a double, nesting
//! within a bound. (`serde::de::IgnoredAny` checks neither strings nor numbers: `1e99999` or
//! `"\ud800"` would pass and then fail in Genesys or in the function.)
//!
//! One pass, no allocation and no recursion; it accepts what `serde_json::Value` accepts (the
//! tests and the `json_check` fuzz target compare the two), with nesting bounded by the caller.

use std::fmt;

/// Why a body is not JSON, and where (1-based, columns in bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: Reason,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not JSON: what was wrong.
    Syntax(&'static str),
    /// Arrays and objects nested deeper than this many levels.
    TooDeep(usize),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Reason::Syntax(what) => f.write_str(what)?,
            Reason::TooDeep(limit) => write!(f, "nested deeper than {limit} levels")?,
        }
        write!(f, " at line {} column {}", self.line, self.column)
    }
}

impl std::error::Error for Invalid {}

/// The deepest nesting [`check`] can be asked to allow.
pub const DEPTH_LIMIT: usize = 128;

/// Ok when `bytes` is one JSON value, numbers and strings included, with arrays and objects
/// nested at most `max_depth` levels (at most [`DEPTH_LIMIT`]).
pub fn check(bytes: &[u8], max_depth: usize) -> Result<(), Invalid> {
    assert!(max_depth <= DEPTH_LIMIT, "max_depth above DEPTH_LIMIT");
    // All of it: then strings need no UTF-8 check of their own, and a byte outside them that is
    // not ASCII fails as a syntax error below.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(invalid(
            bytes,
            e.valid_up_to(),
            Reason::Syntax("invalid UTF-8"),
        ));
    }
    Checker { bytes, at: 0 }
        .value(max_depth)
        .map_err(|(at, reason)| invalid(bytes, at, reason))
}

fn invalid(bytes: &[u8], at: usize, reason: Reason) -> Invalid {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    Invalid {
        reason,
        line,
        column,
    }
}

type Failed = (usize, Reason);

/// The bytes a JSON string cannot hold as they are: a quote, a backslash, a control character.
const fn special_in_string(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// [`special_in_string`] as a table, for the check's scan (one load per byte).
static SPECIAL_IN_STRING: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = special_in_string(b as u8);
        b += 1;
    }
    table
};

struct Checker<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Checker<'_> {
    fn fail<T>(&self, what: &'static str) -> Result<T, Failed> {
        Err((self.at, Reason::Syntax(what)))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// The whole input: one value, then only whitespace.
    fn value(&mut self, max_depth: usize) -> Result<(), Failed> {
        // Bit `d` is set when the container at depth `d + 1` is an object.
        let mut objects: u128 = 0;
        let mut depth = 0usize;
        loop {
            // A value.
            self.skip_whitespace();
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    if depth == max_depth {
                        return Err((self.at, Reason::TooDeep(max_depth)));
                    }
                    self.at += 1;
                    let object = open == b'{';
                    objects = objects & !(1 << depth) | u128::from(object) << depth;
                    depth += 1;
                    self.skip_whitespace();
                    let close = if object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.at += 1;
                        depth -= 1;
                    } else if object {
                        self.key()?;
                        continue;
                    } else {
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return self.fail("expected value"),
                None => return self.fail("EOF while parsing a value"),
            }
            // What follows a value: the end, or its container's next member or close.
            loop {
                self.skip_whitespace();
                if depth == 0 {
                    return match self.peek() {
                        None => Ok(()),
                        Some(_) => self.fail("trailing characters"),
                    };
                }
                let object = objects >> (depth - 1) & 1 == 1;
                match (self.peek(), object) {
                    (Some(b','), _) => {
                        self.at += 1;
                        if object {
                            self.skip_whitespace();
                            self.key()?;
                        }
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.at += 1;
                        depth -= 1;
                    }
                    (None, true) => return self.fail("EOF while parsing an object"),
                    (None, false) => return self.fail("EOF while parsing a list"),
                    (Some(_), true) => return self.fail("expected `,` or `}`"),
                    (Some(_), false) => return self.fail("expected `,` or `]`"),
                }
            }
        }
    }

    /// An object's key and its colon.
    fn key(&mut self) -> Result<(), Failed> {
        match self.peek() {
            Some(b'"') => self.string()?,
            Some(_) => return self.fail("key must be a string"),
            None => return self.fail("EOF while parsing an object"),
        }
        self.skip_whitespace();
        match self.peek() {
            Some(b':') => {
                self.at += 1;
                Ok(())
            }
            Some(_) => self.fail("expected `:`"),
            None => self.fail("EOF while parsing an object"),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Failed> {
        for &expected in word {
            match self.peek() {
                Some(b) if b == expected => self.at += 1,
                Some(_) => return self.fail("expected ident"),
                None => return self.fail("EOF while parsing a value"),
            }
        }
        Ok(())
    }

    /// A string, from its opening quote. The input is already known to be UTF-8.
    fn string(&mut self) -> Result<(), Failed> {
        self.at += 1;
        loop {
            // Most bytes need no look: skip to the next quote, backslash or control character.
            let rest = &self.bytes[self.at..];
            self.at += rest
                .iter()
                .position(|&b| SPECIAL_IN_STRING[usize::from(b)])
                .unwrap_or(rest.len());
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape()?;
                }
                Some(_) => {
                    return self
                        .fail("control character (\\u0000-\\u001F) found while parsing a string");
                }
                None => return self.fail("EOF while parsing a string"),
            }
        }
    }

    /// An escape, after its backslash.
    fn escape(&mut self) -> Result<(), Failed> {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.at += 1;
                Ok(())
            }
            Some(b'u') => {
                self.at += 1;
                match self.hex4()? {
                    0xD800..=0xDBFF => {
                        // A leading surrogate: a trailing one must follow, escaped.
                        if self.bytes[self.at..].starts_with(b"\\u") {
                            self.at += 2;
                            if let 0xDC00..=0xDFFF = self.hex4()? {
                                return Ok(());
                            }
                        }
                        self.fail("lone leading surrogate in hex escape")
                    }
                    0xDC00..=0xDFFF => self.fail("lone trailing surrogate in hex escape"),
                    _ => Ok(()),
                }
            }
            Some(_) => self.fail("invalid escape"),
            None => self.fail("EOF while parsing a string"),
        }
    }

    fn hex4(&mut self) -> Result<u16, Failed> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b) => (b as char).to_digit(16),
                None => return self.fail("EOF while parsing a string"),
            };
            let Some(digit) = digit else {
                return self.fail("invalid escape");
            };
            unit = unit << 4 | digit as u16;
            self.at += 1;
        }
        Ok(unit)
    }

    /// A number, which must be finite as a double.
    fn number(&mut self) -> Result<(), Failed> {
        let start = self.at;
        let digits = |c: &mut Self| {
            let from = c.at;
            while let Some(b'0'..=b'9') = c.peek() {
                c.at += 1;
            }
            c.at - from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            Some(_) => return self.fail("invalid number"),
            None => return self.fail("EOF while parsing a value"),
        }
        let integer_digits = self.at - start;
        // A fraction or an exponent needs at least one digit.
        let some_digits = |c: &mut Self| match (digits(c), c.peek()) {
            (0, Some(_)) => c.fail("invalid number"),
            (0, None) => c.fail("EOF while parsing a value"),
            _ => Ok(()),
        };
        let mut plain = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            plain = false;
            some_digits(self)?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            plain = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            some_digits(self)?;
        }
        // An integer this short fits a double's range; anything else is read as one.
        if plain && integer_digits <= 300 {
            return Ok(());
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).expect("ASCII");
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(()),
            _ => Err((start, Reason::Syntax("number out of range"))),
        }
    }
}

/// Escapes what is written through it for the inside of a JSON string, as serde_json does:
/// `"`, `\\` and control characters; everything else, non-ASCII included, passes unchanged.
pub struct Escaper<'a, W: fmt::Write>(pub &'a mut W);

impl<W: fmt::Write> fmt::Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let plain = |b: u8| !special_in_string(b);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json reads as a `Value` (so also with its nesting limit of 127 levels).
    fn serde_reads(bytes: &[u8]) -> bool {
        serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
    }

    fn agrees_with_serde(bytes: &[u8]) {
        assert_eq!(
            check(bytes, 127).is_ok(),
            serde_reads(bytes),
            "{:?}: {:?}",
            String::from_utf8_lossy(bytes),
            check(bytes, 127)
        );
    }

    #[test]
    fn accepts_what_serde_json_values_accept() {
        for ok in [
            "{}",
            "[]",
            "null",
            " 1 ",
            "-0.5e10",
            "0",
            "-0",
            "1E+2",
            "2.5e-3",
            "1e-400",
            "18446744073709551615",
            "123456789012345678901234567890",
            "\t[ true ,false,\r\nnull ]\n",
            r#"{"a":[1,{"b":"\u00e9\ud83d\ude00"}],"c":true}"#,
            r#""\"\\\/\b\f\n\r\t\u0000\uFFFF""#,
            r#"{"a":1,"a":2}"#,
            "\"é 漢 🦀\"",
        ] {
            assert_eq!(check(ok.as_bytes(), DEPTH_LIMIT), Ok(()), "{ok}");
            assert!(serde_reads(ok.as_bytes()), "{ok}");
        }
    }

    /// Found by the `lambda_response` fuzz target: a Lambda answer `1111e11111` passed the
    /// gateway's check and was returned, though no JSON consumer with doubles can read it.
    #[test]
    fn refuses_numbers_out_of_range_and_lone_surrogates() {
        for bad in [
            "1111e11111 ",
            r#"{"n":-1e400}"#,
            &"9".repeat(400),
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            r#""\ud800\n""#,
            r#"["\udc00x"]"#,
            "{} {}",
            "[1,]",
            r#"{"a":1,}"#,
            "01",
            "1.",
            ".5",
            "+1",
            "-",
            "1e",
            "tru",
            "nul",
            r#"{"a" 1}"#,
            "{1:2}",
            "\"a\u{1}\"",
            "\"tab\there\"",
            r#""\x41""#,
            r#""\u12G4""#,
            "",
            "  ",
            "[",
            "{\"a\":",
            "\"open",
        ] {
            assert!(check(bad.as_bytes(), DEPTH_LIMIT).is_err(), "{bad}");
            assert!(!serde_reads(bad.as_bytes()), "{bad}");
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
            assert!(check(bad, DEPTH_LIMIT).is_err(), "{bad:?}");
            assert!(!serde_reads(bad), "{bad:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_by_the_caller() {
        let nested = |depth: usize, open: &str, close: &str, inner: &str| {
            open.repeat(depth) + inner + &close.repeat(depth)
        };
        for (open, close, inner) in [("[", "]", "1"), (r#"{"k":"#, "}", "[]")] {
            // `inner` adds a level for objects.
            let extra = usize::from(inner == "[]");
            let at_limit = nested(64 - extra, open, close, inner);
            assert_eq!(check(at_limit.as_bytes(), 64), Ok(()));
            let over = nested(65 - extra, open, close, inner);
            let error = check(over.as_bytes(), 64).unwrap_err();
            assert_eq!(error.reason, Reason::TooDeep(64), "{over}");
        }
        // Closed levels do not count: only the depth at any one point.
        let wide = "[[[]],[[]],{\"a\":[]},[]]";
        assert_eq!(check(wide.as_bytes(), 3), Ok(()));
        assert!(check(wide.as_bytes(), 2).is_err());
        // Brackets inside strings are text.
        assert_eq!(check(br#"{"a":"[[[{{","b":"]]}"}"#, 1), Ok(()));
        // serde_json's own limit: 127 levels read, 128 not.
        for depth in [126, 127, 128, 129] {
            agrees_with_serde(nested(depth, "[", "]", "").as_bytes());
        }
    }

    #[test]
    fn errors_say_where() {
        let error = check(b"{\n  \"a\": [1, 2,\n  ]\n}", DEPTH_LIMIT).unwrap_err();
        assert_eq!(error.reason, Reason::Syntax("expected value"));
        assert_eq!((error.line, error.column), (3, 3));
        assert_eq!(error.to_string(), "expected value at line 3 column 3");
        let error = check(b"[1e999]", DEPTH_LIMIT).unwrap_err();
        assert_eq!(error.to_string(), "number out of range at line 1 column 2");
    }

    /// Every one-byte edit (deletion, or any of the bytes that matter to JSON put in place of or
    /// before each byte) of documents that use every construct: each verdict is serde_json's.
    #[test]
    fn agrees_with_serde_json_on_every_one_byte_edit() {
        let documents: [&[u8]; 4] = [
            br#"{"a":[1,-2.5e+3,true,false,null],"b":{"c":"x\"y\\z\u00e9\ud83d\ude00"},"d":[]}"#,
            b" [ 0 , -0.0E-1 , 1e308 , \"\\/\\b\\f\\n\\r\\t\" , { } ] ",
            "{\"é\":\"漢🦀\",\"n\":18446744073709551616}".as_bytes(),
            br#"[[[[{"k":[[]]}]]]]"#,
        ];
        let edits: &[u8] = b"\"\\,:[]{}0123456789-+.eEuUtfnlx \t\n\0\x01\x7f\xc3\xa9\xff/bd";
        let mut count = 0;
        for document in documents {
            agrees_with_serde(document);
            for i in 0..=document.len() {
                if i < document.len() {
                    let mut deleted = document.to_vec();
                    deleted.remove(i);
                    agrees_with_serde(&deleted);
                    count += 1;
                }
                for &b in edits {
                    let mut inserted = document.to_vec();
                    inserted.insert(i, b);
                    agrees_with_serde(&inserted);
                    if i < document.len() {
                        let mut replaced = document.to_vec();
                        replaced[i] = b;
                        agrees_with_serde(&replaced);
                    }
                    count += 2;
                }
            }
        }
        assert!(count > 10_000, "{count}");
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
