//! Platform names (`linux-amd64`, `linux-arm-v7`) for directories and `--platform` matching.

/// `os-arch[-variant]` of a platform JSON object, or `None` when it lacks os or architecture.
pub fn dir_name(platform: &serde_json::Value) -> Option<String> {
    let field = |k: &str| platform.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    let (os, arch) = (field("os")?, field("architecture")?);
    let mut name = format!("{os}-{arch}");
    if let Some(v) = field("variant") {
        name.push('-');
        name.push_str(v);
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases = [
            (r#"{"os":"linux","architecture":"amd64"}"#, Some("linux-amd64")),
            (
                r#"{"os":"linux","architecture":"arm","variant":"v7"}"#,
                Some("linux-arm-v7"),
            ),
            (r#"{"os":"linux"}"#, None),
        ];
        for (p, want) in cases {
            let v: serde_json::Value = serde_json::from_str(p).unwrap();
            assert_eq!(dir_name(&v).as_deref(), want);
        }
    }
}
