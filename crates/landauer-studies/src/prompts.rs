//! Prompts for studies: a built-in set, or one per line of a file.

use anyhow::Context;
use std::path::Path;

/// Prompts used when none are given: short, varied, English.
pub const BUILTIN_PROMPTS: &[&str] = &[
    "Once upon a time, there was a little girl named Lily. She",
    "The capital of France is",
    "Explain why the sky is blue.",
    "Write a haiku about energy.",
    "What is the Landauer limit?",
    "List three uses of a hammer:",
    "The quick brown fox",
    "In 1905, Albert Einstein published",
    "def fibonacci(n):",
    "A recipe for pancakes needs",
    "The mitochondria is",
    "Translate to French: good morning",
    "Summarize the plot of Hamlet in one sentence.",
    "How many legs does a spider have?",
    "Dear diary, today I",
    "The best way to learn a language is",
];

/// The prompts of a file (its non-empty lines, trimmed), or the built-in set for `None`.
pub fn read_prompts(path: Option<&Path>) -> anyhow::Result<Vec<String>> {
    match path {
        None => Ok(BUILTIN_PROMPTS.iter().map(|s| s.to_string()).collect()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read --prompts {}", p.display()))?;
            let v: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if v.is_empty() {
                anyhow::bail!("--prompts {} has no non-empty line", p.display());
            }
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_the_non_empty_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.txt");
        std::fs::write(&p, "  a \n\n b\n").unwrap();
        assert_eq!(read_prompts(Some(&p)).unwrap(), ["a", "b"]);
        std::fs::write(&p, " \n").unwrap();
        assert!(read_prompts(Some(&p))
            .unwrap_err()
            .to_string()
            .contains("no non-empty line"));
        assert_eq!(read_prompts(None).unwrap().len(), BUILTIN_PROMPTS.len());
    }
}
