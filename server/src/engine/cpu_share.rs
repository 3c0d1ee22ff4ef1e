//! How many CPU threads a model step should use now: all those configured while the machine is
//! otherwise idle, fewer while other programs keep cores busy.
//!
//! ggml's threads meet at a barrier after every operation, so a step goes at the pace of its
//! slowest thread. A thread that shares its core with another program waits for the kernel's
//! scheduler (milliseconds) at every barrier while the others spin: with one of two cores busy,
//! two threads decoded the real 0.5B model three times slower than idle, one thread hardly
//! slower at all (docs/benchmarks.md). So while the engine evaluates, it reads what the CPUs it
//! may run on did lately, every `INTERVAL` at most, and scales its configured thread counts by
//! the share of those CPUs the other programs left free.
//!
//! What others did is the CPUs' time not idle, less this process's own time: idle time from
//! `/proc/stat` (kept exactly on kernels that stop the tick when idle, as all current ones do),
//! own time from `/proc/self/stat`. `/proc/stat`'s busy columns are sampled at each tick
//! instead, and overcounted by a third of a core on a 2-core VM while the engine's threads went
//! to sleep and woke hundreds of times a second, which made the counts flap on an idle machine.
//! A change also waits for a second window that agrees, so one odd window changes nothing.
//!
//! What others used is not what they wanted, though: with both of 2 cores held by two other
//! programs and the engine on one thread, those programs got 1.3 cores' worth and the engine
//! a third of a core's share less than on two threads (decode 141 against 104 ms/token). When
//! every CPU is wanted, the scheduler shares time out evenly among the runnable threads, each of
//! the engine's threads is slowed alike, and fewer threads only means a smaller share. So the
//! other programs' demand is read too, as the runnable tasks (`/proc/stat`'s `procs_running`)
//! less this process's own (its threads in state `R` under `/proc/self/task`), smoothed over
//! windows: when it fills every CPU the configured counts stay, as before this module existed.
//!
//! Reading the counters is all this costs: nothing runs while the engine is idle. Where they
//! cannot be read (not Linux, no `/proc`), the configured counts stay.

use std::time::{Duration, Instant};

/// How often the load is looked at while the engine evaluates.
pub(crate) const INTERVAL: Duration = Duration::from_millis(500);

/// A window longer than this (the engine was idle meanwhile) says little about the load now: the
/// counts stay as they are, and the next window starts fresh.
const STALE: Duration = Duration::from_secs(10);

/// Thread counts for a step: `decode` for a step of one token, `batch` for several (llama.cpp
/// picks between the two by the batch's size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Threads {
    pub decode: u32,
    pub batch: u32,
}

/// The counters at one moment, over the CPUs this process may run on, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// Time those CPUs were idle or waiting for I/O.
    pub idle: u64,
    /// Time this process ran (user and system, all its threads).
    pub own: u64,
    /// Tasks runnable on the whole machine at that moment, and this process's among them.
    pub running: u32,
    pub own_running: u32,
}

/// Cores' worth of work other programs did between two readings `elapsed_ticks` apart, out of
/// `n_cpus`: what was not idle, less this process's own time.
pub(crate) fn others_busy(
    before: CpuTimes,
    after: CpuTimes,
    elapsed_ticks: f64,
    n_cpus: usize,
) -> f64 {
    if elapsed_ticks <= 0.0 || n_cpus == 0 {
        return 0.0;
    }
    let idle = after.idle.saturating_sub(before.idle) as f64;
    let own = after.own.saturating_sub(before.own) as f64;
    ((n_cpus as f64 * elapsed_ticks - idle - own) / elapsed_ticks).clamp(0.0, n_cpus as f64)
}

/// How far past a count's midpoint the load must go before the count changes: without it, a
/// load hovering at half a core (on 2 CPUs, a language server and an editor at work) switched
/// between one and two threads several times a minute.
const HYSTERESIS: f64 = 0.15;

/// The configured `max` scaled by the share of `n_cpus` left free when others keep `others`
/// cores busy, rounded to the nearest count and never below one: with one of two cores busy,
/// 2 threads become 1; one core's worth busy out of 16, 16 become 15. The `current` count stays
/// unless the scaled count passes the midpoint to the next by `HYSTERESIS`. When other
/// programs' runnable tasks (`others_runnable`, smoothed) fill every CPU, `max`: the CPUs are
/// shared out by time then, and fewer threads would only get less of it.
pub(crate) fn threads_for(
    max: u32,
    current: u32,
    n_cpus: usize,
    others: f64,
    others_runnable: f64,
) -> u32 {
    if n_cpus == 0 || max <= 1 {
        return max.max(1);
    }
    if others_runnable >= n_cpus as f64 - 0.5 {
        return max;
    }
    let free_share = ((n_cpus as f64 - others) / n_cpus as f64).clamp(0.0, 1.0);
    let scaled = f64::from(max) * free_share;
    let current = current.clamp(1, max);
    if (scaled - f64::from(current)).abs() > 0.5 + HYSTERESIS {
        ((scaled + 0.5).floor() as u32).clamp(1, max)
    } else {
        current
    }
}

