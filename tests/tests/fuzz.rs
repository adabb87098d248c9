//! The API fuzzed from its own OpenAPI document: schemathesis (from the project's
//! venv, `make fuzz-tools`) reads `GET /v1/openapi.json` from `hookline dev` and
//! sends every operation its examples, the boundary cases of each schema, and
//! generated valid and invalid requests, with a platform key. No answer may be a
//! 5xx, nor have a status, content type, header or body the document does not
//! give. Its settings, bounded and seeded, are in `tests/schemathesis.toml`.
//!
//! Fuzzed endpoints get fuzzed URLs, and the dispatcher would try to deliver to
//! them: dev runs in a network namespace of its own with only loopback, so
//! nothing it sends can leave the machine.

use std::process::Stdio;
use std::time::Instant;

use hookline_tests::Dev;
use hookline_tests::template::workspace_root;

#[test]
fn the_fuzzer_finds_no_5xx_and_no_answer_outside_the_document() {
    let schemathesis = workspace_root().join(".venv/bin/schemathesis");
    assert!(
        schemathesis.is_file(),
        "{} is missing: run `make fuzz-tools` (`make test` does)",
        schemathesis.display()
    );
    // Its cache of earlier failures, replayed first, lives under target/.
    let workdir = workspace_root().join("target/schemathesis");
    std::fs::create_dir_all(&workdir).unwrap();
    let dev = Dev::start_isolated(&[]);
    let started = Instant::now();
    let output = dev
        .command_inside(&schemathesis)
        .arg("--config-file")
        .arg(workspace_root().join("tests/schemathesis.toml"))
        .arg("--no-color")
        .args(["run", &dev.url("/v1/openapi.json")])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", dev.api_key),
        ])
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .output()
        .expect("schemathesis runs in dev's network namespace");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    println!("fuzzed for {:.0?}", started.elapsed());
    assert!(
        output.status.success(),
        "schemathesis found answers outside the document (above)"
    );
}
