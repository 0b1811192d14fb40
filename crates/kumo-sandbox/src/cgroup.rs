//! Per-instance control groups on cgroup v2 or v1: memory (no swap), CPU
//! quota and pids limits, usage figures, OOM detection, and killing every
//! process of an instance.
//!
//! Groups live under the server's own cgroup, in `kumo-<scope>/<id>`, so a
//! restarted server finds and removes what a crashed one left behind.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Controllers used on v1 hierarchies.
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct", "freezer"];

/// Which cgroup layout the host has.
#[derive(Debug, Clone)]
pub(crate) enum Layout {
    /// One unified hierarchy; the directory under which instance groups go.
    V2 { base: PathBuf },
    /// One directory per controller under which instance groups go.
    V1 { bases: Vec<(&'static str, PathBuf)> },
}

/// Limits applied to one group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupLimits {
    pub(crate) memory_bytes: u64,
    /// CPU time allowed per 100 ms period, in microseconds.
    pub(crate) cpu_quota_us: u64,
    pub(crate) pids: u64,
}

#[derive(Debug)]
pub(crate) struct Manager {
    layout: Layout,
    /// v1: an empty group kept frozen for the server's life. The kernel
    /// patches its code on every CPU whenever the number of frozen v1
    /// groups goes from 0 to 1 or back (the `freezer_active` static key);
    /// with this group frozen, freezing and thawing an instance after each
    /// call never does.
    pin: Option<Group>,
}

/// One instance's group (in every hierarchy on v1).
#[derive(Debug)]
pub(crate) struct Group {
    dirs: Vec<(&'static str, PathBuf)>,
    v2: bool,
    /// `freezer.state` (v1) or `cgroup.freeze` (v2), kept open: freezing
    /// happens after every call.
    freezer: Option<fs::File>,
    /// `memory.peak` opened read-write (v2), for per-call peaks.
    peak: Option<fs::File>,
    /// The usage files read after every call, kept open.
    counters: Counters,
}

/// Open descriptors of the files read after every call: a read through
/// them skips the path lookups in the cgroup filesystem.
#[derive(Debug, Default)]
struct Counters {
    /// `cpuacct.usage` (v1) or `cpu.stat` (v2).
    cpu: Option<fs::File>,
    /// `memory.max_usage_in_bytes` (v1), read-write for the reset.
    max_usage: Option<fs::File>,
    /// `memory.oom_control` (v1) or `memory.events` (v2).
    oom: Option<fs::File>,
}

/// The whole (small) content of a cgroup file, read from its start.
fn read_file_at_start(file: &fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 4096];
    let n = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok().map(str::to_string)
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(value.as_bytes())
}

/// The path of this process's group in `controller` (v1) or the unified one.
fn own_group(controller: Option<&str>) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        if hit {
            return Some(path.to_string());
        }
    }
    None
}

/// The CPU weight (cgroup v2) of all instances together, against the
/// server's own leaf (100). A call needs both: the server parses and
/// answers the HTTP request, the instance runs the handler; with the
/// default weight on both sides, a machine saturated with calls gives a
/// runner holding a request too little time and the tail latency grows
/// (measured on v1: p99 25–40 ms at 16 busy instances on 2 cores with
/// equal weights, 3–5 ms with the instances at twice the server's
/// threads, for the same throughput).
const INSTANCES_CPU_WEIGHT: u32 = 200;

/// The v1 equivalent: the server's threads compete one by one in their
/// own cgroup (1024 shares each, about one busy worker per CPU), so the
/// instances together get twice that per CPU.
fn instances_cpu_shares() -> u64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    2048 * cpus
}

