//! An error and its causes as one line of text, for the places that keep or log an error as
//! text (a layer's failure reason, registry failures): typed errors leave their cause out of
//! their own message and return it from `source()`, as anyhow's `{:#}` expects.

use std::error::Error;

/// `e`'s message, then each cause's after ": ", skipping a cause whose text is already there
/// (some libraries repeat their cause in their own message).
pub fn text(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use crate::tarindex::{PaxError, TarError};

    #[test]
    fn causes_follow_the_message_once() {
        let e = TarError::BadPax {
            offset: 512,
            reason: PaxError::NoEquals,
        };
        assert_eq!(e.to_string(), "bad PAX extended header at offset 512");
        assert_eq!(
            super::text(&e),
            "bad PAX extended header at offset 512: record has no '='"
        );
        let io = std::io::Error::other(e);
        assert_eq!(
            super::text(&io),
            "bad PAX extended header at offset 512: record has no '='"
        );
    }
}
