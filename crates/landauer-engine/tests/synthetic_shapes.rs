//! Synthetic models against the real architectures' published numbers.

use candle_core::quantized::GgmlDType;
use landauer_engine::synthetic::{Quant, SyntheticSpec, ARCHITECTURES, QUANTS};

/// Parameter counts as published with each model (the safetensors total on its Hugging Face
/// page; tied embeddings counted once).
const PUBLISHED_PARAMETERS: &[(&str, u64)] = &[
    ("smollm2-135m", 134_515_008),
    ("smollm2-360m", 361_821_120),
    ("qwen2.5-0.5b", 494_032_768),
    // Qwen/Qwen3-0.6B's model card: 0.6B parameters, 0.44B of them outside the (tied)
    // embedding: 440,467,456 + 151,936 x 1,024.
    ("qwen3-0.6b", 596_049_920),
    ("llama-3.2-1b", 1_235_814_400),
    ("llama-3.2-3b", 3_212_749_824),
    ("llama-3.1-8b", 8_030_261_248),
    ("qwen2.5-7b", 7_615_616_512),
];

/// Bits per weight of ggml's block formats (llama.cpp's quantization table).
fn bits_per_weight(d: GgmlDType) -> f64 {
    match d {
        GgmlDType::Q4_0 => 4.5,
        GgmlDType::Q4_1 => 5.0,
        GgmlDType::Q5_0 => 5.5,
        GgmlDType::Q5_1 => 6.0,
        GgmlDType::Q8_0 => 8.5,
        GgmlDType::Q4K => 4.5,
        GgmlDType::Q5K => 5.5,
        GgmlDType::Q6K => 6.5625,
        GgmlDType::F16 => 16.0,
        GgmlDType::F32 => 32.0,
        other => panic!("no rate for {other:?}"),
    }
}

#[test]
fn parameter_counts_match_the_published_models() {
    assert_eq!(PUBLISHED_PARAMETERS.len(), ARCHITECTURES.len());
    for (name, want) in PUBLISHED_PARAMETERS {
        let spec = SyntheticSpec::parse(&format!("synthetic:{name}:q8_0")).unwrap();
        assert_eq!(spec.arch.parameters(), *want, "{name}");
        // The header the loader sees counts the same.
        let info = spec.open().info();
        assert_eq!(info.parameters, *want, "{name}: GGUF header");
        assert!(info.synthetic);
    }
}

#[test]
fn byte_sizes_follow_the_block_formats() {
    for arch in ARCHITECTURES {
        for (q, quant) in QUANTS {
            // The 2- and 3-bit mixes are quantize-at-load presets only.
            let Ok(spec) = SyntheticSpec::parse(&format!("synthetic:{}:{q}", arch.name)) else {
                assert!(q.starts_with("q2") || q.starts_with("q3"), "{q} refused");
                continue;
            };
            let g = spec.open();
            let mut want_bits = 0f64;
            let mut fallbacks = 0;
            for (name, t) in &g.content.tensor_infos {
                let n = t.shape.elem_count() as f64;
                if t.shape.rank() == 1 {
                    assert_eq!(t.ggml_dtype, GgmlDType::F32, "{name}");
                } else if t.ggml_dtype != spec.dtype {
                    // One-type models: only K-quants fall back, and only for rows not a
                    // multiple of 256. Mixes: also the tensors llama-quantize treats apart.
                    let mixed = matches!(quant, Quant::Mix(_))
                        && [
                            "output.weight",
                            "token_embd.weight",
                            "attn_v.weight",
                            "ffn_down.weight",
                        ]
                        .iter()
                        .any(|s| name.ends_with(s));
                    assert!(
                        mixed || t.shape.dims()[1] % 256 != 0,
                        "{name} fell back needlessly"
                    );
                    fallbacks += usize::from(!mixed);
                }
                want_bits += n * bits_per_weight(t.ggml_dtype);
            }
            let info = g.info();
            assert_eq!(
                info.tensor_bytes as f64 * 8.0,
                want_bits,
                "{} {q}",
                arch.name
            );
            if arch.hidden % 256 == 0 && arch.ffn % 256 == 0 {
                assert_eq!(fallbacks, 0, "{} {q}", arch.name);
            }
        }
    }
    // A decode step reads every weight but the gathered embedding, unless the embedding is
    // also the output matrix (tied).
    for arch in ARCHITECTURES {
        let g = SyntheticSpec::parse(&format!("synthetic:{}:q8_0", arch.name))
            .unwrap()
            .open();
        let info = g.info();
        let embd = &g.content.tensor_infos["token_embd.weight"];
        let embd_bytes = (embd.shape.elem_count() / 32 * 34) as u64;
        let want = if arch.tied_embeddings {
            info.tensor_bytes
        } else {
            info.tensor_bytes - embd_bytes
        };
        assert_eq!(info.weight_bytes_per_token, want, "{}", arch.name);
    }
    // The famous sizes: Llama-3.1-8B is about 16.1 GB in F16 and 8.5 GB in Q8_0.
    let gb = |q: &str| {
        SyntheticSpec::parse(&format!("synthetic:llama-3.1-8b:{q}"))
            .unwrap()
            .open()
            .info()
            .tensor_bytes as f64
            / 1e9
    };
    assert!((gb("f16") - 16.06).abs() < 0.01, "{}", gb("f16"));
    assert!((gb("q8_0") - 8.53).abs() < 0.01, "{}", gb("q8_0"));
    assert!((gb("q4_k") - 4.52).abs() < 0.01, "{}", gb("q4_k"));
}

#[test]
fn no_two_weight_tensors_share_bytes() {
    let spec = SyntheticSpec::parse("synthetic:smollm2-135m:q4_0").unwrap();
    let mut g = spec.open();
    let names: Vec<String> = g
        .content
        .tensor_infos
        .iter()
        .filter(|(_, t)| t.shape.rank() == 2)
        .map(|(n, _)| n.clone())
        .collect();
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        let t = g
            .content
            .tensor(&mut g.file, n, &candle_core::Device::Cpu)
            .unwrap();
        let bytes = t.data().unwrap();
        // The first 4 KiB identify a tensor well enough.
        let head = bytes[..4096].to_vec();
        assert!(seen.insert(head), "{n} repeats another tensor's bytes");
        assert!(bytes.iter().any(|&b| b != 0), "{n} is zeros");
    }
    assert_eq!(seen.len(), 1 + 30 * 7, "embedding and 7 matrices per layer");
}
