//! The node of the environment runs pods, and stopping the environment leaves nothing behind: no
//! process that names its directory, no container, no mount.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use xtask::image::{self, TOOLS_IMAGE};
use xtask::{Env, EnvOptions};

/// Pids of the processes one of whose arguments names `dir`.
fn processes_naming(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(&dir)
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|point| point.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_pod_runs_on_the_node_and_env_down_leaves_no_process_container_or_mount() {
    let dir = std::env::temp_dir().join(format!("vaultsync-node-test-{}", std::process::id()));
    let env = Env::up(EnvOptions {
        dir: dir.clone(),
        detached: false,
        node: true,
    })
    .expect("an environment with a node");
    let dir = env.dir.clone();
    let tools = image::tools(&env.dir).unwrap();
    env.import_image(&tools.path).unwrap();
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: sleeper, namespace: default}}\nspec:\n  hostNetwork: true\n  \
         containers: [{{name: main, image: {}, imagePullPolicy: Never, command: [/bin/sh, -c, 'echo started; sleep 100017']}}]\n",
        TOOLS_IMAGE.trim_start_matches("docker.io/library/")
    );
    let mut apply = env
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(apply.stdin.as_mut().unwrap(), pod.as_bytes()).unwrap();
    assert!(apply.wait().unwrap().success());
    let started = Instant::now();
    while !env.container_log("default", "sleeper", "main").contains("started") {
        assert!(started.elapsed() < Duration::from_secs(120), "the pod did not start");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !processes_naming(&dir).is_empty(),
        "the node's processes name its directory"
    );
    assert!(
        !mounts_under(&dir).is_empty(),
        "the running pod has mounts under the directory"
    );

    env.down().expect("stop the environment");
    assert_eq!(processes_naming(&dir), Vec::<String>::new(), "processes left behind");
    assert_eq!(mounts_under(&dir), Vec::<String>::new(), "mounts left behind");
    let sleepers = std::process::Command::new("pgrep")
        .args(["-f", "sleep 100017"])
        .output()
        .unwrap();
    assert!(sleepers.stdout.is_empty(), "the pod's process was left running");
    std::fs::remove_dir_all(&dir).unwrap();
}
