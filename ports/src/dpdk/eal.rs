//! The DPDK Environment Abstraction Layer: its arguments, and its one start per process.
//!
//! `rte_eal_init` may run once per process; [`init`] remembers the arguments it ran with and
//! refuses a second, different start. The EAL pins the thread that starts it to the main
//! lcore's CPUs, so the main lcore is given every CPU this process may run on: the daemon's
//! control thread (and the threads it spawns) keep the affinity they had. Workers join the
//! EAL as registered non-EAL threads ([`register_thread`]), which gives each an lcore id and
//! so a per-lcore mempool cache.

use std::ffi::{CString, c_char, c_int};
use std::sync::Mutex;

use super::{DpdkError, errno, strerror};
use crate::device::is_pci_address;

/// What the EAL is started with, from the MUX config's `[dpdk]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EalConfig {
    /// `--file-prefix`: names the process's runtime files; unique per DPDK process on a host.
    pub file_prefix: String,
    /// Back memory with hugepages; `false` passes `--no-huge` (tests, VMs without hugepages).
    pub hugepages: bool,
    /// `-m`: megabytes of memory to reserve.
    pub memory_mb: u32,
    /// Devices to probe: PCI addresses (`--allow`) or virtual-device specs (`--vdev`).
    pub devices: Vec<String>,
    /// Further EAL arguments, appended verbatim.
    pub extra: Vec<String>,
}

