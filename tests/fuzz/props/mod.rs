//! The properties each fuzz target checks, shared by the two ways they run: the libFuzzer targets
//! of the cargo-fuzz crate in `tests/fuzz/` (coverage-guided, for long local runs) and the
//! integration module `tests/fuzz.rs` (seeded mutation, a few seconds in every `cargo test`).
//! Each `check` takes arbitrary bytes and panics when a property does not hold.
//!
//! Only the public API of `popbridge` and std are used here, so the same files compile in both.

pub mod config;
pub mod imap_syntax;
pub mod pop3;
pub mod state_files;

/// Reads a fuzz input as a little structure: numbers from the front, the rest as payload. Past the
/// end every number is 0, so any input (even empty) is a valid structure.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// xorshift64: chunk sizes and choices derived from the input, so a run is reproducible from it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
