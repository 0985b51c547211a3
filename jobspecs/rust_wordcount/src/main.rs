//! A streaming mapper for mrctl (Hadoop Streaming's contract): reads lines on stdin and writes
//! `word<TAB>count` lines, a word being a run of the letters a-z after ASCII lowercasing, as
//! jobspecs/wordcount_streaming.yaml's awk mapper reads them. It counts a whole task's words
//! before writing (in-mapper combining), so the reducer gets one line per word and task.
//! Build a static binary (no glibc needed in the worker container):
//!   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};

fn main() -> io::Result<()> {
    let mut input = Vec::new();
    io::stdin().lock().read_to_end(&mut input)?;
    let mut counts: HashMap<&[u8], u64> = HashMap::new();
    let lowered = input.to_ascii_lowercase();
    for word in lowered.split(|b| !b.is_ascii_lowercase()).filter(|w| !w.is_empty()) {
        *counts.entry(word).or_insert(0) += 1;
    }
    let mut out = BufWriter::new(io::stdout().lock());
    for (word, n) in &counts {
        out.write_all(word)?;
        writeln!(out, "\t{n}")?;
    }
    eprintln!("reporter:counter:wc_mapper,words,{}", counts.values().sum::<u64>());
    out.flush()
}
