//! The tokenizer of a checkpoint: a Hugging Face `tokenizer.json` next to safetensors, or a
//! byte-level BPE rebuilt from a GGUF file's metadata.
//!
//! GGUF stores a GPT-2-style tokenizer as its token strings (`tokenizer.ggml.tokens`), merges
//! (`tokenizer.ggml.merges`) and a pre-tokenizer name (`tokenizer.ggml.pre`). The tokenizer is
//! rebuilt as the `tokenizers` crate's BPE with byte-level pre-tokenization; for the pre-tokenizer
//! names of SmolLM and StarCoder (`smollm`, `starcoder`, `refact`, `codeshell`) digits are split
//! one by one first, as their `tokenizer.json` does. Special tokens are not matched in the text:
//! the texts measured here are plain prose.

use super::load::gguf_content;
use crate::error::{Error, Result};
use std::path::Path;
use tokenizers::Tokenizer;

/// Pre-tokenizer names whose digits are split one by one before the byte-level split.
const SPLIT_DIGITS: [&str; 4] = ["smollm", "starcoder", "refact", "codeshell"];

/// The tokenizer of the checkpoint at `path` (a GGUF file, or a directory with `tokenizer.json`).
pub fn load(path: &Path) -> Result<Tokenizer> {
    if path.is_dir() {
        let file = path.join("tokenizer.json");
        return Tokenizer::from_file(&file).map_err(|e| Error::Format {
            path: file,
            message: format!("not a readable tokenizer.json: {e}"),
        });
    }
    from_gguf(path)
}

fn from_gguf(path: &Path) -> Result<Tokenizer> {
    let content = gguf_content(path)?;
    let md = &content.metadata;
    let fail = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let strings = |key: &str| -> Result<Vec<String>> {
        let v = md
            .get(key)
            .ok_or_else(|| fail(format!("metadata `{key}` is missing")))?
            .to_vec()
            .map_err(|e| fail(format!("`{key}`: {e}")))?;
        v.iter()
            .map(|s| s.to_string().cloned())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| fail(format!("`{key}`: {e}")))
    };
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if model != "gpt2" {
        return Err(fail(format!(
            "tokenizer.ggml.model is `{model}`; only byte-level BPE (`gpt2`) is rebuilt"
        )));
    }
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    from_parts(&tokens, &merges, SPLIT_DIGITS.contains(&pre.as_str()))
        .map_err(|e| fail(format!("tokenizer: {e}")))
}

/// A byte-level BPE tokenizer from its tokens (id = position) and merges (`"a b"`), built
/// through the `tokenizer.json` format.
pub fn from_parts(
    tokens: &[String],
    merges: &[String],
    split_digits: bool,
) -> std::result::Result<Tokenizer, String> {
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::json!(i)))
        .collect();
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
    });
    let pre = if split_digits {
        serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]})
    } else {
        byte_level.clone()
    };
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": null,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        }
    });
    json.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| e.to_string())
}

/// The 256 byte-level tokens in GPT-2's byte order (for test tokenizers without merges).
pub fn byte_tokens() -> Vec<String> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(_, c)| char::from_u32(c).map(String::from).unwrap_or_default())
        .collect()
}

/// Token ids of `text` (no special tokens added). Long texts are encoded in pieces of about
/// 64 KiB cut between a letter and a space followed by a letter, where every byte-level
/// pre-tokenizer splits anyway (so the ids are those of one whole encode), which keeps the
/// tokenizer's per-byte bookkeeping to one piece at a time.
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = cut_point(rest, 1 << 16);
        let (piece, tail) = rest.split_at(cut);
        let e = tok
            .encode(piece, false)
            .map_err(|e| Error::invalid("text", format!("{} bytes", piece.len()), e))?;
        ids.extend_from_slice(e.get_ids());
        rest = tail;
    }
    Ok(ids)
}

/// The first byte offset at or after `target` that sits between a letter and a space followed
/// by a letter (`"…d| w…"`), or the whole length.
fn cut_point(text: &str, target: usize) -> usize {
    if text.len() <= target {
        return text.len();
    }
    let mut prev: Option<char> = None;
    let mut iter = text
        .char_indices()
        .skip_while(|(i, _)| *i < target)
        .peekable();
    if let Some((i, _)) = iter.peek() {
        prev = text[..*i].chars().next_back();
    }
    while let Some((i, c)) = iter.next() {
        let next = iter.peek().map(|(_, n)| *n);
        if c == ' '
            && prev.is_some_and(char::is_alphabetic)
            && next.is_some_and(char::is_alphabetic)
        {
            return i;
        }
        prev = Some(c);
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_tokens_round_trip_any_text() {
        let tok = from_parts(&byte_tokens(), &[], true).unwrap();
        let text = "Sweet 16 — ‘thou’ art\n\n  here.";
        let ids = encode(&tok, text).unwrap();
        // No merges: one token per byte.
        assert_eq!(ids.len(), text.len());
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }

    #[test]
    fn pieces_encode_as_the_whole_text() {
        let mut tokens = byte_tokens();
        tokens.extend(["Ġt".to_string(), "Ġth".into(), "Ġthe".into(), "ĊĊ".into()]);
        let merges = vec![
            "Ġ t".to_string(),
            "Ġt h".into(),
            "Ġth e".into(),
            "Ċ Ċ".into(),
        ];
        let tok = from_parts(&tokens, &merges, true).unwrap();
        let text = "Is the 1st\n\nword, the  end; ".repeat(9000);
        assert!(text.len() > 3 << 16);
        let whole = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(encode(&tok, &text).unwrap(), whole);
        let cut = cut_point(&text, 1 << 16);
        assert!(cut > 1 << 16 && cut < text.len() && text[cut..].starts_with(" the"));
    }

    #[test]
    fn merges_join_pairs_and_digits_stay_apart() {
        let mut tokens = byte_tokens();
        tokens.push("th".into());
        tokens.push("the".into());
        tokens.push("12".into());
        let merges = vec!["t h".to_string(), "th e".into(), "1 2".into()];
        let split = from_parts(&tokens, &merges, true).unwrap();
        let ids = encode(&split, "the 12").unwrap();
        // "the" is one token, " " one byte, "1" and "2" apart (digits split first).
        assert_eq!(ids.len(), 4, "{ids:?}");
        assert_eq!(ids[0], 257);
        let joined = from_parts(&tokens, &merges, false).unwrap();
        let ids = encode(&joined, "12").unwrap();
        assert_eq!(ids, vec![258]);
    }
}
