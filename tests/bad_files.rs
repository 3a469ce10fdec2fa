//! Files that lie (issue 16, defects 6, 7): one hand-broken client.env fails that client
//! only, with file:line, and every other client is still checked; a client.env naming
//! another client is a FAIL.

use std::fs;

use crate::test::Site;

fn create(site: &Site, id: &str) {
    site.test()
        .args(["create-client", &format!("CLIENT_ID={id}"), "CLIENT_NAME=Files"])
        .arg(&format!("CLIENT_DOMAIN={id}.example.com"))
        .run();
}

#[test]
fn one_bad_client_env_fails_that_client_only_with_file_and_line() {
    let site = Site::new();
    for id in ["bf-good", "bf-noeq", "bf-bytes", "bf-other"] {
        create(&site, id);
    }
    let env = |id: &str| site.client_dir(id).join("client.env");
    let text = fs::read_to_string(env("bf-noeq")).unwrap();
    fs::write(env("bf-noeq"), format!("{text}a line without an equals sign\n")).unwrap();
    let line = text.lines().count() + 1;
    let mut bytes = b"CLIENT_ID='bf-bytes'\n".to_vec();
    bytes.extend_from_slice(b"CLIENT_NAME='caf\xe9'\n");
    fs::write(env("bf-bytes"), bytes).unwrap();
    let other = fs::read_to_string(env("bf-other")).unwrap().replace("CLIENT_ID='bf-other'", "CLIENT_ID='bf-good'");
    fs::write(env("bf-other"), other).unwrap();

    for fix in [false, true] {
        let mut test = site.test().arg("multi-tenancy-status").status(1);
        if fix {
            test = test.arg("FIX=1");
        }
        let output = test.run();
        let out = &output.stdout;
        let row = |id: &str| {
            out.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("no row {id}:\n{out}")).to_string()
        };
        assert!(row("bf-good").ends_with("isolated") && !row("bf-good").contains("NOT"), "{out}");
        for id in ["bf-noeq", "bf-bytes", "bf-other"] {
            assert!(row(id).contains("NOT ISOLATED") || row(id).contains("INVALID"), "{id} fails:\n{out}");
        }
        let noeq = format!("{}:{line}: expected KEY='value'", env("bf-noeq").display());
        assert!(out.contains(&noeq), "{noeq} in:\n{out}");
        let bytes = format!("{}:2: not UTF-8 text", env("bf-bytes").display());
        assert!(out.contains(&bytes), "{bytes} in:\n{out}");
        assert!(out.contains("CLIENT_ID is bf-good, not bf-other"), "{out}");
        assert!(out.contains("4 client(s): 1 isolated, 3 not"), "{out}");
    }
}
