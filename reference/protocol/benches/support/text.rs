//! Source-like text for the `hot_paths` benches of every crate (included by path, so the same
//! words and the same draws serve the protocol's, the server's and the agent's benches).

/// `len` bytes of source-like text (words, punctuation, quotes and newlines, so JSON escapes
/// and deflate see what real files give them), drawn by a generator seeded with `seed`.
pub fn source_text(seed: u64, len: usize) -> String {
    // Separated by `|`: some words hold spaces, quotes and newlines.
    const WORDS: &str =
        "const|let|return|import|export|function|=>|{|}|(|)|;\n|\n  |useState|props|className=\"flex\"|<div>|\
        </div>|0|1|true|null|await|async|if|else|from \"react\"|value|onClick|items.map|// why: keep it|type|interface|\
        string|number";
    let words: Vec<&str> = WORDS.split('|').collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = String::with_capacity(len + 32);
    while out.len() < len {
        out.push_str(words[rng.usize(..words.len())]);
        out.push(' ');
    }
    out.truncate(len);
    out
}