impl EalConfig {
    /// The EAL's argument vector (program name first).
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "mux".to_string(),
            format!("--file-prefix={}", self.file_prefix),
            format!("--lcores=0@({})", allowed_cpus()),
            "-m".to_string(),
            self.memory_mb.to_string(),
            "--no-telemetry".to_string(),
        ];
        if !self.hugepages {
            args.extend(["--no-huge".to_string(), "--no-shconf".to_string()]);
        }
        let mut any_pci = false;
        for device in &self.devices {
            if is_pci_address(device) {
                any_pci = true;
                args.extend(["--allow".to_string(), device.clone()]);
            } else {
                args.extend(["--vdev".to_string(), device.clone()]);
            }
        }
        if !any_pci {
            // Probe no PCI device at all: a test or lab run must not grab a NIC by accident.
            args.push("--no-pci".to_string());
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// The arguments the EAL of this process was started with, once it has been.
static STARTED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Starts the EAL with `config`'s arguments. A second call with the same arguments does
/// nothing; with other arguments it fails ([`DpdkError::EalAlreadyInitialised`]).
pub fn init(config: &EalConfig) -> Result<(), DpdkError> {
    let args = config.args();
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(previous) = started.as_ref() {
        return if *previous == args {
            Ok(())
        } else {
            Err(DpdkError::EalAlreadyInitialised)
        };
    }
    let joined = args.join(" ");
    let c_args: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| DpdkError::Config(format!("an EAL argument contains a NUL byte: {joined}")))?;
    // The EAL keeps pointers into argv (and may reorder it): leak it; this happens once.
    let argv: &'static mut [*mut c_char] = Box::leak(
        c_args
            .into_iter()
            .map(CString::into_raw)
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    // SAFETY: argv holds argc valid NUL-terminated strings that live for the rest of the
    // process; STARTED's lock makes this the only call in the process.
    let rc = unsafe { mux_dpdk_sys::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
    if rc < 0 {
        let reason = strerror(errno());
        let hint = if config.hugepages {
            let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
            hugepage_hint(
                &read("/proc/mounts"),
                &read("/proc/meminfo"),
                config.memory_mb,
            )
            .map(|h| format!("; {h}"))
            .unwrap_or_default()
        } else {
            String::new()
        };
        return Err(DpdkError::Eal {
            reason,
            hint,
            args: joined,
        });
    }
    *started = Some(args);
    Ok(())
}

/// Why an EAL asked for hugepages cannot have them, from `/proc/mounts` and `/proc/meminfo`:
/// the EAL itself only says "Cannot get hugepage information" or "Permission denied".
/// `memory_mb` (the EAL's `-m`) sizes the reservation it suggests.
fn hugepage_hint(mounts: &str, meminfo: &str, memory_mb: u32) -> Option<String> {
    let mounted = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"));
    if !mounted {
        return Some(
            "hugepages are asked for but no hugetlbfs is mounted: \
             `mount -t hugetlbfs nodev /dev/hugepages`, or run without hugepages"
                .to_string(),
        );
    }
    // `Hugetlb:` is the memory reserved in hugepages of every size, in kB.
    let reserved_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Hugetlb:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    (reserved_kb == Some(0)).then(|| {
        format!(
            "hugepages are asked for but none are reserved: `echo {} > /proc/sys/vm/nr_hugepages` \
             ({memory_mb} MB in 2 MiB pages), or run without hugepages",
            memory_mb.div_ceil(2)
        )
    })
}

/// Makes the calling thread a registered non-EAL thread, so it has an lcore id (and a mempool
/// cache); does nothing on a thread that already has one. Returns the lcore id.
pub fn register_thread() -> Result<u32, DpdkError> {
    // SAFETY: reads the calling thread's lcore id; the EAL is started (ports are opened only
    // from a DpdkRuntime, which exists only after init).
    let id = unsafe { mux_dpdk_sys::mux_dpdk_lcore_id() };
    if id != mux_dpdk_sys::LCORE_ID_ANY {
        return Ok(id);
    }
    // SAFETY: as above; registering has no other precondition.
    if unsafe { mux_dpdk_sys::rte_thread_register() } != 0 {
        return Err(DpdkError::Config(format!(
            "cannot give this worker thread an lcore ({}): raise RTE_MAX_LCORE or use fewer workers",
            strerror(errno())
        )));
    }
    // SAFETY: as above.
    Ok(unsafe { mux_dpdk_sys::mux_dpdk_lcore_id() })
}

/// The CPUs this process may run on, as an EAL cpuset list (`0,1,2`).
fn allowed_cpus() -> String {
    let mut set = std::mem::MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: set is a zeroed cpu_set_t of the size passed; the call fills it.
    let rc = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set.as_mut_ptr())
    };
    if rc != 0 {
        return "0".to_string();
    }
    // SAFETY: sched_getaffinity succeeded, so the set is initialised.
    let set = unsafe { set.assume_init() };
    let cpus: Vec<String> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads a bit of an initialised set; the index is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .map(|c| c.to_string())
        .collect();
    if cpus.is_empty() {
        "0".to_string()
    } else {
        cpus.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_the_config() {
        let config = EalConfig {
            file_prefix: "mux-t".into(),
            hugepages: false,
            memory_mb: 256,
            devices: vec!["net_null0".into(), "0000:03:00.0".into()],
            extra: vec!["--log-level=notice".into()],
        };
        let args = config.args();
        assert!(args.contains(&"--file-prefix=mux-t".to_string()));
        assert!(args.contains(&"--no-huge".to_string()));
        assert!(args.windows(2).any(|w| w == ["--vdev", "net_null0"]));
        assert!(args.windows(2).any(|w| w == ["--allow", "0000:03:00.0"]));
        assert!(!args.contains(&"--no-pci".to_string()));
        assert_eq!(args.last().map(String::as_str), Some("--log-level=notice"));
        let vdev_only = EalConfig {
            devices: vec!["net_ring0".into()],
            hugepages: true,
            ..config
        };
        let args = vdev_only.args();
        assert!(args.contains(&"--no-pci".to_string()));
        assert!(!args.contains(&"--no-huge".to_string()));
    }

    #[test]
    fn hugepage_hint_names_what_is_missing() {
        let proc_mount = "proc /proc proc rw 0 0\n";
        let huge_mount = "nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n";
        let none = "HugePages_Total:       0\nHugetlb:               0 kB\n";
        let some = "HugePages_Total:     512\nHugetlb:         1048576 kB\n";
        let unmounted = hugepage_hint(proc_mount, some, 512).expect("a hint");
        assert!(unmounted.contains("mount -t hugetlbfs"), "{unmounted}");
        let empty =
            hugepage_hint(&format!("{proc_mount}{huge_mount}"), none, 1024).expect("a hint");
        assert!(
            empty.contains("echo 512 > /proc/sys/vm/nr_hugepages"),
            "{empty}"
        );
        assert_eq!(hugepage_hint(huge_mount, some, 512), None);
        // A kernel without the `Hugetlb:` line: no guess.
        assert_eq!(hugepage_hint(huge_mount, "MemTotal: 1 kB\n", 512), None);
    }
}
