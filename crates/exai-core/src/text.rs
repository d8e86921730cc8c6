//! Small text helpers every request path needs: cutting untrusted strings for a message without
//! splitting a character, and turning a caught panic into words for an error reply.

use std::any::Any;

/// `text` cut to at most `max_bytes`, on a character boundary.
pub fn clip(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// `text` cut to at most `max_bytes` with `…` appended when anything was cut.
pub fn clip_with_ellipsis(text: &str, max_bytes: usize) -> String {
    let clipped = clip(text, max_bytes);
    if clipped.len() == text.len() {
        text.to_string()
    } else {
        format!("{clipped}…")
    }
}

/// The message a panic carried (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_character_boundaries() {
        let text = "é".repeat(30);
        for max in 0..text.len() + 2 {
            let c = clip(&text, max);
            assert!(c.len() <= max && text.starts_with(c));
            assert!(max >= text.len() || c.len() + 2 > max);
        }
        assert_eq!(clip_with_ellipsis("abc", 3), "abc");
        assert_eq!(clip_with_ellipsis("abcd", 3), "abc…");
        assert_eq!(clip_with_ellipsis("\"éééé", 4), "\"é…");
    }

    #[test]
    fn panic_messages() {
        let caught = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "boom 1");
        let caught = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "static");
    }
}
