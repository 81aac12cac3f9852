//! Progress bars on a terminal (indicatif): one per layer being downloaded or indexed (or
//! archive being indexed while a source opens), with bytes done / total, rate and ETA. Only
//! when stderr is a terminal: logs and pipes never get escape codes, and then nothing is drawn.
//!
//! A [`Follower`] polls a report (`Progress::report` in process, or the reports a mount daemon
//! sends its parent) ten times a second on a thread of its own, and clears its bars when
//! dropped. Output written to a terminal while bars may be drawn goes through
//! [`Follower::suspend`], so bars and output never overwrite each other.

use super::{LayerReport, LayerState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the bars are brought up to date.
const TICK: Duration = Duration::from_millis(100);

/// Where the reports come from: called on the follower's thread.
pub type Source = Box<dyn Fn() -> Vec<LayerReport> + Send>;

/// The reports of `progress`, as a follower's source.
pub fn of(progress: Arc<super::Progress>) -> Source {
    Box::new(move || progress.report())
}

/// Bars kept up to date from reports, until dropped.
pub struct Follower {
    bars: Arc<Bars>,
    sources: Arc<Mutex<Vec<Source>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The bars of the live follower, if any: [`Suspending`] writers hide them while they write.
static DRAWN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// A writer to the terminal (stderr for log lines, stdout for output) that hides the bars of a
/// live follower while it writes, so neither overwrites the other.
pub struct Suspending<W: Write>(pub W);

impl<W: Write> Write for Suspending<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let drawn = DRAWN.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match drawn {
            Some(multi) => multi.suspend(|| self.0.write(buf)),
            None => self.0.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Follower {
    /// Follows `sources` on a terminal; `None` when stderr is not a terminal (nothing is shown).
    pub fn on_terminal(sources: Vec<Source>) -> Option<Follower> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Follower::start(ProgressDrawTarget::stderr(), sources))
    }

    fn start(target: ProgressDrawTarget, sources: Vec<Source>) -> Follower {
        let bars = Arc::new(Bars {
            multi: MultiProgress::with_draw_target(target),
            shown: Mutex::new(BTreeMap::new()),
        });
        *DRAWN.lock().unwrap_or_else(|p| p.into_inner()) = Some(bars.multi.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let sources = Arc::new(Mutex::new(sources));
        let (b, s, from) = (bars.clone(), stop.clone(), sources.clone());
        let thread = std::thread::Builder::new()
            .name("imgfs-progress".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let reports: Vec<LayerReport> = from
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .flat_map(|f| f())
                        .collect();
                    b.show(&reports);
                    std::thread::sleep(TICK);
                }
            })
            .ok();
        Follower {
            bars,
            sources,
            stop,
            thread,
        }
    }

    /// Follows `source` too from now on.
    pub fn add(&self, source: Source) {
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).push(source);
    }

    /// Runs `f` (which writes to the terminal) with the bars hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bars.multi.suspend(f)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bars.show(&[]);
        *DRAWN.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The bars now drawn, by layer.
struct Bars {
    multi: MultiProgress,
    shown: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Bars {
    /// One bar per layer being worked on; bars of layers done (or failed) go away.
    fn show(&self, reports: &[LayerReport]) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        let busy: BTreeMap<&str, &LayerReport> = reports
            .iter()
            .filter(|r| matches!(r.state, LayerState::Downloading | LayerState::Indexing))
            .map(|r| (r.digest.as_str(), r))
            .collect();
        shown.retain(|name, bar| {
            let keep = busy.contains_key(name.as_str());
            if !keep {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            keep
        });
        for (name, r) in busy {
            let bar = shown.entry(name.to_owned()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(r.total));
                bar.set_style(style());
                bar
            });
            bar.set_prefix(format!("{} {}", r.state.text(), short(name)));
            bar.set_length(r.total);
            bar.set_position(r.done.min(r.total));
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:32} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// `sha256:1f6e0c8d5a3b` (digests cut to 12 hex digits, like docker); other names as they are,
/// cut to their last 40 characters.
fn short(name: &str) -> String {
    match name.split_once(':') {
        Some((alg, hex)) if hex.len() == 64 || hex.len() == 128 => format!("{alg}:{}", &hex[..12]),
        _ => {
            let n = name.chars().count();
            name.chars().skip(n.saturating_sub(40)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, state: LayerState, done: u64) -> LayerReport {
        LayerReport {
            digest: name.into(),
            state,
            done,
            total: 100,
            error: None,
        }
    }

    #[test]
    fn a_bar_per_busy_layer_only() {
        // The bars alone, without a follower: its thread would show its own (empty) reports
        // between the calls below (a flaky failure under load).
        let bars = Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            shown: Mutex::new(BTreeMap::new()),
        };
        bars.show(&[
            report(&format!("sha256:{}", "ab".repeat(32)), LayerState::Downloading, 40),
            report("x.tar.gz", LayerState::Indexing, 10),
            report("sha256:done", LayerState::Ready, 100),
        ]);
        let shown = bars.shown.lock().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(shown, [format!("sha256:{}", "ab".repeat(32)), "x.tar.gz".to_owned()]);
        bars.show(&[report("x.tar.gz", LayerState::Ready, 100)]);
        assert!(bars.shown.lock().unwrap().is_empty());
        assert_eq!(short(&format!("sha256:{}", "ab".repeat(32))), "sha256:abababababab");
    }
}
