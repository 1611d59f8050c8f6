//! The machine's memory bandwidth, for the roofline of a CPU run.

/// Bytes per second `threads` threads read from a buffer far larger than any cache: a
/// 512 MiB buffer summed by every thread, median of 5 passes.
pub fn read_bandwidth(threads: usize) -> f64 {
    read_bandwidth_of(512 << 20, threads)
}

/// Like [`read_bandwidth`], over a buffer of `bytes`.
pub fn read_bandwidth_of(bytes: usize, threads: usize) -> f64 {
    let data: Vec<u64> = (0..(bytes / 8) as u64).collect();
    let per = data.len().div_ceil(threads.max(1));
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            let total = std::thread::scope(|s| {
                let hs: Vec<_> = data
                    .chunks(per)
                    .map(|c| {
                        s.spawn(move || {
                            // Eight independent sums: the loop streams loads, not additions.
                            let mut acc = [0u64; 8];
                            for x in c.chunks_exact(8) {
                                for l in 0..8 {
                                    acc[l] = acc[l].wrapping_add(x[l]);
                                }
                            }
                            acc.iter().fold(0u64, |a, b| a.wrapping_add(*b))
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or(0))
                    .fold(0u64, u64::wrapping_add)
            });
            std::hint::black_box(total);
            bytes as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

#[cfg(test)]
mod tests {
    #[test]
    fn bandwidth_is_a_positive_rate() {
        let bw = super::read_bandwidth_of(8 << 20, 2);
        // Anything from a slow VM (1 GB/s) to a fast server (1 TB/s) for an 8 MiB buffer.
        assert!((1e8..1e13).contains(&bw), "{bw} bytes/s");
    }
}
