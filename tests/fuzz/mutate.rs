//! A small seeded mutator (no coverage feedback): each input is a corpus entry changed a few
//! times by byte edits, dictionary tokens, and — for the line-based protocols — whole-line edits
//! (insert a real command, drop, repeat or swap a line, change a line end). Deterministic for a
//! given seed, so a failure in CI reproduces with `POPBRIDGE_FUZZ_SEED`.

use super::props::Rng;

pub struct Mutator {
    rng: Rng,
    /// Tokens inserted or written over bytes (keywords, separators, numbers).
    dict: Vec<Vec<u8>>,
    /// Whole lines (without their end) inserted at line starts; empty for binary formats.
    lines: Vec<Vec<u8>>,
    max_len: usize,
}

/// Bytes parsers care about.
const INTERESTING: &[u8] = b"\0\r\n\t .{}[]()<>\"\\*+-%&:=@/0123456789\x7f\x80\xc3\xff";
const NUMBERS: &[&[u8]] =
    &[b"0", b"1", b"2", b"7", b"255", b"4294967295", b"4294967296", b"18446744073709551616", b"-1", b"+1", b"99999999"];

impl Mutator {
    pub fn new(seed: u64, dict: &[&[u8]], lines: &[&[u8]], max_len: usize) -> Mutator {
        Mutator {
            rng: Rng::new(seed),
            dict: dict.iter().map(|d| d.to_vec()).collect(),
            lines: lines.iter().map(|l| l.to_vec()).collect(),
            max_len,
        }
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.rng.below(n.max(1))
    }

    /// A mutant of a random corpus entry: 1 to 8 edits (mostly few).
    pub fn mutate(&mut self, corpus: &[Vec<u8>]) -> Vec<u8> {
        let pick = self.below(corpus.len());
        let mut v = corpus[pick].clone();
        let most = 1 + self.below(8);
        let edits = 1 + self.below(most);
        for _ in 0..edits {
            self.edit(&mut v, corpus);
        }
        v.truncate(self.max_len);
        v
    }

    fn pos(&mut self, v: &[u8]) -> usize {
        self.below(v.len() + 1)
    }

    fn edit(&mut self, v: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let ops = if self.lines.is_empty() { 12 } else { 17 };
        match self.below(ops) {
            0 if !v.is_empty() => {
                let i = self.below(v.len());
                v[i] ^= 1 << self.below(8);
            }
            1 if !v.is_empty() => {
                let i = self.below(v.len());
                v[i] = INTERESTING[self.below(INTERESTING.len())];
            }
            2 => {
                let i = self.pos(v);
                let n = 1 + self.below(4);
                for _ in 0..n {
                    let b = if self.below(2) == 0 {
                        self.rng.next() as u8
                    } else {
                        INTERESTING[self.below(INTERESTING.len())]
                    };
                    v.insert(i, b);
                }
            }
            3 if !v.is_empty() => {
                let i = self.below(v.len());
                let n = (1 + self.below(16)).min(v.len() - i);
                v.drain(i..i + n);
            }
            4 if !v.is_empty() => {
                let i = self.below(v.len());
                let n = (1 + self.below(32)).min(v.len() - i);
                let copy = v[i..i + n].to_vec();
                let at = self.pos(v);
                v.splice(at..at, copy);
            }
            5 if !self.dict.is_empty() => {
                let k = self.below(self.dict.len());
                let t = self.dict[k].clone();
                let at = self.pos(v);
                v.splice(at..at, t);
            }
            6 if !self.dict.is_empty() && !v.is_empty() => {
                let k = self.below(self.dict.len());
                let t = self.dict[k].clone();
                let at = self.below(v.len());
                let end = (at + t.len()).min(v.len());
                v.splice(at..end, t);
            }
            7 => {
                // Splice: a head of this one and a tail of another.
                let k = self.below(corpus.len());
                let other = &corpus[k];
                let at = self.pos(v);
                let from = self.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            8 => {
                // A number replaced by a boundary value.
                let offset = self.below(v.len());
                if let Some(start) = (0..v.len()).map(|k| (k + offset) % v.len()).find(|&k| v[k].is_ascii_digit()) {
                    let mut s = start;
                    while s > 0 && v[s - 1].is_ascii_digit() {
                        s -= 1;
                    }
                    let mut e = start;
                    while e < v.len() && v[e].is_ascii_digit() {
                        e += 1;
                    }
                    let n = NUMBERS[self.below(NUMBERS.len())];
                    v.splice(s..e, n.iter().copied());
                }
            }
            9 if !v.is_empty() => {
                let i = self.below(v.len());
                if v[i].is_ascii_alphabetic() {
                    v[i] ^= 0x20;
                }
            }
            10 if !v.is_empty() => {
                // Truncate: inputs that stop anywhere.
                let at = self.below(v.len());
                v.truncate(at);
            }
            11 if v.len() >= 2 => {
                // Swap two bytes.
                let (a, b) = (self.below(v.len()), self.below(v.len()));
                v.swap(a, b);
            }
            12 => {
                let k = self.below(self.lines.len());
                let l = self.lines[k].clone();
                let at = self.line_start(v);
                let mut ins = l;
                ins.extend_from_slice(b"\r\n");
                v.splice(at..at, ins);
            }
            13 => {
                let (s, e) = self.line(v);
                v.drain(s..e);
            }
            14 => {
                let (s, e) = self.line(v);
                let copy = v[s..e].to_vec();
                let at = self.line_start(v);
                v.splice(at..at, copy);
            }
            15 => {
                // A line end changed: CRLF → LF, LF → CRLF, or a CR or LF added mid-line.
                let (s, e) = self.line(v);
                if e > s {
                    if e >= 2 && v[e - 1] == b'\n' && v[e - 2] == b'\r' {
                        v.remove(e - 2);
                    } else if v[e - 1] == b'\n' {
                        v.insert(e - 1, b'\r');
                    } else {
                        let at = s + self.below(e - s);
                        v.insert(at, if self.below(2) == 0 { b'\r' } else { b'\n' });
                    }
                }
            }
            16 => {
                // Two lines swapped.
                let a = self.line(v);
                let text = v[a.0..a.1].to_vec();
                v.drain(a.0..a.1);
                let at = self.line_start(v);
                v.splice(at..at, text);
            }
            _ => {
                let i = self.pos(v);
                v.insert(i, INTERESTING[self.below(INTERESTING.len())]);
            }
        }
    }

    /// The start of a random line (or the end).
    fn line_start(&mut self, v: &[u8]) -> usize {
        let starts: Vec<usize> =
            std::iter::once(0).chain(v.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
        starts[self.below(starts.len())]
    }

    /// A random line, its end included: (start, end).
    fn line(&mut self, v: &[u8]) -> (usize, usize) {
        let s = self.line_start(v);
        let e = v[s..].iter().position(|b| *b == b'\n').map_or(v.len(), |p| s + p + 1);
        (s, e)
    }
}
