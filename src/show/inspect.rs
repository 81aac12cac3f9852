//! The JSON of `imgfs inspect` (docs/cli.md).
