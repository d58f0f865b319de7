//! `toml` and `serde` word their errors for programmers ("invalid type:
//! integer `-1`, expected u32"); an admin reads them here in plain words,
//! with what to write instead.

/// The message of a parse error at `span_text` (the text the error points
/// at), reworded where serde's jargon would puzzle an admin.
pub fn plain(message: &str, span_text: &str) -> String {
    let message = message.trim_end();
    if message.starts_with("unexpected leading zero") {
        return "a TOML number cannot start with 0: write an octal mode as a string, like mode = \"0660\"".to_string();
    }
    if message.starts_with("duplicate key") {
        let key = span_text
            .split(['=', '\n'])
            .next()
            .unwrap_or_default()
            .trim();
        return if key.is_empty() {
            "duplicate key: set each key once".to_string()
        } else {
            format!("duplicate key `{key}`: set each key once")
        };
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        return format!("unknown key `{rest}");
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (value, expected) = rest.split_once("`, expected ").unwrap_or((rest, ""));
        return format!(
            "unknown value \"{value}\", expected {}",
            expected.replace('`', "\"")
        );
    }
    if message == "wanted string or table" {
        return "expected a string in quotes".to_string();
    }
    match message {
        "invalid type: sequence, expected a map" => {
            return "expected a table { key = value }, found a list [ ... ]".to_string();
        }
        "invalid type: map, expected a sequence" => {
            return "expected a list [ ... ], found a table".to_string();
        }
        _ => {}
    }
    if let Some(rest) = message.strip_prefix("invalid type: integer `") {
        let number = rest.split('`').next().unwrap_or_default();
        if rest.contains("as i128") || rest.contains("as u128") {
            return format!("{number} is too large");
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: integer `") {
        let number = rest.split('`').next().unwrap_or_default();
        if let Some(kind) = rest.split("expected ").nth(1) {
            let range = match kind {
                "u8" => Some("0 to 255"),
                "u16" => Some("0 to 65535"),
                "u32" => Some("0 to 4294967295"),
                "u64" | "usize" => Some("0 or more"),
                _ => None,
            };
            if let Some(range) = range {
                return format!("{number} is out of range: expected a whole number from {range}");
            }
        }
    }
    for prefix in [
        "invalid type: floating point `",
        "invalid type: string ",
        "invalid type: integer `",
        "invalid type: boolean `",
    ] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((value, expected)) = rest.rsplit_once(", expected ")
        {
            let value = value.trim_end_matches('`');
            let wanted = match expected {
                "i64" | "u64" | "u32" | "u16" | "u8" | "usize" => "a whole number",
                "a boolean" => "true or false",
                "a string" => "a string in quotes",
                other => other,
            };
            return format!("expected {wanted}, found {value}");
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn serde_jargon_becomes_plain_words() {
        for (message, span, want) in [
            (
                "invalid type: integer `99999999999999999999` as i128, expected i64",
                "",
                "99999999999999999999 is too large",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "",
                "-1 is out of range: expected a whole number from 0 to 4294967295",
            ),
            (
                "invalid type: floating point `1.5`, expected i64",
                "",
                "expected a whole number, found 1.5",
            ),
            (
                "invalid type: string \"yes\", expected a boolean",
                "",
                "expected true or false, found \"yes\"",
            ),
            (
                "duplicate key",
                "delay = \"2m\"",
                "duplicate key `delay`: set each key once",
            ),
        ] {
            assert_eq!(plain(message, span), want);
        }
        assert!(plain("unexpected leading zero, expected nothing", "").contains("mode = \"0660\""));
        assert_eq!(
            plain(
                "unknown variant `learning`, expected `enforce` or `learn`",
                ""
            ),
            "unknown value \"learning\", expected \"enforce\" or \"learn\""
        );
        assert_eq!(
            plain("unknown field `delai`, expected one of `mode`, `delay`", ""),
            "unknown key `delai`, expected one of `mode`, `delay`"
        );
        assert_eq!(
            plain("wanted string or table", ""),
            "expected a string in quotes"
        );
    }
}