impl Manager {
    /// Detects the layout and prepares `kumo-<scope>` groups; removes
    /// groups left by an earlier run of the same scope.
    pub(crate) fn detect(scope: &str) -> io::Result<Manager> {
        // (See INSTANCES_CPU_WEIGHT for the CPU weight of the instances.)
        let root = Path::new("/sys/fs/cgroup");
        let name = format!("kumo-{scope}");
        // v2 where the unified hierarchy gives our own cgroup the
        // controllers we need.
        let own = own_group(None).unwrap_or_else(|| "/".into());
        let parent = root.join(own.trim_start_matches('/'));
        let controllers = fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
        if ["memory", "pids", "cpu"]
            .iter()
            .all(|c| controllers.split_whitespace().any(|x| x == *c))
        {
            let base = parent.join(&name);
            fs::create_dir_all(&base)?;
            // Controllers must be enabled top-down for children to get them,
            // and a cgroup that enables them for its children may hold no
            // processes itself: move ours (the server's) into a leaf first.
            enable_controllers(&parent)?;
            write(&base.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
            // The instances together against the server's leaf: see
            // INSTANCES_CPU_WEIGHT.
            let _ = write(&base.join("cpu.weight"), &INSTANCES_CPU_WEIGHT.to_string());
            let manager = Manager {
                layout: Layout::V2 { base },
                pin: None,
            };
            manager.clean_orphans(Sweep::Start);
            manager.clean_other_scopes();
            return Ok(manager);
        }
        let mut bases = Vec::new();
        for controller in V1_CONTROLLERS {
            let mount = root.join(controller);
            if !mount.join("cgroup.procs").exists() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "cgroup controller '{controller}' is not mounted (neither v2 with memory, pids and cpu, nor v1 at {})",
                        mount.display()
                    ),
                ));
            }
            let own = own_group(Some(controller)).unwrap_or_else(|| "/".into());
            let base = mount.join(own.trim_start_matches('/')).join(&name);
            fs::create_dir_all(&base)?;
            if *controller == "memory" {
                let _ = write(&base.join("memory.use_hierarchy"), "1");
            }
            if *controller == "cpu" {
                let _ = write(
                    &base.join("cpu.shares"),
                    &instances_cpu_shares().to_string(),
                );
            }
            bases.push((*controller, base));
        }
        let mut manager = Manager {
            layout: Layout::V1 { bases },
            pin: None,
        };
        manager.clean_orphans(Sweep::Start);
        manager.clean_other_scopes();
        let pin = manager.create(
            &format!("i{}-pin", std::process::id()),
            GroupLimits {
                memory_bytes: 1024 * 1024,
                cpu_quota_us: 1000,
                pids: 1,
            },
        )?;
        pin.set_frozen(true)?;
        manager.pin = Some(pin);
        Ok(manager)
    }

    pub(crate) fn version(&self) -> u8 {
        match self.layout {
            Layout::V2 { .. } => 2,
            Layout::V1 { .. } => 1,
        }
    }

    /// Creates the group `id` with `limits`.
    pub(crate) fn create(&self, id: &str, limits: GroupLimits) -> io::Result<Group> {
        let group = match &self.layout {
            Layout::V2 { base } => Group::new(vec![("unified", base.join(id))], true),
            Layout::V1 { bases } => {
                Group::new(bases.iter().map(|(c, b)| (*c, b.join(id))).collect(), false)
            }
        };
        for (_, dir) in &group.dirs {
            if let Err(e) = fs::create_dir(dir) {
                // Another server may have removed our empty base; make it
                // again and retry once.
                let parent = dir.parent().ok_or(e)?;
                fs::create_dir_all(parent)?;
                if group.v2 {
                    write(&parent.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
                } else {
                    let _ = write(&parent.join("memory.use_hierarchy"), "1");
                }
                if let Err(e) = fs::create_dir(dir) {
                    group.remove();
                    return Err(e);
                }
            }
        }
        if let Err(e) = group.apply(limits) {
            group.remove();
            return Err(e);
        }
        let mut group = group;
        let file = if group.v2 {
            "cgroup.freeze"
        } else {
            "freezer.state"
        };
        group.freezer = group
            .dir("freezer")
            .and_then(|d| fs::OpenOptions::new().write(true).open(d.join(file)).ok());
        if group.v2 {
            group.peak = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(group.dirs[0].1.join("memory.peak"))
                .ok();
        }
        group.open_counters();
        Ok(group)
    }

    /// Kills every instance of this scope and removes its groups and base
    /// directories (at shutdown).
    pub(crate) fn remove_all(&self) {
        self.clean_orphans(Sweep::Shutdown);
        for base in self.bases() {
            let _ = fs::remove_dir(base);
        }
    }

    fn bases(&self) -> Vec<PathBuf> {
        self.labelled_bases().into_iter().map(|(_, b)| b).collect()
    }

    fn labelled_bases(&self) -> Vec<(&'static str, PathBuf)> {
        match &self.layout {
            Layout::V2 { base } => vec![("unified", base.clone())],
            Layout::V1 { bases } => bases.clone(),
        }
    }

    /// The group `name` under scope directory `scope` (in every hierarchy).
    fn group_in_scope(&self, scope: &std::ffi::OsStr, name: &std::ffi::OsStr) -> Group {
        let dirs = self
            .labelled_bases()
            .into_iter()
            .filter_map(|(c, b)| Some((c, b.parent()?.join(scope).join(name))))
            .filter(|(_, d)| d.is_dir())
            .collect();
        Group::new(dirs, matches!(self.layout, Layout::V2 { .. }))
    }

    /// Removes empty groups other servers left behind (their scopes end
    /// with their data dirs). Groups that still hold processes belong to a
    /// live server, or to instances about to exit, and are left alone.
    fn clean_other_scopes(&self) {
        let mut scopes = Vec::new();
        let mut dead = Vec::new();
        // Instance groups are named `i<server pid>-<n>`: only those of a
        // server that is gone are touched (a live server's group may be
        // empty for a moment, before its helper joins). A group spans every
        // hierarchy; `seen` keeps each one once.
        let mut seen = std::collections::BTreeSet::new();
        let bases = self.bases();
        for base in &bases {
            let Some(Ok(entries)) = base.parent().map(fs::read_dir) else {
                continue;
            };
            for scope in entries.flatten() {
                let scope_name = scope.file_name();
                let path = scope.path();
                if !scope_name.to_string_lossy().starts_with("kumo-")
                    || path == *base
                    || !path.is_dir()
                {
                    continue;
                }
                if let Ok(groups) = fs::read_dir(&path) {
                    for group in groups.flatten().filter(|g| g.path().is_dir()) {
                        let name = group.file_name();
                        if owner_is_gone(&name.to_string_lossy(), &group.path())
                            && seen.insert((scope_name.clone(), name.clone()))
                        {
                            dead.push(self.group_in_scope(&scope_name, &name));
                        }
                    }
                }
                scopes.push(path);
            }
        }
        kill_and_remove(&dead);
        if !dead.is_empty() {
            tracing::info!(
                removed = dead.len(),
                "removed instances of servers that are gone"
            );
        }
        // Fails while a scope has groups left; a live server whose empty
        // scope goes makes it again on its next instance.
        for path in scopes {
            let _ = fs::remove_dir(&path);
        }
    }

    /// Kills and removes every group left under this scope: at start,
    /// those an earlier run left; at shutdown, this run's own.
    fn clean_orphans(&self, when: Sweep) {
        let bases = self.bases();
        let (Some(first), Some(scope)) = (bases.first(), bases.first().and_then(|b| b.file_name()))
        else {
            return;
        };
        let Ok(entries) = fs::read_dir(first) else {
            return;
        };
        let groups: Vec<Group> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| self.group_in_scope(scope, &e.file_name()))
            .collect();
        kill_and_remove(&groups);
        if groups.is_empty() {
            return;
        }
        match when {
            Sweep::Start => tracing::info!(
                removed = groups.len(),
                "removed cgroups left by an earlier run"
            ),
            Sweep::Shutdown => tracing::debug!(
                removed = groups.len(),
                "removed this run's cgroups at shutdown"
            ),
        }
    }
}

