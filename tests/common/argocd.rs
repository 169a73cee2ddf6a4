//! The Argo CD health check of `config/argocd/`, run by Debian's Lua 5.4 with lua-cjson (Argo CD
//! runs it in gopher-lua, with the object as `obj`).

use std::process::Command;

use serde_json::Value;

/// The script, relative to the workspace root.
pub const SCRIPT: &str = "config/argocd/health.lua";

/// Sets `obj` from the JSON file `arg[1]` and prints what the health script `arg[2]` returns.
const HARNESS: &str = r#"
local cjson = require("cjson")
local file = assert(io.open(arg[1]))
obj = cjson.decode(file:read("a"))
file:close()
local hs = dofile(arg[2])
io.write(hs.status, "\n", hs.message or "")
"#;

/// (status, message) of the health script for `obj`.
pub fn health(obj: &Value) -> (String, String) {
    xtask::ensure_debian_packages().expect("lua5.4 and lua-cjson");
    let dir = std::env::temp_dir().join(format!("vaultsync-argocd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (harness, object) = (dir.join("harness.lua"), dir.join(format!("{}.json", next_name())));
    std::fs::write(&harness, HARNESS).expect("write harness");
    std::fs::write(&object, obj.to_string()).expect("write object");
    let script = xtask::workspace_root().join(SCRIPT);
    let out = Command::new("lua5.4")
        .arg(&harness)
        .arg(&object)
        .arg(&script)
        .output()
        .expect("run lua5.4");
    assert!(out.status.success(), "lua: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let (status, message) = text.split_once('\n').expect("status and message");
    (status.to_owned(), message.to_owned())
}

fn next_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("obj-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