/// Sums idle and iowait over the per-CPU lines of `/proc/stat` for the CPUs in `cpus`, and
/// reads the tasks runnable now (`procs_running`).
pub(crate) fn parse_proc_stat(text: &str, cpus: &[usize]) -> Option<(u64, u32)> {
    let mut idle = 0;
    let mut n_found = 0;
    let mut running = None;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let name = fields.next();
        if name == Some("procs_running") {
            running = fields.next().and_then(|n| n.parse().ok());
            continue;
        }
        let Some(cpu) = name
            .and_then(|name| name.strip_prefix("cpu"))
            .and_then(|idx| idx.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&cpu) {
            continue;
        }
        // user nice system idle iowait …
        let values: Vec<u64> = fields.take(5).map_while(|v| v.parse().ok()).collect();
        let [_, _, _, cpu_idle, iowait] = values[..] else {
            return None;
        };
        idle += cpu_idle + iowait;
        n_found += 1;
    }
    (n_found > 0).then_some((idle, running?))
}

/// Whether a `/proc/…/task/…/stat` line says the thread is runnable (state `R`, the field after
/// the command name).
pub(crate) fn is_running(stat: &str) -> bool {
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_ascii_whitespace().next())
        == Some("R")
}

/// This process's user and system time from `/proc/self/stat` (fields 14 and 15, counted after
/// the command name, which may hold spaces and parentheses).
pub(crate) fn parse_self_stat(text: &str) -> Option<u64> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    // Field 3 (state) is the first after the name; utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Chooses the thread counts from the load, `INTERVAL` after `INTERVAL`.
#[derive(Debug)]
pub(crate) struct ThreadGovernor {
    max: Threads,
    current: Threads,
    /// Counts the last window asked for, which the next must ask for too.
    pending: Option<Threads>,
    /// Other programs' runnable tasks, smoothed over the windows.
    others_runnable: f64,
    cpus: Vec<usize>,
    ticks_per_second: f64,
    last: Option<(Instant, CpuTimes)>,
    read: fn(&[usize]) -> Option<CpuTimes>,
}

impl ThreadGovernor {
    /// A governor over the CPUs this process may run on, or `None` where the load cannot be
    /// read (then the configured counts are all there is).
    pub(crate) fn new(max: Threads) -> Option<ThreadGovernor> {
        let (cpus, ticks_per_second) = allowed_cpus()?;
        ThreadGovernor::with_reader(max, cpus, ticks_per_second, read_times)
    }

    pub(crate) fn with_reader(
        max: Threads,
        cpus: Vec<usize>,
        ticks_per_second: f64,
        read: fn(&[usize]) -> Option<CpuTimes>,
    ) -> Option<ThreadGovernor> {
        let first = read(&cpus)?;
        Some(ThreadGovernor {
            max,
            current: max,
            pending: None,
            others_runnable: 0.0,
            cpus,
            ticks_per_second,
            last: Some((Instant::now(), first)),
            read,
        })
    }

    /// Called before each step and while idle: the new counts when they change, with the cores
    /// others kept busy; `None` when they stay (most calls, which only read the clock).
    pub(crate) fn poll(&mut self, now: Instant) -> Option<(Threads, f64)> {
        let (since, before) = self.last?;
        let elapsed = now.saturating_duration_since(since);
        if elapsed < INTERVAL {
            return None;
        }
        let Some(after) = (self.read)(&self.cpus) else {
            self.last = None;
            return None;
        };
        self.last = Some((now, after));
        // One reading is a moment: a process starting, or this process's threads going to
        // sleep between the two files read, shows up as several runnable tasks, so a reading
        // counts for at most every CPU busy.
        let others_runnable =
            f64::from(after.running.saturating_sub(after.own_running)).min(self.cpus.len() as f64);
        self.others_runnable = (self.others_runnable + others_runnable) / 2.0;
        if elapsed > STALE {
            self.pending = None;
            return None;
        }
        let elapsed_ticks = elapsed.as_secs_f64() * self.ticks_per_second;
        let others = others_busy(before, after, elapsed_ticks, self.cpus.len());
        tracing::trace!(
            others,
            others_runnable = self.others_runnable,
            elapsed_ticks,
            idle = after.idle.saturating_sub(before.idle),
            own = after.own.saturating_sub(before.own),
            "load"
        );
        let wanted = Threads {
            decode: threads_for(
                self.max.decode,
                self.current.decode,
                self.cpus.len(),
                others,
                self.others_runnable,
            ),
            batch: threads_for(
                self.max.batch,
                self.current.batch,
                self.cpus.len(),
                others,
                self.others_runnable,
            ),
        };
        if wanted == self.current {
            self.pending = None;
            return None;
        }
        if self.pending != Some(wanted) {
            self.pending = Some(wanted);
            return None;
        }
        self.pending = None;
        self.current = wanted;
        Some((wanted, others))
    }
}

