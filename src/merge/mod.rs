//! TEMPORARY stub until the merge engine lands (same API).
use crate::tarindex::Entry;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef { pub layer: u32, pub entry: u32 }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InodeKind { Dir, File, Symlink, CharDev, BlockDev, Fifo }
#[derive(Debug, Clone)]
pub struct Inode { pub kind: InodeKind, pub entry: Option<EntryRef>, pub nlink: u32, pub parent: u32, pub children: Vec<(Box<[u8]>, u32)> }
#[derive(Debug, Clone, Default)]
pub struct MergedTree { pub inodes: Vec<Inode> }
pub struct Warning { pub layer: u32, pub path: Vec<u8>, pub reason: &'static str }
impl std::fmt::Display for Warning { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "layer {}: {}: {}", self.layer, String::from_utf8_lossy(&self.path), self.reason) } }
pub fn merge(_layers: &[&[Entry]]) -> (MergedTree, Vec<Warning>) { (MergedTree { inodes: vec![Inode { kind: InodeKind::Dir, entry: None, nlink: 2, parent: 0, children: vec![] }] }, vec![]) }
pub fn layer_tree(e: &[Entry]) -> (MergedTree, Vec<Warning>) { merge(&[e]) }