/// When [`Manager::clean_orphans`] runs, which says whose groups it found.
#[derive(Clone, Copy)]
enum Sweep {
    /// At start: any group there was left by an earlier run.
    Start,
    /// At shutdown: the groups are this run's own instances.
    Shutdown,
}

/// Kills every group's processes first, everywhere (an instance that was
/// idle is frozen; `kill_all` thaws it), then removes the groups once their
/// processes have exited, within five seconds overall.
fn kill_and_remove(groups: &[Group]) {
    for group in groups {
        group.kill_all();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for group in groups {
        for (_, dir) in &group.dirs {
            remove_when_empty(dir, deadline);
        }
    }
}

/// Removes a group directory once its killed processes are gone, waiting
/// until `deadline` at most.
fn remove_when_empty(path: &Path, deadline: std::time::Instant) -> bool {
    loop {
        if fs::remove_dir(path).is_ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Enables memory, pids and cpu for the children of `parent` (v2). A
/// cgroup with processes cannot do that, so its processes (the server)
/// move into a `kumo.server` child first.
fn enable_controllers(parent: &Path) -> io::Result<()> {
    let control = parent.join("cgroup.subtree_control");
    if write(&control, "+memory +pids +cpu").is_ok() {
        return Ok(());
    }
    let leaf = parent.join("kumo.server");
    fs::create_dir_all(&leaf)?;
    let procs = fs::read_to_string(parent.join("cgroup.procs"))?;
    for pid in procs.lines().filter(|l| !l.trim().is_empty()) {
        // A process may exit meanwhile; that is fine.
        let _ = write(&leaf.join("cgroup.procs"), pid.trim());
    }
    write(&control, "+memory +pids +cpu").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot enable the memory, pids and cpu controllers under {} ({e}); delegate that cgroup to kumo",
                parent.display()
            ),
        )
    })
}