#[cfg(target_os = "linux")]
fn allowed_cpus() -> Option<(Vec<usize>, f64)> {
    // SAFETY: `set` is a plain bitmask the call fills in; pid 0 is this thread. sysconf only
    // reads a constant.
    unsafe {
        let ticks_per_second = libc::sysconf(libc::_SC_CLK_TCK);
        if ticks_per_second <= 0 {
            return None;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect();
        (!cpus.is_empty()).then_some((cpus, ticks_per_second as f64))
    }
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Option<(Vec<usize>, f64)> {
    None
}

fn read_times(cpus: &[usize]) -> Option<CpuTimes> {
    let (idle, running) = parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?, cpus)?;
    let own = parse_self_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let own_running = std::fs::read_dir("/proc/self/task")
        .ok()?
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter(|stat| is_running(stat))
        .count() as u32;
    Some(CpuTimes {
        idle,
        own,
        running,
        own_running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_STAT: &str = "cpu  300 0 100 1000 10 0 5 0 0 0
cpu0 100 0 50 500 5 0 2 0 0 0
cpu1 200 0 50 400 7 0 3 1 0 0
intr 12345
ctxt 999
procs_running 3
procs_blocked 0
";

    #[test]
    fn proc_stat_sums_idle_over_the_allowed_cpus_only() {
        assert_eq!(parse_proc_stat(PROC_STAT, &[0, 1]), Some((912, 3)));
        assert_eq!(parse_proc_stat(PROC_STAT, &[1]), Some((407, 3)));
        assert_eq!(parse_proc_stat(PROC_STAT, &[7]), None);
        assert_eq!(parse_proc_stat("cpu0 1 2 3\nprocs_running 1\n", &[0]), None);
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5 6 7 8\n", &[0]), None);
    }

    #[test]
    fn self_stat_reads_user_and_system_time_past_an_awkward_name() {
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 123 45 0 0 20 0 3 0 99 1000 50";
        assert_eq!(parse_self_stat(line), Some(168));
        assert_eq!(parse_self_stat("4242 (x) S 1"), None);
        assert_eq!(parse_self_stat("garbage"), None);
        assert!(is_running(line.replace(" S ", " R ").as_str()));
        assert!(!is_running(line));
        assert!(!is_running("garbage"));
    }

    #[test]
    fn others_are_what_was_not_idle_less_this_process() {
        let before = CpuTimes {
            idle: 1000,
            own: 300,
            running: 0,
            own_running: 0,
        };
        // 2 CPUs for 100 ticks: 50 idle, 50 ours, so one core's worth of others.
        let after = CpuTimes {
            idle: 1050,
            own: 350,
            running: 0,
            own_running: 0,
        };
        assert!((others_busy(before, after, 100.0, 2) - 1.0).abs() < 1e-9);
        // Our own time counted past the busy time (rounding) is no load at all.
        let ours_only = CpuTimes {
            idle: 1050,
            own: 460,
            running: 0,
            own_running: 0,
        };
        assert_eq!(others_busy(before, ours_only, 100.0, 2), 0.0);
        assert_eq!(others_busy(before, before, 0.0, 2), 0.0);
        // Nothing idle and nothing ours: every CPU busy with others, and no more.
        assert_eq!(others_busy(before, before, 100.0, 2), 2.0);
    }

    #[test]
    fn threads_scale_with_the_free_share() {
        let cases: &[(u32, u32, usize, f64, f64, u32)] = &[
            // (configured, current, cpus, others busy, others runnable, chosen)
            (2, 2, 2, 0.0, 0.0, 2),
            (2, 2, 2, 0.4, 0.5, 2),
            (2, 2, 2, 1.0, 1.0, 1),
            (2, 2, 2, 1.3, 1.4, 1),
            // Half a core either way of the midpoint: the count stays, whichever it is.
            (2, 2, 2, 0.6, 0.5, 2),
            (2, 1, 2, 0.6, 0.5, 1),
            (2, 1, 2, 0.4, 0.5, 1),
            (2, 2, 2, 0.7, 0.5, 1),
            (2, 1, 2, 0.3, 0.5, 2),
            // Every CPU wanted by others: shared out by time, so all threads.
            (2, 1, 2, 1.3, 1.6, 2),
            (2, 2, 2, 2.0, 2.0, 2),
            (1, 1, 2, 0.0, 0.0, 1),
            (1, 1, 2, 2.0, 0.0, 1),
            (16, 16, 16, 1.0, 1.0, 15),
            (16, 16, 16, 8.0, 8.0, 8),
            (16, 1, 16, 12.0, 40.0, 16),
            (4, 4, 8, 3.0, 3.0, 3),
            (4, 4, 8, 5.0, 5.0, 2),
            (4, 4, 8, 0.5, 0.0, 4),
            (8, 8, 8, 7.4, 7.0, 1),
        ];
        for &(max, current, n_cpus, others, others_runnable, chosen) in cases {
            assert_eq!(
                threads_for(max, current, n_cpus, others, others_runnable),
                chosen,
                "{max} threads ({current} now) on {n_cpus} CPUs, {others} busy, {others_runnable} runnable"
            );
        }
    }

    thread_local! {
        static TIMES: std::cell::Cell<CpuTimes> = const { std::cell::Cell::new(CpuTimes { idle: 0, own: 0, running: 0, own_running: 0 }) };
    }

    fn fake_read(_: &[usize]) -> Option<CpuTimes> {
        Some(TIMES.with(std::cell::Cell::get))
    }

    /// One window of `INTERVAL` (50 ticks a CPU at 100 ticks a second) on 2 CPUs, and the tasks
    /// runnable at its end: others' and ours.
    fn window(idle: u64, own: u64, others_running: u32, own_running: u32) {
        TIMES.with(|times| {
            let mut now = times.get();
            now.idle += idle;
            now.own += own;
            now.running = others_running + own_running;
            now.own_running = own_running;
            times.set(now);
        });
    }

    #[test]
    fn the_governor_changes_counts_when_two_windows_agree_and_skips_stale_ones() {
        let max = Threads {
            decode: 2,
            batch: 2,
        };
        let one = Threads {
            decode: 1,
            batch: 1,
        };
        let mut governor = ThreadGovernor::with_reader(max, vec![0, 1], 100.0, fake_read).unwrap();
        let start = governor.last.unwrap().0;
        let at = |n_windows: u32| start + INTERVAL * n_windows;
        // Within the interval nothing is read.
        window(0, 50, 1, 2);
        assert_eq!(governor.poll(start + INTERVAL / 2), None);
        // Another program holds a core (50 ticks ours, 50 others'; runnable: it and our two
        // threads): asked once, nothing yet.
        assert_eq!(governor.poll(at(1)), None);
        // One odd window between two busy ones resets the count.
        window(100, 0, 0, 1);
        assert_eq!(governor.poll(at(2)), None);
        window(0, 50, 1, 2);
        assert_eq!(governor.poll(at(3)), None);
        // Two in a row: one thread.
        window(0, 50, 1, 2);
        assert_eq!(governor.poll(at(4)), Some((one, 1.0)));
        assert_eq!(governor.current, one);
        // Still held, and the engine idle meanwhile: nothing to report.
        window(0, 50, 1, 1);
        assert_eq!(governor.poll(at(5)), None);
        // A moment with many runnable tasks counts as every CPU wanted, once: not enough.
        window(0, 50, 9, 1);
        assert_eq!(governor.poll(at(6)), None);
        window(0, 50, 1, 1);
        assert_eq!(governor.poll(at(7)), None);
        assert_eq!(governor.current, one);
        // Two more programs: every CPU wanted, so all threads again once the smoothed demand
        // says so.
        window(0, 50, 3, 1);
        assert_eq!(governor.poll(at(8)), None);
        window(0, 50, 3, 1);
        assert_eq!(governor.poll(at(9)), Some((max, 1.0)));
        // Idle for longer than a stale window: nothing decided, the next window starts then.
        window(2000, 0, 0, 1);
        let later = at(10) + STALE * 2;
        assert_eq!(governor.poll(later), None);
        assert_eq!(governor.current, max);
    }
}
