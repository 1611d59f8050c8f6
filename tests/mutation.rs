//! Both front doors under mutation: GGUF files and Hugging Face checkpoints with random bytes
//! changed, lengths and counts forged, files cut short. Every mutant must be refused with a
//! one-line error or run; none may panic, crash (a signal) or hang. Each mutant runs in its
//! own `landauer` process, so that an abort is seen rather than suffered.

mod common;

use common::*;
use landauer_engine::tiny::{write_checkpoint, TinyConfig};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift64*): the same mutants on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Lengths a forger would try.
const FORGED: [u64; 8] = [
    0,
    1,
    7,
    1 << 31,
    1 << 40,
    u64::MAX,
    u64::MAX / 2,
    0xFFFF_FFFF,
];

/// One mutant of `bytes`: bytes flipped, a little-endian length forged, or the end cut,
/// within `region` (the header, where the lengths are) unless cut.
fn mutate(rng: &mut Rng, bytes: &[u8], region: usize) -> (Vec<u8>, String) {
    let mut m = bytes.to_vec();
    let region = region.min(m.len()).max(9);
    match rng.below(4) {
        0 => {
            let n = 1 + rng.below(4);
            for _ in 0..n {
                let at = rng.below(region);
                m[at] ^= 1 << rng.below(8);
            }
            (m, format!("{n} bits flipped"))
        }
        1 => {
            let at = rng.below(region - 8);
            let v = FORGED[rng.below(FORGED.len())];
            m[at..at + 8].copy_from_slice(&v.to_le_bytes());
            (m, format!("u64 {v} forged at byte {at}"))
        }
        2 => {
            let at = rng.below(region - 4);
            let v = FORGED[rng.below(FORGED.len())] as u32;
            m[at..at + 4].copy_from_slice(&v.to_le_bytes());
            (m, format!("u32 {v} forged at byte {at}"))
        }
        _ => {
            let at = rng.below(m.len());
            m.truncate(at);
            (m, format!("cut at byte {at}"))
        }
    }
}

/// Runs one generation on `model`; panics with `what` unless it ran or failed cleanly.
fn survives(model: &Path, what: &str) {
    let mut child = landauer()
        .args([
            "generate", "-n", "2", "-q", "--meter", "none", "--greedy", "--model",
        ])
        .arg(model)
        .arg("Once upon a time")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run landauer");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{what}: landauer hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        !err.contains("panicked"),
        "{what}: landauer panicked: {err}"
    );
    match status.code() {
        Some(0) => {}
        Some(1) => {
            let line = err
                .lines()
                .find(|l| l.starts_with("landauer: error:"))
                .unwrap_or_else(|| panic!("{what}: failed without saying why: {err}"));
            assert!(
                line.len() > 30,
                "{what}: an error that says nothing: {line}"
            );
        }
        other => panic!("{what}: landauer ended with {other:?} (a crash or signal): {err}"),
    }
}

#[test]
fn mutated_gguf_files_are_refused_or_run_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let bytes = std::fs::read(&model).unwrap();
    let mut f = std::fs::File::open(&model).unwrap();
    let header = candle_core::quantized::gguf_file::Content::read(&mut f)
        .unwrap()
        .tensor_data_offset as usize;
    let mut rng = Rng(0x5EED_0001);
    let mutant = dir.path().join("mutant.gguf");
    for i in 0..150 {
        // Most mutants in the header, where lengths and counts live; a few in the data.
        let region = if i % 10 == 9 { bytes.len() } else { header };
        let (m, what) = mutate(&mut rng, &bytes, region);
        std::fs::write(&mutant, &m).unwrap();
        survives(&mutant, &format!("GGUF mutant {i} ({what})"));
    }
}

#[test]
fn mutated_checkpoints_are_refused_or_run_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &TinyConfig::default());
    let ckpt = dir.path().join("ckpt");
    write_checkpoint(&model, &ckpt, 1).unwrap();
    let weights = ckpt.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let config = std::fs::read_to_string(ckpt.join("config.json")).unwrap();
    let mut rng = Rng(0x5EED_0002);
    for i in 0..100 {
        let (m, what) = mutate(&mut rng, &bytes, header);
        std::fs::write(&weights, &m).unwrap();
        survives(&ckpt, &format!("safetensors mutant {i} ({what})"));
    }
    std::fs::write(&weights, &bytes).unwrap();
    // config.json: every number in turn forged.
    let numbers: Vec<(usize, usize)> = config
        .match_indices(|c: char| c.is_ascii_digit())
        .map(|(at, _)| at)
        .fold(Vec::<(usize, usize)>::new(), |mut v, at| {
            match v.last_mut() {
                Some(last) if last.1 == at => last.1 = at + 1,
                _ => v.push((at, at + 1)),
            }
            v
        });
    for (i, &(a, b)) in numbers.iter().enumerate() {
        for forged in ["0", "1", "3", "4294967297", "99999999999999999999"] {
            let text = format!("{}{forged}{}", &config[..a], &config[b..]);
            std::fs::write(ckpt.join("config.json"), text).unwrap();
            survives(&ckpt, &format!("config.json number {i} forged as {forged}"));
        }
    }
}
