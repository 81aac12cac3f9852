//! What the CLI prints without mounting (`imgfs inspect`, `ls`, `cat`): path resolution that
//! follows symlinks inside an image the way `chroot` would, `ls -l` lines, and the inspect JSON.
//! Everything reads through [`crate::fs::Fs`], so it shows exactly what a mount shows.

pub mod inspect;
pub mod ls;
pub mod walk;
