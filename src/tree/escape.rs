//! Turning ref names and platform names from image metadata into one safe path component.
//!
//! Ref names come from files we did not write, so `/`, `%`, control bytes and the names `.` and
//! `..` are percent-escaped; everything else stays as it is, so `busybox:latest` reads as is.

/// Escapes `name` into a single path component (see docs/layout.md).
pub fn escape_component(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned() + "00";
    }
    if name.bytes().all(|b| b == b'.') {
        return name.bytes().map(|_| "%2E").collect();
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '/' | '%' | '\0'..='\x1f' | '\x7f' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("busybox:latest", "busybox:latest"),
            ("docker.io/library/busybox:1", "docker.io%2Flibrary%2Fbusybox:1"),
            ("100%", "100%25"),
            ("..", "%2E%2E"),
            (".", "%2E"),
            ("a\nb", "a%0Ab"),
            ("", "%00"),
        ];
        for (input, want) in cases {
            assert_eq!(escape_component(input), want, "{input:?}");
        }
    }
}
