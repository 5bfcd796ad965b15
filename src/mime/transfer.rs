//! Content-Transfer-Encoding decoding (RFC 2045 §6): the one home of the base64 and
//! quoted-printable decoders, for search text (`mime::search`) and FETCH BINARY (`imap::fetch`).
//!
//! [`Decoder`] is incremental: it is fed a body in chunks of any size (a chunk boundary may fall
//! anywhere, inside a base64 quantum or an `=XX` escape) and keeps at most a few bytes between
//! calls, so a 50 MB attachment is decoded with one chunk of memory. Both decoders are lenient,
//! as RFC 2045 asks of decoders, and never fail:
//! - **base64**: characters outside the alphabet are ignored (§6.8: "Any characters outside of
//!   the base64 alphabet are to be ignored"); `=` ends the current quantum (its 2 or 3 sextets
//!   give 1 or 2 octets) and decoding starts afresh after it, so concatenated encodings decode as
//!   such; a lone sextet at a quantum's end carries no full octet and is dropped. Dovecot
//!   refuses a BINARY fetch of such data (`NO [PARSE] Invalid data in MIME part`).
//! - **quoted-printable**: `=XX` (either case of hex) is the octet, `=` at a line end is a soft
//!   line break (CRLF or bare LF), whitespace at the end of a line is transport padding and is
//!   deleted (§6.7 rule 3, as Dovecot does); a malformed `=` sequence is kept as it is (§6.7
//!   note 2's advice), except a lone `=` at the very end (a soft break that lost its line end). A run of more than [`MAX_PENDING_SPACE`] blanks is passed on even at a
//!   line end, so the decoder's state stays bounded.

use base64::Engine as _;

/// A Content-Transfer-Encoding the decoders know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 7bit, 8bit, binary (and no header at all, RFC 2045 §6.1's default): nothing to decode.
    Identity,
    Base64,
    QuotedPrintable,
}

impl Encoding {
    /// From the header value as `Part::encoding` keeps it (any case). None: an encoding no
    /// decoder here knows (x-uuencode, a typo…) — FETCH BINARY answers `NO [UNKNOWN-CTE]`.
    pub fn parse(cte: &str) -> Option<Encoding> {
        let cte = cte.trim();
        if cte.is_empty() || ["7bit", "8bit", "binary"].iter().any(|e| cte.eq_ignore_ascii_case(e)) {
            Some(Encoding::Identity)
        } else if cte.eq_ignore_ascii_case("base64") {
            Some(Encoding::Base64)
        } else if cte.eq_ignore_ascii_case("quoted-printable") {
            Some(Encoding::QuotedPrintable)
        } else {
            None
        }
    }
}

/// Blanks at most held back while waiting to see whether a line ends after them.
pub const MAX_PENDING_SPACE: usize = 1024;

/// An incremental decoder: [`Decoder::feed`] the encoded bytes, then [`Decoder::finish`].
#[derive(Debug, Clone)]
pub struct Decoder {
    encoding: Encoding,
    /// base64: sextets of the current quantum so far, and how many.
    acc: u32,
    sextets: u8,
    /// quoted-printable: where an escape stands.
    qp: Qp,
    /// quoted-printable: blanks not yet known to be (or not to be) at a line end.
    space: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qp {
    Text,
    /// After `=`.
    Eq,
    /// After `=` and a hex digit (this one).
    EqHex(u8),
    /// After `=` CR.
    EqCr,
}

/// The base64 value of each byte, or 0xFF for a character outside the alphabet.
const B64: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// The base64 crate's decoder for runs of whole quanta (no padding in them).
const FAST: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

impl Decoder {
    pub fn new(encoding: Encoding) -> Decoder {
        Decoder { encoding, acc: 0, sextets: 0, qp: Qp::Text, space: Vec::new() }
    }

