//! Runs `scripts/validate-deploy.sh`, the offline validation of the deployment files (deploy/,
//! .dockerignore, the generated PrometheusRule), so `cargo test` covers them: hadolint,
//! docker-compose config, kubernetes-validate, check-jsonschema, promtool, amtool,
//! systemd-analyze, and `authwatch check-config` of every shipped configuration with this
//! build's binary. The script installs its tools on first use and prints every validator's
//! output, shown here when it fails.

use std::path::Path;
use std::process::Command;

#[test]
fn deployment_files_pass_every_validator() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg(root.join("scripts/validate-deploy.sh"))
        .current_dir(root)
        .env("AUTHWATCH_BIN", env!("CARGO_BIN_EXE_authwatch"))
        .output()
        .expect("cannot run bash scripts/validate-deploy.sh");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "scripts/validate-deploy.sh failed ({}); its output is above",
        output.status
    );
}
