//! The processes of a pg_auto_failover node: started as the `postgres`
//! user (`initdb` and pg_autoctl refuse root), and killed as a tree, the
//! way a machine dies: `pg_autoctl run` supervises Postgres and restarts
//! what exits, and Postgres's children sit in sessions of their own, so
//! neither a single kill nor a process-group kill would do.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use rustix::process::{Pid, Signal, kill_process};
use tillsync_testkit::cluster::running_as_root;

pub fn chown_to_postgres(path: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown {}", path.display());
    }
}

/// Every live process in the tree under `root` (`root` included).
fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let mut fields = stat[stat.rfind(')').map_or(0, |i| i + 1)..].split_whitespace();
        let (Some(state), Some(ppid)) = (fields.next(), fields.next()) else {
            continue;
        };
        if state != "Z" {
            if let Ok(ppid) = ppid.parse() {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while let Some(&pid) = tree.get(i) {
        tree.extend(children.get(&pid).into_iter().flatten());
        i += 1;
    }
    tree
}

/// Freezes the whole tree under `root`, then kills it.
pub fn kill_tree(root: u32) {
    let signal_all = |pids: &[u32], signal: Signal| {
        for &pid in pids {
            if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, signal);
            }
        }
    };
    // A process forked while the tree was being frozen is caught by the
    // next pass; a few passes reach a tree that no longer changes.
    let mut frozen = Vec::new();
    for _ in 0..5 {
        let tree = process_tree(root);
        signal_all(&tree, Signal::STOP);
        if tree == frozen {
            break;
        }
        frozen = tree;
    }
    signal_all(&frozen, Signal::KILL);
}