/// Whether the server that named an instance group `i<pid>-<n>` has exited.
fn owner_is_gone(name: &str, group: &Path) -> bool {
    let pid = name
        .strip_prefix('i')
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<i32>().ok());
    let Some(pid) = pid.filter(|p| *p > 0) else {
        return false;
    };
    if matches!(
        kill(Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    ) {
        return true;
    }
    // The pid may have been reused: a process that started after the
    // group was made cannot be the server that made it.
    match (
        process_start(pid),
        fs::metadata(group).and_then(|m| m.modified()),
    ) {
        (Some(started), Ok(made)) => started > made + std::time::Duration::from_secs(2),
        _ => false,
    }
}

/// When process `pid` started (from /proc, in wall-clock time).
fn process_start(pid: i32) -> Option<std::time::SystemTime> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), 1-based 22nd
    // overall is the start time in clock ticks since boot.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()?
        .max(1);
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(boot * 1000 + ticks * 1000 / hz))
}

impl Group {
    fn new(dirs: Vec<(&'static str, PathBuf)>, v2: bool) -> Group {
        Group {
            dirs,
            v2,
            freezer: None,
            peak: None,
            counters: Counters::default(),
        }
    }

    /// Opens the files read after every call.
    fn open_counters(&mut self) {
        let open = |dir: Option<&Path>, file: &str, write: bool| {
            fs::OpenOptions::new()
                .read(true)
                .write(write)
                .open(dir?.join(file))
                .ok()
        };
        self.counters = if self.v2 {
            Counters {
                cpu: open(self.dir("cpu"), "cpu.stat", false),
                max_usage: None,
                oom: open(self.dir("memory"), "memory.events", false),
            }
        } else {
            Counters {
                cpu: open(self.dir("cpuacct"), "cpuacct.usage", false),
                max_usage: open(self.dir("memory"), "memory.max_usage_in_bytes", true),
                oom: open(self.dir("memory"), "memory.oom_control", false),
            }
        };
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        if self.v2 {
            return self.dirs.first().map(|(_, d)| d.as_path());
        }
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, d)| d.as_path())
    }

    /// Sets the group's limits; also when they change on a running group.
    pub(crate) fn apply(&self, limits: GroupLimits) -> io::Result<()> {
        if self.v2 {
            let dir = &self.dirs[0].1;
            write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
            let _ = write(&dir.join("memory.swap.max"), "0");
            write(&dir.join("pids.max"), &limits.pids.to_string())?;
            write(
                &dir.join("cpu.max"),
                &format!("{} 100000", limits.cpu_quota_us),
            )?;
            let _ = write(&dir.join("memory.oom.group"), "1");
            return Ok(());
        }
        if let Some(dir) = self.dir("memory") {
            // memory+swap may never be below memory: raising a limit takes
            // the memsw write first, lowering it the memory write first, so
            // write memsw on both sides. Without swap accounting the memsw
            // file is absent; the limit then covers memory only, and the
            // host should not swap anyway.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            let bytes = limits.memory_bytes.to_string();
            let _ = write(&memsw, &bytes);
            write(&dir.join("memory.limit_in_bytes"), &bytes)?;
            let _ = write(&memsw, &bytes);
            let _ = write(&dir.join("memory.swappiness"), "0");
        }
        if let Some(dir) = self.dir("pids") {
            write(&dir.join("pids.max"), &limits.pids.to_string())?;
        }
        if let Some(dir) = self.dir("cpu") {
            write(&dir.join("cpu.cfs_period_us"), "100000")?;
            write(
                &dir.join("cpu.cfs_quota_us"),
                &limits.cpu_quota_us.to_string(),
            )?;
        }
        Ok(())
    }

    /// Every `cgroup.procs` of the group; a process writes `0` into each
    /// to join it.
    pub(crate) fn procs_paths(&self, with_freezer: bool) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .filter(|(c, _)| with_freezer || self.v2 || *c != "freezer")
            .map(|(_, d)| d.join("cgroup.procs"))
            .collect()
    }

    fn pids(&self) -> Vec<i32> {
        let dir = self
            .dir("pids")
            .or_else(|| self.dirs.first().map(|(_, d)| d.as_path()));
        let Some(dir) = dir else { return Vec::new() };
        fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills every process in the group. The sandbox's init is pid 1 of
    /// its namespace, so killing it takes everything below it along.
    pub(crate) fn kill_all(&self) {
        if self.v2
            && let Some(dir) = self.dirs.first()
            && write(&dir.1.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        let freezer = self.dir("freezer").filter(|_| !self.v2);
        if let Some(f) = freezer {
            let _ = write(&f.join("freezer.state"), "FROZEN");
        }
        for _ in 0..3 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if let Some(f) = freezer {
            let _ = write(&f.join("freezer.state"), "THAWED");
        }
    }

    /// The freezer hierarchy's `cgroup.procs`, on v1 only (on v2 the
    /// freezer is part of the one group).
    pub(crate) fn freezer_procs(&self) -> Option<PathBuf> {
        if self.v2 {
            return None;
        }
        self.dir("freezer").map(|d| d.join("cgroup.procs"))
    }

    /// Stops (`true`) or resumes (`false`) every process of the group.
    pub(crate) fn set_frozen(&self, frozen: bool) -> io::Result<()> {
        let value = match (self.v2, frozen) {
            (true, true) => "1",
            (true, false) => "0",
            (false, true) => "FROZEN",
            (false, false) => "THAWED",
        };
        match &self.freezer {
            Some(file) => (&*file).write_all(value.as_bytes()),
            None => Ok(()),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pids().is_empty()
    }

    /// Removes the group's directories; fails while processes remain.
    pub(crate) fn remove(&self) -> bool {
        let mut ok = true;
        for (_, dir) in &self.dirs {
            if dir.exists() && fs::remove_dir(dir).is_err() {
                ok = false;
            }
        }
        ok
    }

    /// CPU time used so far, in nanoseconds.
    pub(crate) fn cpu_ns(&self) -> u64 {
        let Some(text) = self.counters.cpu.as_ref().and_then(read_file_at_start) else {
            return 0;
        };
        if self.v2 {
            return text
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(0, |us| us * 1000);
        }
        text.trim().parse().unwrap_or(0)
    }

    /// Peak memory since the last [`Group::reset_peak`], in bytes.
    pub(crate) fn peak_memory(&self) -> u64 {
        // v2: read through the descriptor the reset was written to.
        let file = self.peak.as_ref().or(self.counters.max_usage.as_ref());
        file.and_then(read_file_at_start)
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn reset_peak(&self) {
        // v2 (kernel 6.12+): a reset holds for the descriptor it was
        // written through, which `peak_memory` reads. v1: any write of 0.
        let (file, value): (_, &[u8]) = match (&self.peak, &self.counters.max_usage) {
            (Some(peak), _) => (peak, b"reset"),
            (None, Some(max_usage)) => (max_usage, b"0"),
            (None, None) => return,
        };
        let _ = (&*file).write_all(value);
    }

    /// How many times the OOM killer struck in this group.
    pub(crate) fn oom_kills(&self) -> u64 {
        self.counters
            .oom
            .as_ref()
            .and_then(read_file_at_start)
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}