    /// Decodes `input` (the next bytes of the body), appending to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self.encoding {
            Encoding::Identity => out.extend_from_slice(input),
            Encoding::Base64 => self.base64(input, out),
            Encoding::QuotedPrintable => {
                out.reserve(input.len());
                for &b in input {
                    self.qp_byte(b, out);
                }
            }
        }
    }

    /// The end of the body: whatever the decoder still holds.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.encoding {
            Encoding::Identity => {}
            Encoding::Base64 => self.end_quantum(out),
            Encoding::QuotedPrintable => {
                // `=` (or `=` CR) as the last bytes: a soft line break whose line end got lost.
                if let Qp::EqHex(h) = std::mem::replace(&mut self.qp, Qp::Text) {
                    out.extend_from_slice(&[b'=', h]);
                }
                // Blanks at the very end are at a line end too.
                self.space.clear();
            }
        }
    }

    fn base64(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() / 4 * 3 + 3);
        while !input.is_empty() {
            // Fast path: at a quantum boundary, the whole quanta of a run of alphabet characters
            // (a line of an attachment) go to the base64 crate's decoder at once.
            if self.sextets == 0 {
                let run = input.iter().position(|&c| B64[c as usize] == 0xFF).unwrap_or(input.len());
                let whole = run / 4 * 4;
                if whole > 0 {
                    // Cannot fail: only alphabet characters, whole quanta, no padding.
                    let _ = FAST.decode_vec(&input[..whole], out);
                    input = &input[whole..];
                    continue;
                }
            }
            let end = input.iter().position(|&c| B64[c as usize] == 0xFF).map_or(input.len(), |p| p + 1);
            self.base64_slow(&input[..end], out);
            input = &input[end..];
        }
    }

    fn base64_slow(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &c in input {
            let v = B64[c as usize];
            if v == 0xFF {
                if c == b'=' {
                    self.end_quantum(out);
                }
                continue;
            }
            self.acc = self.acc << 6 | u32::from(v);
            self.sextets += 1;
            if self.sextets == 4 {
                out.extend_from_slice(&[(self.acc >> 16) as u8, (self.acc >> 8) as u8, self.acc as u8]);
                self.acc = 0;
                self.sextets = 0;
            }
        }
    }

    /// The octets a partial quantum carries (2 sextets: 1 octet, 3 sextets: 2).
    fn end_quantum(&mut self, out: &mut Vec<u8>) {
        match self.sextets {
            2 => out.push((self.acc >> 4) as u8),
            3 => out.extend_from_slice(&[(self.acc >> 10) as u8, (self.acc >> 2) as u8]),
            _ => {}
        }
        self.acc = 0;
        self.sextets = 0;
    }

    fn qp_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.qp {
            Qp::Text => self.qp_text(b, out),
            Qp::Eq => match b {
                b'\r' => self.qp = Qp::EqCr,
                b'\n' => self.qp = Qp::Text,
                _ if hex(b).is_some() => self.qp = Qp::EqHex(b),
                _ => {
                    self.qp = Qp::Text;
                    out.push(b'=');
                    self.qp_text(b, out);
                }
            },
            Qp::EqHex(h) => {
                self.qp = Qp::Text;
                match (hex(h), hex(b)) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        out.extend_from_slice(&[b'=', h]);
                        self.qp_text(b, out);
                    }
                }
            }
            Qp::EqCr => {
                self.qp = Qp::Text;
                if b != b'\n' {
                    out.extend_from_slice(b"=\r");
                    self.qp_text(b, out);
                }
            }
        }
    }

    fn qp_text(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b' ' | b'\t' => {
                if self.space.len() >= MAX_PENDING_SPACE {
                    out.append(&mut self.space);
                }
                self.space.push(b);
            }
            b'\r' | b'\n' => {
                // Transport padding: blanks before a line end are deleted.
                self.space.clear();
                out.push(b);
            }
            _ => {
                if !self.space.is_empty() {
                    out.append(&mut self.space);
                }
                if b == b'=' {
                    self.qp = Qp::Eq;
                } else {
                    out.push(b);
                }
            }
        }
    }
}

