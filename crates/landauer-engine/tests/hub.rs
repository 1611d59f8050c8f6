//! `--model owner/repo` against a model hub: a stand-in for the Hugging Face hub's HTTP API,
//! served here on loopback (hf-hub follows HF_ENDPOINT), holding checkpoints written by the
//! test. The fetched snapshot loads and generates what the checkpoint does when read from its
//! own directory, for one file and for three shards with their index; a repository the hub
//! does not have is a one-line error. (No real hub is reachable from the machines this runs
//! on; this is what stands between the code and one.)

use landauer_engine::{fetch, Device, Engine, GenerateOptions, SamplingParams};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

/// Answers GET /{owner}/{repo}/resolve/main/{file} from `root/{owner}/{repo}/{file}` as the
/// hub does: an etag, the commit, and the byte range asked for (206); 404 for what is not
/// there.
fn serve(listener: TcpListener, root: PathBuf) {
    for stream in listener.incoming().flatten() {
        let root = root.clone();
        std::thread::spawn(move || {
            let _ = answer(stream, &root);
        });
    }
}

fn answer(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap_or((v.trim(), ""));
            range = Some((a.parse::<u64>().unwrap_or(0), b.parse::<u64>().ok()));
        }
    }
    let file = path
        .split_once("/resolve/main/")
        .map(|(repo, f)| root.join(repo.trim_start_matches('/')).join(f));
    let Some(body) = file.and_then(|f| std::fs::read(f).ok()) else {
        return stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let len = body.len() as u64;
    let (a, b) = range.unwrap_or((0, None));
    let b = b
        .unwrap_or(len.saturating_sub(1))
        .min(len.saturating_sub(1));
    let part = &body[a as usize..=b as usize];
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {a}-{b}/{len}\r\n\
         ETag: \"{:x}\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\n\
         Connection: close\r\n\r\n",
        part.len(),
        len.wrapping_mul(2654435761) ^ body.iter().fold(0u64, |h, &x| h.wrapping_mul(31) + x as u64)
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(part)?;
    // Drain what the client may still send before closing.
    let _ = reader.read(&mut [0u8; 1]);
    Ok(())
}

fn greedy(engine: &mut Engine) -> Vec<u32> {
    let prompt = engine.encode("The cat sat on the mat").unwrap();
    let opts = GenerateOptions {
        max_tokens: 8,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    let mut tokens = Vec::new();
    struct Ids<'a>(&'a mut Vec<u32>);
    impl landauer_engine::TokenSink for Ids<'_> {
        fn token(
            &mut self,
            e: &landauer_engine::TokenEvent<'_>,
        ) -> Result<(), landauer_engine::SinkError> {
            self.0.push(e.token_id);
            Ok(())
        }
    }
    engine.generate(&prompt, &opts, Ids(&mut tokens)).unwrap();
    tokens
}

#[test]
fn a_checkpoint_comes_from_the_hub_and_runs_as_from_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    landauer_engine::tiny::write_tiny_llama(&gguf, &Default::default()).unwrap();
    let hub = dir.path().join("hub");
    for (repo, shards) in [("tester/tiny-one", 1), ("tester/tiny-sharded", 3)] {
        landauer_engine::tiny::write_checkpoint(&gguf, &hub.join(repo), shards).unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || serve(listener, hub));
    // This test binary holds only this test: the environment is its own.
    std::env::set_var("HF_ENDPOINT", &endpoint);
    std::env::set_var("HF_HOME", dir.path().join("cache"));
    std::env::remove_var("HF_HUB_OFFLINE");

    for (repo, shards) in [("tester/tiny-one", 1), ("tester/tiny-sharded", 3)] {
        let snapshot = fetch::hub_checkpoint(repo, false).unwrap();
        let weights = std::fs::read_dir(&snapshot)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "safetensors")
            })
            .count();
        assert_eq!(weights, shards, "{repo}: every shard fetched");
        assert!(
            snapshot.starts_with(dir.path().join("cache")),
            "in the hub cache"
        );
        let mut fetched = Engine::load(&snapshot, None, &Device::Cpu).unwrap();
        let mut local =
            Engine::load(&dir.path().join("hub").join(repo), None, &Device::Cpu).unwrap();
        assert_eq!(greedy(&mut fetched), greedy(&mut local), "{repo}");
        // A second fetch comes from the cache.
        assert_eq!(fetch::hub_checkpoint(repo, false).unwrap(), snapshot);
    }
    let err = fetch::hub_checkpoint("tester/absent", false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tester/absent") && !err.contains('\n'),
        "{err}"
    );
}
