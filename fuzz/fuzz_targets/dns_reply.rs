//! Fuzzes how the daemon turns a DNS reply off the wire into a lookup result and failure.
#![no_main]

use std::net::SocketAddr;

use authwatch::net::dns::{parse_reply, rcode_name, to_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Only names the server in the error message; any address will do.
    let server = SocketAddr::from(([192, 0, 2, 53], 53));
    let msg = match parse_reply(server, data) {
        Ok(m) => m,
        Err(e) => {
            // The message goes to the log and the probe's status page.
            let _ = e.to_string();
            let _ = e.reason();
            return;
        }
    };
    let reply = to_reply(&msg);
    let failure = reply.failure();
    let rcode = rcode_name(reply.rcode);
    assert!(!rcode.is_empty());
    assert!(reply.addrs.len() <= reply.answer_count);
    // Success is exactly NOERROR with an answer: anything else must name a failure, or a
    // probe would report a broken resolver as healthy.
    assert_eq!(
        failure.is_none(),
        rcode == "NOERROR" && reply.answer_count > 0,
        "{rcode} with {} answers gave {failure:?}",
        reply.answer_count
    );
});