/// A whole body decoded at once.
pub fn decode(body: &[u8], encoding: Encoding) -> Vec<u8> {
    let mut d = Decoder::new(encoding);
    let mut out = Vec::with_capacity(body.len());
    d.feed(body, &mut out);
    d.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(enc: Encoding, input: &[u8]) -> Vec<u8> {
        let whole = decode(input, enc);
        // Every split point, and byte by byte: the same output.
        for cut in 0..=input.len() {
            let mut d = Decoder::new(enc);
            let mut out = Vec::new();
            d.feed(&input[..cut], &mut out);
            d.feed(&input[cut..], &mut out);
            d.finish(&mut out);
            assert_eq!(out, whole, "split at {cut} of {:?}", input.escape_ascii().to_string());
        }
        let mut d = Decoder::new(enc);
        let mut out = Vec::new();
        for b in input {
            d.feed(std::slice::from_ref(b), &mut out);
        }
        d.finish(&mut out);
        assert_eq!(out, whole);
        whole
    }

    #[test]
    fn base64() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let enc = base64::engine::general_purpose::STANDARD.encode(&data);
        let lines: Vec<u8> = enc.as_bytes().chunks(76).flat_map(|l| [l, b"\r\n"].concat()).collect();
        assert_eq!(decode(&lines, Encoding::Base64), data);
        let b = Encoding::Base64;
        assert_eq!(both(b, b"SGVsbG8="), b"Hello");
        assert_eq!(both(b, b"SGVsbG8"), b"Hello", "padding is optional");
        assert_eq!(both(b, b"SGVs\r\nbG8h\r\n"), b"Hello!");
        assert_eq!(both(b, b"SG Vs!!bG\t8h"), b"Hello!", "junk outside the alphabet is ignored");
        assert_eq!(both(b, b"YQ==YmM="), b"abc", "concatenated encodings");
        assert_eq!(both(b, b"YWJjZ"), b"abc", "a lone sextet is dropped");
        assert_eq!(both(b, b"AA=="), b"\0");
        assert_eq!(both(b, b""), b"");
        assert_eq!(both(b, b"YWJj\r\nZGVm\r\nZ2hp!amts=bW5vcA"), b"abcdefghijklmnop", "fast and slow paths agree");
    }

    #[test]
    fn quoted_printable() {
        let q = Encoding::QuotedPrintable;
        assert_eq!(
            both(q, b"caf=C3=A9 soft=\r\nbreak =3D end  \r\nline2="),
            "café softbreak = end\r\nline2".as_bytes()
        );
        assert_eq!(both(q, b"a=\nb=0a=0D"), b"ab\n\r", "bare-LF soft break, lower-case hex");
        assert_eq!(both(q, b"bad=ZZ=4 x=\rq=4"), b"bad=ZZ=4 x=\rq=4", "malformed escapes are kept");
        assert_eq!(both(q, b"end="), b"end", "a soft break at the very end");
        assert_eq!(both(q, b"trail \t \r\nend  "), b"trail\r\nend", "trailing blanks are padding");
        assert_eq!(both(q, b"in  between"), b"in  between");
        let long = [&b"x"[..], &[b' '; MAX_PENDING_SPACE + 10], b"\r\n"].concat();
        assert_eq!(decode(&long, q).len(), 1 + MAX_PENDING_SPACE + 2, "a long run is passed on");
    }

    #[test]
    fn encodings() {
        for (s, e) in [
            ("7bit", Some(Encoding::Identity)),
            ("8BIT", Some(Encoding::Identity)),
            ("Binary", Some(Encoding::Identity)),
            ("", Some(Encoding::Identity)),
            ("BASE64", Some(Encoding::Base64)),
            (" quoted-printable ", Some(Encoding::QuotedPrintable)),
            ("x-uuencode", None),
            ("base-64", None),
        ] {
            assert_eq!(Encoding::parse(s), e, "{s}");
        }
        assert_eq!(both(Encoding::Identity, b"a\0b=41"), b"a\0b=41");
    }
}
