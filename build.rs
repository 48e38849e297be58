//! Records what `--version` and `authwatch_build_info` report: the git revision and branch,
//! who built it and when, and the compiler.

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let rev = run("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let branch =
        run("git", &["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let user = std::env::var("USER")
        .ok()
        .or_else(|| run("id", &["-un"]))
        .unwrap_or_else(|| "unknown".into());
    let host = run("hostname", &[]).unwrap_or_else(|| "unknown".into());
    // SOURCE_DATE_EPOCH makes the date reproducible, as reproducible-builds.org asks.
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => run(
            "date",
            &["-u", "-d", &format!("@{epoch}"), "+%Y%m%d-%H:%M:%S"],
        ),
        Err(_) => run("date", &["-u", "+%Y%m%d-%H:%M:%S"]),
    }
    .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AUTHWATCH_REVISION={rev}");
    println!("cargo:rustc-env=AUTHWATCH_BRANCH={branch}");
    println!("cargo:rustc-env=AUTHWATCH_BUILD_USER={user}@{host}");
    println!("cargo:rustc-env=AUTHWATCH_BUILD_DATE={date}");
    println!("cargo:rustc-env=AUTHWATCH_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
