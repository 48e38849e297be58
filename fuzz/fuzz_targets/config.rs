//! Fuzzes the configuration file parser and validator (`Config::parse`) with arbitrary YAML.
#![no_main]

use authwatch::config::Config;
use libfuzzer_sys::fuzz_target;

// No proxy variables, so a run depends on the input alone. `${VAR}` in values still reads
// the process environment, as the parser does in the daemon.
fn no_env(_: &str) -> Option<String> {
    None
}

fuzz_target!(|data: &[u8]| {
    // `parse` takes text: the daemon reads the file with `read_to_string`, so invalid UTF-8
    // never reaches it; a lossy copy still lets the mutator's byte flips count.
    let text = String::from_utf8_lossy(data);
    let Ok(config) = Config::parse(&text, "fuzz.yaml", &no_env) else {
        return;
    };
    // What a validated snapshot is used for right after loading: `/probe` requests turn a
    // module into a probe for a target an outsider chooses.
    for name in config.modules.keys() {
        for target in ["clerk.com", "X.Clerk.Com.", "https://x.test:8443/p?q", "not a name"] {
            let _ = config.module_probe(name, target);
        }
    }
});
