//! Finds the system's DPDK with pkg-config, generates bindings for the allow-listed part of
//! its API, and compiles the C shim for the `static inline` functions bindgen cannot bind.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The LLVM library directory matching the `clang` on PATH (`/usr/lib/llvm-N/lib`), when it
/// holds a libclang.
///
/// bindgen loads the newest libclang it finds, but takes its system headers from the `clang`
/// on PATH: with two LLVM versions side by side (Debian's clang 14 and a clang 16, say),
/// libclang 16 reads clang 14's headers and fails ("invalid conversion between vector type
/// '__m128i'…"). Pointing LIBCLANG_PATH at the library of the same version keeps the pair
/// matched.
fn matching_libclang_dir() -> Option<PathBuf> {
    let out = Command::new("clang").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split("clang version ").nth(1)?;
    let major: u32 = version.split('.').next()?.trim().parse().ok()?;
    let dir = PathBuf::from(format!("/usr/lib/llvm-{major}/lib"));
    let has_libclang = std::fs::read_dir(&dir).ok()?.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("libclang") && n.contains(".so"))
    });
    has_libclang.then_some(dir)
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");
    if env::var_os("LIBCLANG_PATH").is_none()
        && let Some(dir) = matching_libclang_dir()
    {
        // SAFETY: the build script is still single-threaded here (nothing has been spawned
        // yet), so no other thread can read the environment while it changes.
        #[allow(unsafe_code)]
        unsafe {
            env::set_var("LIBCLANG_PATH", &dir)
        };
    }
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");

    // Emits the link flags (librte_eal, librte_ethdev, librte_mbuf, ...). The poll-mode
    // drivers are plugins the EAL loads at start from its own directory; nothing links them.
    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!(
                "DPDK not found ({e}). The `dpdk` feature needs the distribution's DPDK 22.11: \
                 apt-get install --no-install-recommends dpdk-dev libdpdk-dev pkg-config clang \
                 libclang-dev"
            )
        });

    // The full cflags, including `-include rte_config.h` and the -march DPDK was built for,
    // which pkg-config's parsed fields leave out.
    let cflags = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config --cflags libdpdk");
    let cflags: Vec<String> = String::from_utf8_lossy(&cflags.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();

    let mut shim = cc::Build::new();
    shim.file("shim.c").include(".").opt_level(2).warnings(true);
    for flag in &cflags {
        shim.flag(flag);
    }
    for path in &lib.include_paths {
        shim.include(path);
    }
    shim.compile("mux_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .clang_arg("-I.")
        .allowlist_function("mux_dpdk_.*")
        .allowlist_function("rte_eal_(init|cleanup)")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_thread_(register|unregister)")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_eal_hotplug_(add|remove)")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_pktmbuf_free_bulk")
        .allowlist_function("rte_mempool_(free|avail_count|in_use_count)")
        .allowlist_function(
            "rte_eth_(dev_configure|rx_queue_setup|tx_queue_setup|dev_start|dev_stop|\
             dev_close|dev_info_get|stats_get|stats_reset|macaddr_get|dev_get_port_by_name|\
             dev_get_name_by_port|dev_socket_id|promiscuous_enable|dev_count_avail|\
             dev_set_mtu|link_get_nowait|dev_is_valid_port|dev_default_mac_addr_set|\
             dev_adjust_nb_rx_tx_desc)",
        )
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_eth_link")
        .allowlist_var("RTE_ETH_MQ_RX_.*")
        .allowlist_var("RTE_ETH_RSS_.*")
        .allowlist_var("RTE_ETH_NAME_MAX_LEN")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "bindgen could not read the DPDK headers ({e}). Is libclang-dev installed? With \
                 several LLVM versions installed, set LIBCLANG_PATH=/usr/lib/llvm-N/lib to the \
                 version `clang --version` prints (LIBCLANG_PATH now: {:?})",
                env::var_os("LIBCLANG_PATH")
            )
        });
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}
