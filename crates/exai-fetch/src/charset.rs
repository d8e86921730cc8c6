//! Decoding a text body to a `String` in the encoding its server meant.
//!
//! The order is the WHATWG one: a byte-order mark wins (it cannot be wrong), then the
//! `charset` of the `Content-Type` header, then for HTML a `<meta charset>` or
//! `<meta http-equiv="Content-Type">` in the first 1024 bytes, then UTF-8. Undecodable bytes
//! become U+FFFD rather than failing the page: a page with one bad byte is still worth indexing.

use encoding_rs::{Encoding, UTF_8};

/// How many leading bytes of an HTML document are searched for a `<meta>` charset (the HTML
/// standard's prescan window).
const META_PRESCAN_BYTES: usize = 1024;

/// Decodes `body` given the response's `Content-Type` (if any) and whether it is HTML.
pub fn decode(body: &[u8], content_type: Option<&str>, is_html: bool) -> String {
    let declared = content_type
        .and_then(charset_param)
        .or_else(|| if is_html { meta_charset(body) } else { None })
        .and_then(|label| Encoding::for_label(label.trim().as_bytes()))
        .unwrap_or(UTF_8);
    // `decode` sniffs a BOM first and replaces malformed sequences.
    let (text, _, _) = declared.decode(body);
    text.into_owned()
}

/// The `charset` parameter of a media type, unquoted.
fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// The charset a `<meta>` element declares within the prescan window, if any.
fn meta_charset(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(META_PRESCAN_BYTES)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let mut rest = head.as_str();
    while let Some(start) = rest.find("<meta") {
        rest = &rest[start + 5..];
        let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
        if let Some(label) = charset_in_tag(tag) {
            return Some(label);
        }
    }
    None
}

/// `charset=LABEL` inside one `<meta …>` tag: covers both `charset="x"` and
/// `content="text/html; charset=x"`.
fn charset_in_tag(tag: &str) -> Option<String> {
    let at = tag.find("charset")?;
    let after = tag[at + "charset".len()..]
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let label: String = after
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    (!label.is_empty()).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_charset_decodes_windows_1252() {
        let body = b"caf\xe9 \x93quoted\x94";
        assert_eq!(
            decode(body, Some("text/plain; charset=windows-1252"), false),
            "café “quoted”"
        );
        assert_eq!(
            decode(body, Some("text/plain; Charset=\"ISO-8859-1\""), false),
            "café “quoted”"
        );
    }

    #[test]
    fn meta_charset_in_html() {
        let sjis =
            b"<html><head><meta charset=\"Shift_JIS\"></head><body>\x93\xfa\x96\x7b\x8c\xea</body>";
        assert!(decode(sjis, Some("text/html"), true).contains("日本語"));
        let equiv = b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=gbk\"><p>\xd6\xd0\xce\xc4";
        assert!(decode(equiv, None, true).contains("中文"));
        // Not HTML: a meta tag in plain text means nothing.
        assert!(!decode(equiv, Some("text/plain"), false).contains("中文"));
    }

    #[test]
    fn bom_wins_and_default_is_lossy_utf8() {
        let bom = b"\xef\xbb\xbfcaf\xc3\xa9";
        assert_eq!(
            decode(bom, Some("text/plain; charset=windows-1252"), false),
            "café"
        );
        assert_eq!(decode(b"ok \xff", None, false), "ok \u{fffd}");
        assert_eq!(
            decode(b"unknown", Some("text/plain; charset=no-such"), false),
            "unknown"
        );
    }
}
