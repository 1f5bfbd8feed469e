//! The `queryString` column: URL-encoded `key=value&...` pairs, decoded as
//! UTF-8 (`+` is a space, `%XX` a byte). Markers (`AQB`, `AQE`, `ce`) carry
//! no data; a pair with an empty value is as if it were absent.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// One decoded pair.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// A queryString pair whose decoded bytes are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPair {
    /// The (raw) key of the offending pair.
    pub key: String,
}

/// Decodes `qs` into its pairs, in order, skipping empty segments and markers.
pub fn decode(qs: &str) -> Result<Vec<Pair<'_>>, BadPair> {
    let mut out = Vec::new();
    for segment in qs.split('&') {
        if segment.is_empty() {
            continue;
        }
        let (k, v) = segment.split_once('=').unwrap_or((segment, ""));
        let key = decode_part(k).ok_or_else(|| BadPair { key: k.to_string() })?;
        if is_marker(&key) {
            continue;
        }
        let value = decode_part(v).ok_or_else(|| BadPair { key: k.to_string() })?;
        out.push((key, value));
    }
    Ok(out)
}

fn is_marker(key: &str) -> bool {
    key.eq_ignore_ascii_case("aqb") || key.eq_ignore_ascii_case("aqe") || key == "ce"
}

fn decode_part(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let replaced;
    let bytes: &[u8] = if s.contains('+') {
        replaced = s.replace('+', " ");
        replaced.as_bytes()
    } else {
        s.as_bytes()
    };
    let decoded: Vec<u8> = percent_decode(bytes).collect();
    String::from_utf8(decoded).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_in_order() {
        let pairs = decode("AQB=1&pageName=Home%20Page&g=http%3A%2F%2Fx.com%2Fa+b&&v1=%C3%A9t%C3%A9&ce=UTF-8&AQE=1").unwrap();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("pageName", "Home Page"),
                ("g", "http://x.com/a b"),
                ("v1", "été"),
            ]
        );
    }

    #[test]
    fn key_without_value_is_empty() {
        let pairs = decode("pe").unwrap();
        assert_eq!(pairs[0].1, "");
    }

    #[test]
    fn invalid_utf8_after_decoding_is_reported() {
        assert_eq!(
            decode("pageName=%FF%FE"),
            Err(BadPair {
                key: "pageName".into()
            })
        );
    }
}
