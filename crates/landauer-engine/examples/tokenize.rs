//! Prints the token ids a model's tokenizer gives a text: `cargo run -p landauer-engine
//! --example tokenize -- MODEL.gguf "text"`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        return Err("usage: tokenize MODEL.gguf TEXT".into());
    }
    let gguf = landauer_engine::gguf::GgufFile::open(&args[1])?;
    let tok = landauer_engine::tokenizer::tokenizer_from_gguf(&gguf)?;
    let enc = tok
        .encode(args[2].as_str(), true)
        .map_err(|e| e.to_string())?;
    println!("{:?}", enc.get_ids());
    println!("{:?}", enc.get_tokens());
    Ok(())
}
